"""Record mmdetection 3.3.0's optimiser hyper-parameters at every iteration of a whole training run.

Runs only in a Python environment with mmdet 3.3.0 / mmengine (``/work/mmdet_venv/bin/python``);
writes ``tests/refs/mmdet_schedules/schedules.json``, which ``tests/engine/test_schedule_parity.py``
checks our schedule against. Nothing of mmdetection is copied: the configs that ship in the mmdet wheel
are loaded, and mmengine's own ``Runner`` (``EpochBasedTrainLoop``, ``ParamSchedulerHook``, the optimiser
wrapper built by its default constructor from the config's ``optim_wrapper``) runs every iteration.

The model is the config's real detector (backbone ``init_cfg=None``: no download), so the optimiser's
parameter groups are the ones mmdetection builds for it. Its ``train_step`` is replaced by a cheap one (a
loss on one :class:`Scale`, then ``optim_wrapper.update_params``): the schedule does not depend on the
loss. A hook records, before every iteration (so: the values the SGD step of that iteration uses), the
``lr``, ``momentum``, ``weight_decay``, ``dampening`` and ``nesterov`` of every parameter group.

Each case is a config and an epoch length (``iters_per_epoch``, the data loader's length); the epoch
counts and milestones are the config's own. With the 500-iteration warm-up, 7 iterations per epoch keep
the whole run in the warm-up, 50 end it in epoch 10 (after the 1x milestone at epoch 8, before the 2x
ones), 500 end it on the last iteration of epoch 1.

Usage::

    /work/mmdet_venv/bin/python benchmarks/record_mmdet_schedules.py [--out tests/refs/mmdet_schedules]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.machinery
import json
import logging
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any

from mmdet_worker import _configs_dir, _install_fake_mmcv_ext

ROOT = Path(__file__).resolve().parents[1]
ITERS_PER_EPOCH = (7, 50, 500)
KEYS = ("lr", "momentum", "weight_decay", "dampening", "nesterov")

CASES: dict[str, dict[str, Any]] = {
    # The seed's COCO 1x (GFL R50 1x, also the plain R18/R34/R50 rows).
    "gfl_1x": {"config": "gfl/gfl_r50_fpn_1x_coco.py"},
    # The seed's 2x multi-scale (the R-101 teacher: gfl_r101_fpn_mstrain_2x_coco).
    "gfl_ms_2x": {"config": "gfl/gfl_r50_fpn_ms-2x_coco.py"},
    # LD R-101 -> R-18, 1x: the student only is optimised.
    "ld_1x": {"config": "ld/ld_r18-gflv1-r101_fpn_1x_coco.py"},
    # The seed's VOC schedule (LD repo ``configs/ld/ld_gflv1_r101_r18_fpn_voc.py``: 4 epochs, step at 3,
    # the 1x warm-up), written in mmdetection 3.x's terms: schedule_1x's two schedulers with the VOC
    # epochs and milestone. mmdetection 3.3.0 ships no GFL VOC config (its VOC configs have no warm-up).
    "voc": {"config": "gfl/gfl_r50_fpn_1x_coco.py", "epochs": 4, "milestones": [3]},
}


def run_length(values: list[Any]) -> list[list[Any]]:
    """``[[first_iteration, value], ...]`` at every change of value."""
    out: list[list[Any]] = []
    for i, v in enumerate(values):
        if not out or out[-1][1] != v:
            out.append([i, v])
    return out


def checksum(values: list[float]) -> str:
    """sha256 of the values as little-endian float64 (the test decodes the runs and compares)."""
    return hashlib.sha256(struct.pack(f"<{len(values)}d", *(float(v) for v in values))).hexdigest()


def build_config(case: dict[str, Any]) -> Any:
    from mmengine.config import Config

    configs = _configs_dir()
    cfg = Config.fromfile(str(configs / case["config"]))
    cfg.model.backbone.init_cfg = None
    if "teacher_config" in cfg.model:
        teacher = Config.fromfile(str(configs / cfg.model.teacher_config.replace("configs/", "", 1)))
        teacher.model.backbone.init_cfg = None
        cfg.model.teacher_config = teacher
        cfg.model.teacher_ckpt = None
    if "epochs" in case:
        cfg.train_cfg.max_epochs = case["epochs"]
        for sched in cfg.param_scheduler:
            if sched["type"] == "MultiStepLR":
                sched["end"] = case["epochs"]
                sched["milestones"] = case["milestones"]
    return cfg


def record(case: dict[str, Any], iters_per_epoch: int, work_dir: str) -> dict[str, Any]:
    import torch
    from mmdet.registry import MODELS
    from mmengine.hooks import Hook, ParamSchedulerHook
    from mmengine.runner import Runner
    from torch.utils.data import DataLoader

    cfg = build_config(case)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    scale = model.bbox_head.scales[0].scale

    def train_step(data: Any, optim_wrapper: Any) -> dict[str, Any]:
        loss = (scale - 1.0).square().sum() + 1e-3 * scale.sum()
        optim_wrapper.update_params(loss)
        return {"loss": loss.detach()}

    model.train_step = train_step
    rows: list[list[tuple[Any, ...]]] = []
    groups: list[dict[str, int]] = []

    class Recorder(Hook):
        priority = "VERY_HIGH"

        def before_train(self, runner: Any) -> None:
            for g in runner.optim_wrapper.param_groups:
                groups.append(
                    {"params": len(g["params"]), "trainable": sum(bool(p.requires_grad) for p in g["params"])}
                )

        def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
            rows.append([tuple(g[k] for k in KEYS) for g in runner.optim_wrapper.param_groups])

    loader = DataLoader(list(range(iters_per_epoch)), batch_size=1, collate_fn=lambda batch: batch)
    runner = Runner(
        model=model,
        work_dir=work_dir,
        train_dataloader=loader,
        train_cfg=dict(cfg.train_cfg),
        optim_wrapper=dict(cfg.optim_wrapper),
        param_scheduler=[dict(s) for s in cfg.param_scheduler],
        default_hooks=dict(
            timer=None,
            logger=None,
            checkpoint=None,
            sampler_seed=None,
            param_scheduler=ParamSchedulerHook(),
        ),
        custom_hooks=[Recorder()],
        default_scope="mmdet",
        log_level="WARNING",
        randomness=dict(seed=0),
    )
    runner.train()
    epochs = int(cfg.train_cfg.max_epochs)
    assert len(rows) == epochs * iters_per_epoch, (len(rows), epochs, iters_per_epoch)
    out_groups = []
    for gi, info in enumerate(groups):
        entry: dict[str, Any] = dict(info)
        for ki, key in enumerate(KEYS):
            values = [row[gi][ki] for row in rows]
            entry[key] = run_length(values)
            if key != "nesterov":
                entry[f"{key}_sha256"] = checksum(values)
        out_groups.append(entry)
    return {
        "config": case["config"],
        "iters_per_epoch": iters_per_epoch,
        "epochs": epochs,
        "iterations": len(rows),
        "param_scheduler": [dict(s) for s in cfg.param_scheduler],
        "optimizer": dict(cfg.optim_wrapper.optimizer),
        "groups": out_groups,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "tests" / "refs" / "mmdet_schedules"))
    args = parser.parse_args()
    _install_fake_mmcv_ext()
    # mmengine's Runner asks importlib whether the compiled ops exist: the stand-in answers "no loader".
    sys.modules["mmcv._ext"].__spec__ = importlib.machinery.ModuleSpec("mmcv._ext", None)
    import mmcv
    import mmdet
    import mmengine
    import torch
    from mmdet.utils import register_all_modules

    logging.getLogger("mmengine").setLevel(logging.WARNING)
    register_all_modules()
    torch.set_num_threads(1)
    result: dict[str, Any] = {
        "versions": {
            "mmdet": mmdet.__version__,
            "mmengine": mmengine.__version__,
            "mmcv": mmcv.__version__,
            "torch": str(torch.__version__),
            "python": sys.version.split()[0],
        },
        "keys": list(KEYS),
        "cases": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, case in CASES.items():
            for ipe in ITERS_PER_EPOCH:
                key = f"{name}@{ipe}"
                print(f"recording {key}", file=sys.stderr, flush=True)
                result["cases"][key] = record(case, ipe, tmp)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "schedules.json"
    path.write_text(json.dumps(result, sort_keys=True, separators=(",", ":")) + "\n")
    print(f"wrote {path} ({path.stat().st_size / 1e3:.1f} kB)", file=sys.stderr)


if __name__ == "__main__":
    main()
