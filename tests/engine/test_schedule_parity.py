"""Our optimiser hyper-parameters equal mmdetection 3.3.0's at every iteration of whole runs.

``tests/refs/mmdet_schedules/schedules.json`` holds the ``lr``, ``momentum``, ``weight_decay``,
``dampening`` and ``nesterov`` of each of mmdetection's parameter groups before every iteration of its
own runner, for the 1x, 2x multi-scale, LD 1x and (the seed's) VOC schedules at 7, 50 and 500
iterations per epoch (see the README there; ``benchmarks/record_mmdet_schedules.py`` made it). Here our
configs' ``train.optim`` and ``train.epochs`` drive :func:`build_optimizer` + :func:`build_scheduler`
through the same number of iterations, at the total batch of 16 the mmdetection configs state their lr
for. lr: 1e-12 relative (mmengine multiplies step by step, we compute each value in closed form: they
differ by float rounding, a few 1e-15); the others exactly.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from locdistill.config import OptimConfig, load_config
from locdistill.engine.optim import build_optimizer, build_scheduler, scaled_lr

ROOT = Path(__file__).resolve().parents[2]
REFS = ROOT / "tests" / "refs" / "mmdet_schedules" / "schedules.json"
CONFIGS = ROOT / "src" / "locdistill" / "configs"

OUR_CONFIGS = {
    "gfl_1x": "gfl/gfl_r50_fpn_coco_1x.yaml",
    "gfl_ms_2x": "gfl/gfl_r101_fpn_coco_2x.yaml",  # the seed's ms-2x R-101 teacher
    "ld_1x": "ld/ld_gflv1_r101_r18_fpn_coco_1x.yaml",
    "voc": "gfl/gfl_r18_fpn_voc.yaml",
}
"""Case name in the refs -> our config with that schedule."""

MORE_CONFIGS = {
    "gfl_1x": [
        "gfl/gfl_r18_fpn_coco_1x.yaml",
        "gfl/gfl_r34_fpn_coco_1x.yaml",
        "ld/ld_gflv1_r101_r50_fpn_coco_1x.yaml",
    ],
    "gfl_ms_2x": ["gfl/gflv2_r50_fpn_coco_2x.yaml", "ld/ld_gflv1_r101dcn_r101_fpn_coco_2x.yaml"],
    "voc": ["ld/ld_gflv1_r101_r18_fpn_voc.yaml"],
}
"""Other configs of the seed's tables whose schedule must be the same as the case's."""


def _refs() -> dict[str, Any]:
    if not REFS.is_file():
        pytest.skip(f"mmdetection schedule references not found at {REFS}")
    return json.loads(REFS.read_text())


def _expand(runs: list[list[Any]], n: int) -> list[Any]:
    """Run-length ``[[first_iteration, value], ...]`` -> one value per iteration."""
    out: list[Any] = []
    for (start, value), nxt in zip(runs, [*runs[1:], [n, None]]):
        out.extend([value] * (int(nxt[0]) - int(start)))
    assert len(out) == n
    return out


def _sha256(values: list[float]) -> str:
    return hashlib.sha256(struct.pack(f"<{len(values)}d", *(float(v) for v in values))).hexdigest()


def _ours(optim: OptimConfig, lr: float, iters_per_epoch: int, iterations: int) -> list[dict[str, Any]]:
    """Our optimiser's group hyper-parameters before every iteration (the values its step uses)."""
    params = [nn.Parameter(torch.zeros(2))]
    opt = build_optimizer(params, optim, lr)
    sched = build_scheduler(opt, optim, iters_per_epoch)
    rows = []
    for _ in range(iterations):
        rows.append([dict(g) for g in opt.param_groups])
        opt.step()  # no gradients: nothing moves, the scheduler sees the usual order
        sched.step()
    assert len(opt.param_groups) == 1
    return [row[0] for row in rows]


def _cases() -> list[str]:
    if not REFS.is_file():
        return []
    return sorted(json.loads(REFS.read_text())["cases"])


def test_refs_are_present_and_cover_the_schedules() -> None:
    refs = _refs()
    assert refs["versions"]["mmdet"] == "3.3.0"
    names = {key.split("@")[0] for key in refs["cases"]}
    assert names == set(OUR_CONFIGS)
    assert REFS.stat().st_size < 1_000_000


@pytest.mark.parametrize("key", _cases())
def test_schedule_equals_mmdetection_at_every_iteration(key: str) -> None:
    case = _refs()["cases"][key]
    name = key.split("@")[0]
    cfg = load_config(CONFIGS / OUR_CONFIGS[name])
    n, ipe = int(case["iterations"]), int(case["iters_per_epoch"])
    assert cfg.train.epochs == case["epochs"], f"{OUR_CONFIGS[name]}: train.epochs"
    assert len(case["groups"]) == 1, "mmdetection builds one parameter group (no paramwise_cfg)"
    ref = case["groups"][0]
    base_lr = scaled_lr(cfg.train.optim.lr, 16, cfg.train.optim.scale_lr)
    assert base_lr == case["optimizer"]["lr"], "the lr the mmdetection config states for batch 16"

    expected = {k: _expand(ref[k], n) for k in ("lr", "momentum", "weight_decay", "dampening", "nesterov")}
    for k in ("lr", "momentum", "weight_decay", "dampening"):
        assert _sha256(expected[k]) == ref[f"{k}_sha256"], (
            f"the stored {k} runs do not decode to the recording"
        )
    ours = _ours(cfg.train.optim, base_lr, ipe, n)
    got_lr = torch.tensor([g["lr"] for g in ours], dtype=torch.float64)
    want_lr = torch.tensor(expected["lr"], dtype=torch.float64)
    rel = ((got_lr - want_lr).abs() / want_lr).max().item()
    worst = int(((got_lr - want_lr).abs() / want_lr).argmax())
    assert rel <= 1e-12, (
        f"iteration {worst}: lr {got_lr[worst].item()!r}, mmdetection {want_lr[worst].item()!r}"
    )
    for k in ("momentum", "weight_decay", "dampening", "nesterov"):
        got = [g[k] for g in ours]
        bad = [i for i, (a, b) in enumerate(zip(got, expected[k])) if a != b]
        assert not bad, f"{k} at iteration {bad[0]}: {got[bad[0]]!r}, mmdetection {expected[k][bad[0]]!r}"


@pytest.mark.parametrize("name", sorted(MORE_CONFIGS))
def test_other_seed_configs_share_the_schedule(name: str) -> None:
    """The other rows of the seed's tables use the very schedule that is pinned above."""
    ref = load_config(CONFIGS / OUR_CONFIGS[name]).train
    for path in MORE_CONFIGS[name]:
        other = load_config(CONFIGS / path).train
        assert other.epochs == ref.epochs, path
        a, b = other.optim, ref.optim
        assert (a.lr, a.momentum, a.weight_decay, a.steps, a.gamma) == (
            b.lr,
            b.momentum,
            b.weight_decay,
            b.steps,
            b.gamma,
        ), path
        assert (a.warmup_iters, a.warmup_ratio, a.warmup_style, a.scale_lr) == (
            b.warmup_iters,
            b.warmup_ratio,
            b.warmup_style,
            b.scale_lr,
        ), path


def test_the_optimiser_holds_what_mmdetection_trains() -> None:
    """mmdetection's one group lists every student parameter, frozen ones included (never updated);
    ours lists exactly the trainable ones, as many as mmdetection's (the teacher is in neither)."""
    from locdistill.models.detectors.gfl import build_gfl

    ref = _refs()["cases"]["ld_1x@7"]["groups"][0]
    cfg = load_config(CONFIGS / OUR_CONFIGS["ld_1x"], ["model.backbone.pretrained=false"])
    student = build_gfl(cfg.model)
    opt = build_optimizer(student, cfg.train.optim, 0.01)
    assert len(opt.param_groups) == 1
    assert len(opt.param_groups[0]["params"]) == ref["trainable"] == 94
    assert len(list(student.parameters())) == ref["params"]


def test_mmcv_warmup_style_is_the_seeds() -> None:
    """``warmup_style: mmcv`` (mmdetection 2.x): the full lr from iteration ``warmup_iters``, not one
    earlier; in between it sits below mmengine's line."""
    mmengine = _ours(OptimConfig(warmup_iters=500), 0.01, 100, 600)
    mmcv = _ours(OptimConfig(warmup_iters=500, warmup_style="mmcv"), 0.01, 100, 600)
    assert mmengine[0]["lr"] == pytest.approx(1e-5, rel=1e-12) and mmcv[0]["lr"] == pytest.approx(
        1e-5, rel=1e-12
    )
    assert mmengine[499]["lr"] == 0.01 and mmcv[499]["lr"] == pytest.approx(0.01 * (1 - 0.999 / 500))
    assert mmcv[500]["lr"] == 0.01
    assert all(b["lr"] < a["lr"] for a, b in zip(mmengine[1:500], mmcv[1:500]))
