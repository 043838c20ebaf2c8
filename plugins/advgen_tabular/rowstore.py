"""Encoded training rows in a run folder, memory-mapped and read a batch at a time by index.

A table larger than memory is encoded once (:class:`RowStoreWriter`) into ``encoded-rows.bin`` in
the run folder, described by ``encoded-rows.json``; training draws its batches from it by index
(:class:`RowStore`, an :class:`advgen.domain.RowStore`). Rows are stored compactly: the one value of
each numeric segment as float32, and each one-hot group as the index of its one (uint16, or int32
for a group wider than 65,535), so a NSL-KDD row takes 134 bytes instead of the 1,104 of its 276
encoded float32 values; :class:`RowLayout` packs and unpacks them. A conditional run's rows are
grouped by class (class 0's rows first, in file order, then class 1's ...), so drawing a class's row
needs only the class counts, not a per-row index.

Memory: the reader maps the file and copies out each batch; the pages a batch touched stay mapped
(and count in the process's resident memory) until ``resident_bytes`` worth may have been touched,
then they are released (``madvise(MADV_DONTNEED)``, the data stays in the page cache and on disk).
The writer writes with ``pwrite`` and maps nothing. Nothing here is ever unpickled: the description
is JSON and the rows are plain numbers, checked before use (:meth:`RowStore.check`).
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from advgen.errors import AdvgenError, InvalidDataError
from advgen.io import atomic_path, atomic_write_text, write_error

FORMAT = 1
ROWS_NAME = "encoded-rows.bin"
META_NAME = "encoded-rows.json"
# the real rows the transform was fitted on, for validation and plots (written by advgen_tabular.streamed)
SAMPLE_NAME = "encoded-rows.sample.parquet"
# a page fault on a file mapping may map up to 16 neighbouring pages of the page cache (fault-around)
_BYTES_PER_TOUCH = 64 << 10


@dataclass(frozen=True)
class RowLayout:
    """Where an encoded row's single values and one-hot groups lie, and their packed record type."""

    dim: int
    float_pos: tuple[int, ...]
    group_starts: tuple[int, ...]
    group_widths: tuple[int, ...]

    @classmethod
    def from_segments(cls, segments: list[Any]) -> RowLayout:
        """From :meth:`TableTransform.segments`: softmax segments are one-hot groups, the rest single values."""
        floats: list[int] = []
        starts: list[int] = []
        widths: list[int] = []
        dim = 0
        for seg in segments:
            if seg.activation == "softmax":
                starts.append(seg.start)
                widths.append(seg.end - seg.start)
            else:
                floats.extend(range(seg.start, seg.end))
            dim = max(dim, seg.end)
        return cls(dim, tuple(floats), tuple(starts), tuple(widths))

    @property
    def code_dtype(self) -> np.dtype:
        return np.dtype("<u2") if max(self.group_widths, default=0) <= 0xFFFF else np.dtype("<i4")

    @property
    def record(self) -> np.dtype:
        return np.dtype([("v", "<f4", (len(self.float_pos),)), ("c", self.code_dtype, (len(self.group_starts),))])

    def to_dict(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "float_pos": list(self.float_pos),
            "group_starts": list(self.group_starts),
            "group_widths": list(self.group_widths),
        }

    def pack(self, x: np.ndarray) -> np.ndarray:
        """Encoded rows ``[n, dim]`` to records; every one-hot group must hold exactly one 1."""
        n = x.shape[0]
        out = np.empty(n, dtype=self.record)
        out["v"] = x[:, list(self.float_pos)]
        codes = np.empty((n, len(self.group_starts)), dtype=np.int64)
        for j, (s, w) in enumerate(zip(self.group_starts, self.group_widths)):
            block = x[:, s : s + w]
            codes[:, j] = block.argmax(axis=1)
            if not (np.all(block.sum(axis=1) == 1.0) and np.all(block[np.arange(n), codes[:, j]] == 1.0)):
                raise AdvgenError(f"encoded rows are not one-hot in columns {s}..{s + w - 1}")  # a bug, not bad data
        out["c"] = codes
        return out

    def unpack(self, records: np.ndarray) -> np.ndarray:
        """Records to encoded float32 rows ``[n, dim]``, exactly as :meth:`pack` received them."""
        n = records.shape[0]
        x = np.zeros((n, self.dim), dtype=np.float32)
        if self.float_pos:
            x[:, list(self.float_pos)] = records["v"]
        if self.group_starts:
            cols = np.asarray(self.group_starts, dtype=np.int64)[None, :] + records["c"].astype(np.int64)
            x[np.arange(n)[:, None], cols] = 1.0
        return x


class RowStoreWriter:
    """Write ``rows`` encoded rows into ``folder``: grouped by class when ``class_counts`` is given.

    ``write(records, classes)`` takes packed records (:meth:`RowLayout.pack`) and each row's class;
    ``close(meta)`` checks that every row came, puts the file in place and writes the description.
    Until then nothing replaces an earlier store: the rows go to a temporary file first. A full disk
    or a read-only folder is one line.
    """

    def __init__(self, folder: Path, layout: RowLayout, rows: int, class_counts: list[int] | None):
        self.folder = Path(folder)
        self.layout = layout
        self.rows = int(rows)
        self.itemsize = layout.record.itemsize
        self.counts = np.asarray(class_counts if class_counts is not None else [rows], dtype=np.int64)
        if int(self.counts.sum()) != self.rows:
            raise AdvgenError(f"class counts add up to {int(self.counts.sum())}, not {self.rows} rows")
        self.starts = np.cumsum(self.counts) - self.counts
        self.written = np.zeros_like(self.counts)
        self.grouped = class_counts is not None
        need = self.rows * self.itemsize
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(self.folder).free
        except OSError as exc:
            raise write_error(exc, self.folder / ROWS_NAME) from None
        old = self.folder / ROWS_NAME
        free += old.stat().st_size if old.is_file() else 0  # replaced once the new one is complete
        if need > free:
            raise AdvgenError(
                f"the encoded rows need {need / 2**30:.1f} GiB in {self.folder}, which has {free / 2**30:.1f} GiB free"
            )
        self._fd = -1
        self._stack = contextlib.ExitStack()
        self.path = self._stack.enter_context(atomic_path(self.folder / ROWS_NAME))
        try:
            self._fd = os.open(self.path, os.O_RDWR)
            os.ftruncate(self._fd, need)
        except OSError as exc:
            self.abort()
            raise write_error(exc, self.folder / ROWS_NAME) from None

    def write(self, records: np.ndarray, classes: np.ndarray | None = None) -> None:
        if self.grouped:
            classes = np.asarray(classes, dtype=np.int64)
            order = np.argsort(classes, kind="stable")  # file order within a class
            records = records[order]
            per_class = np.bincount(classes, minlength=len(self.counts))
        else:
            per_class = np.asarray([len(records)])
        if np.any(self.written + per_class > self.counts):
            raise InvalidDataError(
                "the data changed while it was read: it now has more rows than the first pass counted"
            )
        at = 0
        for c in np.flatnonzero(per_class):
            k = int(per_class[c])
            block = np.ascontiguousarray(records[at : at + k]).view(np.uint8)
            self._pwrite(block, int(self.starts[c] + self.written[c]) * self.itemsize)
            self.written[c] += k
            at += k

    def _pwrite(self, block: np.ndarray, offset: int) -> None:
        view = memoryview(block)
        try:
            while len(view):
                done = os.pwrite(self._fd, view, offset)
                view, offset = view[done:], offset + done
        except OSError as exc:
            raise write_error(exc, self.folder / ROWS_NAME) from None

    def close(self, meta: dict[str, Any]) -> Path:
        """Put the rows in place and write ``encoded-rows.json`` (``meta`` plus the layout and counts)."""
        if not np.array_equal(self.written, self.counts):
            self.abort()
            raise InvalidDataError(
                f"the data changed while it was read: {int(self.written.sum()):,} rows came, the first pass counted "
                f"{self.rows:,}"
            )
        try:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
        except OSError as exc:
            self.abort()
            raise write_error(exc, self.folder / ROWS_NAME) from None
        self._stack.close()  # renames the temporary file over encoded-rows.bin
        described = dict(meta)
        described.update(
            format=FORMAT,
            rows=self.rows,
            record_bytes=self.itemsize,
            layout=self.layout.to_dict(),
            class_counts=self.counts.tolist() if self.grouped else None,
        )
        atomic_write_text(self.folder / META_NAME, json.dumps(described) + "\n")
        return self.folder / ROWS_NAME

    def abort(self) -> None:
        """Remove the temporary file; an earlier store stays as it was."""
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        # leaving the atomic_path context by an exception removes the temporary file
        with contextlib.suppress(_Abort):
            self._stack.__exit__(_Abort, _Abort(), None)


class _Abort(Exception):
    pass


def read_meta(folder: Path) -> dict[str, Any] | None:
    """``encoded-rows.json`` of ``folder``, or None when it is absent or not a JSON object."""
    try:
        meta = json.loads((Path(folder) / META_NAME).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


class RowStore:
    """The encoded rows of a run folder, memory-mapped: ``rows(idx)`` returns float32 rows ``[len(idx), dim]``.

    ``shape`` is ``(rows, dim)``; ``class_counts`` (or None) says the rows are grouped by class.
    Opening checks that the description and the file agree with ``layout``; :meth:`check` reads every
    row once and checks its values (finite, one-hot indices in range).
    """

    def __init__(self, folder: Path, layout: RowLayout, resident_bytes: int = 256 << 20):
        self.folder = Path(folder)
        self.layout = layout
        self.path = self.folder / ROWS_NAME
        meta = read_meta(self.folder)
        if meta is None:
            raise InvalidDataError(f"{self.folder / META_NAME} is missing or not JSON")
        self.meta = meta
        record = layout.record
        rows = meta.get("rows")
        counts = meta.get("class_counts")
        if meta.get("format") != FORMAT or meta.get("layout") != layout.to_dict():
            raise InvalidDataError(f"{self.folder / META_NAME} describes other rows than this run encodes")
        if not isinstance(rows, int) or isinstance(rows, bool) or rows < 1:
            raise InvalidDataError(f"{self.folder / META_NAME}: rows must be a positive integer")
        if counts is not None and (
            not isinstance(counts, list)
            or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts)
            or sum(counts) != rows
        ):
            raise InvalidDataError(f"{self.folder / META_NAME}: class counts do not add up to its {rows} rows")
        try:
            size = self.path.stat().st_size
        except OSError:
            raise InvalidDataError(f"{self.path} is missing") from None
        if size != rows * record.itemsize:
            raise InvalidDataError(f"{self.path} holds {size:,} bytes, its description says {rows * record.itemsize:,}")
        self.shape = (rows, layout.dim)
        self.class_counts = list(counts) if counts is not None else None
        self.paths = (self.path, self.folder / META_NAME, self.folder / SAMPLE_NAME)
        with open(self.path, "rb") as fh:
            self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        if hasattr(mmap, "MADV_RANDOM"):
            self._map.madvise(mmap.MADV_RANDOM)  # batches jump around the file: read no pages ahead
        self._records = np.frombuffer(self._map, dtype=record, count=rows)
        self.resident_bytes = max(int(resident_bytes), 1 << 20)
        self._touched = 0

    def __len__(self) -> int:
        return self.shape[0]

    def rows(self, idx: np.ndarray) -> torch.Tensor:
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.shape[0]):
            raise IndexError(f"row index out of range 0..{self.shape[0] - 1}")
        records = self._records[idx]  # a copy: the mapped pages may go
        self._touched += idx.size * _BYTES_PER_TOUCH
        if self._touched >= self.resident_bytes:
            self.release()
        return torch.from_numpy(self.layout.unpack(records))

    def release(self) -> None:
        """Drop the pages read so far from this process's memory (they stay in the page cache)."""
        if hasattr(mmap, "MADV_DONTNEED"):
            self._map.madvise(mmap.MADV_DONTNEED)
        self._touched = 0

    def check(self, chunk_rows: int = 1 << 18, progress: Callable[[int], None] | None = None) -> None:
        """Read every row once: values finite, one-hot indices within their groups (a tampered or
        damaged file raises :class:`InvalidDataError`)."""
        widths = np.asarray(self.layout.group_widths, dtype=np.int64)
        for a in range(0, self.shape[0], chunk_rows):
            block = self._records[a : a + chunk_rows]
            if not np.isfinite(block["v"]).all():
                raise InvalidDataError(f"{self.path} holds NaN or infinite values (rows from {a:,})")
            if widths.size and ((block["c"] < 0) | (block["c"] >= widths[None, :])).any():
                raise InvalidDataError(f"{self.path} holds one-hot indices out of range (rows from {a:,})")
            self.release()
            if progress is not None:
                progress(min(a + chunk_rows, self.shape[0]))

    def close(self) -> None:
        self._records = None  # type: ignore[assignment]
        with contextlib.suppress(BufferError):
            self._map.close()
