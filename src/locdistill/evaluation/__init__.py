"""Detection metrics: COCO (pycocotools) and PASCAL VOC (mmdetection 2.10 / LD semantics)."""

from locdistill.evaluation.coco import COCO_BACKENDS, COCO_METRIC_NAMES, CocoEvaluator, format_coco_table
from locdistill.evaluation.coco_summary import ap_per_iou, classwise_ap, format_classwise_table
from locdistill.evaluation.voc import (
    VOC_IOU_THRS,
    VOCClassResult,
    VOCEvaluator,
    VOCResult,
    average_precision,
    format_voc_table,
    voc_bbox_overlaps,
)

__all__ = [
    "COCO_BACKENDS",
    "COCO_METRIC_NAMES",
    "VOC_IOU_THRS",
    "CocoEvaluator",
    "VOCClassResult",
    "VOCEvaluator",
    "VOCResult",
    "ap_per_iou",
    "average_precision",
    "classwise_ap",
    "format_classwise_table",
    "format_coco_table",
    "format_voc_table",
    "voc_bbox_overlaps",
]
