"""mmdetection 3.3.0's own ``train_step``, driven one step at a time by ``bench_train_step.py --mmdet``.

Runs in a *separate* Python environment that has mmdet 3.3.0, mmengine and mmcv (``mmcv-lite``, the
build without compiled ops, is enough: a GFL or LD training step calls none of them). mmdet imports
``mmcv.ops`` at import time, which loads the compiled ``mmcv._ext``; mmcv-lite has none, so a stand-in
module is put into ``sys.modules`` first whose every function raises when called (none is called in
training). Nothing of mmdetection is copied here: the models are built from the config files that ship
in the mmdet wheel (``gfl/gfl_r50_fpn_1x_coco.py`` with ResNet-18 as in
``ld/ld_r18-gflv1-r101_fpn_1x_coco.py``, whose LD detector and R101 teacher config are used as they
are), with random initial weights (no pretrained download) and SGD in an ``OptimWrapper``.

Protocol (one JSON object per line on stdin; one JSON reply per line on stdout):

* ``{"cmd": "init", "inputs": PATH, "threads": 2, "lr": 1e-4}`` builds everything;
  ``PATH`` is a ``torch.save`` of ``{"images": [uint8 [3, H, W] BGR], "boxes": [[N, 4]], "labels": [[N]]}``.
* ``{"cmd": "plain", "amp": false}`` / ``{"cmd": "ld", "amp": false}``: one
  ``model.train_step(data, optim_wrapper)`` (preprocessing, forward, losses, backward, SGD step), timed
  here; reply ``{"s": seconds, "loss": total}``.
* ``{"cmd": "teacher", "amp": false}``: the LD teacher's no-grad forward on the preprocessed batch, as
  ``KnowledgeDistillationSingleStageDetector.loss`` runs it; reply ``{"s": seconds}``.
* ``{"cmd": "quit"}``.

With ``"amp": true`` the optimiser wrapper's ``optim_context`` (preprocessing, forward and losses; not
the backward) runs inside mmengine's ``autocast(device_type="cpu", dtype=bfloat16)``, which is what
``AmpOptimWrapper.optim_context`` does on a GPU (``AmpOptimWrapper`` itself refuses to run without an
accelerator; bfloat16 needs no loss scaling). The teacher's forward alone runs inside the same autocast.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import types
from pathlib import Path
from typing import Any


def _install_fake_mmcv_ext() -> None:
    """A stand-in for mmcv's compiled extension: importable, every function raises when called."""
    if "mmcv._ext" in sys.modules:
        return
    module = types.ModuleType("mmcv._ext")

    def missing(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)

        def fn(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(f"mmcv._ext.{name} is not available (mmcv-lite has no compiled ops)")

        return fn

    module.__getattr__ = missing  # type: ignore[method-assign]
    sys.modules["mmcv._ext"] = module


def _configs_dir() -> Path:
    import mmdet

    return Path(mmdet.__file__).parent / ".mim" / "configs"


def build(inputs_path: str, lr: float) -> dict[str, Any]:
    import torch
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.optim import OptimWrapper
    from mmengine.runner.amp import autocast
    from mmengine.structures import InstanceData

    MMLogger.get_instance("mmengine", log_level="WARNING")  # no per-parameter init report
    register_all_modules()
    configs = _configs_dir()
    torch.manual_seed(0)

    # Plain GFL R18: gfl_r50_fpn_1x_coco with the LD config's ResNet-18 backbone and FPN widths.
    ld_cfg = Config.fromfile(str(configs / "ld" / "ld_r18-gflv1-r101_fpn_1x_coco.py"))
    plain_cfg = Config.fromfile(str(configs / "gfl" / "gfl_r50_fpn_1x_coco.py"))
    plain_cfg.model.backbone = ld_cfg.model.backbone
    plain_cfg.model.neck = ld_cfg.model.neck
    plain_cfg.model.backbone.init_cfg = None
    plain = MODELS.build(plain_cfg.model)
    plain.init_weights()
    plain.train()

    teacher_cfg = Config.fromfile(str(configs / "gfl" / "gfl_r101_fpn_ms-2x_coco.py"))
    teacher_cfg.model.backbone.init_cfg = None
    ld_cfg.model.backbone.init_cfg = None
    ld_cfg.model.teacher_config = teacher_cfg
    ld_cfg.model.teacher_ckpt = None
    ld = MODELS.build(ld_cfg.model)
    ld.init_weights()
    ld.train()

    class CpuBf16OptimWrapper(OptimWrapper):
        """``AmpOptimWrapper``'s ``optim_context`` (autocast around the forward) for bfloat16 on CPU."""

        @contextlib.contextmanager
        def optim_context(self, model: Any) -> Any:
            with super().optim_context(model), autocast(device_type="cpu", dtype=torch.bfloat16):
                yield

    def wrappers(model: Any) -> dict[bool, OptimWrapper]:
        """float32 and bf16-autocast wrappers around one SGD (keyed by ``amp``)."""
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
        return {False: OptimWrapper(optimizer), True: CpuBf16OptimWrapper(optimizer)}

    raw = torch.load(inputs_path, weights_only=True)
    samples = []
    for i, (img, boxes, labels) in enumerate(zip(raw["images"], raw["boxes"], raw["labels"])):
        h, w = int(img.shape[1]), int(img.shape[2])
        sample = DetDataSample(
            metainfo={"img_id": i, "img_shape": (h, w), "ori_shape": (h, w), "scale_factor": (1.0, 1.0)}
        )
        sample.gt_instances = InstanceData(bboxes=boxes.float(), labels=labels.long())
        samples.append(sample)

    def data() -> dict[str, Any]:  # a fresh dict per step, as a data loader hands it
        return {"inputs": [im.clone() for im in raw["images"]], "data_samples": samples}

    return {
        "plain": plain,
        "ld": ld,
        "plain_optim": wrappers(plain),
        "ld_optim": wrappers(ld),
        "data": data,
    }


def main() -> None:
    _install_fake_mmcv_ext()
    import torch

    state: dict[str, Any] = {}
    out = sys.stdout
    sys.stdout = sys.stderr  # anything mmdet prints must not break the protocol
    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg["cmd"]
        reply: dict[str, Any] = {}
        if cmd == "init":
            torch.set_num_threads(int(msg.get("threads", 2)))
            state = build(msg["inputs"], float(msg.get("lr", 1e-4)))
            import mmcv
            import mmdet
            import mmengine

            reply = {
                "mmdet": mmdet.__version__,
                "mmengine": mmengine.__version__,
                "mmcv": mmcv.__version__,
                "torch": str(torch.__version__),
                "threads": torch.get_num_threads(),
            }
        elif cmd in ("plain", "ld", "teacher"):
            from mmengine.runner.amp import autocast

            amp = bool(msg.get("amp", False))
            ctx = autocast(device_type="cpu", dtype=torch.bfloat16) if amp else contextlib.nullcontext()
            if cmd == "teacher":
                model = state["ld"]
                batch = model.data_preprocessor(state["data"](), True)["inputs"]
                t0 = time.perf_counter()
                with ctx, torch.no_grad():
                    feats = model.teacher_model.extract_feat(batch)
                    model.teacher_model.bbox_head(feats)
                reply = {"s": time.perf_counter() - t0}
            else:
                model, optim = state[cmd], state[f"{cmd}_optim"][amp]
                data = state["data"]()
                t0 = time.perf_counter()
                log_vars = model.train_step(data, optim)
                reply = {"s": time.perf_counter() - t0, "loss": float(log_vars["loss"].detach())}
        elif cmd == "quit":
            break
        else:
            reply = {"error": f"unknown command {cmd!r}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
