"""How far float32 activations may move when their sums are accumulated in another order.

A convolution (or matmul) output is a dot product of ``n = in_channels / groups * kh * kw`` terms. float32
addition is not associative, and every kernel sums in its own order: AVX2 and AVX-512 kernels of oneDNN,
MKL and ATen use 8 or 16 lanes and other blockings, and mmdetection, onnxruntime, another batch size or
another thread count each pick their own. Each addition rounds by at most ``eps/2`` of the partial sum;
the roundings do not line up, so they add like a random walk: one result lies within about
``sqrt(n) * eps * scale`` of the exact sum, where ``scale`` bounds the partial sums, taken here as the
largest magnitude in the compared tensor (the deterministic worst case ``n * eps`` assumes every rounding
goes the same way, which blocked kernels never approach). Two results summed in two orders then differ
by up to twice that. Through ``depth`` stacked layers the error of each layer is carried on (normalisation
keeps it relative to the activations' scale) and they add up: the tolerance is

    atol = 2 * depth * sqrt(n) * eps * max|expected|,  rtol = 0.

It is absolute on purpose: an output near zero is a sum of terms as large as any other, and carries the
same absolute error. Measured, the GFL head parity test (``depth`` 5, ``n`` 576, ``max|expected|`` 8):
this bound is 2.3e-4; our AVX2 head differs from the stored AVX-512 mmdetection values by up to 9e-6, and
mmdetection itself run on AVX2 by 4e-5.

Only comparisons through convolutions need this. Losses, targets, box coding and post-processing computed
from stored inputs take the same few elementwise steps in every implementation: keep them tight.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

FLOAT32_EPS = float(torch.finfo(torch.float32).eps)
"""2**-23: the spacing of float32 numbers just above 1."""


def accumulation_rtol(reduction: int, depth: int = 1) -> float:
    """``2 * depth * sqrt(reduction) * eps``: how far two float32 evaluations of ``depth`` stacked layers
    with dot products of length ``reduction`` may differ, relative to the scale of the activations
    (the module docstring derives it)."""
    return 2.0 * depth * math.sqrt(reduction) * FLOAT32_EPS


def conv_atol(expected: Tensor, reduction: int, depth: int = 1) -> float:
    """The absolute tolerance for ``expected``: :func:`accumulation_rtol` times its largest magnitude."""
    return (
        accumulation_rtol(reduction, depth) * float(expected.detach().abs().max())
        if expected.numel()
        else 0.0
    )


def assert_conv_close(
    actual: Tensor, expected: Tensor, reduction: int, depth: int = 1, msg: str | None = None
) -> None:
    """``actual`` equals ``expected`` up to float32 accumulation order over ``depth`` layers whose dot
    products have ``reduction`` terms (``in_channels / groups * kh * kw`` of the widest conv)."""
    atol = conv_atol(expected, reduction, depth)
    torch.testing.assert_close(actual.float(), expected.float(), rtol=0.0, atol=atol, msg=msg)
