"""The ``[CONFIG] CKPT`` positionals of ``test`` / ``predict`` / ``export`` / ``benchmark``: a checkpoint of
ours stores its config, so CONFIG is optional; these functions tell which path is which."""

from __future__ import annotations

import argparse
from pathlib import Path

from locdistill.config import ConfigError, resolve_config_path

CONFIG_SUFFIXES = (".yaml", ".yml")


def looks_like_config(arg: str) -> bool:
    """A ``.yaml`` / ``.yml`` path, or a shipped config name (``gfl/gfl_r18_fpn_coco128``) that is no file;
    never ``zoo:NAME`` (a checkpoint)."""
    if arg.startswith("zoo:"):
        return False
    if Path(arg).suffix.lower() in CONFIG_SUFFIXES:
        return True
    if Path(arg).exists():
        return False
    try:
        resolve_config_path(arg)
    except ConfigError:
        return False
    return True


def sort_paths(args: argparse.Namespace) -> None:
    """Turn the positional ``paths`` of test / predict / export / benchmark into ``args.config`` (``None``:
    the config stored in the checkpoint), ``args.checkpoint`` and, for predict, ``args.images``.

    Two paths are CONFIG CKPT; one is a CONFIG when it looks like one (benchmark: random weights),
    else a CKPT. Raises ``ValueError`` naming what is missing.
    """
    paths = getattr(args, "paths", None)
    if paths is None:
        return
    paths = [str(p) for p in paths]
    config: str | None = None
    if args.command == "predict":
        if looks_like_config(paths[0]):
            config, paths = paths[0], paths[1:]
        if len(paths) < 2:
            raise ValueError("predict needs a checkpoint and at least one image: [CONFIG] CKPT IMAGE ...")
        args.config, args.checkpoint, args.images = config, paths[0], [Path(p) for p in paths[1:]]
        return
    if len(paths) > 2:
        raise ValueError(f"{args.command} takes [CONFIG] CKPT, got {len(paths)} paths: {' '.join(paths)}")
    if len(paths) == 2:
        args.config, args.checkpoint = paths
    elif args.command == "benchmark" and looks_like_config(paths[0]):
        args.config, args.checkpoint = paths[0], None
    elif looks_like_config(paths[0]):
        raise ValueError(f"{args.command} needs a checkpoint after the config {paths[0]}: CONFIG CKPT")
    else:
        args.config, args.checkpoint = None, paths[0]
