"""One streaming pass over a table: a bounded uniform sample, plus exact counts of what a sample misses.

A transform fitted on a uniform sample gets quantiles right but loses rare things: a service seen in
11 rows of 100 million, an attack label with 3 rows, the one row holding a column's maximum. So the
pass (:func:`take_census`) keeps, beside a reservoir of ``reservoir`` rows drawn uniformly (Vitter's
algorithm R), *witness rows*: the first row of every value of every text column and of every
combination of the text feature columns, and the rows holding each numeric column's minimum, maximum,
first missing or infinite value, first non-integer and first value needing more decimals. The sample
handed to the fit is the reservoir and the witnesses, in file order: every category, label and
combination of the whole file is in it, and every range and resolution is the file's own. Text values
are counted exactly (the label's counts become the class counts); a column with more than
``max_levels`` distinct values stops being counted and is reported as such.

Memory is bounded by the reservoir, the witnesses (at most ``max_levels`` per text column and
``max_combos`` combinations) and one batch.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import pandas as pd

# stands for a missing value inside a combination key (NaN never equals itself in a set)
_MISSING = "\x00missing"


@dataclass
class NumericStats:
    """Exact facts about a numeric column over every row read."""

    missing: int = 0
    infinite: int = 0
    min: float = np.inf
    max: float = -np.inf
    integral: bool = True
    decimals: int | None = 0  # fewest decimals (at most 6) representing every value; None when none do


@dataclass
class Census:
    """What one pass over a table found: its row count, a sample of its rows and exact counts."""

    rows: int
    sample: pd.DataFrame  # reservoir and witness rows, in file order, index 0..n-1
    reservoir_rows: int
    witness_rows: int
    values: dict[str, Counter]  # exact counts of every value of each text column still counted
    missing: dict[str, int]  # missing values of each text column still counted
    overflow: set[str]  # text columns with more than max_levels distinct values
    combo_columns: tuple[str, ...]  # text feature columns whose joint combinations are all in the sample
    combos: set[tuple]
    numeric: dict[str, NumericStats] = field(default_factory=dict)


def _project(combos: set[tuple], columns: list[str], kept: list[str]) -> set[tuple]:
    """The combinations of ``kept`` columns, from those of ``columns`` (a superset): exact, as every
    combination of the superset was recorded."""
    where = [columns.index(c) for c in kept]
    return {tuple(t[i] for i in where) for t in combos}


def _decimals_ok(v: np.ndarray, d: int) -> np.ndarray:
    scaled = v * 10.0**d
    return np.abs(scaled - np.round(scaled)) <= 1e-6 * np.maximum(1.0, np.abs(scaled))


class _Reservoir:
    """Algorithm R over batches: after ``seen`` rows, each holds one of ``size`` slots with equal chance."""

    def __init__(self, size: int, seed: int):
        self.size = int(size)
        self.rng = np.random.default_rng(seed)
        self.index = np.full(self.size, -1, dtype=np.int64)  # each slot's row number in the file
        self.columns: dict[str, np.ndarray] = {}
        self.filled = 0

    def _store(self, frame: pd.DataFrame, slots: np.ndarray, rows: np.ndarray) -> None:
        if not self.columns:
            for name in frame.columns:
                s = frame[name]
                kind = s.dtype.kind if isinstance(s.dtype, np.dtype) else "O"
                dtype = np.float64 if kind in "iuf" else (bool if kind == "b" else object)
                self.columns[name] = np.empty(self.size, dtype=dtype)
        for name, arr in self.columns.items():
            values = frame[name].to_numpy()
            if arr.dtype == bool and values.dtype != bool:  # a later batch of a flag column holds nulls
                arr = self.columns[name] = arr.astype(object)
            arr[slots] = values[rows]

    def add(self, frame: pd.DataFrame, first: int) -> None:
        m = len(frame)
        take = min(m, self.size - self.filled)
        if take:
            self._store(frame, np.arange(self.filled, self.filled + take), np.arange(take))
            self.index[self.filled : self.filled + take] = first + np.arange(take)
            self.filled += take
        if take == m:
            return
        rows = np.arange(take, m)
        # row i (0-based in the file) replaces a random slot with probability size / (i + 1)
        j = self.rng.integers(0, first + rows + 1)
        keep = j < self.size
        slots, rows = j[keep], rows[keep]
        if not len(slots):
            return
        # of several rows of this batch drawing one slot, the last one holds it, as one by one
        last = len(slots) - 1 - np.unique(slots[::-1], return_index=True)[1]
        slots, rows = slots[last], rows[last]
        self._store(frame, slots, rows)
        self.index[slots] = first + rows

    def frame(self) -> tuple[np.ndarray, pd.DataFrame]:
        n = self.filled
        return self.index[:n], pd.DataFrame({k: v[:n] for k, v in self.columns.items()})


def take_census(
    batches: Iterable[pd.DataFrame],
    *,
    text_columns: set[str],
    label: str | None,
    reservoir: int,
    seed: int,
    max_levels: int = 10_000,
    max_combos: int = 10_000,
    progress: object = None,
) -> Census:
    """Read every batch once; see the module's docstring. ``text_columns`` are counted value by value
    (besides columns whose values are text), ``label`` is never part of a combination."""
    res = _Reservoir(reservoir, seed)
    values: dict[str, Counter] = {}
    overflow: set[str] = set()
    numeric: dict[str, NumericStats] = {}
    combo_cols: list[str] | None = None
    combos: set[tuple] = set()
    witnesses: list[tuple[np.ndarray, pd.DataFrame]] = []
    witnessed: set[int] = set()
    seen = 0
    for frame in batches:
        m = len(frame)
        if seen == 0:
            for name in frame.columns:
                s = frame[name]
                is_text = name in text_columns or name == label or not (
                    pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)
                )
                if is_text:
                    values[name] = Counter()
                else:
                    numeric[name] = NumericStats()
            combo_cols = [c for c in values if c != label]
        wanted: list[int] = []  # positions in this batch of new witness rows

        for name in list(values):
            s = frame[name]
            counts = s.value_counts(dropna=True)
            counts = counts[counts > 0]  # a categorical dtype lists unused categories too
            known = values[name]
            new = [v for v in counts.index if v not in known]
            known.update(dict(zip(counts.index, counts.to_numpy().tolist())))
            missing = int(s.isna().sum())
            if missing:
                if known.get(_MISSING, 0) == 0:
                    wanted.append(int(np.flatnonzero(s.isna().to_numpy())[0]))
                known[_MISSING] += missing
            if new:
                first = s.drop_duplicates()
                wanted.extend(first.index[first.isin(new)].tolist())
            if len(known) > max_levels:
                overflow.add(name)
                del values[name]  # an identifier or free text: neither counted nor witnessed further

        if combo_cols:
            if any(c in overflow for c in combo_cols):
                kept = [c for c in combo_cols if c not in overflow]
                combos, combo_cols = _project(combos, combo_cols, kept), kept
            if combo_cols:
                part = frame[combo_cols]
                keys = part.astype(object).where(part.notna(), _MISSING).drop_duplicates()
                tuples = list(keys.itertuples(index=False, name=None))
                fresh = [i for i, t in zip(keys.index.tolist(), tuples) if t not in combos]
                if fresh:
                    combos.update(tuples)
                    wanted.extend(fresh)
                while len(combos) > max_combos and combo_cols:
                    # too many combinations to witness: forget the column with the most values
                    widest = max(combo_cols, key=lambda c: len(values.get(c, ())))
                    kept = [c for c in combo_cols if c != widest]
                    combos, combo_cols = _project(combos, combo_cols, kept), kept

        for name, st in numeric.items():
            s = frame[name]
            v = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            nan = np.isnan(v)
            if nan.any():
                if st.missing == 0:
                    wanted.append(int(np.flatnonzero(nan)[0]))
                st.missing += int(nan.sum())
            inf = np.isinf(v)
            if inf.any():
                if st.infinite == 0:
                    wanted.append(int(np.flatnonzero(inf)[0]))
                st.infinite += int(inf.sum())
            finite = ~(nan | inf)
            if not finite.any():
                continue
            fv = np.where(finite, v, np.nan)
            lo, hi = int(np.nanargmin(fv)), int(np.nanargmax(fv))
            if fv[lo] < st.min:
                st.min = float(fv[lo])
                wanted.append(lo)
            if fv[hi] > st.max:
                st.max = float(fv[hi])
                wanted.append(hi)
            vals = v[finite]
            if st.integral and not np.all(vals == np.floor(vals)):
                st.integral = False
                wanted.append(int(np.flatnonzero(finite)[np.flatnonzero(vals != np.floor(vals))[0]]))
            if st.decimals is not None:
                ok = _decimals_ok(vals, st.decimals)
                if not ok.all():
                    wanted.append(int(np.flatnonzero(finite)[np.flatnonzero(~ok)[0]]))
                    st.decimals = next((d for d in range(st.decimals + 1, 7) if _decimals_ok(vals, d).all()), None)

        if wanted:
            pos = np.unique(np.asarray(wanted, dtype=np.int64))
            rows = seen + pos
            fresh = np.asarray([r not in witnessed for r in rows.tolist()], dtype=bool)
            if fresh.any():
                witnessed.update(rows[fresh].tolist())
                witnesses.append((rows[fresh], frame.iloc[pos[fresh]].reset_index(drop=True)))
        res.add(frame, seen)
        seen += m
        if progress is not None:
            progress(seen)

    index, sample = res.frame()
    if witnesses:
        w_index = np.concatenate([w[0] for w in witnesses])
        w_frame = pd.concat([w[1] for w in witnesses], ignore_index=True)
        extra = ~np.isin(w_index, index)
        index = np.concatenate([index, w_index[extra]])
        sample = pd.concat([sample, w_frame.loc[extra]], ignore_index=True)
        n_witness = int(extra.sum())
    else:
        n_witness = 0
    order = np.argsort(index, kind="stable")
    sample = sample.iloc[order].reset_index(drop=True)
    missing = {name: int(counter.pop(_MISSING, 0)) for name, counter in values.items()}
    return Census(
        rows=seen,
        sample=sample,
        reservoir_rows=res.filled,
        witness_rows=n_witness,
        values=values,
        missing=missing,
        overflow=overflow,
        combo_columns=tuple(combo_cols or ()),
        combos=combos,
        numeric=numeric,
    )
