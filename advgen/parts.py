"""Joining part files into one sample file, in order and streaming: what several processes write.

Under torchrun, ``advgen sample`` has each process write the chunks it drew to part files beside the
destination (:func:`part_path`), and rank 0 joins them in chunk order (:func:`join_parts`) into
exactly the file one process would have written: the same bytes for CSV and NPY, the same rows, row
groups and schema for Parquet, the same arrays for NPZ. Each part is removed as soon as it is
copied, so the disk holds about one copy of the samples at any time; the destination appears only
when complete (:func:`advgen.io.atomic_path`), and a failure removes every part.

This module imports numpy only (pyarrow for Parquet).
"""

from __future__ import annotations

import contextlib
import shutil
import time
import zipfile
from pathlib import Path
from typing import IO, Callable

import numpy as np

from advgen.errors import AdvgenError
from advgen.io import atomic_path
from advgen.writers import NPZ_DEFLATE_LEVEL, TableWriter, npy_header, write_failure

#: suffixes whose part files can be joined; other formats are written by one process
JOINABLE = (".csv", ".parquet", ".pq", ".npz", ".npy")
_COPY_BLOCK = 1 << 20


def part_path(target: Path, token: str, index: int) -> Path:
    """The part file of chunk ``index`` of ``target``: hidden beside it, with the target's suffix so that
    the domain's writer writes the same format. ``token`` keeps the parts of two runs apart."""
    return target.with_name(f".{target.name}.{token}.part-{index:06d}{target.suffix}")


def remove_parts(parts: list[Path]) -> None:
    for part in parts:
        with contextlib.suppress(OSError):
            part.unlink()


def join_parts(target: Path, parts: list[Path], n: int, header: bytes = b"") -> None:
    """Write ``target`` from ``parts`` (in order; ``n`` samples in all), removing each part once copied.

    ``header`` is what a CSV file of no samples holds (the column line): every CSV part starts with it
    and only the first part's is kept. Any failure removes the remaining parts and leaves ``target``
    as it was.
    """
    suffix = target.suffix.lower()
    join: Callable[[Path, list[Path], int, bytes], None] | None = {
        ".csv": _join_csv, ".npy": _join_npy, ".npz": _join_npz, ".parquet": _join_parquet, ".pq": _join_parquet,
    }.get(suffix)
    if join is None:
        raise AdvgenError(f"cannot join part files of {suffix or 'a folder'}; use one of {', '.join(JOINABLE)}")
    try:
        missing = [p for p in parts if not p.is_file()]
        if missing:
            raise AdvgenError(
                f"part file {missing[0]} is missing ({len(missing)} of {len(parts)}): with several machines, "
                "-o must be on a disk that all of them share"
            )
        with atomic_path(target) as tmp:
            try:
                join(tmp, parts, n, header)
            except OSError as exc:
                raise write_failure(exc, target) from None
    finally:
        remove_parts(parts)


def _consumed(part: Path) -> None:
    part.unlink()


# --- CSV ------------------------------------------------------------------------------------------


def _join_csv(tmp: Path, parts: list[Path], n: int, header: bytes) -> None:
    with open(tmp, "wb") as out:
        for i, part in enumerate(parts):
            with open(part, "rb") as fh:
                start = fh.read(len(header))
                if start != header:
                    raise AdvgenError(f"part file {part} does not start with the samples' header")
                if i == 0:
                    out.write(start)
                shutil.copyfileobj(fh, out, _COPY_BLOCK)
            _consumed(part)


# --- NPY and NPZ ----------------------------------------------------------------------------------


def _read_npy_header(fh: IO[bytes], where: str) -> tuple[np.dtype, tuple[int, ...]]:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"format version {version} (advgen writes 1.0 and 2.0)")
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = read(fh)
    except ValueError as exc:
        raise AdvgenError(f"{where} is not an .npy array: {exc}") from None
    if fortran or not shape:
        raise AdvgenError(f"{where} holds an array of shape {shape} in {'Fortran' if fortran else 'C'} order; expected rows")
    return np.dtype(dtype), tuple(shape)


def _check_layout(where: str, layout: tuple[np.dtype, tuple[int, ...]], first: tuple[np.dtype, tuple[int, ...]]) -> int:
    """The rows of a part whose (dtype, shape) must match the first part's but for the rows."""
    (dtype, shape), (dtype0, shape0) = layout, first
    if dtype != dtype0 or shape[1:] != shape0[1:]:
        raise AdvgenError(f"{where} holds {dtype} samples of shape {shape[1:]}, the first part {dtype0} of shape {shape0[1:]}")
    return shape[0]


def _join_npy(tmp: Path, parts: list[Path], n: int, header: bytes) -> None:
    layouts = []
    for part in parts:
        with open(part, "rb") as fh:
            layouts.append(_read_npy_header(fh, str(part)))
    rows = sum(_check_layout(str(p), lay, layouts[0]) for p, lay in zip(parts, layouts))
    if rows != n:
        raise AdvgenError(f"the part files hold {rows} samples, expected {n}")
    with open(tmp, "wb") as out:
        out.write(npy_header(layouts[0][0], (n, *layouts[0][1][1:])))
        for part in parts:
            with open(part, "rb") as fh:
                _read_npy_header(fh, str(part))
                shutil.copyfileobj(fh, out, _COPY_BLOCK)
            _consumed(part)


def _join_npz(tmp: Path, parts: list[Path], n: int, header: bytes) -> None:
    """Each array of the parts' ``.npz`` archives joined along its first axis, array by array; a part is
    removed once its last array is copied. Entries are stored or deflated as :class:`ArrayWriter` does."""
    archives = [zipfile.ZipFile(p) for p in parts]
    try:
        names = archives[0].namelist()
        for part, zf in zip(parts, archives):
            if sorted(zf.namelist()) != sorted(names):
                raise AdvgenError(f"{part} holds arrays {zf.namelist()}, the first part {names}")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=NPZ_DEFLATE_LEVEL, allowZip64=True) as out:
            for k, name in enumerate(names):
                layouts = []
                for part, zf in zip(parts, archives):
                    with zf.open(name) as fh:
                        layouts.append(_read_npy_header(fh, f"{part}:{name}"))
                rows = sum(_check_layout(f"{p}:{name}", lay, layouts[0]) for p, lay in zip(parts, layouts))
                if rows != n:
                    raise AdvgenError(f"array {name} of the part files holds {rows} samples, expected {n}")
                dtype = layouts[0][0]
                entry: str | zipfile.ZipInfo = name
                if dtype.kind in "fc":  # random low bits do not compress: stored, as ArrayWriter does
                    entry = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
                    entry.compress_type = zipfile.ZIP_STORED
                with out.open(entry, "w", force_zip64=True) as dst:
                    dst.write(npy_header(dtype, (n, *layouts[0][1][1:])))
                    for part, zf in zip(parts, archives):
                        with zf.open(name) as fh:
                            _read_npy_header(fh, f"{part}:{name}")
                            shutil.copyfileobj(fh, dst, _COPY_BLOCK)
                        if k == len(names) - 1:
                            zf.close()
                            _consumed(part)
    finally:
        for zf in archives:
            zf.close()


# --- Parquet --------------------------------------------------------------------------------------


def _join_parquet(tmp: Path, parts: list[Path], n: int, header: bytes) -> None:
    """Rows copied in order under the first part's schema (the pandas metadata included), gathered
    into row groups as :class:`TableWriter` gathers them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    rows = 0
    pending: list = []

    def flush() -> None:
        size = sum(len(t) for t in pending)
        writer.write_table(pa.concat_tables(pending), row_group_size=max(size, 1))
        pending.clear()

    try:
        for part in parts:
            try:
                pf = pq.ParquetFile(part)
            except (pa.ArrowInvalid, OSError) as exc:
                raise AdvgenError(f"part file {part} is not Parquet: {str(exc).splitlines()[0][:200]}") from None
            with contextlib.closing(pf):
                if writer is None:
                    schema = pf.schema_arrow
                    writer = pq.ParquetWriter(str(tmp), schema)
                elif not pf.schema_arrow.equals(schema, check_metadata=False):
                    raise AdvgenError(f"part file {part} has another schema than the first part")
                for g in range(pf.num_row_groups):
                    pending.append(pf.read_row_group(g))
                    rows += len(pending[-1])
                    if sum(len(t) for t in pending) >= TableWriter.ROW_GROUP_ROWS:
                        flush()
            _consumed(part)
        if writer is None:
            raise AdvgenError("no part files to join")
        if pending:
            flush()
        if rows != n:
            raise AdvgenError(f"the part files hold {rows} rows, expected {n}")
    finally:
        if writer is not None:
            writer.close()
