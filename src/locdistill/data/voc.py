"""PASCAL VOC XML datasets (``Annotations/*.xml``, ``JPEGImages/*.jpg``, ``ImageSets/Main/*.txt``).

Conventions (mmdetection 2.x ``XMLDataset.get_ann_info``, the code the LD fork trains and evaluates
with): each coordinate is read as ``int(float(text))`` and then **1 is subtracted from all four**
(``xmin, ymin, xmax, ymax``), turning VOC's 1-based pixel indices into 0-based coordinates; the width
``xmax - xmin`` is unchanged (nothing adds 1). ``difficult`` objects are kept in the annotation (the VOC
metric ignores them) and become ignore boxes in training, as mmdetection's ``bboxes_ignore``. The image
file is ``JPEGImages/<id>.jpg`` whatever the XML's ``<filename>`` says; the size comes from ``<size>``
(or from the image header when missing or zero).

Differences from mmdetection, on purpose: an object whose class is not in ``classes`` is an error
naming the file and the name (mmdetection skips it silently); zero-size boxes are dropped with a
warning (mmdetection keeps them as zero-area ground truth).
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from locdistill.data.dataset import DatasetOptions, DetectionDataset
from locdistill.data.image_io import BadImageError, read_image_size
from locdistill.data.list_files import read_list_file
from locdistill.data.records import DataFormatError, ImageRecord, IssueLog, make_record

if TYPE_CHECKING:
    from typing_extensions import Unpack

logger = logging.getLogger(__name__)

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def voc_root_of(list_file: Path) -> Path:
    """The VOC root of a ``<root>/ImageSets/Main/<split>.txt`` list (else the list file's folder)."""
    if list_file.parent.name == "Main" and list_file.parent.parent.name == "ImageSets":
        return list_file.parent.parent.parent
    return list_file.parent


def _text(node: ET.Element, tag: str, where: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise DataFormatError(f"{where}: missing <{tag}>")
    return child.text.strip()


def parse_voc_xml(
    xml_path: Path, cat2label: dict[str, int]
) -> tuple[tuple[int, int] | None, list[list[float]], list[int], list[bool]]:
    """Parse one VOC XML file.

    Returns:
        ``(size, boxes, labels, difficult)``: ``size`` is ``(height, width)`` from ``<size>`` or ``None``
        when absent/zero; boxes ``[x1, y1, x2, y2]`` with the mmdetection 2.x ``-1`` applied.
    """
    if not xml_path.is_file():
        raise DataFormatError(f"annotation file not found: {xml_path}")
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as e:
        raise DataFormatError(f"{xml_path}: not valid XML: {e}") from None
    size: tuple[int, int] | None = None
    size_node = root.find("size")
    if size_node is not None:
        try:
            width = int(float(_text(size_node, "width", f"{xml_path}: <size>")))
            height = int(float(_text(size_node, "height", f"{xml_path}: <size>")))
        except ValueError as e:
            raise DataFormatError(f"{xml_path}: <size> must hold numbers: {e}") from None
        if width > 0 and height > 0:
            size = (height, width)
    boxes, labels, difficult = [], [], []
    for k, obj in enumerate(root.findall("object")):
        where = f"{xml_path}: object #{k}"
        name = _text(obj, "name", where)
        if name not in cat2label:
            raise DataFormatError(f"{where}: unknown class name {name!r} (known classes: {list(cat2label)})")
        diff_node = obj.find("difficult")
        try:
            diff = bool(int(diff_node.text)) if diff_node is not None and diff_node.text else False
        except ValueError:
            raise DataFormatError(f"{where}: <difficult> must be 0 or 1, got {diff_node.text!r}") from None  # type: ignore[union-attr]
        bnd = obj.find("bndbox")
        if bnd is None:
            raise DataFormatError(f"{where}: missing <bndbox>")
        try:
            coords = [
                int(float(_text(bnd, tag, f"{where} <bndbox>"))) - 1
                for tag in ("xmin", "ymin", "xmax", "ymax")
            ]
        except ValueError as e:
            raise DataFormatError(f"{where}: <bndbox> coordinates must be numbers: {e}") from None
        boxes.append([float(c) for c in coords])
        labels.append(cat2label[name])
        difficult.append(diff)
    return size, boxes, labels, difficult


class VOCDataset(DetectionDataset):
    """Images listed in one or more VOC ``ImageSets/Main`` files (e.g. VOC2007 + VOC2012 trainval).

    Args:
        ann_files: list file(s) of image ids, one per line.
        voc_roots: the folder holding ``Annotations/`` and ``JPEGImages/`` for each list (default: the
            folder above ``ImageSets/Main``).
        classes: class names, label = position (default: the 20 VOC classes).
        transform, skip_bad, filter_empty_gt, min_size: see :class:`DetectionDataset`. With
            ``skip_bad``, an image whose size must be read from its header and cannot be is left out
            (warned, counted in :attr:`num_skipped`) instead of raising.
    """

    def __init__(
        self,
        ann_files: str | Path | Sequence[str | Path],
        voc_roots: str | Path | Sequence[str | Path] | None = None,
        *,
        classes: Sequence[str] = VOC_CLASSES,
        img_subdir: str = "JPEGImages",
        ann_subdir: str = "Annotations",
        img_ext: str = ".jpg",
        **options: Unpack[DatasetOptions],
    ) -> None:
        lists = [Path(ann_files)] if isinstance(ann_files, (str, Path)) else [Path(p) for p in ann_files]
        if voc_roots is None:
            roots = [voc_root_of(p) for p in lists]
        elif isinstance(voc_roots, (str, Path)):
            roots = [Path(voc_roots)] * len(lists)
        else:
            roots = [Path(p) for p in voc_roots]
        if len(roots) != len(lists):
            raise ValueError(f"{len(lists)} VOC list files but {len(roots)} VOC roots")
        classes = list(classes)
        if len(set(classes)) != len(classes) or not classes:
            raise ValueError(f"VOC classes must be unique and non-empty, got {classes}")
        cat2label = {name: i for i, name in enumerate(classes)}
        source = " + ".join(str(p) for p in lists)
        issues = IssueLog(source)
        records: list[ImageRecord] = []
        skipped = 0
        for list_file, root in zip(lists, roots):
            for img_id in read_list_file(list_file):
                xml_path = root / ann_subdir / f"{img_id}.xml"
                img_path = root / img_subdir / f"{img_id}{img_ext}"
                size, boxes, labels, difficult = parse_voc_xml(xml_path, cat2label)
                if size is None:
                    try:
                        size = read_image_size(img_path)
                    except BadImageError as e:
                        if not options.get("skip_bad", False):
                            raise BadImageError(f"{xml_path} has no <size> and {e}") from None
                        logger.warning("%s: leaving out image %s: %s", source, img_id, e)
                        skipped += 1
                        continue
                height, width = size
                records.append(
                    make_record(
                        len(records),
                        f"{img_subdir}/{img_id}{img_ext}",
                        img_path,
                        height,
                        width,
                        boxes,
                        labels,
                        str(xml_path),
                        issues,
                        difficult=difficult,
                    )
                )
        super().__init__(
            records,
            classes,
            source=source,
            **options,
            issues=issues,
            num_skipped=skipped,
        )
