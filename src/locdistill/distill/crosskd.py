"""CrossKD (Wang, Chen, Zheng et al., CVPR 2024): the student's head features cross into the frozen
teacher head, and the resulting cross-head predictions are distilled to the teacher's own.

Any family whose head CrossKD can split (``DenseDetector.crosskd_head()``, a
:class:`~locdistill.models.detectors.base.TowerHead`) takes part; others are refused. Step by step, per
FPN level and for the class and box towers separately (the authors' GFL code)::

    student tower, first `layer` convs (conv -> GN -> ReLU each)  -> s_hold   [B, F_s, H, W]
    teacher tower, first `teacher_layer` convs (likewise)         -> t_hold   [B, F_t, H, W]
    [1x1 adapter F_s -> F_t, only with `adapter` when the widths differ]
    standardise s_hold per channel over (B, H, W) (mean, unbiased std + 1e-6), re-scale to t_hold's
        per-channel mean and std
    ReLU (when teacher_layer > 0), the teacher's tower convs teacher_layer.., its output convs
        -> cross-head predictions, distilled by :mod:`locdistill.distill.crosskd_loss`

The hold features are taken after the ReLU of the last conv, as the authors' code computes them (their
loop keeps mmcv ``ConvModule``'s conv -> GN output, which the module's in-place ReLU then rectifies);
``distill.crosskd.hold: pre_relu`` crosses before that ReLU instead (not the published method). The
teacher stays frozen (``requires_grad`` off, eval mode, outside the optimizer): gradients pass
through its weights into the student's features only. Only the adapters (if any) are trainable here.
The teacher's hold statistics are kept as per-image channel sums and sums of squares in float64
(:class:`TeacherResult`), so that a batch's mean and std can be rebuilt exactly from cached images.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from locdistill.config import CrossKDConfig
from locdistill.distill.crosskd_loss import (
    crosskd_bbox_loss,
    crosskd_cls_loss,
    crosskd_reg_loss,
    teacher_box_weights,
)
from locdistill.models.assigners.assignment import Assignment
from locdistill.models.detectors.base import DenseDetector, FlatOutputs, TowerFeatures, TowerHead
from locdistill.models.integral import Integral
from locdistill.ops.box_ops import box_centers
from locdistill.utils.dist import reduce_mean

STD_EPS = 1e-6


class TeacherResult(NamedTuple):
    """What the student's losses need from the teacher for one batch.

    Attributes:
        outputs: the teacher's raw outputs, one row per prior (float32, no graph).
        hold_sums: with CrossKD, per level ``[B, 2, 2, F_t]`` float64: per image, for the (class, box)
            tower, the (sum, sum of squares) over ``H_l x W_l`` of each channel of the teacher's hold
            feature; ``None`` without CrossKD.
    """

    outputs: FlatOutputs
    hold_sums: list[Tensor] | None = None


def hold_sums(tower: TowerFeatures) -> list[Tensor]:
    """Per level ``[B, 2, 2, F]`` float64 channel sums and sums of squares of a tower's features."""
    out = []
    for c, r in zip(tower.cls_feats, tower.reg_feats):
        x = torch.stack([c, r], dim=1).double()  # [B, 2, F, H, W]
        out.append(torch.stack([x.sum(dim=(3, 4)), x.pow(2).sum(dim=(3, 4))], dim=2))
    return out


def batch_mean_std(sums: Tensor, pixels_per_image: int) -> tuple[Tensor, Tensor]:
    """``[B, 2, 2, F]`` per-image sums -> the batch's per-channel mean and unbiased std, ``[2, F]`` each
    (float32), over ``B * pixels_per_image`` values per channel."""
    n = sums.shape[0] * pixels_per_image
    total = sums.sum(dim=0)
    mean = total[:, 0] / n
    var = (total[:, 1] - n * mean * mean) / max(n - 1, 1)
    return mean.float(), var.clamp(min=0).sqrt().float()


def split_head(detector: DenseDetector[Any], role: str) -> TowerHead:
    """The detector's head as a :class:`TowerHead`; ``ValueError`` naming the family when CrossKD cannot
    split it."""
    head = detector.crosskd_head()
    if head is None:
        raise ValueError(
            f"distill.crosskd: the {role}'s head ({detector.family}) cannot be split at a tower depth, so "
            "CrossKD cannot cross into it; turn distill.crosskd off for this family"
        )
    return head


@torch.inference_mode()
def _teacher_forward(
    teacher: DenseDetector[Any], images: Tensor, hold_depth: int | None, hold_relu: bool
) -> TeacherResult:
    if hold_depth is None:
        return TeacherResult(teacher.flatten(teacher(images)))
    head = split_head(teacher, "teacher")
    tower = head.forward_tower(teacher.features(images), hold_depth, hold_relu)
    return TeacherResult(teacher.flatten(head.forward_from(tower)), hold_sums(tower))


def run_teacher(
    teacher: DenseDetector[Any], images: Tensor, hold_depth: int | None = None, hold_relu: bool = True
) -> TeacherResult:
    """The frozen teacher on ``images`` (already in its own normalisation), under inference mode.

    With ``hold_depth`` (CrossKD's ``teacher_layer``) the teacher's tower statistics at that depth come
    too, after that conv's ReLU (before it with ``hold_relu=False``). The outputs are cloned out of
    inference mode as float32, usable as constant targets.
    """
    result = _teacher_forward(teacher, images, hold_depth, hold_relu)
    outputs = result.outputs.clone().float()
    sums = None if result.hold_sums is None else [s.clone() for s in result.hold_sums]
    return TeacherResult(outputs, sums)


def align_scale(student: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Standardise ``[B, F, H, W]`` per channel over ``(B, H, W)`` (unbiased std + 1e-6) and re-scale
    to the teacher's per-channel ``mean`` and ``std`` (``[F]``, constants)."""
    s_mean = student.mean(dim=(0, 2, 3), keepdim=True)
    s_std = student.std(dim=(0, 2, 3), keepdim=True)
    normed = (student - s_mean) / (s_std + STD_EPS)
    return normed * std[None, :, None, None] + mean[None, :, None, None]


def teacher_depth(cfg: CrossKDConfig) -> int:
    """Where the student's features enter the teacher's tower: ``teacher_layer``, else ``layer``."""
    return cfg.layer if cfg.teacher_layer is None else cfg.teacher_layer


def hold_width(head: TowerHead, depth: int) -> int:
    """Channels of a head's tower features after ``depth`` convs (its input width at 0)."""
    return head.feat_channels if depth > 0 else head.in_channels


class CrossKD(nn.Module):
    """The cross-head pass and its losses; holds the trainable adapters (if any), never the teacher.

    Args:
        student, teacher: the two detectors (same strides, anchors, reg_max, classes: see
            :func:`locdistill.distill.distiller.check_fit`).
        cfg: the ``distill.crosskd`` section.

    Raises:
        ValueError: a crossing layer outside a head's tower, or widths that differ without ``adapter``
            (the message names both widths).
    """

    def __init__(self, student: DenseDetector[Any], teacher: DenseDetector[Any], cfg: CrossKDConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.layer = cfg.layer
        self.teacher_layer = teacher_depth(cfg)
        self.hold_relu = cfg.hold == "post_relu"
        s_head, t_head = split_head(student, "student"), split_head(teacher, "teacher")
        s_convs, t_convs = s_head.stacked_convs, t_head.stacked_convs
        if not 0 <= self.layer <= s_convs:
            raise ValueError(
                f"distill.crosskd.layer={self.layer} is outside the student head's tower (0..{s_convs} convs)"
            )
        if not 0 <= self.teacher_layer <= t_convs:
            raise ValueError(
                f"distill.crosskd.teacher_layer={self.teacher_layer} is outside the teacher head's tower "
                f"(0..{t_convs} convs)"
            )
        s_width = hold_width(s_head, self.layer)
        t_width = hold_width(t_head, self.teacher_layer)
        self.cls_adapter: nn.Module = nn.Identity()
        self.reg_adapter: nn.Module = nn.Identity()
        if s_width != t_width:
            if not cfg.adapter:
                raise ValueError(
                    f"distill.crosskd: the student's head features after {self.layer} tower conv(s) have "
                    f"{s_width} channels but the teacher's head expects {t_width} after "
                    f"{self.teacher_layer}; set distill.crosskd.adapter=true (a learned 1x1 conv) or use "
                    "heads of equal width"
                )
            self.cls_adapter = nn.Conv2d(s_width, t_width, 1)
            self.reg_adapter = nn.Conv2d(s_width, t_width, 1)

    def student_forward(self, student: DenseDetector[Any], images: Tensor) -> tuple[Any, TowerFeatures]:
        """The student's raw outputs (exactly ``student(images)``) and its tower features at ``layer``."""
        head = split_head(student, "student")
        tower = head.forward_tower(student.features(images), self.layer, self.hold_relu)
        return head.forward_from(tower), tower

    def cross_outputs(
        self, teacher_head: TowerHead, student_tower: TowerFeatures, teacher_sums: list[Tensor]
    ) -> Any:
        """The teacher head's raw predictions from the student's tower features (float32, with graph;
        the teacher family's output type: flatten them with the teacher's ``flatten``).

        Args:
            teacher_head: the frozen teacher's head (gradients flow through it, not into it).
            student_tower: from :meth:`student_forward`.
            teacher_sums: :attr:`TeacherResult.hold_sums` of the same batch.
        """
        cls_feats, reg_feats = [], []
        for c, r, sums in zip(student_tower.cls_feats, student_tower.reg_feats, teacher_sums):
            mean, std = batch_mean_std(sums, c.shape[-2] * c.shape[-1])
            mean, std = mean.to(c.dtype), std.to(c.dtype)
            cls_feats.append(align_scale(self.cls_adapter(c), mean[0], std[0]))
            reg_feats.append(align_scale(self.reg_adapter(r), mean[1], std[1]))
        out = teacher_head.forward_from(TowerFeatures(cls_feats, reg_feats, self.teacher_layer))
        return out.float()

    def losses(
        self, cross: FlatOutputs, teacher: FlatOutputs, assignment: Assignment, integral: Integral
    ) -> dict[str, Tensor]:
        """``loss_crosskd_cls``, ``loss_crosskd_reg`` and (``bbox_weight`` > 0) ``loss_crosskd_bbox`` from
        the cross-head and the teacher's outputs per prior, under the student's ``assignment``."""
        cfg = self.cfg
        x_cls, x_reg = cross
        t_cls, t_reg = teacher
        avg_factor = reduce_mean(assignment.num_total_pos.to(x_cls.dtype))
        weights = teacher_box_weights(t_cls, assignment.label_weights)
        out = {
            "loss_crosskd_cls": crosskd_cls_loss(
                x_cls, t_cls, assignment.label_weights, avg_factor, cfg.cls_beta, cfg.cls_weight
            ),
            "loss_crosskd_reg": crosskd_reg_loss(x_reg, t_reg, weights, cfg.reg_temperature, cfg.reg_weight),
        }
        if cfg.bbox_weight > 0:
            centers = box_centers(assignment.anchors) / assignment.anchor_strides[:, None]
            out["loss_crosskd_bbox"] = crosskd_bbox_loss(
                x_reg, t_reg, weights, centers, integral, cfg.bbox_weight
            )
        return out
