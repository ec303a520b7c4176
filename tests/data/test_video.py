"""Video I/O with PyAV: odd frame sizes are padded for yuv420p, the frame rate is kept, and a missing
PyAV or an unreadable file is a one-line error naming the file."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from locdistill.data.video import VideoError, VideoWriter, read_video_frames, video_fps


def test_write_and_read_back_with_odd_sizes(tmp_path: Path) -> None:
    pytest.importorskip("av")
    frames = [torch.full((3, 47, 63), 40 * k, dtype=torch.uint8) for k in range(4)]
    path = tmp_path / "odd.mp4"
    with VideoWriter(path, fps=12.5) as writer:
        for f in frames:
            writer.write(f)
    back = list(read_video_frames(path))
    assert len(back) == 4 and tuple(back[0].shape) == (3, 48, 64)  # one row and column repeated
    assert video_fps(path) == pytest.approx(12.5)
    for k, f in enumerate(back):
        assert abs(float(f[:, :47, :63].float().mean()) - 40 * k) < 3  # flat frames survive the codec


def test_unreadable_video_names_the_file(tmp_path: Path) -> None:
    pytest.importorskip("av")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    with pytest.raises(VideoError, match=r"cannot (read|decode) video file .*bad\.mp4"):
        list(read_video_frames(bad))
    with pytest.raises(VideoError, match=r"video file not found: .*missing\.mp4"):
        list(read_video_frames(tmp_path / "missing.mp4"))


def test_missing_pyav_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # import av raises ImportError
    path = tmp_path / "clip.mp4"
    path.write_bytes(np.zeros(10, np.uint8).tobytes())
    with pytest.raises(VideoError, match=r"clip\.mp4: reading and writing video needs PyAV: pip install"):
        list(read_video_frames(path))
