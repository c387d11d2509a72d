"""Where the search's state lives: Optuna storage (SQLite in the run directory by default, any RDB
URL, or `journal:<file>`), a lock that lets several local workers share one trial budget exactly,
and the handling of trials left RUNNING by a worker that died.

Optuna advises against SQLite for parallel workers; for several processes on one machine it offers
the journal file (JournalFileBackend), and for a cluster an RDB server (PostgreSQL, MySQL).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import socket
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from mixmerge.errors import MixmergeError

log = logging.getLogger(__name__)

JOURNAL = "journal:"


def storage_file(url: str) -> Path | None:
    """The local file behind a SQLite URL or a journal storage (None for a database server)."""
    if url.startswith(JOURNAL):
        return Path(url[len(JOURNAL) :]).expanduser()
    if url.startswith("sqlite:///") and ":memory:" not in url:
        return Path(url[len("sqlite:///") :])
    return None


def open_storage(url: str, heartbeat_interval: int, grace_period: int) -> Any:
    """The Optuna storage for `search.storage`; one that cannot be opened is one line."""
    import optuna

    file = storage_file(url)
    try:
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
        if url.startswith(JOURNAL):
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(str(file)))
        if file is not None:  # one machine: a dead worker is found by its process id
            return optuna.storages.RDBStorage(url)
        with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=heartbeat_interval, grace_period=grace_period
            )
    except Exception as err:  # SQLAlchemy's many URL, driver and connection errors
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise MixmergeError(
            f"search.storage={url}: cannot be opened ({first}); expected an Optuna RDB URL "
            "(sqlite:///file.db, postgresql://…, mysql://…) or journal:<file>"
        ) from None


@contextlib.contextmanager
def worker_lock(url: str) -> Iterator[None]:
    """Exclusive among the workers of one machine sharing a storage file (count + ask, finalize).

    A database server's workers on several machines run without it: each checks the budget just
    before it asks for a trial, so the study can end up to (workers − 1) trials over budget.
    """
    file = storage_file(url)
    if file is None:
        yield
        return
    lock = file.with_name(file.name + ".search-lock")
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def worker_identity() -> dict[str, Any]:
    """Who runs a trial: enough to tell later whether that process is still alive."""
    me = psutil.Process()
    return {"host": socket.gethostname(), "pid": me.pid, "started": me.create_time()}


def _alive(worker: dict[str, Any]) -> bool:
    try:
        return psutil.Process(int(worker["pid"])).create_time() == worker["started"]
    except (psutil.Error, KeyError, ValueError, TypeError):
        return False


def fail_dead_trials(study: Any, locked: bool) -> list[int]:
    """Mark FAIL the RUNNING trials whose worker has died: on this machine by its process id (at
    once), elsewhere by Optuna's heartbeat (after `search.grace_period`, database servers only).
    `locked`: the caller holds the worker lock, under which every worker asks for a trial and
    names itself on it, so a RUNNING trial without a name was left by a worker killed in between.
    Returns the numbers of the trials failed here."""
    import optuna
    from optuna.trial import TrialState

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    host = socket.gethostname()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker")
        if worker is None and not locked:
            continue
        if worker is not None and (worker.get("host") != host or _alive(worker)):
            continue
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            if study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                failed.append(trial.number)
                log.warning("Trial %d was left running by a dead worker: marked FAIL", trial.number)
    return failed


@contextlib.contextmanager
def heartbeat(storage: Any, trial_id: int, interval: int) -> Iterator[None]:
    """Record the running trial's heartbeat (RDB storages) so other machines can tell it is alive:
    Optuna does this inside `study.optimize`, not for ask-and-tell."""
    from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled

    if not (isinstance(storage, BaseHeartbeat) and is_heartbeat_enabled(storage)):
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            storage.record_heartbeat(trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
