"""``build_dataset``: the only place in ``data/`` that reads the config.

How :class:`~locdistill.config.DatasetConfig` fields are used per ``format`` (paths relative to ``root``;
``ann_file`` and ``img_dir`` may each hold several comma-separated entries for VOC, e.g. 07 + 12):

* ``coco``: ``ann_file`` is the json; ``img_dir`` is the image folder, or a ``.txt`` list of image
  paths to restrict the json to (e.g. ``splits/val.txt``). ``classes``: optional subset.
* ``voc``: ``ann_file`` is the ``ImageSets/Main`` list; ``img_dir`` the folder holding ``Annotations``
  and ``JPEGImages`` (default: the folder above ``ImageSets/Main``). ``classes`` default: the 20 VOC classes.
* ``yolo``: ``ann_file`` (a list file) or else ``img_dir`` (a folder or list file) gives the images;
  labels are found the Ultralytics way; ``classes`` default: ``root/classes.txt``.
* ``synthetic``: ``num_images`` (0: 300 for training, 100 otherwise), ``image_size``, ``seed``.

Training datasets drop images without annotations or with a side under 32 px (mmdetection's
``filter_empty_gt`` and ``min_size``) and skip unreadable images (``skip_bad``); evaluation datasets
keep every image and raise on an unreadable one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from locdistill.config import DataConfig, DatasetConfig
from locdistill.data.coco import CocoDataset
from locdistill.data.dataset import DetectionDataset
from locdistill.data.list_files import read_list_file, resolve_listed_path
from locdistill.data.repeat import RepeatDataset
from locdistill.data.synthetic import SyntheticDataset
from locdistill.data.transforms import Normalize, build_transforms
from locdistill.data.voc import VOC_CLASSES, VOCDataset
from locdistill.data.yolo import YoloDataset

DEFAULT_SYNTHETIC_IMAGES = {True: 300, False: 100}


def _split(value: str) -> list[str]:
    return [s.strip() for s in value.split(",") if s.strip()]


def resolve_mean_std(
    data_cfg: DataConfig, mean: Sequence[float] | Tensor | None, std: Sequence[float] | Tensor | None
) -> tuple[list[float], list[float]]:
    """Normalisation in ``[0, 1]`` RGB units: ``data_cfg.mean/std`` when set, else the backbone's.

    Config values given in 0-255 units (mmdetection style, any mean above 1) are divided by 255.
    """
    if data_cfg.mean is not None or data_cfg.std is not None:
        if data_cfg.mean is None or data_cfg.std is None:
            raise ValueError("data.mean and data.std must be set together")
        m, s = [float(v) for v in data_cfg.mean], [float(v) for v in data_cfg.std]
        if max(m) > 1.0:
            m, s = [v / 255 for v in m], [v / 255 for v in s]
        return m, s
    if mean is None or std is None:
        raise ValueError("no normalisation: pass the backbone's mean/std or set data.mean and data.std")
    return [float(v) for v in mean], [float(v) for v in std]


def build_dataset(
    cfg: DatasetConfig,
    data_cfg: DataConfig,
    train: bool,
    mean: Sequence[float] | Tensor | None = None,
    std: Sequence[float] | Tensor | None = None,
    *,
    normalize_on_device: bool = False,
) -> DetectionDataset | RepeatDataset:
    """One split with its transform (training or test pipeline), repeated ``cfg.repeat`` times.

    With ``normalize_on_device`` (the training run's dataset) the samples stay uint8 and the dataset's
    ``pixel_norm`` tells :func:`~locdistill.data.loader.build_train_loader` to hand uint8 batches that
    :meth:`~locdistill.structures.Batch.to` normalises on the device (same values, 4x fewer bytes)."""
    m, s = resolve_mean_std(data_cfg, mean, std)
    transform = build_transforms(
        train=train,
        img_scale=data_cfg.img_scale,
        mean=m,
        std=s,
        multiscale=data_cfg.multiscale,
        flip_prob=data_cfg.flip_prob,
        normalize=not normalize_on_device,
    )
    root = Path(cfg.root)
    common: dict[str, Any] = {
        "transform": transform,
        "skip_bad": train,
        "filter_empty_gt": train,
        "min_size": 32 if train else 0,
    }
    dataset: DetectionDataset
    if cfg.format == "coco":
        if not cfg.ann_file:
            raise ValueError("coco dataset: ann_file (the json, relative to root) is required")
        img_dir = root / cfg.img_dir if cfg.img_dir else None
        image_paths = None
        if img_dir is not None and img_dir.suffix == ".txt":
            image_paths = [resolve_listed_path(e, root, img_dir) for e in read_list_file(img_dir)]
            img_dir = None
        dataset = CocoDataset(
            root / cfg.ann_file,
            img_dir if img_dir is not None else root,
            image_paths=image_paths,
            classes=cfg.classes or None,
            **common,
        )
    elif cfg.format == "voc":
        lists = [root / p for p in _split(cfg.ann_file)]
        if not lists:
            raise ValueError("voc dataset: ann_file (ImageSets/Main list, relative to root) is required")
        dirs = [root / p for p in _split(cfg.img_dir)] or None
        dataset = VOCDataset(lists, dirs, classes=cfg.classes or VOC_CLASSES, **common)
    elif cfg.format == "yolo":
        source = cfg.ann_file or cfg.img_dir
        if not source:
            raise ValueError(
                "yolo dataset: ann_file (image list) or img_dir (image folder or list) is required"
            )
        dataset = YoloDataset(root / source, root, classes=cfg.classes or None, **common)
    elif cfg.format == "synthetic":
        n = cfg.num_images or DEFAULT_SYNTHETIC_IMAGES[train]
        dataset = SyntheticDataset(n, cfg.image_size, cfg.seed, train=train, root=root, **common)
    else:
        raise ValueError(f"unknown dataset format {cfg.format!r} (coco, voc, yolo, synthetic)")
    dataset.size_divisor = data_cfg.size_divisor
    dataset.pixel_norm = Normalize(m, s).pixel_norm if normalize_on_device else None
    if cfg.repeat > 1:
        return RepeatDataset(dataset, cfg.repeat)
    return dataset
