"""The package stays lint-clean and type-checked: ``ruff check``, ``ruff format --check`` and ``mypy``
over the same paths and settings (pyproject.toml) a developer runs. Skipped where a tool is missing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["src", "tests", "benchmarks", "experiments", "tools"]


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_ruff(command: list[str]) -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    proc = _run([ruff, *command, *PATHS])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_on_the_package() -> None:
    pytest.importorskip("mypy")
    proc = _run([sys.executable, "-m", "mypy", "--no-incremental", "src"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
