"""ONNX export: onnxruntime reproduces PyTorch on real photos, for a batch of any size, with the configured
NMS (plain or Score-voting Cluster-DIoU-NMS) in the graph; metadata; the export-time parity check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from locdistill.config import BackboneConfig, HeadConfig, ModelConfig, NeckConfig, NMSConfig
from locdistill.config import TestConfig as ModelTestConfig
from locdistill.export import ExportableGFL, ExportParityError, export_onnx
from locdistill.models.detectors.gfl import GFL, build_gfl
from locdistill.structures import ImageMeta

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
H, W = 256, 320


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


def photos(coco128_dir: Path, model: GFL, count: int = 2) -> torch.Tensor:
    files = sorted(coco128_dir.rglob("*.jpg"))[:count]
    batch = []
    for f in files:
        img = Image.open(f).convert("RGB").resize((W, H), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255
        batch.append((x - torch.tensor(model.mean)[:, None, None]) / torch.tensor(model.std)[:, None, None])
    return torch.stack(batch)


def metas(n: int) -> list[ImageMeta]:
    return [ImageMeta(i, f"img{i}", (H, W), (H, W), (H, W)) for i in range(n)]


@pytest.mark.parametrize("nms_type", ["nms", "voting_cluster_diou"])
def test_onnx_with_nms_matches_predict_on_real_photos(
    tmp_path: Path, coco128_dir: Path, nms_type: str
) -> None:
    model = tiny_model(nms_type)
    x = photos(coco128_dir, model)
    path = export_onnx(model, tmp_path / "model.onnx", (H, W), with_nms=True, class_names=["a", "b", "c"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        dets = model.predict(model(x), metas(len(x)), rescale=False)
    for batch in (x, x[1:]):  # the batch axis is dynamic
        boxes, scores, labels, num = session.run(None, {"images": batch.numpy()})
        assert boxes.shape == (len(batch), 100, 4) and labels.dtype == np.int64
        for i, det in enumerate(dets[len(x) - len(batch) :]):
            n = int(num[i])
            assert n == len(det) > 20
            np.testing.assert_array_equal(labels[i, :n], det.labels.numpy())
            np.testing.assert_allclose(scores[i, :n], det.scores.numpy(), rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(boxes[i, :n], det.boxes.numpy(), rtol=1e-4, atol=1e-3)
            assert (labels[i, n:] == -1).all() and (scores[i, n:] == 0).all()
    if nms_type == "voting_cluster_diou":  # voting really moved boxes: not what plain NMS keeps
        model.test_cfg.nms_type = "nms"
        with torch.no_grad():
            plain = model.predict(model(x), metas(len(x)), rescale=False)
        assert not torch.allclose(plain[0].boxes[:10], dets[0].boxes[:10])


def test_onnx_without_nms_and_metadata(tmp_path: Path, coco128_dir: Path) -> None:
    model = tiny_model()
    x = photos(coco128_dir, model, count=3)
    path = export_onnx(model, tmp_path / "raw.onnx", (H, W), class_names=["rbc", "wbc", "platelets"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    boxes, scores = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        ref_boxes, ref_scores = ExportableGFL(model, (H, W))(x)
        raw = model(x)
    np.testing.assert_allclose(boxes, ref_boxes.numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(scores, ref_scores.numpy(), rtol=1e-4, atol=1e-5)
    first_level = raw.cls_scores[0].sigmoid().permute(0, 2, 3, 1).reshape(3, -1, 3)
    np.testing.assert_allclose(scores[:, : first_level.shape[1]], first_level.numpy(), rtol=1e-4, atol=1e-5)
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["class_names"]) == ["rbc", "wbc", "platelets"]
    assert json.loads(meta["input_size"]) == [H, W]
    assert json.loads(meta["mean"]) == pytest.approx(list(model.mean))
    assert json.loads(meta["std"]) == pytest.approx(list(model.std))
    assert json.loads(meta["test_cfg"])["nms_type"] is None


def test_a_failing_parity_check_writes_nothing(tmp_path: Path) -> None:
    """Suppression decided on too short a prefix (nms_topk=8) keeps fewer boxes than GFL.predict: the
    check says so, and the file the user named is neither written nor replaced."""
    model = tiny_model("voting_cluster_diou")
    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous export")
    with pytest.raises(ExportParityError, match=r"detections in onnxruntime and \d+ in PyTorch.*nms_topk=8"):
        export_onnx(model, out, (H, W), with_nms=True, nms_topk=8)
    assert out.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_cli_export_honours_the_configured_nms(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``locdistill export --with-nms`` puts the config's NMS type (here the seed's name for the voting
    Cluster-DIoU-NMS) in the graph, and the checkpoint's class names in the metadata."""
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
    )
    ckpt = save_checkpoint(
        tmp_path / "w.pth", {"model": model.state_dict(), "meta": {"class_names": ["x", "y", "z"]}}
    )
    out = tmp_path / "m.onnx"
    argv = ["export", str(config), str(ckpt), "--out", str(out), "--with-nms", "--img-size", "128", "160"]
    assert main(argv) == 0
    assert "nms=voting_cluster_diou" in capsys.readouterr().out
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["class_names"]) == ["x", "y", "z"]
    assert json.loads(meta["test_cfg"])["nms_type"] == "voting_cluster_diou"
    names = [o.name for o in ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).get_outputs()]
    assert names == ["boxes", "scores", "labels", "num_dets"]
