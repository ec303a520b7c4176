"""The restricted unpickler for foreign checkpoints: a crafted file can neither run code nor change
anything outside the data it returns (torch's own functions included), and its storages are capped."""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from locdistill.weights.restricted_pickle import (
    Placeholder,
    UnsafeCheckpointError,
    _pickle_module,
    restricted_load,
)

MARKER = "PAYLOAD_GOES_HERE_0123"


def _unicode(text: str) -> bytes:
    """BINUNICODE, the string opcode of torch.save's protocol 2 pickles."""
    return b"X" + struct.pack("<I", len(text)) + text.encode()


# Pickle opcodes written by hand: each payload leaves one object on the stack, where the marker string was.
NEG_DEFAULTS = (  # BUILD on the global torch._utils._rebuild_tensor_v2 with slot state
    b"ctorch._utils\n_rebuild_tensor_v2\n"  # GLOBAL
    + b"N}"  # NONE (no __dict__ state), EMPTY_DICT (slot state)
    + _unicode("__defaults__")
    + b"}"
    + _unicode("neg")
    + b"\x88s"  # NEWTRUE, SETITEM -> {"neg": True}
    + b"\x85s"  # TUPLE1, SETITEM -> {"__defaults__": ({"neg": True},)}
    + b"\x86b"  # TUPLE2 -> (None, {...}), BUILD: setattr(_rebuild_tensor_v2, "__defaults__", ...)
)
PAYLOADS = {
    "BUILD on torch._utils._rebuild_tensor_v2": NEG_DEFAULTS,
    "BUILD on collections.OrderedDict": b"ccollections\nOrderedDict\n}" + _unicode("x") + b"K\x01sb",
    "BUILD on a placeholder class": b"cmmengine\nConfigDict\n}" + _unicode("x") + b"K\x01sb",
    "SETITEM on a global": b"ctorch._utils\n_rebuild_parameter\n" + _unicode("k") + b"K\x01s",
    "EXT1 opcode": b"\x82\x01",
}


def _craft(tmp_path: Path, payload: bytes, name: str = "crafted.pth") -> Path:
    """A real torch zip checkpoint (mmdetection layout) whose ``meta.x`` is replaced by ``payload``."""
    ckpt = {
        "meta": {"x": MARKER},
        "state_dict": {"backbone.conv1.weight": torch.ones(2, 3), "bbox_head.gfl_cls.weight": torch.ones(2)},
    }
    plain = tmp_path / "plain.pth"
    torch.save(ckpt, plain)
    out = tmp_path / name
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/data.pkl"):
                assert data.count(_unicode(MARKER)) == 1
                data = data.replace(_unicode(MARKER), payload)
            dst.writestr(info, data)
    return out


class Obj:
    def __init__(self) -> None:
        self.values = [1, 2]


def _clean(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    state = {"w": torch.arange(6.0).reshape(2, 3) - 2.5, "b": torch.tensor([1, -2, 3])}
    path = tmp_path / "clean.pth"
    torch.save({"state_dict": OrderedDict(state), "meta": {"epoch": 1}}, path)
    return path, state


def _assert_clean_loads_unchanged(path: Path, state: dict[str, torch.Tensor]) -> None:
    for loaded in (torch.load(path, weights_only=True), restricted_load(path)):
        assert loaded["meta"] == {"epoch": 1}
        for key, value in state.items():
            got = loaded["state_dict"][key]
            assert torch.equal(got, value) and not got.is_neg() and got.dtype == value.dtype


def test_the_tampering_payload_is_real(tmp_path: Path) -> None:
    """Sanity for the test below: under an unrestricted torch.load the crafted file really changes how
    every later file loads (restored at once)."""
    crafted = _craft(tmp_path, NEG_DEFAULTS)
    clean, state = _clean(tmp_path)
    original = torch._utils._rebuild_tensor_v2.__defaults__  # type: ignore[attr-defined]
    try:
        torch.load(crafted, weights_only=False)
        assert torch.equal(torch.load(clean, weights_only=True)["state_dict"]["w"], -state["w"])
    finally:
        torch._utils._rebuild_tensor_v2.__defaults__ = original  # type: ignore[attr-defined]
    _assert_clean_loads_unchanged(clean, state)


@pytest.mark.parametrize("what", sorted(PAYLOADS))
def test_tampering_file_is_refused_and_changes_nothing(tmp_path: Path, what: str) -> None:
    crafted = _craft(tmp_path, PAYLOADS[what])
    clean, state = _clean(tmp_path)
    with pytest.raises(UnsafeCheckpointError) as info:
        restricted_load(crafted)
    message = str(info.value)
    assert message.startswith(f"{crafted}: refused to load: the pickle ") and "\n" not in message
    if what.startswith("BUILD"):
        assert "sets the state (BUILD)" in message
    if "_rebuild_tensor_v2" in what:
        assert "torch._utils._rebuild_tensor_v2" in message
    assert torch._utils._rebuild_tensor_v2.__defaults__ == (None,)  # type: ignore[attr-defined]
    _assert_clean_loads_unchanged(clean, state)


def test_each_load_hands_out_fresh_callables_never_torchs_own() -> None:
    a = _pickle_module(1 << 20).Unpickler(io.BytesIO(b""))
    b = _pickle_module(1 << 20).Unpickler(io.BytesIO(b""))
    names = [("torch._utils", "_rebuild_tensor_v2"), ("collections", "OrderedDict"), ("torch", "Size")]
    for mod, name in names:
        fa, fb = a.find_class(mod, name), b.find_class(mod, name)
        assert fa is not fb and fa is not getattr(__import__(mod, fromlist=[name]), name)
    placeholder = a.find_class("os", "system")
    assert issubclass(placeholder, Placeholder) and placeholder is not b.find_class("os", "system")


def test_storage_cap_names_file_and_cap(tmp_path: Path) -> None:
    path = tmp_path / "big.pth"
    torch.save({"state_dict": {"a": torch.zeros(1000), "b": torch.zeros(10)}}, path)  # 4040 bytes
    assert restricted_load(path, max_storage_bytes=4040)["state_dict"]["a"].shape == (1000,)
    with pytest.raises(UnsafeCheckpointError, match=rf"^{path}: refused to load: .*cap of 4039 bytes"):
        restricted_load(path, max_storage_bytes=4039)
    shared = tmp_path / "shared.pth"  # two views of one storage count once
    base = torch.zeros(1000)
    torch.save({"a": base[:10], "b": base[10:]}, shared)
    assert restricted_load(shared, max_storage_bytes=4000)["b"].shape == (990,)


def test_legacy_format_and_pickled_objects_load_inertly(tmp_path: Path) -> None:
    sd = OrderedDict(w=torch.randn(3, 2))
    sd._metadata = OrderedDict({"": {"version": 1}})  # type: ignore[attr-defined]  # as state_dict() has
    obj = {"state_dict": sd, "obj": Obj(), "set": {1, 2}, "size": torch.Size([2, 3]), "c": 1 + 2j}
    for zip_format in (True, False):
        path = tmp_path / f"f{zip_format}.pth"
        torch.save(obj, path, _use_new_zipfile_serialization=zip_format, pickle_module=pickle)
        loaded = restricted_load(path)
        assert torch.equal(loaded["state_dict"]["w"], sd["w"])
        assert loaded["state_dict"]._metadata == sd._metadata  # type: ignore[attr-defined]
        assert (loaded["set"], loaded["size"], loaded["c"]) == ({1, 2}, torch.Size([2, 3]), 1 + 2j)
        assert isinstance(loaded["obj"], Placeholder) and loaded["obj"].state == {"values": [1, 2]}
