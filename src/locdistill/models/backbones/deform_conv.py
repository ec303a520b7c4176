"""Deformable 3x3 convolutions with mmcv's parameter layout, computed by ``torchvision.ops.deform_conv2d``.

Two variants, both "packs" that predict their own offsets with a plain conv ``conv_offset``
(zero-initialised at construction, so a fresh layer starts as a plain convolution; a backbone built
from scratch then applies mmdetection's init, see ``StagedBackbone._init_weights``):

* :class:`DeformConv2dPack` is mmcv's ``DeformConv2dPack``, registered in mmcv as ``type='DCN'``
  (DCNv1, no mask). This is what mmdetection's GFL / LD / GFocalV2 DCN configs use
  (``dcn=dict(type='DCN', deform_groups=1, fallback_on_stride=False)``), so the published
  ``gfl_r101_fpn_dconv_c3-c5`` checkpoints hold ``conv2.conv_offset.weight`` of shape
  ``[18, C, 3, 3]``.
* :class:`ModulatedDeformConv2dPack` is mmcv's ``ModulatedDeformConv2dPack``, ``type='DCNv2'``
  (modulated): ``conv_offset`` has ``3 * 3 * 3 = 27`` outputs per deformable group; mmcv splits them
  as ``o1, o2, m = chunk(3, dim=1)``, ``offset = cat(o1, o2)`` (that is simply the first 18 channels)
  and ``mask = sigmoid(m)``. With the zero init the mask is sigmoid(0) = 0.5 everywhere, so a fresh
  layer computes half of the plain convolution.

Offset channel convention (checked in the sources, and by a loop reference in the tests): mmcv's CUDA
kernel ``modulated_deformable_im2col_gpu_kernel`` (and the DCNv1 kernel) reads, for kernel tap
``k = i * kernel_w + j`` of deformable group ``g``, the row offset from channel ``g * 2K + 2k`` and the
column offset from channel ``g * 2K + 2k + 1`` (``K = kernel_h * kernel_w``; mmcv documents it as
``[y0, x0, y1, x1, ...]``), and the mask from channel ``g * K + k``. torchvision's
``deform_conv2d`` CPU/CUDA kernels (``deformable_im2col_kernel``) use exactly the same indices
(``offset_idx = 2 * (i * weight_w + j)`` is the row, ``+ 1`` the column, ``mask_idx = i * weight_w + j``),
the same sampling point ``(y * stride - pad + i * dilation + dy, x * stride - pad + j * dilation + dx)``
and the same bilinear rule (zero outside, a point counts only if ``-1 < h < H`` and ``-1 < w < W``).
So mmcv tensors feed torchvision unchanged: no channel permutation is needed.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.ops import deform_conv2d


class _DeformConvBase(nn.Module):
    """Shared parameters: ``weight [out, in / groups, k, k]`` (no bias by default, as in ResNets where
    a BatchNorm follows) and ``conv_offset``, a conv with the same geometry predicting
    ``offset_channels_per_group * deform_groups`` maps."""

    offset_channels_per_group: int = 2

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        padding: int = 1,
        dilation: int = 1,
        groups: int = 1,
        deform_groups: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"channels {in_channels}->{out_channels} not divisible by groups={groups}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = (kernel_size, kernel_size)
        self.stride = (stride, stride)
        self.padding = (padding, padding)
        self.dilation = (dilation, dilation)
        self.groups = groups
        self.deform_groups = deform_groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.conv_offset = nn.Conv2d(
            in_channels,
            deform_groups * self.offset_channels_per_group * kernel_size * kernel_size,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            bias=True,
        )
        self.reset_parameters()

    reinit_after_backbone: bool = False
    """Whether a backbone's from-scratch init ends by re-running :meth:`reset_parameters` (see
    :meth:`~locdistill.models.backbones.staged.StagedBackbone._init_weights`)."""

    def reset_parameters(self) -> None:
        """mmcv 2.x's init at construction: the main weight as :meth:`init_weight`, bias and
        ``conv_offset`` zero (a fresh layer samples the regular grid)."""
        self.init_weight()
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        self.init_offset()

    def init_weight(self) -> None:
        """The main weight's init (the subclass's mmcv rule)."""
        raise NotImplementedError

    def init_offset(self) -> None:
        """Zero ``conv_offset`` (mmcv's init): the layer then samples the regular grid."""
        nn.init.zeros_(self.conv_offset.weight)
        if self.conv_offset.bias is not None:
            nn.init.zeros_(self.conv_offset.bias)

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # A DCNv1 checkpoint loaded into DCNv2 layers (or the reverse) would fail with a bare size
        # mismatch; say what is going on. (Old ``conv2_offset`` key names are renamed in
        # ``weights.unwrap_state_dict``: PyTorch hands each child only the keys under its own prefix.)
        expected = self.conv_offset.weight.shape[0]
        found = state_dict.get(f"{prefix}conv_offset.weight")
        if isinstance(found, Tensor) and found.ndim == 4 and found.shape[0] != expected:
            kinds = {2: "DCNv1 (mmcv type='DCN')", 3: "DCNv2 (mmcv type='DCNv2', modulated)"}
            per_group = found.shape[0] // (self.deform_groups * self.kernel_size[0] * self.kernel_size[1])
            error_msgs.append(
                f"{prefix}conv_offset.weight has {found.shape[0]} output channels in the checkpoint, "
                f"a {kinds.get(per_group, 'different deformable conv')} layer, but this model expects "
                f"{expected} ({type(self).__name__}); build ResNet/Res2Net with the matching "
                "dcn_type ('dcn' or 'dcnv2')"
            )
            state_dict.pop(f"{prefix}conv_offset.weight")
            state_dict.pop(f"{prefix}conv_offset.bias", None)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
            f"deform_groups={self.deform_groups}, bias={self.bias is not None}"
        )


class DeformConv2dPack(_DeformConvBase):
    """DCNv1 (mmcv ``type='DCN'``): ``conv_offset`` predicts ``2 * k * k`` offsets per deformable group
    (row, column interleaved per tap, see the module docstring), in input pixels.

    ``forward(x: [B, C_in, H, W]) -> [B, C_out, H', W']`` with the plain conv's output size.
    """

    offset_channels_per_group = 2

    def init_weight(self) -> None:
        """mmcv's ``DeformConv2d``: Kaiming uniform, fan_in, ReLU gain: U(-sqrt(6 / fan_in), +...)."""
        nn.init.kaiming_uniform_(self.weight, nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        offset = self.conv_offset(x)
        return deform_conv2d(
            x,
            offset,
            self.weight,
            self.bias,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
        )


class ModulatedDeformConv2dPack(_DeformConvBase):
    """DCNv2 (mmcv ``type='DCNv2'``): ``conv_offset`` predicts ``3 * k * k`` maps per deformable group:
    the first ``2 * k * k`` are the offsets, the last ``k * k`` the mask logits (sigmoid).

    ``forward(x: [B, C_in, H, W]) -> [B, C_out, H', W']`` with the plain conv's output size.
    """

    offset_channels_per_group = 3
    reinit_after_backbone = True  # mmcv names this init ``init_weights``: mmengine runs it again

    def init_weight(self) -> None:
        """mmcv's ``ModulatedDeformConv2d``: U(-1/sqrt(n), 1/sqrt(n)) with ``n = in_channels * k * k``
        (all input channels, also with groups)."""
        bound = 1.0 / math.sqrt(self.in_channels * self.kernel_size[0] * self.kernel_size[1])
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv_offset(x)
        o1, o2, mask_logits = torch.chunk(out, 3, dim=1)
        offset = torch.cat((o1, o2), dim=1)
        mask = torch.sigmoid(mask_logits)
        return deform_conv2d(
            x,
            offset,
            self.weight,
            self.bias,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            mask=mask,
        )


DEFORM_CONVS: dict[str, type[_DeformConvBase]] = {
    "dcn": DeformConv2dPack,
    "dcnv2": ModulatedDeformConv2dPack,
}
"""mmcv's ``dcn=dict(type=...)`` names (lower-cased) to our classes."""
