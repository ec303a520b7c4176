"""experiments/e2e_mmdet/write_demo_coco.py: the demo's synthetic set as COCO json + PNG, pixel for pixel."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from locdistill.config import DataConfig, DatasetConfig
from locdistill.data import build_dataset
from locdistill.data.synthetic import SHAPE_CLASSES, SyntheticDataset
from tests.helpers import ROOT

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _writer() -> ModuleType:
    path = ROOT / "experiments" / "e2e_mmdet" / "write_demo_coco.py"
    spec = importlib.util.spec_from_file_location("write_demo_coco", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_written_coco_equals_in_memory_demo_set(tmp_path: Path) -> None:
    _writer().write_demo_coco(tmp_path, seed=3, num_train=3, num_val=2, size=64)
    for split, train, n in (("train", True, 3), ("val", False, 2)):
        ann = json.loads((tmp_path / "annotations" / f"instances_{split}.json").read_text())
        assert [c["name"] for c in ann["categories"]] == list(SHAPE_CLASSES)
        assert len(ann["images"]) == n
        assert all(a["iscrowd"] == 0 and a["area"] > 0 for a in ann["annotations"])
        cfg = DatasetConfig(format="coco", root=str(tmp_path), ann_file=f"annotations/instances_{split}.json")
        written = build_dataset(cfg, DataConfig(), train=False, mean=MEAN, std=STD)
        memory = SyntheticDataset(n, 64, 3, train=train)
        assert len(written) == n
        for i in range(n):
            assert torch.equal(written.load_image(i), memory.load_image(i)), (split, i)
            np.testing.assert_array_equal(written.records[i].boxes, memory.records[i].boxes)
            np.testing.assert_array_equal(written.records[i].labels, memory.records[i].labels)
