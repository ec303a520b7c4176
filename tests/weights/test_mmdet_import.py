"""Importing mmdetection checkpoints: key mapping round trip, refusing other architectures, and
never executing code from the file."""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from locdistill.weights import WeightsError, load_weights, read_weights
from locdistill.weights.mmdet_import import (
    Placeholder,
    convert_mmdet_checkpoint,
    is_mmdet_checkpoint,
    mmdet_state_dict,
    restricted_load,
)
from tests.helpers import make_batch, tiny_gfl


def to_mmdet_keys(state: dict[str, torch.Tensor]) -> OrderedDict:
    """Our GFL state dict written out in mmdetection's naming, by hand from mmdetection's layout:
    ``backbone.*``, ``neck.lateral_convs.i.conv.*``, ``neck.fpn_convs.i.conv.*``,
    ``bbox_head.{cls,reg}_convs.i.{conv,gn}.*``, ``bbox_head.gfl_cls/gfl_reg.*``,
    ``bbox_head.scales.l.scale`` and the ``bbox_head.integral.project`` buffer."""
    out = OrderedDict()
    for key, value in state.items():
        if key.startswith("head."):
            key = "bbox_head." + key[len("head.") :]
            key = key.replace("bbox_head.dgqp.reg_conf", "bbox_head.reg_conf")
        out[key] = value.clone()
    out["bbox_head.integral.project"] = torch.linspace(0, 16, 17)
    return out


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_CHECKPOINT",))


class HistoryBuffer:  # stands in for mmengine's objects stored in message_hub
    def __init__(self) -> None:
        self.values = np.arange(3.0)


def _mmdet_file(tmp_path: Path, model: torch.nn.Module, extra_meta: dict | None = None) -> Path:
    ckpt = {
        "meta": {
            "epoch": 12,
            "iter": 88000,
            "mmdet_version": "3.3.0",
            "hist": HistoryBuffer(),
            "seed": np.int64(7),
            **(extra_meta or {}),
        },
        "state_dict": to_mmdet_keys(model.state_dict()),
        "message_hub": {"log_scalars": {"loss": HistoryBuffer()}},
    }
    path = tmp_path / "gfl_mmdet.pth"
    torch.save(ckpt, path)
    return path


def test_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    src = tiny_gfl(0).eval()
    path = _mmdet_file(tmp_path, src)
    dst = tiny_gfl(1).eval()
    report = load_weights(dst, path)
    assert report.format == "mmdetection" and not report.missing and not report.unexpected
    batch = make_batch(1)
    a, b = src(batch.images), dst(batch.images)
    for x, y in zip(a.cls_scores + a.bbox_preds, b.cls_scores + b.bbox_preds):
        assert torch.equal(x, y)
    da, db = src.predict(a, batch.metas), dst.predict(b, batch.metas)
    assert torch.equal(da[0].boxes, db[0].boxes)


def test_convert_writes_weights_only_loadable_file(tmp_path: Path) -> None:
    src = tiny_gfl(0)
    path = _mmdet_file(tmp_path, src)
    out = tmp_path / "converted.pth"
    report = convert_mmdet_checkpoint(path, out)
    assert report["head"]["num_classes"] == 3 and report["head"]["reg_max"] == 16
    assert report["mmdet_meta"]["epoch"] == 12
    loaded = torch.load(out, weights_only=True)
    dst = tiny_gfl(1)
    dst.load_state_dict(loaded["model"])
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k])


def test_ld_checkpoint_teacher_keys_are_reported(tmp_path: Path) -> None:
    src = tiny_gfl(0)
    sd = to_mmdet_keys(src.state_dict())
    sd["teacher_model.bbox_head.gfl_cls.weight"] = torch.zeros(1)
    state, skipped = mmdet_state_dict({"state_dict": sd, "meta": {}})
    assert skipped == ["teacher_model.bbox_head.gfl_cls.weight"]
    assert "head.gfl_cls.weight" in state


def test_other_architecture_is_refused_cleanly(tmp_path: Path) -> None:
    sd = {
        "backbone.conv1.weight": torch.zeros(4, 3, 7, 7),
        "bbox_head.rpn_cls.weight": torch.zeros(3, 4, 1, 1),
    }
    path = tmp_path / "rpn.pth"
    torch.save({"state_dict": sd, "meta": {"x": HistoryBuffer()}}, path)
    with pytest.raises(WeightsError, match="not a GFL/LD detector checkpoint.*rpn_cls"):
        load_weights(tiny_gfl(0), path)


def test_malicious_checkpoint_never_runs_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    src = tiny_gfl(0)
    path = _mmdet_file(tmp_path, src, {"evil": _Evil()})
    obj = restricted_load(path)
    assert not (tmp_path / "PWNED_BY_CHECKPOINT").exists()
    assert isinstance(obj["meta"]["evil"], Placeholder)
    assert isinstance(obj["meta"]["hist"], Placeholder)
    assert is_mmdet_checkpoint(obj)
    dst = tiny_gfl(1)
    load_weights(dst, path)
    assert not (tmp_path / "PWNED_BY_CHECKPOINT").exists()
    # a non-mmdetection file with an object in it is refused outright
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        torch.save({"model": {}, "x": _Evil()}, f)
    with pytest.raises(WeightsError, match="refusing to load"):
        read_weights(evil)
    assert not (tmp_path / "PWNED_BY_CHECKPOINT").exists()
    # sanity: the evil payload really would run under a plain unpickler
    assert pickle.dumps(_Evil())
