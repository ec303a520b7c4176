"""Build the detector a checkpoint holds and load its weights: the one place that does it.

``locdistill test / predict / export / benchmark``, the teacher of an LD run, the demo and
:class:`locdistill.Detector` all come through :func:`build_detector_from_checkpoint`::

    model, info = build_detector_from_checkpoint("student.pth")      # with the config stored in it
    model, info = build_detector_from_checkpoint("teacher.pth", "configs/x.yaml", ["train.amp=false"])

The config is the one given (a path or a :class:`~locdistill.config.Config`), else the one the
checkpoint stores (every locdistill checkpoint does; mmdetection files and plain state dicts do not);
``overrides`` (``--set``) apply on top of either. The backbone's ``pretrained`` is turned off (the
checkpoint holds every weight), and a file that does not fit says which config it stores.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from locdistill.config import Config, ConfigError, apply_overrides, config_from_dict, load_config, to_dict
from locdistill.models.build import build_detector
from locdistill.models.detectors.base import DenseDetector
from locdistill.weights import LoadReport, WeightsError, WeightsFile, load_weights, read_weights


@dataclass
class CheckpointInfo:
    """What :func:`build_detector_from_checkpoint` read besides the weights.

    ``config``: the config the model was built from (``backbone.pretrained`` off); ``config_source``:
    where it came from, for messages; ``class_names``: one per class (the checkpoint's, else the
    config's datasets', else ``class_<i>``).
    """

    path: Path
    format: str
    config: Config
    config_source: str
    meta: dict[str, Any]
    class_names: list[str]
    report: LoadReport


def given_config(cfg: Config | str | Path, overrides: Sequence[str] = ()) -> tuple[Config, str]:
    """``(config, description)`` of a config path or object with ``overrides`` applied; a copy, so the
    caller's ``Config`` is never changed."""
    overrides = list(overrides)
    if not isinstance(cfg, Config):
        config = load_config(cfg, overrides)
        return config, str(config.source)
    if not overrides:
        return copy.deepcopy(cfg), cfg.source or "the given config"
    config = config_from_dict(apply_overrides(to_dict(cfg), overrides))
    config.source = cfg.source
    return config, cfg.source or "the given config"


def stored_config(file: WeightsFile, overrides: Sequence[str] = ()) -> tuple[Config, str]:
    """``(config, description)`` of the config stored in ``file``, with ``overrides`` applied.

    Raises:
        WeightsError: the file stores none (mmdetection files, plain state dicts).
        ConfigError: the stored config (or an override) does not fit the schema.
    """
    stored = file.config
    if stored is None:
        what = "an mmdetection checkpoint" if file.format == "mmdetection" else f"a {file.format} file"
        raise WeightsError(
            f"{file.path} stores no locdistill config ({what}): name its config as well (locdistill test"
            "/predict/export/benchmark: CONFIG before the checkpoint; an LD teacher: distill.teacher_config)"
        )
    try:
        config = config_from_dict(apply_overrides(copy.deepcopy(stored), list(overrides)))
    except ConfigError as e:
        raise ConfigError(f"the config stored in {file.path}: {e}") from None
    config.source = str(file.path)
    described = f"the config stored in {file.path.name}"
    return config, described + (f" with --set {' '.join(overrides)}" if overrides else "")


def stored_config_summary(file: WeightsFile) -> str:
    """One clause on the model the file holds: its stored config's backbone and classes, else the
    class count its head weights have."""
    stored = file.config
    model = stored.get("model") if stored else None
    if isinstance(model, dict):
        backbone = model.get("backbone") or {}
        head = model.get("head") or {}
        parts = [f"backbone {backbone.get('name', '?')}"]
        if any(backbone.get("dcn") or []):
            parts.append(f"dcn {backbone.get('dcn')} ({backbone.get('dcn_type', 'dcn')})")
        parts.append(f"num_classes {head.get('num_classes', '?')}")
        if head.get("dgqp"):
            parts.append("GFL v2 (dgqp)")
        return f"the checkpoint stores a config with {', '.join(parts)}"
    content = file.content
    for state in (content.get("model"), content.get("state_dict"), content):
        for key in ("head.gfl_cls.weight", "bbox_head.gfl_cls.weight", "module.head.gfl_cls.weight"):
            weight = state.get(key) if isinstance(state, dict) else None
            if isinstance(weight, torch.Tensor):
                return f"the checkpoint stores no config; its {key} has {weight.shape[0]} classes"
    return "the checkpoint stores no config"


def class_names_for(cfg: Config, num_classes: int, known: Sequence[str] | None = None) -> list[str]:
    """Class names: ``known`` (a checkpoint's) when there is one per class, else the config's datasets',
    else ``class_<i>``."""
    if known and len(known) == num_classes:
        return list(known)
    for split in (cfg.data.train, cfg.data.val, cfg.data.test):
        if split is not None and len(split.classes) == num_classes:
            return list(split.classes)
    return [f"class_{i}" for i in range(num_classes)]


def build_detector_from_checkpoint(
    path: str | Path,
    cfg: Config | str | Path | None = None,
    overrides: Sequence[str] = (),
    device: str | torch.device = "cpu",
    use_ema: bool = False,
) -> tuple[DenseDetector[Any], CheckpointInfo]:
    """The detector that ``path`` holds (of the family its config's ``model.type`` names), with its
    weights, on ``device`` in eval mode.

    Args:
        path: any file :func:`locdistill.weights.read_weights` reads.
        cfg: a config (path or object); ``None``: the config stored in the checkpoint.
        overrides: ``key=value`` strings applied on top of the config (``--set``).
        use_ema: the EMA weights of a training checkpoint.

    Raises:
        WeightsError: unreadable file, no config anywhere, or weights that do not fit the model (naming
            the keys, the config the model was built from and the one the file stores).
    """
    given = given_config(cfg, overrides) if cfg is not None else None  # a bad config fails before any read
    file = read_weights(path)
    config, described = given if given is not None else stored_config(file, overrides)
    config.model.backbone.pretrained = False  # the checkpoint holds every weight
    model = build_detector(config.model)
    report = load_weights(
        model,
        file,
        strict=True,
        use_ema=use_ema,
        target=f"the model built from {described}",
        hint=stored_config_summary(file) if cfg is not None else "",
    )
    names = class_names_for(config, model.num_classes, file.class_names)
    info = CheckpointInfo(file.path, file.format, config, described, file.meta, names, report)
    return model.to(device).eval(), info
