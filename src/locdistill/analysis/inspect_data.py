"""``locdistill inspect-data CONFIG [--out DIR]``: what the config's data holds, before any training.

Per split (train, val, test when set; every image listed, none filtered): images, images without
boxes, boxes, crowd / ``difficult`` boxes, boxes per class, image sizes, and box sizes as
``sqrt(w * h)`` in original pixels (with COCO's small < 32 <= medium < 96 <= large counts) and at the
network input (after the keep-ratio resize into ``data.img_scale``). With ``--out``: ``stats.json``,
``class_counts.png``, ``box_sizes.png`` and a few images per split with their ground-truth boxes drawn
(``<split>_<k>_<file>.jpg``; crowd / difficult boxes dashed).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from locdistill.analysis.edges import PALETTE
from locdistill.config import Config, load_config

QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
QUANTILE_NAMES = ("min", "p5", "p25", "median", "p75", "p95", "max")


def _quantiles(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {n: float("nan") for n in QUANTILE_NAMES}
    return {n: float(v) for n, v in zip(QUANTILE_NAMES, np.quantile(values, QUANTILES))}


def split_statistics(dataset: Any, img_scale: list[int]) -> dict[str, Any]:
    """The numbers of one dataset (its parsed records; no image is decoded)."""
    from locdistill.data.transforms import rescale_size

    records = dataset.records
    names = list(dataset.class_names)
    counts = np.zeros(len(names), dtype=np.int64)
    sizes, input_sizes, aspect = [], [], []
    crowd = difficult = 0
    for r in records:
        normal = ~r.ignore
        crowd += int(r.ignore.sum())
        difficult += int((r.difficult & normal).sum())
        counts += np.bincount(r.labels[normal], minlength=len(names))[: len(names)]
        w = (r.boxes[normal, 2] - r.boxes[normal, 0]).astype(np.float64)
        h = (r.boxes[normal, 3] - r.boxes[normal, 1]).astype(np.float64)
        new_h, _ = rescale_size(r.height, r.width, img_scale)
        sizes.append(np.sqrt(w * h))
        input_sizes.append(np.sqrt(w * h) * new_h / r.height)
        aspect.append(w / np.maximum(h, 1e-6))
    side = np.concatenate(sizes) if sizes else np.zeros(0)
    per_image = np.array([int((~r.ignore).sum()) for r in records])
    return {
        "images": len(records),
        "images_without_boxes": int((per_image == 0).sum()),
        "boxes": int(counts.sum()),
        "crowd_boxes": crowd,
        "difficult_boxes": difficult,
        "boxes_per_image": {"mean": float(per_image.mean()), "max": int(per_image.max())},
        "class_counts": {n: int(c) for n, c in zip(names, counts)},
        "image_width": _quantiles(np.array([r.width for r in records], dtype=np.float64)),
        "image_height": _quantiles(np.array([r.height for r in records], dtype=np.float64)),
        "box_size_px": _quantiles(side),
        "box_size_input_px": _quantiles(np.concatenate(input_sizes) if input_sizes else np.zeros(0)),
        "aspect_ratio_w_over_h": _quantiles(np.concatenate(aspect) if aspect else np.zeros(0)),
        "coco_size_counts": {
            "small (<32)": int((side < 32).sum()),
            "medium (32-96)": int(((side >= 32) & (side < 96)).sum()),
            "large (>=96)": int((side >= 96).sum()),
        },
        "_sizes": side,
    }


def format_statistics(name: str, source: str, s: dict[str, Any]) -> str:
    """The printed block of one split."""
    lines = [
        f"== {name}: {source}",
        f"images {s['images']} ({s['images_without_boxes']} without boxes), boxes {s['boxes']} "
        f"({s['boxes_per_image']['mean']:.1f} per image, at most {s['boxes_per_image']['max']}), "
        f"crowd {s['crowd_boxes']}, difficult {s['difficult_boxes']}",
        f"image width {s['image_width']['min']:.0f}-{s['image_width']['max']:.0f} px, "
        f"height {s['image_height']['min']:.0f}-{s['image_height']['max']:.0f} px",
        f"{'box size sqrt(w*h)':<28}" + "".join(f"{q:>8}" for q in QUANTILE_NAMES),
    ]
    for key, label in (("box_size_px", "  original pixels"), ("box_size_input_px", "  network-input pixels")):
        lines.append(f"{label:<28}" + "".join(f"{s[key][q]:8.1f}" for q in QUANTILE_NAMES))
    lines.append("COCO size ranges: " + ", ".join(f"{k} {v}" for k, v in s["coco_size_counts"].items()))
    counts = sorted(s["class_counts"].items(), key=lambda kv: (-kv[1], kv[0]))
    width = max([len(n) for n, _ in counts] + [5])
    lines.append(f"{'class':<{width}}  boxes")
    lines += [f"{n:<{width}}  {c:5d}" for n, c in counts]
    return "\n".join(lines)


def draw_ground_truth(dataset: Any, index: int, path: Path) -> Path:
    """Image ``index`` with its boxes and class names drawn (crowd / difficult boxes dashed), as JPEG."""
    from PIL import Image, ImageDraw

    r = dataset.records[index]
    image = Image.fromarray(dataset.load_image(index).permute(1, 2, 0).numpy())
    draw = ImageDraw.Draw(image)
    rgb = [tuple(int(255 * c) for c in _rgb(i)) for i in range(len(PALETTE))]
    for box, label, ignore, diff in zip(r.boxes, r.labels, r.ignore, r.difficult):
        color = rgb[int(label) % len(rgb)]
        x1, y1, x2, y2 = (float(v) for v in box)
        if ignore or diff:
            corners = [(x1, y1), (x2, y1), (x2, y2), (x1, y2), (x1, y1)]
            for (ax, ay), (bx, by) in zip(corners[:-1], corners[1:]):
                steps = max(int(max(abs(bx - ax), abs(by - ay)) / 6), 1)
                for j in range(0, steps, 2):  # 6-px dashes
                    t0, t1 = j / steps, min(j + 1, steps) / steps
                    draw.line(
                        [
                            (ax + t0 * (bx - ax), ay + t0 * (by - ay)),
                            (ax + t1 * (bx - ax), ay + t1 * (by - ay)),
                        ],
                        fill=color,
                        width=2,
                    )
        else:
            draw.rectangle([x1, y1, x2, y2], outline=color, width=2)
        text = dataset.class_names[int(label)] + (" (crowd)" if ignore else " (difficult)" if diff else "")
        tx, ty = x1 + 2, max(y1 - 12, 0)
        draw.rectangle(draw.textbbox((tx, ty), text), fill=color)
        draw.text((tx, ty), text, fill=(255, 255, 255))
    image.save(path, quality=88)
    return path


def _rgb(i: int) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    return to_rgb(PALETTE[i % len(PALETTE)])


def plot_statistics(stats: dict[str, dict[str, Any]], out: Path) -> list[Path]:
    """``class_counts.png`` (boxes per class and split) and ``box_sizes.png`` (sqrt(w*h) histogram)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(next(iter(stats.values()))["class_counts"])
    fig, ax = plt.subplots(figsize=(max(6, 0.22 * len(names) * len(stats) + 2), 3.8))
    n = len(stats)
    for k, (split, s) in enumerate(stats.items()):
        xs = [i + (k - (n - 1) / 2) * 0.8 / n for i in range(len(names))]
        ax.bar(xs, [s["class_counts"][c] for c in names], width=0.8 / n, color=PALETTE[k], label=split)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90 if len(names) > 8 else 0, fontsize=7 if len(names) > 20 else 9)
    ax.set_ylabel("boxes")
    ax.set_title("ground-truth boxes per class")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "class_counts.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    sides = [s["_sizes"] for s in stats.values() if len(s["_sizes"])]
    top = max([float(v.max()) for v in sides] + [2.0])
    bottom = max(min([float(v.min()) for v in sides] + [top / 2]) * 0.9, 0.5)
    bins = np.logspace(np.log10(bottom), np.log10(top * 1.05), 40).tolist()
    for k, (split, s) in enumerate(stats.items()):
        ax.hist(s["_sizes"], bins=bins, histtype="step", lw=1.6, color=PALETTE[k], label=split)
    for edge in (32, 96):
        ax.axvline(edge, color="black", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("box size sqrt(w*h), original pixels (dotted: COCO small/medium/large at 32, 96)")
    ax.set_ylabel("boxes")
    ax.set_title("ground-truth box sizes")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "box_sizes.png", dpi=100)
    plt.close(fig)
    return [out / "class_counts.png", out / "box_sizes.png"]


def inspect(cfg: Config, out: Path | None, num_images: int = 4) -> dict[str, dict[str, Any]]:
    """Print the statistics of every split of ``cfg``; with ``out`` also write files (module docstring)."""
    from locdistill.analysis.analyze import sample_indices
    from locdistill.data import build_dataset

    if out is not None:
        if out.is_dir() and any(out.iterdir()) and not (out / "stats.json").is_file():
            raise FileExistsError(f"--out {out} is a non-empty folder without an earlier stats.json")
        out.mkdir(parents=True, exist_ok=True)
    splits = {"train": cfg.data.train, "val": cfg.data.val, "test": cfg.data.test}
    stats: dict[str, dict[str, Any]] = {}
    for name, split in splits.items():
        if split is None:
            continue
        built = build_dataset(split, cfg.data, train=False, mean=[0.0] * 3, std=[1.0] * 3)
        dataset: Any = getattr(built, "dataset", built)  # a RepeatDataset's images, once
        stats[name] = split_statistics(dataset, cfg.data.img_scale)
        print(format_statistics(name, dataset.source, stats[name]), end="\n\n")
        if out is not None:
            for k, i in enumerate(sample_indices(len(dataset), num_images)):
                draw_ground_truth(
                    dataset, i, out / f"{name}_{k}_{Path(dataset.records[i].file_name).stem}.jpg"
                )
    if out is not None:
        plot_statistics(stats, out)
        clean = {n: {k: v for k, v in s.items() if not k.startswith("_")} for n, s in stats.items()}
        (out / "stats.json").write_text(json.dumps(clean, indent=2) + "\n", encoding="utf-8")
        print(f"written: {out / 'stats.json'}, class_counts.png, box_sizes.png and drawn images in {out}")
    return stats


def run_inspect_data(args: argparse.Namespace) -> int:
    """Entry point of ``locdistill inspect-data`` (``args``: config, out, num_images, set, data_root)."""
    from locdistill.config.resolve import set_data_root

    cfg = load_config(args.config, list(args.set or []))
    set_data_root(cfg, getattr(args, "data_root", None))
    inspect(cfg, Path(args.out) if args.out is not None else None, args.num_images)
    return 0
