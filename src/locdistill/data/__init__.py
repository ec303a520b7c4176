"""Datasets (COCO json, VOC XML, YOLO txt, synthetic), transforms, collate and loaders.

``dataset[i] -> (image, Targets, ImageMeta)``; :func:`build_dataset` reads the config and attaches the
mmdetection-style pipeline; :func:`build_train_loader` / :func:`build_test_loader` give
:class:`~locdistill.structures.Batch` es.
"""

from locdistill.data.build import build_dataset, resolve_mean_std
from locdistill.data.coco import CocoDataset
from locdistill.data.collate import Collate, collate
from locdistill.data.dataset import DetectionDataset, Sample, Transform
from locdistill.data.image_io import BadImageError, read_image, read_image_size
from locdistill.data.loader import EpochShuffleSampler, ShardSampler, build_test_loader, build_train_loader
from locdistill.data.records import Annotation, DataFormatError, ImageRecord
from locdistill.data.repeat import RepeatDataset
from locdistill.data.synthetic import SHAPE_CLASSES, SyntheticDataset
from locdistill.data.transforms import (
    Compose,
    Normalize,
    RandomHorizontalFlip,
    Resize,
    build_transforms,
    hflip,
    rescale_size,
)
from locdistill.data.voc import VOC_CLASSES, VOCDataset
from locdistill.data.yolo import YoloDataset

__all__ = [
    "Annotation",
    "BadImageError",
    "CocoDataset",
    "Collate",
    "Compose",
    "DataFormatError",
    "DetectionDataset",
    "EpochShuffleSampler",
    "ImageRecord",
    "Normalize",
    "RandomHorizontalFlip",
    "RepeatDataset",
    "Resize",
    "SHAPE_CLASSES",
    "Sample",
    "ShardSampler",
    "SyntheticDataset",
    "Transform",
    "VOCDataset",
    "VOC_CLASSES",
    "YoloDataset",
    "build_dataset",
    "build_test_loader",
    "build_train_loader",
    "build_transforms",
    "collate",
    "hflip",
    "read_image",
    "read_image_size",
    "resolve_mean_std",
    "rescale_size",
]
