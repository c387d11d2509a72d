"""Helpers shared by the tests (fixtures stay in conftest.py): the checkout's paths, the overrides
that put a run on the tiny model, and running a command as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# Overrides that put a train run on the tiny model, fast and quiet (no logger, callbacks or bar; fp32).
TINY = [
    "model=tiny_random",
    "logger=none",
    "callbacks=none",
    "trainer.enable_progress_bar=false",
    "trainer.precision=32-true",
    "data.max_length=384",
]


def run_cli(
    module: str, *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Run `python -m <module> args…` as a user would, in `cwd`, with this checkout's code (its root
    first on PYTHONPATH: from `cwd` Python would import whichever mixmerge is installed)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    full_env = {**os.environ, "PYTHONPATH": path, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
