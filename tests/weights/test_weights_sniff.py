"""Files that are not weights get one line saying what they are; written weights get the usual
permissions, atomically."""

from __future__ import annotations

import os
import pickle
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from locdistill.cli import main
from locdistill.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from locdistill.utils.atomic_write import atomic_write
from locdistill.weights import read_weights
from locdistill.weights.mmdet_import import convert_mmdet_checkpoint
from locdistill.weights.sniff import describe_unreadable

LFS_POINTER = (
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    "size 130278436\n"
)


def _write_safetensors(path: Path) -> Path:
    save_file({"a": torch.ones(4), "b": torch.zeros(2, 3)}, str(path))
    return path


def _torch_file(path: Path) -> Path:
    torch.save({"model": {"a": torch.ones(4)}}, path)
    return path


# name -> (writer, expected message after "<path> ")
CASES: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "lfs": (
        "x.pth",
        lambda p: p.write_text(LFS_POINTER),
        f"is a Git LFS pointer ({len(LFS_POINTER)} bytes), not the weights: run git lfs pull",
    ),
    "lfs_safetensors": (
        "x.safetensors",
        lambda p: p.write_text(LFS_POINTER),
        "is a Git LFS pointer",
    ),
    "truncated_safetensors": (
        "x.safetensors",
        lambda p: p.write_bytes(_write_safetensors(p).read_bytes()[:-5]),
        "is a corrupt safetensors file",
    ),
    "garbage_safetensors": (
        "x.safetensors",
        lambda p: p.write_bytes(b"\x07" * 64),
        "is a corrupt safetensors file (64 bytes): its header claims",
    ),
    "raw_pickle": (
        "x.pth",
        lambda p: p.write_bytes(pickle.dumps({"a": [1.0, 2.0]}, protocol=4)),
        "is a raw Python pickle (protocol 4",
    ),
    "text": (
        "x.pth",
        lambda p: p.write_text("epoch 1 loss 0.5\n"),
        "is a text file (17 bytes, starting 'epoch",
    ),
    "html": ("x.pth", lambda p: p.write_text("<!DOCTYPE html>\n<html></html>"), "is an HTML page"),
    "empty": ("x.pth", lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    "truncated_zip": (
        "x.pth",
        lambda p: p.write_bytes(_torch_file(p).read_bytes()[:300]),
        "is a truncated or corrupt zip (torch.save) file",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_unreadable_file_is_described(tmp_path: Path, case: str) -> None:
    name, write, expected = CASES[case]
    path = tmp_path / name
    write(path)
    message = describe_unreadable(path)
    assert message is not None and message.startswith(f"{path} {expected}") and "\n" not in message
    # the readers of today raise that line
    with pytest.raises(ValueError) as info:
        read_weights(path)
    assert str(info.value) == message
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value) == message


def test_readable_files_are_not_described(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.pth"
    torch.save({"a": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    mmdet_like = tmp_path / "mmdet.pth"
    torch.save({"state_dict": {"backbone.w": torch.ones(1)}, "meta": {"x": torch.nn.Identity()}}, mmdet_like)
    for path in (_torch_file(tmp_path / "a.pth"), _write_safetensors(tmp_path / "a.safetensors"), legacy):
        assert describe_unreadable(path) is None
    assert describe_unreadable(mmdet_like) is None


def test_misnamed_files_are_described(tmp_path: Path) -> None:
    st_as_pth = tmp_path / "w.pth"
    st_as_pth.write_bytes(_write_safetensors(tmp_path / "w.safetensors").read_bytes())
    assert (
        describe_unreadable(st_as_pth)
        == f"{st_as_pth} is a safetensors file by its content: name it .safetensors"
    )
    pth_as_st = tmp_path / "v.safetensors"
    pth_as_st.write_bytes(_torch_file(tmp_path / "v.pth").read_bytes())
    assert (
        describe_unreadable(pth_as_st)
        == f"{pth_as_st} is a torch.save (zip) checkpoint, not safetensors: name it .pth"
    )


def test_cli_prints_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pointer = tmp_path / "teacher.pth"
    pointer.write_text(LFS_POINTER)
    for extra in ([], ["--from-mmdet"]):
        assert main(["convert", str(pointer), str(tmp_path / "out.pth"), *extra]) == 2
        err = capsys.readouterr().err
        expected = (
            f"{pointer} is a Git LFS pointer ({len(LFS_POINTER)} bytes), not the weights: run git lfs pull"
        )
        assert err == f"error: {expected}\n"
    assert not (tmp_path / "out.pth").exists()


@pytest.fixture
def umask_027() -> Iterator[int]:
    previous = os.umask(0o027)
    try:
        yield 0o640
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_pth_and_safetensors_get_the_same_permissions(tmp_path: Path, umask_027: int) -> None:
    state = {"model": {"head.gfl_cls.weight": torch.ones(3, 2)}, "config": {"a": 1}, "meta": {"b": 2}}
    written = [save_checkpoint(tmp_path / "c.pth", state), save_checkpoint(tmp_path / "c.safetensors", state)]
    mmdet = tmp_path / "mmdet.pth"
    sd = {"backbone.w": torch.ones(2), "bbox_head.gfl_cls.weight": torch.ones(3, 2, 1, 1)}
    sd["bbox_head.gfl_reg.weight"] = torch.ones(68, 2, 1, 1)
    torch.save({"state_dict": sd, "meta": {"CLASSES": ("a", "b", "c")}}, mmdet)
    for name in ("conv.pth", "conv.safetensors"):
        convert_mmdet_checkpoint(mmdet, tmp_path / name)
        written.append(tmp_path / name)
    assert {p.name: _mode(p) for p in written} == {p.name: umask_027 for p in written}
    converted = load_checkpoint(tmp_path / "conv.safetensors")
    assert converted["meta"]["class_names"] == ["a", "b", "c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["mmdet.pth", *(p.name for p in written)])


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "w.safetensors"
    _write_safetensors(target)
    before = target.read_bytes()

    def failing(tmp: str) -> None:
        Path(tmp).write_bytes(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, failing)
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]
