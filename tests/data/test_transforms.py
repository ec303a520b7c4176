"""The mmdetection-style pipeline: keep-ratio resize, multi-scale, flip, normalisation."""

from __future__ import annotations

import logging

import pytest
import torch

from locdistill.data import (
    RandomHorizontalFlip,
    Resize,
    hflip,
    rescale_size,
)
from locdistill.data.transforms import Normalize
from tests.data.helpers import MEAN, STD, make_sample


@pytest.mark.parametrize("h,w", [(480, 640), (427, 640), (640, 218), (333, 500), (1000, 1000)])
def test_resize_keeps_ratio_and_scale_factor_maps_boxes(h: int, w: int) -> None:
    image, targets, meta = make_sample(
        h, w, [[0.5, 1.25, 100.75, 200.5], [10, 20, w - 0.5, h - 1], [3.3, 4.4, 5.5, 6.6]]
    )
    out, t, m = Resize(scale=(1333, 800))(image, targets, meta)
    factor = min(1333 / max(h, w), 800 / min(h, w))
    assert (m.img_shape, tuple(out.shape[-2:])) == (((int(h * factor + 0.5), int(w * factor + 0.5)),) * 2)
    assert max(m.img_shape) <= 1333 and min(m.img_shape) <= 800
    assert m.scale_factor == (m.img_shape[1] / w, m.img_shape[0] / h)
    assert m.ori_shape == (h, w) and out.dtype == torch.uint8
    sf = torch.tensor([m.scale_factor[0], m.scale_factor[1]] * 2, dtype=torch.float32)
    assert torch.equal(t.boxes, targets.boxes * sf)
    assert torch.equal(t.ignore_boxes, targets.ignore_boxes * sf)
    assert torch.equal(t.labels, targets.labels)


def test_rescale_size_matches_mmcv_rule() -> None:
    assert rescale_size(480, 640, (1333, 800)) == (800, 1067)
    assert rescale_size(427, 640, (1333, 800)) == (800, 1199)
    assert rescale_size(200, 1000, (1333, 800)) == (267, 1333)
    assert rescale_size(320, 320, (320, 320)) == (320, 320)


def test_resize_multiscale_range_and_clipping(caplog: pytest.LogCaptureFixture) -> None:
    resize = Resize(scale_range=[[1333, 480], [1333, 800]])
    torch.manual_seed(0)
    shorts = set()
    for _ in range(30):
        image, targets, meta = make_sample(480, 640, [[10, 10, 50, 50]])
        _, _, m = resize(image, targets, meta)
        assert 480 <= min(m.img_shape) <= 800
        shorts.add(min(m.img_shape))
    assert len(shorts) > 10
    # a box beyond the border is clipped; one entirely outside becomes degenerate and is dropped
    image, targets, meta = make_sample(100, 100, [[50, 50, 150, 90], [120, 10, 130, 20], [0, 0, 10, 10]])
    with caplog.at_level(logging.WARNING):
        resize2 = Resize(scale=(200, 200))
        _, t, _ = resize2(image, targets, meta)
    assert t.boxes.tolist() == [[100, 100, 200, 180], [0, 0, 20, 20]] and t.labels.tolist() == [0, 2]
    assert resize2.num_dropped == 1 and "x.jpg" in caplog.text and "#1" in caplog.text


def test_flip_twice_is_identity_and_flip_rule() -> None:
    image, targets, meta = make_sample(37, 53, [[0.5, 1.5, 10.25, 20.75], [40, 3, 53, 30]])
    fi, ft, fm = hflip(image, targets, meta)
    assert fm.flipped and torch.equal(fi, image.flip(-1))
    assert ft.boxes.tolist() == [[53 - 10.25, 1.5, 53 - 0.5, 20.75], [0, 3, 13, 30]]
    bi, bt, bm = hflip(fi, ft, fm)
    assert not bm.flipped and torch.equal(bi, image)
    torch.testing.assert_close(bt.boxes, targets.boxes, rtol=0, atol=1e-5)
    torch.testing.assert_close(bt.ignore_boxes, targets.ignore_boxes, rtol=0, atol=1e-5)
    always = RandomHorizontalFlip(1.0)(image, targets, meta)
    never = RandomHorizontalFlip(0.0)(image, targets, meta)
    assert always[2].flipped and not never[2].flipped


def test_normalize_matches_mmdet_formula() -> None:
    image, targets, meta = make_sample(8, 8, [])
    out, _, _ = Normalize(MEAN, STD)(image, targets, meta)
    mean255 = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
    std255 = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
    torch.testing.assert_close(out, (image.float() - mean255) / std255, rtol=1e-6, atol=1e-6)


def test_normalize_is_bit_exact_in_any_layout() -> None:
    """The one-buffer Normalize gives exactly ``(x.float() - mean) / std``, from channels-last memory too
    (the layout the decoder and the resize hand on)."""
    image, targets, meta = make_sample(37, 53, [])
    norm = Normalize(MEAN, STD)
    expected = (image.float() - norm._mean255) / norm._std255
    channels_last = image.permute(1, 2, 0).contiguous().permute(2, 0, 1)
    for x in (image, channels_last, channels_last.flip(-1).flip(-1)):
        out = norm(x, targets, meta)[0]
        assert out.dtype == torch.float32 and out.is_contiguous()
        assert torch.equal(out, expected)


def test_resize_of_channels_last_memory_gives_the_same_pixels() -> None:
    image, targets, meta = make_sample(48, 64, [[1, 2, 30, 40]])
    channels_last = image.permute(1, 2, 0).contiguous().permute(2, 0, 1)
    for resize in (Resize(scale=(1333, 800)), Resize(scale=(40, 30))):
        a = resize(image, targets, meta)[0]
        b = resize(channels_last, targets, meta)[0]
        assert a.dtype == b.dtype == torch.uint8 and torch.equal(a, b)
