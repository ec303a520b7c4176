"""Tiny detectors and batches for the distillation tests (CPU, milliseconds)."""

from __future__ import annotations

import torch
from torch import nn

from locdistill.models.detectors.gfl import GFL
from locdistill.models.fpn import FPN
from locdistill.models.heads.gfl import GFLHead
from locdistill.structures import Batch, ImageMeta, Targets
from tests.helpers import TinyBackbone


def tiny_gfl(
    seed: int = 0,
    feat: int = 32,
    convs: int = 2,
    num_classes: int = 3,
    reg_max: int = 16,
    fpn: int = 32,
    dgqp: bool = False,
    **backbone,
) -> GFL:
    """A GFL with a tiny backbone; head weights drawn wider than the init so that the towers matter."""
    torch.manual_seed(seed)
    bb = TinyBackbone(**backbone)
    neck = FPN(bb.out_channels, fpn, 5)
    head = GFLHead(
        num_classes, fpn, feat, stacked_convs=convs, num_levels=5, reg_max=reg_max, norm_groups=8, dgqp=dgqp
    )
    for name, p in head.named_parameters():
        if "conv" in name and p.ndim == 4:
            nn.init.normal_(p, 0, 0.1)
    return GFL(bb, neck, head, [8, 16, 32, 64, 128])


def make_batch(num_images: int = 2, seed: int = 0, size: int = 128, flipped: bool = False) -> Batch:
    """Random images with three boxes each; image ids ``seed*10 + i``."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(num_images, 3, size, size, generator=g)
    targets, metas = [], []
    for i in range(num_images):
        boxes = torch.tensor([[10.0, 12.0, 60.0, 70.0], [50.0, 40.0, 120.0, 100.0], [5.0, 80.0, 30.0, 110.0]])
        targets.append(Targets(boxes + i, torch.tensor([0, 1, 2])))
        metas.append(
            ImageMeta(
                seed * 10 + i,
                f"img{seed * 10 + i}",
                (size, size),
                (size, size),
                (size, size),
                flipped=flipped,
            )
        )
    return Batch(images, targets, metas)


def sub_batch(batch: Batch, index: list[int]) -> Batch:
    return Batch(batch.images[index], [batch.targets[i] for i in index], [batch.metas[i] for i in index])
