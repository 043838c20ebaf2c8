"""Small file helpers shared by the core and the plugins: atomic writes and plain array samples."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from advgen.errors import AdvgenError, InvalidDataError

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, else remove it.

    Whatever already lives at ``path`` survives a failed or interrupted write untouched.
    """
    target = Path(path)
    if target.parent and not target.parent.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_array_samples(samples: np.ndarray, path: str | Path) -> None:
    """Write an array of samples as ``.npz`` (array ``x``) or ``.csv`` (one flattened sample a row)."""
    p = Path(path)
    arr = np.asarray(samples)
    suffix = p.suffix.lower()
    with atomic_path(p) as tmp:
        if suffix == ".npz":
            with tmp.open("wb") as fh:
                np.savez_compressed(fh, x=arr)
        elif suffix == ".csv":
            flat = arr.reshape(arr.shape[0], -1)
            header = ",".join(f"x{i}" for i in range(flat.shape[1]))
            np.savetxt(tmp, flat, delimiter=",", header=header, comments="", fmt="%.6g")
        else:
            raise AdvgenError(f"cannot write samples as {suffix or 'a file without suffix'}; use .csv or .npz")


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
        if suffix == ".csv":
            arr = np.loadtxt(p, delimiter=",", skiprows=1, ndmin=2)
            return arr
    except InvalidDataError:
        raise
    except (ValueError, OSError) as exc:
        raise InvalidDataError(f"cannot read samples from {p}: {exc}") from None
    raise InvalidDataError(f"cannot read samples from {p}: unknown suffix {suffix!r} (use .csv or .npz)")


def write_table(df: Any, path: str | Path) -> Path:
    """Write ``df`` as CSV or Parquet (by suffix), atomically: a failed write leaves no partial file."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise AdvgenError(f"cannot write a table as {suffix or 'a file without suffix'}; use .csv or .parquet")
    with atomic_path(target) as tmp:
        if suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            try:
                df.to_parquet(tmp, index=False)
            except ImportError:
                raise AdvgenError("writing Parquet needs pyarrow: pip install 'advgen[parquet]'") from None
    return target


def save_figure(fig: Any, path: str | Path, dpi: int = 90) -> Path:
    """Write a matplotlib figure as PNG atomically and close it (plots are written next to results
    people keep, so a crash must not leave half a file)."""
    import matplotlib.pyplot as plt

    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return target


def read_table(path: str | Path) -> Any:
    """Read a CSV or Parquet table written by advgen (or any tool), with one clear error when it cannot."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise InvalidDataError(f"file not found: {p}")
    suffix = p.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            df = pd.read_parquet(p)
        elif suffix in (".csv", ".txt"):
            df = pd.read_csv(p, low_memory=False)
        else:
            raise InvalidDataError(f"cannot read {p}: use a .csv or .parquet file")
    except InvalidDataError:
        raise
    except pd.errors.EmptyDataError:
        raise InvalidDataError(f"{p} is empty") from None
    except ImportError:
        raise AdvgenError("reading Parquet needs pyarrow: pip install 'advgen[parquet]'") from None
    except (ValueError, OSError) as exc:
        raise InvalidDataError(f"cannot read {p}: {exc}") from None
    if len(df) == 0:
        raise InvalidDataError(f"{p} has a header but no rows")
    df.columns = [str(c).strip() for c in df.columns]
    return df
