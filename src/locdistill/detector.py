"""A trained detector for notebooks and scripts: ``Detector.from_checkpoint(path).predict(images)``.

::

    from locdistill import Detector

    det = Detector.from_checkpoint("work_dirs/gfl_r18_fpn_coco128/latest.pth")   # config stored inside
    pred = det.predict("photo.jpg")            # also a PIL image, an HxWx3 uint8 RGB array, or a list
    pred.boxes, pred.scores, pred.labels, pred.class_names   # boxes: xyxy in the photo's own pixels

Each image goes alone (batch 1) through the config's test pipeline (keep-ratio resize into
``data.img_scale``, normalisation, padding to ``data.size_divisor``) and the model's post-processing
(``model.test``: score threshold, NMS, top-k): the same path as ``locdistill predict``, so the two
give identical detections.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import torch
from torch import Tensor

from locdistill.config import Config
from locdistill.engine.predict import prepare_tensor
from locdistill.models.detectors.base import DenseDetector
from locdistill.models.from_checkpoint import build_detector_from_checkpoint
from locdistill.structures import Detections

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

ImageInput: TypeAlias = "str | Path | np.ndarray | PILImage"
"""A path, a PIL image or an ``HxWx3`` uint8 RGB array."""


@dataclass
class Prediction:
    """Detections on one image, on the CPU, best first.

    ``boxes [k, 4]`` xyxy in the original image's pixels, ``scores [k]``, ``labels [k]`` (int64 class
    indices), ``class_names``: the name of each detection's class (``k`` strings), ``image_size``:
    the original ``(height, width)``.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    class_names: list[str]
    image_size: tuple[int, int]

    def __len__(self) -> int:
        return int(self.scores.numel())


class Detector:
    """A detector (:class:`~locdistill.models.detectors.base.DenseDetector`, any family) in eval mode
    with its config and class names.

    Args:
        model: the detector.
        cfg: its config (the test pipeline comes from ``cfg.data``).
        class_names: one name per class.
    """

    def __init__(self, model: DenseDetector[Any], cfg: Config, class_names: Sequence[str]) -> None:
        self.model = model.eval()
        self.cfg = cfg
        self.class_names = list(class_names)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str | torch.device = "cpu",
        config: Config | str | Path | None = None,
        overrides: Sequence[str] = (),
        use_ema: bool = False,
    ) -> Detector:
        """Load ``path`` (any supported weights file); ``config``: a YAML path or a Config, needed only
        when the checkpoint stores none (mmdetection files, plain state dicts); ``overrides``:
        ``key=value`` strings as ``--set``."""
        model, info = build_detector_from_checkpoint(path, config, overrides, device, use_ema)
        return cls(model, info.config, info.class_names)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def predict(
        self, images: ImageInput | list[ImageInput] | tuple[ImageInput, ...], score_thr: float | None = None
    ) -> Prediction | list[Prediction]:
        """Detect on one image (returns a :class:`Prediction`) or a list of them (returns a list).

        ``score_thr``: drop detections below it (``None``: keep what ``model.test.score_thr`` kept).
        """
        if isinstance(images, (list, tuple)):
            return [self._predict_one(image, i, score_thr) for i, image in enumerate(images)]
        return self._predict_one(images, 0, score_thr)

    @torch.inference_mode()
    def _predict_one(self, image: ImageInput, index: int, score_thr: float | None) -> Prediction:
        pixels, name = to_uint8_chw(image), str(image) if isinstance(image, (str, Path)) else ""
        batch = prepare_tensor(pixels, self.cfg, self.model.mean, self.model.std, index, name)
        outputs = self.model(batch.images.to(self.device))
        det = self.model.predict(outputs, batch.metas, rescale=True)[0].to("cpu")
        if score_thr is not None:
            keep = det.scores >= score_thr
            det = Detections(det.boxes[keep], det.scores[keep], det.labels[keep])
        names = [self.class_names[int(c)] for c in det.labels]
        size = (int(pixels.shape[1]), int(pixels.shape[2]))
        return Prediction(det.boxes, det.scores, det.labels, names, size)


def to_uint8_chw(image: ImageInput) -> Tensor:
    """``uint8 [3, H, W]`` RGB from a path (read as ``locdistill predict`` reads it), a PIL image or an
    ``HxWx3`` uint8 RGB array; anything else is a ``ValueError`` saying what was given."""
    if isinstance(image, (str, Path)):
        from locdistill.data import read_image

        return read_image(image)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"an image array must be HxWx3 uint8 RGB, got shape {tuple(image.shape)} dtype {image.dtype}"
            )
        return torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).contiguous()
    from PIL import Image

    if isinstance(image, Image.Image):
        return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous()
    raise ValueError(
        f"cannot read an image from a {type(image).__name__}: "
        "give a path, a PIL image or an HxWx3 uint8 array"
    )
