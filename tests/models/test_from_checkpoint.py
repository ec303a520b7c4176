"""The one "build from config, pretrained off, load weights" path: stored or given config, --set on
top, class names, and a wrong-architecture error that names the file and both configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from locdistill.config import Config, ConfigError, dump_config, to_dict
from locdistill.engine.checkpoint import save_checkpoint
from locdistill.models.detectors.gfl import GFL, build_gfl
from locdistill.models.from_checkpoint import build_detector_from_checkpoint
from locdistill.weights import WeightsError
from tests.helpers import tiny_config

NAMES = ["rectangle", "ellipse", "triangle", "cross", "ring"]


def save_tiny(
    tmp_path: Path, extra: list[str] | None = None, name: str = "tiny.pth", **meta
) -> tuple[Path, Config, GFL]:
    """A checkpoint of a tiny untrained GFL with its config stored, as training writes it."""
    cfg = tiny_config(tmp_path, extra)
    torch.manual_seed(0)
    model = build_gfl(tiny_config(tmp_path, [*(extra or []), "model.backbone.pretrained=false"]).model).eval()
    state = {"model": model.state_dict(), "config": to_dict(cfg), "meta": {"class_names": NAMES, **meta}}
    return save_checkpoint(tmp_path / name, state), cfg, model


def same_outputs(a: GFL, b: GFL) -> bool:
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        oa, ob = a(x), b(x)
    return all(
        torch.equal(p, q) for p, q in zip(oa.cls_scores + oa.bbox_preds, ob.cls_scores + ob.bbox_preds)
    )


def test_built_from_the_stored_config(tmp_path: Path) -> None:
    path, cfg, model = save_tiny(tmp_path)
    built, info = build_detector_from_checkpoint(path)
    assert not built.training and same_outputs(model, built)
    assert info.config.model == cfg.model and info.config.data == cfg.data
    assert info.config_source == "the config stored in tiny.pth" and info.format == "locdistill"
    assert info.class_names == NAMES and info.meta["class_names"] == NAMES
    assert info.report.missing == [] and info.report.unexpected == []


def test_overrides_apply_on_top_of_the_stored_config_which_stays_unchanged(tmp_path: Path) -> None:
    path, _, model = save_tiny(tmp_path, ["model.backbone.pretrained=true"])
    _, info = build_detector_from_checkpoint(
        path, overrides=["model.test.score_thr=0.4", "data.img_scale=[96, 96]"]
    )
    assert info.config.model.test.score_thr == 0.4 and info.config.data.img_scale == [96, 96]
    assert info.config.model.backbone.pretrained is False  # the checkpoint holds every weight
    assert info.config_source.endswith("with --set model.test.score_thr=0.4 data.img_scale=[96, 96]")
    again, plain = build_detector_from_checkpoint(path)
    assert plain.config.model.test.score_thr == 0.05 and same_outputs(model, again)
    with pytest.raises(ConfigError, match="config stored in .*tiny.pth.*model.head.num_clases"):
        build_detector_from_checkpoint(path, overrides=["model.head.num_clases=3"])


def test_a_given_config_path_or_object_wins_and_is_not_changed(tmp_path: Path) -> None:
    path, cfg, model = save_tiny(tmp_path)
    cfg_file = tmp_path / "given.yaml"
    cfg.model.test.score_thr = 0.25
    cfg.model.backbone.pretrained = True
    dump_config(cfg, cfg_file)
    built, info = build_detector_from_checkpoint(path, cfg_file, ["model.test.max_per_img=7"])
    assert same_outputs(model, built)
    assert info.config.model.test.score_thr == 0.25 and info.config.model.test.max_per_img == 7
    assert info.config_source == str(cfg_file)
    built, info = build_detector_from_checkpoint(path, cfg)
    assert cfg.model.backbone.pretrained is True  # the caller's Config is not modified
    assert info.config.model.backbone.pretrained is False and same_outputs(model, built)
    _, info = build_detector_from_checkpoint(path, cfg, ["model.test.max_per_img=9"])
    assert info.config.model.test.max_per_img == 9 and cfg.model.test.max_per_img == 100


def test_wrong_architecture_names_the_file_the_config_and_what_the_file_stores(tmp_path: Path) -> None:
    path, _, _ = save_tiny(tmp_path / "teacher", ["model.head.num_classes=80"], name="teacher.pth")
    student_cfg = tiny_config(tmp_path / "student", ["model.head.num_classes=20"])
    cfg_file = tmp_path / "x.yaml"
    dump_config(student_cfg, cfg_file)
    with pytest.raises(WeightsError) as err:
        build_detector_from_checkpoint(path, cfg_file)
    message = str(err.value)
    assert message.startswith(f"{path} does not fit the model built from {cfg_file}: 2 shape mismatches: ")
    assert "head.gfl_cls.weight (checkpoint (80, 32, 3, 3), model (20, 32, 3, 3))" in message
    assert message.endswith("; the checkpoint stores a config with backbone resnet18, num_classes 80")
    assert "\n" not in message


def test_a_file_without_config_needs_one(tmp_path: Path) -> None:
    _, cfg, model = save_tiny(tmp_path)
    torch.save(model.state_dict(), tmp_path / "plain.pth")
    with pytest.raises(WeightsError, match=r"plain\.pth stores no locdistill config \(a state_dict file\)"):
        build_detector_from_checkpoint(tmp_path / "plain.pth")
    built, info = build_detector_from_checkpoint(tmp_path / "plain.pth", cfg)
    assert same_outputs(model, built) and info.format == "state_dict"
    assert info.class_names == [f"class_{i}" for i in range(5)]  # synthetic data names none in the config
    cfg5 = tiny_config(tmp_path, ["model.head.num_classes=5"])
    cfg5.data.val.classes = NAMES
    assert build_detector_from_checkpoint(tmp_path / "plain.pth", cfg5)[1].class_names == NAMES
    bigger = tiny_config(tmp_path, ["model.head.num_classes=7"])
    with pytest.raises(
        WeightsError, match=r"the checkpoint stores no config; its head.gfl_cls.weight has 5 classes$"
    ):
        build_detector_from_checkpoint(tmp_path / "plain.pth", bigger)
