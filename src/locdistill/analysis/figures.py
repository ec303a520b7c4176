"""The figures of ``locdistill analyze`` (PNG, matplotlib's Agg backend): edge-error histograms,
teacher-student KL per FPN level and AP by IoU threshold. Colours follow the model order given."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from locdistill.analysis.edges import PALETTE, SIDES

REGION_TITLES = {
    "positives": "at the ATSS positives (Main LD region)",
    "vlr": "in the VLR (VLR LD region)",
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def error_range(errors: dict[str, Tensor], cap: float) -> float:
    """Half-width of the histogram range: the 99th percentile of ``|error|`` over all models, rounded up
    to 0.5, between 1 and ``cap`` strides."""
    values = torch.cat([e.abs().flatten() for e in errors.values()]) if errors else torch.zeros(0)
    if values.numel() == 0:
        return 1.0
    q = float(torch.quantile(values.float()[:1_000_000], 0.99))
    return float(min(max(math.ceil(2 * q) / 2, 1.0), cap))


def plot_error_histograms(errors: dict[str, Tensor], path: Path, cap: float = 16.0, bins: int = 60) -> Path:
    """One panel per edge: the distribution of predicted minus ground-truth distance (stride units) at
    the ATSS positives, one step line per model, with its mean absolute error in the legend. Values
    beyond the range are counted in the outermost bins."""
    plt = _pyplot()
    lim = error_range(errors, cap)
    edges = torch.linspace(-lim, lim, bins + 1)
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4), sharey=True)
    for k, (name, err) in enumerate(errors.items()):
        color = PALETTE[k % len(PALETTE)]
        for side, ax in enumerate(axes):
            e = err[:, side].clamp(-lim, lim).numpy()
            weights = torch.full((len(e),), 100.0 / max(len(e), 1)).numpy()
            mae = float(err[:, side].abs().mean()) if len(err) else float("nan")
            ax.hist(
                e,
                bins=edges.numpy(),
                weights=weights,
                histtype="step",
                lw=1.6,
                color=color,
                label=f"{name} (MAE {mae:.3f})",
            )
    for side, ax in enumerate(axes):
        ax.axvline(0.0, color="black", lw=0.8, ls=":")
        ax.set_title(f"{SIDES[side]} edge", fontsize=10)
        ax.set_xlabel("predicted - true distance (strides)", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("% of positive locations", fontsize=9)
    return _save(fig, path)


def plot_kl_per_level(
    kl: dict[str, dict[str, list[float]]],
    strides: list[int],
    path: Path,
    locations: dict[str, list[int]] | None = None,
) -> Path:
    """Grouped bars: mean ``KL(teacher || model)`` (nats, per edge) per FPN level, one panel per region
    (``kl[model][region]`` lists one value per level; NaN where the level has no such location).
    ``locations[region]``: the number of locations per level, written under the level names."""
    plt = _pyplot()
    regions = [r for r in REGION_TITLES if any(r in v for v in kl.values())]
    fig, axes = plt.subplots(1, len(regions), figsize=(6.5 * len(regions), 3.6), squeeze=False)
    n = max(len(kl), 1)
    width = 0.8 / n
    for ax, region in zip(axes[0], regions):
        counts = (locations or {}).get(region)
        labels = [
            f"P{3 + i} (stride {s})" + (f"\n{counts[i]} locations" if counts is not None else "")
            for i, s in enumerate(strides)
        ]
        for k, (name, per_region) in enumerate(kl.items()):
            values = [0.0 if math.isnan(v) else v for v in per_region[region]]
            xs = [i + (k - (n - 1) / 2) * width for i in range(len(strides))]
            ax.bar(xs, values, width=width, color=PALETTE[(k + 1) % len(PALETTE)], label=name)
        ax.set_xticks(range(len(strides)))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_ylabel("KL(teacher || model), nats", fontsize=9)
        ax.set_title(f"teacher-model KL {REGION_TITLES[region]}", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def plot_ap_by_iou(ap: dict[str, dict[str, float]], path: Path) -> Path:
    """AP (%) at each IoU threshold (COCO area all, 100 detections), one line per model."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for k, (name, values) in enumerate(ap.items()):
        thresholds = [int(key[2:]) / 100 for key in values]
        ys = [100 * v if v >= 0 else float("nan") for v in values.values()]
        ax.plot(thresholds, ys, "-o", ms=4, color=PALETTE[k % len(PALETTE)], label=name)
    ax.set_xlabel("IoU threshold")
    ax.set_ylabel("AP (%)")
    ax.set_title("AP by IoU threshold", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
