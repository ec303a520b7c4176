"""Data package: real datasets (coco128, bccd), transforms, collate, loaders, synthetic data, bad input."""

from __future__ import annotations

import json
import logging
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from locdistill.config import DataConfig, DatasetConfig
from locdistill.data import (
    BadImageError,
    CocoDataset,
    DataFormatError,
    RandomHorizontalFlip,
    RepeatDataset,
    Resize,
    ShardSampler,
    SyntheticDataset,
    VOCDataset,
    YoloDataset,
    build_dataset,
    build_test_loader,
    build_train_loader,
    collate,
    hflip,
    rescale_size,
)
from locdistill.data.transforms import Normalize
from locdistill.structures import Batch, ImageMeta, Targets, check_targets

BCCD_CLASSES = ["RBC", "WBC", "Platelets"]
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


# ------------------------------------------------------------------------------------------- coco128
@pytest.fixture(scope="module")
def coco128_json(coco128_dir: Path) -> CocoDataset:
    return CocoDataset(coco128_dir / "annotations/instances_train2017.json", coco128_dir / "images/train2017")


@pytest.fixture(scope="module")
def coco128_yolo(coco128_dir: Path) -> YoloDataset:
    return YoloDataset(coco128_dir / "images/train2017", coco128_dir)


def test_coco128_json_counts(coco128_json: CocoDataset) -> None:
    ds = coco128_json
    assert len(ds) == 128
    assert ds.num_classes == 80 and len(ds.category_ids) == 80
    assert (
        ds.category_ids == sorted(ds.category_ids) and ds.category_ids[0] == 1 and ds.category_ids[-1] == 90
    )
    assert ds.class_names[0] == "person" and ds.class_names[-1] == "toothbrush"
    anns = [ds.get_annotation(i) for i in range(len(ds))]
    assert sum(len(a) for a in anns) == 939
    assert sum(int(a.ignore.sum()) for a in anns) == 10  # crowd regions
    assert not any(bool(a.difficult.any()) for a in anns)
    present = torch.cat([a.labels[~a.ignore] for a in anns]).unique()
    assert present.numel() == 71
    # training targets: crowd regions are ignore boxes, never normal boxes
    targets = [ds.get_targets(i) for i in range(len(ds))]
    assert sum(len(t) for t in targets) == 929
    assert sum(t.ignore_boxes.shape[0] for t in targets) == 10
    assert ds.issues == {}


def test_coco128_json_matches_hand_parse(coco128_dir: Path, coco128_json: CocoDataset) -> None:
    data = json.loads((coco128_dir / "annotations/instances_train2017.json").read_text())
    index = coco128_json.image_ids.index(9)
    expected = [a for a in data["annotations"] if a["image_id"] == 9]
    xyxy = torch.tensor(
        [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in expected)], dtype=torch.float32
    )
    ann = coco128_json.get_annotation(index)
    torch.testing.assert_close(ann.boxes, xyxy, rtol=0, atol=0)
    cat_to_label = {c: i for i, c in enumerate(coco128_json.category_ids)}
    assert ann.labels.tolist() == [cat_to_label[a["category_id"]] for a in expected]
    assert coco128_json.image_info(index) == ("000000000009.jpg", 480, 640)
    image, targets, meta = coco128_json[index]
    assert image.dtype == torch.uint8 and tuple(image.shape) == (3, 480, 640)
    assert meta.ori_shape == meta.img_shape == meta.pad_shape == (480, 640) and meta.image_id == 9
    check_targets(targets, meta, num_classes=80)


def test_coco128_to_coco_dict_is_original_json(coco128_dir: Path, coco128_json: CocoDataset) -> None:
    from pycocotools.coco import COCO

    data = json.loads((coco128_dir / "annotations/instances_train2017.json").read_text())
    out = coco128_json.to_coco_dict()
    assert out["annotations"] == data["annotations"] and out["images"] == data["images"]
    assert out["categories"] == data["categories"]
    coco = COCO()
    coco.dataset = out
    coco.createIndex()
    assert len(coco.getAnnIds(iscrowd=True)) == 10


def test_coco128_json_restricted_by_split_list(coco128_dir: Path) -> None:
    cfg = DatasetConfig(
        format="coco",
        root=str(coco128_dir),
        ann_file="annotations/instances_train2017.json",
        img_dir="splits/val.txt",
    )
    ds = build_dataset(cfg, DataConfig(), train=False, mean=MEAN, std=STD)
    assert isinstance(ds, CocoDataset) and len(ds) == 25
    assert sum(len(ds.get_targets(i)) for i in range(len(ds))) == 112
    assert {im["id"] for im in ds.to_coco_dict()["images"]} == set(ds.image_ids)


def test_coco128_yolo_counts(coco128_yolo: YoloDataset, coco128_dir: Path) -> None:
    ds = coco128_yolo
    assert len(ds) == 128 and ds.num_classes == 80
    assert sum(len(ds.get_annotation(i)) for i in range(len(ds))) == 929
    empty = sorted(Path(ds.image_info(i)[0]).name for i in range(len(ds)) if len(ds.get_annotation(i)) == 0)
    assert empty == ["000000000250.jpg", "000000000508.jpg"]
    for split, n_images, n_boxes in (("train", 103, 817), ("val", 25, 112)):
        part = YoloDataset(coco128_dir / "splits" / f"{split}.txt", coco128_dir)
        assert len(part) == n_images
        assert sum(len(part.get_annotation(i)) for i in range(len(part))) == n_boxes


def test_coco128_yolo_matches_hand_parse(coco128_dir: Path, coco128_yolo: YoloDataset) -> None:
    index = [Path(coco128_yolo.image_info(i)[0]).name for i in range(len(coco128_yolo))].index(
        "000000000009.jpg"
    )
    _, height, width = coco128_yolo.image_info(index)
    rows = [
        line.split() for line in (coco128_dir / "labels/train2017/000000000009.txt").read_text().splitlines()
    ]
    expected = [
        [
            (float(cx) - float(w) / 2) * width,
            (float(cy) - float(h) / 2) * height,
            (float(cx) + float(w) / 2) * width,
            (float(cy) + float(h) / 2) * height,
        ]
        for _, cx, cy, w, h in rows
    ]
    ann = coco128_yolo.get_annotation(index)
    torch.testing.assert_close(ann.boxes, torch.tensor(expected).clamp(min=0), rtol=0, atol=1e-4)
    assert ann.labels.tolist() == [int(r[0]) for r in rows]


def test_coco128_yolo_and_json_agree(coco128_json: CocoDataset, coco128_yolo: YoloDataset) -> None:
    by_name = {Path(coco128_yolo.image_info(i)[0]).name: i for i in range(len(coco128_yolo))}
    compared = 0
    for i in range(len(coco128_json)):
        name, height, width = coco128_json.image_info(i)
        j = by_name[name]
        assert coco128_yolo.image_info(j)[1:] == (height, width)
        a, b = coco128_json.get_annotation(i), coco128_yolo.get_annotation(j)
        boxes_a, labels_a = a.boxes[~a.ignore], a.labels[~a.ignore]
        assert len(boxes_a) == len(b)
        if len(b) == 0:
            continue
        # match each json box to its nearest YOLO box (the files list them in different orders)
        dist = (boxes_a[:, None, :] - b.boxes[None, :, :]).abs().amax(dim=2)
        nearest = dist.argmin(dim=1)
        assert sorted(nearest.tolist()) == list(range(len(b)))
        assert float(dist.min(dim=1).values.max()) < 0.02  # YOLO keeps 6 decimals of normalised coordinates
        assert labels_a.tolist() == b.labels[nearest].tolist()
        compared += len(b)
    assert compared == 929


# ---------------------------------------------------------------------------------------------- bccd
@pytest.fixture(scope="module")
def bccd_all(bccd_dir: Path) -> VOCDataset:
    main = bccd_dir / "ImageSets/Main"
    return VOCDataset([main / "trainval.txt", main / "test.txt"], classes=BCCD_CLASSES)


def test_bccd_counts(bccd_all: VOCDataset, bccd_dir: Path) -> None:
    ds = bccd_all
    assert len(ds) == 364
    labels = torch.cat([ds.get_annotation(i).labels for i in range(len(ds))])
    # README: RBC 4155, WBC 372, Platelets 361; its 2 zero-size RBC boxes are dropped
    assert torch.bincount(labels, minlength=3).tolist() == [4155 - 2, 372, 361]
    assert ds.issues == {"box(es) of zero or negative size dropped": 2}
    for split, n_images, n_boxes in (("train", 205, 2805), ("val", 87, 1138), ("test", 72, 945)):
        part = VOCDataset(bccd_dir / "ImageSets/Main" / f"{split}.txt", classes=BCCD_CLASSES)
        total = sum(len(part.get_annotation(i)) for i in range(len(part))) + part.issues.get(
            "box(es) of zero or negative size dropped", 0
        )
        assert (len(part), total) == (n_images, n_boxes)


def test_bccd_matches_hand_parse_minus_one(bccd_all: VOCDataset, bccd_dir: Path) -> None:
    index = [ds_name for ds_name, _, _ in (bccd_all.image_info(i) for i in range(len(bccd_all)))].index(
        "JPEGImages/BloodImage_00000.jpg"
    )
    root = ET.parse(bccd_dir / "Annotations/BloodImage_00000.xml").getroot()
    expected = [
        [float(o.find(f"bndbox/{k}").text) - 1 for k in ("xmin", "ymin", "xmax", "ymax")]  # type: ignore[union-attr]
        for o in root.findall("object")
    ]
    names = [o.find("name").text for o in root.findall("object")]  # type: ignore[union-attr]
    ann = bccd_all.get_annotation(index)
    torch.testing.assert_close(ann.boxes, torch.tensor(expected), rtol=0, atol=0)
    assert ann.labels.tolist() == [BCCD_CLASSES.index(n) for n in names]  # type: ignore[arg-type]
    image, targets, meta = bccd_all[index]
    assert tuple(image.shape) == (3, 480, 640) and len(targets) == len(expected)


def test_bccd_to_coco_dict(bccd_all: VOCDataset) -> None:
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = bccd_all.to_coco_dict()
    coco.createIndex()
    assert len(coco.getImgIds()) == 364 and len(coco.getAnnIds()) == 4886
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == BCCD_CLASSES


# ------------------------------------------------------------------------------------------ transforms
def _sample(h: int, w: int, boxes: list[list[float]]) -> tuple[torch.Tensor, Targets, ImageMeta]:
    g = torch.Generator().manual_seed(h * 1000 + w)
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
    t = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    targets = Targets(boxes=t, labels=torch.arange(len(t)), ignore_boxes=t[:1].clone())
    return image, targets, ImageMeta(0, "x.jpg", (h, w), (h, w), (h, w))


@pytest.mark.parametrize("h,w", [(480, 640), (427, 640), (640, 218), (333, 500), (1000, 1000)])
def test_resize_keeps_ratio_and_scale_factor_maps_boxes(h: int, w: int) -> None:
    image, targets, meta = _sample(
        h, w, [[0.5, 1.25, 100.75, 200.5], [10, 20, w - 0.5, h - 1], [3.3, 4.4, 5.5, 6.6]]
    )
    out, t, m = Resize(scale=(1333, 800))(image, targets, meta)
    factor = min(1333 / max(h, w), 800 / min(h, w))
    assert (m.img_shape, tuple(out.shape[-2:])) == (((int(h * factor + 0.5), int(w * factor + 0.5)),) * 2)
    assert max(m.img_shape) <= 1333 and min(m.img_shape) <= 800
    assert m.scale_factor == (m.img_shape[1] / w, m.img_shape[0] / h)
    assert m.ori_shape == (h, w) and out.dtype == torch.uint8
    sf = torch.tensor([m.scale_factor[0], m.scale_factor[1]] * 2, dtype=torch.float32)
    assert torch.equal(t.boxes, targets.boxes * sf)
    assert torch.equal(t.ignore_boxes, targets.ignore_boxes * sf)
    assert torch.equal(t.labels, targets.labels)


def test_rescale_size_matches_mmcv_rule() -> None:
    assert rescale_size(480, 640, (1333, 800)) == (800, 1067)
    assert rescale_size(427, 640, (1333, 800)) == (800, 1199)
    assert rescale_size(200, 1000, (1333, 800)) == (267, 1333)
    assert rescale_size(320, 320, (320, 320)) == (320, 320)


def test_resize_multiscale_range_and_clipping(caplog: pytest.LogCaptureFixture) -> None:
    resize = Resize(scale_range=[[1333, 480], [1333, 800]])
    torch.manual_seed(0)
    shorts = set()
    for _ in range(30):
        image, targets, meta = _sample(480, 640, [[10, 10, 50, 50]])
        _, _, m = resize(image, targets, meta)
        assert 480 <= min(m.img_shape) <= 800
        shorts.add(min(m.img_shape))
    assert len(shorts) > 10
    # a box beyond the border is clipped; one entirely outside becomes degenerate and is dropped
    image, targets, meta = _sample(100, 100, [[50, 50, 150, 90], [120, 10, 130, 20], [0, 0, 10, 10]])
    with caplog.at_level(logging.WARNING):
        resize2 = Resize(scale=(200, 200))
        _, t, _ = resize2(image, targets, meta)
    assert t.boxes.tolist() == [[100, 100, 200, 180], [0, 0, 20, 20]] and t.labels.tolist() == [0, 2]
    assert resize2.num_dropped == 1 and "x.jpg" in caplog.text and "#1" in caplog.text


def test_flip_twice_is_identity_and_flip_rule() -> None:
    image, targets, meta = _sample(37, 53, [[0.5, 1.5, 10.25, 20.75], [40, 3, 53, 30]])
    fi, ft, fm = hflip(image, targets, meta)
    assert fm.flipped and torch.equal(fi, image.flip(-1))
    assert ft.boxes.tolist() == [[53 - 10.25, 1.5, 53 - 0.5, 20.75], [0, 3, 13, 30]]
    bi, bt, bm = hflip(fi, ft, fm)
    assert not bm.flipped and torch.equal(bi, image)
    torch.testing.assert_close(bt.boxes, targets.boxes, rtol=0, atol=1e-5)
    torch.testing.assert_close(bt.ignore_boxes, targets.ignore_boxes, rtol=0, atol=1e-5)
    always = RandomHorizontalFlip(1.0)(image, targets, meta)
    never = RandomHorizontalFlip(0.0)(image, targets, meta)
    assert always[2].flipped and not never[2].flipped


def test_normalize_matches_mmdet_formula() -> None:
    image, targets, meta = _sample(8, 8, [])
    out, _, _ = Normalize(MEAN, STD)(image, targets, meta)
    mean255 = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
    std255 = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
    torch.testing.assert_close(out, (image.float() - mean255) / std255, rtol=1e-6, atol=1e-6)


def test_collate_pads_to_32_and_keeps_own_pad_shape() -> None:
    samples = []
    for h, w in ((100, 70), (64, 130)):
        image, targets, meta = _sample(h, w, [[1, 2, 3, 4]])
        samples.append((image.float() + 1, targets, meta))
    batch = collate(samples, size_divisor=32)
    assert isinstance(batch, Batch) and tuple(batch.images.shape) == (2, 3, 128, 160)
    assert [m.pad_shape for m in batch.metas] == [(128, 96), (64, 160)]
    assert [m.img_shape for m in batch.metas] == [(100, 70), (64, 130)]
    assert torch.equal(batch.images[0, :, :100, :70], samples[0][0])
    assert (
        float(batch.images[0, :, 100:].abs().sum()) == 0
        and float(batch.images[0, :, :, 70:].abs().sum()) == 0
    )
    assert float(batch.images[1, :, 64:].abs().sum()) == 0


# ------------------------------------------------------------------------------------------ synthetic
def test_synthetic_is_deterministic_and_tight() -> None:
    a = SyntheticDataset(12, 160, seed=3)
    b = SyntheticDataset(12, 160, seed=3)
    c = SyntheticDataset(12, 160, seed=4)
    val = SyntheticDataset(12, 160, seed=3, train=False)
    for i in range(len(a)):
        torch.testing.assert_close(a.get_annotation(i).boxes, b.get_annotation(i).boxes, rtol=0, atol=0)
        assert torch.equal(a[i][0], b[i][0])
    assert not torch.equal(a[0][0], c[0][0]) and not torch.equal(a[0][0], val[0][0])
    assert a.num_classes == 5 and len(a.class_names) == 5
    sizes = []
    for i in range(len(a)):
        scene, ann = a.scene(i), a.get_annotation(i)
        assert len(scene.shapes) == len(ann) >= 1
        for shape, box in zip(scene.shapes, ann.boxes.tolist()):
            m = shape.mask
            # tight: the mask touches all four sides of its box, and the box is its extent in the image
            assert m[0].any() and m[-1].any() and m[:, 0].any() and m[:, -1].any()
            assert box == [shape.x0, shape.y0, shape.x0 + m.shape[1], shape.y0 + m.shape[0]]
            assert 0 <= box[0] < box[2] <= 160 and 0 <= box[1] < box[3] <= 160
            sizes.append(max(m.shape))
    labels = torch.cat([a.get_annotation(i).labels for i in range(len(a))])
    assert labels.unique().numel() >= 4
    assert min(sizes) <= 16 and max(sizes) >= 40


def test_synthetic_generation_speed() -> None:
    import time

    t0 = time.perf_counter()
    ds = SyntheticDataset(300, 320, seed=0)
    for i in range(0, 300, 10):
        ds.load_image(i)
    elapsed = time.perf_counter() - t0
    assert elapsed < 30.0, f"300 layouts + 30 renders took {elapsed:.1f}s"  # ~0.6 s on an idle 2-core CPU
    sizes = np.concatenate([(r.boxes[:, 2:] - r.boxes[:, :2]).max(1) for r in ds.records])
    assert sizes.min() >= 6 and sizes.max() >= 120


# ---------------------------------------------------------------------------------- build and loaders
def test_build_dataset_synthetic_and_loaders() -> None:
    data_cfg = DataConfig(
        img_scale=[192, 192], size_divisor=32, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375]
    )
    cfg = DatasetConfig(format="synthetic", root="unused", num_images=10, image_size=160, seed=1, repeat=2)
    train = build_dataset(cfg, data_cfg, train=True)
    assert isinstance(train, RepeatDataset) and len(train) == 20 and train.num_classes == 5
    image, targets, meta = train[0]
    assert image.dtype == torch.float32 and meta.img_shape == (192, 192) and meta.scale_factor == (1.2, 1.2)
    loader = build_train_loader(train, images_per_gpu=4, workers=0, seed=7)
    sampler = loader.batch_sampler.sampler  # type: ignore[union-attr]
    loader.batch_sampler.set_epoch(0)  # type: ignore[union-attr]
    first = list(sampler)
    loader.batch_sampler.set_epoch(0)  # type: ignore[union-attr]
    assert list(sampler) == first and sorted(first) == list(range(20))
    loader.batch_sampler.set_epoch(1)  # type: ignore[union-attr]
    assert list(sampler) != first
    batches = list(loader)
    assert len(batches) == 5 and all(isinstance(b, Batch) for b in batches)
    assert tuple(batches[0].images.shape) == (4, 3, 192, 192)
    for b in batches:
        for t, m in zip(b.targets, b.metas):
            check_targets(t, m, num_classes=5)

    val = build_dataset(
        DatasetConfig(format="synthetic", num_images=5, image_size=160, seed=1), data_cfg, train=False
    )
    test_loader = build_test_loader(val, images_per_gpu=2, workers=0)
    ids = [m.image_id for b in test_loader for m in b.metas]
    assert ids == val.image_ids  # type: ignore[union-attr]


def test_shard_sampler_covers_each_image_once() -> None:
    seen = [i for r in range(3) for i in ShardSampler(range(10), r, 3)]  # type: ignore[arg-type]
    assert sorted(seen) == list(range(10))
    assert list(ShardSampler(range(10), 1, 3)) == [1, 4, 7]  # type: ignore[arg-type]


def test_train_loader_with_workers() -> None:
    ds = SyntheticDataset(6, 96, seed=0)
    ds.transform = Normalize(MEAN, STD)
    loader = build_train_loader(ds, images_per_gpu=3, workers=2, seed=0)
    assert loader.persistent_workers
    batches = list(loader)
    assert sum(len(b) for b in batches) == 6


def test_build_dataset_real(coco128_dir: Path, bccd_dir: Path) -> None:
    data_cfg = DataConfig(img_scale=[512, 320])
    yolo = build_dataset(
        DatasetConfig(format="yolo", root=str(coco128_dir), ann_file="splits/train.txt"),
        data_cfg,
        train=True,
        mean=MEAN,
        std=STD,
    )
    assert isinstance(yolo, YoloDataset) and len(yolo) == 101  # 103 listed; 250 and 508 have no labels
    image, targets, meta = yolo[0]
    assert max(image.shape[-2:]) <= 512 and min(image.shape[-2:]) <= 320
    voc = build_dataset(
        DatasetConfig(
            format="voc",
            root=str(bccd_dir.parent),
            ann_file="BCCD/ImageSets/Main/val.txt,BCCD/ImageSets/Main/test.txt",
            classes=BCCD_CLASSES,
        ),
        data_cfg,
        train=False,
        mean=MEAN,
        std=STD,
    )
    assert isinstance(voc, VOCDataset) and len(voc) == 87 + 72
    batch = collate([voc[0], voc[1]])
    assert batch.images.shape[-1] % 32 == 0 and batch.metas[0].scale_factor == (427 / 640, 320 / 480)


# ----------------------------------------------------------------------------------------- bad input
def _write_jpeg(path: Path, h: int = 48, w: int = 64, value: int = 120) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, dtype=np.uint8)).save(path, quality=90)


def _coco_dir(tmp_path: Path, n: int = 4) -> tuple[Path, Path]:
    img_dir = tmp_path / "images"
    images, anns = [], []
    for i in range(n):
        _write_jpeg(img_dir / f"{i}.jpg", value=40 * i)
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "height": 48, "width": 64})
        anns.append(
            {
                "id": 10 + i,
                "image_id": i + 1,
                "category_id": 3,
                "bbox": [5, 6, 20, 10],
                "area": 200,
                "iscrowd": 0,
            }
        )
    ann_file = tmp_path / "annotations.json"
    ann_file.write_text(
        json.dumps(
            {
                "images": images,
                "annotations": anns,
                "categories": [{"id": 3, "name": "c"}, {"id": 1, "name": "a"}],
            }
        )
    )
    return ann_file, img_dir


def test_corrupt_and_missing_images_named_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ann_file, img_dir = _coco_dir(tmp_path)
    (img_dir / "1.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    good = (img_dir / "2.jpg").read_bytes()
    (img_dir / "2.jpg").write_bytes(good[: len(good) // 2])  # truncated
    (img_dir / "3.jpg").unlink()
    ds = CocoDataset(ann_file, img_dir)
    assert ds.class_names == ["a", "c"] and ds.category_ids == [1, 3]
    assert tuple(ds[0][0].shape) == (3, 48, 64)
    for i, name in ((1, "1.jpg"), (2, "2.jpg"), (3, "3.jpg")):
        with pytest.raises(BadImageError, match=name):
            ds[i]
    skipping = CocoDataset(ann_file, img_dir, skip_bad=True)
    with caplog.at_level(logging.WARNING):
        samples = [skipping[i] for i in range(len(skipping))]
    assert [m.image_id for _, _, m in samples] == [1, 1, 1, 1]  # each bad one replaced by the next readable
    assert skipping.num_skipped == 3 + 2 + 1 and len(skipping.bad_files) == 3
    assert "1.jpg" in caplog.text and "2.jpg" in caplog.text and "3.jpg" in caplog.text
    assert samples[0][1].labels.tolist() == [1]  # category id 3 -> label 1


def test_image_size_mismatch_is_named(tmp_path: Path) -> None:
    ann_file, img_dir = _coco_dir(tmp_path, n=1)
    _write_jpeg(img_dir / "0.jpg", h=50, w=64)
    with pytest.raises(BadImageError, match=r"0\.jpg.*64x50.*64x48"):
        CocoDataset(ann_file, img_dir)[0]


def test_malformed_json_named(tmp_path: Path) -> None:
    ann_file, img_dir = _coco_dir(tmp_path)
    text = ann_file.read_text()
    ann_file.write_text(text[: len(text) // 2])
    with pytest.raises(DataFormatError, match=r"annotations\.json: not valid JSON"):
        CocoDataset(ann_file, img_dir)
    data = json.loads(text)
    data["annotations"][2]["bbox"] = [1, 2, 3]
    ann_file.write_text(json.dumps(data))
    with pytest.raises(
        DataFormatError, match=r"annotations\.json: annotation id 12: bbox must have 4 numbers"
    ):
        CocoDataset(ann_file, img_dir)
    data["annotations"][2]["bbox"] = [1, 2, 3, 4]
    data["annotations"][2]["image_id"] = 99
    ann_file.write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match=r"annotation id 12: image_id 99"):
        CocoDataset(ann_file, img_dir)
    del data["images"][0]["file_name"]
    ann_file.write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match=r"image #0 \(id 1\): missing 'file_name'"):
        CocoDataset(ann_file, img_dir)
    with pytest.raises(DataFormatError, match="annotation file not found"):
        CocoDataset(tmp_path / "nope.json", img_dir)


def test_box_outside_and_zero_size_warned(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ann_file, img_dir = _coco_dir(tmp_path, n=2)
    data = json.loads(ann_file.read_text())
    data["annotations"] += [
        {"id": 20, "image_id": 1, "category_id": 1, "bbox": [50, 40, 30, 20], "area": 600, "iscrowd": 0},
        {"id": 21, "image_id": 2, "category_id": 1, "bbox": [70, 10, 5, 5], "area": 25, "iscrowd": 0},
        {"id": 22, "image_id": 2, "category_id": 1, "bbox": [3, 3, 0, 5], "area": 0, "iscrowd": 0},
    ]
    ann_file.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING):
        ds = CocoDataset(ann_file, img_dir)
    assert ds.get_annotation(0).boxes.tolist() == [[5, 6, 25, 16], [50, 40, 64, 48]]
    assert len(ds.get_annotation(1)) == 1
    assert "image 0.jpg box #1 [50, 40, 80, 60] (image 64x48)" in caplog.text  # clipped
    assert "image 1.jpg box #1 [70, 10, 75, 15]" in caplog.text  # outside: nothing left -> dropped
    assert ds.issues["box(es) outside the image clipped to it"] == 1
    assert ds.issues["box(es) of zero or negative size dropped"] == 1

    # VOC: a zero-size box is dropped with a warning naming the file and the box index
    voc_root = _voc_dir(tmp_path / "voc", [("a", [("cat", (10, 10, 10, 30)), ("dog", (5, 5, 20, 20))])])
    with caplog.at_level(logging.WARNING):
        voc = VOCDataset(voc_root / "ImageSets/Main/train.txt", classes=["cat", "dog"])
    assert voc.get_annotation(0).boxes.tolist() == [[4, 4, 19, 19]] and voc.get_annotation(
        0
    ).labels.tolist() == [1]
    assert "a.xml box #0" in caplog.text


def _voc_dir(
    root: Path, items: list[tuple[str, list[tuple[str, tuple[int, int, int, int]]]]], difficult: bool = False
) -> Path:
    (root / "ImageSets/Main").mkdir(parents=True)
    (root / "Annotations").mkdir()
    for img_id, objects in items:
        _write_jpeg(root / "JPEGImages" / f"{img_id}.jpg")
        objs = "".join(
            f"<object><name>{name}</name><difficult>{int(difficult)}</difficult><bndbox><xmin>{b[0]}</xmin>"
            f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
            for name, b in objects
        )
        (root / "Annotations" / f"{img_id}.xml").write_text(
            f"<annotation><size><width>64</width><height>48</height><depth>3</depth></size>{objs}</annotation>"
        )
    (root / "ImageSets/Main/train.txt").write_text("".join(f"{i}\n" for i, _ in items))
    return root


def test_voc_bad_input_named(tmp_path: Path) -> None:
    root = _voc_dir(
        tmp_path / "a", [("img1", [("cat", (1, 1, 10, 10))]), ("img2", [("zebra", (1, 1, 10, 10))])]
    )
    with pytest.raises(DataFormatError, match=r"img2\.xml: object #0: unknown class name 'zebra'"):
        VOCDataset(root / "ImageSets/Main/train.txt", classes=["cat"])
    (root / "Annotations/img2.xml").write_text("<annotation><object><name>cat</name>")
    with pytest.raises(DataFormatError, match=r"img2\.xml: not valid XML"):
        VOCDataset(root / "ImageSets/Main/train.txt", classes=["cat"])
    (root / "Annotations/img2.xml").write_text(
        "<annotation><object><name>cat</name><bndbox><xmin>1</xmin>"
        "<ymin>1</ymin><xmax>5</xmax></bndbox></object></annotation>"
    )
    with pytest.raises(DataFormatError, match=r"img2\.xml: object #0 <bndbox>: missing <ymax>"):
        VOCDataset(root / "ImageSets/Main/train.txt", classes=["cat"])
    (root / "ImageSets/Main/empty.txt").write_text("\n")
    with pytest.raises(DataFormatError, match=r"empty\.txt: empty dataset"):
        VOCDataset(root / "ImageSets/Main/empty.txt", classes=["cat"])
    with pytest.raises(DataFormatError, match=r"list file not found: .*missing\.txt"):
        VOCDataset(root / "ImageSets/Main/missing.txt", classes=["cat"])


def test_voc_difficult_are_ignore_boxes(tmp_path: Path) -> None:
    root = _voc_dir(tmp_path, [("img1", [("cat", (1, 1, 10, 10))])], difficult=True)
    ds = VOCDataset(root / "ImageSets/Main/train.txt", classes=["cat"])
    ann = ds.get_annotation(0)
    assert ann.difficult.tolist() == [True] and ann.boxes.tolist() == [[0, 0, 9, 9]]
    targets = ds.get_targets(0)
    assert len(targets) == 0 and targets.ignore_boxes.tolist() == [[0, 0, 9, 9]]
    assert ds.to_coco_dict()["annotations"][0]["iscrowd"] == 1


def test_yolo_bad_input_named(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("a\nb\n")
    for i in range(3):
        _write_jpeg(tmp_path / "images" / f"{i}.jpg")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels/0.txt").write_text("0 0.5 0.5 0.25 0.5\n1 0.5 0.5 0.1\n")
    with pytest.raises(DataFormatError, match=r"0\.txt: line 2: expected 'class cx cy w h'"):
        YoloDataset(tmp_path / "images", tmp_path)
    (tmp_path / "labels/0.txt").write_text("5 0.5 0.5 0.25 0.5\n")
    with pytest.raises(DataFormatError, match=r"0\.txt: line 1: class index 5"):
        YoloDataset(tmp_path / "images", tmp_path)
    (tmp_path / "labels/0.txt").write_text("1 0.5 0.5 0.25 0.5\n")
    (tmp_path / "images/2.jpg").write_bytes(b"garbage")
    with pytest.raises(BadImageError, match=r"2\.jpg"):
        YoloDataset(tmp_path / "images", tmp_path)
    ds = YoloDataset(tmp_path / "images", tmp_path, skip_bad=True)
    assert len(ds) == 2 and ds.num_skipped == 1
    assert ds.get_annotation(0).boxes.tolist() == [[24, 12, 40, 36]] and ds.get_annotation(
        0
    ).labels.tolist() == [1]
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataFormatError, match=r"empty\.txt: empty dataset"):
        YoloDataset(tmp_path / "empty.txt", tmp_path)


def test_filter_empty_gt_and_empty_after_filter(tmp_path: Path) -> None:
    ann_file, img_dir = _coco_dir(tmp_path, n=3)
    data = json.loads(ann_file.read_text())
    data["annotations"] = data["annotations"][:1]
    ann_file.write_text(json.dumps(data))
    assert len(CocoDataset(ann_file, img_dir)) == 3
    assert len(CocoDataset(ann_file, img_dir, filter_empty_gt=True)) == 1
    data["annotations"] = []
    ann_file.write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match=r"annotations\.json: empty dataset"):
        CocoDataset(ann_file, img_dir, filter_empty_gt=True)
    assert math.isclose(len(CocoDataset(ann_file, img_dir)), 3)
