"""mmdetection 3.3.0's own COCO training data pipeline, driven by ``bench_loader.py --mmdet PYTHON``.

Runs in a separate Python environment with mmdet 3.3.0, mmengine and mmcv(-lite) (see
``mmdet_worker.py`` for the stand-in ``mmcv._ext``). Nothing of mmdetection is copied: the dataset is
mmdet's ``CocoDataset`` (``filter_empty_gt``, ``min_size=32``, as its training configs) with the train
pipeline of ``_base_/datasets/coco_detection.py`` (``LoadImageFromFile``, ``LoadAnnotations``,
``Resize(scale=(1333, 800), keep_ratio=True)``, ``RandomFlip(0.5)``, ``PackDetInputs``) or, for the
multi-scale run, ``RandomResize(scale=[(1333, 480), (1333, 960)], keep_ratio=True)`` in place of the
``Resize`` (as ``gfl/gfl_r50_fpn_ms-2x_coco.py`` with the 960 range). A batch is what mmdet's workers
hand over: ``pseudo_collate`` of the packed samples (uint8 BGR tensors + ``DetDataSample`` s);
normalisation and padding happen later, on the device, in the model's ``DetDataPreprocessor``.

Same images, order and random draws as ours: the samples come in the ``init`` message (file name, the
drawn ``(1333, short)`` scale, the flip), and each sample's draws are handed to mmdet's own
``RandomResize`` / ``RandomFlip`` by replacing just their random choice (``_random_scale``,
``_choose_direction``) for that sample; the transforms themselves run unchanged.

Protocol (one JSON object per line on stdin, one JSON reply per line on stdout):

* ``{"cmd": "init", "root", "ann_file", "img_prefix", "samples": [{"file", "scale", "flip"}], "batch",
  "multiscale", "threads"}``: builds everything; reply with versions.
* ``{"cmd": "round"}``: one pass over the samples in one process, ``pseudo_collate`` per batch; reply
  ``{"s": seconds, "n": images}``.
* ``{"cmd": "loader", "workers": W}``: one epoch through a ``torch.utils.data.DataLoader`` with ``W``
  persistent workers and ``pseudo_collate`` (the first call for a ``W`` also runs a warm-up epoch).
* ``{"cmd": "check", "k": K, "path": P}``: ``torch.save`` of the first ``K`` packed images (uint8 BGR
  ``[3, H, W]``) and every sample's ``img_shape`` and flip, to compare with ours.
* ``{"cmd": "quit"}``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mmdet_worker import _install_fake_mmcv_ext  # noqa: E402


class ScriptedSamples:
    """mmdet's dataset in our order, each sample with our scale and flip draw (``__getitem__(k)``)."""

    def __init__(self, dataset: Any, samples: list[dict[str, Any]], multiscale: bool) -> None:
        by_file = {Path(dataset.get_data_info(i)["img_path"]).name: i for i in range(len(dataset))}
        missing = [s["file"] for s in samples if s["file"] not in by_file]
        if missing:
            raise SystemExit(f"mmdet's CocoDataset lacks {len(missing)} of our images, e.g. {missing[:3]}")
        self.dataset = dataset
        self.indices = [by_file[s["file"]] for s in samples]
        self.samples = samples
        transforms = dataset.pipeline.transforms
        self.resize = next(
            t for t in transforms if type(t).__name__ == ("RandomResize" if multiscale else "Resize")
        )
        self.flip = next(t for t in transforms if type(t).__name__ == "RandomFlip")
        self.multiscale = multiscale

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> dict[str, Any]:
        s = self.samples[k]
        if self.multiscale:
            scale = tuple(s["scale"])
            self.resize._random_scale = lambda: scale
        direction = "horizontal" if s["flip"] else None
        self.flip._choose_direction = lambda: direction
        return self.dataset[self.indices[k]]


def build(msg: dict[str, Any]) -> ScriptedSamples:
    from mmdet.datasets import CocoDataset
    from mmdet.utils import register_all_modules
    from mmengine.logging import MMLogger

    MMLogger.get_instance("mmengine", log_level="WARNING")
    register_all_modules()
    multiscale = bool(msg["multiscale"])
    resize: dict[str, Any] = (
        {"type": "RandomResize", "scale": [(1333, 480), (1333, 960)], "keep_ratio": True}
        if multiscale
        else {"type": "Resize", "scale": (1333, 800), "keep_ratio": True}
    )
    pipeline = [
        {"type": "LoadImageFromFile"},
        {"type": "LoadAnnotations", "with_bbox": True},
        resize,
        {"type": "RandomFlip", "prob": 0.5},
        {"type": "PackDetInputs"},
    ]
    dataset = CocoDataset(
        data_root=msg["root"],
        ann_file=msg["ann_file"],
        data_prefix={"img": msg["img_prefix"]},
        filter_cfg={"filter_empty_gt": True, "min_size": 32},
        pipeline=pipeline,
    )
    return ScriptedSamples(dataset, msg["samples"], multiscale)


def one_epoch(batches: Any) -> tuple[float, int]:
    t0 = time.perf_counter()
    n = 0
    for batch in batches:
        n += len(batch["inputs"])
    return time.perf_counter() - t0, n


def main() -> None:
    _install_fake_mmcv_ext()
    import cv2
    import torch
    from mmengine.dataset import pseudo_collate

    out = sys.stdout
    sys.stdout = sys.stderr  # anything mmdet prints must not break the protocol
    state: dict[str, Any] = {"loaders": {}}
    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg["cmd"]
        reply: dict[str, Any] = {}
        if cmd == "init":
            torch.set_num_threads(int(msg.get("threads", 1)))
            cv2.setNumThreads(0)  # mmengine's default env_cfg (opencv_num_threads=0): sequential OpenCV
            state["data"] = build(msg)
            state["batch"] = int(msg["batch"])
            import mmcv
            import mmdet
            import mmengine

            reply = {
                "mmdet": mmdet.__version__,
                "mmengine": mmengine.__version__,
                "mmcv": mmcv.__version__,
                "opencv": cv2.__version__,
                "torch": str(torch.__version__),
                "images": len(state["data"]),
            }
        elif cmd == "round":
            data, b = state["data"], state["batch"]
            chunks = (range(k, min(k + b, len(data))) for k in range(0, len(data), b))
            s, n = one_epoch(pseudo_collate([data[k] for k in chunk]) for chunk in chunks)
            reply = {"s": s, "n": n}
        elif cmd == "loader":
            workers = int(msg["workers"])
            loader = state["loaders"].get(workers)
            if loader is None:
                loader = torch.utils.data.DataLoader(
                    state["data"],
                    batch_size=state["batch"],
                    shuffle=False,
                    num_workers=workers,
                    collate_fn=pseudo_collate,
                    persistent_workers=workers > 0,
                    pin_memory=bool(msg.get("pin_memory", False)),
                )
                state["loaders"][workers] = loader
                one_epoch(loader)  # warm-up: starts the workers
            s, n = one_epoch(loader)
            reply = {"s": s, "n": n}
        elif cmd == "check":
            data = state["data"]
            images, shapes, flips = [], [], []
            for k in range(len(data)):
                packed = data[k]
                shapes.append(list(packed["data_samples"].img_shape))
                flips.append(bool(packed["data_samples"].flip))
                if k < int(msg["k"]):
                    images.append(packed["inputs"])
            torch.save({"images": images, "shapes": shapes, "flips": flips}, msg["path"])
        elif cmd == "quit":
            break
        else:
            reply = {"error": f"unknown command {cmd!r}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
