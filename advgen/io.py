"""Small file helpers shared by the core and the plugins: atomic writes and plain array samples."""

from __future__ import annotations

import contextlib
import csv
import errno
import functools
import hashlib
import os
import re
import socket
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from advgen.errors import AdvgenError, InvalidDataError

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


class WriteError(AdvgenError, OSError):
    """A file could not be written: the disk is full or the folder is read-only.

    Also an :class:`OSError` (with the original ``errno``), so that code catching ``OSError`` around a
    write keeps working; ``str()`` is the one line a user sees.
    """

    def __init__(self, errno_: int | None, message: str, path: Path):
        super().__init__(errno_, message)
        self.path = path

    def __str__(self) -> str:
        return str(self.strerror)


def write_error(exc: OSError, path: str | Path) -> OSError:
    """``exc`` met while writing ``path`` as one clear :class:`WriteError` line, for the errors a user can
    act on (full disk, read-only folder); any other ``OSError`` comes back unchanged."""
    if isinstance(exc, WriteError):
        return exc
    target = Path(path)
    code = exc.errno
    if code == errno.ENOSPC:
        return WriteError(code, f"disk full while writing {target}", target)
    if code == getattr(errno, "EDQUOT", None):
        return WriteError(code, f"disk quota exceeded while writing {target}", target)
    if code == errno.EROFS:
        return WriteError(code, f"cannot write {target}: {target.parent} is read-only (read-only file system)", target)
    if code in (errno.EACCES, errno.EPERM):
        return WriteError(code, f"cannot write {target}: {target.parent} is read-only (permission denied)", target)
    return exc


# A temporary file is named ``.{name}.{pid}.{host}.{random}.tmp``: the pid and host say whether its
# writer still runs, so that files left by a killed writer are removed on the next write of the same
# target. Temp files whose writer cannot be judged (another host, a pid in use again, names from older
# advgen versions) are removed once they are this old.
STALE_TEMP_SECONDS = 24 * 3600
# pid.host.random, or only tempfile.mkstemp's random part (names before the pid was added)
_TEMP_MIDDLE = re.compile(r"(?:(?P<pid>\d+)\.(?P<host>[0-9a-f]{8})\.[a-z0-9_]{8}|[a-z0-9_]{8})")
_TEMP_NAME = re.compile(r"\.(?P<target>.+?)\." + _TEMP_MIDDLE.pattern + r"\.tmp")
_SCAN_SECONDS = 60.0
_temp_scans: dict[str, tuple[float, set[str]]] = {}
_temp_scans_lock = threading.Lock()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, else remove it.

    Whatever already lives at ``path`` survives a failed or interrupted write untouched. The new file
    gets the permissions a plain ``open`` would give it: those of the file it replaces, else
    ``0o666`` less the umask. Temporary files of ``path`` left behind by killed writers are removed.
    A full disk or a read-only folder raises :class:`WriteError` (one line naming ``path``).
    """
    target = Path(path)
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(target)
        fd, tmp = tempfile.mkstemp(prefix=f"{_temp_prefix(target)}{os.getpid()}.{_host_tag()}.", suffix=".tmp", dir=folder)
        os.close(fd)
    except OSError as exc:
        raise write_error(exc, target) from None
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
        except OSError as exc:
            # only the errors that concern any write in this folder are renamed; an EACCES in the body
            # may come from reading some other file
            if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EROFS):
                raise write_error(exc, target) from None
            raise
        try:
            os.chmod(tmp_path, _new_file_mode(target))
            os.replace(tmp_path, target)
        except OSError as exc:
            raise write_error(exc, target) from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Remove the temporary files of ``path`` that killed writers left behind; return those removed.

    A temp file counts as stale when its writer's process (on this host) is gone, or when it is older
    than :data:`STALE_TEMP_SECONDS`. The folder is listed at most once a minute per process, so writing
    many files into one folder stays linear.
    """
    target = Path(path)
    folder = target.parent
    prefix = _temp_prefix(target)
    removed = []
    for name in _temp_names(folder):
        if not name.startswith(prefix) or not _is_stale(folder / name, name[len(prefix) : -len(".tmp")]):
            continue
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
            removed.append(folder / name)
        _forget_temp(folder, name)
    return removed


def _temp_prefix(target: Path) -> str:
    return f".{target.name[:200]}."  # room for the pid, host and random parts within a 255-byte name


def _temp_names(folder: Path) -> list[str]:
    key = os.path.abspath(folder)
    now = time.monotonic()
    with _temp_scans_lock:
        scan = _temp_scans.get(key)
        if scan is None or now - scan[0] > _SCAN_SECONDS:
            try:
                with os.scandir(folder) as it:
                    names = {e.name for e in it if e.name.startswith(".") and e.name.endswith(".tmp")}
            except OSError:
                names = set()
            scan = _temp_scans[key] = (now, names)
        return list(scan[1])


def _forget_temp(folder: Path, name: str) -> None:
    with _temp_scans_lock:
        scan = _temp_scans.get(os.path.abspath(folder))
        if scan is not None:
            scan[1].discard(name)


def _is_stale(temp: Path, middle: str) -> bool:
    m = _TEMP_MIDDLE.fullmatch(middle)
    if m is None:
        return False  # not a temp file of ours (e.g. one of a target whose name extends this one)
    if m.group("pid") and m.group("host") == _host_tag() and not _pid_alive(int(m.group("pid"))):
        return True
    try:
        return time.time() - temp.lstat().st_mtime > STALE_TEMP_SECONDS
    except OSError:
        return False


def temp_target_name(name: str) -> str | None:
    """The name of the file that :func:`atomic_path` temp file ``name`` was written for, else None."""
    m = _TEMP_NAME.fullmatch(name)
    return m.group("target") if m else None


@functools.lru_cache(maxsize=1)
def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` may still be writing; True whenever that cannot be told."""
    if pid <= 0 or os.name != "posix":  # on Windows os.kill would terminate the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive under another user
        return True
    try:  # a killed child its parent has not reaped yet keeps its pid but writes nothing more
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _new_file_mode(target: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        return 0o666 & ~current_umask()


_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the system allows (Linux /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    # elsewhere the only way is to set it and set it back: briefly racy against other threads creating files
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_array_samples(samples: np.ndarray, path: str | Path) -> None:
    """Write an array of samples as ``.npz`` (array ``x``), ``.npy`` or ``.csv`` (one flattened sample
    a row), atomically (:class:`advgen.writers.ArrayWriter` in one chunk)."""
    from advgen.writers import ArrayWriter

    arr = np.asarray(samples)
    with ArrayWriter(path, len(arr)) as writer:
        writer.write(arr)


def read_array_samples(path: str | Path) -> np.ndarray:
    """Read samples written by :func:`write_array_samples` (or any numeric CSV with a header)."""
    p = Path(path)
    if not p.is_file():
        raise InvalidDataError(f"samples file not found: {p}")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(p, allow_pickle=False) as data:
                if "x" not in data:
                    raise InvalidDataError(f"{p} has no array named 'x'")
                return data["x"]
        if suffix == ".npy":
            return np.load(p, allow_pickle=False)
        if suffix == ".csv":
            arr = np.loadtxt(p, delimiter=",", skiprows=1, ndmin=2)
            return arr
    except InvalidDataError:
        raise
    except (ValueError, OSError) as exc:
        raise InvalidDataError(f"cannot read samples from {p}: {exc}") from None
    raise InvalidDataError(f"cannot read samples from {p}: unknown suffix {suffix!r} (use .csv, .npz or .npy)")


def write_table(df: Any, path: str | Path) -> Path:
    """Write ``df`` as CSV or Parquet (by suffix), atomically: a failed write leaves no partial file."""
    from advgen.writers import TableWriter

    target = Path(path)
    with TableWriter(target, len(df)) as writer:
        writer.write(df)
    return target


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend with mathtext off. Column names and values from the data go
    into titles, ticks and legends, and matplotlib reads text between two ``$`` as TeX: a label such as
    ``$\\frac{$`` crashed the plot at the end of training in an audit. Raises ImportError without matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, dpi: int = 90) -> Path:
    """Write a matplotlib figure as PNG atomically and close it (plots are written next to results
    people keep, so a crash must not leave half a file)."""
    import matplotlib.pyplot as plt

    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return target


_BINARY_MAGIC = {
    b"\x1f\x8b": "gzip-compressed (decompress it first, e.g. gunzip)",
    b"PK\x03\x04": "a zip archive (extract the CSV from it first)",
    b"\x7fELF": "an executable (ELF), not a table",
    b"BZh": "bzip2-compressed (decompress it first)",
    b"\xfd7zXZ": "xz-compressed (decompress it first)",
    b"PAR1": "a Parquet file: name it .parquet",
}


def require_data_file(path: Path) -> None:
    """A clear error unless ``path`` is a regular file: missing, a folder, or a device or pipe
    (``/dev/zero`` would be read for ever) each say so."""
    if not path.exists():
        raise InvalidDataError(f"data file not found: {path}")
    if path.is_dir():
        raise InvalidDataError(f"{path} is a folder, not a data file")
    if not path.is_file():
        raise InvalidDataError(f"{path} is not a regular file (a device or a pipe); give a CSV or Parquet file")


def check_text_file(path: Path) -> bytes:
    """The file's first bytes, refused with one line when the file is plainly not a text table."""
    with path.open("rb") as fh:
        head = fh.read(1 << 16)
    for magic, what in _BINARY_MAGIC.items():
        if head.startswith(magic):
            raise InvalidDataError(f"{path} is {what}")
    if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InvalidDataError(f"{path} is a binary file, not a CSV (it holds NUL bytes)")
    return head


def line_terminator(head: bytes) -> str | None:
    """``"\\r"`` for files whose lines end in a bare CR (classic Mac OS exports), else None (pandas'
    own handling of LF and CRLF)."""
    return "\r" if b"\r" in head and b"\n" not in head else None


def read_table(path: str | Path) -> Any:
    """Read a CSV or Parquet table written by advgen (or any tool), with one clear error when it cannot."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise InvalidDataError(f"file not found: {p}")
    suffix = p.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            df = pd.read_parquet(p).reset_index(drop=True)  # rows are positions, whatever index was stored
        elif suffix in (".csv", ".txt"):
            terminator = line_terminator(check_text_file(p))
            df = pd.read_csv(p, low_memory=False, lineterminator=terminator)
        else:
            raise InvalidDataError(f"cannot read {p}: use a .csv or .parquet file")
    except InvalidDataError:
        raise
    except pd.errors.EmptyDataError:
        raise InvalidDataError(f"{p} is empty") from None
    except ImportError:
        raise AdvgenError("reading Parquet needs pyarrow: pip install 'advgen[parquet]'") from None
    except (ValueError, OSError, csv.Error) as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise InvalidDataError(f"cannot read {p}: {first[:300]}") from None
    if len(df) == 0:
        raise InvalidDataError(f"{p} has a header but no rows")
    df.columns = [str(c).strip() for c in df.columns]
    return df
