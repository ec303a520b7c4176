"""Checkpoints: atomic saving, pruning, safe loading, weight import, RNG state."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

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
