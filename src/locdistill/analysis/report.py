"""``report.json`` and ``report.md`` of ``locdistill analyze``: the numbers, their units, and links to
the figures. NaN (a level without locations, a metric without ground truth) is ``null`` in the JSON
and ``n/a`` in the Markdown."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from locdistill.analysis.edges import SIDES

COCO_COLUMNS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(report: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(_clean(report), indent=2) + "\n", encoding="utf-8")
    return path


def _cell(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
    if value is None or not math.isfinite(value) or value < 0:
        return "n/a"
    return f"{scale * value:.{digits}f}"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines + [""]


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: models, data, AP tables, edge errors, KL per level, figures."""
    names = list(report["models"])
    data = report["data"]
    lines = ["# locdistill analyze", ""]
    lines += _table(
        ["model", "checkpoint", "backbone", "FPN/head channels", "parameters (M)"],
        [
            [n, f"`{m['checkpoint']}`", m["backbone"], str(m["channels"]), f"{m['parameters'] / 1e6:.2f}"]
            for n, m in report["models"].items()
        ],
    )
    lines += [
        f"Data: `{data['config']}`, split `{data['split']}`: {data['images']} images, {data['objects']} "
        f"objects, {data['positives']} ATSS positive locations, {data['vlr_locations']} VLR locations. "
        f"Input size (img_scale): {data['img_scale']}.",
        "",
        "## COCO metrics (percent)",
        "",
        "pycocotools on this split (VOC-style data included: its `difficult` boxes count as crowd regions).",
        "",
    ]
    lines += _table(
        ["model", *COCO_COLUMNS],
        [[n, *(_cell(report["coco"][n][c], 100) for c in COCO_COLUMNS)] for n in names],
    )
    ious = list(next(iter(report["ap_by_iou"].values())))
    lines += ["## AP by IoU threshold (percent)", "", "![AP by IoU](ap_by_iou.png)", ""]
    lines += _table(
        ["model", *ious], [[n, *(_cell(report["ap_by_iou"][n][k], 100) for k in ious)] for n in names]
    )
    lines += [
        "## Edge localisation error at the ATSS positives",
        "",
        "Predicted distance (expectation of the edge distribution) minus the ground-truth distance from the "
        "anchor centre, in **stride units**, at every ATSS positive location (the same locations for every "
        "model). MAE = mean absolute error; bias = mean signed error; px = MAE times the level's stride "
        "(network-input pixels).",
        "",
        "![edge errors](edge_errors.png)",
        "",
    ]
    err = report["edge_error"]
    head = ["model", *(f"MAE {s}" for s in SIDES), "MAE mean", "bias mean", "MAE px"]
    rows = [
        [
            n,
            *(_cell(err[n]["mae_strides"][s], digits=3) for s in SIDES),
            _cell(err[n]["mae_strides"]["mean"], digits=3),
            f"{err[n]['bias_strides']['mean']:+.3f}",
            _cell(err[n]["mae_pixels"]["mean"], digits=2),
        ]
        for n in names
    ]
    lines += _table(head, rows)
    kl = report["kl_per_level"]
    lines += [
        "## Teacher-model KL per FPN level",
        "",
        "`KL(p_teacher || p_model)` of the edge distributions at temperature 1, in nats, summed over the "
        f"{report['reg_max'] + 1} bins and averaged over the four edges and the locations of the region: the "
        "ATSS positives (Main LD) or the VLR (VLR LD). The teacher against itself is 0 by definition.",
        "",
        "![KL per level](kl_per_level.png)",
        "",
    ]
    levels = kl["levels"]
    for region, title in (("positives", "ATSS positives"), ("vlr", "VLR")):
        counts = " / ".join(str(c) for c in kl["locations"][region])
        lines += [f"**{title}** (locations per level: {counts})", ""]
        lines += _table(
            ["model", *levels], [[n, *(_cell(v, digits=4) for v in kl[n][region])] for n in names]
        )
    lines += [
        "## Edge distributions of a few objects",
        "",
        "Each row: one validation object (crop, box in yellow, the anchor centre `+`), then each model's "
        "distribution over the bins of each edge at that anchor; the dashed line is the true distance.",
        "",
        "![edge distributions](edge_distributions.png)",
        "",
    ]
    return "\n".join(lines)
