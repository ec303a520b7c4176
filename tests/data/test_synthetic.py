"""The synthetic shapes dataset: deterministic, tight boxes, small to large objects."""

from __future__ import annotations

import numpy as np
import torch

from locdistill.data import (
    SyntheticDataset,
)


def test_synthetic_is_deterministic_and_tight() -> None:
    a = SyntheticDataset(12, 160, seed=3)
    b = SyntheticDataset(12, 160, seed=3)
    c = SyntheticDataset(12, 160, seed=4)
    val = SyntheticDataset(12, 160, seed=3, train=False)
    for i in range(len(a)):
        torch.testing.assert_close(a.get_annotation(i).boxes, b.get_annotation(i).boxes, rtol=0, atol=0)
        assert torch.equal(a[i][0], b[i][0])
    assert not torch.equal(a[0][0], c[0][0]) and not torch.equal(a[0][0], val[0][0])
    assert a.num_classes == 5 and len(a.class_names) == 5
    sizes = []
    for i in range(len(a)):
        scene, ann = a.scene(i), a.get_annotation(i)
        assert len(scene.shapes) == len(ann) >= 1
        for shape, box in zip(scene.shapes, ann.boxes.tolist()):
            m = shape.mask
            # tight: the mask touches all four sides of its box, and the box is its extent in the image
            assert m[0].any() and m[-1].any() and m[:, 0].any() and m[:, -1].any()
            assert box == [shape.x0, shape.y0, shape.x0 + m.shape[1], shape.y0 + m.shape[0]]
            assert 0 <= box[0] < box[2] <= 160 and 0 <= box[1] < box[3] <= 160
            sizes.append(max(m.shape))
    labels = torch.cat([a.get_annotation(i).labels for i in range(len(a))])
    assert labels.unique().numel() >= 4
    assert min(sizes) <= 16 and max(sizes) >= 40


def test_synthetic_layouts_span_small_to_large_objects() -> None:
    """300 layouts (and a few renders) at 320 px: objects from 6 px up to over 120 px. (No time
    limit: a timed assertion fails on a loaded machine; generating these takes ~0.6 s on an idle CPU.)"""
    ds = SyntheticDataset(300, 320, seed=0)
    for i in range(0, 300, 10):
        ds.load_image(i)
    sizes = np.concatenate([(r.boxes[:, 2:] - r.boxes[:, :2]).max(1) for r in ds.records])
    assert sizes.min() >= 6 and sizes.max() >= 120
