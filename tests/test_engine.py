"""Engine units: lr rule and schedule, optimiser, EMA, checkpoints (atomic, safe loading, pruning,
weights import, convert), and the training loop's non-finite-loss abort."""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from locdistill.config import OptimConfig, load_config
from locdistill.engine.checkpoint import (
    CheckpointError,
    get_rng_state,
    load_checkpoint,
    load_model_weights,
    prune_checkpoints,
    save_checkpoint,
    set_rng_state,
    sha256_file,
    strip_to_weights,
)
from locdistill.engine.ema import ModelEMA
from locdistill.engine.optim import build_optimizer, build_scheduler, lr_factor, scaled_lr

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------- lr and optim
def test_lr_rule_of_the_seed() -> None:
    assert scaled_lr(0.01, 6) == pytest.approx(0.00375)  # the seed README's 2 GPUs x 3 images
    assert scaled_lr(0.01, 16) == pytest.approx(0.01)
    assert scaled_lr(0.01, 2) == pytest.approx(0.00125)
    assert scaled_lr(0.01, 6, scale=False) == 0.01


def test_warmup_and_step_factors_follow_mmdetection() -> None:
    kw: dict[str, Any] = {
        "iters_per_epoch": 100,
        "steps": [8, 11],
        "gamma": 0.1,
        "warmup_iters": 500,
        "warmup_ratio": 0.001,
    }
    assert lr_factor(0, **kw) == pytest.approx(0.001)
    assert lr_factor(250, **kw) == pytest.approx(1 - 0.5 * 0.999)
    assert lr_factor(499, **kw) == pytest.approx(1 - (1 / 500) * 0.999)
    assert lr_factor(500, **kw) == 1.0
    assert lr_factor(799, **kw) == 1.0  # epoch 7 (0-based) is the 8th: still the full lr
    assert lr_factor(800, **kw) == pytest.approx(0.1)  # "step at epoch 8": after 8 epochs
    assert lr_factor(1099, **kw) == pytest.approx(0.1)
    assert lr_factor(1100, **kw) == pytest.approx(0.01)
    # warm-up multiplies the regular (stepped) lr, as mmcv's LrUpdaterHook does
    short = {**kw, "iters_per_epoch": 10}
    assert lr_factor(85, **short) == pytest.approx(0.1 * (1 - (1 - 85 / 500) * 0.999))


def test_scheduler_sets_per_iteration_lr_and_resumes(tmp_path: Path) -> None:
    cfg = OptimConfig(lr=0.01, warmup_iters=5, warmup_ratio=0.1, steps=[1, 2])
    model = nn.Linear(2, 2)
    opt = build_optimizer(model, cfg, 0.02)
    sched = build_scheduler(opt, cfg, iters_per_epoch=4)
    seen = []
    for _ in range(12):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [0.02 * lr_factor(i, 4, [1, 2], 0.1, 5, 0.1) for i in range(12)]
    assert seen == pytest.approx(expected)
    assert seen[4] == pytest.approx(0.02 * 0.1 * (1 - (1 / 5) * 0.9))  # epoch 1, still warming up

    # a fresh scheduler loaded from the state continues the same sequence (weights_only round trip)
    save_checkpoint(tmp_path / "s.pth", {"optimizer": opt.state_dict(), "scheduler": sched.state_dict()})
    state = load_checkpoint(tmp_path / "s.pth")
    model2 = nn.Linear(2, 2)
    opt2 = build_optimizer(model2, cfg, 0.02)
    sched2 = build_scheduler(opt2, cfg, iters_per_epoch=4)
    opt2.load_state_dict(state["optimizer"])
    sched2.load_state_dict(state["scheduler"])
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.02 * lr_factor(12, 4, [1, 2], 0.1, 5, 0.1))
    sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.02 * lr_factor(13, 4, [1, 2], 0.1, 5, 0.1))


def test_optimizer_is_sgd_with_weight_decay_on_every_trainable_parameter() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2))
    model[0].weight.requires_grad_(False)  # a frozen parameter stays out
    opt = build_optimizer(model, OptimConfig(momentum=0.9, weight_decay=1e-4), 0.005)
    assert isinstance(opt, torch.optim.SGD)
    assert len(opt.param_groups) == 1
    group = opt.param_groups[0]
    assert group["weight_decay"] == 1e-4 and group["momentum"] == 0.9 and group["lr"] == 0.005
    ids = {id(p) for p in group["params"]}
    assert id(model[0].weight) not in ids
    assert {id(model[1].weight), id(model[1].bias), id(model[0].bias)} <= ids  # norms and biases decay too


# --------------------------------------------------------------------------------------------- EMA
def test_ema_momentum_warms_up_like_mmdetection() -> None:
    ema = ModelEMA(nn.Linear(2, 2), decay=0.9998, warmup_iters=2000)
    m0 = ema.momentum(0)
    assert m0 == pytest.approx(0.9998 * np.exp(-1 / 2000) + 0.0002)
    assert ema.momentum(100_000) == pytest.approx(0.0002, rel=1e-6)


def test_ema_update_and_state() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    ema = ModelEMA(model, decay=0.9, warmup_iters=0)
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():
        model[0].weight.add_(1.0)  # type: ignore[operator]
    ema.update(model)
    live = model.state_dict()
    after = ema.module.state_dict()
    assert torch.allclose(after["0.weight"], 0.9 * before["0.weight"] + 0.1 * live["0.weight"])
    assert not any(p.requires_grad for p in ema.module.parameters())
    assert ema.updates == 1
    other = ModelEMA(model, decay=0.9, warmup_iters=0)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1 and torch.equal(other.module.state_dict()["0.weight"], after["0.weight"])


# ------------------------------------------------------------------------------------- checkpoints
def small_state() -> dict:
    model = nn.Linear(3, 2)
    return {
        "model": model.state_dict(),
        "epoch": 1,
        "iter": 0,
        "config": {"metric": "coco"},
        "meta": {"git_rev": "x"},
    }


def test_save_is_atomic_when_the_write_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "epoch_1.pth"
    save_checkpoint(target, small_state())
    good = target.read_bytes()

    real_save = torch.save

    def failing_save(obj, f, *args, **kwargs):  # writes half a file, then dies
        real_save(obj, f, *args, **kwargs)
        with open(f, "r+b") as fh:
            fh.truncate(100)
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(target, small_state())
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "epoch_2.pth", small_state())
    monkeypatch.undo()
    assert target.read_bytes() == good  # the previous checkpoint is untouched
    assert not (tmp_path / "epoch_2.pth").exists()  # no partial new file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_1.pth"]  # no temp files left
    assert load_checkpoint(target)["epoch"] == 1


def test_keep_last_prunes_old_checkpoints(tmp_path: Path) -> None:
    for name in [
        "epoch_1.pth",
        "epoch_2.pth",
        "iter_25.pth",
        "epoch_3.pth",
        "epoch_10.pth",
        "best.pth",
        "latest.pth",
    ]:
        (tmp_path / name).write_bytes(b"x")
    removed = prune_checkpoints(tmp_path, keep_last=2, iters_per_epoch=10)
    assert sorted(p.name for p in removed) == ["epoch_1.pth", "epoch_2.pth", "iter_25.pth"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best.pth",
        "epoch_10.pth",
        "epoch_3.pth",
        "latest.pth",
    ]
    assert prune_checkpoints(tmp_path, keep_last=0, iters_per_epoch=10) == []


class Payload:
    """Not a tensor: ``weights_only`` loading must refuse it."""

    def __reduce__(self):
        return (print, ("this would run at load time",))


class PlainObject:
    pass


@pytest.mark.parametrize("payload", [Payload(), PlainObject()], ids=["reduce", "instance"])
def test_loading_refuses_pickled_objects(tmp_path: Path, payload: object) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": nn.Linear(2, 2).state_dict(), "extra": payload}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert "refusing to load" in message and str(path) in message
    assert "weights_only" in message
    with pytest.raises(CheckpointError):
        load_model_weights(nn.Linear(2, 2), path)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_loading_non_checkpoints_gives_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="garbage.pth"):
        load_checkpoint(garbage)
    lst = tmp_path / "list.pth"
    torch.save([1, 2], lst)
    with pytest.raises(CheckpointError, match="expected a dict"):
        load_checkpoint(lst)
    plain = tmp_path / "plain_pickle.pkl"
    plain.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError):
        load_checkpoint(plain)


def test_load_model_weights_accepts_our_plain_and_safetensors_files(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    state = {"model": src.state_dict(), "config": {"metric": "voc"}, "meta": {"git_rev": "abc"}}
    ours, plain, ddp, st = (tmp_path / n for n in ("ours.pth", "plain.pth", "ddp.pth", "w.safetensors"))
    save_checkpoint(ours, state)
    torch.save(src.state_dict(), plain)
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, ddp)
    save_checkpoint(st, state)
    for path in (ours, plain, ddp, st):
        dst = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
        missing, unexpected = load_model_weights(dst, path)
        assert missing == [] and unexpected == []
        assert all(torch.equal(a, b) for a, b in zip(dst.state_dict().values(), src.state_dict().values()))
    loaded = load_checkpoint(st)
    assert loaded["config"] == {"metric": "voc"} and loaded["meta"] == {"git_rev": "abc"}


def test_load_model_weights_names_missing_unexpected_and_mismatched_keys(tmp_path: Path) -> None:
    src = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    path = tmp_path / "w.pth"
    torch.save({"model": src.state_dict()}, path)
    bigger = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2), nn.Linear(2, 2))
    with pytest.raises(CheckpointError, match=r"missing keys: 2\.weight, 2\.bias"):
        load_model_weights(bigger, path)
    missing, unexpected = load_model_weights(bigger, path, strict=False)
    assert missing == ["2.weight", "2.bias"] and unexpected == []
    smaller = nn.Sequential(nn.Linear(3, 4))
    with pytest.raises(CheckpointError, match=r"unexpected keys: 1\.weight"):
        load_model_weights(smaller, path)
    other = nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2))
    with pytest.raises(
        CheckpointError, match=r"shape mismatches: 0\.weight \(checkpoint \(4, 3\), model \(5, 3\)\)"
    ):
        load_model_weights(other, path, strict=False)


def test_strip_to_weights_and_ema_choice() -> None:
    live = nn.Linear(2, 2).state_dict()
    ema = {k: v + 1 for k, v in live.items()}
    ckpt = {
        "model": live,
        "optimizer": {"state": {}},
        "scheduler": {},
        "ema": {"module": ema, "updates": 3},
        "rng": {},
        "config": {"metric": "coco"},
        "meta": {"teacher_sha256": "f" * 64},
    }
    small = strip_to_weights(ckpt)
    assert set(small) == {"model", "config", "meta"}
    assert torch.equal(small["model"]["weight"], live["weight"])
    assert small["meta"]["teacher_sha256"] == "f" * 64
    small_ema = strip_to_weights(ckpt, use_ema=True)
    assert torch.equal(small_ema["model"]["weight"], ema["weight"]) and small_ema["meta"]["weights"] == "ema"
    with pytest.raises(CheckpointError, match="no EMA"):
        strip_to_weights({"model": live}, use_ema=True)
    teacherful = strip_to_weights({"model": {"student.w": torch.ones(1), "teacher.w": torch.zeros(1)}})
    assert list(teacherful["model"]) == ["w"]


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    path = tmp_path / "rng.pth"
    save_checkpoint(path, {"rng": get_rng_state()})
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    set_rng_state(load_checkpoint(path)["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected


def test_sha256_file(tmp_path: Path) -> None:
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc")
    assert sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# ------------------------------------------------------------------------------- training loop
def tiny_overrides(root: Path) -> list[str]:
    """A few-second CPU training run on generated data (shared with the resume and CLI tests)."""
    return [
        "model.backbone.name=resnet18",
        "model.backbone.base_width=16",
        "model.backbone.pretrained=false",
        "model.neck.out_channels=32",
        "model.head.feat_channels=32",
        "model.head.stacked_convs=1",
        "model.head.norm_groups=8",
        "model.head.num_classes=5",
        "data.train.format=synthetic",
        f"data.train.root={root / 'train'}",
        "data.train.num_images=12",
        "data.train.image_size=128",
        "data.val.format=synthetic",
        f"data.val.root={root / 'val'}",
        "data.val.num_images=6",
        "data.val.image_size=128",
        "data.img_scale=[128, 128]",
        "data.images_per_gpu=2",
        "data.workers_per_gpu=0",
        "data.test_images_per_gpu=2",
        "train.epochs=2",
        "train.optim.warmup_iters=4",
        "train.optim.steps=[1]",
        "train.eval_interval=0",
        "train.log_interval=2",
        "metric=coco",
    ]


def tiny_config(tmp_path: Path, extra: list[str] | None = None):
    cfg_file = tmp_path / "tiny.yaml"
    if not cfg_file.exists():
        tmp_path.mkdir(parents=True, exist_ok=True)
        cfg_file.write_text(
            "_base_: " + str(ROOT / "src/locdistill/configs/_base_/models/gfl_r50_fpn.yaml") + "\n"
        )
    return load_config(cfg_file, tiny_overrides(tmp_path / "data") + (extra or []))


def test_non_finite_loss_stops_training_naming_the_term(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from locdistill.engine import train as train_mod

    real_forward = train_mod.DetectorLoss.forward
    calls = {"n": 0}

    def forward_with_nan(self, batch):
        losses = real_forward(self, batch)
        calls["n"] += 1
        if calls["n"] == 3:
            losses["loss_dfl"] = losses["loss_dfl"] * float("nan")
        return losses

    monkeypatch.setattr(train_mod.DetectorLoss, "forward", forward_with_nan)
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
    from locdistill.models.gfl import build_gfl

    trainable = [p for p in build_gfl(student_cfg.model).parameters() if p.requires_grad]
    in_optimizer = sum(len(g["params"]) for g in ckpt["optimizer"]["param_groups"])
    assert in_optimizer == len(trainable)  # the student's trainable parameters, no teacher
    records = [json.loads(line) for line in (tmp_path / "student" / "metrics.jsonl").read_text().splitlines()]
    assert {"loss_ld", "loss_kd", "loss_cls", "loss_bbox", "loss_dfl"} <= set(records[-1])
