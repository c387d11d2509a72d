"""Checkpoints of a training run: periodic, on pre-emption (SIGTERM), and finding one to resume from.

A run's checkpoints live in `<run dir>/checkpoints/step=NNNNNNN.ckpt` (a file, or a folder of ZeRO
shards under DeepSpeed). Rerunning in the same run directory (`hydra.run.dir=<run dir>`) resumes
from the newest complete one.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from mixmerge.errors import MixmergeError
from mixmerge.training.convert import read_run_record, read_run_record_state

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
STEP_PATTERN = re.compile(r"step=(\d+)")
# The shell's convention for "terminated by SIGTERM": a pre-empted run is not a finished one.
PREEMPTED_EXIT_CODE = 143


class RunCheckpoint(ModelCheckpoint):
    """Save the run every `every_n_train_steps` optimizer steps, keeping only the newest
    checkpoint, and once more when the job receives SIGTERM (cluster pre-emption).

    SIGTERM only sets a flag; at the end of each step the ranks agree whether any of them got
    it, and then Lightning stops every rank at that same step with a `SIGTERMException`, which
    triggers the save. (Lightning's own handler broadcasts from inside the signal handler and
    checks each rank's flag on its own: under ZeRO-3, whose steps are full of collectives, that
    can leave the ranks waiting for each other forever.) Only that exception saves: after a crash
    on one rank the others would never join a collective save.
    """

    def __init__(self, dirpath: str | Path, every_n_train_steps: int = 100, **kwargs: Any):
        super().__init__(
            dirpath=dirpath,
            filename="{step:07d}",  # -> step=0000100.ckpt
            every_n_train_steps=every_n_train_steps,
            save_top_k=1,  # no monitor: the newest replaces the previous, after it is written
            save_last=False,
            **kwargs,
        )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._sigterm = False
        # Replaces the handler Lightning installed for this fit (it restores the original after).
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        log.info("SIGTERM received: stopping after this step")
        self._sigterm = True

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        # Every rank, every step, at the same point: did any rank get SIGTERM?
        if trainer.strategy.reduce_boolean_decision(getattr(self, "_sigterm", False), all=False):
            trainer._signal_connector.received_sigterm = (
                True  # Lightning stops all ranks after this step
            )
        super().on_train_batch_end(trainer, pl_module, *args)

    @property
    def saved_step(self) -> int:
        """The global step of the newest checkpoint this callback wrote (0: none yet)."""
        return self._last_global_step_saved

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, SIGTERMException) and self.saved_step != trainer.global_step:
            # The same save (and clean-up of the previous one) a periodic checkpoint makes.
            self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))
            log.info("SIGTERM: checkpoint saved to %s", self.best_model_path)


def checkpoint_dir(trainer: L.Trainer, run_dir: str | Path) -> Path:
    """Where this run's checkpoints are: the checkpoint callback's folder, else <run dir>/checkpoints."""
    callback = trainer.checkpoint_callback
    if isinstance(callback, ModelCheckpoint) and callback.dirpath:
        return Path(callback.dirpath)
    return Path(run_dir) / CHECKPOINT_DIR


def is_complete(path: Path) -> bool:
    """A checkpoint that was completely written: Lightning writes files atomically; DeepSpeed
    writes its `latest` tag file after all shards."""
    return path.is_file() or (path.is_dir() and (path / "latest").is_file())


def newest_checkpoint(folder: str | Path) -> Path | None:
    """The complete checkpoint with the highest step in `folder` (ties: the most recent)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    candidates = [p for p in folder.glob("*.ckpt") if is_complete(p)]
    if not candidates:
        return None

    def order(path: Path) -> tuple[int, float]:
        match = STEP_PATTERN.search(path.name)
        return (int(match.group(1)) if match else -1, path.stat().st_mtime)

    return max(candidates, key=order)


def resolve_resume(
    ckpt_path: str | None, folder: str | Path, output_name: str | None = None
) -> Path | None:
    """The checkpoint a run starts from.

    `ckpt_path` null: the newest checkpoint in `folder` if there is one (a rerun in the same run
    directory continues), else none; `last`: the same, said explicitly; a path: that checkpoint.
    A checkpoint found in `folder` must belong to a run of the same `output_name`: a run
    directory reused for another model is an error, not a silent resume from the wrong model.
    """
    if ckpt_path not in (None, "last"):
        path = Path(str(ckpt_path))
        if not is_complete(path):
            raise MixmergeError(
                f"ckpt_path={ckpt_path}: no such checkpoint (a .ckpt file or a DeepSpeed checkpoint folder)"
            )
        check_checkpoint(path, key="ckpt_path")
        return path
    found = newest_checkpoint(folder)
    if found is not None:
        check_checkpoint(found, key="resume")
    if found is None and ckpt_path == "last":
        log.warning("ckpt_path=last: no checkpoint in %s yet; starting from the beginning", folder)
    if found is not None and output_name is not None:
        other = read_run_record(found).get("config", {}).get("output_name")
        if other != output_name:
            raise MixmergeError(
                f"{found}: a checkpoint of output_name={other}, not {output_name}; use another run "
                "directory (hydra.run.dir), or ckpt_path=<checkpoint> to start from it on purpose"
            )
    return found


def check_checkpoint(path: Path, key: str) -> dict[str, Any]:
    """Read a checkpoint's pickled record (tensors memory-mapped, not read) before Lightning does:
    a truncated, empty or foreign file is one line naming it, not a traceback from inside `fit`."""
    try:
        state = read_run_record_state(path)
    except MixmergeError:
        raise
    except Exception as err:  # torch raises RuntimeError/EOFError/UnpicklingError/ValueError...
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise MixmergeError(
            f"{key}: {path}: not a readable checkpoint ({first}); truncated or corrupt?"
        ) from err
    if not isinstance(state, dict) or ("state_dict" not in state and not path.is_dir()):
        raise MixmergeError(
            f"{key}: {path}: not a Lightning checkpoint (no state_dict); was it written by mixmerge.train?"
        )
    return state


def save_final_checkpoint(trainer: L.Trainer, folder: str | Path) -> Path:
    """A checkpoint of the finished run (collective: every rank calls this): the periodic one when it
    was taken at the last step, else a new one."""
    callback = trainer.checkpoint_callback
    if (
        isinstance(callback, RunCheckpoint)
        and callback.saved_step == trainer.global_step
        and callback.best_model_path
    ):
        return Path(callback.best_model_path)
    path = Path(folder) / f"step={trainer.global_step:07d}.ckpt"
    trainer.save_checkpoint(path)
    return path


def preempted(trainer: L.Trainer, run_dir: str | Path) -> SystemExit:
    """The exit of a run stopped by SIGTERM: one line saying where it stopped and how to resume."""
    if trainer.is_global_zero:
        found = newest_checkpoint(checkpoint_dir(trainer, run_dir))
        where = f"checkpoint {found}" if found else "no checkpoint (none configured)"
        print(
            f"mixmerge: stopped by SIGTERM at step {trainer.global_step}; {where}. "
            f"Resume by rerunning with hydra.run.dir={run_dir}",
            flush=True,
        )
    return SystemExit(PREEMPTED_EXIT_CODE)
