"""``locdistill inspect-data``: class counts and box sizes per split, and ground truth drawn on a few
images; on BCCD (VOC XML, counted again here with ElementTree), on coco128 through the shipped
Ultralytics data.yaml (the counts of its README) and on synthetic data."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from locdistill.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_inspect_bccd_with_data_root(
    bccd_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "inspect"
    args = ["inspect-data", "gfl/gfl_r18_fpn_bccd", "--data-root", str(bccd_dir), "--out", str(out)]
    assert main([*args, "--num-images", "2"]) == 0
    printed = capsys.readouterr().out
    assert "== train" in printed and "== val" in printed and "RBC" in printed
    stats = json.loads((out / "stats.json").read_text())
    for split, listing in (("train", "trainval"), ("val", "test")):
        ids = (bccd_dir / "ImageSets" / "Main" / f"{listing}.txt").read_text().split()
        expected: dict[str, int] = {"RBC": 0, "WBC": 0, "Platelets": 0}
        for image_id in ids:
            for obj in ET.parse(bccd_dir / "Annotations" / f"{image_id}.xml").findall("object"):
                box = obj.find("bndbox")
                assert box is not None
                x1, y1, x2, y2 = (float(box.findtext(k) or 0) for k in ("xmin", "ymin", "xmax", "ymax"))
                if x2 > x1 and y2 > y1:  # the two zero-size boxes of trainval are dropped
                    expected[obj.findtext("name") or ""] += 1
        s = stats[split]
        assert s["images"] == len(ids) and s["class_counts"] == expected, split
        assert s["boxes"] == sum(expected.values())
        assert sum(s["coco_size_counts"].values()) == s["boxes"]
        assert s["box_size_px"]["min"] <= s["box_size_px"]["median"] <= s["box_size_px"]["max"]
        # 640x480 photos resized into 416x416: 0.65 of the original size at the network input
        assert s["box_size_input_px"]["median"] == pytest.approx(0.65 * s["box_size_px"]["median"], rel=1e-3)
    drawn = sorted(out.glob("*.jpg"))
    assert [p.name.split("_")[0] for p in drawn] == ["train", "train", "val", "val"]
    assert Image.open(drawn[0]).size == (640, 480)
    for name in ("class_counts.png", "box_sizes.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_inspect_coco128_through_the_ultralytics_data_yaml(
    coco128_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # the shipped data.yaml's path is ../shared/data/coco128 from the repository
    config = "configs/gfl/gfl_r18_fpn_coco128_yolo.yaml"
    assert main(["inspect-data", config, "--data-root", str(coco128_dir)]) == 0  # printing only
    printed = capsys.readouterr().out
    val = printed.split("== val")[1]
    # coco128's README: val split 25 images, 112 boxes; train 103 images, 817 boxes
    assert "images 25 " in val and "boxes 112 " in val
    assert "images 103 " in printed.split("== val")[0] and "boxes 817 " in printed.split("== val")[0]


def test_inspect_synthetic_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "syn"
    sets = [
        "data.train.num_images=6",
        "data.val.num_images=3",
        "data.train.image_size=96",
        "data.val.image_size=96",
    ]
    assert (
        main(["inspect-data", "demo/demo_base", "--out", str(out), "--num-images", "1", "--set", *sets]) == 0
    )
    stats = json.loads((out / "stats.json").read_text())
    assert stats["train"]["images"] == 6 and stats["val"]["images"] == 3
    assert stats["val"]["boxes"] == sum(stats["val"]["class_counts"].values()) > 0
    assert len(list(out.glob("*.jpg"))) == 2
    capsys.readouterr()
    assert main(["inspect-data", "demo/demo_base", "--out", str(out), "--set", *sets]) == 0  # rerun: replaced
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a.txt").write_text("x")
    assert main(["inspect-data", "demo/demo_base", "--out", str(tmp_path / "other"), "--set", *sets]) == 2
    assert "non-empty folder" in capsys.readouterr().err
