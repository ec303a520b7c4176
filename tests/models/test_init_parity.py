"""A freshly built model is initialised as mmdetection 3.3.0 initialises the same model from scratch.

``tests/refs/mmdet_init/init_stats.json`` holds, per parameter of freshly built mmdetection detectors
(``init_weights()`` then ``train()``; ``benchmarks/record_mmdet_init.py``, see the README there), the
shape, ``requires_grad``, mean, standard deviation, min, max and kurtosis, and each BatchNorm's
training flag. Our model is built from the matching config (``pretrained: false``) and compared name by
name (mmdetection names mapped by :func:`convert_detector_state_dict`):

* exactly: the set of names, shapes, ``requires_grad`` (frozen stages), BatchNorm train/eval modes
  (frozen stages, ``norm_eval``), and every constant (BatchNorm/GroupNorm 1 and 0, the zero-initialised
  last BatchNorm of residual blocks, zero biases, the class prior ``-log(99)``, ``Scale`` 1);
* within sampling error: random weights are independent draws, so for ``n`` values with standard
  deviation ``s`` and kurtosis ``k`` the sample mean has standard error ``s / sqrt(n)``, the sample
  standard deviation ``s * sqrt((k - 1) / (4 n))``, and the sample kurtosis at most ``sqrt(24 / n)``
  (normal law; lighter tails give less); the two models' estimates must agree within 6 standard errors
  of their difference (a chance failure has odds of about 1e-9 per check). The kurtosis tells a normal
  law (3) from a uniform one (1.8); for a uniform law the largest ``|x|`` must also agree within
  ``10 / n`` relative (the chance that ``n`` draws all stay ``10 / n`` below the bound is ``e**-10``),
  which tells Xavier's bound from Kaiming's.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from locdistill.config import load_config
from locdistill.models.detectors.gfl import build_gfl
from locdistill.weights.mmdet_keys import convert_detector_state_dict

ROOT = Path(__file__).resolve().parents[2]
REFS = ROOT / "tests" / "refs" / "mmdet_init" / "init_stats.json"
CONFIGS = ROOT / "src" / "locdistill" / "configs"

DEMO_R50_DCNV2 = [
    "model.backbone.name=resnet50",
    "model.backbone.dcn=[false,true,true,true]",
    "model.backbone.dcn_type=dcnv2",
    "model.backbone.frozen_stages=1",
    "model.backbone.norm_eval=true",
]
OURS: dict[str, tuple[str, list[str]]] = {
    "gfl_r50": ("gfl/gfl_r50_fpn_coco_1x.yaml", []),
    "ld_r18": ("ld/ld_gflv1_r101_r18_fpn_coco_1x.yaml", []),
    "gfl_r101_dcn": ("gfl/gfl_r101_dcn_fpn_coco_2x.yaml", []),
    "gfl_x101_32x4d_dcn": ("gfl/gfl_x101_32x4d_dcn_fpn_coco_1x.yaml", []),
    "res2net101_dcn": ("gfl/gflv2_r2_101_dcn_fpn_coco_2x.yaml", ["model.head.dgqp=false"]),
    "demo": ("demo/demo_base.yaml", []),
    "r50_w16_dcnv2": ("demo/demo_base.yaml", DEMO_R50_DCNV2),
}
"""Recorded case -> our config and overrides (mmdetection has no GFL v2 head: DGQP is checked below)."""

SIGMAS = 6.0


def _refs() -> dict[str, Any]:
    if not REFS.is_file():
        pytest.skip(f"mmdetection init references not found at {REFS}")
    return json.loads(REFS.read_text())


def _cases() -> list[str]:
    return sorted(json.loads(REFS.read_text())["cases"]) if REFS.is_file() else []


def _build(config: str, overrides: list[str], seed: int = 0) -> nn.Module:
    cfg = load_config(CONFIGS / config, [*overrides, "model.backbone.pretrained=false"])
    torch.manual_seed(seed)
    model = build_gfl(cfg.model)
    model.train()
    return model


def _moments(p: torch.Tensor) -> dict[str, float]:
    """Mean, standard deviation, kurtosis and largest ``|x|`` (float32 sums: ~1e-6 relative, far
    inside the tolerances, and several times faster than float64 on the 45M weights of R-101)."""
    x = p.detach().flatten()
    mean = x.mean()
    c2 = (x - mean).square_()
    m2 = c2.mean()
    m4 = c2.square_().mean()
    return {
        "mean": float(mean),
        "std": float(m2.sqrt()),
        "kurtosis": float(m4 / m2.square()) if m2 > 0 else math.nan,
        "absmax": float(x.abs().max()),
    }


def compare_parameter(name: str, p: torch.Tensor, ref: dict[str, Any]) -> list[str]:
    """What differs between our parameter ``p`` and mmdetection's recorded statistics ``ref``."""
    problems = []
    if list(p.shape) != ref["shape"]:
        return [f"{name}: shape {list(p.shape)}, mmdetection {ref['shape']}"]
    if bool(p.requires_grad) != ref["requires_grad"]:
        problems.append(f"{name}: requires_grad {p.requires_grad}, mmdetection {ref['requires_grad']}")
    if ref["std"] == 0:
        lo, hi = float(p.detach().min()), float(p.detach().max())
        if not lo == hi == ref["mean"]:
            problems.append(f"{name}: values in [{lo!r}, {hi!r}], mmdetection all {ref['mean']!r}")
        return problems
    ours, n = _moments(p), p.numel()
    if ours["std"] == 0:
        return [*problems, f"{name}: constant {ours['mean']!r}, mmdetection random (std {ref['std']:.4g})"]
    se_mean = math.sqrt((ours["std"] ** 2 + ref["std"] ** 2) / n)
    if abs(ours["mean"] - ref["mean"]) > SIGMAS * se_mean:
        problems.append(f"{name}: mean {ours['mean']:.4g}, mmdetection {ref['mean']:.4g} (se {se_mean:.2g})")
    se_std = math.sqrt(
        sum(
            s**2 * max(k - 1, 0.0) / (4 * n)
            for s, k in ((ours["std"], ours["kurtosis"]), (ref["std"], ref["kurtosis"]))
        )
    )
    if abs(ours["std"] - ref["std"]) > SIGMAS * se_std:
        problems.append(f"{name}: std {ours['std']:.4g}, mmdetection {ref['std']:.4g} (se {se_std:.2g})")
    se_kurt = math.sqrt(2 * 24 / n)
    if abs(ours["kurtosis"] - ref["kurtosis"]) > SIGMAS * se_kurt:
        problems.append(
            f"{name}: kurtosis {ours['kurtosis']:.3f}, mmdetection {ref['kurtosis']:.3f} (se {se_kurt:.2g}; "
            "3 normal, 1.8 uniform)"
        )
    if ref["kurtosis"] < 2.2:  # a uniform law: the bound
        ref_absmax = max(abs(ref["min"]), abs(ref["max"]))
        if abs(ours["absmax"] / ref_absmax - 1) > 10 / n:
            problems.append(f"{name}: uniform bound {ours['absmax']:.6g}, mmdetection {ref_absmax:.6g}")
    return problems


def _mapped(ref_params: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, stats in ref_params.items():
        converted, skipped = convert_detector_state_dict({key: torch.empty(0)})
        assert not skipped, f"mmdetection parameter {key} has no place in our model"
        out[next(iter(converted))] = stats
    return out


def test_refs_cover_the_cases() -> None:
    refs = _refs()
    assert refs["versions"]["mmdet"] == "3.3.0"
    assert set(refs["cases"]) == set(OURS)


@pytest.mark.parametrize("case", _cases())
def test_fresh_model_is_initialised_as_mmdetection(case: str) -> None:
    ref = _refs()["cases"][case]
    config, overrides = OURS[case]
    model = _build(config, overrides)
    expected = _mapped(ref["params"])
    ours = dict(model.named_parameters())
    only_ours, only_mmdet = sorted(set(ours) - set(expected)), sorted(set(expected) - set(ours))
    assert not only_ours and not only_mmdet, f"only ours: {only_ours[:5]}, only mmdetection: {only_mmdet[:5]}"
    problems = [msg for name, p in ours.items() for msg in compare_parameter(name, p, expected[name])]
    assert not problems, f"{len(problems)} parameters differ:\n" + "\n".join(problems[:20])

    norms = {n: m for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    assert set(norms) == set(ref["bn_training"])
    modes = [f"{n}: training={m.training}" for n, m in norms.items() if m.training != ref["bn_training"][n]]
    assert not modes, f"BatchNorm modes differ from mmdetection's: {modes[:10]}"


def test_gflv2_quality_branch_follows_the_authors() -> None:
    """GFocalV2's DGQP is not in mmdetection; the authors' ``init_weights`` draws its two 1x1 convs
    from N(0, 0.01) with zero bias (mmcv ``normal_init(m, std=0.01)``)."""
    model = _build("gfl/gflv2_r50_fpn_coco_2x.yaml", [])
    convs = [m for m in model.head.dgqp.modules() if isinstance(m, nn.Conv2d)]
    assert [tuple(c.weight.shape) for c in convs] == [(64, 20, 1, 1), (1, 64, 1, 1)]
    for conv in convs:
        assert conv.bias is not None and torch.all(conv.bias == 0)
    w = convs[0].weight.detach().double().flatten()  # 1280 draws; the second conv has only 64
    assert abs(w.mean().item()) < SIGMAS * 0.01 / math.sqrt(w.numel())
    assert abs(w.std().item() / 0.01 - 1) < SIGMAS * math.sqrt(2 / (4 * w.numel()))


def test_imagenet_weights_zero_the_offsets_as_mmdetection() -> None:
    """From scratch mmdetection's Kaiming init reaches DCNv1's offset convs; with ImageNet weights
    (which have none) they stay at mmcv's zero init, so a pretrained DCN starts as a plain conv."""
    from locdistill.models.backbones.resnet import ResNet
    from locdistill.models.backbones.weights import load_backbone_weights

    torch.manual_seed(0)
    plain = ResNet(depth=50, base_width=8)
    dcn = ResNet(depth=50, base_width=8, dcn=(False, True, True, True))
    offset = dcn.layer2[0].conv2.conv_offset
    assert offset.weight.std() > 0  # from scratch: Kaiming, as mmdetection
    missing, _ = load_backbone_weights(dcn, plain.state_dict(), "a plain ResNet-50")
    assert "layer2.0.conv2.conv_offset.weight" in missing
    assert torch.all(offset.weight == 0) and torch.all(offset.bias == 0)
    x = torch.randn(1, 3, 64, 64)
    plain.eval(), dcn.eval()
    torch.testing.assert_close(dcn(x)[2], plain(x)[2], rtol=1e-4, atol=1e-5)
