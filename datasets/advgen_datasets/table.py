"""Loading a table of labelled rows (a registered dataset or any CSV/Parquet file) and cleaning it.

Real intrusion-detection files are dirty: CIC-IDS2017 writes ``Infinity`` and ``NaN`` into its rate
columns, pads its header names with spaces and repeats a header line where daily captures were
concatenated; UNSW-NB15 leaves normal rows' attack category empty; most exports carry flow IDs, IP
addresses and timestamps that would let a model memorise rows instead of learning traffic. This
module turns such a file into a :class:`Table` whose every kept column has a kind and a clean dtype,
and records each repair in ``Table.notes`` so that nothing is changed silently.

A column's kind comes from the manifest or a schema file when one declares it, else it is inferred:
values in {0, 1} -> flag; non-negative integers -> count; reals in [0, 1] -> rate; other numbers ->
continuous; text -> categorical. A declared kind the data contradicts (a "flag" holding 2) is widened
to the narrowest kind that fits, with a note, so a manifest written from documentation still loads.
"""

from __future__ import annotations

import csv
import io
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from advgen.errors import InvalidDataError
from advgen.io import check_text_file, line_terminator, require_data_file
from advgen.writers import integer_text
from advgen_datasets.manifest import (
    KINDS,
    NUMERIC_KINDS,
    ROLES,
    ColumnSpec,
    FileFormat,
    Layout,
    _parse_columns,
    get_manifest,
)

MISSING_CATEGORY = "missing"
"""Value given to empty cells of a categorical feature (a category of its own, not a guess)."""

# Content-based ID detection needs enough rows that "unique per row" means something.
_MIN_ROWS_FOR_ID = 20
_MANY_VALUES = 200

# Names of identifier and time columns, compared lowercased with everything but letters and digits
# removed ("Flow ID" -> "flowid", " Source IP" -> "sourceip").
_ID_NAMES = frozenset(
    {
        "id", "flowid", "rowid", "uid", "uuid", "index", "unnamed0", "connid", "sessionid",
        "timestamp", "datetime", "date", "ts", "stime", "ltime", "starttime", "endtime",
        "srcip", "dstip", "sourceip", "destinationip", "srcaddr", "dstaddr", "saddr", "daddr",
        "ipsrc", "ipdst", "srcipaddr", "dstipaddr",
    }
)
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_IPV6 = re.compile(r"^[0-9a-fA-F]{0,4}(:[0-9a-fA-F]{0,4}){2,7}$")
_DATEISH = re.compile(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}|\d{1,2}:\d{2}")
_HEX = re.compile(r"^0[xX][0-9a-fA-F]+$")


@dataclass(frozen=True)
class ColumnSchema:
    """A kept column: ``kind`` in KINDS, ``role`` "feature" or "label"."""

    name: str
    kind: str
    role: str = "feature"

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "kind": self.kind, "role": self.role}


@dataclass
class Table:
    """A cleaned table: features in file order, then the label column (if any)."""

    name: str
    df: pd.DataFrame
    columns: list[ColumnSchema]
    label: str | None = None
    category_map: dict[str, str] | None = None
    category_column: str = "category"
    feature_groups: dict[str, list[str]] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    split: str | None = None
    #: the file's column order of the columns the table carries (features, constants, label)
    source_order: list[str] = field(default_factory=list)
    #: categorical columns (the label too) whose every value in the file was an integer: the table
    #: holds them as text, files of samples write them back as integers
    integer_columns: list[str] = field(default_factory=list)

    @property
    def features(self) -> list[ColumnSchema]:
        return [c for c in self.columns if c.role == "feature"]

    def column(self, name: str) -> ColumnSchema:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def categories(self) -> pd.Series | None:
        """Each row's category (label mapped through ``category_map``; unmapped labels stay as they are)."""
        if self.label is None or self.category_map is None:
            return None
        labels = self.df[self.label]
        return labels.map(self.category_map).fillna(labels).astype(str).rename(self.category_column)

    def class_counts(self) -> dict[str, int]:
        if self.label is None:
            return {}
        return {str(k): int(v) for k, v in self.df[self.label].value_counts().items()}


# --- reading ---------------------------------------------------------------------------------------


def _norm_name(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def _unique_names(raw: list[str]) -> tuple[list[str], list[str]]:
    """Strip names and make them unique the way pandas does (``x``, ``x.1``); note what changed."""
    out: list[str] = []
    seen: dict[str, int] = {}
    notes: list[str] = []
    stripped = 0
    for i, r in enumerate(raw):
        name = str(r).strip() or f"column_{i + 1}"
        stripped += name != str(r)
        base = name
        while name in seen:
            seen[base] += 1
            name = f"{base}.{seen[base]}"
        seen.setdefault(base, 0)
        seen.setdefault(name, 0)
        if name != base:
            notes.append(f"column name {base!r} repeats; the repeat is named {name!r}")
        out.append(name)
    if stripped:
        notes.insert(0, f"stripped spaces around {stripped} column names")
    return out, notes


def _sniff_separator(line: str) -> str:
    counts = {sep: line.count(sep) for sep in (",", ";", "\t", "|")}
    best = max(counts, key=lambda s: counts[s])
    return best if counts[best] else ","


HEADER_BYTES = 1 << 20  # the first record (a header, or the first row) may take this much


def _first_line(path: Path, encoding: str, terminator: str | None = None) -> str:
    """The file's first record: up to the first line end outside double quotes (a quoted column name may
    hold a newline), refused when longer than :data:`HEADER_BYTES` rather than cut."""
    with path.open("rb") as fh:
        block = fh.read(HEADER_BYTES + 1)
    ends = [terminator.encode()] if terminator else [b"\n", b"\r"]
    raw, pos = None, 0
    while raw is None:
        found = [j for j in (block.find(t, pos) for t in ends) if j >= 0]
        if not found:
            if len(block) > HEADER_BYTES:
                raise InvalidDataError(
                    f"the first line of {path} is longer than {HEADER_BYTES // (1 << 20)} MiB (a header of "
                    f"{block.count(b',') + 1:,} or more columns?); advgen reads tables of up to a few thousand columns"
                )
            raw = block
        elif block.count(b'"', 0, min(found)) % 2 == 0:
            raw = block[: min(found)]
        else:
            pos = min(found) + 1  # inside a quoted field: the record goes on
    for enc in (encoding, "cp1252"):
        try:
            return raw.decode(enc).lstrip("\ufeff").rstrip("\r\n")
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1").rstrip("\r\n")


def _looks_numeric(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _is_data_row(fields: list[str]) -> bool:
    """Whether a generic file's first line is data, not names: names are rarely numbers, except
    the 0..n-1 or 1..n that a frame with default column labels writes."""
    values = [f.strip() for f in fields]
    numeric = [v for v in values if _looks_numeric(v)]
    if len(numeric) * 2 < len(values):
        return False
    if values in ([str(i) for i in range(len(values))], [str(i + 1) for i in range(len(values))]):
        return False
    return True


def csv_header(
    path: Path, fmt: FileFormat, declared: list[ColumnSpec] | None, notes: list[str], *, sniff: bool
) -> tuple[str, bool, list[str], str | None]:
    """How a CSV file is laid out: ``(separator, has a header row, column names, line terminator)``.

    The in-memory reader and the streamed one (:mod:`advgen_tabular.source`) read a file alike.
    """
    require_data_file(path)
    terminator = line_terminator(check_text_file(path))
    first = _first_line(path, fmt.encoding, terminator)
    if not first.strip():
        raise InvalidDataError(f"{path} is empty")
    sep = _sniff_separator(first) if sniff else fmt.separator
    try:
        fields = next(csv.reader(io.StringIO(first), delimiter=sep))
    except (csv.Error, StopIteration) as exc:
        raise InvalidDataError(f"cannot parse the first line of {path}: {exc}") from None
    header = fmt.header
    if sniff and header and _is_data_row(fields):
        header = False
        notes.append(f"{path.name} has no header row; columns are named column_1 ... column_{len(fields)}")
    if not header and declared is not None and not sniff:
        known = {c.name for c in declared}
        if sum(f.strip() in known for f in fields) >= max(1, int(0.8 * len(fields))):
            # a file of a header-less dataset that someone saved with a header (samples, exports)
            header = True
            notes.append(f"{path.name} starts with a header row; columns are taken from it")
    if header:
        names, name_notes = _unique_names(fields)
        notes.extend(name_notes)
    elif declared is not None and not sniff:
        names = [c.name for c in declared]
        if len(fields) != len(names):
            raise InvalidDataError(
                f"{path} has {len(fields)} fields a row, its manifest declares {len(names)} columns"
            )
    else:
        names = [f"column_{i + 1}" for i in range(len(fields))]
    return sep, header, names, terminator


def _read_csv(
    path: Path,
    fmt: FileFormat,
    declared: list[ColumnSpec] | None,
    force_str: set[str],
    notes: list[str],
    *,
    sniff: bool,
) -> pd.DataFrame:
    """Read one CSV; declared kinds give explicit dtypes (the fast path), dirt falls back to text."""
    sep, header, names, terminator = csv_header(path, fmt, declared, notes, sniff=sniff)
    kinds = {c.name: c.kind for c in declared or [] if c.kind}
    dtypes: dict[str, Any] = {}
    for n in names:
        if n in force_str or kinds.get(n) == "categorical":
            dtypes[n] = str
        elif kinds.get(n) in NUMERIC_KINDS:
            dtypes[n] = "float64"
    kw: dict[str, Any] = dict(
        sep=sep,
        header=0 if header else None,
        names=names,
        na_values=list(fmt.na_values) or None,
        skipinitialspace=True,
        low_memory=False,
        index_col=False,
    )
    if terminator:
        kw["lineterminator"] = terminator

    def attempt(dt: Any, encoding: str) -> pd.DataFrame:
        errors = "strict" if encoding == fmt.encoding else "replace"
        with warnings.catch_warnings():
            # rows longer than the header would silently shift every value one column
            warnings.simplefilter("error", pd.errors.ParserWarning)
            try:
                return pd.read_csv(path, dtype=dt, encoding=encoding, encoding_errors=errors, **kw)
            except pd.errors.ParserWarning:
                raise InvalidDataError(
                    f"cannot parse {path}: rows have more fields than its {len(names)} columns"
                ) from None

    # Files that are not UTF-8 are nearly always Windows exports (CIC-IDS2017's en dash is byte
    # 0x96): read them as cp1252, the superset of latin-1 that Windows writes.
    encodings = [fmt.encoding] + (["cp1252"] if fmt.encoding.lower() != "cp1252" else [])
    for encoding in encodings:
        try:
            try:
                return attempt(dtypes or None, encoding)
            except ValueError as exc:
                if isinstance(exc, (pd.errors.ParserError, UnicodeDecodeError)) or not dtypes:
                    raise
                # A value that is not a number in a numeric column: a repeated header, "-", a hex
                # port. Read everything as text; the cleaning step sorts it out and notes it.
                return attempt(str, encoding)
        except UnicodeDecodeError:
            notes.append(f"{path.name} is not {fmt.encoding}; read it as {encodings[-1]}")
            continue
        except pd.errors.EmptyDataError:
            raise InvalidDataError(f"{path} is empty") from None
        except (pd.errors.ParserError, csv.Error) as exc:
            msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise InvalidDataError(f"cannot parse {path}: {msg}") from None
    raise InvalidDataError(f"cannot decode {path} as {' or '.join(encodings)}")


def _read_file(
    path: Path,
    fmt: FileFormat,
    declared: list[ColumnSpec] | None,
    force_str: set[str],
    notes: list[str],
    *,
    sniff: bool,
    text_columns: set[str] | None = None,
) -> pd.DataFrame:
    """Read one file. ``text_columns`` gathers the columns a Parquet file types as text, so that text
    that spells integers there is not taken for integers (a CSV has no types: its text is what it is)."""
    suffix = path.suffix.lower()
    if fmt.type == "parquet" or (sniff and suffix in (".parquet", ".pq")):
        require_data_file(path)
        try:
            df = pd.read_parquet(path)
        except ImportError:
            raise InvalidDataError(
                "reading Parquet needs pyarrow: pip install 'advgen[parquet]'"
            ) from None
        except Exception as exc:  # pyarrow raises its own types for corrupt files
            raise InvalidDataError(f"cannot read {path} as Parquet: {exc}") from None
        # pandas keeps a frame's index in Parquet metadata; rows are positions here (an index with
        # repeated labels broke cleaning)
        df = df.reset_index(drop=True)
        names, name_notes = _unique_names([str(c) for c in df.columns])
        notes.extend(name_notes)
        df.columns = names
        if text_columns is not None:
            text_columns.update(
                n for n in names if pd.api.types.is_object_dtype(df[n]) or pd.api.types.is_string_dtype(df[n])
            )
        for n in force_str & set(names):
            df[n] = df[n].astype(str).where(df[n].notna())
        return df
    return _read_csv(path, fmt, declared, force_str, notes, sniff=sniff)


# --- cleaning --------------------------------------------------------------------------------------


def _drop_repeated_headers(df: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """Remove rows whose cells spell the column names (files concatenated with their headers)."""
    text_cols = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    if not text_cols:
        return df
    hits = np.zeros(len(df), dtype=np.int64)
    for c in text_cols:
        hits += (df[c].astype(str).str.strip() == c).to_numpy(dtype=bool)
    mask = hits >= max(1, (len(df.columns) + 1) // 2)
    if mask.any():
        notes.append(f"removed {int(mask.sum())} repeated header rows")
        df = df.loc[~mask].reset_index(drop=True)
    return df


def _to_numeric(s: pd.Series) -> pd.Series:
    """Text to float64: numbers parse, hex such as 0x000b parses, anything else becomes NaN."""
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        return s.astype("float64")
    if pd.api.types.is_bool_dtype(s):
        return s.astype("float64")
    text = s.astype(str).str.strip().where(s.notna())
    out = pd.to_numeric(text, errors="coerce").astype("float64")
    bad = out.isna() & text.notna()
    if bad.any():
        hex_mask = bad & text.str.match(_HEX).fillna(False).astype(bool)
        if hex_mask.any():
            out[hex_mask] = text[hex_mask].map(lambda v: float(int(v, 16)))
    return out


def _numeric_share(s: pd.Series) -> float:
    values = s.dropna()
    if values.empty:
        return 0.0
    sample = values.iloc[:: max(1, len(values) // 5000)].astype(str).str.strip()
    sample = sample[sample != ""]
    if sample.empty:
        return 0.0
    parsed = pd.to_numeric(sample, errors="coerce")
    return float(parsed.notna().mean())


def _infer_numeric_kind(values: np.ndarray) -> str:
    v = values[~np.isnan(values)]
    if v.size == 0:
        return "continuous"
    if np.isin(v, (0.0, 1.0)).all():
        return "flag"
    integral = bool(np.all(v == np.floor(v)))
    if integral:
        return "count" if v.min() >= 0 else "continuous"
    if v.min() >= 0 and v.max() <= 1:
        return "rate"
    return "continuous"


def _widen_kind(declared: str, values: np.ndarray) -> str:
    """The declared kind if the data fits it, else the narrowest kind that does."""
    v = values[~np.isnan(values)]
    if v.size == 0 or declared == "continuous":
        return declared
    integral = bool(np.all(v == np.floor(v)))
    nonneg = bool(v.min() >= 0)
    if declared == "flag" and np.isin(v, (0.0, 1.0)).all():
        return "flag"
    if declared in ("flag", "count"):
        return "count" if integral and nonneg else "continuous"
    if declared == "rate":
        return "rate" if nonneg and v.max() <= 1 else "continuous"
    return declared


def _whole_number_labels(spelling: dict[str, str]) -> dict[str, str]:
    """Labels that are all whole numbers, some written as floats ("1.0", as pandas writes an integer column
    with gaps), spelled as integers ("1"): one class however the file wrote it, and the spelling a test
    file without gaps uses. Labels that are not all numbers are left as they are."""
    out: dict[str, str] = {}
    for raw, text in spelling.items():
        try:
            value = float(text)
        except ValueError:
            return spelling
        if not math.isfinite(value) or value != int(value) or abs(value) >= 2**53:
            return spelling
        out[raw] = str(int(value)) if "." in text or "e" in text.lower() else text
    return out


def _id_reason(name: str, s: pd.Series, n: int) -> str | None:
    """Why a column is an identifier or timestamp rather than a feature, or None."""
    norm = _norm_name(name)
    tokens = [t for t in re.split(r"[^0-9a-z]+", name.lower()) if t]
    if norm in _ID_NAMES or (len(tokens) > 1 and tokens[-1] == "id"):
        return "its name marks an identifier or timestamp"
    values = s.dropna()
    if values.empty:
        return None
    if pd.api.types.is_datetime64_any_dtype(s):
        return "it holds timestamps"
    if pd.api.types.is_numeric_dtype(s):
        if n < _MIN_ROWS_FOR_ID or len(values) != n:
            return None
        v = values.to_numpy(dtype="float64")
        if not np.all(v == np.floor(v)):
            return None
        # cheap tests first: nunique over millions of rows is the expensive one
        ordered = values.is_monotonic_increasing or values.is_monotonic_decreasing
        if (ordered or float(v.max()) - float(v.min()) + 1 == n) and values.nunique() == n:  # no overflow warning
            return "it numbers the rows (unique, sequential integers)"
        return None
    sample = values.iloc[:: max(1, len(values) // 500)].astype(str).str.strip()
    if sample.str.match(_IPV4).mean() > 0.9 or sample.str.match(_IPV6).mean() > 0.9:
        return "it holds IP addresses"
    if sample.str.contains(_DATEISH).mean() > 0.9:
        parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
        if parsed.notna().mean() > 0.9:
            return "it holds timestamps"
    if n >= _MIN_ROWS_FOR_ID:
        counts = values.value_counts(sort=False)
        if len(counts) == n:
            return "every row has its own value"
        own = int((counts == 1).sum())
        if 2 * own > n:
            # a URL or host name column repeats a few values: as thousands of categories it made training
            # 12x slower and every generated value a copy of a training row's
            return f"{own:,} of its {n:,} rows have a value no other row has"
    return None


def _all_integers(values: Any) -> bool:
    """Whether there is a value and each is an integer as text ("7", "-3"; not "07" or "7.0")."""
    return len(values) > 0 and all(integer_text(v) for v in values)


def _fmt_count(n: int) -> str:
    return f"{n:,}"


@dataclass
class _Plan:
    """What the caller knows about the columns before looking at the data."""

    declared: dict[str, ColumnSpec]
    label: str | None
    layout: Layout | None = None
    infer_rest: bool = True  # undeclared columns: infer (True) or drop (False: training schema)
    keep_constants: bool = False
    widen: bool = True


def _clean(df: pd.DataFrame, plan: _Plan, source: str, notes: list[str]) -> tuple[pd.DataFrame, list[ColumnSchema], dict[str, Any]]:
    clean, schema, constants, _, _ = _clean_table(df, plan, source, notes)
    return clean, schema, constants


def _clean_table(
    df: pd.DataFrame, plan: _Plan, source: str, notes: list[str], text_columns: set[str] | None = None
) -> tuple[pd.DataFrame, list[ColumnSchema], dict[str, Any], list[str], list[str]]:
    """The cleaned frame, its columns, the constant columns dropped, the file's order of the columns
    kept (constants and label included) and the categorical columns whose values were all integers
    (``text_columns``: columns a typed file holds as text, never taken for integers)."""
    if df.shape[1] == 0 or df.shape[0] == 0:
        raise InvalidDataError(f"{source} has no data rows")
    label = plan.label
    if label is not None and label not in df.columns:
        cols = [str(c) for c in df.columns]
        shown = ", ".join(cols[:60]) + (" ..." if len(cols) > 60 else "")
        raise InvalidDataError(f"label column {label!r} is not in {source}; columns: {shown}")

    if not plan.infer_rest:
        missing = [c for c in plan.declared if c not in df.columns]
        if missing:
            shown = ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else "")
            raise InvalidDataError(f"{source} lacks {len(missing)} columns of the training schema: {shown}")
    df = _drop_repeated_headers(df, notes)
    if df.empty:
        raise InvalidDataError(f"{source} has no data rows")
    file_order = [str(c) for c in df.columns]

    if label is not None:
        layout = plan.layout
        aliases = layout.label_aliases if layout is not None else {}
        raw = df[label].astype(str).where(df[label].notna())
        # clean each distinct spelling once, not each row: stray and doubled spaces are typing
        # accidents, not classes of their own
        spelling = {u: " ".join(u.split()) for u in raw.dropna().unique()}
        spelling = _whole_number_labels(spelling)
        spelling = {u: aliases.get(c, c) for u, c in spelling.items()}
        changed = {u: c for u, c in spelling.items() if u != c}
        lab = raw.replace(changed) if changed else raw
        empty = lab.isna() | (lab == "") | (lab.str.lower() == "nan")
        if empty.any() and layout is not None and layout.label_missing is not None:
            lab = lab.mask(empty, layout.label_missing)
            notes.append(f"{_fmt_count(int(empty.sum()))} rows with an empty {label} are {layout.label_missing!r}")
        elif empty.any():
            notes.append(f"dropped {_fmt_count(int(empty.sum()))} rows whose {label} is missing")
            lab = lab[~empty]
            df = df.loc[~empty]
        df[label] = lab
        df = df.reset_index(drop=True)
        if df.empty:
            raise InvalidDataError(f"{source} has no rows with a {label} value")

    n = len(df)
    kept: dict[str, pd.Series] = {}
    schema: list[ColumnSchema] = []
    constants: dict[str, Any] = {}
    dropped_ids: list[str] = []
    dropped_ignored: list[str] = []
    dropped_other: list[str] = []
    inf_cols: dict[str, int] = {}
    for name in df.columns:
        if name == label:
            continue
        s = df[name]
        spec = plan.declared.get(name)
        if spec is not None and spec.role == "ignored":
            dropped_ignored.append(name)
            continue
        if spec is not None and spec.role == "label":
            dropped_other.append(name)  # the declared label was replaced by the caller's choice
            continue
        if spec is None and not plan.infer_rest:
            dropped_other.append(name)
            continue
        kind = spec.kind if spec is not None else None
        if spec is None or kind is None:
            reason = _id_reason(name, s, n) if spec is None else None
            if reason:
                dropped_ids.append(f"{name} ({reason})")
                continue
        if kind is None:
            if pd.api.types.is_bool_dtype(s):
                kind = "flag"
            else:
                share = 1.0 if pd.api.types.is_numeric_dtype(s) else _numeric_share(s)
                if share >= 0.95:
                    kind = "numeric"  # decided below, once the values are numbers
                else:
                    kind = "categorical"
                    if share >= 0.5:
                        levels = s.dropna().astype(str).str.strip().nunique()
                        notes.append(
                            f"{name} is {share:.0%} numbers and {1 - share:.0%} words, so it is read as a "
                            f"categorical with {_fmt_count(levels)} levels; to read it as numbers (words as "
                            f"missing), declare its kind in a schema file (--option schema=FILE.toml)"
                        )

        if kind == "categorical":
            text = s.astype(str).str.strip().where(s.notna())
            if (
                spec is not None
                and pd.api.types.is_numeric_dtype(s)
                and not pd.api.types.is_integer_dtype(s)
            ):
                # numbers read as floats ("6.0") for a declared categorical: write them as integers
                as_int = s.dropna()
                if (as_int == np.floor(as_int)).all():
                    text = s.map(lambda v: str(int(v)), na_action="ignore")
            kept[name] = text
            schema.append(ColumnSchema(name, "categorical"))
            continue

        values = _to_numeric(s)
        unparsed = 0
        if not pd.api.types.is_numeric_dtype(s):
            unparsed = int((values.isna() & s.notna() & (s.astype(str).str.strip() != "")).sum())
        if unparsed:
            notes.append(f"{name}: {_fmt_count(unparsed)} values are not numbers; treated as missing")
        inf = np.isinf(values.to_numpy())
        if inf.any():
            inf_cols[name] = int(inf.sum())
            values = values.mask(inf)
        arr = values.to_numpy()
        if kind == "numeric":
            kind = _infer_numeric_kind(arr)
        elif plan.widen:
            wider = _widen_kind(kind, arr)
            if wider != kind:
                notes.append(f"{name} is declared {kind} but its values need {wider}; loaded as {wider}")
                kind = wider
        kept[name] = values
        schema.append(ColumnSchema(name, kind))

    if dropped_ignored:
        notes.append(f"dropped ignored columns: {', '.join(dropped_ignored)}")
    if dropped_ids:
        notes.append(f"dropped identifier/timestamp columns: {'; '.join(dropped_ids)}")
    if dropped_other:
        notes.append(f"dropped columns the schema does not keep: {', '.join(dropped_other)}")
    if inf_cols:
        detail = ", ".join(f"{k} ({_fmt_count(v)})" for k, v in inf_cols.items())
        notes.append(f"infinite values treated as missing in {detail}")

    # constant columns carry no information; keep their value so decoding can write them back
    if not plan.keep_constants:
        final: list[ColumnSchema] = []
        for col in schema:
            s = kept[col.name]
            if col.kind != "categorical":
                arr = s.to_numpy(dtype="float64")
                finite = arr[~np.isnan(arr)]
                if finite.size and finite.min() != finite.max():
                    final.append(col)  # the common case, without hashing every value
                    continue
            uniq = s.dropna().unique()
            if len(uniq) <= 1:
                value: Any = uniq[0] if len(uniq) else None
                if isinstance(value, np.generic):
                    value = value.item()
                if isinstance(value, float) and col.kind in ("count", "flag") and value == int(value):
                    value = int(value)
                constants[col.name] = value
                del kept[col.name]
            else:
                final.append(col)
        schema = final
        if constants:
            shown = ", ".join(f"{k}={v!r}" for k, v in constants.items())
            notes.append(f"dropped constant columns: {shown}")

    filled: list[str] = []
    out: dict[str, pd.Series] = {}
    for col in schema:
        s = kept[col.name]
        nan = s.isna()
        if col.kind == "categorical":
            if nan.any():
                filled.append(f"{col.name} ({_fmt_count(int(nan.sum()))}, as {MISSING_CATEGORY!r})")
                s = s.fillna(MISSING_CATEGORY)
            out[col.name] = s.astype(str)
            nunique = out[col.name].nunique()
            if nunique > _MANY_VALUES:
                notes.append(f"{col.name} is categorical with {_fmt_count(nunique)} distinct values")
            continue
        if nan.any():
            med = float(s.median()) if (~nan).any() else 0.0
            if col.kind in ("count", "flag"):
                med = float(np.round(med))
            filled.append(f"{col.name} ({_fmt_count(int(nan.sum()))}, median {med:g})")
            s = s.fillna(med)
        # integers beyond int64 (2**62 leaves room for float rounding) stay floats: the cast overflowed
        # every one of them to -2**63, a constant column
        as_int = col.kind in ("count", "flag") and not (s.abs() > 2.0**62).any()
        out[col.name] = s.round().astype("int64") if as_int else s.astype("float64")
    if filled:
        notes.append(f"filled missing values: {', '.join(filled)}")
    if not schema:
        raise InvalidDataError(f"{source} has no usable feature columns after cleaning")
    if label is not None:
        out[label] = df[label].astype(str)
        schema.append(ColumnSchema(label, "categorical", "label"))
    text = text_columns or set()
    integers = [
        c.name for c in schema
        if c.kind == "categorical" and c.name not in text and _all_integers(out[c.name].unique())
    ]
    carried = {c.name for c in schema} | set(constants)
    source_order = [c for c in file_order if c in carried]
    if not plan.infer_rest:
        # a training schema fixes the column order too, whatever order the file has
        order = {name: i for i, name in enumerate(plan.declared)}
        schema.sort(key=lambda c: order[c.name])
        out = {c.name: out[c.name] for c in schema}
    clean = pd.DataFrame(out, index=pd.RangeIndex(n))
    return clean, schema, constants, source_order, integers


# --- schema files ----------------------------------------------------------------------------------


def read_schema_file(path: str | Path) -> dict[str, Any]:
    """A user's schema override: ``label``, ``[columns.NAME] kind/role``, ``[categories]``, ``[feature_groups]``."""
    import tomllib

    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise InvalidDataError(f"cannot read schema file {p}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidDataError(f"schema file {p.name} is not valid TOML: {exc}") from None
    unknown = set(data) - {"label", "columns", "categories", "feature_groups"}
    if unknown:
        raise InvalidDataError(f"schema file {p.name} has unknown keys {sorted(unknown)}")
    cols = data.get("columns", {})
    if not isinstance(cols, dict):
        raise InvalidDataError(f"schema file {p.name}: write columns as [columns.NAME] tables")
    if not all(isinstance(v, dict) for v in cols.values()):
        raise InvalidDataError(f"schema file {p.name}: write columns as [columns.NAME] tables")
    specs = (
        _parse_columns([{"name": k, **v} for k, v in cols.items()], f"schema file {p.name}", need_kind=False)
        if cols
        else []
    )
    label = data.get("label")
    if label is not None and not isinstance(label, str):
        raise InvalidDataError(f"schema file {p.name}: label must be a column name")
    return {
        "label": label,
        "columns": specs,
        "categories": data.get("categories", {}),
        "feature_groups": data.get("feature_groups", {}),
    }


# --- entry point -----------------------------------------------------------------------------------


def load_table(
    dataset: str | None = None,
    split: str | None = None,
    *,
    path: str | Path | None = None,
    label: str | None = None,
    schema_file: str | Path | None = None,
    schema: list[ColumnSchema] | None = None,
    download: bool = True,
    progress: bool | None = None,
) -> Table:
    """Load a registered dataset's split, or any CSV/Parquet file, as a cleaned :class:`Table`.

    - ``dataset`` (+ ``split``): the manifest's files from the data dir, verified, downloaded if missing;
    - ``path``: one file; with ``dataset`` it is read with that dataset's layout, else its schema is
      inferred (``label`` names the label column; ``schema_file`` overrides kinds and roles);
    - ``schema``: the ``columns`` of a training table, to read a test file exactly the same way
      (same columns and kinds, no inference, no columns dropped as constant; unseen categories stay).
    """
    request = resolve_table(
        dataset, split, path=path, label=label, schema_file=schema_file, schema=schema, download=download,
        progress=progress,
    )
    frames = []
    for f in request.files:
        frame = _read_file(
            f, request.fmt, request.read_declared, request.force_str, request.notes, sniff=request.sniff,
            text_columns=request.text_columns,
        )
        frames.append(frame)
    if len(frames) > 1:
        cols = list(frames[0].columns)
        for f, frame in zip(request.files[1:], frames[1:]):
            if list(frame.columns) != cols:
                raise InvalidDataError(f"{f} has other columns than {request.files[0]}")
        df = pd.concat(frames, ignore_index=True)
    else:
        df = frames[0]
    return finish_table(request, df)


@dataclass
class TableRequest:
    """What :func:`load_table` reads and how: the files, their format and the cleaning plan.

    The streamed reader of tables larger than memory (:mod:`advgen_tabular.source`) reads the same
    files the same way and cleans a sample of their rows with :func:`finish_table`.
    """

    name: str
    files: list[Path]
    split: str | None
    layout: Layout | None
    plan: _Plan
    categories: dict[str, list[str]]
    groups: dict[str, list[str]]
    fmt: FileFormat
    read_declared: list[ColumnSpec] | None
    force_str: set[str]
    notes: list[str]
    #: columns a typed (Parquet) file holds as text, filled in as the files are read
    text_columns: set[str] = field(default_factory=set)

    @property
    def sniff(self) -> bool:
        """Whether the files' layout is guessed (no registered dataset): separator, header, kinds."""
        return self.layout is None

    @property
    def source(self) -> str:
        return str(self.files[0]) if len(self.files) == 1 else f"{self.name} ({len(self.files)} files)"


def resolve_table(
    dataset: str | None = None,
    split: str | None = None,
    *,
    path: str | Path | None = None,
    label: str | None = None,
    schema_file: str | Path | None = None,
    schema: list[ColumnSchema] | None = None,
    download: bool = True,
    progress: bool | None = None,
) -> TableRequest:
    """The files :func:`load_table` reads for these arguments, their format and the cleaning plan."""
    from advgen_datasets.fetch import ensure_file

    if dataset is None and path is None:
        raise InvalidDataError("give a registered dataset name or a data file path")
    notes: list[str] = []
    layout: Layout | None = None
    files: list[Path]
    split_name: str | None = None
    if dataset is not None:
        manifest = get_manifest(dataset)
        sp = manifest.split(split)
        split_name = sp.name
        layout = manifest.layout(sp)
        if path is not None:
            files = [Path(path)]
        else:
            files = [ensure_file(manifest, f, download=download, progress=progress) for f in sp.files]
        name = manifest.name
    else:
        if split is not None:
            raise InvalidDataError("--split needs a registered dataset; a data file is one split already")
        files = [Path(path)]  # type: ignore[arg-type]
        name = Path(path).stem  # type: ignore[arg-type]

    declared: dict[str, ColumnSpec] = {}
    categories: dict[str, list[str]] = {}
    groups: dict[str, list[str]] = {}
    if layout is not None:
        declared = {c.name: c for c in layout.columns or []}
        categories = dict(layout.categories)
        groups = dict(layout.feature_groups)
    if schema_file is not None:
        override = read_schema_file(schema_file)
        for spec in override["columns"]:
            base = declared.get(spec.name)
            declared[spec.name] = ColumnSpec(
                spec.name, spec.kind if spec.kind is not None else (base.kind if base else None), spec.role
            )
        if override["label"] and label is None:
            label = override["label"]
        categories = override["categories"] or categories
        groups = override["feature_groups"] or groups

    declared_label = next((c.name for c in declared.values() if c.role == "label"), None)
    plan_label = label if label is not None else declared_label
    if label is not None and declared_label is not None and label != declared_label:
        notes.append(f"label column is {label!r}; dropped the dataset's own label {declared_label!r}")
        categories = {}
    if label is not None:
        declared[label] = ColumnSpec(label, "categorical", "label")

    if categories and plan_label is not None and "category" not in declared:
        # a file written by advgen carries the category derived from the label; it is not a feature
        declared["category"] = ColumnSpec("category", "categorical", "ignored")
    plan = _Plan(declared=declared, label=plan_label, layout=layout)
    if schema is not None:
        for c in schema:
            if c.kind not in KINDS or c.role not in ("feature", "label"):
                raise InvalidDataError(f"training schema column {c.name!r} has kind {c.kind!r}, role {c.role!r}")
        schema_label = next((c.name for c in schema if c.role == "label"), None)
        plan = _Plan(
            declared={c.name: ColumnSpec(c.name, c.kind, c.role) for c in schema},
            label=schema_label,
            layout=layout,
            infer_rest=False,
            keep_constants=True,
            widen=False,
        )

    fmt = layout.format if layout is not None else FileFormat()
    read_declared = list(layout.columns) if layout is not None and layout.columns else None
    if read_declared is not None and declared:
        # schema-file overrides may change kinds: read with the final kinds
        read_declared = [declared.get(c.name, c) for c in read_declared]
    force_str = {plan.label} if plan.label else set()
    return TableRequest(
        name=name,
        files=files,
        split=split_name,
        layout=layout,
        plan=plan,
        categories=categories,
        groups=groups,
        fmt=fmt,
        read_declared=read_declared or list(plan.declared.values()) or None,
        force_str=force_str,
        notes=notes,
    )


def finish_table(request: TableRequest, df: pd.DataFrame) -> Table:
    """Check and clean the rows read for ``request`` (see :func:`resolve_table`) into a :class:`Table`."""
    layout, plan, notes = request.layout, request.plan, request.notes
    categories, groups = request.categories, request.groups
    source = request.source
    if layout is not None and layout.columns and plan.infer_rest:
        expected = [c.name for c in layout.columns if c.role != "ignored"]
        missing = [c for c in expected if c not in df.columns]
        if missing:
            shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise InvalidDataError(
                f"{source} lacks {len(missing)} columns its manifest declares: {shown}"
            )

    clean, columns, constants, source_order, integers = _clean_table(df, plan, source, notes, request.text_columns)
    kept = {c.name for c in columns}
    if plan.label is None:
        categories = {}
    category_map = {lab: cat for cat, labs in categories.items() for lab in labs} or None
    if category_map is not None and plan.label is not None:
        unmapped = sorted(set(clean[plan.label].unique()) - set(category_map))
        if unmapped:
            shown = ", ".join(unmapped[:20]) + (" ..." if len(unmapped) > 20 else "")
            notes.append(f"labels without a category (kept as their own category): {shown}")
    feature_groups = {
        g: [m for m in members if m in kept and m != plan.label] for g, members in groups.items()
    }
    return Table(
        name=request.name,
        df=clean,
        columns=columns,
        label=plan.label,
        category_map=category_map,
        feature_groups={g: m for g, m in feature_groups.items() if m},
        constants=constants,
        notes=notes,
        sources=[str(f) for f in request.files],
        split=request.split,
        source_order=source_order,
        integer_columns=integers,
    )


__all__ = [
    "ColumnSchema", "Table", "TableRequest", "finish_table", "load_table", "resolve_table", "read_schema_file",
    "KINDS", "ROLES", "MISSING_CATEGORY",
]
