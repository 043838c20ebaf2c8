"""Repair of disguised rows with the rules the validators fitted on real traffic.

The rules are data (``advgen_tabular.validators.fit_rules``: ranges, vocabularies, categorical
combinations, orderings ``a <= b``, zero implications ``a == 0 => b == 0``, rates that are fractions
``k / count``, columns computed from others ``a = k * N / D``, multiples of a step or of another
column), so the same list both judges rows
(the validator pass rate of the report) and repairs them here. Only modifiable cells ever change: a
rule between a functional and a modifiable column is met by moving the modifiable side, as a
functional value is a fact of the attack. Directions (``"up"``: a value may only grow) come from the
threat model; where a zero implication can be met either by adding ``a`` or by removing ``b``, a
column that may only grow is added to.

The repair is a few passes of simple projections (clip, round, snap a rate to ``k / count``, raise
``b`` to ``a``, zero ``b``, compute a derived column from its inputs, snap ``a`` to a multiple), vectorised over rows and
rules; then, for any row that still breaks a rule, the modifiable cells that rule involves go back
to the attack row's own values, which real traffic (and the rule) allows, until no rule is broken or
nothing is left to revert.

NumPy and pandas only (the rule checks come from :mod:`advgen_tabular.rules`): the torch-free runtime
(``advgen-runtime disguise``) repairs rows with this very class.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from advgen_tabular.rules import (
    derived_ok,
    derived_values,
    fraction_ok,
    multiple_divisor,
    multiple_ok,
    positive_ok,
    rule_check,
    rule_columns,
)

PASSES = 3
NUMERIC_KINDS = ("continuous", "count", "rate", "flag")


class Repair:
    """Projects disguised rows onto the rules. ``columns`` are the feature columns as ``(name, kind)``."""

    def __init__(self, rules: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]):
        self.columns = [c for c, _ in columns]
        kinds = dict(columns)
        self.num_cols = [c for c in self.columns if kinds[c] in NUMERIC_KINDS]
        pos = {c: j for j, c in enumerate(self.num_cols)}
        self.pos = pos
        names = set(self.columns)
        self.rules = [dict(r) for r in rules if set(rule_columns(r)) & names]
        c = len(self.num_cols)
        self.lo, self.hi = np.full(c, -np.inf), np.full(c, np.inf)
        self.integer = np.zeros(c, dtype=bool)
        self.decimals = np.full(c, -1)
        self.min_pos = np.full(c, np.nan)  # the smallest value above 0 in real rows, where the rule records it
        self.flag_values: dict[int, np.ndarray] = {}
        self.fractions: list[tuple[int, int, int]] = []
        self.derived: list[dict[str, Any]] = []  # inputs first, as fitted
        self.multiples: list[dict[str, Any]] = []
        orders, zeros = [], []
        self.other_rules = []  # judged on the DataFrame: categorical vocabularies and combinations
        for r in self.rules:
            t = r["type"]
            if t == "range" and r["column"] in pos:
                j = pos[r["column"]]
                self.lo[j], self.hi[j] = r["min"], r["max"]
                self.integer[j] = bool(r.get("integer"))
                if r.get("decimals") is not None:
                    self.decimals[j] = int(r["decimals"])
                if r.get("min_positive") is not None:
                    self.min_pos[j] = float(r["min_positive"])
            elif t == "vocab" and r.get("numeric") and r["column"] in pos:
                self.flag_values[pos[r["column"]]] = np.asarray(r["values"], dtype=np.float64)
            elif t == "order" and r["a"] in pos and r["b"] in pos:
                orders.append((pos[r["a"]], pos[r["b"]]))
            elif t == "zero" and r["a"] in pos and r["b"] in pos:
                zeros.append((pos[r["a"]], pos[r["b"]]))
            elif t == "fraction" and r["rate"] in pos and r["count"] in pos:
                self.fractions.append((pos[r["rate"]], pos[r["count"]], int(r["decimals"])))
            elif t == "derived" and all(c in pos for c in rule_columns(r)):
                self.derived.append(r)
            elif t == "multiple" and all(c in pos for c in rule_columns(r)):
                self.multiples.append(r)
            elif t in ("vocab", "combo"):
                self.other_rules.append((r, rule_check(r)))
        self.order_a, self.order_b = (np.array([o[k] for o in orders], dtype=np.int64) for k in (0, 1))
        self.zero_a, self.zero_b = (np.array([z[k] for z in zeros], dtype=np.int64) for k in (0, 1))
        # the value ``a`` takes to become non-zero: the smallest value above 0 real rows hold (rules fitted
        # since it is recorded); else the column's unit (integers, fixed decimals); else none (NaN): a
        # real-valued column without a recorded floor is not made non-zero (a step of 1e-6 wrote ratios
        # no real row has), the zero rule is met by clearing ``b`` or by reverting the row's cells
        unit = np.where(self.integer, 1.0, np.where(self.decimals >= 0, 10.0 ** (-np.maximum(self.decimals, 0)), np.nan))
        self.step = np.where(np.isfinite(self.min_pos), np.fmax(self.min_pos, np.where(self.integer, 1.0, 0.0)), unit)
        self.floored = np.flatnonzero(np.isfinite(self.min_pos))
        for j, vals in self.flag_values.items():
            positive = vals[vals > 0]
            self.step[j] = positive.min() if positive.size else 1.0

    def __call__(self, adv: pd.DataFrame, orig: pd.DataFrame, mask: np.ndarray, up: np.ndarray | None = None) -> pd.DataFrame:
        """``adv`` (modifiable cells changed) repaired; ``orig`` are the attack rows, ``mask[i, j]`` says
        whether row i may change column j (columns in ``self.columns`` order), ``up[i, j]`` whether it may
        only grow."""
        out = adv.copy()
        col_idx = [self.columns.index(c) for c in self.num_cols]
        can = mask[:, col_idx] if len(col_idx) else np.zeros((len(adv), 0), dtype=bool)
        grows = (up[:, col_idx] & can) if up is not None and len(col_idx) else np.zeros_like(can)
        V = _matrix(out, self.num_cols)
        O = _matrix(orig, self.num_cols)
        if V.shape[1]:
            for _ in range(PASSES):
                self._project(V, O, can, grows)
            self._revert_numeric(V, O, can)
            _write(out, self.num_cols, V, can)
        self._revert_other(out, orig, mask)
        # a revert for one rule can break another (a combination's flag put back breaks a zero rule, one
        # combination's cells put back break the next): a row that still breaks a rule its attack row keeps
        # gets every modifiable cell back
        bad = ~self.passes(out)
        if bad.any():
            bad &= self.passes(orig)
            for j, c in enumerate(self.columns):
                m = bad & mask[:, j]
                if m.any():
                    out[c] = np.where(m, orig[c].to_numpy(), out[c].to_numpy())
        return out

    def passes(self, df: pd.DataFrame) -> np.ndarray:
        """Boolean per row: keeps every rule this repair enforces."""
        ok = np.ones(len(df), dtype=bool)
        if self.num_cols:
            for rows, _ in self._violations(_matrix(df, self.num_cols)):
                ok &= ~rows
        for _, check in self.other_rules:
            ok &= np.asarray(check(df), dtype=bool)
        return ok

    # --- projections ---------------------------------------------------------------------------

    def _ranges(self, V: np.ndarray, can: np.ndarray) -> None:
        W = np.clip(V, self.lo, self.hi)
        W = np.where(self.integer, np.round(W), W)
        for d in np.unique(self.decimals[self.decimals >= 0]):
            cols = self.decimals == d
            W[:, cols] = np.round(W[:, cols], int(d))
        for j, vals in self.flag_values.items():
            # a flag takes the nearest value it has in real traffic
            near = vals[np.abs(W[:, j : j + 1] - vals[None, :]).argmin(axis=1)]
            W[:, j] = near
        if len(self.floored):
            # between 0 and the smallest value above 0 of real rows: the nearer of the two
            F = W[:, self.floored]
            mp = self.min_pos[self.floored]
            low = (F > 0) & ~positive_ok(F, mp)
            W[:, self.floored] = np.where(low, np.where(F < mp / 2, 0.0, mp), F)
        V[:] = np.where(can, W, V)

    def _project(self, V: np.ndarray, O: np.ndarray, can: np.ndarray, grows: np.ndarray) -> None:
        self._ranges(V, can)
        V[:] = np.where(grows, np.maximum(V, O), V)
        for jr, jc, dec in self.fractions:
            self._fraction(V, can, jr, jc, dec)
        if len(self.order_a):
            a, b = V[:, self.order_a], V[:, self.order_b]
            rows, k = np.nonzero(a > b + 1e-9)
            ja, jb = self.order_a[k], self.order_b[k]
            lift = can[rows, jb]
            V[rows[lift], jb[lift]] = V[rows[lift], ja[lift]]
            drop = ~lift & can[rows, ja]
            V[rows[drop], ja[drop]] = V[rows[drop], jb[drop]]
        if len(self.zero_a):
            a, b = V[:, self.zero_a], V[:, self.zero_b]
            rows, k = np.nonzero((a == 0) & (b != 0))
            ja, jb = self.zero_a[k], self.zero_b[k]
            # add ``a`` where it may only grow (or ``b`` is fixed or was already there); else clear ``b``
            add = can[rows, ja] & (grows[rows, ja] | ~can[rows, jb] | (O[rows, jb] != 0)) & np.isfinite(self.step[ja])
            V[rows[add], ja[add]] = self.step[ja[add]]
            clear = ~add & can[rows, jb]
            V[rows[clear], jb[clear]] = 0.0
        self._ranges(V, can)
        for r in self.multiples:
            self._multiple(V, can, grows, r)
        for r in self.derived:
            self._derive(V, can, r)
        V[:] = np.where(grows, np.maximum(V, O), V)

    def _multiple(self, V: np.ndarray, can: np.ndarray, grows: np.ndarray, rule: dict[str, Any]) -> None:
        """A modifiable ``a`` that is no multiple of its divisor becomes the nearest multiple (the next
        one up where it may only grow), one divisor further in where that leaves its range; a functional
        ``a`` stays, and a modifiable divisor goes back if the pair breaks the rule (``_violations``)."""
        j = self.pos[rule["a"]]
        a = V[:, j]
        d = np.broadcast_to(np.asarray(multiple_divisor(self._values(V, rule), rule), dtype=np.float64), a.shape)
        bad = can[:, j] & ~multiple_ok(a, d)
        if not bad.any():
            return
        with np.errstate(divide="ignore", invalid="ignore"):  # rows whose divisor is 0 are not bad
            q = np.where(grows[:, j], np.ceil(a / d), np.round(a / d)) * d
            q = np.where(q > self.hi[j], q - d, q)
            q = np.where(q < self.lo[j], q + d, q)
            m = bad & (q >= self.lo[j]) & (q <= self.hi[j])
        V[m, j] = q[m]

    def _derive(self, V: np.ndarray, can: np.ndarray, rule: dict[str, Any]) -> None:
        """A modifiable derived column computed from its (possibly changed) inputs, rounded to its
        decimals; a functional one stays, and its inputs go back if they break it (``_violations``)."""
        j = self.pos[rule["target"]]
        want = derived_values(self._values(V, rule), rule)
        if rule.get("decimals") is not None:
            want = np.round(want, int(rule["decimals"]))
        m = can[:, j] & np.isfinite(want)
        V[m, j] = want[m]

    def _values(self, V: np.ndarray, rule: dict[str, Any]) -> dict[str, np.ndarray]:
        return {c: V[:, self.pos[c]] for c in rule_columns(rule)}

    def _fraction(self, V: np.ndarray, can: np.ndarray, jr: int, jc: int, dec: int) -> None:
        rv, cv = V[:, jr], V[:, jc]
        bad = ~fraction_ok(rv, cv, dec)
        if not bad.any():
            return
        m_rate = bad & can[:, jr]
        if m_rate.any():
            safe = np.where(cv > 0, cv, 1.0)
            snapped = np.where(cv > 0, np.round(np.round(np.clip(rv, 0.0, None) * safe) / safe, dec), 0.0)
            V[m_rate, jr] = snapped[m_rate]
        for i in np.flatnonzero(bad & ~can[:, jr] & can[:, jc]):
            # the rate is a fact: move the count to the nearest one the rate is a fraction of
            for d in range(64):
                hit = next((c for c in (cv[i] + d, cv[i] - d)
                            if 0 <= c <= self.hi[jc] and fraction_ok(np.array([rv[i]]), np.array([c]), dec)[0]), None)
                if hit is not None:
                    V[i, jc] = hit
                    break

    # --- last resort ---------------------------------------------------------------------------

    def _violations(self, V: np.ndarray) -> list[tuple[np.ndarray, list[int]]]:
        """(rows breaking it, its columns) for every numeric rule."""
        out = []
        bad = (V < self.lo - 1e-9) | (V > self.hi + 1e-9)
        bad |= self.integer & (np.abs(V - np.round(V)) > 1e-9)
        if len(self.floored):
            F = V[:, self.floored]
            bad[:, self.floored] |= (F > 0) & ~positive_ok(F, self.min_pos[self.floored])
        for j in range(V.shape[1]):
            if bad[:, j].any():
                out.append((bad[:, j], [j]))
        for j, vals in self.flag_values.items():
            b = ~np.isin(V[:, j], vals)
            if b.any():
                out.append((b, [j]))
        for jr, jc, dec in self.fractions:
            b = ~fraction_ok(V[:, jr], V[:, jc], dec)
            if b.any():
                out.append((b, [jr, jc]))
        for ja, jb in zip(self.order_a.tolist(), self.order_b.tolist()):
            b = V[:, ja] > V[:, jb] + 1e-9
            if b.any():
                out.append((b, [ja, jb]))
        if len(self.zero_a):
            B = (V[:, self.zero_a] == 0) & (V[:, self.zero_b] != 0)
            for k in np.flatnonzero(B.any(axis=0)):
                out.append((B[:, k], [int(self.zero_a[k]), int(self.zero_b[k])]))
        for r in self.derived:
            b = ~derived_ok(self._values(V, r), r)
            if b.any():
                out.append((b, [self.pos[c] for c in rule_columns(r)]))
        for r in self.multiples:
            b = ~multiple_ok(V[:, self.pos[r["a"]]], multiple_divisor(self._values(V, r), r))
            if b.any():
                out.append((b, [self.pos[c] for c in rule_columns(r)]))
        return out

    def _revert_numeric(self, V: np.ndarray, O: np.ndarray, can: np.ndarray) -> None:
        for _ in range(V.shape[1] + 1):
            changed = False
            for rows, cols in self._violations(V):
                for j in cols:
                    m = rows & can[:, j] & (V[:, j] != O[:, j])
                    if m.any():
                        V[m, j] = O[m, j]
                        changed = True
            if not changed:
                return

    def _revert_other(self, df: pd.DataFrame, orig: pd.DataFrame, mask: np.ndarray) -> None:
        for r, check in self.other_rules:
            cols = [c for c in rule_columns(r) if c in self.columns]
            can = {c: mask[:, self.columns.index(c)] for c in cols}
            if not any(v.any() for v in can.values()):
                continue
            bad = ~np.asarray(check(df), dtype=bool)
            for c in cols:
                m = bad & can[c]
                if m.any():
                    df[c] = np.where(m, orig[c].to_numpy(), df[c].to_numpy())


def _matrix(df: pd.DataFrame, cols: list[str]) -> np.ndarray:
    if not cols:
        return np.zeros((len(df), 0))
    sub = df[cols]
    if all(pd.api.types.is_numeric_dtype(t) for t in sub.dtypes):
        return np.array(sub.to_numpy(np.float64), dtype=np.float64)
    return np.array(sub.apply(pd.to_numeric, errors="coerce").to_numpy(np.float64), dtype=np.float64)


def _write(df: pd.DataFrame, cols: list[str], V: np.ndarray, can: np.ndarray) -> None:
    """Write the modifiable numeric cells of ``V`` back, keeping each column's dtype."""
    new = {}
    for j, c in enumerate(cols):
        m = can[:, j]
        if not m.any():
            continue
        cur = df[c].to_numpy(copy=True)
        vals = V[m, j]
        if cur.dtype.kind in "iu":
            vals = np.rint(vals).astype(cur.dtype)
        elif cur.dtype.kind == "b":
            vals = vals.astype(bool)
        cur[m] = vals
        new[c] = cur
    if new:
        df[list(new)] = pd.DataFrame(new, index=df.index)
