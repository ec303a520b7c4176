"""Run set-up shared by the commands: seeding, and the reproducibility files written into every work
dir (resolved config, environment, git revision). The device and AMP choice is
:mod:`locdistill.engine.device`."""

from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision

from locdistill import __version__
from locdistill.config import Config, dump_config


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch (all devices); optionally ask for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def git_revision() -> tuple[str, bool]:
    """``(commit, dirty)`` of the git checkout holding the locdistill sources, or ``("unknown", False)``
    (an installed copy; a package that merely lies inside some other repository does not count)."""
    src = Path(__file__).resolve().parents[1]

    def git(*args: str, check: bool = True) -> str:
        return subprocess.run(
            ["git", *args], cwd=src, capture_output=True, text=True, timeout=10, check=check
        ).stdout.strip()

    try:
        git("ls-files", "--error-unmatch", "__init__.py")  # our sources are tracked in this checkout
        rev = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ".", check=False))
        return rev or "unknown", dirty
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


def environment_info(world_size: int) -> dict[str, Any]:
    rev, dirty = git_revision()
    return {
        "locdistill_version": __version__,
        "git_rev": rev,
        "git_dirty": dirty,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "world_size": world_size,
        "argv": sys.argv,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_run_info(cfg: Config, work_dir: Path, world_size: int) -> dict[str, Any]:
    """``config.yaml`` (resolved), ``env.json`` (versions, world size, argv) and ``git_rev.txt``."""
    work_dir.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, work_dir / "config.yaml")
    env = environment_info(world_size)
    (work_dir / "env.json").write_text(json.dumps(env, indent=2) + "\n", encoding="utf-8")
    (work_dir / "git_rev.txt").write_text(env["git_rev"] + (" (dirty)" if env["git_dirty"] else "") + "\n")
    return env
