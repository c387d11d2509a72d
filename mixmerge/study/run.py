"""Run a study: each stage is one Hydra multirun subprocess; finished outputs are skipped."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mixmerge.errors import MixmergeError
from mixmerge.study.plan import Stage, is_complete, plan_study

JOB_LINE = re.compile(r"#(\d+) : ")  # Hydra's multirun launcher announces each job this way


def _fmt(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return (
        f"{seconds // 3600}h{seconds // 60 % 60:02d}m"
        if seconds >= 3600
        else f"{seconds // 60}m{seconds % 60:02d}s"
    )


class Clock:
    """Seconds per job, per command: from the study's estimates until real jobs have been timed."""

    def __init__(self, estimates: dict[str, float]):
        self.estimates = dict(estimates)
        self.measured: dict[str, list[float]] = {}

    def per_job(self, command: str) -> float:
        done = self.measured.get(command)
        return sum(done) / len(done) if done else float(self.estimates.get(command, 60))

    def record(self, command: str, seconds: float, jobs: int) -> None:
        if jobs:
            self.measured.setdefault(command, []).append(seconds / jobs)


def time_left(elapsed: float, pending: list[bool], k: int, fallback: float) -> float:
    """Seconds left in a stage when its job `k` (0-based) starts, `elapsed` seconds in: the jobs
    that ran so far set the time per job (`fallback` before any has run); jobs whose output was
    already complete are skipped in seconds and count in neither."""
    ran = sum(pending[:k])
    per_job = elapsed / ran if ran else fallback
    return per_job * sum(pending[k:])


def stage_command(stage: Stage, sweep_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        f"mixmerge.{stage.command}",
        "-m",
        *stage.sweep_args(),
        "skip_existing=true",
        f"hydra.sweep.dir={sweep_dir}",
    ]


def run_stage(
    stage: Stage,
    sweep_dir: Path,
    log_file: Path,
    pending: list[bool],
    clock: Clock,
    remaining_after: float,
) -> None:
    """Run one stage's multirun, echoing per-job progress and an estimate of the time left.
    `pending[i]`: job i has no finished output yet (the others are skipped in seconds, so they
    count neither in the time per job nor in the time left)."""
    todo = sum(pending)
    cmd = stage_command(stage, sweep_dir)
    start = time.time()
    with log_file.open("w", encoding="utf-8") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            match = JOB_LINE.search(line)
            if match:
                k = int(match.group(1))
                elapsed = time.time() - start
                left = time_left(elapsed, pending, k, clock.per_job(stage.command))
                left += remaining_after
                print(
                    f"    job {k + 1}/{len(stage.jobs)}: {line.split(' : ', 1)[1].strip()}  "
                    f"[{_fmt(elapsed)} elapsed, ~{_fmt(left)} left in the study]",
                    flush=True,
                )
        code = proc.wait()
    clock.record(stage.command, time.time() - start, todo)
    if code != 0:
        tail = [
            line
            for line in log_file.read_text(encoding="utf-8").splitlines()
            if "mixmerge: error:" in line
        ]
        why = tail[-1] if tail else f"exit code {code}"
        raise MixmergeError(f"study stage '{stage.name}' failed ({why}); full log: {log_file}")


def run_study(cfg: DictConfig) -> dict[str, Any]:
    """Plan every stage, then run the unfinished ones in order. A rerun continues where it stopped."""
    study = cfg.study
    models_dir = Path(cfg.paths.models_dir)
    run_dir = Path(cfg.paths.output_dir)
    stages = plan_study(study)
    clock = Clock(dict(study.get("seconds_per_job") or {}))

    def pending_jobs(stage: Stage) -> list[bool]:
        return [not is_complete(stage, out, models_dir) for out in stage.outputs]

    def todo(stage: Stage) -> int:
        return sum(pending_jobs(stage))

    print(f"Study {study.name}: {len(stages)} stages, {sum(len(s.jobs) for s in stages)} jobs")
    summary: dict[str, Any] = {"study": str(study.name), "stages": {}}
    study_start = time.time()
    for index, stage in enumerate(stages, 1):
        flags = pending_jobs(stage)
        pending = sum(flags)
        later = sum(todo(s) * clock.per_job(s.command) for s in stages[index:])
        if pending == 0:
            print(
                f"[{index}/{len(stages)}] {stage.name}: all {len(stage.jobs)} outputs complete, skipped"
            )
            summary["stages"][stage.name] = {"jobs": len(stage.jobs), "ran": 0}
            continue
        estimate = pending * clock.per_job(stage.command)
        print(
            f"[{index}/{len(stages)}] {stage.name}: {stage.command} × {len(stage.jobs)} jobs "
            f"({len(stage.jobs) - pending} already complete); estimated {_fmt(estimate)}, "
            f"~{_fmt(estimate + later)} left in the study",
            flush=True,
        )
        sweep_dir = Path(cfg.paths.root_dir) / "multirun" / "study" / str(study.name) / stage.name
        run_stage(
            stage, sweep_dir, run_dir / f"stage-{index:02d}-{stage.name}.log", flags, clock, later
        )
        missing = [out for out in stage.outputs if not is_complete(stage, out, models_dir)]
        if missing:
            raise MixmergeError(
                f"study stage '{stage.name}' finished without outputs for {', '.join(missing)}"
            )
        summary["stages"][stage.name] = {"jobs": len(stage.jobs), "ran": pending}
    summary["seconds"] = round(time.time() - study_start, 1)
    print(
        f"Study {study.name} complete in {_fmt(summary['seconds'])}. Next: python -m mixmerge.report"
        + (
            f" logger={study.logger} group={study.name}"
            if study.get("logger") not in (None, "none")
            else ""
        )
    )
    return summary
