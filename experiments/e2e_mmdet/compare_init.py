"""Compare the freshly initialised demo-baseline GFL of mmdetection 3.3.0 and of locdistill, tensor by tensor.

    /work/mmdet_venv/bin/python experiments/e2e_mmdet/compare_init.py record /tmp/mmdet_init.json
    python experiments/e2e_mmdet/compare_init.py compare /tmp/mmdet_init.json

``record`` builds mmdetection's model from ``mmdet_gfl.demo_config`` and calls ``init_weights()`` (what
the Runner does before training from scratch), then stores each state-dict tensor's mean, std and
shape. ``compare`` builds ours from ``configs/demo/demo_base.yaml`` and prints every tensor whose shape,
mean or std differs (keys are the same but for ``head.`` = ``bbox_head.``), then the count. The draws
differ, so the statistics agree only up to sampling noise (tolerances below).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def stats(state: dict) -> dict[str, list]:
    return {
        k: [float(v.float().mean()), float(v.float().std()) if v.numel() > 1 else 0.0, list(v.shape)]
        for k, v in state.items()
    }


def record(out: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from mmdet_gfl import demo_config, install_mmcv_ext

    install_mmcv_ext()
    import torch
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    register_all_modules()
    torch.manual_seed(0)
    model = MODELS.build(Config(demo_config("unused", 0, "unused")).model)
    model.init_weights()
    out.write_text(json.dumps(stats(model.state_dict())))
    print(f"{len(model.state_dict())} tensors -> {out}")


def compare(ref_path: Path) -> None:
    import torch

    from locdistill.config import load_config
    from locdistill.engine.build import build_module

    ref = json.loads(ref_path.read_text())
    torch.manual_seed(0)
    model, _ = build_module(load_config("demo/demo_base", []), 1, torch.device("cpu"))
    ours = stats(model.state_dict())
    bad = 0
    for key, (mean, std, shape) in ours.items():
        r = ref.get("bbox_" + key if key.startswith("head.") else key)
        if r is None:
            print(f"{key}: not in mmdetection's model")
            bad += 1
            continue
        mean_off = abs(mean - r[0]) > 0.05 * max(abs(r[0]), 0.02) + 1e-6 and len(shape) <= 1
        std_off = max(std, r[1]) > 0 and abs(std - r[1]) > 0.15 * max(std, r[1])
        if shape != r[2] or mean_off or std_off:
            print(
                f"{key}: ours mean {mean:+.4f} std {std:.4f} {shape}, "
                f"mmdetection {r[0]:+.4f} {r[1]:.4f} {r[2]}"
            )
            bad += 1
    missing = [k for k in ref if k.removeprefix("bbox_") not in ours and k != "bbox_head.integral.project"]
    print(f"{len(ours)} tensors, {bad} differ; only in mmdetection: {missing or 'none'}")


if __name__ == "__main__":
    {"record": record, "compare": compare}[sys.argv[1]](Path(sys.argv[2]))
