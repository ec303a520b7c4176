"""Self-contained checkpoints on the command line: ``test`` / ``predict`` / ``export`` / ``benchmark``
take ``[CONFIG] CKPT``; without CONFIG the checkpoint's stored config (data included) is used, and
``--set`` applies on top of either."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from locdistill.cli import main
from locdistill.cli.parser import build_parser
from locdistill.cli.paths import looks_like_config, sort_paths
from locdistill.config import dump_config, to_dict
from locdistill.engine.checkpoint import save_checkpoint
from locdistill.models.detectors.gfl import build_gfl
from tests.helpers import tiny_config
from tests.weights.test_mmdet_import import HistoryBuffer, to_mmdet_keys


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(checkpoint with its config stored, the same config as a YAML file)``: a tiny untrained GFL whose
    config evaluates on generated data (``data.val``: 6 synthetic images)."""
    tmp = tmp_path_factory.mktemp("config_free")
    cfg = tiny_config(tmp, ["model.test.score_thr=0.0"])
    torch.manual_seed(0)
    model = build_gfl(cfg.model)
    ckpt = save_checkpoint(
        tmp / "tiny.pth", {"model": model.state_dict(), "config": to_dict(cfg), "meta": {}}
    )
    dump_config(cfg, tmp / "tiny_config.yaml")
    return ckpt, tmp / "tiny_config.yaml"


def test_test_without_config_equals_test_with_it(
    stored: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ckpt, config = stored
    assert main(["test", str(ckpt), "--out", str(tmp_path / "a.json")]) == 0
    alone = capsys.readouterr().out
    assert main(["test", str(config), str(ckpt), "--out", str(tmp_path / "b.json")]) == 0
    with_config = capsys.readouterr().out
    assert "Average Precision" in alone and alone.replace("a.json", "b.json") == with_config
    a = json.loads((tmp_path / "a.json").read_text())
    assert len({r["image_id"] for r in a}) == 6 and a == json.loads((tmp_path / "b.json").read_text())
    # --set applies on top of the stored config
    assert (
        main(["test", str(ckpt), "--out", str(tmp_path / "c.json"), "--set", "model.test.max_per_img=1"]) == 0
    )
    c = json.loads((tmp_path / "c.json").read_text())
    assert len(c) == 6 and len(a) > 6


def test_predict_export_and_benchmark_without_config(
    stored: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from PIL import Image

    ckpt, config = stored
    image = tmp_path / "img.png"
    Image.new("RGB", (90, 70), (120, 30, 200)).save(image)
    assert main(["predict", str(ckpt), str(image), "--out", str(tmp_path / "p1"), "--score-thr", "0"]) == 0
    args = [str(config), str(ckpt), str(image), "--out", str(tmp_path / "p2"), "--score-thr", "0"]
    assert main(["predict", *args]) == 0
    p1 = json.loads((tmp_path / "p1" / "detections.json").read_text())
    p2 = json.loads((tmp_path / "p2" / "detections.json").read_text())
    assert [r["detections"] for r in p1] == [r["detections"] for r in p2] and p1[0]["detections"]
    assert main(["export", str(ckpt), "--out", str(tmp_path / "m.onnx"), "--img-size", "64", "64"]) == 0
    assert (tmp_path / "m.onnx").stat().st_size > 0
    bench = ["benchmark", str(ckpt), "--num-images", "2", "--warmup", "1", "--img-size", "64", "64"]
    assert main([*bench, "--out", str(tmp_path / "fps.json")]) == 0
    assert json.loads((tmp_path / "fps.json").read_text())["checkpoint"] == str(ckpt)
    capsys.readouterr()


def test_clear_errors_when_the_config_or_checkpoint_is_missing(
    stored: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ckpt, config = stored
    model = build_gfl(tiny_config(tmp_path).model)
    mmdet = tmp_path / "gfl_mmdet.pth"
    torch.save({"state_dict": to_mmdet_keys(model.state_dict()), "meta": {"h": HistoryBuffer()}}, mmdet)
    assert main(["test", str(mmdet)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {mmdet} stores no locdistill config (an mmdetection checkpoint)")
    assert err.count("\n") == 1
    assert main(["test", str(config)]) == 2
    assert "test needs a checkpoint after the config" in capsys.readouterr().err
    assert main(["predict", str(ckpt), "--out", str(tmp_path / "p")]) == 2
    assert "predict needs a checkpoint and at least one image" in capsys.readouterr().err
    assert main(["export", str(config), str(ckpt), "x.pth", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "export takes [CONFIG] CKPT, got 3 paths" in capsys.readouterr().err


def test_which_path_is_the_config(tmp_path: Path) -> None:
    (tmp_path / "w.pth").write_bytes(b"")
    assert looks_like_config("a/b.yaml") and looks_like_config("B.YML")
    assert looks_like_config("gfl/gfl_r18_fpn_coco128")  # a shipped config name
    assert not looks_like_config(str(tmp_path / "w.pth")) and not looks_like_config("missing.pth")
    parser = build_parser()

    def sorted_(*argv: str) -> argparse.Namespace:
        args = parser.parse_args(list(argv))
        sort_paths(args)
        return args

    a = sorted_("test", "w.pth")
    assert (a.config, a.checkpoint) == (None, "w.pth")
    a = sorted_("test", "gfl/gfl_r18_fpn_coco128", "w.pth", "--set", "a=1")
    assert (a.config, a.checkpoint, a.set) == ("gfl/gfl_r18_fpn_coco128", "w.pth", ["a=1"])
    a = sorted_("predict", "c.yaml", "w.pth", "x.jpg", "y.jpg", "--out", "o")
    assert (a.config, a.checkpoint, a.images) == ("c.yaml", "w.pth", [Path("x.jpg"), Path("y.jpg")])
    a = sorted_("predict", "w.pth", "x.jpg", "--out", "o")
    assert (a.config, a.checkpoint, a.images) == (None, "w.pth", [Path("x.jpg")])
    a = sorted_("benchmark", "c.yml")
    assert (a.config, a.checkpoint) == ("c.yml", None)  # a config alone: random weights
    a = sorted_("benchmark", "w.pth")
    assert (a.config, a.checkpoint) == (None, "w.pth")
    a = sorted_("export", "w.safetensors", "--out", "m.onnx")
    assert (a.config, a.checkpoint) == (None, "w.safetensors")
