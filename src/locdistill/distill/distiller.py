"""Teacher -> student wrapper used for training with LD.

The teacher is a :class:`~locdistill.models.gfl.GFL` loaded from its own config and checkpoint. It is
kept in eval mode (also after ``.train()``), runs under ``torch.inference_mode`` on the very batch
tensor the student sees, has no trainable parameters (so it is outside the optimizer and DDP's
gradient sync), is dropped from ``state_dict()``, and still moves with ``.to()``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from locdistill.config import Config, DistillConfig, load_config
from locdistill.distill.crosskd import CrossKD, TeacherResult, run_teacher, teacher_depth
from locdistill.distill.ld_loss import batch_scale, main_kd_loss, main_ld_loss, vlr_ld_loss
from locdistill.distill.regions import vlr_region
from locdistill.distill.teacher_cache import TeacherCache, fingerprint
from locdistill.models.gfl import GFL, build_gfl
from locdistill.models.gfl_head import HeadOutputs
from locdistill.models.gfl_loss import flatten_levels, positive_samples
from locdistill.models.weights import load_detector_weights, sha256_file
from locdistill.structures import Batch

log = logging.getLogger(__name__)


def check_fit(student: GFL, teacher: GFL, need_classes: bool) -> None:
    """Raise ``ValueError`` saying what differs when the teacher's locations do not correspond to the
    student's one to one (strides, anchors, reg_max, levels) or, with class KD, the class count."""
    problems = []
    if list(student.strides) != list(teacher.strides):
        problems.append(f"strides: student {student.strides} vs teacher {teacher.strides}")
    if student.octave_base_scale != teacher.octave_base_scale:
        problems.append(
            f"anchor scale (octave_base_scale): student {student.octave_base_scale} "
            f"vs teacher {teacher.octave_base_scale}"
        )
    if student.reg_max != teacher.reg_max:
        problems.append(f"reg_max: student {student.reg_max} vs teacher {teacher.reg_max}")
    if len(student.head.scales) != len(teacher.head.scales):
        problems.append(
            f"FPN levels: student {len(student.head.scales)} vs teacher {len(teacher.head.scales)}"
        )
    if need_classes and student.num_classes != teacher.num_classes:
        problems.append(
            f"num_classes (needed by class KD: main_kd, crosskd): student {student.num_classes} "
            f"vs teacher {teacher.num_classes}"
        )
    if problems:
        raise ValueError("the teacher does not fit the student: " + "; ".join(problems))


class Distiller(nn.Module):
    """Student GFL + frozen teacher GFL; ``forward(batch)`` returns the student's losses plus LD terms.

    Args:
        student: the detector being trained.
        teacher: a trained detector with the same strides, anchors and reg_max.
        cfg: which terms are on, their weights and temperatures, and the normalisation.
        images_per_gpu: for the batch-size-invariant normalisation and the official-mode warning.
        cache: where the teacher's outputs are read from and stored (``distill.cache``), or ``None``.
    """

    def __init__(
        self,
        student: GFL,
        teacher: GFL,
        cfg: DistillConfig,
        images_per_gpu: int = 2,
        cache: TeacherCache | None = None,
    ) -> None:
        super().__init__()
        check_fit(student, teacher, cfg.main_kd.enabled or cfg.crosskd.enabled)
        self.student = student
        self.teacher = teacher
        self.cfg = cfg
        self.images_per_gpu = images_per_gpu
        self.teacher_sha256 = ""
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.teacher.eval()
        self._register_state_dict_hook(_drop_teacher_keys)
        # Tell DDP to leave the teacher alone (no gradient sync, no buffer broadcast).
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

    def teacher_outputs(self, images: Tensor) -> HeadOutputs:
        """The teacher's raw outputs on the batch (no graph; usable as constant targets)."""
        with torch.inference_mode():
            out = self.teacher(self.teacher_inputs(images))
        # Inference tensors cannot be saved for backward; a clone outside inference mode can.
        return HeadOutputs(
            [c.clone().float() for c in out.cls_scores], [r.clone().float() for r in out.bbox_preds]
        )

    def teacher_result(self, batch: Batch) -> TeacherResult:
        """The teacher's outputs on the batch (and CrossKD's hold statistics): from ``distill.cache``
        where it has them, else by running the teacher."""
        depth = self.crosskd.teacher_layer if self.crosskd is not None else None

        def compute(images: Tensor) -> TeacherResult:
            return run_teacher(self.teacher, self.teacher_inputs(images), depth)

        if self.cache is None:
            return compute(batch.images)
        return self.cache.fetch(batch, compute, with_hold=depth is not None)

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        """Student GFL losses and the enabled LD terms (``loss_ld``, ``loss_ld_vlr``, ``loss_kd``) and
        CrossKD terms (``loss_crosskd_cls``, ``loss_crosskd_reg``, ``loss_crosskd_bbox``)."""
        # The teacher first: its activations are freed before the student's graph is built, so the
        # two networks' working memory never coexists (lower peak memory, fewer page faults on CPU).
        teacher = self.teacher_result(batch)  # live or distill.cache
        t_out = teacher.outputs
        if self.crosskd is None:
            s_out = self.student(batch.images)
        else:  # the same outputs, plus the student's tower features at the crossing layer
            s_out, s_tower = self.crosskd.student_forward(self.student, batch.images)
        s_out = HeadOutputs([c.float() for c in s_out.cls_scores], [r.float() for r in s_out.bbox_preds])
        gfl_targets = self.student.get_targets(s_out, batch.targets, batch.metas)
        if self.cache is not None:
            self.cache.after_targets(gfl_targets, batch.targets)
        per_level = self.student.loss_per_level(s_out, gfl_targets)
        losses = {k: per_level[k].sum() for k in ("loss_cls", "loss_bbox", "loss_dfl")}
        losses.update(self.distill_losses(s_out, t_out, gfl_targets, batch))
        if self.crosskd is not None:  # CrossKD: the student's tower features through the teacher head
            assert teacher.hold_sums is not None
            cross = self.crosskd.cross_outputs(self.teacher.head, s_tower, teacher.hold_sums)
            losses.update(self.crosskd.losses(cross, t_out, gfl_targets, self.student.integral))
        return losses

    def log_stats(self) -> dict[str, float]:
        """Extra numbers for the training log: the teacher cache's hits and misses since the last call."""
        return self.cache.take_stats() if self.cache is not None else {}

    def distill_losses(
        self, s_out: HeadOutputs, t_out: HeadOutputs, gfl_targets: Any, batch: Batch
    ) -> dict[str, Tensor]:
        """The LD terms alone (see :mod:`locdistill.distill.ld_loss`)."""
        cfg = self.cfg
        reg_max = self.student.reg_max
        s_cls, s_reg = flatten_levels(s_out.cls_scores), flatten_levels(s_out.bbox_preds)
        t_cls, t_reg = flatten_levels(t_out.cls_scores), flatten_levels(t_out.bbox_preds)
        pos = positive_samples(s_cls, s_reg, gfl_targets, self.student.integral)
        scale = batch_scale(cfg.normalize, len(batch), cfg.reference_images_per_gpu)
        out: dict[str, Tensor] = {}
        zero = s_reg.sum() * 0
        if cfg.main_ld.enabled:
            t_pos = t_reg[pos.batch_index, pos.anchor_index].reshape(-1, 4, reg_max + 1)
            out["loss_ld"] = (
                scale
                * main_ld_loss(
                    pos.pred_logits, t_pos, pos.weights, cfg.main_ld.temperature, cfg.main_ld.weight
                )
                + zero
            )
        if cfg.vlr_ld.enabled:
            region = vlr_region(gfl_targets, batch.targets, cfg.vlr_ld.alpha_low, cfg.vlr_ld.diou)
            b_idx, a_idx = region.nonzero(as_tuple=True)
            out["loss_ld_vlr"] = (
                scale
                * vlr_ld_loss(
                    s_reg[b_idx, a_idx].reshape(-1, 4, reg_max + 1),
                    t_reg[b_idx, a_idx].reshape(-1, 4, reg_max + 1),
                    region[b_idx, a_idx],
                    cfg.vlr_ld.temperature,
                    cfg.vlr_ld.weight,
                    cfg.vlr_ld.divisor,
                )
                + zero
            )
        if cfg.main_kd.enabled:
            out["loss_kd"] = (
                main_kd_loss(
                    s_cls[pos.batch_index, pos.anchor_index],
                    t_cls[pos.batch_index, pos.anchor_index],
                    pos.level,
                    len(s_out.cls_scores),
                    cfg.main_kd.temperature,
                    cfg.main_kd.weight,
                )
                + s_cls.sum() * 0
            )
        return out


def _drop_teacher_keys(module: nn.Module, state: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    for key in [k for k in state if k.startswith(prefix + "teacher.")]:
        del state[key]


def resolve_teacher_config(cfg: Config) -> Path:
    """The teacher config path: as given, else relative to the student config's folder."""
    assert cfg.distill is not None
    given = Path(cfg.distill.teacher_config)
    if not given.is_absolute() and cfg.source:
        beside = Path(cfg.source).parent / given
        if beside.is_file():
            return beside
    return given


def build_teacher(cfg: Config) -> tuple[GFL, str]:
    """Build the teacher from its own config and load its checkpoint; returns ``(teacher, sha256)``."""
    d = cfg.distill
    if d is None:
        raise ValueError("the config has no 'distill' section")
    if not d.teacher_config:
        raise ValueError("distill.teacher_config is required: the teacher's own config file")
    if not d.teacher_checkpoint:
        raise ValueError("distill.teacher_checkpoint is required: the trained teacher's weights")
    t_cfg = load_config(resolve_teacher_config(cfg))
    t_cfg.model.backbone.pretrained = False  # its weights come from the checkpoint
    teacher = build_gfl(t_cfg.model)
    report = load_detector_weights(teacher, d.teacher_checkpoint)
    log.info("teacher %s loaded from %s (%s format)", t_cfg.source, d.teacher_checkpoint, report.format)
    return teacher, sha256_file(d.teacher_checkpoint)


def build_teacher_cache(cfg: Config, student: GFL, teacher: GFL) -> TeacherCache | None:
    """The ``distill.cache`` of a config (``None`` when unset); its settings name everything the
    teacher's outputs depend on besides the per-image key."""
    d = cfg.distill
    if d is None or not d.cache:
        return None
    if d.cache_anchors == "needed" and d.crosskd.enabled:
        raise ValueError(
            "distill.cache_anchors=needed cannot serve CrossKD, which reads the teacher at every anchor; "
            "set distill.cache_anchors=all"
        )
    train_data = cfg.data.train
    settings = {
        "teacher": fingerprint(teacher),
        "teacher_mean_std": [list(teacher.mean), list(teacher.std)],
        "input_mean_std": [list(student.mean), list(student.std)],
        "data": {
            "format": train_data.format,
            "root": str(Path(train_data.root).resolve()),
            "ann_file": train_data.ann_file,
            "img_dir": train_data.img_dir,
            "classes": list(train_data.classes),
            "num_images": train_data.num_images,
            "image_size": train_data.image_size,
            "seed": train_data.seed,
            "size_divisor": cfg.data.size_divisor,
        },
        "hold_depth": teacher_depth(d.crosskd) if d.crosskd.enabled else None,
    }
    vlr = (d.vlr_ld.alpha_low, d.vlr_ld.diou) if d.vlr_ld.enabled else None
    return TeacherCache(d.cache, settings, d.cache_dtype, d.cache_anchors, vlr)


def build_distiller(cfg: Config, student: GFL) -> Distiller:
    """The training module for a config with a ``distill`` section."""
    assert cfg.distill is not None
    teacher, digest = build_teacher(cfg)
    cache = build_teacher_cache(cfg, student, teacher)
    distiller = Distiller(student, teacher, cfg.distill, cfg.data.images_per_gpu, cache)
    distiller.teacher_sha256 = digest
    return distiller
