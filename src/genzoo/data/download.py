"""The one place where dataset files are fetched and checked.

A dataset declares its files as ``RemoteFile`` entries (local name, URLs canonical first, checksums).
``ensure_files`` makes sure each one is present in the dataset folder and matches a checksum:

* a file already there that verifies is used as is; one that fails its checksum is reported as corrupt
  and never overwritten (the user decides what to do with it);
* a missing file is downloaded (when ``download=True``, by pooch's HTTP downloader) into a temporary file
  in the same folder, checked for truncation and checksum, then moved into place (``genzoo.atomic``: no
  half file is ever visible under the real name). A failing URL is reported and the next one is tried;
* when nothing can be fetched (no network, ``download=False``), the ``DataError`` lists which files to
  put where (full paths) and where to get them.

Mirrors. The environment variable ``GENZOO_MIRROR`` (one or more base URLs separated by commas or
spaces), or the ``mirrors`` argument of ``ensure_files``, names mirrors tried *before* the canonical URLs.
A mirror has the data-root layout: ``<mirror>/<dataset folder>/<file name>``, so serving a data root
(e.g. ``python -m http.server`` in it) makes a mirror. Alternative local names (a gzipped copy) are also
tried on mirrors.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from genzoo.atomic import WriteError, atomic_path, ensure_directory
from genzoo.data.base import DataError

MIRROR_ENV = "GENZOO_MIRROR"
TIMEOUT_S = 30.0  # per network operation (connect, each read)
CHUNK_BYTES = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class RemoteFile:
    """A file of a dataset: where it lives locally, where to fetch it, how to recognise a good copy.

    A copy is accepted when the md5 of its bytes is one of ``md5``, or when the sha256 of its content
    (after gunzip if it is gzip-compressed) equals ``content_sha256``. At least one checksum is required.
    """

    name: str  # file name inside the dataset folder
    urls: tuple[str, ...]  # canonical first, then mirrors; each serves ``name``
    md5: tuple[str, ...] = ()  # accepted md5 hex digests of the file as stored
    content_sha256: str | None = None  # sha256 hex digest of the (decompressed) content
    alternatives: tuple[str, ...] = ()  # other local names accepted in place of ``name`` (e.g. "x.gz")

    def __post_init__(self):
        if not self.md5 and not self.content_sha256:
            raise ValueError(f"RemoteFile {self.name!r} needs at least one checksum")

    @property
    def local_names(self) -> tuple[str, ...]:
        return (self.name, *self.alternatives)


# ----------------------------------------------------------------------------------------------------
# reading and checking local files


def read_content(path: Path) -> bytes:
    """The bytes of ``path``, gunzipped if the file is gzip-compressed (by its magic number)."""
    raw = Path(path).read_bytes()
    return gunzip_if_needed(raw, path)


def gunzip_if_needed(raw: bytes, path: Path | str) -> bytes:
    """``raw`` decompressed if it starts with the gzip magic number; DataError if it is damaged."""
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:
        raise DataError(f"{path}: damaged or truncated gzip data ({e}); delete it and download it again") from e


def checksum_problem(path: Path, remote: RemoteFile) -> str | None:
    """None if the file at ``path`` matches a checksum of ``remote``, else what was found instead."""
    raw = Path(path).read_bytes()
    md5 = hashlib.md5(raw).hexdigest()
    if md5 in remote.md5:
        return None
    found = [f"md5 {md5}"]
    if remote.content_sha256:
        try:
            sha = hashlib.sha256(gunzip_if_needed(raw, path)).hexdigest()
        except DataError:
            return f"md5 {md5} not accepted and the gzip data cannot be decompressed (truncated?)"
        if sha == remote.content_sha256:
            return None
        found.append(f"content sha256 {sha}")
    expected = [f"md5 {m}" for m in remote.md5]
    if remote.content_sha256:
        expected.append(f"content sha256 {remote.content_sha256}")
    return f"{', '.join(found)}; expected {' or '.join(expected)}"


def checksums_of(files) -> dict[str, str]:
    """File name -> the checksums a copy is accepted by, as text (for a dataset's ``info``)."""
    return {
        f.name: " or ".join(
            [*(f"md5 {m}" for m in f.md5), *([f"content sha256 {f.content_sha256}"] if f.content_sha256 else [])]
        )
        for f in files
    }


def find_local(dataset_dir: Path, remote: RemoteFile) -> Path | None:
    """The first existing local copy of ``remote`` (its name, then its alternatives), or None."""
    for name in remote.local_names:
        path = dataset_dir / name
        if path.is_file():
            return path
    return None


# ----------------------------------------------------------------------------------------------------
# fetching


def mirror_bases(mirrors: Sequence[str] | None = None) -> list[str]:
    """Mirror base URLs: ``mirrors`` if given, else those in $GENZOO_MIRROR (comma/space separated)."""
    if mirrors is None:
        mirrors = os.environ.get(MIRROR_ENV, "").replace(",", " ").split()
    return [m.rstrip("/") for m in mirrors if m.strip()]


def candidates(dataset_dir: Path, remote: RemoteFile, mirrors: Sequence[str] | None) -> list[tuple[str, str]]:
    """(url, local name) pairs to try, in order: mirrors first, then the file's own URLs."""
    out = [(f"{base}/{dataset_dir.name}/{name}", name) for base in mirror_bases(mirrors) for name in remote.local_names]
    return out + [(url, remote.name) for url in remote.urls]


def fetch_to(url: str, dest: Path, remote: RemoteFile, timeout: float = TIMEOUT_S, progress: bool | None = None):
    """Download ``url`` to ``dest`` atomically with pooch's HTTP downloader, then check the length and the
    checksum; DataError on any failure.

    The data goes to a temporary file beside ``dest`` (``genzoo.atomic``) that is removed on failure and
    renamed to ``dest`` only once complete and verified.
    """
    import pooch
    import requests

    show = progress if progress is not None else sys.stderr.isatty()
    downloader = pooch.HTTPDownloader(progressbar=bool(show), chunk_size=CHUNK_BYTES, timeout=timeout)
    try:
        with atomic_path(dest) as tmp:
            try:
                downloader(url, str(tmp), None)
            except requests.HTTPError as e:
                raise DataError(f"{url}: HTTP {e.response.status_code} {e.response.reason}") from None
            except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as e:
                raise DataError(f"{url}: download interrupted, the data is truncated ({e})") from None
            except requests.RequestException as e:
                raise DataError(f"{url}: unreachable ({type(e).__name__}: {e})") from None
            problem = checksum_problem(tmp, remote)
            if problem:
                raise DataError(f"{url}: downloaded file fails its checksum ({problem})")
    except WriteError as e:
        raise DataError(f"{e}; {url} could not be saved there") from None


# ----------------------------------------------------------------------------------------------------
# the entry point


def ensure_files(
    dataset_dir: str | Path,
    files: Sequence[RemoteFile],
    download: bool = True,
    mirrors: Sequence[str] | None = None,
    timeout: float = TIMEOUT_S,
) -> dict[str, Path]:
    """Make every file of ``files`` present and verified in ``dataset_dir``; return name -> local path.

    The returned path may be an alternative name of the file (e.g. a gzipped copy). Raises DataError
    for a corrupt local file, and for a missing one that cannot be downloaded (with instructions).
    """
    dataset_dir = Path(dataset_dir).expanduser().resolve()
    found, missing = {}, []
    for remote in files:
        path = find_local(dataset_dir, remote)
        if path is None:
            missing.append(remote)
            continue
        problem = checksum_problem(path, remote)
        if problem:
            raise DataError(
                f"{path} is corrupt: {problem}. It was left untouched; delete it to download "
                f"it again, or replace it with a good copy from {remote.urls[0]}"
            )
        found[remote.name] = path
    if missing and not download:
        raise DataError(
            f"{len(missing)} file(s) missing in {dataset_dir} (download=False).\n"
            f"{manual_instructions(dataset_dir, missing)}"
        )
    for i, remote in enumerate(missing):
        found[remote.name] = _download_one(dataset_dir, remote, mirrors, timeout, missing[i:])
    return found


def _download_one(dataset_dir: Path, remote: RemoteFile, mirrors, timeout, still_missing) -> Path:
    """Try each candidate URL in turn; the local path of the first verified download."""
    try:
        ensure_directory(dataset_dir)
    except WriteError as e:
        raise DataError(f"{e}.\n{manual_instructions(dataset_dir, still_missing)}") from None
    failures = []
    for url, name in candidates(dataset_dir, remote, mirrors):
        try:
            fetch_to(url, dataset_dir / name, remote, timeout)
            return dataset_dir / name
        except DataError as e:
            failures.append(str(e))
    tried = "\n".join(f"  - {f}" for f in failures)
    raise DataError(
        f"could not download {remote.name}; tried:\n{tried}\n{manual_instructions(dataset_dir, still_missing)}"
    )


def manual_instructions(dataset_dir: Path, files: Sequence[RemoteFile]) -> str:
    """Which files to place where (full paths), and the URLs to get them from."""
    lines = ["Place these files by hand:"]
    for remote in files:
        target = dataset_dir / remote.name
        alt = f" (or {', '.join(remote.alternatives)})" if remote.alternatives else ""
        lines.append(f"  {target}{alt}")
        lines.extend(f"      from {url}" for url in remote.urls)
    lines.append(f"(${MIRROR_ENV} names mirrors to try first; $GENZOO_DATA or data_dir sets the data root.)")
    return "\n".join(lines)
