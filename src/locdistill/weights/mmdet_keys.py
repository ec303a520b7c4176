"""State-dict key mapping from mmdetection's names to ours.

Our module names follow mmdetection's (``backbone.*`` in torchvision = mmdetection ResNet layout,
``neck.lateral_convs.i.conv``, ``neck.fpn_convs.i.conv``, ``cls_convs.i.conv``/``.gn``, ``gfl_cls``,
``gfl_reg``, ``scales.l.scale``), so the mapping is mostly a prefix change: ``bbox_head.`` -> ``head.``.
The non-persistent ``integral.project`` buffer is dropped. GFL v2's ``reg_conf.{0,2}`` (mmdet:
``bbox_head.reg_conf.0/2``) maps to ``head.dgqp.reg_conf.0/2``.
"""

from __future__ import annotations

from torch import Tensor

_DROP_SUFFIXES = ("integral.project",)


def convert_head_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """mmdetection ``GFLHead`` (or ``bbox_head.``-stripped) keys -> :class:`GFLHead` keys."""
    out = {}
    for key, value in state.items():
        if key.endswith(_DROP_SUFFIXES):
            continue
        if key.startswith("reg_conf."):
            key = "dgqp." + key
        out[key] = value
    return out


def convert_detector_state_dict(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """A whole mmdetection GFL/LD detector state dict -> :class:`~locdistill.models.detectors.gfl.GFL` keys.

    Returns:
        ``(converted, skipped)``: keys that could not be placed (e.g. an LD checkpoint's
        ``teacher_model.*``) are listed in ``skipped`` rather than silently dropped.
    """
    out: dict[str, Tensor] = {}
    skipped: list[str] = []
    for key, value in state.items():
        if key.startswith("backbone.") or key.startswith("neck."):
            out[key] = value
        elif key.startswith("bbox_head."):
            for k, v in convert_head_state_dict({key[len("bbox_head.") :]: value}).items():
                out["head." + k] = v
        else:
            skipped.append(key)
    return out, skipped
