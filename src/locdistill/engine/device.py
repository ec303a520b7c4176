"""Where a command runs and in which precision: the one device choice and the one AMP rule of the
package (training, evaluation, prediction and benchmarks all ask here)."""

from __future__ import annotations

import torch

from locdistill.config import Config


def pick_device(requested: str | torch.device | None = None) -> torch.device:
    """``requested`` (``"cpu"``, ``"cuda:1"`` ...) when given; else the current CUDA device when there is
    one (under ``torchrun``, the rank's own), else the CPU."""
    if requested is not None and str(requested):
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def amp_settings(cfg: Config, device: torch.device) -> tuple[bool, torch.dtype, bool]:
    """``(autocast on, its dtype, GradScaler on)``: AMP (``train.amp``, ``train.amp_dtype``) only on
    CUDA; the scaler only for float16."""
    dtype = torch.bfloat16 if getattr(cfg.train, "amp_dtype", "float16") == "bfloat16" else torch.float16
    use_amp = bool(cfg.train.amp) and device.type == "cuda"
    return use_amp, dtype, use_amp and dtype == torch.float16
