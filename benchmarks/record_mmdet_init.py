"""Record the statistics of freshly initialised mmdetection 3.3.0 GFL detectors, parameter by parameter.

Runs only in a Python environment with mmdet 3.3.0 / mmengine (``/work/mmdet_venv/bin/python``);
writes ``tests/refs/mmdet_init/init_stats.json``, which ``tests/models/test_init_parity.py`` compares
our freshly built models against. Nothing of mmdetection is copied: each model is built from a config
that ships in the mmdet wheel (backbone ``init_cfg=None``, so the from-scratch init applies and
nothing is downloaded), then ``init_weights()`` and ``train()`` run, as mmengine's ``Runner`` does
before training.

Per parameter (mmdetection's name): shape, ``requires_grad``, and in float64 the mean, the standard
deviation (``1/n``), min, max and the kurtosis ``m4 / m2**2`` (3 for a normal, 1.8 for a uniform
law; ``null`` for a constant), to 9 significant digits (constants exactly). Per ``BatchNorm``
module: whether it is in training mode after ``model.train()`` (``norm_eval`` and frozen stages put
them in eval mode).

Cases: the GFL R-50 1x model; the LD R-18 student; GFL R-101-DCN and X-101-32x4d-DCN (DCNv1); a
Res2Net-101-DCN backbone; the demo's tiny model (ResNet-18 at width 16, FPN/head 32 wide); and a
width-16 ResNet-50 with DCNv2.

Usage::

    /work/mmdet_venv/bin/python benchmarks/record_mmdet_init.py [--out tests/refs/mmdet_init]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mmdet_worker import _configs_dir, _install_fake_mmcv_ext

ROOT = Path(__file__).resolve().parents[1]


def demo_model(cfg: Any) -> Any:
    """``configs/demo/demo_base.yaml``'s model in mmdetection terms: ResNet-18 at width 16 (stem and
    ``layer1`` 16 channels), nothing frozen, BN in training mode; FPN and head 32 wide, one stacked
    conv per tower, GroupNorm(8), 5 classes."""
    model = cfg.model
    model.backbone.base_channels = 16
    model.backbone.depth = 18
    model.backbone.frozen_stages = -1
    model.backbone.norm_eval = False
    model.neck.in_channels = [16, 32, 64, 128]
    model.neck.out_channels = 32
    model.bbox_head.update(
        num_classes=5,
        in_channels=32,
        feat_channels=32,
        stacked_convs=1,
        norm_cfg=dict(type="GN", num_groups=8, requires_grad=True),
    )
    return model


def res2net_model(cfg: Any) -> Any:
    """``configs/gfl/gflv2_r2_101_dcn_fpn_coco_2x.yaml``'s backbone (Res2Net-101 26w x 4s, DCN in
    stages 3-4) under GFL v1's neck and head (mmdetection has no GFL v2 head)."""
    model = cfg.model
    model.backbone = dict(
        type="Res2Net",
        depth=101,
        scales=4,
        base_width=26,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type="BN", requires_grad=True),
        norm_eval=True,
        dcn=dict(type="DCN", deform_groups=1, fallback_on_stride=False),
        stage_with_dcn=(False, False, True, True),
        init_cfg=None,
    )
    return model


def dcnv2_model(cfg: Any) -> Any:
    """The demo's neck and head on ResNet-50 at width 16 with DCNv2 (mmcv ``type='DCNv2'``) in stages
    2-4 (our ``dcn_type: dcnv2``), 1 frozen stage, ``norm_eval``."""
    model = demo_model(cfg)
    model.backbone.update(
        depth=50,
        frozen_stages=1,
        norm_eval=True,
        dcn=dict(type="DCNv2", deform_groups=1, fallback_on_stride=False),
        stage_with_dcn=(False, True, True, True),
    )
    model.neck.in_channels = [64, 128, 256, 512]
    return model


CASES: dict[str, dict[str, Any]] = {
    "gfl_r50": {"config": "gfl/gfl_r50_fpn_1x_coco.py"},
    "ld_r18": {"config": "ld/ld_r18-gflv1-r101_fpn_1x_coco.py"},  # the student (the teacher is loaded)
    "gfl_r101_dcn": {"config": "gfl/gfl_r101-dconv-c3-c5_fpn_ms-2x_coco.py"},
    "gfl_x101_32x4d_dcn": {"config": "gfl/gfl_x101-32x4d-dconv-c4-c5_fpn_ms-2x_coco.py"},
    "demo": {"config": "gfl/gfl_r50_fpn_1x_coco.py", "edit": demo_model},
    "res2net101_dcn": {"config": "gfl/gfl_r50_fpn_1x_coco.py", "edit": res2net_model},
    "r50_w16_dcnv2": {"config": "gfl/gfl_r50_fpn_1x_coco.py", "edit": dcnv2_model},
}


def stats(t: Any) -> dict[str, Any]:
    x = t.detach().double().flatten()
    mean = x.mean()
    centred = x - mean
    m2 = centred.square().mean()
    m4 = centred.pow(4).mean()
    constant = float(m2) == 0

    def value(v: Any) -> float:
        """Exact for a constant (the test compares those bit for bit), else 9 significant digits."""
        return float(v) if constant else float(f"{float(v):.9g}")

    return {
        "shape": list(t.shape),
        "numel": x.numel(),
        "requires_grad": bool(t.requires_grad),
        "mean": value(mean),
        "std": value(m2.sqrt()),
        "min": value(x.min()),
        "max": value(x.max()),
        "kurtosis": None if constant else value(m4 / m2.square()),
    }


def record(case: dict[str, Any]) -> dict[str, Any]:
    import torch
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from torch.nn.modules.batchnorm import _BatchNorm

    configs = _configs_dir()
    cfg = Config.fromfile(str(configs / case["config"]))
    cfg.model.backbone.init_cfg = None
    if "teacher_config" in cfg.model:
        teacher = Config.fromfile(str(configs / cfg.model.teacher_config.replace("configs/", "", 1)))
        teacher.model.backbone.init_cfg = None
        cfg.model.teacher_config = teacher
        cfg.model.teacher_ckpt = None
    if "edit" in case:
        cfg.model = case["edit"](cfg)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    return {
        "config": case["config"],
        "model": cfg.model.to_dict() if hasattr(cfg.model, "to_dict") else dict(cfg.model),
        "params": {name: stats(p) for name, p in model.named_parameters()},
        "bn_training": {n: bool(m.training) for n, m in model.named_modules() if isinstance(m, _BatchNorm)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "tests" / "refs" / "mmdet_init"))
    args = parser.parse_args()
    _install_fake_mmcv_ext()
    import mmcv
    import mmdet
    import mmengine
    import torch
    from mmdet.utils import register_all_modules
    from mmengine.logging import MMLogger

    MMLogger.get_instance("mmengine", log_level="WARNING")  # no per-parameter init report
    register_all_modules()
    result: dict[str, Any] = {
        "versions": {
            "mmdet": mmdet.__version__,
            "mmengine": mmengine.__version__,
            "mmcv": mmcv.__version__,
            "torch": str(torch.__version__),
            "python": sys.version.split()[0],
        },
        "cases": {},
    }
    for name, case in CASES.items():
        print(f"recording {name}", file=sys.stderr, flush=True)
        result["cases"][name] = record(case)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "init_stats.json"
    path.write_text(json.dumps(result, sort_keys=True, separators=(",", ":"), default=str) + "\n")
    print(f"wrote {path} ({path.stat().st_size / 1e3:.1f} kB)", file=sys.stderr)


if __name__ == "__main__":
    main()
