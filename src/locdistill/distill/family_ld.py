"""The LD terms of the RetinaGFL, ATSS-GFL and FCOS-GFL students (LD code's ``LDRetinaHead``,
``LDATSSHead``, ``LDFCOSHead``), all with the row-mean KD of :func:`locdistill.losses.kd_kl_div`:

* ``loss_ld`` (main LD, at the positives, weight ``w_i`` = the student's max class sigmoid, detached):
  ``weight * sum_i w_i * KD(row_i) / 4``. The rows are, by default, the original's: RetinaGFL uses
  **one 68-way softmax per anchor** (``rows="joint"``: the whole ``4*(R+1)`` vector as one row, averaged
  over 68 entries, then divided by 4 all the same); ATSS/FCOS use four ``R+1``-way rows per prior
  (``rows="edge"``, summed over the edges). ``distill.ld_rows`` overrides (``edge`` for RetinaGFL is the
  per-edge form of the other heads).
* ``loss_ld_vlr`` (second region, same rows): ``vlr.weight * sum_i v_i * KD(row_i) / vlr.divisor``
  with the family's region (:mod:`locdistill.distill.family_regions`; ATSS: GFL's VLR). The original's
  hard-coded multipliers go into ``vlr.weight`` (RetinaGFL ``0.03 * 5``, ATSS ``0.15 * 0.25``, FCOS
  ``0.25 * 0.25``, all with divisor 4).
* ``loss_kd`` (class KD at the positives): per level ``weight * sum KD_C / #pos_level``.

Nothing is divided by the number of positives or reduced over processes, as the original.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from locdistill.config import DistillConfig
from locdistill.distill.family_regions import inside_gt_region, retina_vlr_region
from locdistill.distill.ld_loss import main_kd_loss
from locdistill.distill.regions import vlr_region
from locdistill.losses import kd_kl_div
from locdistill.losses.reduce import EPS32
from locdistill.models.assigners.assignment import Assignment
from locdistill.models.assigners.batch import PointAssignment
from locdistill.models.losses.gfl import PositiveSamples
from locdistill.structures import Targets

LDRows = Literal["joint", "edge"]


def default_rows(family: str) -> LDRows:
    """The original's LD rows of ``family``: one joint row per anchor for RetinaGFL, per edge otherwise."""
    return "joint" if family == "retina_gfl" else "edge"


def weighted_row_kd(
    student: Tensor, teacher: Tensor, weights: Tensor, rows: LDRows, temperature: float, bins: int
) -> Tensor:
    """``sum_i weights_i * KD`` over priors ``i``: ``student``, ``teacher`` ``[P, 4*bins]``.

    ``joint``: one row of ``4*bins`` per prior; ``edge``: four rows of ``bins``, summed per prior."""
    if rows == "joint":
        kd = kd_kl_div(student, teacher, temperature)
    else:
        kd = (
            kd_kl_div(student.reshape(-1, bins), teacher.reshape(-1, bins), temperature).reshape(-1, 4).sum(1)
        )
    return (kd * weights).sum()


def second_region(
    family: str,
    assignment: Assignment,
    targets: list[Targets],
    student_cls: Tensor,
    cfg: DistillConfig,
) -> Tensor:
    """``[B, A]`` weights of the family's second LD region (0 outside it)."""
    vlr = cfg.vlr_ld
    if family == "retina_gfl":
        return retina_vlr_region(assignment, targets, vlr.alpha_low, vlr.diou)
    if family == "fcos_gfl":
        assert isinstance(assignment, PointAssignment)
        return inside_gt_region(assignment, student_cls)
    return vlr_region(assignment, targets, vlr.alpha_low, vlr.diou)


def family_ld_losses(
    family: str,
    s_cls: Tensor,
    s_reg: Tensor,
    t_cls: Tensor,
    t_reg: Tensor,
    assignment: Assignment,
    targets: list[Targets],
    pos: PositiveSamples,
    cfg: DistillConfig,
    num_levels: int,
    rows: LDRows,
    scale: float = 1.0,
) -> dict[str, Tensor]:
    """The enabled LD terms.

    Args:
        s_cls, t_cls: ``[B, A, C]`` class logits of student and teacher (one row per prior);
        s_reg, t_reg: ``[B, A, 4*(R+1)]`` distribution logits.
        pos: the student's positives (:meth:`FamilyDetector.positive_samples`).
        rows: ``joint`` or ``edge`` (module docstring).
        scale: factor on the LD sums (:func:`locdistill.distill.ld_loss.batch_scale`).
    """
    bins = s_reg.shape[-1] // 4
    out: dict[str, Tensor] = {}
    zero = s_reg.sum() * 0
    if cfg.main_ld.enabled:
        s = s_reg[pos.batch_index, pos.anchor_index]
        t = t_reg[pos.batch_index, pos.anchor_index]
        total = weighted_row_kd(s, t, pos.weights, rows, cfg.main_ld.temperature, bins)
        out["loss_ld"] = scale * cfg.main_ld.weight * total / (4.0 + EPS32) + zero
    if cfg.vlr_ld.enabled:
        region = second_region(family, assignment, targets, s_cls, cfg)
        b_idx, a_idx = region.nonzero(as_tuple=True)
        total = weighted_row_kd(
            s_reg[b_idx, a_idx], t_reg[b_idx, a_idx], region[b_idx, a_idx], rows, cfg.vlr_ld.temperature, bins
        )
        out["loss_ld_vlr"] = scale * cfg.vlr_ld.weight * total / (cfg.vlr_ld.divisor + EPS32) + zero
    if cfg.main_kd.enabled:
        kd = main_kd_loss(
            s_cls[pos.batch_index, pos.anchor_index],
            t_cls[pos.batch_index, pos.anchor_index],
            pos.level,
            num_levels,
            cfg.main_kd.temperature,
            cfg.main_kd.weight,
        )
        out["loss_kd"] = kd + s_cls.sum() * 0
    return out
