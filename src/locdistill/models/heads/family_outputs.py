"""Raw per-level outputs of the RetinaGFL, ATSS-GFL and FCOS-GFL heads."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class FamilyOutputs(NamedTuple):
    """Raw head outputs per level (strides 8 upward); nothing decoded, no sigmoid.

    Attributes:
        cls_scores: ``[B, A*C, H_l, W_l]`` class logits, anchor-major (``channel = a*C + c``; ``A = 9``
            for RetinaGFL, 1 otherwise).
        bbox_preds: ``[B, A*4*(R+1), H_l, W_l]`` distribution logits, anchor-major then side-major
            (``channel = a*4*(R+1) + side*(R+1) + bin``), after the level's Scale where the head has one.
        centernesses: ``[B, 1, H_l, W_l]`` centerness logits (ATSS-GFL, FCOS-GFL); empty for RetinaGFL.
    """

    cls_scores: list[Tensor]
    bbox_preds: list[Tensor]
    centernesses: list[Tensor] = []

    def float(self) -> FamilyOutputs:
        """The outputs in float32 (float32 tensors are returned as they are)."""
        return FamilyOutputs(
            [c.float() for c in self.cls_scores],
            [r.float() for r in self.bbox_preds],
            [c.float() for c in self.centernesses],
        )

    def clone(self) -> FamilyOutputs:
        """Copies of every tensor."""
        return FamilyOutputs(
            [c.clone() for c in self.cls_scores],
            [r.clone() for r in self.bbox_preds],
            [c.clone() for c in self.centernesses],
        )
