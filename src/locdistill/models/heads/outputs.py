"""Raw per-level outputs of a dense head and their flattening per prior.

:class:`HeadOutputs` is what the GFL head returns (class logits and edge-distribution logits per
level); :class:`TowerFeatures` is a head's tower output at some depth (CrossKD's crossing point);
:func:`flatten_levels` turns per-level maps into rows, one per prior of all levels.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class HeadOutputs(NamedTuple):
    """Raw per-level head outputs (levels from stride 8 upward).

    Attributes:
        cls_scores: ``[B, C, H_l, W_l]`` class logits (sigmoid). For GFL v2 this is the logit of the
            joint score ``sigmoid(cls) * quality``.
        bbox_preds: ``[B, 4*(reg_max+1), H_l, W_l]`` distribution logits, side-major
            (``channel = side*(reg_max+1) + bin``, sides left, top, right, bottom), already multiplied
            by the level's learnable scale.
    """

    cls_scores: list[Tensor]
    bbox_preds: list[Tensor]

    def float(self) -> HeadOutputs:
        """The outputs in float32 (the losses and the decoding run in float32 also under autocast);
        float32 tensors are returned as they are, not copied."""
        return HeadOutputs([c.float() for c in self.cls_scores], [r.float() for r in self.bbox_preds])

    def clone(self) -> HeadOutputs:
        """Copies of every tensor (e.g. to use outputs made under ``torch.inference_mode`` in autograd)."""
        return HeadOutputs([c.clone() for c in self.cls_scores], [r.clone() for r in self.bbox_preds])


class TowerFeatures(NamedTuple):
    """Per-level tower features at one depth of the head (CrossKD's crossing point).

    Attributes:
        cls_feats, reg_feats: ``[B, F, H_l, W_l]`` per level: the output of tower conv ``depth - 1``
            of the class / box tower after its ReLU (or before it, conv -> GroupNorm, with
            ``forward_tower(..., relu_last=False)``), or the FPN map itself at depth 0.
        depth: how many tower convs produced them (0 = none).
    """

    cls_feats: list[Tensor]
    reg_feats: list[Tensor]
    depth: int


def flatten_levels(maps: list[Tensor], priors_per_location: int = 1) -> Tensor:
    """Per-level ``[B, P*K, H_l, W_l]`` -> ``[B, sum_l H_l*W_l*P, K]``: one row per prior, row-major per
    level (``index = (y*W_l + x)*P + p``), levels in order.

    ``P`` = ``priors_per_location``: with several anchors per location the channels are anchor-major
    (anchor ``p`` owns channels ``[p*K, (p+1)*K)``, as mmdetection's anchor heads), so each anchor gets
    its own row of ``K`` numbers.
    """
    return torch.cat(
        [m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, m.shape[1] // priors_per_location) for m in maps],
        dim=1,
    )
