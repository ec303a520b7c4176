"""The test-only kill point: the process dies by SIGKILL at the named checkpoint and at no other."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from locdistill.engine.kill_point import KILL_AFTER_ENV

SCRIPT = "from locdistill.engine.kill_point import kill_point; kill_point('iter_1.pth'); print('alive')"


def run(kill_after: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, KILL_AFTER_ENV: kill_after}
    return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env)


def test_kill_point_kills_at_the_named_checkpoint_only() -> None:
    killed = run("iter_1.pth")
    assert killed.returncode == -signal.SIGKILL and killed.stdout == ""
    alive = run("iter_10.pth")
    assert alive.returncode == 0 and alive.stdout == "alive\n", alive.stderr
