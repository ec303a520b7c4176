"""The edge-distribution figure: what LD transfers, drawn for a few objects.

For each chosen ground-truth object, the positive anchor nearest its centre is taken and every model's
predicted distribution over the ``reg_max + 1`` bins of each edge (left, top, right, bottom; distances
from the anchor centre in stride units) is drawn, with the ground-truth distance marked. Used by
``locdistill demo`` and ``locdistill analyze``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from locdistill.models.assigners.assignment import Assignment
from locdistill.models.detectors.base import DenseDetector
from locdistill.ops.box_ops import box_centers
from locdistill.structures import Batch

SIDES = ("left", "top", "right", "bottom")
PALETTE = ("tab:green", "tab:red", "tab:gray", "tab:blue", "tab:orange", "tab:purple")


def to_cpu(outputs: Any) -> Any:
    """A detector's raw outputs (a NamedTuple of per-level tensor lists) with every tensor on the CPU."""
    return type(outputs)(*[[t.cpu() for t in part] for part in outputs])


def renormalize(
    images: Tensor, src: tuple[Sequence[float], Sequence[float]], model: DenseDetector[Any]
) -> Tensor:
    """``images`` normalised with ``src = (mean, std)`` re-normalised for ``model``'s backbone
    (the same tensor when they agree); the zero padding of a batch is not re-normalised exactly."""
    mean, std = src
    if tuple(mean) == tuple(model.mean) and tuple(std) == tuple(model.std):
        return images
    s_mean, s_std = images.new_tensor(mean)[:, None, None], images.new_tensor(std)[:, None, None]
    t_mean, t_std = images.new_tensor(model.mean)[:, None, None], images.new_tensor(model.std)[:, None, None]
    return (images * s_std + s_mean - t_mean) / t_std


def pick_objects(targets: Any, gts: list[Any], num: int) -> list[tuple[int, int, int]]:
    """Up to ``num`` ``(image, gt, anchor)`` triples, spread over object sizes (smallest first): for
    each chosen GT the ATSS positive anchor nearest its centre. ``targets`` needs ``gt_index`` and
    ``anchors`` (an :class:`Assignment`), ``gts`` the batch's :class:`Targets`."""
    candidates = []
    for b, t in enumerate(gts):
        for g in range(len(t)):
            anchors = (targets.gt_index[b] == g).nonzero().flatten()
            if len(anchors) == 0:
                continue
            box = t.boxes[g]
            distance = (box_centers(targets.anchors[anchors]) - box_centers(box)).pow(2).sum(1)
            best = anchors[distance.argmin()]
            area = float((box[2] - box[0]) * (box[3] - box[1]))
            candidates.append((area, b, g, int(best)))
    candidates.sort()
    if len(candidates) <= num:
        return [(b, g, a) for _, b, g, a in candidates]
    step = (len(candidates) - 1) / max(num - 1, 1)
    return [candidates[round(i * step)][1:] for i in range(num)]


def plot_edge_distributions(
    models: Mapping[str, DenseDetector[Any]],
    batch: Batch,
    normalization: tuple[Sequence[float], Sequence[float]],
    class_names: Sequence[str],
    path: Path,
    num_objects: int = 3,
    colors: dict[str, str] | None = None,
) -> Path:
    """Draw the figure for ``batch`` (a test-pipeline batch normalised with ``normalization`` =
    ``(mean, std)``) into ``path`` (PNG). Each model sees the batch in its own normalisation; the ATSS
    positives come from the first model's anchors (the models must share strides and anchors).
    Rows: objects (image crop with the box and the anchor centre ``+``; sizes in network-input pixels);
    columns: the four edges, the x axis cut after the last bin holding more than 3 % in some model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(models.values()))
    device = next(first.parameters()).device
    with torch.inference_mode():
        images = batch.images.to(device)
        outputs = {}
        for name, m in models.items():
            outputs[name] = to_cpu(m(renormalize(images, normalization, m)))
    targets: Assignment = first.assign(next(iter(outputs.values())), batch.targets, batch.metas)
    logits = {name: models[name].flatten(out).reg for name, out in outputs.items()}  # [B, A, 4*(R+1)]
    picks = pick_objects(targets, batch.targets, num_objects)
    colors = colors or {name: PALETTE[k % len(PALETTE)] for k, name in enumerate(models)}
    fig, axes = plt.subplots(len(picks) or 1, 5, figsize=(15, 2.7 * max(len(picks), 1)), squeeze=False)
    mean = torch.tensor(list(normalization[0]))[:, None, None]
    std = torch.tensor(list(normalization[1]))[:, None, None]
    bins = torch.arange(first.reg_max + 1)
    for row, (b, g, a) in enumerate(picks):
        box = batch.targets[b].boxes[g]
        centre = box_centers(targets.anchors[a])
        stride = float(targets.anchor_strides[a])
        gt_dist = (
            torch.stack([centre[0] - box[0], centre[1] - box[1], box[2] - centre[0], box[3] - centre[1]])
            / stride
        )
        image = (batch.images[b] * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()
        x1, y1, x2, y2 = box.tolist()
        pad = 0.3 * max(x2 - x1, y2 - y1) + 4
        ax = axes[row, 0]
        ax.imshow(image)
        ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color="yellow", lw=1.5))
        ax.plot([float(centre[0])], [float(centre[1])], "c+", ms=10)
        ax.set_xlim(max(x1 - pad, 0), min(x2 + pad, image.shape[1]))
        ax.set_ylim(min(y2 + pad, image.shape[0]), max(y1 - pad, 0))
        label = int(batch.targets[b].labels[g])
        name = class_names[label] if label < len(class_names) else str(label)
        ax.set_title(f"{name}, {x2 - x1:.0f}x{y2 - y1:.0f} input px (stride {int(stride)})", fontsize=9)
        ax.axis("off")
        probs = {n: flat[b, a].reshape(4, -1).softmax(dim=-1) for n, flat in logits.items()}
        # the bins that carry mass (or the ground truth), for every edge of the row; at least 6 bins
        used = [int((p > 0.03).nonzero()[:, 1].max()) for p in probs.values() if bool((p > 0.03).any())]
        right = min(float(first.reg_max), max([*used, float(gt_dist.max()), 5.0]) + 1.0)
        for side in range(4):
            ax = axes[row, side + 1]
            for model_name, prob in probs.items():
                ax.plot(bins, prob[side], marker=".", label=model_name, color=colors.get(model_name))
            ax.axvline(float(gt_dist[side]), color="black", ls="--", lw=1, label="ground truth")
            ax.set_xlim(-0.3, right + 0.3)
            ax.set_title(f"{SIDES[side]} edge", fontsize=9)
            ax.set_xlabel("distance from the anchor centre (strides)", fontsize=8)
            if side == 0:
                ax.set_ylabel("probability", fontsize=8)
    if picks:
        axes[0, -1].legend(fontsize=7)
    else:
        axes[0, 0].text(0.5, 0.5, "no object with a positive anchor in this batch", ha="center")
        for ax in axes[0]:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
