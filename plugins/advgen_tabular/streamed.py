"""Training rows from a table larger than memory: streamed, fitted on a sample, encoded once to disk.

:meth:`TabularDomain.load_data <advgen_tabular.domain.TabularDomain.load_data>` asks
:func:`streamed_data` first. With ``storage = "auto"`` (the default) a table whose in-memory size
(estimated from its row and column counts) fits the memory budget is left to the in-memory path, as
before; a larger one, or any table with ``storage = "disk"``, goes here:

1. one pass over the file, a batch at a time (:mod:`~advgen_tabular.source`), takes a uniform sample
   of rows and counts every category and label exactly (:mod:`~advgen_tabular.census`);
2. the sample is cleaned as :func:`advgen_datasets.load_table` cleans a whole file, and the transform
   and the validators are fitted on it (quantiles from the sample; vocabularies, label set and
   ranges are the whole file's, since its rare rows are in the sample); the class counts are exact;
3. a second pass cleans each batch with the fitted schema (missing numbers get the sample's median),
   encodes it and writes it, packed, into ``encoded-rows.bin`` in the run folder
   (:mod:`~advgen_tabular.rowstore`), grouped by class;
4. training draws batches from that file by index. A run resumed in the same folder, or a new run
   there on the same data and options, reuses the file after checking it.

The budget (``memory_budget``, default half the machine's memory) sizes the sample, the batches and
how much of the mapped file stays resident, so peak memory follows the budget, not the file.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from advgen.domain import RealData
from advgen.errors import AdvgenError, InvalidDataError
from advgen.io import write_table
from advgen_tabular.census import Census, take_census
from advgen_tabular.rowstore import (
    META_NAME, ROWS_NAME, SAMPLE_NAME, RowLayout, RowStore, RowStoreWriter, read_meta,
)
from advgen_tabular.source import PYARROW_HINT, BatchReader, estimate_csv_rows, is_parquet
from advgen_tabular.transform import TableTransform

if TYPE_CHECKING:  # pragma: no cover
    from advgen.config import TrainConfig
    from advgen_tabular.domain import TabularDomain

STORAGES = ("auto", "memory", "disk")
MIN_BUDGET = 1 << 30
# what the process holds besides the table: Python, torch, pandas, pyarrow, the nets and optimisers
FIXED_BYTES = 600 << 20
# bytes a table cell costs on the in-memory path (the frame, its cleaning, the encoded copy); measured
# on NSL-KDD: 25,192 rows x 43 columns took 131 MB, 121 bytes a cell
CELL_BYTES = 120
# a categorical column or label with more distinct values is refused (a one-hot group that wide is
# an identifier, not a category)
MAX_LEVELS = 10_000
MAX_COMBOS = 10_000

_UNITS = {
    "": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12,
    "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}


def parse_budget(value: Any) -> int:
    """``memory_budget`` in bytes: a number of bytes, or text such as ``2GB``, ``1.5GiB``, ``800MB``;
    None means half of this machine's memory."""
    if value is None:
        return default_budget()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number, unit = float(value), ""
    else:
        m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([A-Za-z]*)\s*", str(value))
        if m is None or m.group(2).lower() not in _UNITS:
            raise AdvgenError(f"option memory_budget must be a size such as 2GB or 1.5GiB, got {value!r}")
        number, unit = float(m.group(1)), m.group(2).lower()
    if not math.isfinite(number * _UNITS[unit]):
        raise AdvgenError(f"option memory_budget must be a size such as 2GB or 1.5GiB, got {value!r}")
    budget = int(number * _UNITS[unit])
    if budget < MIN_BUDGET:
        raise AdvgenError(
            f"option memory_budget must be at least 1GiB (Python, torch and the nets take about "
            f"{FIXED_BYTES >> 20} MiB of it), got {value!r}"
        )
    return budget


def default_budget() -> int:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return max(MIN_BUDGET, total // 2)


@dataclass(frozen=True)
class Sizes:
    """How a memory budget is spent on the streamed path."""

    budget: int
    sample_rows: int  # rows of the uniform sample the transform is fitted on
    batch_rows: int  # rows read, cleaned and encoded at a time
    resident_bytes: int  # of the mapped encoded rows, before pages are released

    @classmethod
    def for_budget(cls, budget: int, n_columns: int) -> Sizes:
        spare = budget - FIXED_BYTES
        row = max(1, n_columns) * CELL_BYTES
        return cls(
            budget=budget,
            sample_rows=int(min(1_000_000, max(2_000, 0.3 * spare / row))),
            batch_rows=int(min(262_144, max(1_000, 0.08 * spare / row))),
            resident_bytes=int(0.1 * spare),
        )


def _options(opts: dict[str, Any]) -> tuple[str, int]:
    storage = opts.get("storage", "auto")
    if storage not in STORAGES:
        raise AdvgenError(f"option storage must be one of {', '.join(STORAGES)}, got {storage!r}")
    return storage, parse_budget(opts.get("memory_budget"))


def _source(cfg: TrainConfig, opts: dict[str, Any], default_dataset: str) -> dict[str, Any]:
    """The arguments of :func:`advgen_datasets.load_table` that ``cfg`` names."""
    if cfg.data:
        return dict(dataset=cfg.dataset, split=cfg.split, path=cfg.data, label=cfg.label, schema_file=opts["schema"])
    return dict(dataset=cfg.dataset or default_dataset, split=cfg.split, label=cfg.label, schema_file=opts["schema"])


def _table_shape(request: Any) -> tuple[int, int] | None:
    """(rows, columns) of the request's files, cheaply: Parquet footers, CSV first lines; None when a
    Parquet file cannot be opened here (the in-memory reader then reports why)."""
    from advgen_datasets.table import csv_header

    rows = columns = 0
    for f in request.files:
        path = Path(f)
        if not path.is_file():
            return None
        if is_parquet(path, request):
            try:
                import pyarrow.parquet as pq

                meta = pq.ParquetFile(path).metadata
            except Exception:  # no pyarrow, or a damaged file: the in-memory reader says which, in one line
                return None
            rows += meta.num_rows
            columns = max(columns, meta.num_columns)
        else:
            _, _, names, _ = csv_header(path, request.fmt, request.read_declared, [], sniff=request.sniff)
            rows += estimate_csv_rows(path)
            columns = max(columns, len(names))
    return rows, columns


def streamed_data(
    domain: TabularDomain, cfg: TrainConfig, opts: dict[str, Any], default_dataset: str
) -> RealData | None:
    """The run's training data through the streamed path, or None when the table is for the
    in-memory path (``storage = "memory"``, or ``"auto"`` and small enough for the budget)."""
    from advgen_datasets.table import resolve_table

    storage, budget = _options(opts)
    if storage == "memory":
        return None
    request = resolve_table(**_source(cfg, opts, default_dataset))
    shape = _table_shape(request)
    if storage == "auto":
        if shape is None or shape[0] * shape[1] * CELL_BYTES <= budget - FIXED_BYTES:
            return None
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise AdvgenError(PYARROW_HINT) from None
    if not cfg.out:
        raise AdvgenError("a table read with storage=disk is encoded into the run folder: give --out")
    sizes = Sizes.for_budget(budget, shape[1] if shape else 64)
    run_dir = Path(cfg.out)
    key = _store_key(request, cfg, opts)
    notes: list[str] = []
    if shape is not None and storage == "auto":
        notes.append(
            f"{request.source} has about {shape[0]:,} rows of {shape[1]} columns, more than the memory budget "
            f"of {budget / 2**30:.1f} GiB holds (--option memory_budget): it is streamed and encoded to "
            f"{run_dir / ROWS_NAME}"
        )
    meta = read_meta(run_dir)
    if meta is not None and meta.get("key") == key:
        try:
            return _reuse(domain, run_dir, meta, sizes, cfg, notes)
        except (InvalidDataError, KeyError, TypeError, ValueError, IndexError) as exc:
            notes.append(f"the encoded rows in {run_dir} cannot be reused ({str(exc)[:200]}); encoding them again")
    return _build(domain, cfg, opts, request, sizes, run_dir, key, notes)


def _store_key(request: Any, cfg: TrainConfig, opts: dict[str, Any]) -> str:
    """What the encoded rows depend on: the files (path, size, time), the schema and the fit options."""
    files = []
    for f in request.files:
        st = Path(f).stat()
        files.append([str(Path(f).resolve()), st.st_size, st.st_mtime_ns])
    schema = None
    if opts.get("schema"):
        try:
            schema = hashlib.sha256(Path(opts["schema"]).read_bytes()).hexdigest()
        except OSError as exc:
            raise InvalidDataError(f"cannot read schema file {opts['schema']}: {exc.strerror}") from None
    payload = {
        "files": files, "dataset": cfg.dataset, "split": request.split, "label": cfg.label, "schema": schema,
        "conditional": cfg.conditional, "seed": cfg.seed,
        **{k: opts.get(k) for k in ("encoding", "n_quantiles", "joint_max", "snap_fractions", "point_masses", "point_share", "derive", "align", "keep_pairs")},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class _Progress:
    """A line on stderr now and then while a pass over a large table runs (silent for short passes)."""

    def __init__(self, what: str, total: int | None):
        self.what, self.total = what, total
        self.t0 = self.last = time.perf_counter()
        self.every = 1.0 if sys.stderr.isatty() else 30.0

    def __call__(self, done: int) -> None:
        now = time.perf_counter()
        if now - self.last < self.every or now - self.t0 < 3:
            return
        self.last = now
        of = f" of about {self.total:,}" if self.total else ""
        rate = done / (now - self.t0)
        sys.stderr.write(f"{self.what}: {done:,}{of} rows, {rate:,.0f} rows/s\n")
        sys.stderr.flush()


# --- building the encoded rows -----------------------------------------------------------------------


def _build(
    domain: TabularDomain, cfg: TrainConfig, opts: dict[str, Any], request: Any, sizes: Sizes, run_dir: Path,
    key: str, notes: list[str],
) -> RealData:
    from advgen_datasets.manifest import ColumnSpec
    from advgen_datasets.table import _Plan, finish_table  # the in-memory path's cleaning plan, reused

    reader = BatchReader(request, sizes.batch_rows)
    estimate = reader.estimated_rows()
    declared = request.plan.declared
    text = {n for n, c in declared.items() if c.kind == "categorical" and c.role != "ignored"} | set(request.force_str)
    t0 = time.perf_counter()
    census = take_census(
        reader.batches(), text_columns=text, label=request.plan.label, reservoir=sizes.sample_rows, seed=cfg.seed,
        max_levels=MAX_LEVELS, max_combos=MAX_COMBOS, progress=_Progress("reading", estimate),
    )
    read_s = time.perf_counter() - t0
    if census.rows == 0:
        raise InvalidDataError(f"{request.source} has no data rows")
    notes.append(
        f"read {census.rows:,} rows of {request.source} in batches of {sizes.batch_rows:,}; fitted on a uniform "
        f"sample of {census.reservoir_rows:,} rows and {census.witness_rows:,} rows holding rare values (row counts "
        "in the cleaning notes that follow are the sample's)"
    )
    table = finish_table(request, census.sample)
    census.sample = None  # type: ignore[assignment]  # the cleaned copy is what the fit needs
    _check_levels(table, census)
    fit_opts = dict(opts)
    cats = [c.name for c in table.columns if c.role == "feature" and c.kind == "categorical"]
    if len(cats) >= 2 and not set(cats) <= set(census.combo_columns):
        fit_opts["joint_max"] = 1  # too many combinations to have witnessed them all: encode each column alone
        notes.append(f"the categoricals {', '.join(cats)} form over {MAX_COMBOS:,} combinations: encoded one by one")
    t1 = time.perf_counter()
    fitted = domain.encode_table(table, cfg, fit_opts)
    spec = fitted.spec
    fit_notes = fitted.notes
    samples = fitted.samples  # real rows for validation and plots: the sample, cleaned
    conditional = bool(cfg.conditional and spec.get("conditions"))
    class_counts = _exact_class_counts(census, table, request, spec) if conditional else None
    n_rows = int(sum(class_counts)) if class_counts is not None else _row_count(census, table, request)
    if class_counts is not None:
        spec["conditions"]["counts"] = class_counts
    fills = {
        c.name: _median_fill(table.df[c.name], c.kind)
        for c in table.columns
        if c.role == "feature" and c.kind != "categorical"
    }
    schema_plan = _Plan(
        declared={c.name: ColumnSpec(c.name, c.kind, c.role) for c in table.columns},
        label=table.label,
        layout=request.layout,
        infer_rest=False,
        keep_constants=True,
        widen=False,
    )
    del fitted, table, census
    gc.collect()
    fit_s = time.perf_counter() - t1

    transform = TableTransform.from_dict(spec["transform"])
    layout = RowLayout.from_segments(transform.segments())
    classes = spec["conditions"]["classes"] if conditional else None
    t2 = time.perf_counter()
    with contextlib.suppress(FileNotFoundError):
        (run_dir / META_NAME).unlink()  # an earlier store's description must not pair with this one's files
    writer = RowStoreWriter(run_dir, layout, n_rows, class_counts)
    try:
        write_table(samples, run_dir / SAMPLE_NAME)
        _encode_pass(reader, writer, transform, layout, schema_plan, fills, classes, cfg.seed, request, n_rows)
        timings = {"rows": n_rows, "read_s": read_s, "fit_s": fit_s, "encode_s": time.perf_counter() - t2}
        writer.close({"key": key, "spec": spec, "notes": notes + fit_notes, "timings": timings})
    except BaseException:
        writer.abort()
        raise
    store = RowStore(run_dir, layout, sizes.resident_bytes)
    notes.extend(fit_notes)
    notes.append(
        f"encoded {n_rows:,} rows once into {run_dir / ROWS_NAME} "
        f"({n_rows * layout.record.itemsize / 2**20:,.0f} MiB): read at {_rate(n_rows, read_s)}, fit in "
        f"{fit_s:.1f} s, encoded at {_rate(n_rows, timings['encode_s'])}"
    )
    return RealData(x=store, spec=spec, samples=samples, notes=notes)


def _rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f} rows/s" if seconds > 0 else "once"


def _check_levels(table: Any, census: Census) -> None:
    """Categorical columns (and a label the generator must produce) need every value counted."""
    wanted = [c.name for c in table.columns if c.role == "feature" and c.kind == "categorical"]
    if table.label is not None:
        wanted.append(table.label)
    for name in wanted:
        if name in census.overflow:
            what = "label column" if name == table.label else "categorical column"
            raise InvalidDataError(
                f"{what} {name!r} has more than {MAX_LEVELS:,} distinct values: too many to encode as categories; "
                "declare it ignored in a schema file (--option schema=FILE.toml)"
                + (", pick another --label or train with --unconditional" if name == table.label else "")
            )


def _label_cleaner(layout: Any) -> Any:
    """Raw label text to the cleaned label, or None for a row the cleaning drops (as ``load_table``)."""
    aliases = layout.label_aliases if layout is not None else {}
    missing = layout.label_missing if layout is not None else None

    def clean(raw: Any) -> str | None:
        c = " ".join(str(raw).split())
        c = aliases.get(c, c)
        if c == "" or c.lower() == "nan":
            return missing
        return c

    return clean


def _exact_class_counts(census: Census, table: Any, request: Any, spec: dict[str, Any]) -> list[int]:
    label = table.label
    clean = _label_cleaner(request.layout)
    totals: dict[str, int] = {}
    for raw, n in census.values[label].items():
        c = clean(raw)
        if c is not None:
            totals[c] = totals.get(c, 0) + int(n)
    missing = census.missing.get(label, 0)
    if missing and request.layout is not None and request.layout.label_missing is not None:
        c = request.layout.label_missing
        totals[c] = totals.get(c, 0) + missing
    classes = [str(c) for c in spec["conditions"]["classes"]]
    lost = sorted(set(totals) - set(classes))
    if lost:
        raise InvalidDataError(
            f"label values {', '.join(lost[:10])} of {request.source} were lost by cleaning the sample "
            "(repeated header rows?)"
        )
    return [totals.get(c, 0) for c in classes]


def _row_count(census: Census, table: Any, request: Any) -> int:
    """Rows the cleaning keeps: all of them, less those whose label is missing and dropped."""
    label = table.label
    if label is None:
        return census.rows
    clean = _label_cleaner(request.layout)
    dropped = sum(int(n) for raw, n in census.values[label].items() if clean(raw) is None)
    if request.layout is None or request.layout.label_missing is None:
        dropped += census.missing.get(label, 0)
    return census.rows - dropped


def _median_fill(s: pd.Series, kind: str) -> float:
    """The value ``load_table`` gives a missing number: the column's median (rounded for counts and flags)."""
    med = float(s.median()) if len(s) else 0.0
    return float(np.round(med)) if kind in ("count", "flag") else med


def _encode_pass(
    reader: BatchReader, writer: RowStoreWriter, transform: TableTransform, layout: RowLayout, plan: Any,
    fills: dict[str, float], classes: list[str] | None, seed: int, request: Any, n_rows: int,
) -> None:
    # the in-memory path's cleaning, a batch at a time, with the schema fitted on the sample
    from advgen_datasets.table import _clean, _to_numeric

    rng = np.random.default_rng(seed)
    label = plan.label
    clean_label = _label_cleaner(request.layout)
    keep_missing_label = request.layout is not None and request.layout.label_missing is not None
    progress = _Progress("encoding", n_rows)
    done = 0
    for raw in reader.batches():
        if label is not None and label in raw.columns and not keep_missing_label:
            lab = raw[label]
            kept = lab.notna() & lab.map(clean_label, na_action="ignore").notna()
            if not kept.any():
                continue  # _clean refuses a frame left with no rows
        for name, fill in fills.items():
            if name in raw.columns:
                v = _to_numeric(raw[name])
                raw[name] = v.mask(np.isinf(v.to_numpy())).fillna(fill)
        clean, _, _ = _clean(raw, plan, request.source, [])
        x = transform.transform(clean, rng=rng)
        codes = None
        if classes is not None:
            codes = pd.Categorical(clean[label].astype(str), categories=classes).codes.astype(np.int64)
            if (codes < 0).any():
                unseen = sorted(set(clean[label].astype(str)[codes < 0]))[:10]
                raise InvalidDataError(f"the data changed while it was read: labels {', '.join(unseen)} are new")
        writer.write(layout.pack(x), codes)
        done += len(clean)
        progress(done)


# --- using the encoded rows ----------------------------------------------------------------------


def _reuse(
    domain: TabularDomain, run_dir: Path, meta: dict[str, Any], sizes: Sizes, cfg: TrainConfig, notes: list[str]
) -> RealData:
    spec = meta["spec"]
    if not isinstance(spec, dict):
        raise InvalidDataError("its description holds no spec")
    transform = TableTransform.from_dict(spec["transform"])
    layout = RowLayout.from_segments(transform.segments())
    store = RowStore(run_dir, layout, sizes.resident_bytes)
    cond = spec.get("conditions")
    if (cond is not None) != (store.class_counts is not None) or (
        cond is not None and list(cond["counts"]) != store.class_counts
    ):
        raise InvalidDataError("its class counts disagree with its spec")
    store.check(progress=_Progress("checking encoded rows", store.shape[0]))
    samples = domain.read_samples(run_dir / SAMPLE_NAME, spec)
    notes.append(f"reused the {store.shape[0]:,} encoded rows in {run_dir / ROWS_NAME} (same data and options)")
    notes.extend(str(n) for n in meta.get("notes", []) if isinstance(n, str))
    return RealData(x=store, spec=spec, samples=samples, notes=notes)


__all__ = ["STORAGES", "Sizes", "parse_budget", "streamed_data", "META_NAME", "ROWS_NAME"]
