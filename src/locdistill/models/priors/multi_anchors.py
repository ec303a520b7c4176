"""Anchors with several shapes per location (RetinaNet's 9), as mmdetection's ``AnchorGenerator``.

For a level of stride ``s`` the base anchors are centred at the origin with, for ratio ``r = h / w`` and
scale ``k = octave_base_scale * 2 ** (j / scales_per_octave)``, width ``s * k / sqrt(r)`` and height
``s * k * sqrt(r)``. They come ratio-major, scale-minor (index ``a = ratio_idx * n_scales + scale_idx``;
mmdetection's ``scale_major=True``). Location ``(row y, col x)`` shifts them by ``(x*s, y*s)``: the
centre is the cell's top-left corner (``center_offset=0``), not its centre. Anchors of a level are
ordered location-major (row-major, x fastest) with the ``A`` anchors of a location consecutive, which is
``tensor.permute(0, 2, 3, 1).reshape(-1, K)`` of a head output with ``A*K`` anchor-major channels.

With one ratio ``[1]`` and one scale this is exactly :func:`locdistill.models.priors.anchors.level_anchors`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from locdistill.models.priors.anchors import AnchorGrid, ValidAnchors


def base_anchors(
    stride: int,
    octave_base_scale: float = 4.0,
    scales_per_octave: int = 3,
    ratios: tuple[float, ...] | list[float] = (0.5, 1.0, 2.0),
    device: torch.device | None = None,
) -> Tensor:
    """The ``A = len(ratios) * scales_per_octave`` anchors of one location at the origin.

    Returns:
        ``[A, 4]`` float32 xyxy pixels, ratio-major then scale.
    """
    scales = torch.tensor(
        [octave_base_scale * 2 ** (j / scales_per_octave) for j in range(scales_per_octave)],
        dtype=torch.float32,
        device=device,
    )
    ratio_t = torch.tensor(list(ratios), dtype=torch.float32, device=device)
    h_ratios = torch.sqrt(ratio_t)
    w_ratios = 1 / h_ratios
    ws = (stride * w_ratios[:, None] * scales[None, :]).reshape(-1)
    hs = (stride * h_ratios[:, None] * scales[None, :]).reshape(-1)
    return torch.stack([-0.5 * ws, -0.5 * hs, 0.5 * ws, 0.5 * hs], dim=-1)


def grid_anchors(featmap_size: tuple[int, int], stride: int, base: Tensor) -> Tensor:
    """All anchors of one level: ``base`` ``[A, 4]`` shifted to every location.

    Returns:
        ``[H*W*A, 4]``, index ``(y*W + x)*A + a``.
    """
    h, w = featmap_size
    xs = torch.arange(w, device=base.device, dtype=torch.float32) * stride
    ys = torch.arange(h, device=base.device, dtype=torch.float32) * stride
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    xx, yy = xx.reshape(-1), yy.reshape(-1)
    shifts = torch.stack([xx, yy, xx, yy], dim=-1)
    return (shifts[:, None, :] + base[None, :, :]).reshape(-1, 4)


def multi_level_grid_anchors(
    featmap_sizes: list[tuple[int, int]],
    strides: list[int],
    octave_base_scale: float = 4.0,
    scales_per_octave: int = 3,
    ratios: tuple[float, ...] | list[float] = (0.5, 1.0, 2.0),
    device: torch.device | None = None,
) -> list[Tensor]:
    """:func:`grid_anchors` of every level: a list of ``[H_l*W_l*A, 4]``."""
    return [
        grid_anchors(size, s, base_anchors(s, octave_base_scale, scales_per_octave, ratios, device))
        for size, s in zip(featmap_sizes, strides)
    ]


def multi_level_valid_flags(
    featmap_sizes: list[tuple[int, int]],
    strides: list[int],
    pad_shape: tuple[int, int],
    num_base_anchors: int,
    device: torch.device | None = None,
) -> Tensor:
    """Which anchors lie in one image's own padded area: a level's valid locations are the first
    ``min(ceil(pad_h / s), H)`` rows and ``min(ceil(pad_w / s), W)`` columns; every anchor of a valid
    location is valid.

    Returns:
        ``[sum_l H_l*W_l*A]`` bool, levels concatenated.
    """
    flags = []
    pad_h, pad_w = pad_shape
    for (h, w), s in zip(featmap_sizes, strides):
        valid_y = torch.arange(h, device=device) < min(int(math.ceil(pad_h / s)), h)
        valid_x = torch.arange(w, device=device) < min(int(math.ceil(pad_w / s)), w)
        loc = (valid_y[:, None] & valid_x[None, :]).reshape(-1)
        flags.append(loc[:, None].expand(-1, num_base_anchors).reshape(-1))
    return torch.cat(flags)


class MultiAnchorGrid(AnchorGrid):
    """An :class:`~locdistill.models.priors.anchors.AnchorGrid` with ``A`` anchors per location
    (:mod:`locdistill.models.priors.multi_anchors` order)."""

    def __init__(
        self,
        featmap_sizes: list[tuple[int, int]],
        strides: list[int],
        octave_base_scale: float = 4.0,
        scales_per_octave: int = 3,
        ratios: tuple[float, ...] | list[float] = (0.5, 1.0, 2.0),
        device: torch.device | None = None,
    ) -> None:
        per_level = multi_level_grid_anchors(
            [(int(h), int(w)) for h, w in featmap_sizes],
            strides,
            octave_base_scale,
            scales_per_octave,
            ratios,
            device,
        )
        self.num_base_anchors = len(ratios) * scales_per_octave
        super().__init__(featmap_sizes, strides, octave_base_scale, device, per_level=per_level)

    def valid(self, pad_shape: tuple[int, int]) -> ValidAnchors:
        key = (int(pad_shape[0]), int(pad_shape[1]))
        found = self._valid.get(key)
        if found is None:
            if len(self._valid) >= self.max_pad_shapes:
                self._valid.clear()
            flags = multi_level_valid_flags(
                self.featmap_sizes, self.strides, key, self.num_base_anchors, self.anchors.device
            )
            index = flags.nonzero().squeeze(1)
            counts = [int(f.sum()) for f in flags.split(self.num_level_anchors)]
            found = self._valid[key] = ValidAnchors(flags, index, self.anchors[index], counts)
        return found
