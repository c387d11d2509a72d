"""Atomic outputs: a finished-looking folder or file exists only once it is complete."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mixmerge.errors import MixmergeError

# errno values that mean "the disk cannot take this": reported as one line, not a traceback.
DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


def disk_errno(err: BaseException) -> int | None:
    """The errno of a write the disk refused, or None. Writers in Rust (safetensors' serializer,
    which writes every model file) raise their own exception type with the OS error in its text,
    `... No space left on device (os error 28)`, not an OSError."""
    if isinstance(err, OSError):
        code = err.errno
    else:
        found = re.search(r"\(os error (\d+)\)", str(err))
        code = int(found.group(1)) if found else None
    return code if code in DISK_ERRORS else None


def disk_error(err: BaseException, target: Path, kept: str) -> MixmergeError:
    """One line for a write the disk refused, saying what was kept."""
    code = disk_errno(err)
    reason = getattr(err, "strerror", None) or (os.strerror(code) if code else str(err))
    return MixmergeError(f"{target}: {reason} while writing it; {kept}")


@contextlib.contextmanager
def output_lock(final: Path, wait: bool) -> Iterator[None]:
    """Hold an exclusive lock on `final`'s name for as long as it is being written.

    An flock on `.<name>.lock` beside it: the kernel releases it when the holder exits, however it
    exits (SIGKILL included), so a crashed writer never blocks the next. `wait=False`: a second
    writer of the same name stops at once with one line (two jobs of a misconfigured sweep);
    `wait=True`: it waits its turn (overwrite=true, caches).
    """
    lock = final.parent / f".{final.name}.lock"
    while True:
        handle = lock.open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.close()
            raise MixmergeError(
                f"{final}: another process is writing this output now (it holds {lock}); two "
                "runs with the same output_name cannot both write it (give each its own output_name)"
            ) from None
        try:  # the holder before us removes the file as it finishes: lock the one on disk now
            if os.stat(lock).st_ino == os.fstat(handle.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        handle.close()
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)  # while still holding it, so no lock file is left behind
        handle.close()


@contextlib.contextmanager
def atomic_dir(final: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder; rename it to `final` only if the block succeeds.

    An exception (or a kill) leaves at most a `.tmp-*` folder, never a half-written `final`; the
    next writer of the same name removes such leftovers. Writers of one name are serialised by a
    lock, and without `overwrite` a folder that appeared meanwhile is never replaced: of two
    concurrent runs one wins and the other stops with one line. A full disk is one line, and the
    previous `final` (with `overwrite`) is left as it was.
    """
    final = Path(final)
    if final.exists() and not overwrite:
        raise MixmergeError(f"{final} already exists; refusing to overwrite a finished output")
    final.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(final, wait=overwrite):
        if final.exists() and not overwrite:  # finished by another run while this one waited
            raise MixmergeError(f"{final} already exists; refusing to overwrite a finished output")
        prefix = f".tmp-{final.name}-"
        for stale in final.parent.glob(f"{prefix}*"):  # left by a killed writer of this name
            if re.fullmatch(r"[0-9a-f]{8}", stale.name.removeprefix(prefix)):  # not `<name>-w0.3`'s
                shutil.rmtree(stale, ignore_errors=True)
        tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            yield tmp
        except Exception as err:
            shutil.rmtree(tmp, ignore_errors=True)
            if disk_errno(err) is not None:
                kept = (
                    f"the previous {final.name} is unchanged"
                    if final.exists()
                    else f"nothing was written to {final.name}"
                )
                raise disk_error(err, final, kept) from err
            raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if final.exists() and not overwrite:  # a writer that bypassed the lock (another machine)
            shutil.rmtree(tmp, ignore_errors=True)
            raise MixmergeError(
                f"{final} appeared while this run was writing it; kept the other run's output"
            )
        if final.exists():
            old = final.parent / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write text through a temporary file and an atomic rename (a reader never sees half of it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if disk_errno(err) is not None:
            kept = "the previous file is unchanged" if path.exists() else "it was not written"
            raise disk_error(err, path, kept) from err
        raise
    return path


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write JSON through a temporary file and an atomic rename."""
    return write_text_atomic(
        path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"
    )
