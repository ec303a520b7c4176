"""The dataset base and records: unreadable images named and skipped, size mismatch, clipped and
degenerate boxes warned, empty datasets after filtering."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest

from locdistill.data import (
    BadImageError,
    CocoDataset,
    DataFormatError,
    VOCDataset,
)
from tests.data.helpers import coco_dir, voc_dir, write_jpeg


def test_corrupt_and_missing_images_named_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ann_file, img_dir = coco_dir(tmp_path)
    (img_dir / "1.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    good = (img_dir / "2.jpg").read_bytes()
    (img_dir / "2.jpg").write_bytes(good[: len(good) // 2])  # truncated
    (img_dir / "3.jpg").unlink()
    ds = CocoDataset(ann_file, img_dir)
    assert ds.class_names == ["a", "c"] and ds.category_ids == [1, 3]
    assert tuple(ds[0][0].shape) == (3, 48, 64)
    for i, name in ((1, "1.jpg"), (2, "2.jpg"), (3, "3.jpg")):
        with pytest.raises(BadImageError, match=name):
            ds[i]
    skipping = CocoDataset(ann_file, img_dir, skip_bad=True)
    with caplog.at_level(logging.WARNING):
        samples = [skipping[i] for i in range(len(skipping))]
    assert [m.image_id for _, _, m in samples] == [1, 1, 1, 1]  # each bad one replaced by the next readable
    assert skipping.num_skipped == 3 + 2 + 1 and len(skipping.bad_files) == 3
    assert "1.jpg" in caplog.text and "2.jpg" in caplog.text and "3.jpg" in caplog.text
    assert samples[0][1].labels.tolist() == [1]  # category id 3 -> label 1


def test_image_size_mismatch_is_named(tmp_path: Path) -> None:
    ann_file, img_dir = coco_dir(tmp_path, n=1)
    write_jpeg(img_dir / "0.jpg", h=50, w=64)
    with pytest.raises(BadImageError, match=r"0\.jpg.*64x50.*64x48"):
        CocoDataset(ann_file, img_dir)[0]


def test_box_outside_and_zero_size_warned(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ann_file, img_dir = coco_dir(tmp_path, n=2)
    data = json.loads(ann_file.read_text())
    data["annotations"] += [
        {"id": 20, "image_id": 1, "category_id": 1, "bbox": [50, 40, 30, 20], "area": 600, "iscrowd": 0},
        {"id": 21, "image_id": 2, "category_id": 1, "bbox": [70, 10, 5, 5], "area": 25, "iscrowd": 0},
        {"id": 22, "image_id": 2, "category_id": 1, "bbox": [3, 3, 0, 5], "area": 0, "iscrowd": 0},
    ]
    ann_file.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING):
        ds = CocoDataset(ann_file, img_dir)
    assert ds.get_annotation(0).boxes.tolist() == [[5, 6, 25, 16], [50, 40, 64, 48]]
    assert len(ds.get_annotation(1)) == 1
    assert "image 0.jpg box #1 [50, 40, 80, 60] (image 64x48)" in caplog.text  # clipped
    assert "image 1.jpg box #1 [70, 10, 75, 15]" in caplog.text  # outside: nothing left -> dropped
    assert ds.issues["box(es) outside the image clipped to it"] == 1
    assert ds.issues["box(es) of zero or negative size dropped"] == 1

    # VOC: a zero-size box is dropped with a warning naming the file and the box index
    voc_root = voc_dir(tmp_path / "voc", [("a", [("cat", (10, 10, 10, 30)), ("dog", (5, 5, 20, 20))])])
    with caplog.at_level(logging.WARNING):
        voc = VOCDataset(voc_root / "ImageSets/Main/train.txt", classes=["cat", "dog"])
    assert voc.get_annotation(0).boxes.tolist() == [[4, 4, 19, 19]] and voc.get_annotation(
        0
    ).labels.tolist() == [1]
    assert "a.xml box #0" in caplog.text


def test_filter_empty_gt_and_empty_after_filter(tmp_path: Path) -> None:
    ann_file, img_dir = coco_dir(tmp_path, n=3)
    data = json.loads(ann_file.read_text())
    data["annotations"] = data["annotations"][:1]
    ann_file.write_text(json.dumps(data))
    assert len(CocoDataset(ann_file, img_dir)) == 3
    assert len(CocoDataset(ann_file, img_dir, filter_empty_gt=True)) == 1
    data["annotations"] = []
    ann_file.write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match=r"annotations\.json: empty dataset"):
        CocoDataset(ann_file, img_dir, filter_empty_gt=True)
    assert math.isclose(len(CocoDataset(ann_file, img_dir)), 3)
