"""VOC XML datasets: bccd against a hand parse (mmdetection's -1), difficult objects, bad XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch

from locdistill.data import (
    DataFormatError,
    VOCDataset,
)
from tests.data.helpers import BCCD_CLASSES, voc_dir


def test_bccd_counts(bccd_all: VOCDataset, bccd_dir: Path) -> None:
    ds = bccd_all
    assert len(ds) == 364
    labels = torch.cat([ds.get_annotation(i).labels for i in range(len(ds))])
    # README: RBC 4155, WBC 372, Platelets 361; its 2 zero-size RBC boxes are dropped
    assert torch.bincount(labels, minlength=3).tolist() == [4155 - 2, 372, 361]
    assert ds.issues == {"box(es) of zero or negative size dropped": 2}
    for split, n_images, n_boxes in (("train", 205, 2805), ("val", 87, 1138), ("test", 72, 945)):
        part = VOCDataset(bccd_dir / "ImageSets/Main" / f"{split}.txt", classes=BCCD_CLASSES)
        total = sum(len(part.get_annotation(i)) for i in range(len(part))) + part.issues.get(
            "box(es) of zero or negative size dropped", 0
        )
        assert (len(part), total) == (n_images, n_boxes)


def test_bccd_matches_hand_parse_minus_one(bccd_all: VOCDataset, bccd_dir: Path) -> None:
    index = [ds_name for ds_name, _, _ in (bccd_all.image_info(i) for i in range(len(bccd_all)))].index(
        "JPEGImages/BloodImage_00000.jpg"
    )
    root = ET.parse(bccd_dir / "Annotations/BloodImage_00000.xml").getroot()
    expected = [
        [float(o.find(f"bndbox/{k}").text) - 1 for k in ("xmin", "ymin", "xmax", "ymax")]  # type: ignore[union-attr]
        for o in root.findall("object")
    ]
    names = [o.find("name").text for o in root.findall("object")]  # type: ignore[union-attr]
    ann = bccd_all.get_annotation(index)
    torch.testing.assert_close(ann.boxes, torch.tensor(expected), rtol=0, atol=0)
    assert ann.labels.tolist() == [BCCD_CLASSES.index(n) for n in names]  # type: ignore[arg-type]
    image, targets, meta = bccd_all[index]
    assert tuple(image.shape) == (3, 480, 640) and len(targets) == len(expected)


def test_bccd_to_coco_dict(bccd_all: VOCDataset) -> None:
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = bccd_all.to_coco_dict()
    coco.createIndex()
    assert len(coco.getImgIds()) == 364 and len(coco.getAnnIds()) == 4886
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == BCCD_CLASSES


def test_voc_bad_input_named(tmp_path: Path) -> None:
    root = voc_dir(
        tmp_path / "a", [("img1", [("cat", (1, 1, 10, 10))]), ("img2", [("zebra", (1, 1, 10, 10))])]
    )
    with pytest.raises(DataFormatError, match=r"img2\.xml: object #0: unknown class name 'zebra'"):
        VOCDataset(root / "ImageSets/Main/train.txt", classes=["cat"])
    (root / "Annotations/img2.xml").write_text("<annotation><object><name>cat</name>")
    with pytest.raises(DataFormatError, match=r"img2\.xml: not valid XML"):
        VOCDataset(root / "ImageSets/Main/train.txt", classes=["cat"])
    (root / "Annotations/img2.xml").write_text(
        "<annotation><object><name>cat</name><bndbox><xmin>1</xmin>"
        "<ymin>1</ymin><xmax>5</xmax></bndbox></object></annotation>"
    )
    with pytest.raises(DataFormatError, match=r"img2\.xml: object #0 <bndbox>: missing <ymax>"):
        VOCDataset(root / "ImageSets/Main/train.txt", classes=["cat"])
    (root / "ImageSets/Main/empty.txt").write_text("\n")
    with pytest.raises(DataFormatError, match=r"empty\.txt: empty dataset"):
        VOCDataset(root / "ImageSets/Main/empty.txt", classes=["cat"])
    with pytest.raises(DataFormatError, match=r"list file not found: .*missing\.txt"):
        VOCDataset(root / "ImageSets/Main/missing.txt", classes=["cat"])


def test_voc_difficult_are_ignore_boxes(tmp_path: Path) -> None:
    root = voc_dir(tmp_path, [("img1", [("cat", (1, 1, 10, 10))])], difficult=True)
    ds = VOCDataset(root / "ImageSets/Main/train.txt", classes=["cat"])
    ann = ds.get_annotation(0)
    assert ann.difficult.tolist() == [True] and ann.boxes.tolist() == [[0, 0, 9, 9]]
    targets = ds.get_targets(0)
    assert len(targets) == 0 and targets.ignore_boxes.tolist() == [[0, 0, 9, 9]]
    assert ds.to_coco_dict()["annotations"][0]["iscrowd"] == 1
