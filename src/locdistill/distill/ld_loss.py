"""The distillation terms of LD (Zheng et al., CVPR 2022 / TPAMI 2023).

All use :func:`locdistill.losses.kd_kl_div` = ``KL(p_T || p_S)`` of temperature-softened distributions,
*mean* over the bins (the reference code's form) times ``T^2``; the teacher side is detached.

* Main LD, on positives: ``weight * sum_{i, side} w_i KD / 4`` (``w_i`` the student's max class score).
* VLR LD, on the second region (:mod:`locdistill.distill.regions`): ``weight * sum_{i, side} v_i KD /
  divisor`` (``v_i`` the VLR's IoU, or the student's max class score where the family says so).

A family whose LD softmaxes all ``4*(R+1)`` logits of a prior at once (``row="prior"``, RetinaGFL) has
one row per prior instead of one per side; the sum is still divided by 4 (the reference).
* Main KD, on class logits at positives: per level ``weight * sum_i KD_cls / n_pos(level)``.

"official" normalisation reproduces the reference exactly: Main and VLR LD are divided by nothing
else, so they grow with the number of images per GPU (the authors' "do not use more than 3 images
per GPU"). See :func:`batch_scale` for the batch-size-invariant mode.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from locdistill.losses import kd_kl_div
from locdistill.losses.reduce import EPS32
from locdistill.models.detectors.base import LDRow


def ld_rows(logits: Tensor, row: LDRow) -> Tensor:
    """``[N, 4, R+1]`` distribution logits -> the rows LD softmaxes: ``[4N, R+1]`` (``edge``) or
    ``[N, 4*(R+1)]`` (``prior``)."""
    return logits.reshape(-1, logits.shape[-1]) if row == "edge" else logits.flatten(1)


def main_ld_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    weights: Tensor,
    temperature: float = 10.0,
    loss_weight: float = 0.25,
    row: LDRow = "edge",
) -> Tensor:
    """Main LD.

    Args:
        student_logits, teacher_logits: ``[P, 4, R+1]`` distribution logits at the positives.
        weights: ``[P]`` the student's own max class sigmoid at each positive (detached).
        row: ``edge``: a softmax per side; ``prior``: one over all ``4*(R+1)`` logits of a prior.

    Returns:
        scalar ``loss_weight * sum_{rows} w_i KD_row / (4 + eps)``.
    """
    return weighted_ld(student_logits, teacher_logits, weights, temperature, loss_weight, 4.0, row)


def vlr_ld_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    region_weights: Tensor,
    temperature: float = 10.0,
    loss_weight: float = 0.25,
    divisor: float = 16.0,
    row: LDRow = "edge",
) -> Tensor:
    """VLR LD (the second LD region of any kind).

    Args:
        student_logits, teacher_logits: ``[V, 4, R+1]`` at the region's priors.
        region_weights: ``[V]`` weight of each prior (the VLR's IoU, or the student's max score).
        row: as :func:`main_ld_loss`.

    Returns:
        scalar ``loss_weight * sum_{rows} w_i KD_row / (divisor + eps)``.
    """
    return weighted_ld(student_logits, teacher_logits, region_weights, temperature, loss_weight, divisor, row)


def weighted_ld(
    student_logits: Tensor,
    teacher_logits: Tensor,
    weights: Tensor,
    temperature: float,
    loss_weight: float,
    divisor: float,
    row: LDRow,
) -> Tensor:
    """``loss_weight * sum_{rows} w_i KD_row / (divisor + eps)``, each prior's weight on each of its rows."""
    kd = kd_kl_div(ld_rows(student_logits, row), ld_rows(teacher_logits, row), temperature)
    rows = 4 if row == "edge" else 1
    return loss_weight * (kd * weights.repeat_interleave(rows)).sum() / (divisor + EPS32)


def main_kd_loss(
    student_cls: Tensor,
    teacher_cls: Tensor,
    level: Tensor,
    num_levels: int,
    temperature: float = 2.0,
    loss_weight: float = 10.0,
) -> Tensor:
    """Main KD on class logits at the positives, each level divided by its positive count.

    Args:
        student_cls, teacher_cls: ``[P, C]`` class logits at the positives.
        level: ``[P]`` level of each positive.

    Returns:
        scalar ``loss_weight * sum_l (sum_{i in l} KD_i) / (n_l + eps)``.
    """
    kd = kd_kl_div(student_cls, teacher_cls, temperature)
    sums = kd.new_zeros(num_levels).index_add(0, level, kd)
    counts = kd.new_zeros(num_levels).index_add(0, level, kd.new_ones(kd.shape[0]))
    return loss_weight * (sums / (counts + EPS32)).sum()


def batch_scale(
    normalize: Literal["official", "invariant"], images_per_gpu: int, reference_images_per_gpu: float
) -> float:
    """Factor applied to Main and VLR LD.

    ``official``: 1 (the reference). ``invariant``: the sum is divided by the batch's weight sum ``W``
    (as GIoU and DFL are) and multiplied by ``W`` at the reference batch; with ``W`` proportional to
    the number of images that is ``reference_images_per_gpu / images_per_gpu``, which equals the
    official value at the reference batch and keeps the magnitude per image fixed at any other.
    """
    if normalize == "official":
        return 1.0
    return float(reference_images_per_gpu) / max(images_per_gpu, 1)
