"""``locdistill plot``: metrics.jsonl records (resumed runs, LD terms, validation AP, non-finite values)
become one PNG overlaying the runs; a default output file is never overwritten."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from locdistill.analysis.curves import plot_runs, read_metrics, run_names
from locdistill.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


def fake_work_dir(path: Path, ld: bool, iters: int = 30) -> Path:
    """A work dir with the records the trainer writes: train every 5 iterations, val every 10."""
    path.mkdir(parents=True)
    lines = [json.dumps({"note": "not a record"})]
    for it in range(5, iters + 1, 5):
        rec = {"type": "train", "epoch": 1, "iter": it, "global_iter": it, "lr": 0.01 * min(it / 10, 1)}
        rec.update(loss_cls=1 / it, loss_bbox=2 / it, loss_dfl=0.5 / it)
        if ld:
            rec.update(loss_ld=0.1 / it, loss_ld_vlr=0.05 / it)
        rec["loss"] = sum(v for k, v in rec.items() if k.startswith("loss_"))
        lines.append(json.dumps(rec))
        if it % 10 == 0:
            lines.append(
                json.dumps({"type": "val", "epoch": 1, "global_iter": it, "AP": it / 100, "AP50": it / 60})
            )
    # a resumed run re-logs iteration 30 (the later record wins); a non-finite loss is stored as a string
    lines.append(
        json.dumps({"type": "train", "global_iter": iters, "lr": 0.001, "loss": "nan", "loss_cls": 9.0})
    )
    (path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return path


def test_read_metrics_sorts_and_keeps_the_last_record_per_iteration(tmp_path: Path) -> None:
    records = read_metrics(fake_work_dir(tmp_path / "run", ld=False))
    assert [r["global_iter"] for r in records["train"]] == [5, 10, 15, 20, 25, 30]
    assert records["train"][-1]["loss_cls"] == 9.0 and [r["AP"] for r in records["val"]] == [0.1, 0.2, 0.3]
    with pytest.raises(FileNotFoundError, match="no metrics.jsonl"):
        read_metrics(tmp_path)


def test_plot_overlays_runs_into_one_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = fake_work_dir(tmp_path / "a" / "baseline", ld=False)
    ld = fake_work_dir(tmp_path / "b" / "baseline", ld=True)  # same folder name: the parent tells them apart
    assert run_names([base, ld]) == ["a/baseline", "b/baseline"]
    out = tmp_path / "figs" / "curves.png"
    assert main(["plot", str(base), str(ld), "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    data = out.read_bytes()
    assert data[:8] == PNG and len(data) > 20_000
    # a single run without LD terms or validation records also plots
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "metrics.jsonl").write_text(
        json.dumps({"type": "train", "global_iter": 1, "lr": 0.1, "loss": 1.0})
    )
    assert plot_runs([lone], tmp_path / "lone.png").read_bytes()[:8] == PNG


def test_plot_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = fake_work_dir(tmp_path / "run", ld=False)
    monkeypatch.chdir(tmp_path)
    Path("curves.png").write_bytes(b"mine")
    assert main(["plot", str(run)]) == 2  # the default output exists and was not named
    assert "curves.png exists" in capsys.readouterr().err and Path("curves.png").read_bytes() == b"mine"
    assert main(["plot", str(tmp_path / "nowhere"), "--out", "x.png"]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "metrics.jsonl").write_text("{not json\n")
    assert main(["plot", str(bad), "--out", "x.png"]) == 2
    assert "line 1 is not JSON" in capsys.readouterr().err
