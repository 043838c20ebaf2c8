"""Writing samples chunk by chunk, so that a file of any size needs the memory of one chunk.

A :class:`SampleWriter` is opened for ``n`` samples and a destination, takes decoded samples in
chunks (``write``), and puts the result in place only when all ``n`` have come (``close``). Until
then everything goes to a temporary file beside the destination (:func:`advgen.io.atomic_path`), so
a failure, a full disk or Ctrl-C (``abort``, or leaving its ``with`` block by an exception) leaves an
earlier file at the destination untouched and no temporary file behind.

:class:`TableWriter` appends DataFrames to CSV (header once) or Parquet (row groups of 65,536 rows);
:class:`ArrayWriter` streams arrays into ``.npz`` / ``.npy`` (the ``.npy`` header is written for the
announced total shape, then each chunk's bytes) or CSV. Both are what :class:`advgen.domain.Domain`
uses by default, and the torch-free runtime uses them too: this module imports numpy only (pandas
and pyarrow when a table is written).
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import shutil
import stat
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from advgen.errors import AdvgenError
from advgen.io import TABLE_SUFFIXES, WriteError, atomic_path, write_error
from advgen.sampling import format_bytes

#: no sample file may be estimated above this, whatever the disk says (a mistyped -n, a network disk)
MAX_OUTPUT_BYTES = 16 * 2**40
#: zlib level for the integer arrays of a ``.npz`` (pixels, labels): outputs can be many gigabytes
NPZ_DEFLATE_LEVEL = 1
_COPY_BLOCK = 1 << 20


def check_output_size(path: str | Path, needed: int, n: int) -> None:
    """Refuse, with one line, to start writing ``n`` samples (about ``needed`` bytes) that cannot fit.

    The estimate is checked against :data:`MAX_OUTPUT_BYTES` and the free space of the disk that will
    hold ``path`` (its nearest existing folder).
    """
    target = Path(path)
    if needed > MAX_OUTPUT_BYTES:
        raise AdvgenError(
            f"{n:,} samples would take about {format_bytes(needed)} in {target}, above the limit of "
            f"{format_bytes(MAX_OUTPUT_BYTES)}; ask for fewer"
        )
    folder = target.parent.absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # the write itself will say what is wrong with the folder
    if needed > free:
        raise AdvgenError(
            f"{n:,} samples would take about {format_bytes(needed)} in {target}, but only "
            f"{format_bytes(free)} is free on that disk; ask for fewer or write elsewhere"
        )


def not_a_regular_file(path: str | Path) -> str | None:
    """What ``path`` is when it exists but is not a regular file (following links): ``"a device"``,
    ``"a folder"``, ``"a pipe"``, ``"a socket"`` or ``"a special file"``; None when it is a regular
    file or absent.

    A sample file is put in place by renaming a finished temporary file over its path, which would
    replace a device node or a pipe with a plain file (``-o /dev/full``), so such paths are refused
    up front with these words."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None  # absent (or unreadable): the write itself says what is wrong
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def output_to_replace(path: str | Path, option: str = "-o", *, folder_ok: bool = False) -> str | None:
    """Check, before any work, an output path a user named (``option`` is how: ``-o``, ``--json``; empty
    for a default path): what a complete write will replace there, ``"file"`` or ``"folder"`` (the
    latter only when ``folder_ok``: a domain that writes PNG folders), or None when nothing.

    Anything a written file must not replace (a device such as /dev/full, a pipe, a folder where a
    file goes) raises :class:`AdvgenError` with one line: ``-o /dev/full is a device, not a regular
    file``. Pass the answer to :func:`say_replaced` once the new output is in place."""
    kind = not_a_regular_file(path)
    if kind is None:
        return "file" if os.path.isfile(path) else None
    if folder_ok and kind == "a folder":
        return "folder"
    raise AdvgenError(f"{option} {path} is {kind}, not a regular file".lstrip())


def distinct_outputs(outputs: Mapping[str, str | Path | None], inputs: Mapping[str, str | Path | None] | None = None) -> None:
    """Refuse, before any work, an output path that another output or an input of the same command
    also names (``--json r.json --html r.json``, ``-o data.csv --data data.csv``): the later write would
    replace the earlier one, or the input the user still needs. Keys say how each path was given
    (``--json``, ``--data``); None values and inputs that are not files (``nsl-kdd:test``) are ignored.
    Raises :class:`AdvgenError` with one line."""
    seen: list[tuple[str, str]] = []
    for option, path in outputs.items():
        if path is None:
            continue
        for other, other_path in seen:
            if _same_file(path, other_path):
                raise AdvgenError(f"{option} {path} is also {other}: give each output its own file")
        seen.append((option, str(path)))
    for option, path in outputs.items():
        for source, source_path in (inputs or {}).items():
            if path is not None and source_path is not None and os.path.isfile(source_path) and _same_file(path, source_path):
                raise AdvgenError(f"{option} {path} is the input {source}: writing there would replace it; choose another file")


def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist yet: compare where they would be
        return os.path.realpath(a) == os.path.realpath(b)


def say_replaced(replaced: str | None, path: str | Path) -> None:
    """The stderr note ``note: replaced existing file PATH`` for what :func:`output_to_replace` found.
    Said only once the new output is in place: a failed write leaves the old one, and says so itself."""
    if replaced is not None:
        print(f"note: replaced existing {replaced} {path}", file=sys.stderr)


def write_failure(exc: OSError, path: Path) -> WriteError:
    """Any OSError met while writing ``path`` as one :class:`~advgen.io.WriteError` line that names it
    (full disk and read-only folders in :func:`~advgen.io.write_error`'s words)."""
    err = write_error(exc, path)
    if isinstance(err, WriteError):
        return err
    return WriteError(exc.errno, f"cannot write {path}: {exc.strerror or exc}", Path(path))


class _Discarded(Exception):
    """Raised into :func:`atomic_path` to make it remove its temporary file."""


class SampleWriter:
    """Writes ``n`` samples to ``path`` chunk by chunk, all or nothing.

    ``write(chunk)`` takes what the domain's ``decode`` returns for some rows; ``close()`` checks that
    exactly ``n`` samples came and puts the result in place; ``abort()`` discards what was written.
    As a context manager it closes on success and aborts on any exception, Ctrl-C included.
    A full disk or a read-only folder is one :class:`~advgen.io.WriteError` line.

    Subclasses implement ``_write(chunk) -> rows``, ``_finish()`` and ``_discard()``.
    """

    def __init__(self, path: str | Path, n: int):
        self.path = Path(path)
        self.n = int(n)
        self.written = 0
        self._state = "open"

    def write(self, chunk: Any) -> None:
        if self._state != "open":
            raise AdvgenError(f"the writer of {self.path} is already {self._state}")
        try:
            rows = self._write(chunk)
        except OSError as exc:
            self.abort()
            raise write_failure(exc, self.path) from None
        except BaseException:
            self.abort()
            raise
        self.written += rows
        if self.written > self.n:
            self.abort()
            raise AdvgenError(f"{self.path} was opened for {self.n} samples but got {self.written}")

    def close(self) -> None:
        if self._state != "open":
            return
        if self.written != self.n:
            self.abort()
            raise AdvgenError(f"{self.path} was opened for {self.n} samples but got {self.written}")
        try:
            self._finish()
        except OSError as exc:
            self.abort()
            raise write_failure(exc, self.path) from None
        except BaseException:
            self.abort()
            raise
        self._state = "closed"

    def abort(self) -> None:
        if self._state == "open":
            self._state = "aborted"
            self._discard()

    def __enter__(self) -> SampleWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _write(self, chunk: Any) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _finish(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _discard(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class FileWriter(SampleWriter):
    """A writer of one file: ``self.tmp`` is the temporary file that ``close`` renames to ``path``."""

    def __init__(self, path: str | Path, n: int):
        super().__init__(path, n)
        kind = not_a_regular_file(self.path)
        if kind is not None:
            raise AdvgenError(f"{self.path} is {kind}, not a regular file")
        self._stack = contextlib.ExitStack()
        try:
            self.tmp = self._stack.enter_context(atomic_path(self.path))
        except OSError as exc:  # a read-only folder, a file where a folder should be
            raise write_failure(exc, self.path) from None

    def _handles(self) -> list[Any]:
        """What the subclass holds open on ``self.tmp``, in the order to close them."""
        return []

    def _close_handles(self, quiet: bool = False) -> None:
        """Close every handle (each at most once). ``quiet``: on the way out of a failed write, every
        one is closed whatever the others raise, so that none is left for the garbage collector to
        close (and fail again) later."""
        for handle in self._handles():
            if not quiet:
                handle.close()
                continue
            with contextlib.suppress(Exception):
                handle.close()
            if getattr(handle, "is_open", False):  # pyarrow's ParquetWriter would retry in __del__
                handle.is_open = False

    def _finish(self) -> None:
        self._close_handles()
        self._stack.close()

    def _discard(self) -> None:
        self._close_handles(quiet=True)
        self._stack.__exit__(_Discarded, _Discarded(), None)


class TableWriter(FileWriter):
    """DataFrames appended to ``.csv`` (header once) or ``.parquet``/``.pq`` (row groups of
    :attr:`ROW_GROUP_ROWS` rows).

    The CSV is byte for byte what ``DataFrame.to_csv(index=False)`` writes for the whole table; the
    Parquet schema is the first chunk's, and later chunks are cast to it. ``integer_columns`` names
    text columns whose values are integers in the data they came from (a 0/1 label): they are written
    as int64 (:func:`integers_restored`), so Parquet keeps the type a CSV reader would see.
    """

    SUFFIXES = TABLE_SUFFIXES
    #: Parquet rows are gathered into row groups of this many (chunks may be smaller)
    ROW_GROUP_ROWS = 65_536

    def __init__(self, path: str | Path, n: int, integer_columns: Sequence[str] = ()):
        self.integer_columns = tuple(integer_columns or ())
        suffix = Path(path).suffix.lower()
        if suffix not in self.SUFFIXES:
            raise AdvgenError(f"cannot write a table as {suffix or 'a file without suffix'}; use .csv or .parquet")
        self.parquet = suffix != ".csv"
        if self.parquet:
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise AdvgenError("writing Parquet needs pyarrow: pip install 'advgen[parquet]'") from None
        super().__init__(path, n)
        self._fh: Any = None
        self._pq: Any = None
        self._schema: Any = None
        self._pending: list[Any] = []
        self._pending_rows = 0
        self.formula_cells: dict[str, int] = {}  # CSV cells a spreadsheet would read as formulas, per column

    def _write(self, chunk: Any) -> int:
        import pandas as pd

        df = chunk if isinstance(chunk, pd.DataFrame) else pd.DataFrame(chunk)
        if self.integer_columns:
            df = integers_restored(df, self.integer_columns)
        if not self.parquet:
            first = self._fh is None
            if first:
                self._fh = open(self.tmp, "w", newline="", encoding="utf-8")
                for name in df.columns:
                    if formula_like(str(name)):
                        self.formula_cells[f"{name} (the header)"] = 1
            count_formula_cells(df, self.formula_cells)
            df.to_csv(self._fh, index=False, header=first)
            return len(df)
        import pyarrow as pa

        try:
            table = pa.Table.from_pandas(df, schema=self._schema, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
            raise AdvgenError(f"cannot write these rows to {self.path}: {str(exc).splitlines()[0][:200]}") from None
        if self._schema is None:
            self._schema = table.schema
        self._pending.append(table)
        self._pending_rows += len(df)
        if self._pending_rows >= self.ROW_GROUP_ROWS:
            self._flush()
        return len(df)

    def _flush(self) -> None:
        """Write the gathered rows as one row group (the first write opens the file)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._pq is None:
            self._pq = pq.ParquetWriter(str(self.tmp), self._schema)
        if self._pending:
            self._pq.write_table(pa.concat_tables(self._pending), row_group_size=max(self._pending_rows, 1))
        self._pending, self._pending_rows = [], 0

    def _finish(self) -> None:
        if self.parquet and self._schema is not None:
            self._flush()
        super()._finish()
        if self.formula_cells:
            print(f"note: {formula_note(self.path, self.formula_cells)}", file=sys.stderr)

    def _handles(self) -> list[Any]:
        return [h for h in (self._fh, self._pq) if h is not None]


# a spreadsheet reads a cell that starts with one of these as a formula (CSV injection): "=1+1",
# "@SUM(...)", '=HYPERLINK("http://...")'; numbers such as "-5" or "+3" are numbers
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def formula_like(text: str) -> bool:
    """Whether a CSV cell ``text`` would be read as a formula by a spreadsheet (and is not a number)."""
    if len(text) < 2 or not text.startswith(_FORMULA_START):
        return False  # a lone "-" (UNSW-NB15's empty service) is text to a spreadsheet
    try:
        float(text)
    except ValueError:
        return True
    return False


def count_formula_cells(df: Any, counts: dict[str, int]) -> None:
    """Add to ``counts`` the text cells of ``df``, per column, that :func:`formula_like` flags."""
    import pandas as pd

    for name in df.columns:
        col = df[name]
        if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            continue
        text = col.dropna().astype(str)
        starts = text[text.str[:1].isin(_FORMULA_START)]
        hits = sum(1 for v in starts if formula_like(v))
        if hits:
            counts[str(name)] = counts.get(str(name), 0) + hits


def formula_note(path: Path, counts: Mapping[str, int]) -> str:
    """One line: which columns of the CSV ``path`` hold cells a spreadsheet would run as formulas."""
    shown = ", ".join(f"{k} ({v:,})" for k, v in list(counts.items())[:4]) + (" ..." if len(counts) > 4 else "")
    return (f"{path}: cells that begin with =, +, -, @ or a tab and are not numbers, in {shown}: a spreadsheet "
            "opening this CSV may run them as formulas (CSV injection); import it as text, or write Parquet")


_INTEGER_TEXT = re.compile(r"-?(0|[1-9][0-9]{0,18})")


def integer_text(value: Any) -> bool:
    """Whether ``value`` is an integer written as Python writes it ("7", "-3"; not "07", "7.0", "+7")
    that fits int64: text that turns into an integer and back unchanged."""
    return isinstance(value, str) and _INTEGER_TEXT.fullmatch(value) is not None and -(2**63) <= int(value) < 2**63


def integers_restored(df: Any, columns: Sequence[str]) -> Any:
    """``df`` with each of ``columns`` it holds as text (category names such as a label's "0"/"1")
    turned into int64, where every value is an integer written plainly ("7", "-3"; not "07" or "7.0")
    that fits int64; any other column, or one holding another value, is left as it is. The frame is
    copied only when a column changes."""
    import pandas as pd

    out = df
    for name in columns:
        if name not in df.columns:
            continue
        s = df[name]
        if not (pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s)) or s.isna().any():
            continue
        codes, uniques = pd.factorize(s)
        values = []
        for u in uniques:
            if not integer_text(u):
                break
            values.append(int(u))
        else:
            if out is df:
                out = df.copy(deep=False)  # the caller's frame keeps its text
            out[name] = np.asarray(values, dtype=np.int64)[codes] if len(values) else np.zeros(len(s), np.int64)
    return out


class ArrayWriter(FileWriter):
    """Arrays of samples to ``.npz``, ``.npy`` or ``.csv``, chunk by chunk.

    A chunk is an array (stored as ``primary``) or a mapping of names to arrays with one row per
    sample each. The first chunk fixes each array's dtype (``dtypes`` may name it instead, e.g. a
    string width wide enough for every label) and per-sample shape; later chunks must fit them.

    * ``.npz``: one ``NAME.npy`` entry per array, loadable by ``np.load(allow_pickle=False)``. The
      first array streams straight into the zip; the others are spooled to a temporary file beside the
      destination and copied in at ``close``. Floats are stored (their random low bits do not
      compress), integers and strings deflated.
    * ``.npy``: the ``primary`` array only.
    * ``.csv``: ``primary`` flattened, one sample a row, columns ``x0, x1, ...``, then the ``label``
      array as a last column when it is given; floats as ``%.6g``, integers as ``%d``.
    """

    SUFFIXES = (".npz", ".npy", ".csv")

    def __init__(
        self,
        path: str | Path,
        n: int,
        primary: str = "x",
        label: str | None = None,
        dtypes: Mapping[str, Any] | None = None,
    ):
        suffix = Path(path).suffix.lower()
        if suffix not in self.SUFFIXES:
            raise AdvgenError(
                f"cannot write samples as {suffix or 'a file without suffix'}; use {', '.join(self.SUFFIXES)}"
            )
        self.suffix = suffix
        self.primary = primary
        self.label = label
        self.dtypes = {k: np.dtype(v) for k, v in (dtypes or {}).items()}
        super().__init__(path, n)
        self._layout: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}
        self._zip: zipfile.ZipFile | None = None
        self._entry: Any = None
        self._spools: dict[str, Any] = {}
        self._fh: Any = None

    # --- chunks ----------------------------------------------------------------------------------

    def _arrays(self, chunk: Any) -> dict[str, np.ndarray]:
        if isinstance(chunk, Mapping):
            arrays = {str(k): np.asarray(v) for k, v in chunk.items() if v is not None}
        else:
            arrays = {self.primary: np.asarray(chunk)}
        if self.primary not in arrays:
            raise AdvgenError(f"samples for {self.path} lack the array {self.primary!r}")
        if self.suffix == ".npy":
            arrays = {self.primary: arrays[self.primary]}
        elif self.suffix == ".csv":
            arrays = {k: v for k, v in arrays.items() if k in (self.primary, self.label)}
        return arrays

    def _fit(self, arrays: dict[str, np.ndarray]) -> tuple[int, dict[str, np.ndarray]]:
        """Check the chunk against the layout the first chunk fixed; return its rows and arrays cast."""
        rows = {len(a) if a.ndim else -1 for a in arrays.values()}
        if len(rows) != 1 or -1 in rows:
            raise AdvgenError(f"samples for {self.path}: every array needs one row per sample, got {sorted(rows)}")
        if not self._layout:
            for name, arr in arrays.items():
                dtype = self.dtypes.get(name, arr.dtype)
                if dtype.hasobject:
                    raise AdvgenError(f"cannot write array {name!r} of Python objects to {self.path}")
                self._layout[name] = (dtype, arr.shape[1:])
        if set(arrays) != set(self._layout):
            raise AdvgenError(f"samples for {self.path} hold arrays {sorted(arrays)}, expected {sorted(self._layout)}")
        out = {}
        for name, arr in arrays.items():
            dtype, shape = self._layout[name]
            if arr.shape[1:] != shape:
                raise AdvgenError(f"array {name!r} for {self.path} has samples of shape {arr.shape[1:]}, expected {shape}")
            if arr.dtype != dtype:
                if not np.can_cast(arr.dtype, dtype, "same_kind") or (dtype.kind == "U" and arr.dtype.itemsize > dtype.itemsize):
                    raise AdvgenError(f"array {name!r} for {self.path} is {arr.dtype}, which does not fit {dtype}")
                arr = arr.astype(dtype)
            out[name] = np.ascontiguousarray(arr)
        return rows.pop(), out

    def _write(self, chunk: Any) -> int:
        rows, arrays = self._fit(self._arrays(chunk))
        if self.suffix == ".npz":
            self._write_npz(arrays)
        elif self.suffix == ".npy":
            if self._fh is None:
                self._fh = open(self.tmp, "wb")
                self._fh.write(self._header(self.primary))
            self._fh.write(_bytes(arrays[self.primary]))
        else:
            self._write_csv(arrays)
        return rows

    def _header(self, name: str) -> bytes:
        dtype, shape = self._layout[name]
        return npy_header(dtype, (self.n, *shape))

    def _write_npz(self, arrays: dict[str, np.ndarray]) -> None:
        if self._zip is None:
            self._zip = zipfile.ZipFile(
                self.tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=NPZ_DEFLATE_LEVEL, allowZip64=True
            )
            names = [self.primary] + [k for k in self._layout if k != self.primary]
            self._entry = self._open_entry(names[0])
            self._entry.write(self._header(names[0]))
            for name in names[1:]:
                spool = tempfile.TemporaryFile(dir=self.tmp.parent, prefix=f".{self.path.name}.", suffix=".tmp")
                spool.write(self._header(name))
                self._spools[name] = spool
        self._entry.write(_bytes(arrays[self.primary]))
        for name, spool in self._spools.items():
            spool.write(_bytes(arrays[name]))

    def _open_entry(self, name: str) -> Any:
        assert self._zip is not None
        entry: str | zipfile.ZipInfo = f"{name}.npy"  # by name: deflated at the zip's level
        if self._layout[name][0].kind in "fc":
            entry = zipfile.ZipInfo(f"{name}.npy", date_time=time.localtime()[:6])
            entry.compress_type = zipfile.ZIP_STORED
        return self._zip.open(entry, "w", force_zip64=True)  # sizes are not known up front

    def _write_csv(self, arrays: dict[str, np.ndarray]) -> None:
        values = arrays[self.primary]
        flat = values.reshape(len(values), int(np.prod(values.shape[1:])))
        if self._fh is None:
            self._fh = open(self.tmp, "w", newline="", encoding="utf-8")
            header = [f"x{i}" for i in range(flat.shape[1])] + (["label"] if self.label in arrays else [])
            self._fh.write(",".join(header) + "\n")
        if not len(flat):
            return
        fmt = "%d" if flat.dtype.kind in "iub" else "%.6g"
        buf = io.StringIO()
        np.savetxt(buf, flat, delimiter=",", fmt=fmt)
        if self.label in arrays:
            labels = [_csv_field(str(v)) for v in arrays[self.label]]
            lines = buf.getvalue().splitlines()
            self._fh.write("".join(f"{line},{lab}\n" for line, lab in zip(lines, labels)))
        else:
            self._fh.write(buf.getvalue())

    def _finish(self) -> None:
        if not self._layout:
            raise AdvgenError(f"no samples came for {self.path}; write at least one (possibly empty) chunk")
        if self._zip is not None:
            self._entry.close()
            for name, spool in self._spools.items():
                spool.seek(0)
                with self._open_entry(name) as entry:
                    shutil.copyfileobj(spool, entry, _COPY_BLOCK)
        super()._finish()

    def _handles(self) -> list[Any]:
        # the zip entry before the zip (which refuses to close under an open entry); closing either
        # twice does nothing
        return [h for h in (*self._spools.values(), self._entry, self._zip, self._fh) if h is not None]


def npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """The ``.npy`` header of a C-order array of ``dtype`` and ``shape`` (format 1.0, else 2.0)."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)}
    buf = io.BytesIO()
    try:
        np.lib.format.write_array_header_1_0(buf, header)
    except ValueError:  # a header over 64 KiB (a huge structured dtype) needs format 2.0
        buf = io.BytesIO()
        np.lib.format.write_array_header_2_0(buf, header)
    return buf.getvalue()


def _bytes(arr: np.ndarray) -> np.ndarray:
    """The array's C-order bytes, without a copy (a flat uint8 view, which files and zip entries take)."""
    return np.ascontiguousarray(arr).reshape(-1).view(np.uint8)


def _csv_field(text: str) -> str:
    if any(ch in text for ch in ',"\r\n'):
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow([text])
        return out.getvalue()
    return text
