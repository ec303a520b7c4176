"""Write a file atomically, with the permissions a newly created file gets."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | Path, write: Callable[[str], Any]) -> Path:
    """Call ``write(tmp_path)`` on a temp file in ``path``'s folder, then ``os.replace`` it into place.

    A crash at any point leaves either the old file or the new one, never a partial one; the temp file
    is removed when ``write`` raises. The result gets ``0o666 & ~umask`` whatever ``write`` did
    (``mkstemp`` makes ``0o600`` and safetensors' ``save_file`` recreates its file ``0o600``), so
    ``.pth`` and ``.safetensors`` outputs get the same permissions as any file the user creates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def current_umask() -> int:
    """The process umask (read by setting it and restoring it at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
