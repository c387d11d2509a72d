"""Running a section in a child process and reading its wall time and peak resident memory.

`os.wait4` returns the rusage of that one child, so each figure is the child's own peak RSS (the
whole-process high-water mark, VmHWM), uncontaminated by the other sections.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mixmerge.errors import MixmergeError

# The repository root: `benchmarks` is not installed, so every child (and `python -m mixmerge.merge`)
# gets it on its path, and imports the mixmerge beside it, the one being measured.
ROOT = Path(__file__).resolve().parents[1]


def child_env(threads: int) -> dict[str, str]:
    """The same thread count for every framework's math libraries; never reach a model hub."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {
        **os.environ,
        "PYTHONPATH": path,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "WANDB_MODE": "disabled",
    }


def error_line(log: Path) -> str:
    """The exception line of a failed child's log (else its last line), for a one-line error."""
    lines = [
        line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines()
    ]
    lines = [line for line in lines if line]
    errors = [line for line in lines if re.match(r"^[\w.]*(Error|Exception)\b", line)]
    return (errors or lines or ["(no output)"])[-1]


def run_process(name: str, argv: list[str], log: Path, threads: int) -> dict[str, float]:
    """Run `argv` with its output in `log`; its process wall time and peak RSS, or a one-line error."""
    log.parent.mkdir(parents=True, exist_ok=True)
    # How busy the machine was when this process started (other users' work slows every figure).
    context = {
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "load_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    with log.open("w", encoding="utf-8") as handle:
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv, stdout=handle, stderr=subprocess.STDOUT, env=child_env(threads)
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise MixmergeError(
            f"bench {name}: the process failed (exit {proc.returncode}): {error_line(log)} (full log: {log})"
        )
    # ru_maxrss is in kilobytes on Linux, bytes on macOS
    peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return {"process_wall_s": wall, "peak_rss_mb": peak / 2**20, **context}


def run_child(name: str, spec: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run one `benchmarks.child` task; its figures plus process wall time and peak RSS."""
    work.mkdir(parents=True, exist_ok=True)
    spec = {**spec, "work_dir": str(work), "out": str(work / "result.json")}
    spec_file = work / "spec.json"
    spec_file.write_text(json.dumps(spec, indent=2), encoding="utf-8")
    process = run_process(
        name,
        [sys.executable, "-m", "benchmarks.child", str(spec_file)],
        work / "log.txt",
        spec["threads"],
    )
    result = json.loads(Path(spec["out"]).read_text(encoding="utf-8"))
    return {**result, **process}
