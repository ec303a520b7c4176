"""GFLHead.forward_tower / forward_from split the head at any tower depth without changing its outputs."""

from __future__ import annotations

import pytest
import torch

from locdistill.models.heads.gfl import GFLHead


def _feats(seed: int = 0, channels: int = 16) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, channels, s, s + 1, generator=g) for s in (8, 4, 2)]


@pytest.mark.parametrize("dgqp", [False, True], ids=["v1", "v2"])
def test_split_at_every_depth_equals_forward(dgqp: bool) -> None:
    torch.manual_seed(0)
    head = GFLHead(4, 16, 24, stacked_convs=3, num_levels=3, reg_max=7, norm_groups=4, dgqp=dgqp)
    for p in head.parameters():  # away from the init (zero biases, tiny weights) so that ReLUs matter
        torch.nn.init.normal_(p, 0, 0.3)
    feats = _feats()
    full = head(feats)
    for depth, relu_last in [(d, r) for d in range(head.stacked_convs + 1) for r in (True, False)]:
        tower = head.forward_tower(feats, depth, relu_last)
        assert tower.depth == depth
        width = 16 if depth == 0 else 24
        assert [tuple(c.shape) for c in tower.cls_feats] == [
            (2, width, f.shape[2], f.shape[3]) for f in feats
        ]
        out = head.forward_from(tower)
        for a, b in zip(full.cls_scores + full.bbox_preds, out.cls_scores + out.bbox_preds):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_tower_features_are_taken_after_the_relu_or_before_it_on_request() -> None:
    torch.manual_seed(1)
    head = GFLHead(2, 8, 8, stacked_convs=2, num_levels=1, reg_max=3, norm_groups=2)
    x = [torch.randn(1, 8, 5, 5)]
    conv0, conv1 = head.cls_convs
    pre = conv1.gn(conv1.conv(torch.relu(conv0.gn(conv0.conv(x[0])))))
    torch.testing.assert_close(head.forward_tower(x, 2).cls_feats[0], torch.relu(pre))  # published
    before = head.forward_tower(x, 2, relu_last=False).cls_feats[0]
    torch.testing.assert_close(before, pre)
    assert bool((before < 0).any())  # no ReLU applied
    torch.testing.assert_close(head.forward_tower(x, 0).reg_feats[0], x[0])


def test_depth_outside_the_tower_is_an_error() -> None:
    head = GFLHead(2, 8, 8, stacked_convs=2, num_levels=1, reg_max=3, norm_groups=2)
    with pytest.raises(ValueError, match=r"tower depth 3 is outside 0\.\.2"):
        head.forward_tower([torch.zeros(1, 8, 4, 4)], 3)
