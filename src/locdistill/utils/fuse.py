"""Fold BatchNorm into the preceding convolution for inference (``locdistill benchmark --fuse-conv-bn``)."""

from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

# (conv, bn) attribute-name pairs of torchvision/mmdetection ResNets, ResNeXt and Res2Net blocks.
_PAIRS = [("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")]


def _fusable(conv: nn.Module | None, bn: nn.Module | None) -> bool:
    # Only plain BatchNorm2d: subclasses (timm's BatchNormAct2d) also apply an activation.
    return type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d


def fuse_conv_bn(model: nn.Module) -> int:
    """Fuse every ``conv -> BatchNorm2d`` pair found by name (``convN``/``bnN``, ``convs.i``/``bns.i``,
    ``Sequential(conv, bn, ...)``) in place; the model must be in eval mode. Returns the number fused."""
    if model.training:
        raise ValueError("fuse_conv_bn needs a model in eval mode")
    fused = 0
    for module in list(model.modules()):
        for conv_name, bn_name in _PAIRS:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if _fusable(conv, bn):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))  # type: ignore[arg-type,type-var]
                setattr(module, bn_name, nn.Identity())
                fused += 1
        convs, bns = getattr(module, "convs", None), getattr(module, "bns", None)
        if isinstance(convs, nn.ModuleList) and isinstance(bns, nn.ModuleList):
            for i, (c, b) in enumerate(zip(convs, bns)):
                if _fusable(c, b):
                    convs[i] = fuse_conv_bn_eval(c, b)  # type: ignore[arg-type,type-var]
                    bns[i] = nn.Identity()
                    fused += 1
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                if _fusable(module[i], module[i + 1]):
                    module[i] = fuse_conv_bn_eval(module[i], module[i + 1])  # type: ignore[arg-type,type-var]
                    module[i + 1] = nn.Identity()
                    fused += 1
    return fused
