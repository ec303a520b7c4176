"""The ``locdistill`` argument parser: one function per sub-command adds that command's arguments.

To add a sub-command: write ``add_<name>_arguments(p)`` here, list it in :data:`SUBCOMMANDS`, and map
its name to a function in :data:`locdistill.cli.main.COMMANDS`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from locdistill import __version__
from locdistill.cli.zoo import ZOO_EPILOG, ZOO_HELP, add_zoo_arguments

EXAMPLES = """\
examples:
  locdistill demo                                           # synthetic data: teacher, student, LD student
  locdistill demo --method all                              # ... and CrossKD, CrossKD+LD students too
  locdistill train configs/gfl/gfl_r18_fpn_coco128.yaml     # CPU-sized run on ../shared/data/coco128
  locdistill train configs/gfl/gfl_r18_fpn_coco128.yaml --set data.train.root=/data/coco128 train.epochs=3
  locdistill train CONFIG --resume                          # continue from WORK_DIR/latest.pth
  torchrun --nproc_per_node=8 -m locdistill train configs/ld/ld_gflv1_r101_r18_fpn_coco_1x.yaml
  locdistill test work_dirs/NAME/latest.pth --out dets.json   # the config stored in the checkpoint
  locdistill test CONFIG mmdet_gfl_r50.pth                    # files that store none need one
  locdistill zoo                                              # released GFL/LD checkpoints: zoo:NAME
  locdistill test zoo:gfl_r50_fpn_1x_coco --data-root /data/coco   # downloaded once, its config known
  locdistill predict [CONFIG] CKPT img1.jpg img2.jpg --out preds/
  locdistill convert work_dirs/NAME/latest.pth student.safetensors
  locdistill convert mmdet_ld_r101_r18.pth student.pth --from-mmdet
  locdistill benchmark [CONFIG] CKPT --num-images 200
  locdistill analyze teacher.pth student.pth baseline.pth --data CONFIG --out analysis/
  locdistill plot work_dirs/baseline work_dirs/ld --out curves.png
  locdistill inspect-data CONFIG --out data_check/
"""

PATHS_HELP = (
    "CONFIG is optional: a checkpoint of ours stores its config (a .yaml/.yml CONFIG, or a shipped config "
    "name, replaces it), zoo:NAME (locdistill zoo) comes with its own; --set applies on top of either"
)


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


def _add_data_root(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-root",
        metavar="DIR",
        help="read every split (data.train/val/test.root) from DIR; ann_file and img_dir stay relative to it",
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


def add_train_arguments(p: argparse.ArgumentParser) -> None:
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
    _add_overwrite(p, "a work dir that holds a run")
    p.add_argument(
        "--tensorboard", action="store_true", help="also log to WORK_DIR/tensorboard (train.tensorboard=true)"
    )
    _add_data_root(p)
    _add_set(p)


def _add_overwrite(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--overwrite",
        action="store_true",
        help=f"start afresh in {what}, removing that run's checkpoints, metrics and logs (without it, "
        "such a work dir is refused)",
    )


def add_chain_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("configs", nargs="+", metavar="CONFIG", help="the stage configs, teacher side first")
    p.add_argument(
        "--work-dir", type=Path, help="root of the stage work dirs (default work_dirs/chain_<last config>)"
    )
    _add_overwrite(p, "stage work dirs that hold runs")
    _add_set(p)


def add_test_arguments(p: argparse.ArgumentParser) -> None:
    p.usage = "locdistill test [CONFIG] CKPT [options]"
    p.add_argument(
        "paths",
        nargs="+",
        metavar="[CONFIG] CKPT",
        help="locdistill .pth / .safetensors, plain state dict or mmdetection checkpoint; " + PATHS_HELP,
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
    p.add_argument(
        "--coco-backend",
        choices=["pycocotools", "faster_coco_eval"],
        help="what computes the COCO metric (default: the config's evaluation.coco_backend)",
    )
    _add_data_root(p)
    _add_set(p)


def add_predict_arguments(p: argparse.ArgumentParser) -> None:
    p.usage = "locdistill predict [CONFIG] CKPT INPUT [INPUT ...] --out DIR [options]"
    p.add_argument(
        "paths",
        nargs="+",
        metavar="[CONFIG] CKPT INPUT",
        help="INPUT: image or video files, folders (their images and videos) or glob patterns; " + PATHS_HELP,
    )
    p.add_argument(
        "--out", type=Path, required=True, help="output folder for drawn images, videos and detections.json"
    )
    p.add_argument(
        "--score-thr", type=float, default=0.3, help="minimum score to draw and report (default 0.3)"
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    _add_set(p)


def add_convert_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path, help="input checkpoint, or zoo:NAME (implies --from-mmdet)")
    p.add_argument("out", type=Path, help="output .pth or .safetensors")
    p.add_argument("--from-mmdet", action="store_true", help="the input is an mmdetection GFL/LD checkpoint")
    p.add_argument("--ema", action="store_true", help="keep the EMA weights instead of the live ones")


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default demo_out)")
    p.add_argument("--quick", action="store_true", help="a much shorter run (smoke test)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument(
        "--method",
        choices=["ld", "crosskd", "crosskd+ld", "all"],
        default="ld",
        help="the distilled student(s) beside the baseline: LD (default), CrossKD, both, or all three",
    )


def add_benchmark_arguments(p: argparse.ArgumentParser) -> None:
    p.usage = "locdistill benchmark [CONFIG] [CKPT] [options]"
    p.add_argument(
        "paths",
        nargs="+",
        metavar="[CONFIG] [CKPT]",
        help=f"a CONFIG alone times random weights; {PATHS_HELP}",
    )
    p.add_argument("--num-images", type=int, default=200, help="timed images (default 200)")
    p.add_argument("--warmup", type=int, default=50, help="untimed warm-up iterations (default 50)")
    _add_img_size(p)
    p.add_argument("--fuse-conv-bn", action="store_true", help="fold BatchNorm into the convolutions")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    p.add_argument("--amp", action="store_true", help="autocast (CUDA)")
    p.add_argument("--out", type=Path, help="write the results as JSON")
    _add_set(p)


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.usage = "locdistill export [CONFIG] CKPT --out FILE [options]"
    p.add_argument("paths", nargs="+", metavar="[CONFIG] CKPT", help=f"model weights; {PATHS_HELP}")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="export format (default onnx)")
    p.add_argument("--out", type=Path, required=True, help="output file")
    p.add_argument("--with-nms", action="store_true", help="include post-processing and NMS in the graph")
    p.add_argument(
        "--img-size",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        help="resize scale of the preprocessing recipe, as data.img_scale (default: the config's); the "
        "graph takes any input size",
    )
    p.add_argument(
        "--check-image",
        nargs="+",
        type=Path,
        metavar="IMG",
        help="check the export against predict on these images (default: synthetic non-square ones)",
    )
    _add_set(p)


def add_analyze_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("teacher", help="teacher checkpoint (built from the config stored in it) or zoo:NAME")
    p.add_argument("student", help="student checkpoint, e.g. the LD student")
    p.add_argument("baseline", nargs="?", help="optional second student, e.g. the model trained without LD")
    p.add_argument("--data", required=True, metavar="CONFIG", help="config whose validation split is used")
    p.add_argument("--out", type=Path, default=Path("analysis"), help="output folder (default analysis)")
    p.add_argument("--num-images", type=int, default=0, help="images evenly spread over the split (0: all)")
    p.add_argument("--split", choices=["val", "test"], default="val", help="data.val (default) or data.test")
    p.add_argument("--num-objects", type=int, default=4, help="objects in edge_distributions.png (default 4)")
    p.add_argument(
        "--names", nargs="+", metavar="NAME", help="names of the models (default: teacher student baseline)"
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    _add_data_root(p)
    _add_set(p)


def add_plot_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("work_dirs", nargs="+", type=Path, metavar="WORK_DIR", help="training work dirs")
    p.add_argument(
        "--out", type=Path, help="output PNG (default curves.png, which is never overwritten unless named)"
    )


def add_inspect_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="config file or shipped config name")
    p.add_argument("--out", type=Path, help="folder for stats.json, plots and images with their boxes drawn")
    p.add_argument("--num-images", type=int, default=4, help="images drawn per split (default 4)")
    _add_data_root(p)
    _add_set(p)


@dataclass(frozen=True)
class Subcommand:
    """A sub-command: its name, one-line help, examples shown under its ``--help``, and its arguments."""

    name: str
    help: str
    epilog: str
    add_arguments: Callable[[argparse.ArgumentParser], None]


SUBCOMMANDS: list[Subcommand] = [
    Subcommand(
        "train",
        "train a GFL detector; with a 'distill' section in the config, an LD student",
        "examples:\n  locdistill train configs/gfl/gfl_r18_fpn_coco128.yaml --set train.epochs=2\n"
        "  torchrun --nproc_per_node=2 -m locdistill train CONFIG    # lr scaled to the total batch\n"
        "  locdistill train CONFIG --resume                          # WORK_DIR/latest.pth\n"
        "  locdistill train CONFIG --resume work_dirs/x/epoch_4.pth\n\n"
        "the work dir receives config.yaml (resolved), env.json, git_rev.txt, train.log, metrics.jsonl,\n"
        "epoch_N.pth (the last train.keep_last kept), latest.pth and best.pth (by AP). A work dir that\n"
        "already holds a run is refused unless --resume or --overwrite is given.",
        add_train_arguments,
    ),
    Subcommand(
        "chain",
        "teacher-assistant chain: train LD stages in order, each taught by the previous stage's student",
        "example:\n  locdistill chain configs/ld/ld_gflv1_r101_r34_fpn_coco_1x.yaml "
        "configs/ld/ld_gflv1_r34_r18_fpn_coco_1x.yaml\n\nthe first stage uses the teacher its config names; "
        "stage k trains in WORK_DIR/stage<k>_<config name>.",
        add_chain_arguments,
    ),
    Subcommand(
        "test",
        "evaluate a checkpoint (COCO or VOC metric); works under torchrun",
        "examples:\n  locdistill test work_dirs/gfl_r18_fpn_coco128/latest.pth   # its stored config, data\n"
        "  locdistill test configs/gfl/gfl_r18_fpn_coco128.yaml work_dirs/gfl_r18_fpn_coco128/latest.pth\n"
        "  locdistill test CKPT --set data.val.root=/data/coco128     # --set on the stored config\n"
        "  locdistill test CONFIG CKPT --out dets.json   # COCO results json (e.g. test-dev)\n"
        "  torchrun --nproc_per_node=8 -m locdistill test CONFIG CKPT",
        add_test_arguments,
    ),
    Subcommand(
        "predict",
        "draw detections on images and videos and write them as JSON",
        "examples:\n  locdistill predict CKPT photo.jpg --out preds/ --score-thr 0.3  # or CONFIG CKPT ...\n"
        "  locdistill predict CONFIG CKPT photos/ 'more/**/*.png' clip.mp4 --out preds/\n\n"
        "inputs are never written over, even with --out the input folder (a.jpg is drawn into a_det.jpg);\n"
        "videos need PyAV (pip install 'locdistill[video]') and become annotated .mp4 files.",
        add_predict_arguments,
    ),
    Subcommand(
        "convert",
        "make small student weights from a training checkpoint, or import mmdetection",
        "examples:\n  locdistill convert work_dirs/x/latest.pth student.pth\n"
        "  locdistill convert work_dirs/x/latest.pth student.safetensors --ema\n"
        "  locdistill convert ld_r101_r18_mmdet.pth student.pth --from-mmdet",
        add_convert_arguments,
    ),
    Subcommand(
        "demo",
        "synthetic end-to-end demo: teacher, baseline student, LD student; AP table and plots",
        "",
        add_demo_arguments,
    ),
    Subcommand(
        "benchmark",
        "inference speed (FPS) as the seed measures it: batch 1, warm-up discarded, synchronised timing "
        "including post-processing",
        "the inputs are the config's test images through the test pipeline (data.test, else data.val);\n"
        "with --img-size H W, or when those images are not found, random inputs of that size.\n"
        "example:\n  locdistill benchmark configs/gfl/gfl_r18_fpn_bccd.yaml CKPT --num-images 100 "
        "--out fps.json",
        add_benchmark_arguments,
    ),
    Subcommand(
        "export",
        "export the detector (e.g. ONNX)",
        "",
        add_export_arguments,
    ),
    Subcommand(
        "analyze",
        "teacher vs students on a validation set: edge distributions and errors, KL per FPN level, AP "
        "by IoU; report.md + report.json",
        "the models are built from the configs stored in their checkpoints and must share strides,\n"
        "anchors, reg_max and classes with the teacher. OUT receives report.md, report.json and PNGs.\n"
        "example:\n  locdistill analyze teacher.pth ld.pth baseline.pth --data CONFIG --out analysis/",
        add_analyze_arguments,
    ),
    Subcommand(
        "plot",
        "losses, lr and validation AP over iterations of one or more work dirs",
        "example:\n  locdistill plot work_dirs/baseline work_dirs/ld --out curves.png",
        add_plot_arguments,
    ),
    Subcommand(
        "inspect-data",
        "class counts and box sizes per split; ground-truth boxes drawn on a few images",
        "example:\n  locdistill inspect-data configs/gfl/gfl_r18_fpn_bccd.yaml --out data_check/",
        add_inspect_data_arguments,
    ),
    Subcommand("zoo", ZOO_HELP, ZOO_EPILOG, add_zoo_arguments),
]


def build_parser() -> argparse.ArgumentParser:
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
    for command in SUBCOMMANDS:
        p = sub.add_parser(
            command.name,
            help=command.help,
            description=command.help,
            epilog=command.epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
        command.add_arguments(p)
    return parser
