"""``build_detector``: the one place that turns a model config into a detector, by its family.

``model.type`` selects the family with an explicit ``if`` chain (no registry); each branch calls that
family's own builder, the only reader of the rest of the model config::

    model = build_detector(cfg.model)        # a DenseDetector: GFL, ...

Adding a family: its detector class (implementing :class:`~locdistill.models.detectors.base.DenseDetector`)
and builder, a ``model.type`` value in :data:`locdistill.config.schema.MODEL_TYPES` and the schema's
``Literal``, and one branch here.
"""

from __future__ import annotations

from typing import Any

from locdistill.config import ModelConfig
from locdistill.models.detectors.base import DenseDetector
from locdistill.models.detectors.family_build import build_family
from locdistill.models.detectors.gfl import build_gfl


def build_detector(cfg: ModelConfig) -> DenseDetector[Any]:
    """The detector of ``cfg.type`` built from ``cfg`` (backbone pretrained weights as configured).

    Raises:
        ValueError: an unknown ``model.type`` (the config's validation refuses it first).
    """
    if cfg.type == "gfl":
        return build_gfl(cfg)
    if cfg.type in ("retina_gfl", "atss_gfl", "fcos_gfl"):
        return build_family(cfg)
    raise ValueError(f"model.type: unknown detector family {cfg.type!r}")
