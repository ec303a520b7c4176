"""Shared pytest fixtures: the read-only datasets in ``../shared/data`` and CPU thread settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(autouse=True, scope="session")
def _two_threads() -> Iterator[None]:
    """Tests run on 2-core machines: keep torch from oversubscribing them."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` next to the repository (read it in place; never copy it into the repo)."""
    if not SHARED.is_dir():
        pytest.skip(f"shared folder not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def coco128_dir(shared_dir: Path) -> Path:
    """``shared/data/coco128``: 128 COCO images, YOLO labels and the COCO json."""
    path = shared_dir / "data" / "coco128"
    if not (path / "annotations" / "instances_train2017.json").is_file():
        pytest.skip(f"coco128 not found at {path}")
    return path


@pytest.fixture(scope="session")
def bccd_dir(shared_dir: Path) -> Path:
    """``shared/data/bccd/BCCD``: the VOC-layout blood-cell dataset (Annotations, JPEGImages, ImageSets)."""
    path = shared_dir / "data" / "bccd" / "BCCD"
    if not (path / "ImageSets" / "Main").is_dir():
        pytest.skip(f"bccd not found at {path}")
    return path
