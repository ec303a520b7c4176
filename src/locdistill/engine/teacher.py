"""The LD teacher: built from its own config and loaded from its checkpoint by the engine, so that the
Distiller (:mod:`locdistill.distill.distiller`) receives a ready :class:`~locdistill.models.gfl.GFL`
and never reads YAML or weight files itself."""

from __future__ import annotations

import logging
from pathlib import Path

from locdistill.config import Config, load_config
from locdistill.models.gfl import GFL, build_gfl
from locdistill.models.weights import load_detector_weights, sha256_file

logger = logging.getLogger(__name__)


def resolve_teacher_config(cfg: Config) -> Path:
    """The teacher config path: as given, else relative to the student config's folder."""
    assert cfg.distill is not None
    given = Path(cfg.distill.teacher_config)
    if not given.is_absolute() and cfg.source:
        beside = Path(cfg.source).parent / given
        if beside.is_file():
            return beside
    return given


def build_teacher(cfg: Config) -> tuple[GFL, str]:
    """Build the teacher from its own config and load its checkpoint; returns ``(teacher, sha256)``."""
    d = cfg.distill
    if d is None:
        raise ValueError("the config has no 'distill' section")
    if not d.teacher_config:
        raise ValueError("distill.teacher_config is required: the teacher's own config file")
    if not d.teacher_checkpoint:
        raise ValueError("distill.teacher_checkpoint is required: the trained teacher's weights")
    t_cfg = load_config(resolve_teacher_config(cfg))
    t_cfg.model.backbone.pretrained = False  # its weights come from the checkpoint
    teacher = build_gfl(t_cfg.model)
    report = load_detector_weights(teacher, d.teacher_checkpoint)
    logger.info("teacher %s loaded from %s (%s format)", t_cfg.source, d.teacher_checkpoint, report.format)
    return teacher, sha256_file(d.teacher_checkpoint)
