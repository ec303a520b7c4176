"""Every shipped CrossKD config crosses at layers its student and teacher heads have, with the widths
matching or an adapter in between."""

from __future__ import annotations

from pathlib import Path

import pytest

from locdistill.config import load_config
from locdistill.distill.crosskd import CrossKD
from locdistill.engine.teacher import resolve_teacher_config
from locdistill.models.detectors.gfl import build_gfl

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "src/locdistill/configs").rglob("*crosskd*.yaml"))


def test_the_crosskd_configs_are_there() -> None:
    names = {p.stem for p in CONFIGS}
    for r in (18, 34, 50):
        assert f"crosskd_gflv1_r101_r{r}_fpn_coco_1x" in names
        assert f"crosskd_ld_gflv1_r101_r{r}_fpn_coco_1x" in names
    assert {"crosskd_gflv1_effl2_effl0_fpn_bccd", "crosskd_ld_gflv1_effl2_effl0_fpn_bccd"} <= names
    assert {"demo_crosskd", "demo_crosskd_ld"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_crosskd_config_fits_its_teacher(path: Path) -> None:
    cfg = load_config(path, ["model.backbone.pretrained=false"])
    assert cfg.distill is not None and cfg.distill.crosskd.enabled
    teacher_cfg = load_config(resolve_teacher_config(cfg), ["model.backbone.pretrained=false"])
    # the heads decide the fit; a small backbone keeps the test fast
    for c in (cfg, teacher_cfg):
        c.model.backbone.name, c.model.backbone.base_width = "resnet18", 8
    cross = CrossKD(build_gfl(cfg.model), build_gfl(teacher_cfg.model), cfg.distill.crosskd)
    assert cross.layer == cfg.distill.crosskd.layer
    assert ("ld" in path.stem.replace("crosskd", "")) == cfg.distill.main_ld.enabled
