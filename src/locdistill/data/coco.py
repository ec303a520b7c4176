"""COCO json datasets (``instances_*.json`` + an image folder).

Conventions (mmdetection 2.x ``CocoDataset``):

* Labels: the category ids sorted ascending give labels ``0..C-1`` (:attr:`category_ids` maps back).
  ``classes`` may select a subset by name; annotations of other categories are then left out.
* Boxes: ``[x, y, w, h]`` -> ``[x, y, x + w, y + h]`` (no ``+1``). As mmdetection, annotations with
  ``ignore: true``, ``w < 1``, ``h < 1`` or ``area <= 0`` are not used (a debug message each); boxes
  sticking out of the image are clipped (one summary warning) and boxes with no area inside it dropped.
* ``iscrowd`` regions are kept with ``ignore = True``: ignore boxes in training, ignored by the COCO metric.
* :meth:`CocoDataset.to_coco_dict` returns the original json content restricted to this dataset's
  images, so crowd regions, areas and ids are exactly what pycocotools expects.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from locdistill.data.dataset import DatasetOptions, DetectionDataset
from locdistill.data.records import DataFormatError, IssueLog, make_record

if TYPE_CHECKING:
    from typing_extensions import Unpack

logger = logging.getLogger(__name__)

SMALL = "annotation(s) with w < 1, h < 1 or area <= 0 not used (as mmdetection)"


def load_coco_json(path: Path) -> dict[str, Any]:
    """Read a COCO json file; errors name the file (missing, not JSON, missing top-level keys)."""
    if not path.is_file():
        raise DataFormatError(f"annotation file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise DataFormatError(
            f"{path}: not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataFormatError(f"{path}: cannot read: {e}") from None
    if not isinstance(data, dict):
        raise DataFormatError(f"{path}: expected a JSON object with images/annotations/categories")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DataFormatError(f"{path}: missing or malformed '{key}' list")
    if not isinstance(data.get("annotations", []), list):
        raise DataFormatError(f"{path}: 'annotations' must be a list")
    return data


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _int_field(item: dict[str, Any], key: str, where: str) -> int:
    value = item.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataFormatError(f"{where}: '{key}' must be an integer, got {value!r}")
    return value


class CocoDataset(DetectionDataset):
    """Images and boxes of a COCO json file.

    Args:
        ann_file: the json file.
        img_dir: folder the json ``file_name`` entries are relative to.
        image_paths: optional explicit image files (e.g. from a split list); only the json images with
            these base names are used, in this order, read from these paths.
        classes: optional subset of category names (default: all categories of the json).
        transform, skip_bad, filter_empty_gt, min_size: see :class:`DetectionDataset`.
    """

    def __init__(
        self,
        ann_file: str | Path,
        img_dir: str | Path | None = None,
        *,
        image_paths: Sequence[Path] | None = None,
        classes: Sequence[str] | None = None,
        **options: Unpack[DatasetOptions],
    ) -> None:
        self.ann_file = Path(ann_file)
        data = load_coco_json(self.ann_file)
        src = str(self.ann_file)

        # categories: ascending ids -> labels
        cats: dict[int, str] = {}
        for k, cat in enumerate(data["categories"]):
            where = f"{src}: category #{k}"
            if not isinstance(cat, dict):
                raise DataFormatError(f"{where}: expected an object, got {cat!r}")
            cid = _int_field(cat, "id", where)
            if cid in cats:
                raise DataFormatError(f"{where}: duplicate category id {cid}")
            cats[cid] = str(cat.get("name", cid))
        if not cats:
            raise DataFormatError(f"{src}: no categories")
        ids = sorted(cats)
        if classes:
            by_name = {cats[c]: c for c in ids}
            unknown = [n for n in classes if n not in by_name]
            if unknown:
                raise DataFormatError(
                    f"{src}: unknown class name(s) {unknown} (categories: {[cats[c] for c in ids]})"
                )
            wanted = {by_name[n] for n in classes}
            ids = [c for c in ids if c in wanted]
        cat2label = {cid: i for i, cid in enumerate(ids)}

        # images
        images: dict[int, dict[str, Any]] = {}
        order: list[int] = []
        for k, img in enumerate(data["images"]):
            if not isinstance(img, dict):
                raise DataFormatError(f"{src}: image #{k}: expected an object, got {img!r}")
            where = f"{src}: image #{k}" + (f" (id {img['id']})" if "id" in img else "")
            iid = _int_field(img, "id", where)
            if iid in images:
                raise DataFormatError(f"{where}: duplicate image id {iid}")
            if not isinstance(img.get("file_name"), str) or not img["file_name"]:
                raise DataFormatError(f"{where}: missing 'file_name'")
            for key in ("height", "width"):
                if _int_field(img, key, where) <= 0:
                    raise DataFormatError(f"{where}: '{key}' must be positive, got {img[key]}")
            images[iid] = img
            order.append(iid)

        # annotations
        issues = IssueLog(src)
        per_image: dict[int, list[tuple[list[float], int, bool, int]]] = {iid: [] for iid in images}
        for k, ann in enumerate(data.get("annotations", [])):
            if not isinstance(ann, dict):
                raise DataFormatError(f"{src}: annotation #{k}: expected an object, got {ann!r}")
            where = f"{src}: annotation id {ann['id']}" if "id" in ann else f"{src}: annotation #{k}"
            iid = _int_field(ann, "image_id", where)
            if iid not in images:
                raise DataFormatError(f"{where}: image_id {iid} is not in 'images'")
            cid = _int_field(ann, "category_id", where)
            if cid not in cats:
                raise DataFormatError(f"{where}: category_id {cid} is not in 'categories'")
            bbox = ann.get("bbox")
            if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(_number(v) for v in bbox):
                raise DataFormatError(f"{where}: bbox must have 4 numbers [x, y, w, h], got {bbox!r}")
            if cid not in cat2label or ann.get("ignore", False):
                continue
            x, y, w, h = (float(v) for v in bbox)
            area = ann.get("area", w * h)
            if w < 1 or h < 1 or (_number(area) and area <= 0):
                issues.add(SMALL, f"{where} bbox {bbox}")
                continue
            per_image[iid].append(([x, y, x + w, y + h], cat2label[cid], bool(ann.get("iscrowd", 0)), k))

        # optional explicit image list
        paths: dict[int, Path] = {}
        if image_paths is not None:
            by_base: dict[str, int] = {}
            for iid in order:
                by_base.setdefault(Path(images[iid]["file_name"]).name, iid)
            selected = []
            for p in image_paths:
                if p.name not in by_base:
                    raise DataFormatError(f"{src}: listed image {p} has no entry in 'images'")
                selected.append(by_base[p.name])
                paths[by_base[p.name]] = p
            order = selected
        base = Path(img_dir) if img_dir is not None else self.ann_file.parent

        records = []
        for iid in order:
            img = images[iid]
            anns = per_image[iid]
            fname = img["file_name"]
            records.append(
                make_record(
                    iid,
                    fname,
                    paths.get(iid, base / fname),
                    int(img["height"]),
                    int(img["width"]),
                    [a[0] for a in anns],
                    [a[1] for a in anns],
                    f"{src}: image {fname}",
                    issues,
                    ignore=[a[2] for a in anns],
                )
            )
        super().__init__(
            records,
            [cats[c] for c in ids],
            source=src,
            category_ids=ids,
            **options,
            issues=issues,
        )
        self._coco_dict: dict[str, Any] | None = None

    def to_coco_dict(self) -> dict[str, Any]:
        """The original json content restricted to this dataset's images (and selected categories).

        The file is read again on the first call (the parsed dataset keeps only boxes) and cached; each
        call returns fresh lists and item dicts, so a caller (e.g. COCOeval adding keys) cannot change it.
        """
        if self._coco_dict is None:
            data = load_coco_json(self.ann_file)
            keep_images = set(self.image_ids)
            keep_cats = set(self.category_ids)
            out = {k: v for k, v in data.items() if k not in ("images", "annotations", "categories")}
            out["images"] = [im for im in data["images"] if im["id"] in keep_images]
            out["annotations"] = [
                a
                for a in data.get("annotations", [])
                if a["image_id"] in keep_images and a["category_id"] in keep_cats
            ]
            out["categories"] = [c for c in data["categories"] if c["id"] in keep_cats]
            self._coco_dict = out
        out = dict(self._coco_dict)
        for key in ("images", "annotations", "categories"):
            out[key] = [dict(item) for item in self._coco_dict[key]]
        return out
