"""ONNX export: ``onnx.py`` (the network plus decoding, metadata, the onnxruntime parity check, the
``locdistill export`` command) and ``nms.py`` (post-processing and NMS as fixed-shape batched matrix
operations, for ``--with-nms``)."""

from __future__ import annotations

from locdistill.export.onnx import ExportableGFL, ExportParityError, export_onnx, parity_check, run_export

__all__ = ["ExportParityError", "ExportableGFL", "export_onnx", "parity_check", "run_export"]
