"""build_dataset from the config: synthetic, COCO, YOLO and VOC splits with their loaders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from locdistill.config import DataConfig, DatasetConfig
from locdistill.data import (
    RepeatDataset,
    VOCDataset,
    YoloDataset,
    build_dataset,
    build_test_loader,
    build_train_loader,
    collate,
)
from locdistill.structures import Batch, check_targets
from tests.data.helpers import BCCD_CLASSES, MEAN, STD


def test_build_dataset_synthetic_and_loaders() -> None:
    data_cfg = DataConfig(
        img_scale=[192, 192], size_divisor=32, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375]
    )
    cfg = DatasetConfig(format="synthetic", root="unused", num_images=10, image_size=160, seed=1, repeat=2)
    train = build_dataset(cfg, data_cfg, train=True)
    assert isinstance(train, RepeatDataset) and len(train) == 20 and train.num_classes == 5
    image, targets, meta = train[0]
    assert image.dtype == torch.float32 and meta.img_shape == (192, 192) and meta.scale_factor == (1.2, 1.2)
    loader = build_train_loader(train, images_per_gpu=4, workers=0, seed=7)
    sampler = loader.batch_sampler.sampler  # type: ignore[union-attr]
    loader.batch_sampler.set_epoch(0)  # type: ignore[union-attr]
    first = list(sampler)
    loader.batch_sampler.set_epoch(0)  # type: ignore[union-attr]
    assert list(sampler) == first and sorted(first) == list(range(20))
    loader.batch_sampler.set_epoch(1)  # type: ignore[union-attr]
    assert list(sampler) != first
    batches = list(loader)
    assert len(batches) == 5 and all(isinstance(b, Batch) for b in batches)
    assert tuple(batches[0].images.shape) == (4, 3, 192, 192)
    for b in batches:
        for t, m in zip(b.targets, b.metas):
            check_targets(t, m, num_classes=5)

    val = build_dataset(
        DatasetConfig(format="synthetic", num_images=5, image_size=160, seed=1), data_cfg, train=False
    )
    test_loader = build_test_loader(val, images_per_gpu=2, workers=0)
    ids = [m.image_id for b in test_loader for m in b.metas]
    assert ids == val.image_ids  # type: ignore[union-attr]


def test_build_dataset_real(coco128_dir: Path, bccd_dir: Path) -> None:
    data_cfg = DataConfig(img_scale=[512, 320])
    yolo = build_dataset(
        DatasetConfig(format="yolo", root=str(coco128_dir), ann_file="splits/train.txt"),
        data_cfg,
        train=True,
        mean=MEAN,
        std=STD,
    )
    assert isinstance(yolo, YoloDataset) and len(yolo) == 101  # 103 listed; 250 and 508 have no labels
    image, targets, meta = yolo[0]
    assert max(image.shape[-2:]) <= 512 and min(image.shape[-2:]) <= 320
    voc = build_dataset(
        DatasetConfig(
            format="voc",
            root=str(bccd_dir.parent),
            ann_file="BCCD/ImageSets/Main/val.txt,BCCD/ImageSets/Main/test.txt",
            classes=BCCD_CLASSES,
        ),
        data_cfg,
        train=False,
        mean=MEAN,
        std=STD,
    )
    assert isinstance(voc, VOCDataset) and len(voc) == 87 + 72
    batch = collate([voc[0], voc[1]])
    assert batch.images.shape[-1] % 32 == 0 and batch.metas[0].scale_factor == (427 / 640, 320 / 480)


@pytest.mark.parametrize("workers", [0, 1])
def test_normalize_on_device_gives_the_same_batches(coco128_dir: Path, workers: int) -> None:
    """The training dataset of a run stays uint8; its loader's batches, normalised by ``Batch.to``, are
    bit for bit those of the float pipeline (multi-scale, flips, padding of mixed shapes included)."""
    data_cfg = DataConfig(img_scale=[320, 256], multiscale=[[320, 200], [320, 288]], size_divisor=32)
    cfg = DatasetConfig(
        format="coco",
        root=str(coco128_dir),
        ann_file="annotations/instances_train2017.json",
        img_dir="images/train2017",
    )
    plain = build_dataset(cfg, data_cfg, train=True, mean=MEAN, std=STD)
    deferred = build_dataset(cfg, data_cfg, train=True, mean=MEAN, std=STD, normalize_on_device=True)
    assert plain.pixel_norm is None and deferred.pixel_norm is not None
    for ds in (plain, deferred):
        ds.records = ds.records[:6]  # type: ignore[union-attr]
    assert deferred[0][0].dtype == torch.uint8 and plain[0][0].dtype == torch.float32
    expected = list(build_train_loader(plain, images_per_gpu=3, workers=0, seed=3))
    got = list(build_train_loader(deferred, images_per_gpu=3, workers=workers, seed=3))
    assert len(got) == len(expected) == 2
    for raw, ref in zip(got, expected):
        assert raw.images.dtype == torch.uint8 and raw.pixel_norm == deferred.pixel_norm
        batch = raw.to("cpu")
        assert batch.pixel_norm is None and batch.images.dtype == torch.float32
        assert torch.equal(batch.images, ref.images)
        assert [m.img_shape for m in batch.metas] == [m.img_shape for m in ref.metas]
        assert all(torch.equal(a.boxes, b.boxes) for a, b in zip(batch.targets, ref.targets))
    with pytest.raises(ValueError, match="normalize_on_device=True"):
        build_test_loader(deferred, images_per_gpu=2)
