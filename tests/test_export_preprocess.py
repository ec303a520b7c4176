"""The reference preprocessing of exported models (numpy and PIL, no torch) gives the tensor of
``predict``'s test pipeline: the uint8 bilinear resize bit for bit where PyTorch resizes uint8 natively."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2.functional._geometry import _do_native_uint8_resize_on_cpu

from locdistill.engine.predict import prepare_scaled
from locdistill.export.check import synthetic_image
from locdistill.export.preprocess import Recipe, preprocess, read_rgb, resize_bilinear_uint8
from tests.helpers import ROOT

NATIVE = _do_native_uint8_resize_on_cpu(InterpolationMode.BILINEAR)
"""torchvision resizes uint8 images with PyTorch's fixed-point kernel here (x86 AVX2 / AVX-512, ARM);
elsewhere it interpolates in float32 and rounds, one grey level away on a few pixels."""
TOL = 0 if NATIVE else 1


def test_the_resize_is_torchvisions_uint8_resize() -> None:
    rng = np.random.default_rng(0)
    sizes = [((h, w), (nh, nw)) for h, w, nh, nw in rng.integers(2, 160, (30, 4))]
    sizes += [((48, 64), (48, 17)), ((48, 64), (131, 64)), ((1, 5), (3, 9)), ((300, 200), (100, 67))]
    for (h, w), (nh, nw) in sizes:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        expected = F.resize(
            torch.from_numpy(image).permute(2, 0, 1).contiguous(),
            [int(nh), int(nw)],
            interpolation=InterpolationMode.BILINEAR,
            antialias=False,
        )
        got = resize_bilinear_uint8(image, (int(nh), int(nw)))
        assert got.dtype == np.uint8 and got.shape == (nh, nw, 3)
        diff = np.abs(got.astype(int) - expected.permute(1, 2, 0).numpy().astype(int)).max()
        assert diff <= TOL, f"{h}x{w} -> {nh}x{nw}: {diff}"


def check_against_predict(image: np.ndarray, recipe: Recipe) -> None:
    feed = preprocess(image, recipe)
    tensor = torch.from_numpy(image.transpose(2, 0, 1).copy())
    batch = prepare_scaled(tensor, recipe.img_scale, recipe.size_divisor, recipe.mean, recipe.std)
    meta = batch.metas[0]
    assert feed["images"].dtype == np.float32 and feed["images"].shape == tuple(batch.images.shape)
    assert feed["img_shape"].dtype == np.int64 and feed["img_shape"].tolist() == [list(meta.img_shape)]
    assert feed["ori_shape"].tolist() == [list(meta.ori_shape)]
    atol = TOL * 1.01 / (255 * min(recipe.std))
    np.testing.assert_allclose(feed["images"], batch.images.numpy(), rtol=0, atol=atol)


@pytest.mark.parametrize("size", [(333, 500), (800, 1201), (1100, 700), (37, 61), (800, 1333), (512, 512)])
def test_the_recipe_gives_predicts_input(size: tuple[int, int]) -> None:
    """Down- and upscaling, one side unchanged, no resize at all, a square."""
    recipe = Recipe((1333, 800), 32, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    check_against_predict(synthetic_image(*size, seed=size[0]), recipe)


def test_the_recipe_gives_predicts_input_on_a_photo(coco128_dir: Path) -> None:
    photo = read_rgb(coco128_dir / "images" / "train2017" / "000000000025.jpg")
    check_against_predict(photo, Recipe((320, 200), 32, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)))
    check_against_predict(photo, Recipe((1333, 800), 64, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))


def test_the_recipe_round_trips_through_the_metadata() -> None:
    recipe = Recipe((1333, 800), 32, (100 / 255, 0.456, 0.406), (0.229, 0.224, 1 / 3))
    assert Recipe.from_metadata({"preprocess": recipe.to_json()}) == recipe
    with pytest.raises(KeyError, match="no 'preprocess' key"):
        Recipe.from_metadata({})


def test_the_reference_needs_no_torch() -> None:
    """A deployment can use (or copy) the module without torch installed."""
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None\n"
        "import numpy as np\n"
        "from locdistill.export.preprocess import Recipe, preprocess\n"
        "feed = preprocess(np.zeros((30, 50, 3), np.uint8), Recipe((64, 32), 32, (0.5,) * 3, (0.25,) * 3))\n"
        "assert feed['images'].shape == (1, 3, 32, 64), feed['images'].shape\n"
    )
    env_path = str(ROOT / "src")
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": env_path}
    )
    assert result.returncode == 0, result.stderr
