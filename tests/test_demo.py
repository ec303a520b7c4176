"""``locdistill demo``: the quick mode runs every stage and writes the table, the JSON and the plots;
the pieces it is built from (configs, table, object picking) do what they say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from locdistill.analysis.edges import pick_objects
from locdistill.cli import main
from locdistill.demo import METRICS, _clear_previous_run, demo_configs, format_table
from locdistill.distill.distiller import check_fit
from locdistill.models.detectors.gfl import build_gfl


def test_demo_configs_pair_a_fitting_teacher_with_the_baseline(tmp_path: Path) -> None:
    teacher, baseline, ld = demo_configs(tmp_path, seed=3, quick=False)
    assert ld.cfg.distill is not None and baseline.cfg.distill is None and teacher.cfg.distill is None
    assert Path(ld.cfg.distill.teacher_checkpoint) == (tmp_path / "teacher" / "latest.pth").resolve()
    # The LD student is the baseline plus the distill section: same model, data and schedule.
    assert ld.cfg.model == baseline.cfg.model and ld.cfg.data == baseline.cfg.data
    assert ld.cfg.train == baseline.cfg.train
    assert (ld.cfg.train.seed, ld.cfg.data.train.seed, ld.cfg.data.val.seed) == (3, 3, 3)
    assert ld.cfg.distill.main_ld.enabled and ld.cfg.distill.vlr_ld.enabled
    student, big = build_gfl(baseline.cfg.model), build_gfl(teacher.cfg.model)
    check_fit(student, big, need_classes=True)
    assert sum(p.numel() for p in big.parameters()) > 2 * sum(p.numel() for p in student.parameters())
    assert teacher.cfg.train.epochs > baseline.cfg.train.epochs


def test_format_table_lists_every_model_in_percent() -> None:
    rows = {"teacher": {m: 0.5 for m in METRICS}, "LD student": {m: 0.25 for m in METRICS}}
    table = format_table(rows, {"teacher": 12.0, "LD student": 3.0})
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["model", "AP", "AP50", "AP75"]
    assert lines[2].split()[1:3] == ["50.0", "50.0"] and lines[2].split()[-1] == "12"
    assert lines[3].startswith("LD student") and "25.0" in lines[3]
    # pycocotools' -1 (no large object in the validation images) reads n/a, not -100.0
    table = format_table({"teacher": {**{m: 0.5 for m in METRICS}, "APl": -1.0}}, {"teacher": 1.0})
    row = table.splitlines()[2].split()
    assert row[METRICS.index("APl") + 1] == "n/a" and "-100.0" not in table


def test_pick_objects_returns_positive_anchors_spread_over_sizes() -> None:
    class T:  # the two Assignment fields the picker reads
        anchors = torch.tensor(
            [[0, 0, 8, 8], [8, 0, 16, 8], [0, 8, 8, 16], [8, 8, 16, 16]], dtype=torch.float32
        )
        gt_index = torch.tensor([[0, 0, 1, -1]])

    class G:
        def __init__(self, boxes: list[list[float]]) -> None:
            self.boxes = torch.tensor(boxes)

        def __len__(self) -> int:
            return len(self.boxes)

    gts = [G([[8, 0, 16, 8], [0, 8, 4, 12], [0, 0, 1, 1]])]  # the third GT has no positive anchor
    picks = pick_objects(T(), gts, 5)
    assert sorted(picks) == [(0, 0, 1), (0, 1, 2)]  # nearest positive to each centre; GT 2 left out
    assert pick_objects(T(), gts, 1) == [(0, 1, 2)]  # the smallest first


def test_a_rerun_replaces_the_previous_demo_but_never_another_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "demo" / "teacher"
    old.mkdir(parents=True)
    (old / "config.yaml").write_text("model: {}\n")
    (old / "metrics.jsonl").write_text('{"type": "train"}\n')
    _clear_previous_run(old)
    assert not old.exists()
    precious = tmp_path / "mine" / "teacher"
    precious.mkdir(parents=True)
    (precious / "thesis.tex").write_text("do not delete")
    assert main(["demo", "--quick", "--out", str(tmp_path / "mine")]) == 2
    assert "is not a locdistill work dir" in capsys.readouterr().err
    assert (precious / "thesis.tex").read_text() == "do not delete"


@pytest.mark.slow
def test_quick_demo_writes_table_json_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("teacher", "baseline student", "LD student", "LD - baseline"):
        assert name in printed
    result = json.loads((out / "results.json").read_text())
    assert set(result["metrics"]) == {"teacher", "baseline student", "LD student"}
    assert set(result["metrics"]["LD student"]) >= set(METRICS)
    assert result["quick"] is True
    for figure in ("loss_curves.png", "edge_distributions.png"):
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ld_terms = json.loads((out / "ld_student" / "metrics.jsonl").read_text().splitlines()[0])
    base_terms = json.loads((out / "baseline" / "metrics.jsonl").read_text().splitlines()[0])
    assert {"loss_ld", "loss_ld_vlr"} <= set(ld_terms) and "loss_ld" not in base_terms
    ckpt = torch.load(out / "ld_student" / "latest.pth", weights_only=True)
    assert not any(k.startswith("teacher.") for k in ckpt["model"])


def test_demo_methods_add_crosskd_students_that_fit_the_teacher(tmp_path: Path) -> None:
    from locdistill.distill.crosskd import CrossKD

    stages = demo_configs(tmp_path, seed=0, quick=False, method="all")
    names = [s.name for s in stages]
    assert names == ["teacher", "baseline student", "LD student", "CrossKD student", "CrossKD+LD student"]
    assert [s.name for s in demo_configs(tmp_path, 0, False)] == names[:3]  # the default is unchanged
    baseline, big = build_gfl(stages[1].cfg.model), build_gfl(stages[0].cfg.model)
    for stage in stages[3:]:
        d = stage.cfg.distill
        assert d is not None and d.crosskd.enabled
        assert stage.cfg.model == stages[1].cfg.model and stage.cfg.train == stages[1].cfg.train
        assert Path(d.teacher_checkpoint) == (tmp_path / "teacher" / "latest.pth").resolve()
        CrossKD(baseline, big, d.crosskd)  # widths differ (32 vs 64): the configs use the adapter
    assert stages[4].cfg.distill.main_ld.enabled and not stages[3].cfg.distill.main_ld.enabled
    with pytest.raises(ValueError, match="demo --method must be one of"):
        demo_configs(tmp_path, 0, False, "fitnet")
