"""The ``locdistill`` command line: help, error reporting, and train -> test -> convert -> predict on the
real photos of ``shared/data`` (coco128 with the COCO metric checked against pycocotools directly,
bccd with the VOC metric)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from locdistill.cli import build_parser, main
from tests.helpers import ROOT, TINY
from tests.helpers import SHARED as SHARED_ROOT

SHARED = SHARED_ROOT / "data"
COCO128 = SHARED / "coco128"
BCCD = SHARED / "bccd" / "BCCD"


# ------------------------------------------------------------------------------------------ help
def test_help_of_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ex:
        main(["--help"])
    assert ex.value.code == 0
    out = capsys.readouterr().out
    for command in ("train", "chain", "test", "predict", "convert", "demo", "benchmark", "export"):
        assert command in out
    assert "examples:" in out
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for command in sub.choices:  # type: ignore[union-attr]
        with pytest.raises(SystemExit) as ex:
            main([command, "--help"])
        assert ex.value.code == 0, command
        assert f"locdistill {command}" in capsys.readouterr().out


def test_python_dash_m_entry_point() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "locdistill", "--version"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and proc.stdout.startswith("locdistill ")


def test_arguments_of_delegated_commands() -> None:
    parser = build_parser()
    a = parser.parse_args(
        ["benchmark", "c.yaml", "w.pth", "--img-size", "320", "416", "--fuse-conv-bn", "--amp"]
    )
    assert (a.num_images, a.warmup, a.img_size, a.fuse_conv_bn, a.channels_last, a.amp) == (
        200,
        50,
        [320, 416],
        True,
        False,
        True,
    )
    a = parser.parse_args(["export", "c.yaml", "w.pth", "--out", "m.onnx", "--with-nms", "--set", "a.b=1"])
    assert (a.format, a.with_nms, a.set, a.img_size) == ("onnx", True, ["a.b=1"], None)
    a = parser.parse_args(["demo", "--quick", "--seed", "3"])
    assert (a.out, a.quick, a.seed) == (Path("demo_out"), True, 3)
    a = parser.parse_args(["chain", "a.yaml", "b.yaml", "--work-dir", "w", "--set", "train.epochs=1"])
    assert (a.configs, a.work_dir, a.set) == (["a.yaml", "b.yaml"], Path("w"), ["train.epochs=1"])
    a = parser.parse_args(["train", "c.yaml", "--resume"])
    assert a.resume is True
    a = parser.parse_args(["train", "c.yaml", "--resume", "x.pth", "--set", "a=1", "b=2", "--set", "c=3"])
    assert a.resume == "x.pth" and a.set == ["a=1", "b=2", "c=3"]


def test_arguments_of_the_data_and_analysis_options() -> None:
    parser = build_parser()
    a = parser.parse_args(["train", "c.yaml", "--data-root", "/d", "--tensorboard"])
    assert (a.data_root, a.tensorboard) == ("/d", True)
    a = parser.parse_args(
        ["test", "c.yaml", "w.pth", "--coco-backend", "faster_coco_eval", "--data-root", "/d"]
    )
    assert (a.coco_backend, a.data_root) == ("faster_coco_eval", "/d")
    assert parser.parse_args(["test", "c.yaml", "w.pth"]).coco_backend is None  # the config decides
    a = parser.parse_args(["analyze", "t.pth", "s.pth", "--data", "c.yaml", "--names", "T", "S"])
    assert (a.baseline, a.out, a.num_images, a.split, a.names) == (
        None,
        Path("analysis"),
        0,
        "val",
        ["T", "S"],
    )
    a = parser.parse_args(["plot", "w1", "w2"])
    assert (a.work_dirs, a.out) == ([Path("w1"), Path("w2")], None)
    a = parser.parse_args(["inspect-data", "c.yaml", "--out", "o", "--data-root", "/d"])
    assert (a.out, a.num_images, a.data_root) == (Path("o"), 4, "/d")


# ---------------------------------------------------------------------------------------- errors
def test_wrong_config_key_exits_2_naming_the_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(
        ["train", "gfl/gfl_r18_fpn_coco128", "--work-dir", str(tmp_path), "--set", "model.head.num_clases=3"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1  # one line, no traceback
    assert "model.head.num_clases" in err
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("train:\n  optim:\n    lrr: 0.1\n")
    assert main(["test", str(cfg), "x.pth"]) == 2
    assert "train.optim.lrr" in capsys.readouterr().err


def test_missing_files_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["train", str(tmp_path / "nope.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "nope.pth"), str(tmp_path / "out.pth")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "nope.pth"), str(tmp_path / "out.pth"), "--from-mmdet"]) == 2
    assert "not found" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="config file not found"):
        main(["--debug", "train", str(tmp_path / "nope.yaml")])


# ------------------------------------------------------------------------------- coco128 (COCO)
def printed_coco_numbers(text: str) -> list[str]:
    return re.findall(r"\] = (-?\d+\.\d{3})$", text, flags=re.M)


@pytest.mark.slow
@pytest.mark.skipif(not COCO128.is_dir(), reason="shared/data/coco128 is not available")
def test_coco128_train_test_convert_predict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from locdistill.engine.checkpoint import load_checkpoint

    monkeypatch.chdir(ROOT)  # the shipped config's data root is ../shared/data/coco128 from the repo root
    config = "configs/gfl/gfl_r18_fpn_coco128.yaml"
    work = tmp_path / "work"
    assert main(["train", config, "--work-dir", str(work), "--set", *TINY, "train.max_iters=3"]) == 0
    assert (work / "iter_3.pth").is_file() and (work / "latest.pth").is_file()
    records = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    assert [r["global_iter"] for r in records] == [1, 2, 3]
    assert all(k in records[0] for k in ("loss_cls", "loss_bbox", "loss_dfl", "lr", "time", "data_time"))
    for name in ("config.yaml", "env.json", "git_rev.txt", "train.log"):
        assert (work / name).is_file(), name
    capsys.readouterr()

    dets = tmp_path / "dets.json"
    assert main(["test", config, str(work / "latest.pth"), "--out", str(dets), "--set", *TINY]) == 0
    out = capsys.readouterr().out
    printed = printed_coco_numbers(out)
    assert len(printed) == 12, out

    # pycocotools directly on the original json, restricted to the 25 validation images
    gt = COCO(str(COCO128 / "annotations/instances_train2017.json"))
    val_names = {Path(line).name for line in (COCO128 / "splits/val.txt").read_text().split()}
    val_ids = sorted(i for i, im in gt.imgs.items() if im["file_name"] in val_names)
    assert len(val_ids) == 25
    results = json.loads(dets.read_text())
    assert results and {r["image_id"] for r in results} <= set(val_ids)
    ev = COCOeval(gt, gt.loadRes(results), "bbox")
    ev.params.imgIds = val_ids
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert printed == [f"{v:0.3f}" for v in ev.stats]
    assert any(float(v) > 0 for v in printed)  # not a trivial all-zero comparison
    # the per-class table (AP, AP50, AP75 per class; n/a for the classes absent from these 25 images)
    rows = re.findall(r"^\| (\S[^|]*?) +\| (\d+) +\| (\S+) +\| (\S+) +\| (\S+) +\|$", out, flags=re.M)
    assert len(rows) == 80 and rows[0][0] == "person"
    present = [float(r[2]) for r in rows if int(r[1]) > 0]
    assert all(r[2] == "n/a" for r in rows if int(r[1]) == 0)
    assert len(present) == 30  # coco128's README: 30 classes in the validation split
    assert abs(sum(present) / len(present) - ev.stats[0]) < 0.0015  # rounded to 3 decimals per class

    # the faster-coco-eval backend prints the same table
    if importlib.util.find_spec("faster_coco_eval") is not None:
        capsys.readouterr()
        args = [
            "test",
            config,
            str(work / "latest.pth"),
            "--coco-backend",
            "faster_coco_eval",
            "--set",
            *TINY,
        ]
        assert main(args) == 0
        assert capsys.readouterr().out.strip() == out.split("detections written to")[0].strip()

    # --format-only (test-dev style): the same results file, no evaluation
    only = tmp_path / "dets_only.json"
    capsys.readouterr()
    args = ["test", config, str(work / "latest.pth"), "--format-only", "--out", str(only), "--set", *TINY]
    assert main(args) == 0
    assert "Average Precision" not in capsys.readouterr().out
    assert json.loads(only.read_text()) == json.loads(dets.read_text())

    # convert: small weights (no optimizer / EMA / RNG) that evaluate identically, also as safetensors
    small = tmp_path / "student.safetensors"
    assert main(["convert", str(work / "latest.pth"), str(small)]) == 0
    capsys.readouterr()
    assert small.stat().st_size < (work / "latest.pth").stat().st_size
    trained = load_checkpoint(work / "latest.pth")["model"]
    converted = load_checkpoint(small)
    assert converted["model"].keys() == trained.keys()
    assert all(torch.equal(converted["model"][k], v) for k, v in trained.items())  # so the same detections
    assert converted["meta"]["class_names"][0] == "person" and converted["config"]["metric"] == "coco"
    small_pth = tmp_path / "student.pth"
    assert main(["convert", str(work / "latest.pth"), str(small_pth)]) == 0
    ckpt = torch.load(small_pth, weights_only=True)
    assert set(ckpt) == {"model", "config", "meta"}
    assert ckpt["meta"]["class_names"][0] == "person"

    # predict: drawn images and their detections, class names from the checkpoint
    images = sorted((COCO128 / "images/train2017").glob("*.jpg"))[:2]
    pred = tmp_path / "pred"
    assert (
        main(
            [
                "predict",
                config,
                str(small_pth),
                *map(str, images),
                "--out",
                str(pred),
                "--score-thr",
                "0.0",
                "--set",
                *TINY,
            ]
        )
        == 0
    )
    listing = json.loads((pred / "detections.json").read_text())
    assert [Path(r["image"]).name for r in listing] == [p.name for p in images]
    assert all((pred / p.name).is_file() for p in images)
    first = listing[0]["detections"]
    assert first and {"box", "score", "label", "class"} <= set(first[0])
    assert all(d["class"] == ckpt["meta"]["class_names"][d["label"]] for d in first)


# ----------------------------------------------------------------------------------- bccd (VOC)
@pytest.mark.slow
@pytest.mark.skipif(not BCCD.is_dir(), reason="shared/data/bccd is not available")
def test_bccd_train_and_test_with_the_voc_metric(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from locdistill.config import load_config
    from locdistill.data import build_dataset
    from locdistill.evaluation import VOCEvaluator
    from locdistill.structures import Detections

    monkeypatch.chdir(ROOT)
    config = "configs/gfl/gfl_r18_fpn_bccd.yaml"
    work = tmp_path / "work"
    assert main(["train", config, "--work-dir", str(work), "--set", *TINY, "train.max_iters=2"]) == 0
    capsys.readouterr()
    dets = tmp_path / "dets.json"
    assert main(["test", config, str(work / "latest.pth"), "--out", str(dets), "--set", *TINY]) == 0
    out = capsys.readouterr().out
    for name in ("RBC", "WBC", "Platelets", "mAP"):
        assert re.search(rf"^\| {name} ", out, flags=re.M), out
    printed_ap = float(re.search(r"^AP:\s+(\S+)$", out, flags=re.M).group(1))  # type: ignore[union-attr]
    printed_map = re.search(r"^\| mAP .*\| (\d\.\d{3}) \|$", out, flags=re.M).group(1)  # type: ignore[union-attr]
    seed_line = out.splitlines()[-2]  # the seed's last line, then "detections written to ..."
    assert re.fullmatch(r"\{'mAP': \d\.\d+(e-\d+)?\}", seed_line), seed_line

    # the written detections, scored again from the file, give the printed numbers
    cfg = load_config(config, TINY)
    dataset: Any = build_dataset(cfg.data.val, cfg.data, train=False, mean=[0, 0, 0], std=[1, 1, 1])
    records = json.loads(dets.read_text())
    assert records and {"image_id", "bbox", "score", "label", "category"} <= set(records[0])
    voc = VOCEvaluator(dataset.class_names)
    by_image: dict[int, list[dict]] = {}
    for r in records:
        by_image.setdefault(r["image_id"], []).append(r)
    for index, image_id in enumerate(dataset.image_ids):
        ann = dataset.get_annotation(index)
        voc.add_ground_truth(image_id, ann.boxes, ann.labels, ann.difficult | ann.ignore)
        rs = by_image.get(image_id, [])
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in rs)]).reshape(-1, 4)
        voc.add(
            image_id,
            Detections(
                boxes,
                torch.tensor([r["score"] for r in rs]),
                torch.tensor([r["label"] for r in rs], dtype=torch.int64),
            ),
        )
    result = voc.evaluate()
    assert result["AP"] == pytest.approx(printed_ap, rel=1e-6, abs=1e-9)
    assert f"{result['AP50']:.3f}" == printed_map
    assert seed_line == str({"mAP": result["mAP"]})


def test_malformed_set_value_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("")
    assert main(["train", str(cfg), "--set", "data.img_scale=[128,"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


@pytest.mark.slow
@pytest.mark.skipif(not BCCD.is_dir(), reason="shared/data/bccd is not available")
def test_mmdet_checkpoint_converts_and_evaluates_with_test(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An mmdetection file (``state_dict`` in mmdetection's names + ``meta`` with pickled objects) is
    evaluated by ``locdistill test`` as it is, and after ``convert --from-mmdet``, with the same table."""
    from locdistill.config import load_config
    from locdistill.models.detectors.gfl import build_gfl
    from tests.weights.test_mmdet_import import HistoryBuffer, to_mmdet_keys

    monkeypatch.chdir(ROOT)
    config = "configs/gfl/gfl_r18_fpn_bccd.yaml"
    tiny = [*TINY, "model.backbone.pretrained=false"]
    torch.manual_seed(0)
    model = build_gfl(load_config(config, tiny).model)
    mmdet_file = tmp_path / "gfl_r18_bccd_mmdet.pth"
    meta = {
        "mmdet_version": "3.3.0",
        "epoch": 12,
        "hist": HistoryBuffer(),
        "CLASSES": ["RBC", "WBC", "Platelets"],
    }
    torch.save({"state_dict": to_mmdet_keys(model.state_dict()), "meta": meta}, mmdet_file)

    assert main(["test", config, str(mmdet_file), "--set", *tiny]) == 0
    direct = capsys.readouterr().out
    converted = tmp_path / "converted.pth"
    assert main(["convert", str(mmdet_file), str(converted), "--from-mmdet"]) == 0
    capsys.readouterr()
    assert torch.load(converted, weights_only=True)["model"].keys() == model.state_dict().keys()
    assert main(["test", config, str(converted), "--set", *tiny]) == 0
    via_convert = capsys.readouterr().out
    assert re.search(r"^\| mAP ", direct, flags=re.M) and re.search(r"^AP:\s+\S+$", direct, flags=re.M)
    assert direct == via_convert
