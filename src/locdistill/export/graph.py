"""The exported graph as a PyTorch module: ``predict``'s decoding and post-processing for any input size.

See :mod:`locdistill.export` for the inputs and outputs and :mod:`locdistill.export.nms` for the
post-processing in fixed-shape matrix form.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from locdistill.export.nms import ExportPostprocess, decode
from locdistill.models.detectors.gfl import GFL
from locdistill.models.priors.anchors import level_anchors


class ExportableGFL(nn.Module):
    """Wraps a :class:`GFL` with the anchors, decoding, clipping, rescaling and (optionally) the
    post-processing of ``predict``, for any input size.

    ``forward(images [B, 3, H, W], img_shape [B, 2], ori_shape [B, 2])`` (shapes int64 ``(h, w)``:
    the resized image inside the padded input, and the original image). The anchors of each level
    come from its feature-map size (a ``torch.arange`` the tracer records with the input's dynamic
    height and width); boxes are clipped to ``img_shape`` and divided by the scale factor
    ``img_shape / ori_shape`` (as ``predict``), so they are in original-image pixels.

    Args:
        model: the detector (eval mode).
        with_nms: include ``model.test`` post-processing with its NMS type.
        nms_topk / nms_iters: see :class:`locdistill.export.nms.ExportPostprocess`.
    """

    def __init__(self, model: GFL, with_nms: bool = False, nms_topk: int = 1000, nms_iters: int = 32) -> None:
        super().__init__()
        self.model = model.eval()
        self.with_nms = with_nms
        self.post: ExportPostprocess | None = None
        if with_nms:
            cfg = model.test_cfg
            self.post = ExportPostprocess(
                len(model.strides),
                int(model.num_classes),  # type: ignore[arg-type]
                str(cfg.nms_type),
                cfg.score_thr,
                cfg.nms_pre,
                cfg.iou_threshold,
                cfg.max_per_img,
                nms_topk=nms_topk,
                nms_iters=nms_iters,
            )

    def levels(
        self, images: Tensor, img_shape: Tensor, ori_shape: Tensor
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Per level: ``boxes [B, A_l, 4]`` (original-image pixels) and ``scores [B, A_l, C]``."""
        model = self.model
        out = model(images)
        # (h, w) scale as a float32 division (no float64 op in the graph): the same value as predict's
        # float64 quotient rounded to float32 (checked for every new size <= 2048, original <= 4096)
        scale = img_shape.to(torch.float32) / ori_shape.to(torch.float32)
        scale_factor = torch.stack([scale[:, 1], scale[:, 0], scale[:, 1], scale[:, 0]], dim=1)
        bounds = img_shape.to(torch.float32)
        boxes, scores = [], []
        for cls, reg, stride in zip(out.cls_scores, out.bbox_preds, model.strides):
            anchors = level_anchors((cls.shape[2], cls.shape[3]), stride, model.octave_base_scale)
            dist = model.integral(reg.permute(0, 2, 3, 1).flatten(1, 2))
            boxes.append(decode(anchors, dist, stride, bounds, scale_factor))
            scores.append(cls.permute(0, 2, 3, 1).flatten(1, 2).sigmoid())
        return boxes, scores

    def forward(self, images: Tensor, img_shape: Tensor, ori_shape: Tensor) -> tuple[Tensor, ...]:
        boxes, scores = self.levels(images, img_shape, ori_shape)
        if self.post is None:
            return torch.cat(boxes, 1), torch.cat(scores, 1)
        return self.post(boxes, scores)
