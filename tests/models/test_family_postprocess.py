"""The original (LD code) post-processing order of the families, on hand-made cases."""

from __future__ import annotations

import math

import torch

from locdistill.models.family_postprocess import family_postprocess
from locdistill.models.heads.family_outputs import FamilyOutputs
from locdistill.models.integral import Integral
from locdistill.models.postprocess import PostProcessConfig
from locdistill.structures import ImageMeta


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def case(order: str, nms_pre: int):
    """One level, 1 x 3 priors at x = 10, 40, 70 (stride 8), 2 classes; every box 1 stride (8 px) per
    side, so no two boxes overlap."""
    cls = torch.tensor([[0.90, 0.01], [0.06, 0.50], [0.04, 0.30]])  # sigmoid(cls) per prior
    ctr = torch.tensor([0.10, 0.90, 0.90])
    reg = torch.full((1, 4, 17, 1, 3), -50.0)
    reg[:, :, 1] = 50.0
    reg = reg.reshape(1, 68, 1, 3)
    out = FamilyOutputs(
        [torch.tensor([[logit(v) for v in row] for row in cls.tolist()]).t().reshape(1, 2, 1, 3)],
        [reg],
        [torch.tensor([logit(v) for v in ctr.tolist()]).reshape(1, 1, 1, 3)],
    )
    centres = [torch.tensor([[10.0, 50.0], [40.0, 50.0], [70.0, 50.0]])]
    meta = ImageMeta(0, "", (100, 100), (100, 100), (100, 100))
    cfg = PostProcessConfig(0.05, nms_pre, "nms", 0.6, 100)
    return family_postprocess(out, centres, [8], [meta], Integral(16), 2, cfg, False, order)[0]  # type: ignore[arg-type]


def test_original_order_ranks_priors_by_cls_times_ctr_and_thresholds_the_raw_score() -> None:
    det = case("original", nms_pre=2)
    # rank by max_c cls*ctr: prior 1 (0.45), prior 2 (0.27), prior 0 (0.09) -> prior 0 is cut by nms_pre=2
    # although its raw class score 0.9 is the highest; the pair (prior 2, class 0) has raw score 0.04 <
    # 0.05 and goes; (prior 1, class 0) has raw score 0.06 > 0.05 and stays, scored 0.06 * 0.9 = 0.054
    # (under the threshold after the centerness, which the original does not re-check).
    got = sorted(zip(det.labels.tolist(), [round(s, 4) for s in det.scores.tolist()]))
    assert got == [(0, 0.054), (1, 0.27), (1, 0.45)]


def test_mmdet3_order_ranks_pairs_by_the_raw_class_score() -> None:
    det = case("mmdet3", nms_pre=2)
    # per level the top-2 *pairs* by sigmoid(cls): (0, c0) 0.9 and (1, c1) 0.5, then x ctr
    got = sorted(zip(det.labels.tolist(), [round(s, 4) for s in det.scores.tolist()]))
    assert got == [(0, 0.09), (1, 0.45)]
