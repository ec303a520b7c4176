"""The LD terms follow their reference formulas on hand-computed cases."""

from __future__ import annotations

import torch

from locdistill.distill.ld_loss import batch_scale, main_kd_loss, main_ld_loss, vlr_ld_loss


def _kl_by_hand(s: torch.Tensor, t: torch.Tensor, temp: float) -> torch.Tensor:
    """KL(p_t || p_s) per row, summed over bins, written out."""
    p_t = torch.softmax(t / temp, dim=-1)
    log_p_s = torch.log_softmax(s / temp, dim=-1)
    return (p_t * (torch.log(p_t) - log_p_s)).sum(-1)


def test_official_main_ld_formula_on_hand_case() -> None:
    g = torch.Generator().manual_seed(3)
    s = torch.randn(5, 4, 17, generator=g)
    t = torch.randn(5, 4, 17, generator=g)
    w = torch.rand(5, generator=g)
    # reference: sum_i sum_side w_i * (KL/17) * T^2 / 4, times 0.25; nothing else divides it.
    expected = 0.25 * sum(w[i] * _kl_by_hand(s[i], t[i], 10.0).sum() / 17 * 100 for i in range(5)) / 4
    torch.testing.assert_close(main_ld_loss(s, t, w, 10.0, 0.25), expected, rtol=1e-5, atol=1e-7)
    # official mode grows with the batch: twice the positives, twice the loss
    s2, t2, w2 = torch.cat([s, s]), torch.cat([t, t]), torch.cat([w, w])
    torch.testing.assert_close(main_ld_loss(s2, t2, w2), 2 * main_ld_loss(s, t, w), rtol=1e-5, atol=1e-7)
    vlr = vlr_ld_loss(s, t, w, 10.0, 0.25, 16.0)
    torch.testing.assert_close(vlr, expected * 4 / 16, rtol=1e-5, atol=1e-7)
    assert batch_scale("official", 8, 3) == 1.0
    assert batch_scale("invariant", 6, 3) == 0.5


def test_main_kd_divides_each_level_by_its_positives() -> None:
    g = torch.Generator().manual_seed(4)
    s, t = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    level = torch.tensor([0, 0, 0, 2, 2, 1])
    per = _kl_by_hand(s, t, 2.0) / 5 * 4
    expected = 10 * (per[:3].sum() / 3 + per[5] / 1 + per[3:5].sum() / 2)
    torch.testing.assert_close(main_kd_loss(s, t, level, 5, 2.0, 10.0), expected, rtol=1e-5, atol=1e-6)
