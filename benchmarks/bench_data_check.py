"""Cost of the up-front image check that ``locdistill train`` runs on the validation set
(:func:`locdistill.data.check.check_image_files`: open, decode at 1/8 scale or verify, compare sizes)
on the shared real-photo datasets, per image, with 1 thread and with the default thread count; and of
the annotation-only elongation check run on training sets (:func:`check_image_sizes`).

Usage: ``python benchmarks/bench_data_check.py --out results.json [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import time_call, write_results  # noqa: E402

from locdistill.data import CocoDataset, VOCDataset  # noqa: E402
from locdistill.data.check import check_image_files, check_image_sizes  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
BCCD_CLASSES = ["RBC", "WBC", "Platelets"]


def datasets() -> dict[str, object]:
    out: dict[str, object] = {}
    coco = SHARED / "coco128"
    if (coco / "annotations/instances_train2017.json").is_file():
        out["coco128"] = CocoDataset(coco / "annotations/instances_train2017.json", coco / "images/train2017")
    main = SHARED / "bccd/BCCD/ImageSets/Main"
    if main.is_dir():
        out["bccd"] = VOCDataset([main / "trainval.txt", main / "test.txt"], classes=BCCD_CLASSES)
    return out


def measure(name: str, dataset: object, repeats: int) -> dict[str, object]:
    """Seconds of the file check (1 thread, default threads) and of the size-only check."""
    n = len(dataset)  # type: ignore[arg-type]
    row: dict[str, object] = {"images": n}
    for label, workers in (("files_1_thread", 1), ("files_default_threads", None)):
        t = time_call(lambda w=workers: check_image_files(dataset, [1333, 800], name, workers=w), repeats)
        row[label] = {**t, "ms_per_image": 1000 * t["median_s"] / n}
    t = time_call(lambda: check_image_sizes(dataset, [1333, 800], name), repeats)
    row["sizes_only"] = {**t, "ms_per_image": 1000 * t["median_s"] / n}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results = {name: measure(name, dataset, args.repeats) for name, dataset in datasets().items()}
    write_results(args.out, "data_check", results, repeats=args.repeats)


if __name__ == "__main__":
    main()
