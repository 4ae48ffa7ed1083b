"""Atomic file writes: every file genzoo writes appears whole or not at all.

``atomic_path(path)`` yields a temporary path beside ``path`` (same directory, so the final rename is
atomic); when the block ends without error the temporary file replaces ``path``, otherwise it is
removed and nothing at ``path`` changes. Failures to write (a full disk, a read-only directory, a path
that is a directory) raise ``WriteError`` with one line that names the path: what the CLI prints.
Temporary files are named ``.NAME.<random>.tmp``; ``remove_stale_temporaries`` deletes those that a
killed process left behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from genzoo.errors import WriteError

__all__ = ["WriteError", "atomic_path", "ensure_directory", "remove_stale_temporaries", "write_text"]

TEMP_SUFFIX = ".tmp"


def _reason(err: OSError) -> str:
    return err.strerror or str(err) or type(err).__name__


def ensure_directory(path: str | os.PathLike) -> Path:
    """Create directory ``path`` (and its parents) or raise WriteError saying why it cannot be."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise WriteError(f"cannot write into {path}: it exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WriteError(f"cannot create directory {path}: {_reason(err)}") from None
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path that becomes ``path`` when the block succeeds (see the module docstring)."""
    path = Path(path)
    if path.is_dir():
        raise WriteError(f"cannot write {path}: it is a directory")
    ensure_directory(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
        os.close(fd)
    except OSError as err:
        raise WriteError(f"cannot write {path}: {_reason(err)}") from None
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; our files are ordinary readable files
        os.replace(tmp, path)
    except OSError as err:
        raise WriteError(f"cannot write {path}: {_reason(err)}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete the ``.NAME.<random>.tmp`` files in ``directory`` (left by a killed writer); returns them."""
    removed = []
    for tmp in Path(directory).glob(f".*{TEMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    return removed
