"""ONNX export: onnxruntime, fed a photo prepared by the documented recipe
(:mod:`locdistill.export.preprocess`), gives the detections of ``locdistill predict`` (scores within
1e-4, boxes within 0.1 px) on non-square photos of any size, for a batch of any size, with the configured
NMS (plain or Score-voting Cluster-DIoU-NMS) in the graph; metadata; the export-time check."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from locdistill.config import BackboneConfig, HeadConfig, ModelConfig, NeckConfig, NMSConfig
from locdistill.config import TestConfig as ModelTestConfig
from locdistill.engine.predict import prepare_scaled
from locdistill.export import ExportableGFL, ExportParityError, export_onnx, recipe_for
from locdistill.export.check import Found, match_detections, synthetic_image
from locdistill.export.preprocess import Recipe, batch_inputs, preprocess, read_rgb
from locdistill.models.detectors.gfl import GFL, build_gfl
from locdistill.structures import Detections

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
SCALE = (320, 200)  # a 640 x 426 photo becomes 300 x 200 in a 320 x 224 input: padding at the bottom


def tiny_model(nms_type: str = "nms", seed: int = 0) -> GFL:
    """A narrow ResNet-18 GFL whose (random) class and box layers are spread so that scores straddle
    the 0.05 threshold and boxes overlap: NMS and voting both have work to do."""
    torch.manual_seed(seed)
    cfg = ModelConfig(
        backbone=BackboneConfig(name="resnet18", base_width=16),
        neck=NeckConfig(out_channels=32),
        head=HeadConfig(num_classes=3, feat_channels=32, stacked_convs=1, norm_groups=8),
        test=ModelTestConfig(nms=NMSConfig(type=nms_type)),  # type: ignore[arg-type]
    )
    model = build_gfl(cfg).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.head.gfl_cls.weight, 0, 0.2)
        torch.nn.init.normal_(model.head.gfl_reg.weight, 0, 0.2)
    return model


def recipe(model: GFL) -> Recipe:
    return recipe_for(SCALE, 32, model.mean, model.std)


def predict(model: GFL, image: np.ndarray) -> Detections:
    """What ``locdistill predict`` detects on a ``uint8 [H, W, 3]`` image (before its drawing threshold)."""
    r = recipe(model)
    batch = prepare_scaled(torch.from_numpy(image.transpose(2, 0, 1).copy()), SCALE, 32, r.mean, r.std)
    with torch.no_grad():
        return model.predict(model(batch.images), batch.metas, rescale=True)[0]


def assert_same(got: list[np.ndarray], k: int, det: Detections) -> None:
    """The graph's detections of image ``k`` are ``det``: the same count, and each paired with one of
    ``det`` of the same label, score within 1e-4 and box within 0.1 px (the export check's matching:
    two detections whose scores differ by less than float32 accumulation may come in either order)."""
    boxes, scores, labels, num = got
    n = int(num[k])
    match_detections("test", Found(boxes[k, :n], scores[k, :n], labels[k, :n]), det, {})
    assert (labels[k, n:] == -1).all() and (scores[k, n:] == 0).all()


@pytest.mark.parametrize("nms_type", ["nms", "voting_cluster_diou"])
def test_onnx_with_nms_gives_predicts_detections_on_non_square_photos(
    tmp_path: Path, coco128_dir: Path, nms_type: str
) -> None:
    model = tiny_model(nms_type)
    train = coco128_dir / "images" / "train2017"
    landscape = read_rgb(train / "000000000025.jpg")  # 426 x 640 -> 200 x 300 in 224 x 320
    portrait = read_rgb(train / "000000000036.jpg")  # 640 x 481 -> 266 x 200 in 288 x 224
    small = synthetic_image(170, 300, 5)  # 170 x 300 -> 177 x 313 (upscaled) in 192 x 320
    path = export_onnx(
        model, tmp_path / "m.onnx", recipe(model), with_nms=True, check=True, check_images=[small, portrait]
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for image in (landscape, portrait, small):
        det = predict(model, image)
        assert len(det) > 20
        assert_same(session.run(None, preprocess(image, recipe(model))), 0, det)

    # the batch axis is dynamic: the photo and its mirror image as one batch
    mirrored = np.ascontiguousarray(landscape[:, ::-1])
    got = session.run(None, batch_inputs([preprocess(im, recipe(model)) for im in (landscape, mirrored)]))
    assert got[0].shape == (2, 100, 4) and got[2].dtype == np.int64
    assert_same(got, 0, predict(model, landscape))
    assert_same(got, 1, predict(model, mirrored))

    # the same graph fed the photo padded into a fixed 320 x 320 square (the old fixed-size export) does
    # not give predict's detections: GroupNorm normalises over the padding too
    feed = preprocess(landscape, recipe(model))
    square = np.zeros((1, 3, 320, 320), np.float32)
    square[..., :224, :] = feed["images"]
    with pytest.raises(ExportParityError):
        assert_same(session.run(None, {**feed, "images": square}), 0, predict(model, landscape))

    if nms_type == "voting_cluster_diou":  # voting really moved boxes: not what plain NMS keeps
        voted = predict(model, landscape)
        model.test_cfg.nms_type = "nms"
        assert not torch.allclose(predict(model, landscape).boxes[:10], voted.boxes[:10])


def test_onnx_without_nms_any_size_and_metadata(tmp_path: Path) -> None:
    model = tiny_model()
    r = Recipe((256, 160), 32, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    path = export_onnx(
        model,
        tmp_path / "raw.onnx",
        r,
        class_names=["rbc", "wbc", "platelets"],
        check=True,
        check_images=[synthetic_image(120, 200, 0)],
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for h, w in [(300, 170), (90, 400)]:  # other sizes than the traced one
        feed = preprocess(synthetic_image(h, w, h), r)
        boxes, scores = session.run(None, feed)
        torch_in = [torch.from_numpy(feed[k]) for k in ("images", "img_shape", "ori_shape")]
        with torch.no_grad():
            ref_boxes, ref_scores = ExportableGFL(model)(*torch_in)
            raw = model(torch_in[0])
        num_anchors = sum(c.shape[2] * c.shape[3] for c in raw.cls_scores)
        assert boxes.shape == (1, num_anchors, 4) and scores.shape == (1, num_anchors, 3)
        np.testing.assert_allclose(boxes, ref_boxes.numpy(), rtol=0, atol=0.01)
        np.testing.assert_allclose(scores, ref_scores.numpy(), rtol=0, atol=1e-5)
        first = raw.cls_scores[0].sigmoid().permute(0, 2, 3, 1).reshape(1, -1, 3)
        np.testing.assert_allclose(scores[:, : first.shape[1]], first.numpy(), rtol=0, atol=1e-5)
        assert float(boxes[..., 2].max()) <= w + 1e-3 and float(boxes[..., 3].max()) <= h + 1e-3
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["class_names"]) == ["rbc", "wbc", "platelets"]
    assert Recipe.from_metadata(meta) == r
    assert json.loads(meta["preprocess"])["antialias"] is False
    assert json.loads(meta["test_cfg"])["nms_type"] is None
    assert [i.name for i in session.get_inputs()] == ["images", "img_shape", "ori_shape"]


def test_a_failing_parity_check_writes_nothing(tmp_path: Path) -> None:
    """Suppression decided on too short a prefix (nms_topk=8) keeps fewer boxes than predict: the
    check says so, and the file the user named is neither written nor replaced."""
    model = tiny_model("voting_cluster_diou")
    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous export")
    with pytest.raises(ExportParityError, match=r"detections in onnxruntime and \d+ in predict.*nms_topk=8"):
        export_onnx(
            model, out, recipe(model), with_nms=True, nms_topk=8, check_images=[synthetic_image(99, 160, 0)]
        )
    assert out.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_cli_export_honours_the_configured_nms(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``locdistill export --with-nms`` puts the config's NMS type (here the seed's name for the voting
    Cluster-DIoU-NMS) in the graph, the checkpoint's class names and the config's recipe in the
    metadata, and checks the graph on the images named."""
    from locdistill.cli import main
    from locdistill.engine.checkpoint import save_checkpoint

    model = tiny_model("voting_cluster_diou")
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "model:\n"
        "  backbone: {name: resnet18, base_width: 16, pretrained: false}\n"
        "  neck: {out_channels: 32}\n"
        "  head: {num_classes: 3, feat_channels: 32, stacked_convs: 1, norm_groups: 8}\n"
        "  test: {nms: {type: voting_cluster_diounms, iou_threshold: 0.6}}\n"
        "data: {img_scale: [160, 128], mean: [100, 110, 120], std: [50, 60, 70]}\n"
    )
    ckpt = save_checkpoint(
        tmp_path / "w.pth", {"model": model.state_dict(), "meta": {"class_names": ["x", "y", "z"]}}
    )
    Image.fromarray(synthetic_image(90, 150, 0)).save(tmp_path / "a.png")
    out = tmp_path / "m.onnx"
    argv = [
        "export",
        str(config),
        str(ckpt),
        "--out",
        str(out),
        "--with-nms",
        "--check-image",
        str(tmp_path / "a.png"),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "nms=voting_cluster_diou" in printed
    assert re.search(r"checked against predict on 1 image\(s\): \d+ detections, scores within", printed)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["class_names"]) == ["x", "y", "z"]
    assert json.loads(meta["test_cfg"])["nms_type"] == "voting_cluster_diou"
    assert Recipe.from_metadata(meta) == Recipe(
        (160, 128), 32, (100 / 255, 110 / 255, 120 / 255), (50 / 255, 60 / 255, 70 / 255)
    )
    assert [o.name for o in session.get_outputs()] == ["boxes", "scores", "labels", "num_dets"]
