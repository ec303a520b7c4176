"""Video files: decode frames and encode an annotated video, with PyAV (``pip install 'locdistill[video]'``).

torchvision 0.22+ no longer reads or writes video, so both directions use PyAV (FFmpeg's libraries in
one wheel). Frames are ``uint8 [3, H, W]`` RGB tensors, like :func:`~locdistill.data.image_io.read_image`.
Written videos are H.264 (``libx264``; MPEG-4 part 2 where the FFmpeg build lacks it) in ``yuv420p``,
which needs even sizes: an odd height or width gets one more row or column, repeating the last one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"})


class VideoError(RuntimeError):
    """A video that cannot be read or written, or PyAV missing; the message names the file."""


def is_video(path: str | Path) -> bool:
    """Whether ``path`` has a video file suffix."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _av(path: str | Path) -> ModuleType:
    try:
        import av
    except ImportError:
        raise VideoError(
            f"{path}: reading and writing video needs PyAV: pip install 'locdistill[video]' (or av)"
        ) from None
    return av


def video_fps(path: str | Path) -> float:
    """Frames per second of the first video stream (25 when the file does not say)."""
    av = _av(path)
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    except (av.FFmpegError, IndexError) as e:
        raise VideoError(f"cannot read video file {path}: {e}") from None
    return float(rate) if rate else 25.0


def read_video_frames(path: str | Path) -> Iterator[Tensor]:
    """The frames of the first video stream of ``path`` in order, each ``uint8 [3, H, W]`` RGB.

    Raises:
        VideoError: naming the file (and the frame, when decoding fails part-way).
    """
    av = _av(path)
    if not Path(path).is_file():
        raise VideoError(f"video file not found: {path}")
    done = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path} holds no video stream")
            for frame in container.decode(video=0):
                rgb = frame.to_ndarray(format="rgb24")
                yield torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).contiguous()
                done += 1
    except av.FFmpegError as e:
        where = f" after {done} frame(s)" if done else ""
        raise VideoError(f"cannot decode video file {path}{where}: {e}") from None


class VideoWriter:
    """Encode ``uint8 [3, H, W]`` RGB frames (all of one size) into ``path`` at ``fps`` frames per second.

    Use as a context manager; the file is complete when it exits.
    """

    def __init__(self, path: str | Path, fps: float) -> None:
        self.av = _av(path)
        self.path = Path(path)
        self.fps = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(25)
        self.container: Any = None
        self.stream: Any = None

    def __enter__(self) -> VideoWriter:
        try:
            self.container = self.av.open(str(self.path), mode="w")
        except self.av.FFmpegError as e:
            raise VideoError(f"cannot write video file {self.path}: {e}") from None
        return self

    def write(self, frame: Tensor) -> None:
        """Append one frame (``uint8 [3, H, W]`` RGB)."""
        rgb = frame.permute(1, 2, 0).contiguous().numpy()
        height, width = rgb.shape[:2]
        pad_h, pad_w = height % 2, width % 2
        if pad_h or pad_w:
            rgb = np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        if self.stream is None:
            self.stream = self.container.add_stream(_codec(self.av), rate=self.fps)
            self.stream.width, self.stream.height = rgb.shape[1], rgb.shape[0]
            self.stream.pix_fmt = "yuv420p"
        video_frame = self.av.VideoFrame.from_ndarray(rgb, format="rgb24")
        self.container.mux(self.stream.encode(video_frame))

    def __exit__(self, *exc: object) -> None:
        try:
            if self.stream is not None:
                self.container.mux(self.stream.encode(None))  # flush the encoder
        finally:
            self.container.close()


def _codec(av: ModuleType) -> str:
    for name in ("libx264", "mpeg4"):
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # not in this FFmpeg build
            continue
    raise VideoError("this PyAV build has neither the libx264 nor the mpeg4 encoder")
