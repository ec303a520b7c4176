"""Optional TensorBoard scalars, fed from the same records as ``metrics.jsonl``.

Enabled by ``train.tensorboard: true`` in the config or ``locdistill train --tensorboard``; needs the
``tensorboard`` package (``pip install 'locdistill[tensorboard]'``). Events go to ``WORK_DIR/tensorboard``
(``tensorboard --logdir WORK_DIR/tensorboard``). Each record becomes one scalar per numeric field,
tagged ``<type>/<field>`` (``train/loss``, ``train/lr``, ``val/AP`` ...), at step ``global_iter``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

SKIPPED_FIELDS = ("type", "epoch", "iter", "global_iter")


def require_tensorboard() -> None:
    """Raise a one-line ``ValueError`` when the ``tensorboard`` package cannot be imported."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise ValueError(
            "TensorBoard logging was asked for (train.tensorboard / --tensorboard) but the tensorboard "
            "package is not installed: pip install 'locdistill[tensorboard]'"
        ) from None


class TensorBoardWriter:
    """Writes metric records (dicts with ``type`` and ``global_iter``) as TensorBoard scalars."""

    def __init__(self, log_dir: Path) -> None:
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        self._writer = SummaryWriter(log_dir=str(self.log_dir))

    def write(self, record: dict[str, Any]) -> None:
        kind = str(record.get("type", "metrics"))
        step = int(record.get("global_iter", 0))
        for key, value in record.items():
            if key in SKIPPED_FIELDS or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(float(value)):
                self._writer.add_scalar(f"{kind}/{key}", float(value), step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
