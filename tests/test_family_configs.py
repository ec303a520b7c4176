"""Every shipped RetinaGFL / ATSS-GFL / FCOS-GFL config builds its family, and every family LD config's
teacher config fits its student (same family, priors, reg_max, levels, classes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from locdistill.config import PACKAGE_CONFIG_DIR, load_config
from locdistill.distill.distiller import check_fit
from locdistill.models.build import build_detector
from locdistill.models.detectors.family import FamilyDetector

FAMILY_DIRS = ("retina_gfl", "atss_gfl", "fcos_gfl")
CONFIGS = sorted(p for d in FAMILY_DIRS for p in (PACKAGE_CONFIG_DIR / d).glob("*.yaml"))
LD_CONFIGS = sorted(p for d in FAMILY_DIRS for p in (PACKAGE_CONFIG_DIR / "ld").glob(f"ld_{d}_*.yaml"))
# Built narrow (the structure of the config, a thin ResNet) and without downloading weights.
NARROW = ["model.backbone.pretrained=false"]


def narrow(cfg_path: Path) -> list[str]:
    cfg = load_config(cfg_path)
    return NARROW + (["model.backbone.base_width=8"] if cfg.model.backbone.name.startswith("resnet") else [])


def test_there_are_configs_for_every_family() -> None:
    assert {p.parent.name for p in CONFIGS} == set(FAMILY_DIRS)
    assert len(LD_CONFIGS) == 6  # COCO R-101 -> R-50 and BCCD Lite2 -> Lite0, per family


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_builds_its_family(path: Path) -> None:
    cfg = load_config(path, narrow(path))
    model = build_detector(cfg.model)
    assert isinstance(model, FamilyDetector)
    assert (
        model.family
        == {"retina_gfl": "RetinaGFL", "atss_gfl": "ATSS-GFL", "fcos_gfl": "FCOS-GFL"}[cfg.model.type]
    )
    assert path.parent.name == cfg.model.type
    assert model.priors_per_location == (9 if cfg.model.type == "retina_gfl" else 1)


@pytest.mark.parametrize("path", LD_CONFIGS, ids=lambda p: p.name)
def test_ld_config_teacher_fits_its_student(path: Path) -> None:
    cfg = load_config(path, narrow(path))
    assert cfg.distill is not None and cfg.distill.main_ld.enabled
    teacher_path = path.parent / cfg.distill.teacher_config
    teacher_cfg = load_config(teacher_path, narrow(teacher_path))
    student, teacher = build_detector(cfg.model), build_detector(teacher_cfg.model)
    check_fit(student, teacher, need_classes=cfg.distill.main_kd.enabled)
