"""Ultralytics ``data.yaml`` dataset descriptions (the file ``yolo train data=...`` takes).

Keys read (others, e.g. ``download``, are ignored)::

    path: ../datasets/coco128     # dataset root; relative: to the data.yaml's folder when it exists
                                  # there, else to the working directory; absent: the data.yaml's folder
    train: images/train2017       # an image folder or a .txt list of images, relative to path
    val: images/val2017           # required
    test:                         # optional
    names: {0: person, 1: bicycle}  # or a list; label i is names[i]
    nc: 80                        # optional; must equal the number of names

Labels are found the YOLO way (``.../images/x.jpg`` -> ``.../labels/x.txt``); see :mod:`locdistill.data.yolo`.
This module is part of config loading (:mod:`locdistill.config.resolve` turns ``data.ultralytics`` into
YOLO-format splits); every problem is a :class:`~locdistill.config.validation.ConfigError`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from locdistill.config.validation import ConfigError

SPLITS = ("train", "val", "test")


@dataclass
class UltralyticsData:
    """A parsed ``data.yaml``: ``root`` (absolute), the image source of each split given (relative to
    ``root`` or absolute) and the class names in label order."""

    path: Path
    root: Path
    splits: dict[str, str] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)


def _beside_or_cwd(value: str, base: Path) -> Path:
    p = Path(os.path.expanduser(value))
    if p.is_absolute():
        return p
    return Path(os.path.abspath(base / p if (base / p).exists() else p))


def _names(value: Any, where: str) -> list[str]:
    if isinstance(value, dict):
        try:
            keys = sorted(int(k) for k in value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: 'names' keys must be class indices 0..n-1") from None
        if keys != list(range(len(keys))):
            raise ConfigError(f"{where}: 'names' keys must be 0..{len(keys) - 1}, got {keys}")
        lookup = {int(k): v for k, v in value.items()}
        return [str(lookup[k]) for k in keys]
    if isinstance(value, list):
        return [str(v) for v in value]
    raise ConfigError(f"{where}: 'names' must be a list or a mapping index -> name")


def read_data_yaml(path: str | Path) -> UltralyticsData:
    """Parse an Ultralytics ``data.yaml``; every problem is a :class:`ConfigError` naming the file
    and the key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Ultralytics data.yaml not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with path/train/val/names")
    if "names" not in data:
        raise ConfigError(f"{path}: 'names' (the class names) is missing")
    names = _names(data["names"], str(path))
    if not names:
        raise ConfigError(f"{path}: 'names' is empty")
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: duplicate class names")
    if data.get("nc") is not None and int(data["nc"]) != len(names):
        raise ConfigError(f"{path}: nc is {data['nc']} but 'names' lists {len(names)} classes")
    base = path.resolve().parent
    root = _beside_or_cwd(str(data["path"]), base) if data.get("path") else base
    splits: dict[str, str] = {}
    for split in SPLITS:
        value = data.get(split)
        if value in (None, "", []):
            continue
        if isinstance(value, list):
            if len(value) != 1:
                raise ConfigError(
                    f"{path}: '{split}' lists {len(value)} sources; locdistill takes one folder or .txt "
                    "list per split (write the images of all of them into one .txt list)"
                )
            value = value[0]
        if not isinstance(value, str):
            raise ConfigError(f"{path}: '{split}' must be a folder or .txt list, got {value!r}")
        splits[split] = value
    if "train" not in splits or "val" not in splits:
        raise ConfigError(f"{path}: 'train' and 'val' are required")
    return UltralyticsData(path=path, root=root, splits=splits, names=names)
