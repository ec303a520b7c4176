"""YOLO text-label datasets: coco128 against a hand parse and against its COCO json; bad labels."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from locdistill.data import (
    BadImageError,
    CocoDataset,
    DataFormatError,
    YoloDataset,
)
from tests.data.helpers import write_jpeg


def test_coco128_yolo_counts(coco128_yolo: YoloDataset, coco128_dir: Path) -> None:
    ds = coco128_yolo
    assert len(ds) == 128 and ds.num_classes == 80
    assert sum(len(ds.get_annotation(i)) for i in range(len(ds))) == 929
    empty = sorted(Path(ds.image_info(i)[0]).name for i in range(len(ds)) if len(ds.get_annotation(i)) == 0)
    assert empty == ["000000000250.jpg", "000000000508.jpg"]
    for split, n_images, n_boxes in (("train", 103, 817), ("val", 25, 112)):
        part = YoloDataset(coco128_dir / "splits" / f"{split}.txt", coco128_dir)
        assert len(part) == n_images
        assert sum(len(part.get_annotation(i)) for i in range(len(part))) == n_boxes


def test_coco128_yolo_matches_hand_parse(coco128_dir: Path, coco128_yolo: YoloDataset) -> None:
    index = [Path(coco128_yolo.image_info(i)[0]).name for i in range(len(coco128_yolo))].index(
        "000000000009.jpg"
    )
    _, height, width = coco128_yolo.image_info(index)
    rows = [
        line.split() for line in (coco128_dir / "labels/train2017/000000000009.txt").read_text().splitlines()
    ]
    expected = [
        [
            (float(cx) - float(w) / 2) * width,
            (float(cy) - float(h) / 2) * height,
            (float(cx) + float(w) / 2) * width,
            (float(cy) + float(h) / 2) * height,
        ]
        for _, cx, cy, w, h in rows
    ]
    ann = coco128_yolo.get_annotation(index)
    torch.testing.assert_close(ann.boxes, torch.tensor(expected).clamp(min=0), rtol=0, atol=1e-4)
    assert ann.labels.tolist() == [int(r[0]) for r in rows]


def test_coco128_yolo_and_json_agree(coco128_json: CocoDataset, coco128_yolo: YoloDataset) -> None:
    by_name = {Path(coco128_yolo.image_info(i)[0]).name: i for i in range(len(coco128_yolo))}
    compared = 0
    for i in range(len(coco128_json)):
        name, height, width = coco128_json.image_info(i)
        j = by_name[name]
        assert coco128_yolo.image_info(j)[1:] == (height, width)
        a, b = coco128_json.get_annotation(i), coco128_yolo.get_annotation(j)
        boxes_a, labels_a = a.boxes[~a.ignore], a.labels[~a.ignore]
        assert len(boxes_a) == len(b)
        if len(b) == 0:
            continue
        # match each json box to its nearest YOLO box (the files list them in different orders)
        dist = (boxes_a[:, None, :] - b.boxes[None, :, :]).abs().amax(dim=2)
        nearest = dist.argmin(dim=1)
        assert sorted(nearest.tolist()) == list(range(len(b)))
        assert float(dist.min(dim=1).values.max()) < 0.02  # YOLO keeps 6 decimals of normalised coordinates
        assert labels_a.tolist() == b.labels[nearest].tolist()
        compared += len(b)
    assert compared == 929


def test_yolo_bad_input_named(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("a\nb\n")
    for i in range(3):
        write_jpeg(tmp_path / "images" / f"{i}.jpg")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels/0.txt").write_text("0 0.5 0.5 0.25 0.5\n1 0.5 0.5 0.1\n")
    with pytest.raises(DataFormatError, match=r"0\.txt: line 2: expected 'class cx cy w h'"):
        YoloDataset(tmp_path / "images", tmp_path)
    (tmp_path / "labels/0.txt").write_text("5 0.5 0.5 0.25 0.5\n")
    with pytest.raises(DataFormatError, match=r"0\.txt: line 1: class index 5"):
        YoloDataset(tmp_path / "images", tmp_path)
    (tmp_path / "labels/0.txt").write_text("1 0.5 0.5 0.25 0.5\n")
    (tmp_path / "images/2.jpg").write_bytes(b"garbage")
    with pytest.raises(BadImageError, match=r"2\.jpg"):
        YoloDataset(tmp_path / "images", tmp_path)
    ds = YoloDataset(tmp_path / "images", tmp_path, skip_bad=True)
    assert len(ds) == 2 and ds.num_skipped == 1
    assert ds.get_annotation(0).boxes.tolist() == [[24, 12, 40, 36]] and ds.get_annotation(
        0
    ).labels.tolist() == [1]
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataFormatError, match=r"empty\.txt: empty dataset"):
        YoloDataset(tmp_path / "empty.txt", tmp_path)
