"""Knowledge-distillation KL divergence between temperature-softened distributions (LD's KD term)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def kd_kl_div(pred: Tensor, soft_label: Tensor, temperature: float) -> Tensor:
    """Per-row ``KL(softmax(soft/T) || softmax(pred/T))``, *mean* over the last dim, times ``T^2``.

    The mean (= summed KL / K) is the reference implementation's form (mmdetection's
    ``KnowledgeDistillationKLDivLoss``); the teacher side is detached.

    Args:
        pred: ``[N, K]`` student logits (K = reg_max + 1 bins for LD, or classes for class KD).
        soft_label: ``[N, K]`` teacher logits.
        temperature: softmax temperature ``T``.

    Returns:
        ``[N]``.
    """
    target = F.softmax(soft_label.detach() / temperature, dim=1)
    kl = F.kl_div(F.log_softmax(pred / temperature, dim=1), target, reduction="none").mean(dim=1)
    return kl * (temperature * temperature)
