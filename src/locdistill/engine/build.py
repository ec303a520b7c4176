"""What the training loop trains: the student detector (any family), the training module around it
(:class:`DetectorLoss` for plain training, a :class:`~locdistill.distill.distiller.Distiller` for LD),
its DDP wrapper and the data."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from locdistill.config import Config
from locdistill.data import build_dataset, build_test_loader, build_train_loader
from locdistill.distill.distiller import Distiller
from locdistill.distill.teacher_cache import build_teacher_cache
from locdistill.engine.teacher import build_teacher
from locdistill.models.build import build_detector
from locdistill.models.detectors.base import DenseDetector
from locdistill.structures import Batch

logger = logging.getLogger(__name__)


class DetectorLoss(nn.Module):
    """Training module without a teacher: ``forward(batch)`` -> the student's loss dict."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        outputs = self.student(batch.images)
        return self.student.loss(outputs, batch.targets, batch.metas)  # type: ignore[operator]


def build_module(cfg: Config, world_size: int, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """``(student detector, training module)``; the module is a Distiller when the config distils."""
    model = build_detector(cfg.model)
    if cfg.train.sync_bn and world_size > 1:
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            logger.warning("train.sync_bn is ignored on %s (SyncBatchNorm needs CUDA)", device.type)
    if cfg.distill is not None:
        return model, build_distiller(cfg, model)
    return model, DetectorLoss(model)


def build_distiller(cfg: Config, student: DenseDetector[Any]) -> Distiller:
    """The training module for a config with a ``distill`` section: the teacher built and loaded by
    :func:`~locdistill.engine.teacher.build_teacher`, handed to the Distiller with the teacher cache
    (``distill.cache``) if there is one."""
    assert cfg.distill is not None
    teacher, digest = build_teacher(cfg)
    cache = build_teacher_cache(cfg, student, teacher)
    return Distiller(
        student, teacher, cfg.distill, cfg.data.images_per_gpu, teacher_sha256=digest, cache=cache
    )


def wrap_ddp(module: nn.Module, device: torch.device) -> DistributedDataParallel:
    """DDP over the training module; a Distiller lists its teacher for DDP to ignore."""
    return DistributedDataParallel(
        module,
        device_ids=[device.index] if device.type == "cuda" else None,
        broadcast_buffers=False,  # as mmdetection; BN statistics are frozen (norm_eval) or synced (SyncBN)
        find_unused_parameters=False,
    )


def build_data(cfg: Config, mean: Any, std: Any, distributed: bool) -> tuple[Any, Any, Any, Any]:
    """``(train_set, train_loader, val_set, val_loader)``; the val pair is ``None`` without evaluation."""
    d = cfg.data
    train_set = build_dataset(d.train, d, train=True, mean=mean, std=std)
    train_loader = build_train_loader(
        train_set, d.images_per_gpu, d.workers_per_gpu, cfg.train.seed, distributed
    )
    val_set, val_loader = None, None
    if cfg.train.eval_interval > 0:
        val_set = build_dataset(d.val, d, train=False, mean=mean, std=std)
        val_loader = build_test_loader(val_set, d.test_images_per_gpu, d.workers_per_gpu, distributed)
    return train_set, train_loader, val_set, val_loader


def check_classes(dataset: Any, num_classes: int) -> list[str]:
    """The training data's class names; an error when their number is not the head's."""
    names = [str(n) for n in getattr(dataset, "class_names", [])]
    if names and len(names) != num_classes:
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise ValueError(
            f"model.head.num_classes is {num_classes} but the training data has {len(names)} classes "
            f"({shown}); set model.head.num_classes={len(names)} or pick classes with data.train.classes"
        )
    return names
