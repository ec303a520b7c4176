"""The training loop: a non-finite loss stops it naming the term; an LD run saves only the student."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from locdistill.engine.checkpoint import (
    load_checkpoint,
    sha256_file,
)
from tests.helpers import tiny_config


def test_non_finite_loss_stops_training_naming_the_term(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from locdistill.engine import train as train_mod
    from locdistill.engine.build import DetectorLoss

    real_forward = DetectorLoss.forward
    calls = {"n": 0}

    def forward_with_nan(self, batch):
        losses = real_forward(self, batch)
        calls["n"] += 1
        if calls["n"] == 3:
            losses["loss_dfl"] = losses["loss_dfl"] * float("nan")
        return losses

    monkeypatch.setattr(DetectorLoss, "forward", forward_with_nan)
    cfg = tiny_config(tmp_path)
    with pytest.raises(train_mod.NonFiniteLossError) as err:
        train_mod.train(cfg, tmp_path / "work")
    message = str(err.value)
    assert "loss_dfl=nan" in message
    assert "epoch 1, iteration 3" in message
    assert "loss_cls" not in message  # only the bad term is named
    records = [json.loads(line) for line in (tmp_path / "work" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["global_iter"] == 2  # the iterations before it were logged


def test_distillation_run_trains_and_saves_only_the_student(tmp_path: Path) -> None:
    from locdistill.config import dump_config
    from locdistill.engine.train import train

    teacher_cfg = tiny_config(tmp_path, ["train.max_iters=2"])
    teacher_ckpt = train(teacher_cfg, tmp_path / "teacher")
    teacher_yaml = tmp_path / "teacher.yaml"
    dump_config(teacher_cfg, teacher_yaml)

    student_cfg = tiny_config(
        tmp_path,
        [
            "train.max_iters=2",
            f"distill.teacher_config={teacher_yaml}",
            f"distill.teacher_checkpoint={teacher_ckpt}",
            "distill.main_kd.enabled=true",
        ],
    )
    final = train(student_cfg, tmp_path / "student")
    ckpt = load_checkpoint(final)
    assert not any(k.startswith("teacher.") for k in ckpt["model"])
    assert set(ckpt["model"]) == set(load_checkpoint(teacher_ckpt)["model"])  # the student's own keys
    assert ckpt["meta"]["teacher_sha256"] == sha256_file(teacher_ckpt)
    assert ckpt["config"]["distill"]["teacher_checkpoint"] == str(teacher_ckpt)
    from locdistill.models.detectors.gfl import build_gfl

    trainable = [p for p in build_gfl(student_cfg.model).parameters() if p.requires_grad]
    in_optimizer = sum(len(g["params"]) for g in ckpt["optimizer"]["param_groups"])
    assert in_optimizer == len(trainable)  # the student's trainable parameters, no teacher
    records = [json.loads(line) for line in (tmp_path / "student" / "metrics.jsonl").read_text().splitlines()]
    assert {"loss_ld", "loss_kd", "loss_cls", "loss_bbox", "loss_dfl"} <= set(records[-1])
