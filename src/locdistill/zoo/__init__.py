"""The model zoo: mmdetection's released GFL and LD checkpoints, one word away (``zoo:NAME``).

::

    zoo_entries() -> (ZooEntry, ...)        # entry.py: models.yaml (name, box AP, URL, hash, config)
    resolve_checkpoint("zoo:gfl_r50_fpn_1x_coco") -> Path   # resolve.py: cached, else downloaded
    zoo_config("zoo:...") -> "gfl/gfl_r50_fpn_coco_1x"       # the config the weights load into
    download_checked(url, dest, sha256_prefix)              # download.py: .partial, hash, rename

``locdistill zoo`` lists the table. Every reader of a checkpoint path calls :func:`resolve_checkpoint`
(:func:`locdistill.weights.read_weights`), and :func:`locdistill.models.from_checkpoint.
build_detector_from_checkpoint` takes :func:`zoo_config` when no config is given. Errors are one-line
:class:`ZooError` s. Nothing here imports the rest of locdistill.
"""

from locdistill.zoo.download import DownloadError, download_checked, sha256_of
from locdistill.zoo.entry import ZooEntry, ZooError, find_entry, zoo_entries
from locdistill.zoo.resolve import (
    MIRROR_ENV,
    ZOO_PREFIX,
    cache_path,
    entry_url,
    fetch,
    is_zoo_ref,
    resolve_checkpoint,
    zoo_config,
    zoo_entry,
)

__all__ = [
    "MIRROR_ENV",
    "ZOO_PREFIX",
    "DownloadError",
    "ZooEntry",
    "ZooError",
    "cache_path",
    "download_checked",
    "entry_url",
    "fetch",
    "find_entry",
    "is_zoo_ref",
    "resolve_checkpoint",
    "sha256_of",
    "zoo_config",
    "zoo_entries",
    "zoo_entry",
]
