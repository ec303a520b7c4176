"""The zoo table (``src/locdistill/zoo/models.yaml``): it matches mmdetection's metafiles (where
mmdetection is installed), every entry's hash prefix is in its file name, every entry loads into the
config it names (mmdetection's key and shape layout, loaded strictly), and its teacher links hold."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

from locdistill.config import load_config
from locdistill.models.detectors.gfl import build_gfl
from locdistill.weights.mmdet_keys import convert_detector_state_dict
from locdistill.zoo import find_entry, zoo_entries
from locdistill.zoo.entry import TABLE_FILE
from tests.helpers import ROOT
from tests.models.test_teacher_layouts import C3_C5, C4_C5, Reference, gfl_layout

ENTRIES = {e.name: e for e in zoo_entries()}

# Each released model's architecture, from its mmdetection config (configs/gfl, configs/ld in 3.3.0);
# written here independently of the locdistill configs the table maps them to.
ARCHITECTURES = {
    "gfl_r50_fpn_1x_coco": Reference("resnet", 50),
    "gfl_r50_fpn_ms-2x_coco": Reference("resnet", 50, multiscale=(480, 800)),
    "gfl_r101_fpn_ms-2x_coco": Reference("resnet", 101, multiscale=(480, 800)),
    "gfl_r101-dconv-c3-c5_fpn_ms-2x_coco": Reference("resnet", 101, C3_C5, multiscale=(480, 800)),
    "gfl_x101-32x4d_fpn_ms-2x_coco": Reference("resnext", 101, multiscale=(480, 800)),
    "gfl_x101-32x4d-dconv-c4-c5_fpn_ms-2x_coco": Reference("resnext", 101, C4_C5, multiscale=(480, 800)),
    "ld_r18-gflv1-r101_fpn_1x_coco": Reference("resnet", 18),
    "ld_r34-gflv1-r101_fpn_1x_coco": Reference("resnet", 34),
    "ld_r50-gflv1-r101_fpn_1x_coco": Reference("resnet", 50),
    "ld_r101-gflv1-r101-dcn_fpn_2x_coco": Reference("resnet", 101, multiscale=(480, 800)),
}


def _mmdet_configs() -> Path | None:
    """``$LOCDISTILL_MMDET_CONFIGS``, else mmdetection's ``.mim/configs`` (located, not imported)."""
    given = os.environ.get("LOCDISTILL_MMDET_CONFIGS")
    if given:
        return Path(given)
    spec = importlib.util.find_spec("mmdet")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / ".mim" / "configs"
    return path if path.is_dir() else None


def test_the_table_matches_the_mmdetection_metafiles() -> None:
    configs = _mmdet_configs()
    if configs is None or not (configs / "gfl" / "metafile.yml").is_file():
        pytest.skip("mmdetection's metafiles are not here (install mmdet or set LOCDISTILL_MMDET_CONFIGS)")
    spec = importlib.util.spec_from_file_location("zoo_table", ROOT / "tools" / "zoo_table.py")
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert TABLE_FILE.read_text(encoding="utf-8") == tool.render(tool.build_table(configs)), (
        "models.yaml is out of date: run python tools/zoo_table.py"
    )


def test_the_table_holds_the_gfl_and_ld_releases() -> None:
    kinds = {kind: [n for n, e in ENTRIES.items() if e.kind == kind] for kind in ("gfl", "ld")}
    assert len(kinds["gfl"]) == 6 and len(kinds["ld"]) == 4 and set(ENTRIES) == set(ARCHITECTURES)
    entry = ENTRIES["gfl_r50_fpn_1x_coco"]
    assert entry.box_ap == 40.2 and entry.sha256_prefix == "25944287"
    assert entry.file_name == "gfl_r50_fpn_1x_coco_20200629_121244-25944287.pth"
    for e in ENTRIES.values():
        assert e.url.startswith("https://download.openmmlab.com/mmdetection/v2.0/")
        assert e.file_name.endswith(f"-{e.sha256_prefix}.pth") and len(e.sha256_prefix) == 8


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_each_entry_loads_strictly_into_its_config(name: str) -> None:
    entry, ref = ENTRIES[name], ARCHITECTURES[name]
    cfg = load_config(entry.config, ["model.backbone.pretrained=false"])
    expected_ms = None if ref.multiscale is None else [[1333, ref.multiscale[0]], [1333, ref.multiscale[1]]]
    assert cfg.data.multiscale == expected_ms and cfg.model.head.num_classes == 80
    with torch.device("meta"):  # full-size networks, without allocating their weights
        model = build_gfl(cfg.model)
        mmdet = {k: torch.empty(shape) for k, shape in gfl_layout(ref).items()}
    if entry.kind == "ld":  # an LD checkpoint also holds its teacher, which is left out
        mmdet["teacher_model.bbox_head.gfl_cls.weight"] = torch.empty(80, 256, 3, 3)
    state, skipped = convert_detector_state_dict(mmdet)
    assert skipped == (["teacher_model.bbox_head.gfl_cls.weight"] if entry.kind == "ld" else [])
    result = model.load_state_dict(state, strict=True)  # raises on any missing/unexpected key or shape
    assert not result.missing_keys and not result.unexpected_keys


def test_teacher_links() -> None:
    for entry in ENTRIES.values():
        if entry.kind == "ld":  # the student's LD config names its teacher's config and file
            assert entry.teacher is not None
            teacher = find_entry(entry.teacher)
            assert teacher.kind == "gfl" and entry.config in teacher.teacher_of
            distill = load_config(entry.config).distill
            assert distill is not None
            assert Path(distill.teacher_checkpoint).name == teacher.file_name
            assert load_config(distill.teacher_config).source == load_config(teacher.config).source
        for ld_config in entry.teacher_of:
            distill = load_config(ld_config).distill
            assert distill is not None and Path(distill.teacher_checkpoint).name == entry.file_name
    assert len(ENTRIES["gfl_r101_fpn_ms-2x_coco"].teacher_of) >= 3
