"""Teacher-assistant chains: the stages are checked before anything trains."""

from __future__ import annotations

import pytest

from locdistill.engine.chain import plan_chain

LD_STAGE = "ld/ld_gflv1_r101_r34_fpn_coco_1x"
LD_STAGE_2 = "ld/ld_gflv1_r34_r18_fpn_coco_1x"


def test_a_chain_needs_two_distillation_stages() -> None:
    with pytest.raises(ValueError, match="at least two stage configs"):
        plan_chain([LD_STAGE])
    with pytest.raises(ValueError, match=r"gfl_r18_fpn_coco128: chain stages must have a 'distill' section"):
        plan_chain([LD_STAGE, "gfl/gfl_r18_fpn_coco128"])


def test_stages_load_with_the_overrides() -> None:
    stages = plan_chain([LD_STAGE, LD_STAGE_2], ["train.epochs=1"])
    assert [cfg.train.epochs for cfg in stages] == [1, 1]
    assert all(cfg.distill is not None for cfg in stages)
