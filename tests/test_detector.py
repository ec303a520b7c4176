"""``locdistill.Detector``: from a checkpoint with its stored config, predictions on paths, PIL images
and arrays (alone or mixed in a list) in original-image pixels, identical to ``locdistill predict``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from locdistill import Detector, Prediction
from locdistill.cli import main
from tests.models.test_from_checkpoint import NAMES, save_tiny


def photo(tmp_path: Path, height: int, width: int, seed: int) -> Path:
    """A PNG (lossless: path, PIL and array inputs hold the same pixels) with a few bright shapes."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    for _ in range(4):
        y, x = int(rng.integers(0, height - 30)), int(rng.integers(0, width - 30))
        pixels[y : y + int(rng.integers(12, 30)), x : x + int(rng.integers(12, 30))] = rng.integers(
            150, 255, 3
        )
    path = tmp_path / f"photo_{seed}.png"
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("detector")
    path, _, _ = save_tiny(tmp, ["model.test.score_thr=0.0", "model.test.max_per_img=20"])
    return path


def test_one_image_and_a_mixed_list(tiny_checkpoint: Path, tmp_path: Path) -> None:
    det = Detector.from_checkpoint(tiny_checkpoint)
    assert det.class_names == NAMES and det.device == torch.device("cpu")
    path = photo(tmp_path, 150, 230, 0)
    one = det.predict(path)
    assert isinstance(one, Prediction) and one.image_size == (150, 230)
    assert 0 < len(one) <= 20 and one.boxes.shape == (len(one), 4)
    assert one.labels.dtype == torch.int64 and one.class_names == [NAMES[int(c)] for c in one.labels]
    assert bool((one.scores[:-1] >= one.scores[1:]).all())
    # boxes in the original image's pixels: the network saw it resized to 83 x 128
    assert float(one.boxes[:, 2].max()) <= 230 + 1e-3 and float(one.boxes[:, 3].max()) <= 150 + 1e-3
    assert float(one.boxes[:, 2].max()) > 128
    other = photo(tmp_path, 96, 64, 1)
    pil = Image.open(path)
    array = np.asarray(Image.open(path).convert("RGB"))
    many = det.predict([str(path), pil, array, other])
    assert isinstance(many, list) and len(many) == 4
    for p in many[:3]:
        assert torch.equal(p.boxes, one.boxes) and torch.equal(p.scores, one.scores)
        assert torch.equal(p.labels, one.labels)
    assert many[3].image_size == (96, 64) and float(many[3].boxes[:, 2].max()) <= 64 + 1e-3
    assert not torch.equal(many[3].scores, one.scores)
    kept = det.predict(path, score_thr=float(one.scores[3]))
    assert isinstance(kept, Prediction) and torch.equal(kept.scores, one.scores[:4])


def test_bad_inputs_say_what_was_given(tiny_checkpoint: Path) -> None:
    det = Detector.from_checkpoint(tiny_checkpoint)
    with pytest.raises(ValueError, match=r"HxWx3 uint8 RGB, got shape \(8, 8\) dtype float32"):
        det.predict(np.zeros((8, 8), np.float32))
    with pytest.raises(ValueError, match="cannot read an image from a int"):
        det.predict(3)  # type: ignore[arg-type]


def test_identical_to_locdistill_predict(tiny_checkpoint: Path, tmp_path: Path) -> None:
    images = [photo(tmp_path, 150, 230, 0), photo(tmp_path, 120, 100, 2)]
    out = tmp_path / "preds"
    assert (
        main(["predict", str(tiny_checkpoint), *map(str, images), "--out", str(out), "--score-thr", "0.0"])
        == 0
    )
    records = json.loads((out / "detections.json").read_text())
    det = Detector.from_checkpoint(tiny_checkpoint)
    for record, pred in zip(records, det.predict(images)):  # type: ignore[arg-type]
        assert (record["height"], record["width"]) == pred.image_size
        expected = [
            {"box": [round(v, 2) for v in b], "score": round(s, 4), "label": c, "class": NAMES[c]}
            for b, s, c in zip(pred.boxes.tolist(), pred.scores.tolist(), pred.labels.tolist())
        ]
        assert record["detections"] == expected and len(expected) > 0
