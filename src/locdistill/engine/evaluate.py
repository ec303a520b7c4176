"""Evaluation loop: run the detector over a test loader (sharded over ranks), gather the detections on
the main process, score them with the COCO or VOC evaluator and share the metrics with every rank.

:func:`evaluate` scores a model on a loader (training's periodic evaluation, the demo);
:func:`evaluate_checkpoint` is ``locdistill test``: a checkpoint (and optionally a config) in, metrics
and result records out."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from locdistill.config import Config
from locdistill.config.resolve import set_data_root
from locdistill.data import build_dataset, build_test_loader
from locdistill.engine.device import amp_settings, pick_device
from locdistill.engine.distributed import (
    all_gather_object,
    broadcast_object,
    is_distributed,
    is_main_process,
)
from locdistill.evaluation import (
    CocoEvaluator,
    VOCEvaluator,
    classwise_ap,
    format_classwise_table,
    format_coco_table,
    format_voc_table,
)
from locdistill.models.from_checkpoint import build_detector_from_checkpoint
from locdistill.structures import Batch, Detections

logger = logging.getLogger(__name__)


@torch.inference_mode()
def predict_loader(
    model: nn.Module,
    loader: Any,
    device: torch.device,
    amp: bool = False,
    amp_dtype: torch.dtype = torch.float16,
    progress: bool = True,
) -> dict[int, Detections]:
    """``{image_id: Detections}`` (CPU, original-image pixels) for this rank's share of ``loader``."""
    was_training = model.training
    model.eval()
    out: dict[int, Detections] = {}
    try:
        show = progress and is_main_process() and sys.stderr.isatty()
        for batch in tqdm(loader, desc="eval", disable=not show, dynamic_ncols=True):
            assert isinstance(batch, Batch)
            images = batch.images.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp and device.type == "cuda"):
                outputs = model(images)
            dets = model.predict(outputs, batch.metas, rescale=True)  # type: ignore[operator]
            for meta, det in zip(batch.metas, dets):
                out[int(meta.image_id)] = det.to("cpu")
    finally:
        model.train(was_training)
    return out


def gather_detections(local: dict[int, Detections]) -> dict[int, Detections]:
    """All ranks' detections merged (an image seen by several ranks, e.g. a padded sampler, counts once)."""
    merged: dict[int, Detections] = {}
    for part in all_gather_object(local):
        for image_id, det in part.items():
            merged.setdefault(image_id, det)
    return merged


def score_detections(
    dataset: Any,
    detections: dict[int, Detections],
    metric: str,
    classwise: bool = False,
    coco_backend: str = "pycocotools",
) -> tuple[dict[str, float], str, list[dict]]:
    """``(metrics, table, coco_results)`` of ``detections`` against ``dataset``'s ground truth.

    ``classwise`` (COCO): the table ends with AP, AP50 and AP75 per class. ``coco_backend``:
    ``pycocotools`` or ``faster_coco_eval`` (same numbers)."""
    if not hasattr(dataset, "image_ids") and hasattr(dataset, "dataset"):  # a RepeatDataset
        dataset = dataset.dataset
    image_ids = [int(i) for i in dataset.image_ids]
    missing = [i for i in image_ids if i not in detections]
    if missing:
        logger.warning(
            "%d of %d images have no predictions (e.g. id %s)", len(missing), len(image_ids), missing[0]
        )
    empty = Detections(torch.zeros((0, 4)), torch.zeros((0,)), torch.zeros((0,), dtype=torch.int64))
    if metric == "coco":
        gt = dataset.to_coco_dict()
        coco = CocoEvaluator(gt, dataset.category_ids, backend=coco_backend)
        for image_id in image_ids:
            coco.add(image_id, detections.get(image_id, empty))
        metrics = coco.evaluate()
        table = format_coco_table(metrics)
        if classwise:
            table += "\n\n" + _classwise_table(coco, gt, dataset)
        return {k: float(v) for k, v in metrics.items()}, table, coco.results()
    if metric == "voc":
        voc = VOCEvaluator(dataset.class_names)
        for index, image_id in enumerate(image_ids):
            ann = dataset.get_annotation(index)
            # VOC 'difficult' objects and COCO crowd regions are both "neither TP nor FP" here
            voc.add_ground_truth(image_id, ann.boxes, ann.labels, ann.difficult | ann.ignore)
            voc.add(image_id, detections.get(image_id, empty))
        result = voc.evaluate()
        return {k: float(v) for k, v in result.items()}, format_voc_table(result), []
    raise ValueError(f"unknown metric {metric!r} (expected 'coco' or 'voc')")


def _classwise_table(coco: Any, gt: dict[str, Any], dataset: Any) -> str:
    """AP, AP50, AP75 and the number of (non-crowd) ground-truth boxes per class of an evaluated run."""
    counts = {c: 0 for c in dataset.category_ids}
    for ann in gt["annotations"]:
        if not ann.get("iscrowd", 0) and ann["category_id"] in counts:
            counts[ann["category_id"]] += 1
    rows = classwise_ap(coco.coco_eval, dataset.class_names, [counts[c] for c in dataset.category_ids])
    return "per-class AP (IoU .50:.95, area all, 100 detections):\n" + format_classwise_table(rows)


def coco_results(dataset: Any, detections: dict[int, Detections]) -> list[dict[str, Any]]:
    """The COCO results list (category ids of the dataset) without scoring: what the test-dev server takes."""
    if not hasattr(dataset, "image_ids") and hasattr(dataset, "dataset"):
        dataset = dataset.dataset
    coco = CocoEvaluator(dataset.to_coco_dict(), dataset.category_ids)
    for image_id in dataset.image_ids:
        if int(image_id) in detections:
            coco.add(int(image_id), detections[int(image_id)])
    return coco.results()


def detection_records(dataset: Any, detections: dict[int, Detections]) -> list[dict[str, Any]]:
    """COCO-style result records for any dataset: ``category_id`` is the dataset's category id of the
    label (``label + 1`` for VOC/YOLO/synthetic data), plus ``label`` and the class ``category`` name."""
    names = list(getattr(dataset, "class_names", []))
    cat_ids = list(getattr(dataset, "category_ids", [])) or list(range(1, len(names) + 1))
    out = []
    for image_id in sorted(detections):
        d = detections[image_id]
        for box, score, label in zip(d.boxes.tolist(), d.scores.tolist(), d.labels.tolist()):
            x1, y1, x2, y2 = box
            rec: dict[str, Any] = {
                "image_id": int(image_id),
                "category_id": int(cat_ids[label]) if label < len(cat_ids) else int(label),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": float(score),
                "label": int(label),
            }
            if label < len(names):
                rec["category"] = names[label]
            out.append(rec)
    return out


def evaluate(
    model: nn.Module,
    loader: Any,
    dataset: Any,
    metric: str,
    device: torch.device,
    amp: bool = False,
    amp_dtype: torch.dtype = torch.float16,
    progress: bool = True,
    coco_backend: str = "pycocotools",
) -> tuple[dict[str, float], str, list[dict]]:
    """Evaluate ``model`` (a GFL) on ``loader``; every rank gets the metrics and the table, the main
    process also the COCO results list (``[]`` elsewhere and for VOC)."""
    local = predict_loader(model, loader, device, amp, amp_dtype, progress)
    merged = gather_detections(local)
    result: tuple[dict[str, float], str, list[dict]] = ({}, "", [])
    if is_main_process():
        result = score_detections(dataset, merged, metric, coco_backend=coco_backend)
    metrics, table = broadcast_object((result[0], result[1]))
    return metrics, table, result[2]


@dataclass
class CheckpointEvaluation:
    """What :func:`evaluate_checkpoint` returns on the main process.

    Attributes:
        metrics: metric name -> value (empty with ``format_only``).
        table: the printable metric table (``""`` with ``format_only``).
        records: the detections as result records: the COCO results list (COCO category ids) for the
            ``coco`` metric, else :func:`detection_records`.
        num_images: images evaluated.
    """

    metrics: dict[str, float] = field(default_factory=dict)
    table: str = ""
    records: list[dict[str, Any]] = field(default_factory=list)
    num_images: int = 0


def evaluate_checkpoint(
    checkpoint: str | Path,
    cfg: Config | str | Path | None = None,
    *,
    overrides: Sequence[str] = (),
    data_root: str | Path | None = None,
    split: str = "test",
    metric: str | None = None,
    use_ema: bool = False,
    format_only: bool = False,
    device: torch.device | None = None,
    classwise: bool = True,
) -> CheckpointEvaluation | None:
    """Evaluate the GFL that ``checkpoint`` holds (every format :func:`locdistill.weights.read_weights`
    reads) on ``data.test`` (``split="test"``, falling back to ``data.val`` when the config has none) or
    ``data.val``. The config is ``cfg`` (a path or a Config) when given, else the one stored in the
    checkpoint, with ``overrides`` (``--set``) on top: its data section says what to evaluate on
    (every split's root replaced by ``data_root``, ``--data-root``, when given).

    Under ``torch.distributed`` (initialised by the caller) every rank predicts its share; the main
    process gathers and scores them and gets the result, the other ranks ``None``. AMP follows
    ``train.amp`` / ``train.amp_dtype`` on CUDA. With ``format_only`` nothing is scored (COCO test-dev
    has no ground truth here): only ``records`` is filled. The COCO table ends with the per-class AP
    table (``classwise``); ``evaluation.coco_backend`` chooses pycocotools or faster-coco-eval.
    """
    device = device or pick_device()
    model, info = build_detector_from_checkpoint(checkpoint, cfg, overrides, device, use_ema)
    cfg = info.config
    set_data_root(cfg, data_root)
    metric = metric or cfg.metric
    data_cfg = cfg.data.test if split == "test" and cfg.data.test is not None else cfg.data.val
    dataset = build_dataset(data_cfg, cfg.data, train=False, mean=model.mean, std=model.std)
    loader = build_test_loader(
        dataset, cfg.data.test_images_per_gpu, cfg.data.workers_per_gpu, is_distributed()
    )
    use_amp, amp_dtype, _ = amp_settings(cfg, device)
    detections = gather_detections(predict_loader(model, loader, device, use_amp, amp_dtype))
    if not is_main_process():
        return None
    out = CheckpointEvaluation(num_images=len(detections))
    if not format_only:
        out.metrics, out.table, out.records = score_detections(
            dataset, detections, metric, classwise=classwise, coco_backend=cfg.evaluation.coco_backend
        )
    elif metric == "coco":
        out.records = coco_results(dataset, detections)
    if metric != "coco":
        out.records = detection_records(dataset, detections)
    return out
