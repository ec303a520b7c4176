"""The frozen teacher of an LD run: built here, by the engine, and handed to the Distiller.

The teacher comes through the one weight path (:func:`~locdistill.models.from_checkpoint.
build_detector_from_checkpoint`): ``distill.teacher_checkpoint`` with ``distill.teacher_config`` when
given, else the config the checkpoint stores. Its file's SHA-256 goes into the student's checkpoints.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from locdistill.config import Config
from locdistill.models.detectors.base import DenseDetector
from locdistill.models.from_checkpoint import build_detector_from_checkpoint
from locdistill.utils.hashing import sha256_file

logger = logging.getLogger(__name__)


def resolve_teacher_config(cfg: Config) -> Path | None:
    """The teacher config path: as given, else relative to the student config's folder; ``None``
    when ``distill.teacher_config`` is empty (the teacher checkpoint's stored config is used)."""
    if cfg.distill is None or not cfg.distill.teacher_config:
        return None
    given = Path(cfg.distill.teacher_config)
    if not given.is_absolute() and cfg.source:
        beside = Path(cfg.source).parent / given
        if beside.is_file():
            return beside
    return given


def build_teacher(cfg: Config) -> tuple[DenseDetector[Any], str]:
    """The teacher of ``cfg.distill`` with its weights, in eval mode on the CPU, and its file's SHA-256.

    Raises:
        ValueError: no ``distill`` section or no ``teacher_checkpoint``.
        WeightsError: the checkpoint cannot be read, stores no config while none is named, or does not
            fit the teacher config (naming both configs).
    """
    d = cfg.distill
    if d is None:
        raise ValueError("the config has no 'distill' section")
    if not d.teacher_checkpoint:
        raise ValueError("distill.teacher_checkpoint is required: the trained teacher's weights")
    teacher, info = build_detector_from_checkpoint(d.teacher_checkpoint, resolve_teacher_config(cfg))
    logger.info("teacher built from %s, weights from %s (%s)", info.config_source, info.path, info.format)
    return teacher, sha256_file(d.teacher_checkpoint)
