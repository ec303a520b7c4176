"""The training loop with CrossKD (adapters optimised and checkpointed) and the teacher cache (hits and
misses in the metrics)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from locdistill.config import Config, dump_config
from locdistill.engine.checkpoint import load_checkpoint
from locdistill.engine.train import train
from tests.helpers import tiny_config

# tests/helpers.tiny_config, smaller: 8 + 4 images of 96 px, no flips (so the cache hits are counted
# exactly), 4 iterations an epoch, no lr step
SMALLER = [
    "data.train.num_images=8",
    "data.train.image_size=96",
    "data.val.num_images=4",
    "data.val.image_size=96",
    "data.img_scale=[96, 96]",
    "data.flip_prob=0.0",
    "data.test_images_per_gpu=1",
    "train.optim.warmup_iters=2",
    "train.optim.steps=[]",
    "train.log_interval=4",
]


def _config(tmp_path: Path, extra: list[str]) -> Config:
    return tiny_config(tmp_path, [*SMALLER, *extra])


def test_crosskd_with_adapter_and_cache_trains_checkpoints_and_resumes(tmp_path: Path) -> None:
    teacher_cfg = _config(
        tmp_path, ["model.head.feat_channels=48", "model.head.stacked_convs=2", "train.max_iters=1"]
    )
    teacher_ckpt = train(teacher_cfg, tmp_path / "teacher")
    dump_config(teacher_cfg, tmp_path / "teacher.yaml")
    distill = [
        f"distill.teacher_config={tmp_path / 'teacher.yaml'}",
        f"distill.teacher_checkpoint={teacher_ckpt}",
        "distill.crosskd.enabled=true",
        "distill.crosskd.layer=1",
        "distill.crosskd.adapter=true",
        f"distill.cache={tmp_path / 'cache'}",
    ]
    cfg = _config(tmp_path, distill)
    final = train(cfg, tmp_path / "student")
    ckpt = load_checkpoint(final)
    assert set(ckpt["distill"]) == {
        "cls_adapter.weight",
        "cls_adapter.bias",
        "reg_adapter.weight",
        "reg_adapter.bias",
    }
    assert not any("adapter" in k or k.startswith("teacher.") for k in ckpt["model"])
    # the optimizer holds the student's parameters and the 4 adapter tensors
    student_params = sum(
        1 for k in ckpt["model"] if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    in_optimizer = sum(len(g["params"]) for g in ckpt["optimizer"]["param_groups"])
    assert in_optimizer > 4 and in_optimizer <= student_params + 4
    records = [json.loads(line) for line in (tmp_path / "student" / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if r["type"] == "train"]
    assert {"loss_crosskd_cls", "loss_crosskd_reg", "loss_ld"} <= set(train_records[-1])
    by_epoch = {r["epoch"]: r for r in train_records}
    assert by_epoch[1]["cache_misses"] == 8 and by_epoch[1]["cache_hits"] == 0  # fixed size, no flip:
    assert by_epoch[2]["cache_hits"] == 8 and by_epoch[2]["cache_misses"] == 0  # the 2nd epoch reads all
    log = (tmp_path / "student" / "train.log").read_text()
    assert "cache hits 8 misses 0" in log

    # resume from the end of epoch 1: the adapters come back with the student
    epoch1 = tmp_path / "student" / "epoch_1.pth"
    assert epoch1.is_file()
    final2 = train(_config(tmp_path, distill), tmp_path / "student", resume=epoch1)
    again = load_checkpoint(final2)
    for k, v in ckpt["distill"].items():
        torch.testing.assert_close(again["distill"][k], v, rtol=0, atol=0)
