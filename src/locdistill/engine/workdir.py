"""The training work dir: checked before anything is built, and never trained over by accident.

:func:`prepare_work_dir` runs first in :func:`~locdistill.engine.train.train`. It refuses a path that
is a file, cannot be created or is not writable, and a fresh run (no ``--resume``) into a folder that
already holds a training run (checkpoints, ``metrics.jsonl``, ``config.yaml``...), which would otherwise
replace ``latest.pth`` and the epoch checkpoints and mix two runs' metrics. ``--overwrite`` removes
that run's files and its ``tensorboard`` folder (only those; other files in the folder stay) and starts
afresh.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from locdistill.engine.distributed import broadcast_object, is_main_process

logger = logging.getLogger(__name__)

RUN_FILES = ("latest.pth", "best.pth", "metrics.jsonl", "config.yaml", "env.json", "git_rev.txt", "train.log")
"""Files every training run writes into its work dir (besides the numbered checkpoints)."""
RUN_PATTERNS = ("epoch_*.pth", "iter_*.pth", "metrics.rank*.jsonl")
RUN_FOLDERS = ("tensorboard",)


class WorkDirError(ValueError):
    """A work dir that cannot be used, or holds a run that a fresh run would overwrite."""


def run_files(work_dir: Path) -> list[Path]:
    """The files (and folders) of a training run in ``work_dir`` (empty when there is none)."""
    if not work_dir.is_dir():
        return []
    found = [work_dir / name for name in RUN_FILES if (work_dir / name).is_file()]
    for pattern in RUN_PATTERNS:
        found += sorted(work_dir.glob(pattern))
    return found + [work_dir / name for name in RUN_FOLDERS if (work_dir / name).is_dir()]


def check_writable(work_dir: Path) -> None:
    """Create ``work_dir`` (and its parents) and write a probe file in it, or raise :class:`WorkDirError`."""
    if work_dir.exists() and not work_dir.is_dir():
        raise WorkDirError(f"work dir {work_dir} is not a folder (a file of that name exists)")
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WorkDirError(f"work dir {work_dir} cannot be created: {e.strerror or e}") from None
    try:
        with tempfile.TemporaryFile(dir=work_dir):
            pass
    except OSError as e:
        raise WorkDirError(f"work dir {work_dir} is not writable: {e.strerror or e}") from None


def prepare_work_dir(work_dir: Path, resume: bool | str | None, overwrite: bool) -> None:
    """Check ``work_dir`` before a run starts (see the module doc); with ``overwrite`` and no ``resume``
    remove a previous run's files there. The main process decides (under ``torch.distributed`` the
    others may start after it has written its first files) and every process raises its verdict."""
    error = None
    if is_main_process():
        try:
            _prepare(work_dir, resume, overwrite)
        except WorkDirError as e:
            error = str(e)
    error = broadcast_object(error)
    if error is not None:
        raise WorkDirError(error)


def _prepare(work_dir: Path, resume: bool | str | None, overwrite: bool) -> None:
    check_writable(work_dir)
    if resume:
        return
    found = run_files(work_dir)
    if found and not overwrite:
        names = ", ".join(p.name for p in found[:4]) + (", ..." if len(found) > 4 else "")
        raise WorkDirError(
            f"work dir {work_dir} already holds a training run ({names}); pass --resume to continue it, "
            "--overwrite to replace it, or choose another --work-dir"
        )
    for path in found:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            os.unlink(path)
    if found:
        logger.warning("--overwrite: removed the previous run's %d file(s) from %s", len(found), work_dir)
