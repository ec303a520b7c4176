"""ONNX export: onnxruntime and PyTorch agree on a real photo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from locdistill.export import export_onnx
from locdistill.structures import ImageMeta
from tests.helpers import SHARED, tiny_gfl

ort = pytest.importorskip("onnxruntime")


def _photo(h: int, w: int, mean, std) -> torch.Tensor:
    images = sorted((SHARED / "data" / "coco128").rglob("*.jpg"))
    if not images:
        pytest.skip("../shared/data/coco128 not available")
    img = Image.open(images[0]).convert("RGB").resize((w, h), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255
    return ((x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None])[None]


@pytest.mark.parametrize("with_nms", [False, True])
def test_onnx_matches_pytorch_on_a_real_image(tmp_path: Path, with_nms: bool) -> None:
    model = tiny_gfl(0).eval()
    with torch.no_grad():  # spread the scores of the random-init model around the threshold
        torch.nn.init.normal_(model.head.gfl_cls.weight, 0, 0.2)
        torch.nn.init.normal_(model.head.gfl_reg.weight, 0, 0.2)
    h, w = 256, 320
    x = _photo(h, w, model.mean, model.std)
    path = export_onnx(model, tmp_path / "model.onnx", (h, w), with_nms=with_nms)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"images": x.numpy()})
    with torch.no_grad():
        out = model(x)
    if not with_nms:
        from locdistill.export import ExportableGFL

        with torch.no_grad():
            boxes, scores = ExportableGFL(model, (h, w))(x)
        np.testing.assert_allclose(got[0], boxes.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got[1], scores.numpy(), rtol=1e-4, atol=1e-4)
        return
    det = model.predict(out, [ImageMeta(0, "x", (h, w), (h, w), (h, w))], rescale=False)[0]
    assert len(det) > 0 and got[0].shape[0] == len(det)
    np.testing.assert_allclose(got[0], det.boxes.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got[1], det.scores.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(got[2], det.labels.numpy())
