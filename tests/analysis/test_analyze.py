"""``locdistill analyze`` on synthetic data with tiny models: the files it writes, the numbers in
report.json (teacher vs itself: KL 0 and identical errors; AP by IoU non-increasing; AP50/AP75 equal to
the COCO stats) and its one-line errors for models that do not fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from locdistill.cli import main
from locdistill.config import load_config, to_dict
from locdistill.models.detectors.gfl import build_gfl

PNG = b"\x89PNG\r\n\x1a\n"
DATA = [  # 8 synthetic validation images of 128 px; keep the low scores of untrained models
    "data.val.num_images=8",
    "data.val.image_size=128",
    "data.img_scale=[128, 128]",
    "data.test_images_per_gpu=4",
]


def save_model(path: Path, config: str, overrides: list[str], seed: int) -> Path:
    """A randomly initialised detector saved as a checkpoint with its config (what analyze reads)."""
    cfg = load_config(config, ["model.test.score_thr=0.0", *overrides])
    torch.manual_seed(seed)
    model = build_gfl(cfg.model)
    torch.save({"model": model.state_dict(), "config": to_dict(cfg)}, path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpts")
    return {
        "teacher": save_model(root / "teacher.pth", "demo/demo_teacher", [], 0),
        "student": save_model(root / "student.pth", "demo/demo_base", [], 1),
        "baseline": save_model(root / "baseline.pth", "demo/demo_base", [], 2),
    }


def analyze(ckpts: list[Path], out: Path, *extra: str) -> int:
    args = ["analyze", *map(str, ckpts), "--data", "demo/demo_base", "--out", str(out), *extra]
    return main([*args, "--set", *DATA])


def test_analyze_writes_the_report_and_consistent_numbers(
    checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "analysis"
    ckpts = [checkpoints["teacher"], checkpoints["student"], checkpoints["baseline"]]
    assert analyze(ckpts, out, "--num-objects", "2") == 0
    printed = capsys.readouterr().out
    assert "teacher" in printed and "baseline" in printed and "report.md" in printed
    for name in ("edge_distributions.png", "edge_errors.png", "kl_per_level.png", "ap_by_iou.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG and len(data) > 5000, name
    report = json.loads((out / "report.json").read_text())
    assert list(report["models"]) == ["teacher", "student", "baseline"]
    assert report["data"]["images"] == 8 and report["data"]["objects"] > 0
    assert report["data"]["positives"] > 0 and report["data"]["vlr_locations"] >= report["data"]["positives"]
    kl = report["kl_per_level"]
    assert kl["strides"] == [8, 16, 32, 64, 128] and len(kl["levels"]) == 5
    for region in ("positives", "vlr"):
        counts = kl["locations"][region]
        assert sum(counts) == (
            report["data"]["positives"] if region == "positives" else report["data"]["vlr_locations"]
        )
        # the teacher against itself: exactly 0 where the level has locations, null where it has none
        assert all((v == 0.0) if c > 0 else v is None for v, c in zip(kl["teacher"][region], counts))
        for student in ("student", "baseline"):
            values = [v for v, c in zip(kl[student][region], counts) if c > 0]
            assert values and all(v > 0 for v in values)  # different random weights differ
    for name in report["models"]:
        coco, by_iou = report["coco"][name], report["ap_by_iou"][name]
        assert list(by_iou) == [f"AP{t}" for t in range(50, 100, 5)]
        values = list(by_iou.values())
        assert all(a >= b for a, b in zip(values, values[1:]))  # non-increasing in the IoU threshold
        assert by_iou["AP50"] == pytest.approx(coco["AP50"], abs=1e-12)
        assert by_iou["AP75"] == pytest.approx(coco["AP75"], abs=1e-12)
        assert sum(values) / 10 == pytest.approx(coco["AP"], abs=1e-12)
        errors = report["edge_error"][name]
        assert errors["mae_strides"]["mean"] >= abs(errors["bias_strides"]["mean"])
        assert errors["mae_pixels"]["mean"] >= 8 * errors["mae_strides"]["mean"] - 1e-9  # strides >= 8
    md = (out / "report.md").read_text()
    for link in ("edge_distributions.png", "edge_errors.png", "kl_per_level.png", "ap_by_iou.png"):
        assert f"({link})" in md
    assert "| teacher | 0.0000 |" in md  # the KL table


def test_a_student_equal_to_the_teacher_has_zero_kl_and_the_same_errors(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "self"
    ckpts = [checkpoints["teacher"], checkpoints["teacher"]]
    assert analyze(ckpts, out, "--num-images", "4", "--names", "big", "big again") == 0
    report = json.loads((out / "report.json").read_text())
    assert list(report["models"]) == ["big", "big again"] and report["data"]["images"] == 4
    for region in ("positives", "vlr"):
        assert all(v in (0.0, None) for v in report["kl_per_level"]["big again"][region])
    assert report["edge_error"]["big again"] == report["edge_error"]["big"]
    assert report["coco"]["big again"] == report["coco"]["big"]


def test_models_that_do_not_fit_are_refused_with_one_line(
    checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = save_model(tmp_path / "reg8.pth", "demo/demo_base", ["model.head.reg_max=8"], 3)
    assert analyze([checkpoints["teacher"], other], tmp_path / "a") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "reg_max" in err and "reg8.pth" in err
    classes = save_model(tmp_path / "c3.pth", "demo/demo_base", ["model.head.num_classes=3"], 3)
    assert analyze([checkpoints["teacher"], classes], tmp_path / "b") == 2
    assert "num_classes" in capsys.readouterr().err
    bare = tmp_path / "bare.pth"
    torch.save({"model": torch.load(checkpoints["student"], weights_only=True)["model"]}, bare)
    assert analyze([checkpoints["teacher"], bare], tmp_path / "c") == 2
    assert "bare.pth stores no locdistill config" in capsys.readouterr().err
    assert analyze([checkpoints["teacher"], checkpoints["student"]], tmp_path / "d", "--names", "x") == 2
    assert "--names: give 2 different names" in capsys.readouterr().err
    assert not any((tmp_path / d).exists() for d in "abcd")  # refused before writing anything


def test_analyze_never_writes_into_a_foreign_folder(
    checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert analyze([checkpoints["teacher"], checkpoints["student"]], mine) == 2
    assert "non-empty folder" in capsys.readouterr().err
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
