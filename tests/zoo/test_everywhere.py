"""``zoo:NAME`` works wherever a checkpoint path does: ``locdistill test / predict / export / benchmark /
convert``, ``Detector.from_checkpoint`` and ``distill.teacher_checkpoint``, each taking the zoo entry's
config when none is given; and ``locdistill zoo`` lists, shows and downloads entries. The checkpoint is
a tiny mmdetection-format GFL served from 127.0.0.1 (see conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from locdistill import Detector
from locdistill.cli import main
from locdistill.engine.teacher import build_teacher
from locdistill.utils.hashing import sha256_file
from locdistill.weights import read_weights
from locdistill.zoo import ZooError, cache_path, zoo_entry
from tests.helpers import tiny_config
from tests.zoo.conftest import FakeZoo


def _image(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "img.png"
    Image.new("RGB", (90, 70), (120, 30, 200)).save(path)
    return path


def test_test_and_predict_take_zoo_names(
    fake_zoo: FakeZoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["test", "zoo:tiny", "--out", str(tmp_path / "zoo.json")]) == 0  # config: the entry's
    assert "Average Precision" in capsys.readouterr().out  # its data.val: 6 synthetic images
    assert len({r["image_id"] for r in json.loads((tmp_path / "zoo.json").read_text())}) == 6
    assert len(fake_zoo.server.hits) == 1 and cache_path(zoo_entry("zoo:tiny")).is_file()

    image = _image(tmp_path)
    assert main(["predict", "zoo:tiny", str(image), "--out", str(tmp_path / "p"), "--score-thr", "0"]) == 0
    detections = json.loads((tmp_path / "p" / "detections.json").read_text())
    assert detections[0]["detections"] and len(fake_zoo.server.hits) == 1  # from the cache


def test_export_benchmark_and_convert_take_zoo_names(
    fake_zoo: FakeZoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "zoo:tiny", "--out", str(tmp_path / "m.onnx"), "--img-size", "64", "64"]) == 0
    assert (tmp_path / "m.onnx").stat().st_size > 0
    bench = ["benchmark", "zoo:tiny", "--num-images", "2", "--warmup", "1", "--img-size", "64", "64"]
    assert main([*bench, "--out", str(tmp_path / "fps.json")]) == 0
    assert json.loads((tmp_path / "fps.json").read_text())["checkpoint"] == "zoo:tiny"
    # convert: an mmdetection file, so --from-mmdet is implied; the entry's config is stored in the output
    assert main(["convert", "zoo:tiny", str(tmp_path / "tiny.pth")]) == 0
    assert "config" in capsys.readouterr().out
    converted = read_weights(tmp_path / "tiny.pth")
    assert converted.format == "locdistill" and converted.config is not None
    assert converted.meta["source_sha256"] == fake_zoo.payload.sha256
    detector = Detector.from_checkpoint(tmp_path / "tiny.pth")  # self-contained now
    assert detector.cfg.model.head.num_classes == 5 and len(fake_zoo.server.hits) == 1


def test_detector_from_checkpoint_takes_zoo_names(fake_zoo: FakeZoo, tmp_path: Path) -> None:
    detector = Detector.from_checkpoint("zoo:tiny")  # config: the entry's
    assert detector.cfg.source == str(fake_zoo.payload.config)
    for a, b in zip(detector.model.state_dict().values(), fake_zoo.payload.model.state_dict().values()):
        assert torch.equal(a, b)
    assert len(detector.predict(_image(tmp_path), score_thr=0.0)) > 0  # type: ignore[arg-type]


def test_analyze_takes_zoo_names(fake_zoo: FakeZoo) -> None:
    import argparse

    from locdistill.analysis.analyze import load_model, model_paths

    args = argparse.Namespace(teacher="zoo:tiny", student="zoo:tiny", baseline=None, names=None)
    paths = model_paths(args)  # fetched here: a failed download stops analyze before any model is built
    assert paths == {"teacher": Path("zoo:tiny"), "student": Path("zoo:tiny")}
    assert len(fake_zoo.server.hits) == 1
    model, cfg = load_model(paths["teacher"], torch.device("cpu"))  # built from the entry's config
    assert cfg.source == str(fake_zoo.payload.config) and not model.training
    with pytest.raises(ZooError, match="cannot download zoo:tiny-offline"):
        model_paths(
            argparse.Namespace(teacher="zoo:tiny", student="zoo:tiny-offline", baseline=None, names=None)
        )


def test_a_zoo_teacher_is_downloaded_and_hashed(fake_zoo: FakeZoo, tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "s", ["distill.teacher_checkpoint=zoo:tiny"])
    teacher, digest = build_teacher(cfg)  # no distill.teacher_config: the entry's config
    assert digest == fake_zoo.payload.sha256 == sha256_file(cache_path(zoo_entry("zoo:tiny")))
    assert not teacher.training
    for a, b in zip(teacher.state_dict().values(), fake_zoo.payload.model.state_dict().values()):
        assert torch.equal(a, b)


def test_the_zoo_command(fake_zoo: FakeZoo, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["zoo"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["NAME", "KIND", "BOX", "AP", "LOADS", "INTO", "CACHED", "ROLE"]
    assert any(line.split()[:2] == ["tiny", "gfl"] and line.split()[4] == "-" for line in table.splitlines())
    assert main(["zoo", "download", "tiny"]) == 0
    local = cache_path(zoo_entry("zoo:tiny"))
    assert capsys.readouterr().out.strip() == f"zoo:tiny: {local}"
    assert main(["zoo", "zoo:tiny", "--json"]) == 0
    (shown,) = json.loads(capsys.readouterr().out)
    assert shown["cached"] is True and shown["local_file"] == str(local)
    assert shown["sha256_prefix"] == fake_zoo.payload.sha256[:8]
    assert main(["zoo", "tiny"]) == 0
    assert f"local file  {local} (cached)" in capsys.readouterr().out
    # errors are one line, exit code 2
    assert main(["zoo", "download", "tiny-offline"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("error: cannot download zoo:tiny-offline from http://127.0.0.1:") and "\n" not in err
    )
    assert main(["test", "zoo:nope"]) == 2
    assert "unknown zoo checkpoint 'nope'" in capsys.readouterr().err
