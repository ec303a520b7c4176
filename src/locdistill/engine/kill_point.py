"""A test-only kill point: ``LOCDISTILL_TEST_KILL_AFTER=epoch_1.pth`` makes the training process
SIGKILL itself right after it has written that checkpoint, pointed ``latest.pth`` at it and pruned.

The kill-and-resume tests stop a run with it at a named place, deterministically. Watching the work dir
from outside and racing the trainer with a signal depends on timing: on a busy machine the trainer can
write the next checkpoint, or finish, before the signal lands. The process dies exactly as it would from
an outside ``kill -9`` (no clean-up runs, data-loading workers are orphaned and exit on their own).

Not a user setting; unset (always, outside the tests) it does nothing.
"""

from __future__ import annotations

import os
import signal

KILL_AFTER_ENV = "LOCDISTILL_TEST_KILL_AFTER"
"""The environment variable naming the checkpoint file (``epoch_2.pth``, ``iter_1.pth``) to die after."""


def kill_point(checkpoint_name: str) -> None:
    """SIGKILL this process if ``LOCDISTILL_TEST_KILL_AFTER`` equals ``checkpoint_name`` (test-only)."""
    if os.environ.get(KILL_AFTER_ENV) == checkpoint_name:
        os.kill(os.getpid(), signal.SIGKILL)
