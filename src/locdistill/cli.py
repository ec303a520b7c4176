"""The ``locdistill`` command line (also ``python -m locdistill`` and ``torchrun -m locdistill``).

Every sub-command imports what it needs lazily, so ``locdistill --help`` is instant. Expected user
errors (a bad config key, a missing file, unreadable data or weights) print one ``error: ...`` line
and exit with code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXAMPLES = """\
examples:
  locdistill demo                                           # synthetic data: teacher, student, LD student
  locdistill demo --method all                              # ... and CrossKD, CrossKD+LD students too
  locdistill train configs/gfl/gfl_r18_fpn_coco128.yaml     # CPU-sized run on ../shared/data/coco128
  locdistill train configs/gfl/gfl_r18_fpn_coco128.yaml --set data.train.root=/data/coco128 train.epochs=3
  locdistill train CONFIG --resume                          # continue from WORK_DIR/latest.pth
  torchrun --nproc_per_node=8 -m locdistill train configs/ld/ld_gflv1_r101_r18_fpn_coco_1x.yaml
  locdistill test CONFIG work_dirs/NAME/latest.pth --out dets.json
  locdistill predict CONFIG CKPT img1.jpg img2.jpg --out preds/
  locdistill convert work_dirs/NAME/latest.pth student.safetensors
  locdistill convert mmdet_ld_r101_r18.pth student.pth --from-mmdet
  locdistill benchmark CONFIG CKPT --num-images 200
"""


class CommandUnavailable(RuntimeError):
    """A sub-command whose implementation module is not installed."""


# ------------------------------------------------------------------------------------------ parser
def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        dest="set",
        metavar="KEY=VALUE",
        nargs="+",
        action="extend",
        default=[],
        help="override config values, typed by the schema (e.g. train.epochs=3 data.images_per_gpu=4 "
        "data.train.root=/data/coco); may be repeated",
    )


def _add_img_size(p: argparse.ArgumentParser, default: Any = None) -> None:
    p.add_argument(
        "--img-size",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        default=default,
        help="input size (height width) of the network",
    )


def build_parser() -> argparse.ArgumentParser:
    from locdistill import __version__

    parser = argparse.ArgumentParser(
        prog="locdistill",
        description="Localization Distillation (LD) for GFL object detectors: train, distill, evaluate, "
        "benchmark, convert and export. Configs are YAML files (with _base_ inheritance) or names of the "
        "shipped configs, e.g. gfl/gfl_r18_fpn_coco128.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLES,
    )
    parser.add_argument("--version", action="version", version=f"locdistill {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(name: str, help: str, epilog: str = "") -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help,
            description=help,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
        return p

    p = add(
        "train",
        "train a GFL detector; with a 'distill' section in the config, an LD student",
        "examples:\n  locdistill train configs/gfl/gfl_r18_fpn_coco128.yaml --set train.epochs=2\n"
        "  torchrun --nproc_per_node=2 -m locdistill train CONFIG    # lr scaled to the total batch\n"
        "  locdistill train CONFIG --resume                          # WORK_DIR/latest.pth\n"
        "  locdistill train CONFIG --resume work_dirs/x/epoch_4.pth\n\n"
        "the work dir receives config.yaml (resolved), env.json, git_rev.txt, train.log, metrics.jsonl,\n"
        "epoch_N.pth (the last train.keep_last kept), latest.pth and best.pth (by AP).",
    )
    p.add_argument("config", help="config file or shipped config name")
    p.add_argument(
        "--work-dir",
        type=Path,
        help="output folder (default: the config's work_dir, else work_dirs/<config name>)",
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="CKPT",
        help="continue exactly from CKPT, or from WORK_DIR/latest.pth when no path is given",
    )
    _add_set(p)

    p = add(
        "chain",
        "teacher-assistant chain: train LD stages in order, each taught by the previous stage's student",
        "example:\n  locdistill chain configs/ld/ld_gflv1_r101_r34_fpn_coco_1x.yaml "
        "configs/ld/ld_gflv1_r34_r18_fpn_coco_1x.yaml\n\nthe first stage uses the teacher its config names; "
        "stage k trains in WORK_DIR/stage<k>_<config name>.",
    )
    p.add_argument("configs", nargs="+", metavar="CONFIG", help="the stage configs, teacher side first")
    p.add_argument(
        "--work-dir", type=Path, help="root of the stage work dirs (default work_dirs/chain_<last config>)"
    )
    _add_set(p)

    p = add(
        "test",
        "evaluate a checkpoint (COCO or VOC metric); works under torchrun",
        "examples:\n  locdistill test configs/gfl/gfl_r18_fpn_coco128.yaml work_dirs/gfl_r18_fpn_coco128/"
        "latest.pth\n  locdistill test CONFIG CKPT --out dets.json   # COCO results json (e.g. test-dev)\n"
        "  torchrun --nproc_per_node=8 -m locdistill test CONFIG CKPT",
    )
    p.add_argument("config", help="config file or shipped config name")
    p.add_argument(
        "checkpoint", help="locdistill .pth / .safetensors, plain state dict or mmdetection checkpoint"
    )
    p.add_argument("--metric", choices=["coco", "voc"], help="default: the config's metric")
    p.add_argument("--out", type=Path, help="write the detections as a COCO results json")
    p.add_argument("--ema", action="store_true", help="evaluate the EMA weights of a training checkpoint")
    p.add_argument(
        "--format-only",
        action="store_true",
        help="only write --out, no evaluation (COCO test-dev: data.test = image_info_test-dev2017.json)",
    )
    p.add_argument(
        "--split",
        choices=["test", "val"],
        default="test",
        help="data.test (falls back to data.val when the config has none) or data.val",
    )
    _add_set(p)

    p = add(
        "predict",
        "draw detections on images and write them as JSON",
        "example:\n  locdistill predict CONFIG CKPT photo.jpg --out preds/ --score-thr 0.3",
    )
    p.add_argument("config", help="config file or shipped config name")
    p.add_argument("checkpoint", help="model weights")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files")
    p.add_argument(
        "--out", type=Path, required=True, help="output folder for drawn images and detections.json"
    )
    p.add_argument(
        "--score-thr", type=float, default=0.3, help="minimum score to draw and report (default 0.3)"
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    _add_set(p)

    p = add(
        "convert",
        "make small student weights from a training checkpoint, or import mmdetection",
        "examples:\n  locdistill convert work_dirs/x/latest.pth student.pth\n"
        "  locdistill convert work_dirs/x/latest.pth student.safetensors --ema\n"
        "  locdistill convert ld_r101_r18_mmdet.pth student.pth --from-mmdet",
    )
    p.add_argument("checkpoint", type=Path, help="input checkpoint")
    p.add_argument("out", type=Path, help="output .pth or .safetensors")
    p.add_argument("--from-mmdet", action="store_true", help="the input is an mmdetection GFL/LD checkpoint")
    p.add_argument("--ema", action="store_true", help="keep the EMA weights instead of the live ones")

    p = add("demo", "synthetic end-to-end demo: teacher, baseline student, LD student; AP table and plots")
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default demo_out)")
    p.add_argument("--quick", action="store_true", help="a much shorter run (smoke test)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument(
        "--method",
        choices=["ld", "crosskd", "crosskd+ld", "all"],
        default="ld",
        help="the distilled student(s) beside the baseline: LD (default), CrossKD, both, or all three",
    )

    p = add(
        "benchmark",
        "inference speed (FPS) as the seed measures it: batch 1, warm-up discarded, synchronised timing "
        "including post-processing",
        "the inputs are the config's test images through the test pipeline (data.test, else data.val);\n"
        "with --img-size H W, or when those images are not found, random inputs of that size.\n"
        "example:\n  locdistill benchmark configs/gfl/gfl_r18_fpn_bccd.yaml CKPT --num-images 100 "
        "--out fps.json",
    )
    p.add_argument("config", help="config file or shipped config name")
    p.add_argument("checkpoint", nargs="?", help="weights (random init when omitted)")
    p.add_argument("--num-images", type=int, default=200, help="timed images (default 200)")
    p.add_argument("--warmup", type=int, default=50, help="untimed warm-up iterations (default 50)")
    _add_img_size(p)
    p.add_argument("--fuse-conv-bn", action="store_true", help="fold BatchNorm into the convolutions")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    p.add_argument("--amp", action="store_true", help="autocast (CUDA)")
    p.add_argument("--out", type=Path, help="write the results as JSON")
    _add_set(p)

    p = add("export", "export the detector (e.g. ONNX)")
    p.add_argument("config", help="config file or shipped config name")
    p.add_argument("checkpoint", help="model weights")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="export format (default onnx)")
    p.add_argument("--out", type=Path, required=True, help="output file")
    p.add_argument("--with-nms", action="store_true", help="include post-processing and NMS in the graph")
    _add_img_size(p)
    _add_set(p)
    return parser


# -------------------------------------------------------------------------------------- commands
def _work_dir(args: argparse.Namespace, cfg: Any) -> Path:
    if args.work_dir is not None:
        return Path(args.work_dir)
    if cfg.work_dir:
        return Path(cfg.work_dir)
    return Path("work_dirs") / Path(args.config).stem


def cmd_train(args: argparse.Namespace) -> int:
    from locdistill.config import load_config
    from locdistill.engine.distributed import cleanup_distributed, is_main_process
    from locdistill.engine.train import train

    cfg = load_config(args.config, args.set)
    try:
        final = train(cfg, _work_dir(args, cfg), resume=args.resume)
        main_process = is_main_process()
    finally:
        cleanup_distributed()
    if main_process:
        print(f"final checkpoint: {final}")
    return 0


def cmd_chain(args: argparse.Namespace) -> int:
    from locdistill.engine.distributed import cleanup_distributed, is_main_process

    run_chain = _delegate("locdistill.distill.chain", "run_chain")
    root = args.work_dir or Path("work_dirs") / f"chain_{Path(args.configs[-1]).stem}"
    try:
        finals = run_chain(list(args.configs), root, args.set)
        main_process = is_main_process()
    finally:
        cleanup_distributed()
    if main_process:
        for k, path in enumerate(finals, start=1):
            print(f"stage {k}: {path}")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    import torch

    from locdistill.config import load_config
    from locdistill.data import build_dataset, build_test_loader
    from locdistill.engine.checkpoint import load_detector
    from locdistill.engine.distributed import cleanup_distributed, init_distributed, is_main_process
    from locdistill.engine.evaluate import (
        coco_results,
        detection_records,
        gather_detections,
        predict_loader,
        score_detections,
    )
    from locdistill.engine.logger import setup_logger
    from locdistill.engine.runinfo import pick_device

    cfg = load_config(args.config, args.set)
    metric = args.metric or cfg.metric
    if args.format_only and args.out is None:
        raise ValueError("--format-only needs --out FILE (the detections are all it produces)")
    rank, _, world_size = init_distributed()
    try:
        setup_logger(None, rank)
        device = pick_device()
        model, _ = load_detector(cfg, args.checkpoint, device, args.ema)
        split = cfg.data.test if args.split == "test" and cfg.data.test is not None else cfg.data.val
        dataset = build_dataset(split, cfg.data, train=False, mean=model.mean, std=model.std)
        loader = build_test_loader(
            dataset, cfg.data.test_images_per_gpu, cfg.data.workers_per_gpu, world_size > 1
        )
        amp = bool(cfg.train.amp) and device.type == "cuda"
        amp_dtype = torch.bfloat16 if cfg.train.amp_dtype == "bfloat16" else torch.float16
        detections = gather_detections(predict_loader(model, loader, device, amp, amp_dtype))
        if is_main_process():
            if args.format_only:  # e.g. COCO test-dev: no ground truth here, only the results file
                results = coco_results(dataset, detections) if metric == "coco" else []
            else:
                _, table, results = score_detections(dataset, detections, metric)
                print(table)
            if args.out is not None:
                if metric != "coco":
                    results = detection_records(dataset, detections)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(results), encoding="utf-8")
                print(f"detections written to {args.out} ({len(results)} boxes)")
    finally:
        cleanup_distributed()
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import torch

    from locdistill.config import load_config
    from locdistill.engine.checkpoint import load_detector
    from locdistill.engine.predict import predict_images

    cfg = load_config(args.config, args.set)
    device = (
        torch.device(args.device)
        if args.device
        else (torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    )
    model, meta = load_detector(cfg, args.checkpoint, device)
    written = predict_images(
        model, cfg, args.images, args.out, args.score_thr, device, class_names=meta.get("class_names")
    )
    print(f"{len(written)} image(s) and detections.json written to {args.out}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    if args.from_mmdet:
        if args.ema:
            raise ValueError(
                "--ema does not apply to --from-mmdet (mmdetection checkpoints hold one set of weights)"
            )
        try:
            from locdistill.models.mmdet_import import convert_mmdet_checkpoint
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


COMMANDS = {
    "train": cmd_train,
    "chain": cmd_chain,
    "test": cmd_test,
    "predict": cmd_predict,
    "convert": cmd_convert,
    "demo": cmd_demo,
    "benchmark": cmd_benchmark,
    "export": cmd_export,
}


def _user_errors() -> tuple[type[BaseException], ...]:
    import yaml

    from locdistill.config import ConfigError

    errors: list[type[BaseException]] = [
        ConfigError,
        FileNotFoundError,
        FileExistsError,
        ValueError,
        CommandUnavailable,
    ]
    errors.append(yaml.YAMLError)  # a malformed --set value
    from locdistill.engine.train import NonFiniteLossError

    errors.append(NonFiniteLossError)
    try:
        from locdistill.data import BadImageError

        errors.append(BadImageError)
    except ImportError:  # pragma: no cover - a partial installation
        pass
    return tuple(errors)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``locdistill`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if debug or not isinstance(e, _user_errors()):
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        if isinstance(e, FileNotFoundError) and e.filename and str(e.filename) not in message:
            message = f"{message}: {e.filename}"
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
