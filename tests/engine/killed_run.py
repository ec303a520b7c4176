"""A training subprocess stopped by SIGKILL at a named checkpoint, for the kill-and-resume tests.

The process kills itself (``LOCDISTILL_TEST_KILL_AFTER``, :mod:`locdistill.engine.kill_point`) right after
the checkpoint is written and linked, so where it stops does not depend on how busy the machine is. It
runs with as many intra-op threads as the test process: the runs it is compared with bit for bit are
made in the test process, and a CPU kernel may split a reduction by thread count.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

from locdistill.engine.kill_point import KILL_AFTER_ENV

HANG_GUARD_S = 1800
"""Only against a hung run (these runs take seconds to a minute): far beyond any slowdown by load."""


def train_killed_after(checkpoint: str, args: list[str], log: Path) -> None:
    """Run ``python -m locdistill train ARGS``, which SIGKILLs itself right after writing ``checkpoint``
    (a file name such as ``epoch_1.pth``); fail unless it died that way. Its stderr goes to ``log``."""
    threads = str(torch.get_num_threads())
    env = {
        **os.environ,
        KILL_AFTER_ENV: checkpoint,
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
    }
    cmd = [sys.executable, "-m", "locdistill", "train", *args]
    with log.open("w") as err:
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env, timeout=HANG_GUARD_S)
    if proc.returncode != -signal.SIGKILL:
        tail = log.read_text()[-3000:]
        raise AssertionError(f"the run was to die after {checkpoint}; exit {proc.returncode}:\n{tail}")
