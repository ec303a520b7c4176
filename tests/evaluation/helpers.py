"""Shared helpers of the evaluator tests."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from locdistill.structures import Detections


def dets(boxes: Sequence[Sequence[float]], scores: Sequence[float], labels: Sequence[int]) -> Detections:
    return Detections(
        torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        torch.tensor(scores, dtype=torch.float32),
        torch.tensor(labels, dtype=torch.int64),
    )
