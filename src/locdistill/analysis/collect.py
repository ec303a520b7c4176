"""One pass of several detectors over a validation set, collecting what ``locdistill analyze`` reports.

Every batch goes through every model once (each in its own input normalisation). From that pass:

* **detections** of each model (original-image pixels), for the COCO metric;
* **edge errors** at the ATSS positives: for each positive location and edge (left, top, right,
  bottom), the model's predicted distance (the expectation of its edge distribution) minus the
  ground-truth distance, both measured from the anchor centre in **stride units** (the unit of the
  distributions' bins; multiply by the level's stride for network-input pixels). The positives are
  assigned by ATSS from anchors and ground truth alone, so they are the same locations for every model;
* **teacher-student KL per FPN level**: ``KL(p_teacher || p_model)`` of the edge distributions at
  temperature 1, in nats, summed over the ``reg_max + 1`` bins, averaged over the four edges and over
  the locations of a region: the ATSS positives (where Main LD acts) and the VLR (Valuable
  Localization Region, official DIoU band ``[0.25 alpha, alpha)``, where VLR LD acts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from locdistill.analysis.edges import renormalize
from locdistill.distill.regions import vlr_region
from locdistill.models.detectors.base import DenseDetector
from locdistill.ops.box_ops import box_centers
from locdistill.structures import Batch, Detections

REGIONS = ("positives", "vlr")


@dataclass
class ModelStats:
    """What one model produced over the pass.

    Attributes:
        detections: ``{image_id: Detections}`` in original-image pixels.
        errors: ``[P, 4]`` predicted minus ground-truth edge distance at the positives, stride units.
        kl_sum, kl_count: per region, ``[L]`` summed KL (nats, mean over edges) and location counts.
    """

    detections: dict[int, Detections] = field(default_factory=dict)
    errors: list[Tensor] = field(default_factory=list)
    kl_sum: dict[str, Tensor] = field(default_factory=dict)
    kl_count: dict[str, Tensor] = field(default_factory=dict)

    def error_tensor(self) -> Tensor:
        return torch.cat(self.errors) if self.errors else torch.zeros((0, 4))

    def kl_mean(self, region: str) -> list[float]:
        """Mean KL per level; NaN for a level without locations of the region."""
        count = self.kl_count[region]
        mean = self.kl_sum[region] / count.clamp(min=1)
        return [float(m) if int(c) > 0 else float("nan") for m, c in zip(mean, count)]


@dataclass
class Collected:
    """The whole pass: per model statistics plus the shared ground-truth side."""

    models: dict[str, ModelStats]
    strides: list[int]
    positive_strides: list[Tensor] = field(default_factory=list)
    positive_levels: list[Tensor] = field(default_factory=list)
    num_images: int = 0
    num_objects: int = 0
    region_counts: dict[str, Tensor] = field(default_factory=dict)

    def strides_tensor(self) -> Tensor:
        return torch.cat(self.positive_strides) if self.positive_strides else torch.zeros(0)

    def levels_tensor(self) -> Tensor:
        return torch.cat(self.positive_levels) if self.positive_levels else torch.zeros(0, dtype=torch.long)


def edge_kl(teacher_logits: Tensor, logits: Tensor, reg_max: int) -> Tensor:
    """``[N]`` ``KL(softmax(teacher) || softmax(logits))`` per location, summed over bins, averaged over
    the four edges (nats). Inputs ``[N, 4*(reg_max+1)]``."""
    t = teacher_logits.reshape(-1, 4, reg_max + 1).float()
    s = logits.reshape(-1, 4, reg_max + 1).float()
    log_t, log_s = F.log_softmax(t, dim=-1), F.log_softmax(s, dim=-1)
    return (log_t.exp() * (log_t - log_s)).sum(-1).mean(-1)


def ground_truth_distances(anchors: Tensor, boxes: Tensor, strides: Tensor) -> Tensor:
    """``[P, 4]`` distances (left, top, right, bottom) of ``boxes`` from the ``anchors``' centres, in
    units of ``strides`` ``[P]`` (not clamped to ``reg_max``)."""
    c = box_centers(anchors)
    d = torch.stack(
        [c[:, 0] - boxes[:, 0], c[:, 1] - boxes[:, 1], boxes[:, 2] - c[:, 0], boxes[:, 3] - c[:, 1]]
    )
    return d.t() / strides[:, None]


@torch.inference_mode()
def collect(
    models: dict[str, DenseDetector[Any]],
    teacher: str,
    loader: Any,
    normalization: tuple[Any, Any],
    device: torch.device,
) -> Collected:
    """Run every model over ``loader`` (test-pipeline batches normalised with ``normalization``) and
    gather :class:`ModelStats`; ``teacher`` names the model the KL is measured against."""
    reference = models[teacher]
    num_levels = len(reference.strides)
    stats = {name: ModelStats() for name in models}
    for s in stats.values():
        for region in REGIONS:
            s.kl_sum[region] = torch.zeros(num_levels, dtype=torch.float64)
            s.kl_count[region] = torch.zeros(num_levels, dtype=torch.long)
    out = Collected(models=stats, strides=list(reference.strides))
    out.region_counts = {r: torch.zeros(num_levels, dtype=torch.long) for r in REGIONS}
    for batch in loader:
        assert isinstance(batch, Batch)
        images = batch.images.to(device)
        outputs = {name: m(renormalize(images, normalization, m)) for name, m in models.items()}
        for name, m in models.items():
            for meta, det in zip(batch.metas, m.predict(outputs[name], batch.metas, rescale=True)):
                stats[name].detections[int(meta.image_id)] = det.to("cpu")
        assignment = reference.assign(outputs[teacher], batch.targets, batch.metas)
        b_idx, a_idx = assignment.pos_mask.nonzero(as_tuple=True)
        strides = assignment.anchor_strides[a_idx]
        gt = ground_truth_distances(
            assignment.anchors[a_idx], assignment.gt_boxes[b_idx, a_idx], strides
        ).cpu()
        level = assignment.level_index[a_idx]
        vlr = vlr_region(assignment, batch.targets) > 0
        v_b, v_a = vlr.nonzero(as_tuple=True)
        v_level = assignment.level_index[v_a]
        regions = {"positives": (b_idx, a_idx, level), "vlr": (v_b, v_a, v_level)}
        for region, (_, _, lvl) in regions.items():
            out.region_counts[region] += torch.bincount(lvl.cpu(), minlength=num_levels)
        out.positive_strides.append(strides.cpu())
        out.positive_levels.append(level.cpu())
        out.num_images += len(batch)
        out.num_objects += sum(len(t) for t in batch.targets)
        t_reg = reference.flatten(outputs[teacher]).reg
        for name, m in models.items():
            reg = m.flatten(outputs[name]).reg
            pred = m.integral(reg[b_idx, a_idx].float()).cpu()
            stats[name].errors.append(pred - gt)
            for region, (rb, ra, lvl) in regions.items():
                kl = edge_kl(t_reg[rb, ra], reg[rb, ra], m.reg_max).double().cpu()
                stats[name].kl_sum[region].index_add_(0, lvl.cpu(), kl)
                stats[name].kl_count[region] += torch.bincount(lvl.cpu(), minlength=num_levels)
    return out
