"""Loading a state dict into a module, with every key that does not fit named.

Missing and unexpected keys raise with ``strict`` (else they are logged); a shape mismatch always
raises, since loading around it would leave a silently half-initialised layer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from locdistill.weights.errors import WeightsError
from locdistill.weights.read import WeightsFile, read_weights
from locdistill.weights.state_dict import extract_state_dict

logger = logging.getLogger(__name__)


@dataclass
class LoadReport:
    """What a load did: the source and its format, and the keys that did not fit (non-strict loads)."""

    source: str
    format: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def load_weights(
    model: nn.Module,
    source: str | Path | WeightsFile | Mapping[str, Any],
    strict: bool = True,
    use_ema: bool = False,
    target: str = "the model",
    hint: str = "",
) -> LoadReport:
    """Load the weights of ``source`` (a path, a read file or a loaded checkpoint) into ``model``.

    Args:
        strict: missing or unexpected keys raise (else they are logged as a warning).
        use_ema: the EMA copy of a training checkpoint.
        target: how the error names the model (e.g. ``"the model built from configs/x.yaml"``).
        hint: appended to the error (e.g. what config the file stores).

    Raises:
        WeightsError: one line ``"<file> does not fit <target>: 2 missing keys: ...; 12 shape mismatches:
            head.gfl_cls.weight (checkpoint (80, 256, 3, 3), model (20, 256, 3, 3)), ..."``.
    """
    if isinstance(source, (str, Path)):
        source = read_weights(source)
    name = str(source.path) if isinstance(source, WeightsFile) else "the given state"
    fmt = source.format if isinstance(source, WeightsFile) else "state_dict"
    sd, skipped = extract_state_dict(source, use_ema=use_ema)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    mismatched = [
        f"{k} (checkpoint {tuple(sd[k].shape)}, model {tuple(own[k].shape)})"
        for k in own
        if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {key_list(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {key_list(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches: {key_list(mismatched, 3)}")
    if mismatched or (strict and problems):
        raise WeightsError(
            f"{name} does not fit {target}: " + "; ".join(problems) + (f"; {hint}" if hint else "")
        )
    if problems:
        logger.warning("loading %s: %s", name, "; ".join(problems))
    with torch.no_grad():
        model.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
    return LoadReport(name, fmt, missing, unexpected, skipped)


def key_list(keys: list[str], limit: int = 8) -> str:
    """``"a, b, c, ... (12 in total)"``."""
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in total)" if len(keys) > limit else "")
