"""Shared test helpers: paths, a tiny GFL and batch for unit tests, and tiny training configs."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from locdistill.config import Config, load_config
from locdistill.models.detectors.gfl import GFL
from locdistill.models.fpn import FPN
from locdistill.models.heads.gfl import GFLHead
from locdistill.structures import Batch, ImageMeta, Targets

ROOT = Path(__file__).resolve().parents[1]
"""The repository root."""
SHARED = ROOT.parent / "shared"
"""The read-only shared folder next to the repository (data, mmdetection references)."""


class TinyBackbone(nn.Module):
    """Three strided conv stages giving C3-C5 at strides 8/16/32 (a stand-in for a real backbone)."""

    def __init__(self, width: int = 8, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 4, 1), nn.ReLU())
        self.c3 = nn.Sequential(nn.Conv2d(width, width, 3, 2, 1), nn.ReLU())
        self.c4 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, 2, 1), nn.ReLU())
        self.c5 = nn.Sequential(nn.Conv2d(2 * width, 4 * width, 3, 2, 1), nn.ReLU())
        self.out_channels = [width, 2 * width, 4 * width]
        self.mean, self.std = mean, std

    def forward(self, x):
        c3 = self.c3(self.stem(x))
        c4 = self.c4(c3)
        return [c3, c4, self.c5(c4)]


def tiny_gfl(
    seed: int = 0, num_classes: int = 3, reg_max: int = 16, strides=(8, 16, 32, 64, 128), **bb
) -> GFL:
    torch.manual_seed(seed)
    backbone = TinyBackbone(**bb)
    neck = FPN(backbone.out_channels, 32, len(strides))
    head = GFLHead(
        num_classes, 32, 32, stacked_convs=1, num_levels=len(strides), reg_max=reg_max, norm_groups=8
    )
    return GFL(backbone, neck, head, list(strides))


def make_batch(num_images: int = 2, with_gt: bool = True, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(num_images, 3, 128, 128, generator=g)
    targets, metas = [], []
    for i in range(num_images):
        if with_gt:
            boxes = torch.tensor(
                [[10.0, 12.0, 60.0, 70.0], [50.0, 40.0, 120.0, 100.0], [5.0, 80.0, 30.0, 110.0]]
            )
            targets.append(Targets(boxes + i, torch.tensor([0, 1, 2])))
        else:
            targets.append(Targets())
        metas.append(ImageMeta(i, f"img{i}", (128, 128), (128, 128), (128, 128)))
    return Batch(images, targets, metas)


def tiny_overrides(root: Path) -> list[str]:
    """A few-second CPU training run on generated data (shared with the resume and CLI tests)."""
    return [
        "model.backbone.name=resnet18",
        "model.backbone.base_width=16",
        "model.backbone.pretrained=false",
        "model.neck.out_channels=32",
        "model.head.feat_channels=32",
        "model.head.stacked_convs=1",
        "model.head.norm_groups=8",
        "model.head.num_classes=5",
        "data.train.format=synthetic",
        f"data.train.root={root / 'train'}",
        "data.train.num_images=12",
        "data.train.image_size=128",
        "data.val.format=synthetic",
        f"data.val.root={root / 'val'}",
        "data.val.num_images=6",
        "data.val.image_size=128",
        "data.img_scale=[128, 128]",
        "data.images_per_gpu=2",
        "data.workers_per_gpu=0",
        "data.test_images_per_gpu=2",
        "train.epochs=2",
        "train.optim.warmup_iters=4",
        "train.optim.steps=[1]",
        "train.eval_interval=0",
        "train.log_interval=2",
        "metric=coco",
    ]


def tiny_config(tmp_path: Path, extra: list[str] | None = None) -> Config:
    cfg_file = tmp_path / "tiny.yaml"
    if not cfg_file.exists():
        tmp_path.mkdir(parents=True, exist_ok=True)
        cfg_file.write_text(
            "_base_: " + str(ROOT / "src/locdistill/configs/_base_/models/gfl_r50_fpn.yaml") + "\n"
        )
    return load_config(cfg_file, tiny_overrides(tmp_path / "data") + (extra or []))


# A tiny, fast variant of the shipped CPU configs (same data, same pipeline, narrow network).
TINY = [
    "model.backbone.base_width=16",
    "model.neck.out_channels=32",
    "model.head.feat_channels=32",
    "model.head.stacked_convs=1",
    "model.head.norm_groups=8",
    "data.img_scale=[160, 160]",
    "data.workers_per_gpu=0",
    "train.log_interval=1",
    "train.optim.warmup_iters=2",
    "model.test.score_thr=0.0",  # an untrained model: keep its low scores so the metrics are not all 0
]
