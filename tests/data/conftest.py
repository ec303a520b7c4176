"""Datasets over the shared coco128 and bccd data, built once per test module (skipped without the data)."""

from __future__ import annotations

from pathlib import Path

import pytest

from locdistill.data import (
    CocoDataset,
    VOCDataset,
    YoloDataset,
)
from tests.data.helpers import BCCD_CLASSES


@pytest.fixture(scope="module")
def coco128_json(coco128_dir: Path) -> CocoDataset:
    return CocoDataset(coco128_dir / "annotations/instances_train2017.json", coco128_dir / "images/train2017")


@pytest.fixture(scope="module")
def coco128_yolo(coco128_dir: Path) -> YoloDataset:
    return YoloDataset(coco128_dir / "images/train2017", coco128_dir)


@pytest.fixture(scope="module")
def bccd_all(bccd_dir: Path) -> VOCDataset:
    main = bccd_dir / "ImageSets/Main"
    return VOCDataset([main / "trainval.txt", main / "test.txt"], classes=BCCD_CLASSES)
