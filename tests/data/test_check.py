"""The up-front image checks: every problem named with its file, rendered (synthetic) images accepted
without files, wrappers unwrapped, and the elongation check from the annotated sizes alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from locdistill.data import BadImageError, RepeatDataset, SyntheticDataset
from locdistill.data.check import check_image_files, check_image_sizes, smallest_scale
from locdistill.data.dataset import DetectionDataset
from locdistill.data.records import ImageRecord


def dataset_of(
    tmp_path: Path, sizes: list[tuple[int, int]], written: list[tuple[int, int] | None]
) -> DetectionDataset:
    """Records of ``sizes`` (w, h); file ``k`` written with size ``written[k]`` (``None``: missing)."""
    records = []
    for k, ((w, h), real) in enumerate(zip(sizes, written)):
        path = tmp_path / f"im{k}.jpg"
        if real is not None:
            Image.fromarray(np.zeros((real[1], real[0], 3), np.uint8)).save(path)
        boxes = np.array([[0, 0, 1, 1]], np.float32)
        records.append(ImageRecord(k, path.name, path, h, w, boxes, np.zeros(1, np.int64)))
    return DetectionDataset(records, ["a"], source="test.json")


def test_every_problem_is_listed_with_its_file(tmp_path: Path) -> None:
    ds = dataset_of(
        tmp_path,
        [(64, 48), (64, 48), (64, 48), (3000, 4)],
        [(64, 48), None, (48, 64), (3000, 4)],
    )
    (tmp_path / "im0.jpg").write_bytes((tmp_path / "im0.jpg").read_bytes()[:100])  # truncated
    with pytest.raises(BadImageError) as err:
        check_image_files(RepeatDataset(ds, 2), [64, 64], "validation data")
    message = str(err.value)
    assert message.startswith("validation data (test.json): 4 of 4 images cannot be used: ")
    assert "im0.jpg: cannot decode" in message
    assert "im1.jpg: file not found" in message
    assert "im2.jpg: the file is 48x64 (w x h) but its annotation says 64x48" in message
    assert "im3.jpg: 3000x4 (w x h) is too elongated: resized into [64, 64] it would be 64x0" in message


def test_good_files_and_rendered_images_pass(tmp_path: Path) -> None:
    check_image_files(dataset_of(tmp_path, [(64, 48)], [(64, 48)]), [64, 64])
    synthetic = SyntheticDataset(3, 64, seed=0, train=False, root=tmp_path / "nowhere")
    check_image_files(synthetic, [64, 64])  # nothing is read from (the non-existent) files


def test_elongation_from_annotations_and_the_smallest_training_scale(tmp_path: Path) -> None:
    ds = dataset_of(tmp_path, [(1000, 20)], [None])  # no file needed
    check_image_sizes(ds, [1333, 800])  # 1000x20 -> 1333x27: fine
    assert smallest_scale([1333, 800], [[1333, 480], [1333, 800]]) == [1333, 480]
    assert smallest_scale([1333, 800], None) == [1333, 800]
    with pytest.raises(BadImageError, match=r"im0\.jpg: 1000x20 \(w x h\) is too elongated"):
        check_image_sizes(ds, [20, 10], "training data")  # 1000x20 -> 20x0
