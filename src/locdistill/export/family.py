"""ONNX export wrapper of RetinaGFL / ATSS-GFL / FCOS-GFL (:mod:`locdistill.export.onnx` picks it).

Without NMS the graph returns ``boxes [B, N, 4]`` (input pixels, clipped) and ``scores [B, N, C]`` for
all ``N`` priors, the score being ``sigmoid(cls) * sigmoid(centerness)`` (RetinaGFL: ``sigmoid(cls)``).
With NMS it runs the *original* post-processing order (:mod:`locdistill.models.family_postprocess`) in
fixed shapes: per level the top ``nms_pre`` priors by ``max_c sigmoid(cls) * sigmoid(ctr)``; the pairs
with ``sigmoid(cls) > score_thr`` scored ``sigmoid(cls) * sigmoid(ctr)``; then the class-aware NMS of
:class:`locdistill.export.nms.ExportPostprocess` (which also drops boxes of zero width or height, as
the PyTorch post-processing does). ``model.test.order: mmdet3`` cannot be exported with NMS.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from locdistill.export.nms import ExportPostprocess
from locdistill.models.detectors.family import FamilyDetector
from locdistill.models.heads.family_outputs import FamilyOutputs
from locdistill.models.losses.common import flatten_priors
from locdistill.ops.box_ops import distance2bbox


def decode_fixed(centers: Tensor, strides: Tensor, distances: Tensor, img_size: tuple[int, int]) -> Tensor:
    """Distances ``[B, N, 4]`` (stride units) from prior centres ``[N, 2]`` -> boxes ``[B, N, 4]`` in
    input pixels, clipped to the fixed ``img_size`` ``(H, W)``."""
    return distance2bbox(centers[None], distances * strides[None, :, None], max_shape=img_size)


class ExportableFamily(nn.Module):
    """Wraps a :class:`FamilyDetector` with fixed-size priors, decoding and (optionally) post-processing.

    Args:
        model: the detector (eval mode); img_size: ``(H, W)`` of the exported input.
        with_nms, nms_topk, nms_iters: as :class:`locdistill.export.onnx.ExportableGFL`.
    """

    centers: Tensor
    strides: Tensor

    def __init__(
        self,
        model: FamilyDetector,
        img_size: tuple[int, int],
        with_nms: bool = False,
        nms_topk: int = 1000,
        nms_iters: int = 32,
    ) -> None:
        super().__init__()
        self.model = model.eval()
        self.img_size = img_size
        with torch.no_grad():
            out = model(torch.zeros(1, 3, *img_size))
        centres = model.prior_centres(model.priors(out))
        self.level_sizes = [c.shape[0] for c in centres]
        self.register_buffer("centers", torch.cat(centres))
        self.register_buffer(
            "strides",
            torch.cat([torch.full((n,), float(s)) for n, s in zip(self.level_sizes, model.strides)]),
        )
        self.post: ExportPostprocess | None = None
        cfg = model.test_cfg
        self.score_thr = float(cfg.score_thr)
        self.top = [min(cfg.nms_pre, n) for n in self.level_sizes]
        if with_nms:
            if model.order != "original":
                raise ValueError(
                    "model.test.order=mmdet3 cannot be exported with --with-nms; export without it, or set "
                    "model.test.order=original"
                )
            c = model.num_classes
            # the selected priors of all levels as one candidate set, every (prior, class) pair of it
            # (scores at or below score_thr are already 0, so threshold 0 keeps exactly the rest)
            self.post = ExportPostprocess(
                1, c, str(cfg.nms_type), 0.0, sum(self.top) * c, cfg.iou_threshold, cfg.max_per_img,
                nms_topk=nms_topk, nms_iters=nms_iters,
            )  # fmt: skip

    def parts(self, out: FamilyOutputs) -> tuple[Tensor, Tensor, Tensor]:
        """``(boxes [B, N, 4], sigmoid(cls) [B, N, C], sigmoid(ctr) [B, N, 1])`` (ctr 1 without a branch)."""
        m = self.model
        cls, reg = m.flat_outputs(out)
        prob = cls.sigmoid()
        if out.centernesses:
            ctr = flatten_priors(out.centernesses, 1).sigmoid()
        else:
            ctr = torch.ones_like(prob[..., :1])
        return decode_fixed(self.centers, self.strides, m.integral(reg), self.img_size), prob, ctr

    def raw_scores(self, out: FamilyOutputs) -> Tensor:
        """The per-prior scores of the NMS-free graph, computed in PyTorch (for the parity check)."""
        _, prob, ctr = self.parts(out)
        return prob * ctr

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        boxes, prob, ctr = self.parts(self.model(images))
        if self.post is None:
            return boxes, prob * ctr
        sel_boxes, sel_scores, start = [], [], 0
        for n, k in zip(self.level_sizes, self.top):
            p, c, b = prob[:, start : start + n], ctr[:, start : start + n], boxes[:, start : start + n]
            idx = (p * c).amax(dim=2).topk(k, dim=1).indices  # [B, k]
            p = torch.gather(p, 1, idx[..., None].expand(-1, -1, p.shape[2]))
            c = torch.gather(c, 1, idx[..., None])
            sel_boxes.append(torch.gather(b, 1, idx[..., None].expand(-1, -1, 4)))
            sel_scores.append(torch.where(p > self.score_thr, p * c, torch.zeros_like(p)))
            start += n
        return self.post([torch.cat(sel_boxes, 1)], [torch.cat(sel_scores, 1)])
