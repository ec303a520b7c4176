"""PyTorch speed settings of a training run, each a config option (measured in ``docs/benchmarks.md``).

* ``train.compile``: ``torch.compile`` of the detectors' ``forward`` (the student's and an LD
  teacher's: backbone, FPN and head; targets and losses stay eager), in place, so parameter names,
  checkpoints and EMA are unchanged. ``train.compile_dynamic``: ``None`` is PyTorch's default (the first
  input size is compiled static; a second size recompiles once with dynamic sizes), ``True`` compiles
  dynamic sizes from the start, ``False`` recompiles for every new size (up to dynamo's cache limit,
  then eager). Multi-scale training should leave it at ``None`` or ``True``.
* ``train.channels_last``: model and batch in NHWC memory format (``engine/train.py``).
* ``train.optim.implementation``: SGD's ``for-loop``, ``foreach`` or ``fused`` kernels
  (``engine/optim.py``); all three give the same parameters step for step.
* ``train.mkldnn_fp32_precision``: oneDNN's math mode for float32 convolutions and matmuls on CPU
  (``torch.backends.mkldnn.conv/matmul.fp32_precision``): ``none`` is true float32; ``bf16`` lets
  oneDNN compute them with bfloat16 inputs and float32 accumulation (AMX / AVX512-BF16 CPUs), like
  TF32 on NVIDIA GPUs: tensors stay float32, results change in about the third significant digit.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
from torch import nn

logger = logging.getLogger(__name__)

MkldnnPrecision = Literal["none", "bf16", "tf32"]


def set_mkldnn_fp32_precision(precision: MkldnnPrecision) -> MkldnnPrecision:
    """Set oneDNN's float32 math mode for convolutions and matmuls; returns the previous one."""
    mkldnn = torch.backends.mkldnn
    previous: MkldnnPrecision = mkldnn.conv.fp32_precision  # type: ignore[attr-defined]
    mkldnn.conv.fp32_precision = precision  # type: ignore[attr-defined]
    mkldnn.matmul.fp32_precision = precision  # type: ignore[attr-defined]
    return previous


def compile_detector(model: nn.Module, dynamic: bool | None = None) -> nn.Module:
    """``torch.compile`` a detector's ``forward`` in place (``nn.Module.compile``) and return it.

    Only the network is compiled: a :class:`~locdistill.models.detectors.gfl.GFL`'s ``loss`` and ``predict``
    are separate methods and stay eager. The module keeps its parameters and ``state_dict`` keys.
    """
    model.compile(dynamic=dynamic)
    return model


def compile_training_module(module: nn.Module, dynamic: bool | None = None) -> list[str]:
    """Compile the detectors inside a training module (``DetectorLoss`` or ``Distiller``): its
    ``student`` and, when present, its ``teacher``. Returns the names of what was compiled."""
    compiled = []
    for name in ("student", "teacher"):
        detector = getattr(module, name, None)
        if isinstance(detector, nn.Module):
            compile_detector(detector, dynamic)
            compiled.append(name)
    if compiled:
        logger.info("torch.compile: %s forward (dynamic=%s)", " and ".join(compiled), dynamic)
    return compiled
