"""A table's rows in batches, read with pyarrow datasets, for tables larger than memory.

:class:`BatchReader` reads the files of a :class:`~advgen_datasets.table.TableRequest` (one CSV or
Parquet file, or the files of a registered dataset's split) as pandas frames of at most
``batch_rows`` rows, named and typed as the in-memory reader (:func:`advgen_datasets.load_table`)
names them: the same separator, header and column names for CSV, the label read as text, pandas
index columns of Parquet files left out. Memory stays bounded by the batch, whatever the file size.

A numeric CSV column must hold numbers throughout (empty cells are fine): pyarrow fixes each column's
type from the first block of the file, so a word further down is an error naming the column and the
row, where the in-memory reader would have read it as a missing value. Any read error is one line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from advgen.errors import AdvgenError, InvalidDataError
from advgen.io import require_data_file

PYARROW_HINT = (
    "tables larger than memory are read with pyarrow: pip install 'advgen[parquet]' "
    "(or read the table whole with --option storage=memory)"
)
PARQUET_SUFFIXES = (".parquet", ".pq")
# pandas' default missing-value markers, which the in-memory CSV reader honours
_PANDAS_NA = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
    "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
]
# bytes of CSV text pyarrow parses at a time: the type of each column is inferred from the first block
_CSV_BLOCK = 4 << 20


def require_pyarrow() -> Any:
    """``pyarrow.dataset``, or one clear line saying how to install it."""
    try:
        import pyarrow.dataset as ds
    except ImportError:
        raise AdvgenError(PYARROW_HINT) from None
    return ds


def is_parquet(path: Path, request: Any) -> bool:
    return request.fmt.type == "parquet" or (request.sniff and path.suffix.lower() in PARQUET_SUFFIXES)


def _one_line(exc: BaseException, names: list[str] | None = None) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    # pyarrow prefixes dataset errors with how it tried to open the file
    text = re.sub(r"^Error creating dataset\. Could not read schema from '[^']*'\. Is this a '\w+' file\?: ", "", text)
    if names:  # "In CSV column #3: Row #20007: ..." names the column by position
        text = re.sub(
            r"CSV column #(\d+)",
            lambda m: f"column {names[int(m.group(1))]!r}" if int(m.group(1)) < len(names) else m.group(0),
            text,
        )
    return text[:300]


class BatchReader:
    """The rows of ``request``'s files, ``batch_rows`` at a time, as pandas frames with a 0-based index.

    Opening checks every file (a corrupt Parquet footer, a CSV whose first lines do not parse, files of
    a split whose columns differ) with one clear line; reading checks every batch.
    """

    def __init__(self, request: Any, batch_rows: int):
        self.request = request
        self.batch_rows = max(1, int(batch_rows))
        self._ds = require_pyarrow()
        self._parts = [self._open(Path(f)) for f in request.files]
        self.columns: list[str] = self._parts[0][2]
        for path, _, names in self._parts[1:]:
            if names != self.columns:
                raise InvalidDataError(f"{path} has other columns than {self._parts[0][0]}")

    # --- opening ---------------------------------------------------------------------------------

    def _open(self, path: Path) -> tuple[Path, Any, list[str], list[str]]:
        """``(path, pyarrow dataset, column names as the table has them, columns to read)``."""
        require_data_file(path)
        try:
            if is_parquet(path, self.request):
                return self._open_parquet(path)
            return self._open_csv(path)
        except (InvalidDataError, AdvgenError):
            raise
        except Exception as exc:  # pyarrow raises its own types (ArrowInvalid, ArrowIOError, ...)
            raise InvalidDataError(f"cannot read {path}: {_one_line(exc)}") from None

    def _open_parquet(self, path: Path) -> tuple[Path, Any, list[str], list[str]]:
        from advgen_datasets.table import _unique_names

        dataset = self._ds.dataset(str(path), format="parquet")
        meta = dataset.schema.pandas_metadata or {}
        index = {c for c in meta.get("index_columns", []) if isinstance(c, str)}
        read = [n for n in dataset.schema.names if n not in index]  # rows are positions, as in memory
        names, name_notes = _unique_names(read)
        self.request.notes.extend(n for n in name_notes if n not in self.request.notes)
        text = getattr(self.request, "text_columns", None)
        if text is not None:  # text that spells integers here is text, as the in-memory reader says
            import pyarrow as pa

            types = dict(zip(dataset.schema.names, dataset.schema.types))
            text.update(
                name for name, raw in zip(names, read)
                if pa.types.is_string(types[raw]) or pa.types.is_large_string(types[raw])
            )
        return path, dataset, names, read

    def _open_csv(self, path: Path) -> tuple[Path, Any, list[str], list[str]]:
        import pyarrow as pa
        import pyarrow.csv as pcsv

        from advgen_datasets.manifest import NUMERIC_KINDS
        from advgen_datasets.table import csv_header

        request = self.request
        fmt = request.fmt
        sep, header, names, _ = csv_header(path, fmt, request.read_declared, request.notes, sniff=request.sniff)
        read = pcsv.ReadOptions(
            column_names=names, skip_rows=1 if header else 0, block_size=_CSV_BLOCK, encoding=fmt.encoding
        )
        parse = pcsv.ParseOptions(delimiter=sep)
        kinds = {c.name: c.kind for c in request.read_declared or [] if c.kind}
        text = {n for n in names if n in request.force_str or kinds.get(n) == "categorical"}
        null_values = _PANDAS_NA + [v for v in fmt.na_values if v not in _PANDAS_NA]

        def csv_format(types: dict[str, Any]) -> Any:
            convert = pcsv.ConvertOptions(
                column_types=types, null_values=null_values, strings_can_be_null=True, quoted_strings_can_be_null=True
            )
            return self._ds.CsvFileFormat(read_options=read, parse_options=parse, convert_options=convert)

        declared = {n: pa.string() for n in text}
        declared.update({n: pa.float64() for n in names if n not in text and kinds.get(n) in NUMERIC_KINDS})
        inferred = self._ds.dataset(str(path), format=csv_format(declared)).schema
        # every column gets a fixed type: a count inferred as integers from the first block must not
        # fail on a later 0.5, and dates or times stay text (the cleaning step recognises them)
        types: dict[str, Any] = {}
        for field in inferred:
            if field.name in declared:
                types[field.name] = declared[field.name]
            elif pa.types.is_boolean(field.type):
                types[field.name] = pa.bool_()
            elif pa.types.is_integer(field.type) or pa.types.is_floating(field.type) or pa.types.is_null(field.type):
                types[field.name] = pa.float64() if not pa.types.is_null(field.type) else pa.string()
            else:
                types[field.name] = pa.string()
        dataset = self._ds.dataset(str(path), format=csv_format(types))
        return path, dataset, names, names

    # --- reading ---------------------------------------------------------------------------------

    def estimated_rows(self) -> int:
        """Rows in all files: exact for Parquet (from its footer), from the bytes of the first lines for CSV."""
        total = 0
        for path, dataset, _, _ in self._parts:
            if is_parquet(path, self.request):
                total += sum(f.metadata.num_rows for f in dataset.get_fragments())
            else:
                total += estimate_csv_rows(path)
        return total

    def batches(self) -> Iterator[pd.DataFrame]:
        """Every row once, in file order, as frames of at most ``batch_rows`` rows."""
        for path, dataset, names, read in self._parts:
            seen = 0
            scanner = dataset.to_batches(
                columns=read, batch_size=self.batch_rows, batch_readahead=0, fragment_readahead=0, use_threads=False
            )
            while True:
                try:
                    batch = next(scanner, None)
                    if batch is None:
                        break
                    frame = batch.to_pandas(ignore_metadata=True)
                except Exception as exc:  # pyarrow's errors for corrupt pages, bad rows, bad text
                    raise InvalidDataError(f"cannot read {path} after row {seen:,}: {_one_line(exc, names)}") from None
                if frame.shape[1] != len(names):
                    raise InvalidDataError(
                        f"{path}: rows after row {seen:,} have {frame.shape[1]} columns, not {len(names)}"
                    )
                frame.columns = names
                for name in self.request.force_str & set(names):
                    s = frame[name]
                    if not (pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s)):
                        frame[name] = s.astype(str).where(s.notna())  # as the in-memory reader does
                seen += len(frame)
                if len(frame):
                    yield frame


def estimate_csv_rows(path: Path) -> int:
    """About how many rows a CSV file holds: its size over the mean length of its first lines."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(1 << 16)
    lines = head.count(b"\n") or 1
    return max(1, int(size / (len(head) / lines)))
