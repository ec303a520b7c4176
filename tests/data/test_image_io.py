"""The JPEG decoder (torchvision's libjpeg-turbo) gives PIL's pixels; other files and CMYK JPEGs go to PIL."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from locdistill.data import image_io
from locdistill.data.image_io import read_image


def pil_pixels(path: Path) -> np.ndarray:
    """``[3, H, W]`` uint8 RGB as PIL decodes ``path`` (no EXIF rotation)."""
    with Image.open(path) as im:
        return np.array(im.convert("RGB")).transpose(2, 0, 1)


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image_io, "_warned_modes", set())


def test_coco128_photos_decode_to_pils_pixels(coco128_dir: Path) -> None:
    paths = sorted((coco128_dir / "images/train2017").glob("*.jpg"))[:24]
    paths.append(coco128_dir / "images/train2017/000000000086.jpg")  # the grey one
    for path in paths:
        image = read_image(path)
        assert image.shape[0] == 3 and image.dtype.is_floating_point is False
        assert np.array_equal(image.numpy(), pil_pixels(path)), path


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_jpeg_pixels_match_pil_and_the_pil_fallback(
    tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    shape = (37, 53, 3) if mode == "RGB" else (37, 53)
    path = tmp_path / f"{mode}.jpg"
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path, quality=90)
    fast = read_image(path)
    assert fast.shape == (3, 37, 53)
    assert np.array_equal(fast.numpy(), pil_pixels(path))
    monkeypatch.setattr(image_io, "TORCHVISION_JPEG", False)
    assert np.array_equal(read_image(path).numpy(), fast.numpy())


def test_cmyk_jpeg_goes_to_pil_with_its_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 8), (10, 20, 30, 40)).save(path)
    with caplog.at_level(logging.WARNING, logger="locdistill"):
        image = read_image(path)
    assert np.array_equal(image.numpy(), pil_pixels(path))
    assert "has mode CMYK" in caplog.text


def test_truncated_and_mislabelled_files_name_the_file(tmp_path: Path) -> None:
    good = tmp_path / "good.jpg"
    Image.new("RGB", (64, 48), (200, 100, 50)).save(good)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(image_io.BadImageError, match="cut.jpg"):
        read_image(cut)
    png = tmp_path / "really_a_png.jpg"
    Image.new("RGB", (5, 4), (1, 2, 3)).save(png, format="PNG")
    assert read_image(png)[:, 0, 0].tolist() == [1, 2, 3]
