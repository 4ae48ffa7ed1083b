"""One process at a time in a run directory: an advisory lock on ``RUN_DIR/.lock``.

A trainer holds the lock exclusively for its whole run (training, the final evaluation, the sample
grid); commands that read a run (eval, sample, complete, latent, report) hold it shared, so several can
read at once but none while a trainer writes. A refused process gets ``RunLockedError`` naming the
holder (the trainer writes its pid and command into the lock file). The lock is ``fcntl.flock``: the
kernel drops it when its holder exits, however it exits, so a killed run never leaves a stale lock.
A run directory that the lock created and nothing else wrote into (a request refused after locking) is
removed again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from genzoo.atomic import ensure_directory
from genzoo.errors import RunLockedError, WriteError

LOCK_FILE = ".lock"
_HELD: dict[Path, bool] = {}  # run directories whose lock this process holds -> exclusively


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    return text or "another genzoo process"


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike, shared: bool = False, enabled: bool = True) -> Iterator[None]:
    """Hold ``run_dir``'s lock (exclusive, or ``shared`` for readers) for the block; RunLockedError if
    another process holds it. ``enabled=False`` (e.g. DDP ranks other than 0) does nothing. A reader of a
    run directory that does not exist, or where it cannot create the lock file, reads unlocked."""
    run_dir = Path(run_dir)
    key = run_dir.resolve()
    if not enabled or (shared and not run_dir.is_dir()) or _HELD.get(key, False) or (shared and key in _HELD):
        yield  # nothing to lock, or this process already holds it (re-entrant)
        return
    created = not shared and not run_dir.exists()
    if not shared:
        ensure_directory(run_dir)
    path = run_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        if shared:  # a read-only run directory: nothing can write there, so nothing to exclude
            yield
            return
        raise WriteError(f"cannot create the lock file {path}: {err.strerror or err}") from None
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            what = "read" if shared else "train in"
            raise RunLockedError(
                f"cannot {what} {run_dir}: it is in use by {_holder(path)}; wait for it to finish or use another "
                "run directory"
            ) from None
        if not shared:
            command = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} ({command})\n".encode())
        _HELD[key] = not shared
        try:
            yield
        finally:
            del _HELD[key]
            if not shared:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
        if created and [p.name for p in run_dir.iterdir()] == [LOCK_FILE]:  # nothing was written: leave nothing
            with contextlib.suppress(OSError):
                path.unlink()
                run_dir.rmdir()
