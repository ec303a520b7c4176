"""mmdetection checkpoints as mmdetection 2.x and 3.x really save them, with pickled dict subclasses
(``ConfigDict``) and ``HistoryBuffer`` objects in ``meta`` / ``message_hub``, convert and load for
``test``.

How the real objects pickle (checked against mmcv 1.x / mmengine 0.10 sources and a file written by
mmengine 0.10.7): mmcv 1.x's ``ConfigDict`` is an ``addict.Dict`` (a dict subclass), pickled by
protocol 2 as NEWOBJ (no ``__init__``), SETITEMS and BUILD; mmengine's ``ConfigDict`` reduces to
``ConfigDict(plain_dict)`` (REDUCE); ``HistoryBuffer`` is NEWOBJ + BUILD with numpy arrays in its
state. The stand-ins below pickle the same way under the real module names.
"""

from __future__ import annotations

import sys
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from locdistill.cli import main
from locdistill.config import BackboneConfig, Config, HeadConfig, ModelConfig, NeckConfig
from locdistill.models.detectors.gfl import GFL, build_gfl
from locdistill.models.from_checkpoint import build_detector_from_checkpoint
from locdistill.weights.mmdet_import import mmdet_class_names, mmdet_meta, restricted_load
from locdistill.weights.restricted_pickle import Placeholder

CLASSES = ("RBC", "WBC", "Platelets")


class MmcvConfigDict(dict):  # type: ignore[type-arg]
    """mmcv 1.x ``ConfigDict``: a dict subclass with instance attributes (NEWOBJ, SETITEMS, BUILD)."""

    __module__, __qualname__ = "mmcv.utils.config", "ConfigDict"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.__dict__["_frozen"] = False


class MmengineConfigDict(dict):  # type: ignore[type-arg]
    """mmengine ``ConfigDict``: pickled as ``ConfigDict(plain_dict)`` (REDUCE with one dict argument)."""

    __module__, __qualname__ = "mmengine.config.config", "ConfigDict"

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return (type(self), (dict(self),))


class HistoryBuffer:
    """mmengine ``HistoryBuffer``: NEWOBJ + BUILD with numpy arrays and ints in its state."""

    __module__ = "mmengine.logging.history_buffer"

    def __init__(self, values: list[float]) -> None:
        self.max_length = 1000000
        self._log_history = np.array(values)
        self._count_history = np.ones(len(values), dtype=np.int64)
        self._statistics_methods = {"names": ["min", "max", "mean", "current"]}


@pytest.fixture
def mm_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    """Modules at the real paths holding the stand-ins, so that pickle can write their names."""
    for cls in (MmcvConfigDict, MmengineConfigDict, HistoryBuffer):
        parts = cls.__module__.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if not getattr(sys.modules.get(name), "_locdistill_fake", False):
                fake = types.ModuleType(name)
                fake._locdistill_fake = True  # type: ignore[attr-defined]
                monkeypatch.setitem(sys.modules, name, fake)
        setattr(sys.modules[cls.__module__], cls.__qualname__, cls)


def tiny_config() -> Config:
    backbone = BackboneConfig(name="resnet18", base_width=16, pretrained=False)
    head = HeadConfig(num_classes=3, feat_channels=32, stacked_convs=1, norm_groups=8)
    return Config(model=ModelConfig(backbone=backbone, neck=NeckConfig(out_channels=32), head=head))


def mmdet_state_dict_of(model: GFL) -> OrderedDict[str, torch.Tensor]:
    """Our weights under mmdetection's names (``bbox_head.*``, ``integral.project`` buffer included)."""
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in model.state_dict().items():
        out[key.replace("head.", "bbox_head.", 1) if key.startswith("head.") else key] = value.clone()
    out["bbox_head.integral.project"] = torch.linspace(0, 16, 17)
    return out


def mmdet2_file(path: Path, model: GFL) -> Path:
    """As mmdetection 2.x (mmcv 1.x runner) saves: meta.config is the config text, meta.CLASSES a tuple."""
    meta = {
        "mmdet_version": "2.10.0",
        "mmcv_version": "1.2.7",
        "config": "model = dict(type='GFL')\nclasses = ('RBC', 'WBC', 'Platelets')\n",
        "CLASSES": CLASSES,
        "epoch": 24,
        "iter": 175872,
        "env_info": "sys.platform: linux",
        "hook_msgs": MmcvConfigDict(last_ckpt="work_dirs/gfl/epoch_24.pth", nested=MmcvConfigDict(a=1)),
    }
    optimizer = {"state": {}, "param_groups": [{"lr": 0.01, "momentum": 0.9, "params": [0, 1]}]}
    torch.save({"meta": meta, "state_dict": mmdet_state_dict_of(model), "optimizer": optimizer}, path)
    return path


def mmdet3_file(path: Path, model: GFL) -> Path:
    """As mmdetection 3.x (mmengine runner) saves: meta.dataset_meta (a ConfigDict), message_hub."""
    meta = {
        "cfg": "model = dict(type='GFL')\n",
        "seed": np.int64(42),
        "experiment_name": "gfl_r18",
        "time": "20240101_000000",
        "mmengine_version": "0.10.7",
        "dataset_meta": MmengineConfigDict(classes=CLASSES, palette=[(220, 20, 60), (0, 0, 1)]),
        "epoch": 12,
        "iter": 88000,
    }
    message_hub = {
        "log_scalars": OrderedDict(
            [("train/loss", HistoryBuffer([1.5, 0.5])), ("train/lr", HistoryBuffer([0.01]))]
        ),
        "runtime_info": OrderedDict([("epoch", 12), ("iter", 88000), ("dataset_meta", {"classes": CLASSES})]),
        "resumed_keys": OrderedDict([("epoch", False), ("iter", False)]),
    }
    schedulers = [{"base_lrs": [0.01], "last_step": 88000, "cfg": MmcvConfigDict(type="MultiStepLR")}]
    ckpt = {
        "meta": meta,
        "state_dict": mmdet_state_dict_of(model),
        "message_hub": message_hub,
        "param_schedulers": schedulers,
    }
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("version", [2, 3])
def test_mmdet_file_with_pickled_objects_converts_and_loads(
    tmp_path: Path, mm_modules: None, version: int, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tiny_config()
    torch.manual_seed(0)
    model = build_gfl(cfg.model).eval()
    write = mmdet2_file if version == 2 else mmdet3_file
    src = write(tmp_path / f"gfl_mmdet{version}.pth", model)

    obj = restricted_load(src)
    if version == 2:
        hook_msgs = obj["meta"]["hook_msgs"]
        assert isinstance(hook_msgs, Placeholder) and hook_msgs.state == {"_frozen": False}
        assert hook_msgs.dict_items["nested"].dict_items == {"a": 1}
    else:
        buffer = obj["message_hub"]["log_scalars"]["train/loss"]
        assert isinstance(buffer, Placeholder) and buffer.name == "HistoryBuffer"
        assert set(buffer.state) == {"max_length", "_log_history", "_count_history", "_statistics_methods"}
    assert mmdet_class_names(obj) == list(CLASSES)
    meta = mmdet_meta(obj)
    assert meta["epoch"] == (24 if version == 2 else 12)
    assert ("config" if version == 2 else "cfg") in meta

    # convert --from-mmdet
    out = tmp_path / "converted.pth"
    assert main(["convert", str(src), str(out), "--from-mmdet"]) == 0
    assert "converted mmdetection checkpoint" in capsys.readouterr().out
    converted = torch.load(out, weights_only=True)
    assert converted["meta"]["class_names"] == list(CLASSES)
    assert converted["model"].keys() == model.state_dict().keys()

    # loading for `test` (the same function `locdistill test` uses), from the file itself and converted
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(images)
        for path in (src, out):
            loaded, _ = build_detector_from_checkpoint(path, tiny_config())
            got = loaded(images)
            for a, b in zip(expected.cls_scores + expected.bbox_preds, got.cls_scores + got.bbox_preds):
                assert torch.equal(a, b)
