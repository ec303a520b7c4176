"""``evaluate_checkpoint`` (what ``locdistill test`` runs): a config and a checkpoint in, metrics, the
table and the result records out, on one process."""

from __future__ import annotations

from pathlib import Path

import pytest

from locdistill.engine.checkpoint import save_checkpoint
from locdistill.engine.evaluate import evaluate_checkpoint
from locdistill.models.detectors.gfl import build_gfl
from tests.helpers import tiny_config


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Random weights of the tiny config's detector: ``(checkpoint, the folder of the tiny config)``."""
    base = tmp_path_factory.mktemp("evaluate")
    cfg = tiny_config(base, ["model.test.score_thr=0.0"])
    model = build_gfl(cfg.model)
    return save_checkpoint(base / "random.pth", {"model": model.state_dict()}), base


def test_coco_metrics_table_and_results(checkpoint: tuple[Path, Path]) -> None:
    ckpt, base = checkpoint
    cfg = tiny_config(base, ["model.test.score_thr=0.0"])
    result = evaluate_checkpoint(ckpt, cfg)  # no data.test: data.val
    assert result is not None and result.num_images == 6
    assert "AP" in result.metrics and 0.0 <= result.metrics["AP"] <= 1.0
    assert "Average Precision" in result.table
    assert result.records and {"image_id", "category_id", "bbox", "score"} <= set(result.records[0])


def test_format_only_and_the_voc_metric(checkpoint: tuple[Path, Path]) -> None:
    ckpt, base = checkpoint
    cfg = tiny_config(base, ["model.test.score_thr=0.0"])
    only = evaluate_checkpoint(ckpt, cfg, format_only=True)
    assert only is not None and only.metrics == {} and only.table == "" and only.records
    voc = evaluate_checkpoint(ckpt, cfg, split="val", metric="voc")
    assert voc is not None and "mAP" in voc.metrics
    assert {"label", "category"} <= set(voc.records[0])  # detection records name the class
