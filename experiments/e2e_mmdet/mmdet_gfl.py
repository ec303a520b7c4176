"""The demo baseline GFL trained from scratch by mmdetection 3.3.0 (mmengine ``Runner``, CPU), then run
on the validation images; the detections go to a COCO results json.

    /work/mmdet_venv/bin/python experiments/e2e_mmdet/mmdet_gfl.py --data /work/e2e_data --seed 0 \
        --work-dir /work/e2e_runs/mmdet/seed0 [--threads 2] [--max-iters N]

Runs only where mmdetection 3.3.0 is installed (mmcv-lite works: the one compiled op GFL needs, NMS at
test time, is stood in for by ``torchvision.ops.nms``, which suppresses at IoU > thr as mmcv's kernel).
The config (written to ``WORK_DIR/gfl_demo_base.py``) mirrors ``configs/demo/demo_base.yaml`` setting by
setting; see :func:`demo_config`. WORK_DIR receives mmengine's logs, ``train_seconds.txt`` and
``dets.json`` (COCO results: ``image_id``, ``category_id``, ``bbox`` [x, y, w, h], ``score``).
"""

from __future__ import annotations

import argparse
import importlib.machinery
import json
import sys
import time
import types
from pathlib import Path
from typing import Any

CLASSES = ("rectangle", "ellipse", "triangle", "cross", "ring")
"""locdistill.data.synthetic.SHAPE_CLASSES (category ids 1..5 in the written json)."""


def install_mmcv_ext() -> None:
    """A stand-in ``mmcv._ext`` for mmcv-lite: ``nms`` is torchvision's (same strict IoU > thr rule,
    offset 0); every other compiled op raises when called (GFL training calls none)."""
    if "mmcv._ext" in sys.modules:
        return
    import torch
    import torchvision

    module = types.ModuleType("mmcv._ext")
    # no loader: mmengine's mmcv_full_available() then says False (no mmcv.ops SyncBatchNorm lookup)
    module.__spec__ = importlib.machinery.ModuleSpec("mmcv._ext", None)

    def nms(boxes: Any, scores: Any, iou_threshold: float, offset: int = 0) -> Any:
        if offset != 0:
            raise RuntimeError("nms stand-in: only offset=0")
        if boxes.numel() == 0:
            return torch.zeros(0, dtype=torch.long)
        return torchvision.ops.nms(boxes.float(), scores.float(), float(iou_threshold))

    def missing(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)

        def fn(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(f"mmcv._ext.{name} is not available (mmcv-lite has no compiled ops)")

        return fn

    module.nms = nms  # type: ignore[attr-defined]
    module.__getattr__ = missing  # type: ignore[method-assign]
    sys.modules["mmcv._ext"] = module


def demo_config(data: str, seed: int, work_dir: str, max_iters: int | None = None) -> dict[str, Any]:
    """``configs/demo/demo_base.yaml`` as an mmdetection 3.x config dict.

    * backbone: ResNet-18, ``base_channels=16`` (stem 16, stages 16/32/64/128: our ``base_width: 16``),
      BN trained (``frozen_stages=-1``, ``norm_eval=False``), no pretrained weights;
    * neck: FPN on C3-C5 (``start_level=1``) to 32 channels, P6/P7 on the output;
    * head: GFLHead, 5 classes, 1 stacked conv of 32 channels, GN(8), ATSS top 9, QFL 1 / DFL 0.25 /
      GIoU 2, reg_max 16, anchors 8x stride;
    * test: score 0.05, 1000 pre-NMS, NMS IoU 0.6, 100 per image;
    * data: 192x192 keep-ratio resize (the images are 192, so none), flip 0.5, pad to 32, ImageNet
      mean/std on RGB (our ``Normalize``), batch 4, drop no image (all have boxes);
    * schedule: SGD lr 0.01 (our 0.04 scaled to batch 4 by lr * batch / 16), momentum 0.9, wd 1e-4 on
      every parameter, linear warm-up over 50 iterations from 0.001, x0.1 at epoch 5, 6 epochs.
    """
    train_pipeline = [
        dict(type="LoadImageFromFile"),
        dict(type="LoadAnnotations", with_bbox=True),
        dict(type="Resize", scale=(192, 192), keep_ratio=True),
        dict(type="RandomFlip", prob=0.5),
        dict(type="PackDetInputs"),
    ]
    test_pipeline = [
        dict(type="LoadImageFromFile"),
        dict(type="Resize", scale=(192, 192), keep_ratio=True),
        dict(
            type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")
        ),
    ]
    dataset = dict(
        type="CocoDataset", data_root=data, metainfo=dict(classes=CLASSES), data_prefix=dict(img="")
    )
    train_cfg: dict[str, Any] = dict(type="EpochBasedTrainLoop", max_epochs=6, val_interval=100)
    if max_iters is not None:
        train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=10**9)
    return dict(
        default_scope="mmdet",
        work_dir=work_dir,
        randomness=dict(seed=seed, deterministic=False),
        env_cfg=dict(
            cudnn_benchmark=False,
            mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
            dist_cfg=dict(backend="gloo"),
        ),
        log_level="INFO",
        load_from=None,
        resume=False,
        model=dict(
            type="GFL",
            data_preprocessor=dict(
                type="DetDataPreprocessor",
                mean=[123.675, 116.28, 103.53],
                std=[58.395, 57.12, 57.375],
                bgr_to_rgb=True,
                pad_size_divisor=32,
            ),
            backbone=dict(
                type="ResNet",
                depth=18,
                base_channels=16,
                num_stages=4,
                out_indices=(0, 1, 2, 3),
                frozen_stages=-1,
                norm_cfg=dict(type="BN", requires_grad=True),
                norm_eval=False,
                style="pytorch",
            ),
            neck=dict(
                type="FPN",
                in_channels=[16, 32, 64, 128],
                out_channels=32,
                start_level=1,
                add_extra_convs="on_output",
                num_outs=5,
            ),
            bbox_head=dict(
                type="GFLHead",
                num_classes=5,
                in_channels=32,
                stacked_convs=1,
                feat_channels=32,
                norm_cfg=dict(type="GN", num_groups=8, requires_grad=True),
                anchor_generator=dict(
                    type="AnchorGenerator",
                    ratios=[1.0],
                    octave_base_scale=8,
                    scales_per_octave=1,
                    strides=[8, 16, 32, 64, 128],
                ),
                loss_cls=dict(type="QualityFocalLoss", use_sigmoid=True, beta=2.0, loss_weight=1.0),
                loss_dfl=dict(type="DistributionFocalLoss", loss_weight=0.25),
                reg_max=16,
                loss_bbox=dict(type="GIoULoss", loss_weight=2.0),
            ),
            train_cfg=dict(
                assigner=dict(type="ATSSAssigner", topk=9), allowed_border=-1, pos_weight=-1, debug=False
            ),
            test_cfg=dict(
                nms_pre=1000,
                min_bbox_size=0,
                score_thr=0.05,
                nms=dict(type="nms", iou_threshold=0.6),
                max_per_img=100,
            ),
        ),
        train_dataloader=dict(
            batch_size=4,
            num_workers=0,
            persistent_workers=False,
            sampler=dict(type="DefaultSampler", shuffle=True),
            batch_sampler=dict(type="AspectRatioBatchSampler"),
            dataset=dict(
                dataset,
                ann_file="annotations/instances_train.json",
                filter_cfg=dict(filter_empty_gt=True, min_size=32),
                pipeline=train_pipeline,
            ),
        ),
        detect_dataloader=dict(
            batch_size=1,
            num_workers=0,
            persistent_workers=False,
            drop_last=False,
            sampler=dict(type="DefaultSampler", shuffle=False),
            dataset=dict(
                dataset, ann_file="annotations/instances_val.json", test_mode=True, pipeline=test_pipeline
            ),
        ),
        train_cfg=train_cfg,
        optim_wrapper=dict(
            type="OptimWrapper", optimizer=dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=0.0001)
        ),
        param_scheduler=[
            dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=50),
            dict(type="MultiStepLR", begin=0, end=6, by_epoch=True, milestones=[5], gamma=0.1),
        ],
        default_hooks=dict(
            timer=dict(type="IterTimerHook"),
            logger=dict(type="LoggerHook", interval=20),
            param_scheduler=dict(type="ParamSchedulerHook"),
            checkpoint=dict(type="CheckpointHook", interval=6, max_keep_ckpts=1),
            sampler_seed=dict(type="DistSamplerSeedHook"),
        ),
        log_processor=dict(type="LogProcessor", window_size=20, by_epoch=True),
    )


def detect(runner: Any) -> list[dict[str, Any]]:
    """The trained model on every validation image: COCO results (boxes in original-image pixels)."""
    import torch

    model = runner.model
    model.eval()
    loader = runner.build_dataloader(runner.cfg.detect_dataloader)
    results: list[dict[str, Any]] = []
    with torch.no_grad():
        for batch in loader:
            for sample in model.test_step(batch):
                pred = sample.pred_instances
                for box, score, label in zip(
                    pred.bboxes.tolist(), pred.scores.tolist(), pred.labels.tolist()
                ):
                    x1, y1, x2, y2 = box
                    results.append(
                        {
                            "image_id": int(sample.img_id),
                            "category_id": int(label) + 1,
                            "bbox": [x1, y1, x2 - x1, y2 - y1],
                            "score": float(score),
                        }
                    )
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="folder written by write_demo_coco.py")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", type=Path, required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-iters", type=int, default=None, help="stop after N iterations (a smoke run)")
    a = p.parse_args()
    install_mmcv_ext()
    import torch

    torch.set_num_threads(a.threads)
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.runner import Runner

    register_all_modules()
    a.work_dir.mkdir(parents=True, exist_ok=True)
    cfg = Config(demo_config(str(Path(a.data).resolve()), a.seed, str(a.work_dir), a.max_iters))
    cfg.dump(str(a.work_dir / "gfl_demo_base.py"))
    runner = Runner.from_cfg(cfg)
    t0 = time.perf_counter()
    runner.train()
    seconds = time.perf_counter() - t0
    (a.work_dir / "train_seconds.txt").write_text(f"{seconds:.0f}\n")
    dets = detect(runner)
    tmp = a.work_dir / "dets.json.tmp"
    tmp.write_text(json.dumps(dets))
    tmp.rename(a.work_dir / "dets.json")
    print(f"trained in {seconds:.0f} s, {len(dets)} detections -> {a.work_dir / 'dets.json'}")


if __name__ == "__main__":
    main()
