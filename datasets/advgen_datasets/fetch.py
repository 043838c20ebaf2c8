"""Finding, verifying and downloading a dataset's files.

Files live at ``<data dir>/<dataset>/<file>``; the data dir is ``$ADVGEN_DATA`` or a per-user cache
(``$XDG_CACHE_HOME/advgen``, else ``~/.cache/advgen``). A file with a known sha256 is checked before
use; one with only a git blob id (the checksum a git mirror lists) has that id and its row count
checked; one without a checksum has its row count checked. A missing file is downloaded from the
manifest's URL into a temporary file that is renamed only once its checksum is right, so an
interrupted download never leaves a half file where a good one is expected. With no network (or no
URL) the error says exactly which file to put where.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import click

from advgen.errors import InvalidDataError
from advgen.io import atomic_path
from advgen_datasets.manifest import FileEntry, Manifest

_CHUNK = 1 << 20
_TIMEOUT_S = 30

# Hashing the same file twice in one process buys nothing; the key changes when the file does.
_SHA_CACHE: dict[tuple[str, int, int], str] = {}
_LINES_CACHE: dict[tuple[str, int, int], int] = {}
_GIT_CACHE: dict[tuple[str, int, int], str] = {}


def data_dir() -> Path:
    env = os.environ.get("ADVGEN_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache"
    return base / "advgen"


def file_path(manifest: Manifest, fname: str) -> Path:
    return data_dir() / manifest.name / fname


def _stat_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def sha256_file(path: str | Path) -> str:
    """The file's sha256, computed once per process per (path, size, mtime)."""
    p = Path(path)
    key = _stat_key(p)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with p.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def git_blob_sha1(path: str | Path) -> str:
    """The id git gives the file's bytes as a blob: SHA-1 of ``blob <size>\\0`` followed by the bytes."""
    p = Path(path)
    key = _stat_key(p)
    if key not in _GIT_CACHE:
        h = hashlib.sha1(usedforsecurity=False)
        h.update(b"blob %d\0" % p.stat().st_size)
        with p.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
        _GIT_CACHE[key] = h.hexdigest()
    return _GIT_CACHE[key]


def count_lines(path: str | Path) -> int:
    """Lines of a text file (a last line without newline counts), cached like the hash."""
    p = Path(path)
    key = _stat_key(p)
    if key not in _LINES_CACHE:
        n = 0
        last = b"\n"
        with p.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                n += chunk.count(b"\n")
                last = chunk[-1:]
        if last != b"\n":
            n += 1
        _LINES_CACHE[key] = n
    return _LINES_CACHE[key]


def expected_lines(manifest: Manifest, entry: FileEntry) -> int | None:
    """Lines the file should have: its rows, plus the header line when its layout has one."""
    if entry.rows is None:
        return None
    header = any(
        manifest.layouts[s.layout].format.header for s in manifest.splits.values() if entry.name in s.files
    )
    return entry.rows + (1 if header else 0)


def verify_file(manifest: Manifest, entry: FileEntry, path: Path, *, shown: Path | None = None) -> None:
    """Raise InvalidDataError when ``path`` does not match the manifest's checksum (or row count)."""
    where = shown or path
    if entry.sha256:
        _check_digest(manifest, where, "sha256", sha256_file(path), entry.sha256)
        return
    want = expected_lines(manifest, entry)
    if want is not None and manifest.layouts[_layout_of(manifest, entry)].format.type == "csv":
        got = count_lines(path)
        if got != want:
            raise InvalidDataError(
                f"{where} has {got} lines, the {manifest.name} manifest expects {want} "
                f"({entry.rows} rows); the file is truncated or another version: delete it and "
                f"run `advgen datasets fetch {manifest.name}`"
            )
    if entry.git_sha1:
        _check_digest(manifest, where, "git blob id", git_blob_sha1(path), entry.git_sha1)


def _check_digest(manifest: Manifest, where: Path, kind: str, actual: str, expected: str) -> None:
    if actual != expected:
        raise InvalidDataError(
            f"checksum mismatch for {where}: {kind} {actual[:16]}..., the {manifest.name} manifest "
            f"expects {expected[:16]}...; the file is damaged or another version: delete it "
            f"and run `advgen datasets fetch {manifest.name}`"
        )


def _layout_of(manifest: Manifest, entry: FileEntry) -> str:
    for s in manifest.splits.values():
        if entry.name in s.files:
            return s.layout
    return "default"


def checksum_status(manifest: Manifest, entry: FileEntry) -> str:
    """One word for listings: missing, ok, mismatch, or unchecked (no checksum and no row count)."""
    path = file_path(manifest, entry.name)
    if not path.is_file():
        return "missing"
    if entry.sha256 is None and entry.git_sha1 is None and entry.rows is None:
        return "unchecked"
    try:
        verify_file(manifest, entry, path)
    except InvalidDataError:
        return "mismatch"
    return "ok" if entry.sha256 or entry.git_sha1 else "rows ok"


def download_url(url: str, dest: Path, *, progress: bool, label: str) -> None:
    """Stream ``url`` into ``dest`` (an already-created temporary file), with an optional progress bar.

    Network failures propagate as ``urllib.error.URLError`` / ``OSError``; the caller turns them into
    one line that says where to put the file by hand.
    """
    req = urllib.request.Request(url, headers={"User-Agent": "advgen-datasets"})
    with urllib.request.urlopen(req, timeout=_TIMEOUT_S) as resp, dest.open("wb") as out:
        total = resp.headers.get("Content-Length")
        length = int(total) if total and total.isdigit() else None
        if progress:
            with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
                while chunk := resp.read(_CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
        else:
            while chunk := resp.read(_CHUNK):
                out.write(chunk)


def _put_it_there(manifest: Manifest, entry: FileEntry, dest: Path) -> str:
    env = "ADVGEN_DATA"
    return (
        f"put {entry.name} at {dest} (or point {env} at a folder holding "
        f"{manifest.name}/{entry.name})"
    )


def ensure_file(
    manifest: Manifest, fname: str, *, download: bool = True, progress: bool | None = None
) -> Path:
    """The verified local path of one of the dataset's files, downloading it when missing."""
    entry = manifest.files[fname]
    dest = file_path(manifest, fname)
    if dest.is_file():
        verify_file(manifest, entry, dest)
        return dest
    where = _put_it_there(manifest, entry, dest)
    if not entry.url:
        hint = f"{manifest.download_hint.rstrip('.')}; " if manifest.download_hint else ""
        raise InvalidDataError(f"{manifest.name}: {fname} is missing; {hint}{where}")
    if not download:
        raise InvalidDataError(f"{manifest.name}: {fname} is missing; download it from {entry.url} and {where}")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidDataError(
            f"{manifest.name}: {fname} is missing and {dest.parent} cannot be created ({exc.strerror}); {where}"
        ) from None
    if not os.access(dest.parent, os.W_OK):
        raise InvalidDataError(f"{manifest.name}: {fname} is missing and {dest.parent} is read-only; {where}")
    if progress is None:
        progress = sys.stderr.isatty()
    try:
        with atomic_path(dest) as tmp:
            download_url(entry.url, tmp, progress=progress, label=f"downloading {fname}")
            verify_file(manifest, entry, tmp, shown=Path(f"{dest} (downloaded from {entry.url})"))
    except (urllib.error.URLError, OSError, http.client.HTTPException, TimeoutError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise InvalidDataError(
            f"{manifest.name}: {fname} is missing and could not be downloaded from {entry.url} "
            f"({reason}); {where}"
        ) from None
    return dest
