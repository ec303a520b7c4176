"""The family objectives' normalisers where the LD code and mmdetection 3 differ."""

from __future__ import annotations

import math

import pytest
import torch

from locdistill.models.heads.family_outputs import FamilyOutputs
from locdistill.models.integral import Integral


def test_box_loss_normaliser_is_the_centerness_sum_even_below_one() -> None:
    """The original divides the centerness-weighted GIoU by the centerness sum, replacing it by 1 only
    below 1e-12 (mmdetection 3 clamps ATSS's to >= 1): one positive of centerness 0.204 gives a
    normaliser of 0.204, so its weight cancels."""
    from locdistill.losses.giou import giou_loss
    from locdistill.models.assigners.batch import build_point_assignment
    from locdistill.models.losses.centerness_gfl import centerness_gfl_loss
    from locdistill.structures import Targets

    points = [torch.tensor([[4.0, 4.0]])]
    targets = [Targets(torch.tensor([[0.0, 0.0, 100.0, 8.0]]), torch.tensor([0]))]
    a = build_point_assignment(points, [8], targets, 2, [[-1.0, 1e8]], center_sampling=False)
    assert int(a.pos_mask.sum()) == 1
    out = FamilyOutputs([torch.zeros(1, 2, 1, 1)], [torch.zeros(1, 68, 1, 1)], [torch.zeros(1, 1, 1, 1)])
    losses = centerness_gfl_loss(out, a, Integral(16), 2, plain_count=True, giou_weight=1.0)
    centerness = math.sqrt(4 / 96)
    assert float(losses["bbox_divisor"]) == pytest.approx(centerness, rel=1e-6)
    pred = torch.tensor([[0.5 - 8.0, 0.5 - 8.0, 0.5 + 8.0, 0.5 + 8.0]])  # Integral of zeros: 8 bins per side
    expected = float(giou_loss(pred, torch.tensor([[0.0, 0.0, 12.5, 1.0]])))
    assert float(losses["loss_bbox"].sum()) == pytest.approx(expected, rel=1e-5)
