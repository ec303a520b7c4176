"""The one weight reader: every supported format in, one WeightsError for every file that cannot be."""

from __future__ import annotations

import os
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from locdistill.engine.checkpoint import save_checkpoint, strip_to_weights
from locdistill.weights import (
    WeightsError,
    WeightsFileNotFoundError,
    extract_state_dict,
    read_weights,
)
from locdistill.weights.mmdet_import import convert_mmdet_checkpoint


def small_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)).state_dict()


def gfl_like_state() -> dict[str, torch.Tensor]:
    """A few keys in our GFL layout (what an mmdetection file converts to)."""
    g = torch.Generator().manual_seed(0)
    return {
        "backbone.conv1.weight": torch.randn(4, 3, 3, 3, generator=g),
        "neck.lateral_convs.0.conv.weight": torch.randn(8, 4, 1, 1, generator=g),
        "head.gfl_cls.weight": torch.randn(3, 8, 3, 3, generator=g),
        "head.gfl_reg.weight": torch.randn(68, 8, 3, 3, generator=g),
        "head.scales.0.scale": torch.ones(1),
    }


def as_mmdet(state: dict[str, torch.Tensor]) -> OrderedDict:
    out = OrderedDict()
    for k, v in state.items():
        out[k.replace("head.", "bbox_head.", 1) if k.startswith("head.") else k] = v.clone()
    out["bbox_head.integral.project"] = torch.linspace(0, 16, 17)
    return out


class HistoryBuffer:  # stands in for the mmengine objects real mmdetection checkpoints pickle
    def __init__(self) -> None:
        self.values = np.arange(3.0)


class Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_CHECKPOINT",))


def equal_states(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------------ formats
def test_ours_and_converted(tmp_path: Path) -> None:
    sd = small_state()
    ema = {k: v + 1 for k, v in sd.items()}
    full = {
        "model": sd,
        "ema": {"module": ema, "updates": 2},
        "optimizer": {"state": {}},
        "config": {"metric": "voc"},
        "meta": {"class_names": ["a", "b"], "git_rev": "abc"},
    }
    save_checkpoint(tmp_path / "train.pth", full)
    f = read_weights(tmp_path / "train.pth")
    assert f.format == "locdistill" and f.config == {"metric": "voc"}
    assert f.meta["git_rev"] == "abc" and f.class_names == ["a", "b"]
    assert equal_states(extract_state_dict(f)[0], sd)
    assert equal_states(extract_state_dict(f, use_ema=True)[0], ema)
    save_checkpoint(tmp_path / "small.pth", strip_to_weights(full, use_ema=True))  # locdistill convert
    small = read_weights(tmp_path / "small.pth")
    assert set(small.content) == {"model", "config", "meta"} and small.meta["weights"] == "ema"
    assert equal_states(extract_state_dict(small)[0], ema)
    with pytest.raises(WeightsError, match="small.pth has no EMA weights"):
        extract_state_dict(small, use_ema=True)


def test_safetensors_keeps_config_and_meta(tmp_path: Path) -> None:
    sd = small_state()
    path = save_checkpoint(
        tmp_path / "w.safetensors", {"model": sd, "config": {"metric": "voc"}, "meta": {"x": 1}}
    )
    f = read_weights(path)
    assert f.format == "safetensors" and f.config == {"metric": "voc"} and f.meta == {"x": 1}
    assert equal_states(extract_state_dict(f)[0], sd)


def test_plain_state_dicts_and_ddp_prefix(tmp_path: Path) -> None:
    sd = small_state()
    torch.save(sd, tmp_path / "plain.pth")
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "ddp.pth")
    torch.save({"model": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "ddp_ours.pth")
    for name in ("plain.pth", "ddp.pth", "ddp_ours.pth"):
        f = read_weights(tmp_path / name)
        assert f.format == ("locdistill" if name == "ddp_ours.pth" else "state_dict")
        assert f.config is None
        assert equal_states(extract_state_dict(f)[0], sd), name


def test_mmdetection_through_the_restricted_loader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ours = gfl_like_state()
    mm = as_mmdet(ours)
    mm["teacher_model.bbox_head.gfl_cls.weight"] = torch.zeros(1)
    meta = {"epoch": 12, "CLASSES": ("cat", "dog", "cow"), "hist": HistoryBuffer(), "evil": Evil()}
    torch.save({"state_dict": mm, "meta": meta, "message_hub": {"x": HistoryBuffer()}}, tmp_path / "mm.pth")
    f = read_weights(tmp_path / "mm.pth")
    assert not (tmp_path / "PWNED_BY_CHECKPOINT").exists()
    assert f.format == "mmdetection" and f.config is None
    assert f.meta["converted_from"] == "mmdetection" and f.meta["epoch"] == 12
    assert f.class_names == ["cat", "dog", "cow"]
    state, skipped = extract_state_dict(f)
    assert equal_states(state, ours) and skipped == ["teacher_model.bbox_head.gfl_cls.weight"]
    # mmdetection files are refused where only our own checkpoints make sense (resume)
    with pytest.raises(WeightsError, match="refusing to load .*mm.pth"):
        read_weights(tmp_path / "mm.pth", allow_mmdet=False)
    # a file converted with 'locdistill convert --from-mmdet' is one of ours
    convert_mmdet_checkpoint(tmp_path / "mm.pth", tmp_path / "converted.pth")
    conv = read_weights(tmp_path / "converted.pth", allow_mmdet=False)
    assert conv.format == "locdistill" and equal_states(extract_state_dict(conv)[0], ours)


def test_mmdetection_file_with_plain_meta_is_converted_too(tmp_path: Path) -> None:
    ours = gfl_like_state()
    torch.save({"state_dict": as_mmdet(ours), "meta": {"epoch": 1}}, tmp_path / "mm_plain.pth")
    f = read_weights(tmp_path / "mm_plain.pth")  # torch.load(weights_only=True) reads this one
    assert f.format == "mmdetection"
    assert equal_states(extract_state_dict(f)[0], ours)


# ------------------------------------------------------------------------------------------ errors
def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, what its error must say besides the file name: what the file is, or what is wrong)."""
    torch.save({"model": small_state(), "x": Evil()}, tmp / "objects.pth")
    torch.save([1, 2], tmp / "list.pth")
    torch.save({"optimizer": {"lr": 0.1}}, tmp / "no_weights.pth")
    good = tmp / "good.pth"
    torch.save(small_state(), good)
    blob = good.read_bytes()
    save_checkpoint(tmp / "ok.safetensors", {"model": small_state()})
    st = (tmp / "ok.safetensors").read_bytes()
    from safetensors.torch import save_file

    save_file(small_state(), str(tmp / "badmeta.safetensors"), metadata={"config": "{not json"})
    rpn = {
        "backbone.conv1.weight": torch.zeros(4, 3, 7, 7),
        "bbox_head.rpn_cls.weight": torch.zeros(3, 4, 1, 1),
    }
    torch.save({"state_dict": rpn, "meta": {"h": HistoryBuffer()}}, tmp / "rpn.pth")
    return {
        "missing": (tmp / "missing.pth", "checkpoint not found"),
        "objects": (tmp / "objects.pth", "refusing to load"),
        "list": (tmp / "list.pth", "expected a dict"),
        "no_weights": (tmp / "no_weights.pth", "no model weights found"),
        "raw_pickle": (_write(tmp / "raw.pkl", pickle.dumps({"a": 1})), "is a raw Python pickle"),
        "text": (_write(tmp / "notes.pth", b"these are not weights\n"), "is a text file"),
        "lfs": (
            _write(tmp / "lfs.pth", b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n"),
            "is a Git LFS pointer",
        ),
        "empty": (_write(tmp / "empty.pth", b""), "is empty"),
        "truncated": (_write(tmp / "truncated.pth", blob[: len(blob) // 2]), "truncated or corrupt zip"),
        "safetensors_corrupt": (
            _write(tmp / "bad.safetensors", st[: len(st) // 2]),
            "is a corrupt safetensors file",
        ),
        "safetensors_metadata": (tmp / "badmeta.safetensors", "safetensors file is not JSON"),
        "mmdet_not_gfl": (tmp / "rpn.pth", "not a GFL/LD detector checkpoint"),
    }


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize(
    "name",
    [
        "missing",
        "objects",
        "list",
        "no_weights",
        "raw_pickle",
        "text",
        "lfs",
        "empty",
        "truncated",
        "safetensors_corrupt",
        "safetensors_metadata",
        "mmdet_not_gfl",
    ],
)
def test_every_failure_is_one_line_weights_error_naming_the_file(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path, expected = _bad_files(tmp_path)[name]
    with pytest.raises(WeightsError) as err:
        extract_state_dict(read_weights(path))
    message = str(err.value)
    assert expected in message and path.name in message
    assert "\n" not in message.strip()
    if name == "missing":
        assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, WeightsFileNotFoundError)
    assert not (tmp_path / "PWNED_BY_CHECKPOINT").exists()


def test_a_torch_zip_with_objects_is_refused_even_without_a_named_global(tmp_path: Path) -> None:
    torch.save({"model": small_state(), "x": Evil()}, tmp_path / "objects.pth")
    assert zipfile.is_zipfile(tmp_path / "objects.pth")
    with pytest.raises(WeightsError, match="weights_only=True refuses"):
        read_weights(tmp_path / "objects.pth")
