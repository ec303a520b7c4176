"""``locdistill analyze TEACHER STUDENT [BASELINE] --data CONFIG``: what distillation did, on your data.

Each checkpoint is built from the config stored in it (``ckpt["config"]``, pretrained weights off; a
released ``zoo:NAME`` from its zoo entry's config) and must fit the teacher (same strides, anchors,
reg_max and classes; :func:`check_fit`) and the data (same number of classes). The validation split of
``CONFIG`` (or ``--num-images`` images evenly spread over it) goes through the test pipeline once; every
model sees each batch (see :mod:`locdistill.analysis.collect`). ``OUT`` receives ``report.md`` and
``report.json`` (the numbers), ``edge_distributions.png``, ``edge_errors.png``, ``kl_per_level.png`` and
``ap_by_iou.png``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from locdistill.analysis.collect import REGIONS, Collected, collect
from locdistill.analysis.edges import SIDES
from locdistill.config import Config, load_config
from locdistill.models.detectors.base import DenseDetector
from locdistill.zoo import is_zoo_ref, resolve_checkpoint

log = logging.getLogger(__name__)

ROLES = ("teacher", "student", "baseline")
"""Default names of the models (``--names`` replaces them in the report and the figures)."""
COLORS = ("tab:green", "tab:red", "tab:gray")


def load_model(path: Path, device: torch.device) -> tuple[DenseDetector[Any], Config]:
    """The detector of a checkpoint, built from the config stored in it, in eval mode on ``device``
    (:func:`~locdistill.models.from_checkpoint.build_detector_from_checkpoint`: a file that stores no
    config is refused with a one-line error)."""
    from locdistill.models.from_checkpoint import build_detector_from_checkpoint

    model, info = build_detector_from_checkpoint(path, device=device)
    return model, info.config


def model_paths(args: argparse.Namespace) -> dict[str, Path]:
    """``{name: checkpoint}`` in the order teacher, student(, baseline); names from ``--names``."""
    given = [p for p in (args.teacher, args.student, args.baseline) if p is not None]
    names = list(args.names or ROLES[: len(given)])
    if len(names) != len(given) or len(set(names)) != len(names):
        raise ValueError(f"--names: give {len(given)} different names, one per checkpoint (got {names})")
    paths = {name: Path(p) for name, p in zip(names, given)}
    for name, path in paths.items():
        if is_zoo_ref(path):  # zoo:NAME: fetched now (fails fast), loaded by name with its config
            resolve_checkpoint(path)
        elif not path.is_file():
            raise FileNotFoundError(f"{name} checkpoint not found: {path}")
    return paths


def check_models(models: dict[str, DenseDetector[Any]], paths: dict[str, Path]) -> None:
    """Every model must fit the first (the teacher): family, strides, anchors, reg_max, levels and
    classes."""
    from locdistill.distill.distiller import check_fit

    (t_name, teacher), *others = models.items()
    for name, model in others:
        try:
            check_fit(model, teacher, need_classes=False)
            if model.num_classes != teacher.num_classes:
                raise ValueError(f"num_classes: {name} {model.num_classes} vs {t_name} {teacher.num_classes}")
        except ValueError as e:
            raise ValueError(f"{paths[name]} ({name}) vs {paths[t_name]} ({t_name}): {e}") from None


def check_output_dir(out: Path) -> None:
    """Refuse a non-empty folder that is not an earlier analyze output (nothing else is overwritten)."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "report.json").is_file():
        raise FileExistsError(
            f"--out {out} is a non-empty folder without an earlier report.json; choose another"
        )


def sample_indices(n: int, num: int) -> list[int]:
    """``num`` indices evenly spread over ``range(n)`` (all of them when ``num`` is 0 or >= ``n``)."""
    if num <= 0 or num >= n:
        return list(range(n))
    return sorted({round(i * (n - 1) / max(num - 1, 1)) for i in range(num)})


def coco_numbers(dataset: Any, ids: list[int], detections: dict[int, Any], backend: str) -> tuple[dict, dict]:
    """The 12 COCO stats and AP at each IoU threshold of ``detections`` on images ``ids``."""
    from locdistill.evaluation import CocoEvaluator, ap_per_iou
    from locdistill.structures import Detections

    gt = dataset.to_coco_dict()
    keep = set(ids)
    gt["images"] = [im for im in gt["images"] if im["id"] in keep]
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in keep]
    ev = CocoEvaluator(gt, dataset.category_ids, backend=backend)
    empty = Detections(torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0, dtype=torch.long))
    for image_id in ids:
        ev.add(image_id, detections.get(image_id, empty))
    return ev.evaluate(), ap_per_iou(ev.coco_eval)


def edge_error_numbers(err: torch.Tensor, strides: torch.Tensor) -> dict[str, dict[str, float]]:
    """MAE and bias per edge (stride units) and MAE in network-input pixels, each with their ``mean``."""

    def per_side(values: torch.Tensor) -> dict[str, float]:
        if len(values) == 0:
            return {**{s: float("nan") for s in SIDES}, "mean": float("nan")}
        out = {s: float(values[:, k].mean()) for k, s in enumerate(SIDES)}
        out["mean"] = float(values.mean())
        return out

    return {
        "mae_strides": per_side(err.abs()),
        "bias_strides": per_side(err),
        "mae_pixels": per_side(err.abs() * strides[:, None]),
    }


def build_report(
    models: dict[str, DenseDetector[Any]],
    configs: dict[str, Config],
    paths: dict[str, Path],
    data_cfg: Config,
    split: str,
    collected: Collected,
    coco: dict[str, dict[str, float]],
    ap_iou: dict[str, dict[str, float]],
) -> dict[str, Any]:
    strides = collected.strides_tensor()
    levels = [f"P{3 + i}" for i in range(len(collected.strides))]
    kl: dict[str, Any] = {"levels": levels, "strides": collected.strides}
    kl["locations"] = {r: collected.region_counts[r].tolist() for r in REGIONS}
    for name, s in collected.models.items():
        kl[name] = {r: s.kl_mean(r) for r in REGIONS}
    return {
        "models": {
            name: {
                "checkpoint": str(paths[name]),
                "backbone": configs[name].model.backbone.name,
                "channels": configs[name].model.neck.out_channels,
                "parameters": sum(p.numel() for p in m.parameters()),
            }
            for name, m in models.items()
        },
        "data": {
            "config": data_cfg.source,
            "split": split,
            "images": collected.num_images,
            "objects": collected.num_objects,
            "positives": int(len(strides)),
            "vlr_locations": int(collected.region_counts["vlr"].sum()),
            "img_scale": list(data_cfg.data.img_scale),
        },
        "reg_max": next(iter(models.values())).reg_max,
        "units": {
            "coco": "fractions in [0, 1] (pycocotools; -1 or null: no ground truth in that range)",
            "edge_error": "predicted minus true edge distance at the ATSS positives; strides or input px",
            "kl_per_level": "KL(teacher || model) at temperature 1, nats, summed over bins, mean over edges "
            "and locations (ATSS positives or VLR), per FPN level",
        },
        "coco": coco,
        "ap_by_iou": ap_iou,
        "edge_error": {n: edge_error_numbers(s.error_tensor(), strides) for n, s in collected.models.items()},
        "kl_per_level": kl,
    }


def run_analyze(args: argparse.Namespace) -> int:
    """Entry point of ``locdistill analyze`` (``args``: teacher, student, baseline, data, out,
    num_images, split, device, set, data_root, num_objects); returns the exit code."""
    from locdistill.analysis import figures
    from locdistill.analysis.edges import plot_edge_distributions
    from locdistill.analysis.report import markdown, write_json
    from locdistill.config.resolve import set_data_root
    from locdistill.data import build_dataset, build_test_loader, resolve_mean_std

    out = Path(args.out)
    check_output_dir(out)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    data_cfg = load_config(args.data, list(args.set or []))
    set_data_root(data_cfg, getattr(args, "data_root", None))
    paths = model_paths(args)
    loaded = {name: load_model(path, device) for name, path in paths.items()}
    models = {name: m for name, (m, _) in loaded.items()}
    configs = {name: c for name, (_, c) in loaded.items()}
    check_models(models, paths)
    teacher_name, teacher = next(iter(models.items()))
    split_cfg = data_cfg.data.test if args.split == "test" and data_cfg.data.test else data_cfg.data.val
    normalization = resolve_mean_std(data_cfg.data, teacher.mean, teacher.std)
    built = build_dataset(split_cfg, data_cfg.data, train=False, mean=normalization[0], std=normalization[1])
    dataset: Any = getattr(built, "dataset", built)  # a RepeatDataset's images, once
    if dataset.num_classes != teacher.num_classes:
        raise ValueError(
            f"the data ({args.data}, {args.split}) has {dataset.num_classes} classes but the models have "
            f"{teacher.num_classes}"
        )
    indices = sample_indices(len(dataset), args.num_images)
    subset = Subset(dataset, indices)
    ids = [dataset.image_ids[i] for i in indices]
    per_batch = max(data_cfg.data.test_images_per_gpu, 1)
    loader = build_test_loader(subset, per_batch, 0, False, size_divisor=dataset.size_divisor)
    log.info("analyze: %d models on %d images of %s", len(models), len(indices), split_cfg.root)
    collected = collect(models, teacher_name, loader, normalization, device)
    backend = data_cfg.evaluation.coco_backend
    coco, ap_iou = {}, {}
    for name, stats in collected.models.items():
        coco[name], ap_iou[name] = coco_numbers(dataset, ids, stats.detections, backend)
    report = build_report(models, configs, paths, data_cfg, args.split, collected, coco, ap_iou)

    out.mkdir(parents=True, exist_ok=True)
    errors = {n: s.error_tensor() for n, s in collected.models.items()}
    figures.plot_error_histograms(errors, out / "edge_errors.png", cap=float(teacher.reg_max))
    students = {n: v for n, v in report["kl_per_level"].items() if n in models and n != teacher_name}
    locations = report["kl_per_level"]["locations"]
    figures.plot_kl_per_level(students, collected.strides, out / "kl_per_level.png", locations)
    figures.plot_ap_by_iou(ap_iou, out / "ap_by_iou.png")
    sample = build_test_loader(Subset(dataset, indices[:4]), 4, 0, False, size_divisor=dataset.size_divisor)
    batch = next(iter(sample))
    plot_edge_distributions(
        models,
        batch,
        normalization,
        dataset.class_names,
        out / "edge_distributions.png",
        args.num_objects,
        dict(zip(models, COLORS)),
    )
    write_json(report, out / "report.json")
    (out / "report.md").write_text(markdown(report), encoding="utf-8")
    print(summary(report))
    print(f"written: {out / 'report.md'}, report.json and 4 figures in {out}")
    return 0


def summary(report: dict[str, Any]) -> str:
    """A few lines for the terminal: AP, AP50, AP75, edge MAE and the KL at the positives per model."""
    lines = [f"{'model':<14}{'AP':>7}{'AP50':>7}{'AP75':>7}{'edge MAE':>10}{'KL pos':>9}"]
    for name in report["models"]:
        c, e = report["coco"][name], report["edge_error"][name]["mae_strides"]["mean"]
        kl = [v for v in report["kl_per_level"][name]["positives"] if v == v]
        kl_mean = sum(kl) / len(kl) if kl else float("nan")
        aps = "".join(f"{100 * c[k]:7.1f}" for k in ("AP", "AP50", "AP75"))
        lines.append(f"{name:<14}{aps}{e:10.3f}{kl_mean:9.4f}")
    lines.append(
        "(COCO AP in percent; edge MAE in strides at the ATSS positives; KL in nats, mean of levels)"
    )
    return "\n".join(lines)
