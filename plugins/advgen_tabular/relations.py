"""Arithmetic relations between numeric columns, found from the data: ``a = k * N / D``.

Traffic features are often computed from one another: a mean packet length is a total over a count
(CIC-IDS2017's ``Fwd Packet Length Mean = Total Length of Fwd Packets / Total Fwd Packets``), a rate
is bytes over a duration (``Flow Bytes/s = (fwd bytes + bwd bytes) / Flow Duration * 1e6``), a
column repeats another (``Subflow Fwd Packets = Total Fwd Packets``) or sums two. A generator that
learns each column's distribution breaks such identities in most rows, and a disguised row that
changes a total but not its mean is no flow any tool could have measured.

One form covers them: ``a = k * N / D`` where ``N`` is one column or the sum of two, ``D`` is one
column, the sum of two, or nothing (``D = 1``: a copy or multiple ``a = k * b``, or a sum
``a = b + c``), and ``k`` a constant fitted from the rows. Where ``D`` is 0 the relation says nothing
(data sets write 0 there, or a sentinel).
A relation is a rule dict (``type = "derived"``, see :mod:`advgen_tabular.rules` for its check): the
validators judge rows with it, the decoder computes ``a`` from its inputs, and the repair of disguised
rows recomputes it.

Finding them without trying every combination on every row: each column (and each sum of two) gets a
signature, its logarithms on a few rows minus its logarithm on a first row. A relation means
``sig(a) + sig(D) = sig(N)`` (``k`` cancels), so for each target ``a`` and each ``D`` the matching
``N`` are looked up in a hash table of signatures on a grid, tolerant to rounding of ``a``. A term
needs a signature, so it must be positive on those rows: a sum of two is screened as a sum, and counts
that are 0 now and then still take part in sums (ClaMP's ``sections = suspicious + other``). Candidates
are then checked on every row, kept only when real rows pass (>= ``min_pass``) and rows whose columns
are shuffled independently clearly fail (<= ``max_shuffled``), as every validator rule is; then the
simplest relation for each target is kept while the relations stay free of cycles. A sum or whole
multiple of whole numbers is checked exactly (``decimals`` None), not within one unit as a rounded or
truncated mean is.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd

from advgen_tabular.rules import derived_ok, numbers

NUMERIC_KINDS = ("continuous", "count", "rate")
SIGNATURE_ROWS = 8
GRID = 0.05  # signature cell width in log units: relative rounding error of a target up to 2.5%
MAX_COLUMNS = 200  # pair sums grow with the square of the columns screened (200 columns of 20,000 rows: 11 s)
MAX_CANDIDATES = 20000
MIN_POSITIVE = 0.05  # a column positive in fewer rows than this says too little to relate
HASH_DIMS = 3  # signature dimensions the grid is hashed on; a hit is then compared on all of them


# sums of values near the float64 limit overflow to inf: such a candidate fails, quietly
@np.errstate(over="ignore", invalid="ignore", divide="ignore")
def fit_derived(
    df: pd.DataFrame,
    columns: list[tuple[str, str]],
    decimals: dict[str, int | None],
    *,
    min_pass: float,
    max_shuffled: float,
    shuffled: pd.DataFrame,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Relations ``a = k * N / D`` that hold in (almost) every row of ``df``, at most one per target
    and free of cycles, in an order where every input is computed before it is used."""
    rng = np.random.default_rng(seed)
    n = len(df)
    names = [c for c, k in columns if k in NUMERIC_KINDS]
    if n < 20 or len(names) < 2:
        return []
    values = {c: numbers(df, c) for c in names}
    usable = [
        c
        for c in names
        if np.all(np.isfinite(values[c]))
        and values[c].min() >= 0
        and np.mean(values[c] > 0) >= MIN_POSITIVE
        and values[c].max() > values[c].min()
    ][:MAX_COLUMNS]
    if len(usable) < 2:
        return []
    X = np.stack([values[c] for c in usable], axis=1)
    rows = _signature_rows(X, rng)
    if rows is None:
        return []
    S = X[rows]  # [K, m]
    # a term is screened when it is positive on every signature row: a sum of two counts that are
    # each 0 now and then (ClaMP's sections = suspicious + other sections, the first 0 in 22% of rows)
    # has a signature though one of its columns has none
    pairs = np.array(list(itertools.combinations(range(len(usable)), 2)), dtype=np.int64).reshape(-1, 2)
    T_all = np.concatenate([S, S[:, pairs[:, 0]] + S[:, pairs[:, 1]]], axis=1)  # [K, m + m(m-1)/2]
    screened = np.all(T_all > 0, axis=0)
    m = len(usable)
    cols = [j for j in range(m) if screened[j]]
    if not cols:
        return []
    terms = [(j,) for j in cols] + [(int(a), int(b)) for (a, b), ok in zip(pairs, screened[m:]) if ok]
    if len(terms) < 2:
        return []
    T = T_all[:, np.concatenate([np.asarray(cols, dtype=np.int64), m + np.flatnonzero(screened[m:])])]
    sig_t = np.log(T[1:]) - np.log(T[:1])  # [K-1, nT]
    # signatures of constant columns are 0 and would match anything
    moving = np.abs(sig_t).max(axis=0) > 1e-9
    table = _Table(sig_t[:, moving], np.flatnonzero(moving))
    candidates = _screen(usable, cols, terms, sig_t, moving, table)
    # candidates are first tried on a few hundred rows, most of them fail there
    few = rng.choice(n, size=min(n, 512), replace=False)
    values_few = {c: v[few] for c, v in values.items()}
    shuffled_values = {c: numbers(shuffled, c) for c in usable}
    shuffled_few = {c: v[few] for c, v in shuffled_values.items()}
    out = []
    for target, num, den in candidates[:MAX_CANDIDATES]:
        loose = min_pass - 0.01
        if _verify(values_few, shuffled_few, usable, target, num, den, decimals, loose, 1.0) is None:
            continue
        rule = _verify(values, shuffled_values, usable, target, num, den, decimals, min_pass, max_shuffled)
        if rule is not None:
            out.append(rule)
    return _select(out, names)


def _signature_rows(X: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """``SIGNATURE_ROWS`` rows where most columns are positive and as many columns as possible
    differ from row to row: a column that holds one value on every signature row has no signature
    (UNSW-NB15's busiest flows all carry the same packet count)."""
    score = (X > 0).sum(axis=1)
    pool = np.flatnonzero(score >= np.quantile(score, 0.75))
    if pool.size < SIGNATURE_ROWS:
        return None
    chosen = [int(rng.choice(pool))]
    for _ in range(SIGNATURE_ROWS - 1):
        trial = rng.choice(pool, size=min(64, pool.size), replace=False)
        seen = X[chosen]  # [r, m]
        new = (X[trial][:, None, :] != seen[None, :, :]).all(axis=1) & (X[trial] > 0)
        chosen.append(int(trial[np.argmax(new.sum(axis=1))]))
    if len(set(chosen)) < SIGNATURE_ROWS:
        return None
    return np.asarray(chosen)


class _Table:
    """Signatures on a grid: which terms have a signature within half a cell of a query."""

    def __init__(self, sig: np.ndarray, index: np.ndarray):
        rng = np.random.default_rng(12345)
        self.dims = min(HASH_DIMS, sig.shape[0])
        self.mult = rng.integers(1, 2**61 - 1, size=self.dims, dtype=np.int64)
        keys = self._keys(np.floor(sig[: self.dims] / GRID).astype(np.int64))
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        self.index = index[order]
        self.sig = sig[:, order]

    def _keys(self, cells: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            return (cells * self.mult[:, None]).sum(axis=0)

    def lookup(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query, term) pairs whose signatures agree within half a cell in every dimension."""
        dims = self.dims
        cell = np.floor(q[:dims] / GRID).astype(np.int64)
        frac = q[:dims] / GRID - cell
        side = np.where(frac >= 0.5, 1, -1)
        hits_q, hits_t = [], []
        for flip in itertools.product((0, 1), repeat=dims):
            c = cell + side * np.asarray(flip, dtype=np.int64)[:, None]
            keys = self._keys(c)
            # sorted needles: searchsorted walks the table once instead of jumping about it
            order = np.argsort(keys)
            lo, hi = np.empty_like(order), np.empty_like(order)
            lo[order] = np.searchsorted(self.keys, keys[order], side="left")
            hi[order] = np.searchsorted(self.keys, keys[order], side="right")
            count = hi - lo
            if not count.any():
                continue
            qi = np.repeat(np.arange(q.shape[1]), count)
            ti = np.concatenate([np.arange(a, b) for a, b in zip(lo[count > 0], hi[count > 0])])
            close = np.all(np.abs(self.sig[:, ti] - q[:, qi]) <= GRID / 2, axis=0)
            hits_q.append(qi[close])
            hits_t.append(ti[close])
        if not hits_q:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        qi, ti = np.concatenate(hits_q), np.concatenate(hits_t)
        pairs = np.unique(np.stack([qi, self.index[ti]]), axis=1)
        return pairs[0], pairs[1]


def _screen(
    usable: list[str],
    cols: list[int],
    terms: list[tuple[int, ...]],
    sig_t: np.ndarray,
    moving: np.ndarray,
    table: _Table,
) -> list[tuple[int, tuple[int, ...], tuple[int, ...]]]:
    """(target, numerator term, denominator term or ()) whose signatures match."""
    dims = sig_t.shape[0]
    dens: list[tuple[int, ...]] = [()] + [t for t, mv in zip(terms, moving) if mv]
    sig_d = np.concatenate([np.zeros((dims, 1)), sig_t[:, moving]], axis=1)
    found = []
    where = {t: i for i, t in enumerate(terms)}
    for a in cols:
        ta = where[(a,)]
        if not moving[ta]:
            continue
        q = sig_t[:, ta : ta + 1] + sig_d  # [dims, nD]
        # rounding of the target moves its logarithm: up to half a cell (GRID) is allowed
        qi, ti = table.lookup(q)
        for d_i, n_i in zip(qi.tolist(), ti.tolist()):
            den, num = dens[d_i], terms[n_i]
            used = set(den) | set(num)
            if a in used or set(den) & set(num):
                continue
            found.append((a, num, den))
    # simplest first: fewer columns, then table order
    found.sort(key=lambda c: (len(c[1]) + len(c[2]), c))
    return found


def _verify(
    values: dict[str, np.ndarray],
    shuffled: dict[str, np.ndarray],
    usable: list[str],
    target: int,
    num: tuple[int, ...],
    den: tuple[int, ...],
    decimals: dict[str, int | None],
    min_pass: float,
    max_shuffled: float,
) -> dict[str, Any] | None:
    a = values[usable[target]]
    N = sum(values[usable[j]] for j in num)
    D = sum(values[usable[j]] for j in den) if den else np.ones_like(a)
    ok = (N > 0) & (D > 0) & (a > 0)
    if ok.sum() < 10:
        return None
    fitted = float(np.median(a[ok] * D[ok] / N[ok]))
    rule: dict[str, Any] = {
        "type": "derived",
        "target": usable[target],
        "num": [usable[j] for j in num],
        "den": [usable[j] for j in den],
        "decimals": decimals.get(usable[target]),
    }
    # the plainest constant that explains the rows: a rounded target (UNSW-NB15's integer dmean)
    # biases the median a little away from the true 1
    real = -1.0
    # a sum or whole multiple of whole numbers that is a whole number in every row is exact: the
    # check's one unit of tolerance (a rounded or truncated mean) would pass 0 + 3 sections as 4
    whole = not den and all(_whole(values[usable[j]]) for j in (target, *num))
    decimals_rounded = rule["decimals"]
    for k in _plain_constants(fitted):
        rule["k"] = k
        for exact in ((True, False) if whole and float(k).is_integer() else (False,)):
            rule["decimals"] = None if exact else decimals_rounded
            real = float(np.mean(derived_ok(values, rule)))
            if real >= min_pass:
                break
        if real >= min_pass:
            break
    if real < min_pass:
        return None
    rule["_decimals"] = decimals_rounded  # for _select: the target's own resolution, whatever the check's
    if float(np.mean(derived_ok(shuffled, rule))) > max_shuffled:
        return None
    rule["real_pass"] = real
    return rule


def _whole(v: np.ndarray) -> bool:
    return bool(np.all(v == np.round(v)) and np.all(np.abs(v) < 2.0**53))


def _plain_constants(k: float) -> list[float]:
    """Candidates for a fitted constant, plainest first: ``k`` to 1, 2, 3 and 6 significant digits,
    then as fitted."""
    out: list[float] = []
    for digits in (1, 2, 3, 6, 12):
        c = float(f"{k:.{digits}g}")
        if c not in out and c != 0:
            out.append(c)
    return out


def _select(rules: list[dict[str, Any]], order: list[str]) -> list[dict[str, Any]]:
    """One relation per target, the most exact first, then one whose target is not a whole number,
    then one computed from columns that are no targets themselves (a mean from a total and a count
    rather than from two other means), then the simplest, then the later column; skipping any that
    would make a column depend on itself. Returned inputs-first."""
    kept = _greedy(rules, order, set())
    kept = _greedy(rules, order, {r["target"] for r in kept})
    for r in rules:
        r.pop("_decimals", None)
    # inputs first: a target after every relation that computes one of its inputs
    ordered: list[dict[str, Any]] = []
    pending = kept
    while pending:
        targets = {p["target"] for p in pending}
        ready = [r for r in pending if not (set(r["num"]) | set(r["den"])) & targets]
        ordered += ready
        pending = [r for r in pending if r not in ready]
    return ordered


def _greedy(rules: list[dict[str, Any]], order: list[str], derived: set[str]) -> list[dict[str, Any]]:
    def key(r: dict[str, Any]) -> tuple:
        inputs = set(r["num"]) | set(r["den"])
        return (
            -round(r["real_pass"], 4),
            r.get("_decimals", r["decimals"]) == 0,
            bool(inputs & derived),
            len(inputs),
            -order.index(r["target"]),
        )

    inputs: dict[str, set[str]] = {}
    kept: list[dict[str, Any]] = []
    for r in sorted(rules, key=key):
        t = r["target"]
        if t in inputs:
            continue
        deps = set(r["num"]) | set(r["den"])
        if _reaches(deps, t, inputs):
            continue
        inputs[t] = deps
        kept.append(r)
    return kept


def _reaches(start: set[str], goal: str, inputs: dict[str, set[str]]) -> bool:
    """Whether ``goal`` is among ``start`` or what they are computed from."""
    seen: set[str] = set()
    stack = list(start)
    while stack:
        c = stack.pop()
        if c == goal:
            return True
        if c in seen:
            continue
        seen.add(c)
        stack.extend(inputs.get(c, ()))
    return False
