"""The sub-commands of ``locdistill``: one ``cmd_<name>(args) -> exit code`` each.

Every command imports what it needs when it runs, so that ``locdistill --help`` stays instant; the
work itself lives in :mod:`locdistill.engine` (train, chain, evaluate, predict, checkpoints) and in
:mod:`locdistill.demo`, :mod:`locdistill.benchmark` and :mod:`locdistill.export`.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from locdistill.config import Config


class CommandUnavailable(RuntimeError):
    """A sub-command whose implementation module is not installed."""


def _work_dir(args: argparse.Namespace, cfg: Config) -> Path:
    if args.work_dir is not None:
        return Path(args.work_dir)
    if cfg.work_dir:
        return Path(cfg.work_dir)
    return Path("work_dirs") / Path(args.config).stem


def cmd_train(args: argparse.Namespace) -> int:
    from locdistill.config import load_config
    from locdistill.config.resolve import set_data_root
    from locdistill.engine.distributed import cleanup_distributed, is_main_process
    from locdistill.engine.tensorboard import require_tensorboard
    from locdistill.engine.train import train

    cfg = load_config(args.config, args.set)
    set_data_root(cfg, args.data_root)
    cfg.train.tensorboard = cfg.train.tensorboard or args.tensorboard
    if cfg.train.tensorboard:
        require_tensorboard()
    try:
        final = train(cfg, _work_dir(args, cfg), resume=args.resume, overwrite=args.overwrite)
        main_process = is_main_process()
    finally:
        cleanup_distributed()
    if main_process:
        print(f"final checkpoint: {final}")
    return 0


def cmd_chain(args: argparse.Namespace) -> int:
    from locdistill.engine.distributed import cleanup_distributed, is_main_process

    run_chain = _delegate("locdistill.engine.chain", "run_chain")
    root = args.work_dir or Path("work_dirs") / f"chain_{Path(args.configs[-1]).stem}"
    try:
        finals = run_chain(list(args.configs), root, args.set, overwrite=args.overwrite)
        main_process = is_main_process()
    finally:
        cleanup_distributed()
    if main_process:
        for k, path in enumerate(finals, start=1):
            print(f"stage {k}: {path}")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from locdistill.engine.distributed import cleanup_distributed, init_distributed
    from locdistill.engine.evaluate import evaluate_checkpoint
    from locdistill.engine.logger import setup_logger

    overrides = list(args.set)
    if args.coco_backend is not None:
        overrides.append(f"evaluation.coco_backend={args.coco_backend}")
    if args.format_only and args.out is None:
        raise ValueError("--format-only needs --out FILE (the detections are all it produces)")
    rank, _, _ = init_distributed()
    try:
        setup_logger(None, rank)
        result = evaluate_checkpoint(
            args.checkpoint,
            args.config,  # None: the config stored in the checkpoint
            overrides=overrides,
            data_root=args.data_root,
            split=args.split,
            metric=args.metric,
            use_ema=args.ema,
            format_only=args.format_only,
        )
        if result is not None:  # the main process
            if not args.format_only:
                print(result.table)
            if args.out is not None:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(result.records), encoding="utf-8")
                print(f"detections written to {args.out} ({len(result.records)} boxes)")
    finally:
        cleanup_distributed()
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from locdistill.engine.device import pick_device
    from locdistill.engine.predict import collect_inputs, predict_files
    from locdistill.models.from_checkpoint import build_detector_from_checkpoint

    inputs = collect_inputs(args.images)  # before loading the model: a missing input fails fast
    device = pick_device(args.device)
    model, info = build_detector_from_checkpoint(args.checkpoint, args.config, args.set, device)
    written = predict_files(
        model, info.config, inputs, args.out, args.score_thr, device, class_names=info.class_names
    )
    print(f"{len(written)} output file(s) and detections.json written to {args.out}")
    return 0


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (resolved paths, or the same inode through links)."""
    if a.resolve() == b.resolve():
        return True
    return a.exists() and b.exists() and os.path.samefile(a, b)


def cmd_convert(args: argparse.Namespace) -> int:
    if _same_file(args.checkpoint, args.out):
        raise ValueError(
            f"convert would write over its own input {args.checkpoint}; give another output path"
        )
    if args.from_mmdet:
        if args.ema:
            raise ValueError(
                "--ema does not apply to --from-mmdet (mmdetection checkpoints hold one set of weights)"
            )
        try:
            from locdistill.weights.mmdet_import import convert_mmdet_checkpoint
        except ImportError as e:
            raise CommandUnavailable(
                f"mmdetection import is not available in this installation ({e})"
            ) from None
        if not args.checkpoint.is_file():
            raise FileNotFoundError(f"checkpoint not found: {args.checkpoint}")
        report = convert_mmdet_checkpoint(args.checkpoint, args.out)
        skipped = report.get("skipped", []) if isinstance(report, dict) else []
        n = report.get("num_tensors", "?") if isinstance(report, dict) else "?"
        print(
            f"converted mmdetection checkpoint {args.checkpoint} -> {args.out} ({n} tensors"
            + (f", {len(skipped)} keys not placed, e.g. {skipped[0]}" if skipped else "")
            + ")"
        )
        return 0
    from locdistill.engine.checkpoint import load_checkpoint, save_checkpoint, strip_to_weights

    ckpt = load_checkpoint(args.checkpoint)
    small = strip_to_weights(ckpt, use_ema=args.ema)
    save_checkpoint(args.out, small)
    size_in, size_out = args.checkpoint.stat().st_size, args.out.stat().st_size
    print(
        f"{args.out}: {len(small['model'])} tensors, {size_out / 2**20:.1f} MiB "
        f"(from {size_in / 2**20:.1f} MiB{', EMA weights' if args.ema else ''})"
    )
    return 0


def _delegate(module: str, func: str) -> Any:
    import importlib

    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module:
            raise CommandUnavailable(
                f"this command is not available in this installation ({module} is missing)"
            ) from None
        raise
    return getattr(mod, func)


def cmd_demo(args: argparse.Namespace) -> int:
    return int(_delegate("locdistill.demo", "run_demo")(args) or 0)


def cmd_benchmark(args: argparse.Namespace) -> int:
    return int(_delegate("locdistill.benchmark", "run_benchmark")(args) or 0)


def cmd_export(args: argparse.Namespace) -> int:
    return int(_delegate("locdistill.export", "run_export")(args) or 0)


def cmd_analyze(args: argparse.Namespace) -> int:
    return int(_delegate("locdistill.analysis.analyze", "run_analyze")(args) or 0)


def cmd_plot(args: argparse.Namespace) -> int:
    return int(_delegate("locdistill.analysis.curves", "run_plot")(args) or 0)


def cmd_inspect_data(args: argparse.Namespace) -> int:
    return int(_delegate("locdistill.analysis.inspect_data", "run_inspect_data")(args) or 0)
