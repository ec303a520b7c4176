"""locdistill: Localization Distillation (LD) for GFL object detectors in plain PyTorch.

Top-level names are imported lazily so that ``import locdistill`` (and ``locdistill --help``) stays fast::

    from locdistill import load_config, build_gfl, train, evaluate, load_model_weights
    from locdistill import Detector          # Detector.from_checkpoint(path).predict(images)
"""

from __future__ import annotations

import importlib
from typing import Any

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("locdistill")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without installing
    __version__ = "0.1.0"

_EXPORTS = {
    "Config": "locdistill.config",
    "ConfigError": "locdistill.config",
    "load_config": "locdistill.config",
    "dump_config": "locdistill.config",
    "Batch": "locdistill.structures",
    "Detections": "locdistill.structures",
    "ImageMeta": "locdistill.structures",
    "Targets": "locdistill.structures",
    "GFL": "locdistill.models.detectors.gfl",
    "build_gfl": "locdistill.models.detectors.gfl",
    "build_detector": "locdistill.models.build",
    "Distiller": "locdistill.distill.distiller",
    "build_distiller": "locdistill.engine.build",
    "train": "locdistill.engine.train",
    "evaluate": "locdistill.engine.evaluate",
    "Detector": "locdistill.detector",
    "Prediction": "locdistill.detector",
    "build_detector_from_checkpoint": "locdistill.models.from_checkpoint",
    "WeightsError": "locdistill.weights",
    "read_weights": "locdistill.weights",
    "load_weights": "locdistill.weights",
    "load_checkpoint": "locdistill.engine.checkpoint",
    "load_model_weights": "locdistill.engine.checkpoint",
    "save_checkpoint": "locdistill.engine.checkpoint",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'locdistill' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
