"""``zoo:NAME`` wherever a checkpoint path is accepted: :func:`resolve_checkpoint` turns it into a file.

The file lives in ``torch.hub.get_dir()/checkpoints/<file name of the URL>`` (``$TORCH_HOME/hub/...``,
where ``torch.hub`` and mmengine keep the same downloads). A file there whose SHA-256 starts with the
entry's prefix is used without the network; otherwise it is downloaded once (progress bar, hash checked,
atomic rename). ``LOCDISTILL_ZOO_URL`` (e.g. an internal mirror) replaces every URL by
``$LOCDISTILL_ZOO_URL/<file name>``.
"""

from __future__ import annotations

import os
from pathlib import Path

from locdistill.zoo.download import DownloadError, download_checked, sha256_of
from locdistill.zoo.entry import ZooEntry, ZooError, find_entry

ZOO_PREFIX = "zoo:"
MIRROR_ENV = "LOCDISTILL_ZOO_URL"


def is_zoo_ref(path: object) -> bool:
    """Whether ``path`` (a str or Path) is a ``zoo:NAME`` reference."""
    return isinstance(path, (str, os.PathLike)) and os.fspath(path).startswith(ZOO_PREFIX)


def zoo_entry(ref: str | os.PathLike[str]) -> ZooEntry:
    """The entry ``zoo:NAME`` names (:class:`ZooError` for an unknown name)."""
    text = os.fspath(ref)
    name = text[len(ZOO_PREFIX) :] if text.startswith(ZOO_PREFIX) else text
    return find_entry(name.strip())


def entry_url(entry: ZooEntry) -> str:
    """Where ``entry`` is downloaded from: its URL, or ``$LOCDISTILL_ZOO_URL/<file name>``."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    return f"{mirror.rstrip('/')}/{entry.file_name}" if mirror else entry.url


def cache_path(entry: ZooEntry) -> Path:
    """The local file of ``entry``: ``torch.hub.get_dir()/checkpoints/<file name>`` (also where a file
    downloaded by hand is picked up)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / entry.file_name


def fetch(entry: ZooEntry, *, progress: bool = True, timeout: float = 60.0) -> Path:
    """The checked local file of ``entry``, downloaded when it is not there yet.

    Raises:
        ZooError: one line naming the URL, the reason and the path where a file downloaded by hand
            is used; also when a file already at that path has the wrong hash (it is left alone).
    """
    dest = cache_path(entry)
    url = entry_url(entry)
    if dest.is_file():
        digest = sha256_of(dest)
        if digest.startswith(entry.sha256_prefix):
            return dest
        raise ZooError(
            f"zoo:{entry.name}: {dest} is there but its sha256 starts with "
            f"{digest[: len(entry.sha256_prefix)]}, not {entry.sha256_prefix} (a different or damaged "
            f"file); delete it to download {url} again"
        )
    try:
        return download_checked(url, dest, entry.sha256_prefix, progress=progress, timeout=timeout)
    except DownloadError as e:
        raise ZooError(
            f"cannot download zoo:{entry.name} from {url}: {e}; nothing was saved. Without network "
            f"access, download that file by hand and put it at {dest} (it is used from there when its "
            f"sha256 starts with {entry.sha256_prefix})"
        ) from None


def resolve_checkpoint(path: str | os.PathLike[str], *, progress: bool = True) -> Path:
    """A checkpoint path as given, or the local file of ``zoo:NAME`` (downloaded once, hash checked).

    Raises:
        ZooError: an unknown name, or a download that failed (see :func:`fetch`).
    """
    if is_zoo_ref(path):
        return fetch(zoo_entry(path), progress=progress)
    return Path(path)


def zoo_config(path: str | os.PathLike[str]) -> str | None:
    """The shipped locdistill config a ``zoo:NAME`` checkpoint loads into; ``None`` for other paths."""
    return zoo_entry(path).config if is_zoo_ref(path) else None
