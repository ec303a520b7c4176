"""Teacher -> student wrapper used for training with LD.

The teacher is a built and loaded detector of the student's family (the engine reads its config and
weights, :mod:`locdistill.engine.teacher`; a teacher of another family is refused in one line naming
both). It is kept in eval mode (also after ``.train()``), runs under ``torch.inference_mode`` on the very
batch tensor the student sees, has no trainable parameters (so it is outside the optimizer), is listed
for DDP to ignore (no gradient sync, no buffer broadcast), is dropped from ``state_dict()``, and still
moves with ``.to()``.

Both detectors are read only through the dense-detector contract
(:mod:`locdistill.models.detectors.base`): the student's ``assign`` once and ``positive_samples`` once,
both shared by the student's ``loss`` and the LD terms; ``flatten`` for the outputs per prior; the
family's ``ld_spec`` for the LD row form and the second region.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor, nn

from locdistill.config import DistillConfig
from locdistill.distill.crosskd import CrossKD, TeacherResult, run_teacher
from locdistill.distill.ld_loss import batch_scale, main_kd_loss, main_ld_loss, vlr_ld_loss
from locdistill.distill.regions import second_region
from locdistill.distill.teacher_cache import TeacherCache
from locdistill.models.assigners.assignment import Assignment
from locdistill.models.detectors.base import DenseDetector, FlatOutputs, Positives, check_same_family
from locdistill.structures import Batch


def check_fit(student: DenseDetector[Any], teacher: DenseDetector[Any], need_classes: bool) -> None:
    """Raise ``ValueError`` when the teacher cannot teach the student: another family (one line naming
    both), or, saying what differs, priors that do not correspond one to one (the family's
    ``prior_layout``: strides, anchors), reg_max, levels or, with class KD, the class count."""
    check_same_family(student, teacher)
    problems = [
        f"{what}: student {value} vs teacher {theirs}"
        for (what, value), (_, theirs) in zip(student.prior_layout(), teacher.prior_layout())
        if value != theirs
    ]
    if student.reg_max != teacher.reg_max:
        problems.append(f"reg_max: student {student.reg_max} vs teacher {teacher.reg_max}")
    if student.num_levels != teacher.num_levels:
        problems.append(f"FPN levels: student {student.num_levels} vs teacher {teacher.num_levels}")
    if need_classes and student.num_classes != teacher.num_classes:
        problems.append(
            f"num_classes (needed by class KD: main_kd, crosskd): student {student.num_classes} "
            f"vs teacher {teacher.num_classes}"
        )
    if problems:
        raise ValueError("the teacher does not fit the student: " + "; ".join(problems))


class Distiller(nn.Module):
    """Student + frozen teacher of one family; ``forward(batch)`` returns the student's losses plus the
    LD (and CrossKD) terms.

    Args:
        student: the detector being trained (any :class:`DenseDetector`).
        teacher: a trained detector of the same family with the same priors and reg_max.
        cfg: which terms are on, their weights and temperatures, and the normalisation.
        images_per_gpu: for the batch-size-invariant normalisation and the official-mode warning.
        teacher_sha256: digest of the teacher's weights file, recorded in the student's checkpoints.
        cache: where the teacher's outputs are read from and stored (``distill.cache``), or ``None``.
    """

    def __init__(
        self,
        student: DenseDetector[Any],
        teacher: DenseDetector[Any],
        cfg: DistillConfig,
        images_per_gpu: int = 2,
        teacher_sha256: str = "",
        *,
        cache: TeacherCache | None = None,
    ) -> None:
        super().__init__()
        check_fit(student, teacher, cfg.main_kd.enabled or cfg.crosskd.enabled)
        self.student = student
        self.teacher = teacher
        self.cfg = cfg
        self.images_per_gpu = images_per_gpu
        self.teacher_sha256 = teacher_sha256
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.teacher.eval()
        self._register_state_dict_hook(_drop_teacher_keys)
        # Tell DDP to leave the teacher alone (no gradient sync, no buffer broadcast); the one place
        # that lists it (engine.build.wrap_ddp wraps this module as it is).
        self._ddp_params_and_buffers_to_ignore = [
            f"teacher.{n}" for n, _ in self.teacher.named_parameters()
        ] + [f"teacher.{n}" for n, _ in self.teacher.named_buffers()]
        self._renorm = student.mean != teacher.mean or student.std != teacher.std
        # CrossKD (distill/crosskd.py): registered after the teacher so that the student's parameters
        # come first; it holds only its trainable adapters, the teacher head is passed per call.
        self.crosskd = CrossKD(student, teacher, cfg.crosskd) if cfg.crosskd.enabled else None
        self.cache = cache
        if cfg.normalize == "official" and images_per_gpu > 3 and (cfg.main_ld.enabled or cfg.vlr_ld.enabled):
            warnings.warn(
                f"distill.normalize=official with {images_per_gpu} images per GPU: the reference LD loss "
                "grows with the number of images per GPU (its authors advise at most 3); consider "
                "distill.normalize=invariant",
                stacklevel=2,
            )

    def train(self, mode: bool = True) -> Distiller:
        super().train(mode)
        self.teacher.eval()
        return self

    def teacher_inputs(self, images: Tensor) -> Tensor:
        """The batch re-normalised for the teacher when its backbone expects another mean/std."""
        if not self._renorm:
            return images
        s_mean = images.new_tensor(self.student.mean)[:, None, None]
        s_std = images.new_tensor(self.student.std)[:, None, None]
        t_mean = images.new_tensor(self.teacher.mean)[:, None, None]
        t_std = images.new_tensor(self.teacher.std)[:, None, None]
        return (images * s_std + s_mean - t_mean) / t_std

    def teacher_outputs(self, images: Tensor) -> FlatOutputs:
        """The teacher's raw outputs on the batch, per prior (no graph; usable as constant targets)."""
        with torch.inference_mode():
            out = self.teacher.flatten(self.teacher(self.teacher_inputs(images)))
        # Inference tensors cannot be saved for backward; a clone outside inference mode can.
        return out.clone().float()

    def teacher_result(self, batch: Batch) -> TeacherResult:
        """The teacher's outputs on the batch (and CrossKD's hold statistics): from ``distill.cache``
        where it has them, else by running the teacher."""
        depth = self.crosskd.teacher_layer if self.crosskd is not None else None

        def compute(images: Tensor) -> TeacherResult:
            hold_relu = self.crosskd is None or self.crosskd.hold_relu
            return run_teacher(self.teacher, self.teacher_inputs(images), depth, hold_relu)

        if self.cache is None:
            return compute(batch.images)
        return self.cache.fetch(batch, compute, with_hold=depth is not None)

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        """The student's own losses and the enabled LD terms (``loss_ld``, ``loss_ld_vlr``, ``loss_kd``) and
        CrossKD terms (``loss_crosskd_cls``, ``loss_crosskd_reg``, ``loss_crosskd_bbox``)."""
        # The teacher first: its activations are freed before the student's graph is built, so the
        # two networks' working memory never coexists (lower peak memory, fewer page faults on CPU).
        teacher = self.teacher_result(batch)  # live, or from distill.cache
        t_out = teacher.outputs
        if self.crosskd is None:
            s_out = self.student(batch.images).float()
        else:  # the same outputs, plus the student's tower features at the crossing layer
            s_out, s_tower = self.crosskd.student_forward(self.student, batch.images)
            s_out = s_out.float()
        assignment = self.student.assign(s_out, batch.targets, batch.metas)
        if self.cache is not None:
            self.cache.after_assignment(assignment, batch.targets)
        positives = self.student.positive_samples(s_out, assignment)
        losses = self.student.loss(
            s_out, batch.targets, batch.metas, assignment=assignment, positives=positives
        )
        losses.update(self.distill_losses(s_out, t_out, assignment, batch, positives=positives))
        if self.crosskd is not None:  # CrossKD: the student's tower features through the teacher head
            assert teacher.hold_sums is not None
            teacher_head = self.teacher.crosskd_head()
            assert teacher_head is not None  # CrossKD refuses heads it cannot split
            cross = self.crosskd.cross_outputs(teacher_head, s_tower, teacher.hold_sums)
            losses.update(
                self.crosskd.losses(self.teacher.flatten(cross), t_out, assignment, self.student.integral)
            )
        return losses

    def log_stats(self) -> dict[str, float]:
        """Extra numbers for the training log: the teacher cache's hits and misses since the last call."""
        return self.cache.take_stats() if self.cache is not None else {}

    def distill_losses(
        self,
        s_out: Any,
        t_out: FlatOutputs,
        assignment: Assignment,
        batch: Batch,
        positives: Positives | None = None,
    ) -> dict[str, Tensor]:
        """The LD terms alone (see :mod:`locdistill.distill.ld_loss`) on float32 outputs: the student's
        raw ``s_out``, the teacher's per prior; ``positives`` (of ``s_out`` under ``assignment``) are
        gathered here unless given."""
        cfg = self.cfg
        spec = self.student.ld_spec
        row = spec.row if cfg.ld_rows == "auto" else cfg.ld_rows
        reg_max = self.student.reg_max
        s_cls, s_reg = self.student.flatten(s_out)
        t_cls, t_reg = t_out
        pos = positives if positives is not None else self.student.positive_samples(s_out, assignment)
        scale = batch_scale(cfg.normalize, len(batch), cfg.reference_images_per_gpu)
        out: dict[str, Tensor] = {}
        zero = s_reg.sum() * 0
        if cfg.main_ld.enabled:
            t_pos = t_reg[pos.batch_index, pos.anchor_index].reshape(-1, 4, reg_max + 1)
            out["loss_ld"] = (
                scale
                * main_ld_loss(
                    pos.pred_logits, t_pos, pos.weights, cfg.main_ld.temperature, cfg.main_ld.weight, row
                )
                + zero
            )
        if cfg.vlr_ld.enabled:
            region = second_region(
                spec.second_region, assignment, batch.targets, cfg.vlr_ld.alpha_low, cfg.vlr_ld.diou
            )
            b_idx, a_idx = region.nonzero(as_tuple=True)
            if spec.second_weight == "iou":
                region_weights = region[b_idx, a_idx]
            else:  # the student's max class sigmoid there, detached (as the main region's weights)
                region_weights = s_cls.detach()[b_idx, a_idx].sigmoid().max(dim=1).values
            out["loss_ld_vlr"] = (
                scale
                * vlr_ld_loss(
                    s_reg[b_idx, a_idx].reshape(-1, 4, reg_max + 1),
                    t_reg[b_idx, a_idx].reshape(-1, 4, reg_max + 1),
                    region_weights,
                    cfg.vlr_ld.temperature,
                    cfg.vlr_ld.weight,
                    cfg.vlr_ld.divisor,
                    row,
                )
                + zero
            )
        if cfg.main_kd.enabled:
            out["loss_kd"] = (
                main_kd_loss(
                    s_cls[pos.batch_index, pos.anchor_index],
                    t_cls[pos.batch_index, pos.anchor_index],
                    pos.level,
                    self.student.num_levels,
                    cfg.main_kd.temperature,
                    cfg.main_kd.weight,
                )
                + s_cls.sum() * 0
            )
        return out


def _drop_teacher_keys(module: nn.Module, state: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    for key in [k for k in state if k.startswith(prefix + "teacher.")]:
        del state[key]
