"""Two CPU processes under ``torchrun`` (gloo): the ranks agree on the logged (all-reduced) losses, the
lr is scaled for the total batch of both ranks, and rank 0 writes the checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from locdistill.engine.distributed import (
    all_gather_object,
    get_rank,
    get_world_size,
    init_distributed,
    reduce_mean,
)
from tests.helpers import ROOT, tiny_overrides


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_helpers_are_identities_without_a_process_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert init_distributed() == (0, 0, 1)
    assert get_world_size() == 1 and get_rank() == 0
    t = torch.tensor([1.0, 2.0])
    assert reduce_mean(t) is t
    assert all_gather_object({"a": 1}) == [{"a": 1}]


def torchrun() -> list[str] | None:
    exe = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    return [exe] if Path(exe).exists() else None


def run_torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    cmd = [
        *torchrun(),
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",  # type: ignore[misc]
        "-m",
        "locdistill",
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=cwd)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def tiny_yaml(tmp_path: Path) -> Path:
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(f"_base_: {ROOT / 'src/locdistill/configs/_base_/models/gfl_r50_fpn.yaml'}\n")
    return cfg


@pytest.mark.slow
@pytest.mark.skipif(torchrun() is None, reason="torchrun is not installed")
def test_two_process_training_evaluation_and_test_agree_across_ranks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, work = tiny_yaml(tmp_path), tmp_path / "work"
    # 12 images, 2 ranks x 2 images: 3 iterations per epoch; one epoch, then a sharded evaluation
    overrides = [*tiny_overrides(tmp_path / "data"), "model.test.score_thr=0.0"]
    proc = run_torchrun(
        [
            "train",
            str(cfg),
            "--work-dir",
            str(work),
            "--set",
            *overrides,
            "train.epochs=1",
            "train.log_interval=1",
            "train.optim.warmup_iters=0",
            "train.eval_interval=1",
        ],
        tmp_path,
    )

    assert proc.stdout.count("final checkpoint:") == 1  # printed by rank 0 only
    rank0, rank1 = read_jsonl(work / "metrics.jsonl"), read_jsonl(work / "metrics.rank1.jsonl")
    assert [r["global_iter"] for r in rank0 if r["type"] == "train"] == [1, 2, 3]
    for a, b in zip(rank0, rank1, strict=True):
        assert a["type"] == b["type"]
        train_keys = ("loss", "loss_cls", "loss_bbox", "loss_dfl", "lr")
        keys = train_keys if a["type"] == "train" else ("AP", "AR100")
        for key in keys:
            assert a[key] == b[key], (key, a, b)  # all-reduced / broadcast values: identical on every rank
    assert rank0[-1]["type"] == "val"
    # total batch = 2 ranks x 2 images = 4 -> lr = 0.01 * 4 / 16 (no warm-up in this run)
    assert rank0[0]["lr"] == pytest.approx(0.0025)
    log = (work / "train.log").read_text()
    assert "lr scaled to 0.0025 for total batch 4" in log and "world size 2" in log
    ckpt = torch.load(work / "latest.pth", weights_only=True, map_location="cpu")
    assert (ckpt["epoch"], ckpt["iter"], ckpt["global_iter"]) == (1, 0, 3) and ckpt["meta"]["world_size"] == 2
    assert len(ckpt["rng_ranks"]) == 2  # every rank's RNG state, for an exact resume

    # the sharded `test` gives what one process gives. One image per batch and one thread on both sides:
    # each image then meets the same kernels with the same inputs, and the detections are equal bit for
    # bit on any CPU (batched with other images, or with other thread counts, the convolutions may sum in
    # another order, and a score tie or an IoU at the threshold could then go the other way)
    dets2 = tmp_path / "dets2.json"
    test_args = ["test", str(cfg), str(work / "latest.pth"), "--split", "val", "--set", *overrides]
    test_args.append("data.test_images_per_gpu=1")
    proc = run_torchrun([*test_args, "--out", str(dets2)], tmp_path)
    from locdistill.cli import main

    dets1 = tmp_path / "dets1.json"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as OMP_NUM_THREADS=1 in the torchrun processes
    try:
        assert main([*test_args, "--out", str(dets1)]) == 0
    finally:
        torch.set_num_threads(threads)
    single = capsys.readouterr().out
    table = single.split("detections written")[0]
    assert table.strip() and table in proc.stdout
    assert proc.stdout.count("Average Precision") == 6  # printed once, by rank 0
    # the same detections for every image, in the order of the images
    by_image: list[dict[int, list[dict]]] = [{}, {}]
    for side, path in enumerate((dets1, dets2)):
        for r in json.loads(path.read_text()):
            by_image[side].setdefault(r["image_id"], []).append(r)
    assert by_image[0] == by_image[1]


@pytest.mark.slow
@pytest.mark.skipif(torchrun() is None, reason="torchrun is not installed")
def test_two_process_distillation_keeps_the_teacher_out_of_ddp(tmp_path: Path) -> None:
    from locdistill.config import dump_config, load_config
    from locdistill.engine.train import train

    cfg = tiny_yaml(tmp_path)
    overrides = tiny_overrides(tmp_path / "data")
    teacher_cfg = load_config(cfg, [*overrides, "train.max_iters=1"])
    teacher_ckpt = train(teacher_cfg, tmp_path / "teacher")
    dump_config(teacher_cfg, tmp_path / "teacher.yaml")
    work = tmp_path / "ld"
    run_torchrun(
        [
            "train",
            str(cfg),
            "--work-dir",
            str(work),
            "--set",
            *overrides,
            "train.max_iters=2",
            "train.log_interval=1",
            f"distill.teacher_config={tmp_path / 'teacher.yaml'}",
            f"distill.teacher_checkpoint={teacher_ckpt}",
        ],
        tmp_path,
    )
    rank0, rank1 = read_jsonl(work / "metrics.jsonl"), read_jsonl(work / "metrics.rank1.jsonl")
    assert [r["global_iter"] for r in rank0] == [1, 2]
    for a, b in zip(rank0, rank1, strict=True):
        assert a["loss_ld"] == b["loss_ld"] and a["loss"] == b["loss"]
    ckpt = torch.load(work / "latest.pth", weights_only=True, map_location="cpu")
    assert not any(k.startswith("teacher.") for k in ckpt["model"]) and ckpt["meta"]["teacher_sha256"]
