"""Box geometry on tensors, the bottom floor of the package (imports only torch): overlaps, DIoU and the
distance <-> box coding. Everything above (losses, models, distill) takes its geometry from here."""

from locdistill.ops.box_ops import bbox2distance, bbox_overlaps, box_area, box_centers, distance2bbox
from locdistill.ops.diou import anchor_gt_diou, centre_distance_penalty, diou_matrix, iou_and_diou

__all__ = [
    "anchor_gt_diou",
    "bbox2distance",
    "bbox_overlaps",
    "box_area",
    "box_centers",
    "centre_distance_penalty",
    "diou_matrix",
    "distance2bbox",
    "iou_and_diou",
]
