"""ONNX export: ``onnx.py`` (``export_onnx``, the metadata, the ``locdistill export`` command),
``graph.py`` (``ExportableGFL``: the network plus decoding as one graph), ``check.py`` (the onnxruntime
parity check against ``predict``), ``preprocess.py`` (the input recipe in numpy and PIL only, importable
without torch) and ``nms.py`` (post-processing and NMS as batched matrix operations, ``--with-nms``).

The names below are imported lazily, so that ``locdistill.export.preprocess`` needs no torch::

    from locdistill.export import export_onnx, ExportableGFL
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ExportableGFL": "locdistill.export.graph",
    "ExportParityError": "locdistill.export.check",
    "parity_check": "locdistill.export.check",
    "export_onnx": "locdistill.export.onnx",
    "recipe_for": "locdistill.export.onnx",
    "run_export": "locdistill.export.onnx",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'locdistill.export' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
