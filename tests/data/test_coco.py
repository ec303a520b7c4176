"""COCO json datasets: coco128 against a hand parse, split lists, malformed json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from locdistill.config import DataConfig, DatasetConfig
from locdistill.data import (
    CocoDataset,
    DataFormatError,
    build_dataset,
)
from locdistill.structures import check_targets
from tests.data.helpers import MEAN, STD, coco_dir


def test_coco128_json_counts(coco128_json: CocoDataset) -> None:
    ds = coco128_json
    assert len(ds) == 128
    assert ds.num_classes == 80 and len(ds.category_ids) == 80
    assert (
        ds.category_ids == sorted(ds.category_ids) and ds.category_ids[0] == 1 and ds.category_ids[-1] == 90
    )
    assert ds.class_names[0] == "person" and ds.class_names[-1] == "toothbrush"
    anns = [ds.get_annotation(i) for i in range(len(ds))]
    assert sum(len(a) for a in anns) == 939
    assert sum(int(a.ignore.sum()) for a in anns) == 10  # crowd regions
    assert not any(bool(a.difficult.any()) for a in anns)
    present = torch.cat([a.labels[~a.ignore] for a in anns]).unique()
    assert present.numel() == 71
    # training targets: crowd regions are ignore boxes, never normal boxes
    targets = [ds.get_targets(i) for i in range(len(ds))]
    assert sum(len(t) for t in targets) == 929
    assert sum(t.ignore_boxes.shape[0] for t in targets) == 10
    assert ds.issues == {}


def test_coco128_json_matches_hand_parse(coco128_dir: Path, coco128_json: CocoDataset) -> None:
    data = json.loads((coco128_dir / "annotations/instances_train2017.json").read_text())
    index = coco128_json.image_ids.index(9)
    expected = [a for a in data["annotations"] if a["image_id"] == 9]
    xyxy = torch.tensor(
        [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in expected)], dtype=torch.float32
    )
    ann = coco128_json.get_annotation(index)
    torch.testing.assert_close(ann.boxes, xyxy, rtol=0, atol=0)
    cat_to_label = {c: i for i, c in enumerate(coco128_json.category_ids)}
    assert ann.labels.tolist() == [cat_to_label[a["category_id"]] for a in expected]
    assert coco128_json.image_info(index) == ("000000000009.jpg", 480, 640)
    image, targets, meta = coco128_json[index]
    assert image.dtype == torch.uint8 and tuple(image.shape) == (3, 480, 640)
    assert meta.ori_shape == meta.img_shape == meta.pad_shape == (480, 640) and meta.image_id == 9
    check_targets(targets, meta, num_classes=80)


def test_coco128_to_coco_dict_is_original_json(coco128_dir: Path, coco128_json: CocoDataset) -> None:
    from pycocotools.coco import COCO

    data = json.loads((coco128_dir / "annotations/instances_train2017.json").read_text())
    out = coco128_json.to_coco_dict()
    assert out["annotations"] == data["annotations"] and out["images"] == data["images"]
    assert out["categories"] == data["categories"]
    coco = COCO()
    coco.dataset = out
    coco.createIndex()
    assert len(coco.getAnnIds(iscrowd=True)) == 10


def test_coco128_json_restricted_by_split_list(coco128_dir: Path) -> None:
    cfg = DatasetConfig(
        format="coco",
        root=str(coco128_dir),
        ann_file="annotations/instances_train2017.json",
        img_dir="splits/val.txt",
    )
    ds = build_dataset(cfg, DataConfig(), train=False, mean=MEAN, std=STD)
    assert isinstance(ds, CocoDataset) and len(ds) == 25
    assert sum(len(ds.get_targets(i)) for i in range(len(ds))) == 112
    assert {im["id"] for im in ds.to_coco_dict()["images"]} == set(ds.image_ids)


def test_malformed_json_named(tmp_path: Path) -> None:
    ann_file, img_dir = coco_dir(tmp_path)
    text = ann_file.read_text()
    ann_file.write_text(text[: len(text) // 2])
    with pytest.raises(DataFormatError, match=r"annotations\.json: not valid JSON"):
        CocoDataset(ann_file, img_dir)
    data = json.loads(text)
    data["annotations"][2]["bbox"] = [1, 2, 3]
    ann_file.write_text(json.dumps(data))
    with pytest.raises(
        DataFormatError, match=r"annotations\.json: annotation id 12: bbox must have 4 numbers"
    ):
        CocoDataset(ann_file, img_dir)
    data["annotations"][2]["bbox"] = [1, 2, 3, 4]
    data["annotations"][2]["image_id"] = 99
    ann_file.write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match=r"annotation id 12: image_id 99"):
        CocoDataset(ann_file, img_dir)
    del data["images"][0]["file_name"]
    ann_file.write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match=r"image #0 \(id 1\): missing 'file_name'"):
        CocoDataset(ann_file, img_dir)
    with pytest.raises(DataFormatError, match="annotation file not found"):
        CocoDataset(tmp_path / "nope.json", img_dir)
