"""Image decoding keeps the pixel values: 16-bit PNGs are scaled to 8 bits instead of saturating, and
every mode that 8-bit RGB cannot hold exactly is reported with a warning naming the file."""

from __future__ import annotations

import logging
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from locdistill.data import image_io
from locdistill.data.image_io import read_image


def write_png16(path: Path, values: np.ndarray) -> Path:
    """A 16-bit PNG (grey ``[H, W]`` or RGB ``[H, W, 3]``), written by hand: PIL cannot write 16-bit RGB."""
    h, w = values.shape[:2]
    colour_type = 2 if values.ndim == 3 else 0
    raw = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image_io, "_warned_modes", set())


def test_16_bit_grey_png_is_scaled_not_saturated(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    values = (np.arange(64 * 64, dtype=np.int64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    path = write_png16(tmp_path / "depth.png", values)
    assert Image.open(path).mode.startswith("I;16")
    with caplog.at_level(logging.WARNING, logger="locdistill"):
        image = read_image(path)
    assert image.shape == (3, 64, 64)
    expected = np.rint(values / 257.0).astype(np.uint8)
    for c in range(3):
        assert np.array_equal(image[c].numpy(), expected)
    assert float((image == 255).float().mean()) < 0.01  # was 99.6 % white
    assert f"image {path} has mode I;16" in caplog.text and "v / 257" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="locdistill"):
        read_image(write_png16(tmp_path / "second.png", values))
    assert caplog.text == ""  # once per mode, not once per image


def test_16_bit_rgb_png_keeps_the_high_byte(tmp_path: Path) -> None:
    values = (np.random.default_rng(0).random((16, 24, 3)) * 65535).astype(np.uint16)
    image = read_image(write_png16(tmp_path / "rgb16.png", values))
    assert np.abs(image.permute(1, 2, 0).numpy().astype(int) - values.astype(int) / 257).max() <= 1


@pytest.mark.parametrize(
    ("mode", "make", "expected_grey"),
    [
        ("I", lambda: np.full((4, 4), 200, np.int32), 200),  # 32-bit ints within 0-255 are kept
        ("I", lambda: np.full((4, 4), 65535, np.int32), 255),  # beyond 255: 16-bit range
        ("F", lambda: np.full((4, 4), 0.5, np.float32), 128),  # floats in [0, 1]
        ("F", lambda: np.full((4, 4), 100.0, np.float32), 100),  # floats in 0-255
    ],
)
def test_integer_and_float_modes_are_scaled_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: str, make, expected_grey: int
) -> None:
    path = tmp_path / "x.tif"
    Image.fromarray(make(), mode=mode).save(path)
    with caplog.at_level(logging.WARNING, logger="locdistill"):
        image = read_image(path)
    assert int(image.min()) == int(image.max()) == expected_grey
    assert f"image {path} has mode {mode}" in caplog.text


def test_cmyk_is_reported_and_exact_modes_are_silent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.png")
    with caplog.at_level(logging.WARNING, logger="locdistill"):
        assert np.array_equal(read_image(tmp_path / "rgb.png").permute(1, 2, 0).numpy(), rgb)
        read_image(tmp_path / "p.png")
        grey = read_image(tmp_path / "grey.png")
        assert np.array_equal(grey[1].numpy(), rgb[..., 0])
        assert caplog.text == ""
        read_image(tmp_path / "cmyk.jpg")
    assert "has mode CMYK" in caplog.text and "approximately" in caplog.text
