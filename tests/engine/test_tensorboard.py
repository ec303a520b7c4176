"""Optional TensorBoard logging: a tiny training run with ``--tensorboard`` writes the metrics.jsonl
records as scalars (read back with TensorBoard's own reader); ``locdistill plot`` draws that work dir;
asking for TensorBoard without the package is a one-line error before any training."""

from __future__ import annotations

import builtins
import json
from pathlib import Path
from typing import Any

import pytest

from locdistill.cli import main

TINY_SYNTHETIC = [
    "data.train.num_images=8",
    "data.val.num_images=4",
    "data.train.image_size=96",
    "data.val.image_size=96",
    "data.img_scale=[96, 96]",
    "train.epochs=2",
    "train.eval_interval=1",
    "train.optim.warmup_iters=2",
    "train.log_interval=1",
    "model.test.score_thr=0.0",
]


def test_tensorboard_mirrors_metrics_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    work = tmp_path / "run"
    args = ["train", "demo/demo_base", "--work-dir", str(work), "--tensorboard", "--set", *TINY_SYNTHETIC]
    assert main(args) == 0
    records = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["type"] == "train"]
    val = [r for r in records if r["type"] == "val"]
    assert len(train) == 4 and len(val) == 2
    events = EventAccumulator(str(work / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/loss_dfl", "val/AP", "val/AP50"} <= tags
    assert not any(t.endswith(("/global_iter", "/epoch", "/iter")) for t in tags)
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [r["global_iter"] for r in train]
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in train], rel=1e-6)
    assert [e.step for e in events.Scalars("val/AP")] == [r["global_iter"] for r in val]

    capsys.readouterr()
    out = tmp_path / "curves.png"
    assert main(["plot", str(work), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tensorboard_missing_is_a_clear_error_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_tensorboard(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "tensorboard" or name.startswith(("tensorboard.", "torch.utils.tensorboard")):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    work = tmp_path / "run"
    args = [
        "train",
        "demo/demo_base",
        "--work-dir",
        str(work),
        "--set",
        *TINY_SYNTHETIC,
        "train.tensorboard=true",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tensorboard package is not installed" in err and "pip install" in err
    assert not work.exists()  # nothing was started
