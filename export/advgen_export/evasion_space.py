"""Attack rows in, disguised rows out, without torch: the steps around an exported evasion graph.

The graph of an exported evasion model holds the generator and the tabular decoder (tensor math); the
rest of what ``advgen evade`` does to a row is data-dependent pandas work, and runs here, driven by the
manifest's ``evasion`` section (see :mod:`advgen_export.evasion_schema`):

- each row's attack class (its label, through the category map) gives its mask: which feature columns
  it may change and which may only grow (the threat model of the run);
- rows are encoded as the attack encodes them (``advgen.adversarial.space.AttackSpace.encode``:
  numerics to the middle of their standard-normal quantile interval, flags and categoricals one-hot);
- after the graph, the decoded modifiable cells go on top of the attack row, the row is repaired to the
  rules fitted on real traffic (:mod:`advgen_export.evasion_repair`), and every functional cell is
  copied from the attack row, bit for bit, as the last step.

A port of ``AttackSpace`` (whose module imports torch); tests/test_adversarial_export.py checks that
both give the same rows. NumPy and pandas only.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from advgen_export.evasion_repair import Repair
from advgen_export.manifest import ModelError

Y_MAX = 5.0  # advgen_tabular.transform: quantile knots sit at y = -Y_MAX ... Y_MAX
ROUND_HALF = 0.49  # advgen_tabular.transform: the encoded interval is +-0.49 resolution steps around a value
_ERFC = np.frompyfunc(math.erfc, 1, 1)


def ndtr(x: np.ndarray) -> np.ndarray:
    """The standard normal CDF (``scipy.special.ndtr``), from the C library's ``erfc``."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * _ERFC(-x / math.sqrt(2.0)).astype(np.float64)


def ndtri(p: np.ndarray) -> np.ndarray:
    """The inverse of :func:`ndtr` on (0, 1) (``scipy.special.ndtri``): Wichura's AS 241 (PPND16),
    relative error about 1e-16."""
    p = np.asarray(p, dtype=np.float64)
    q = p - 0.5
    out = np.empty_like(p)
    central = np.abs(q) <= 0.425
    if central.any():
        qc = q[central]
        r = 0.180625 - qc * qc
        num = ((((((r * 2509.0809287301226727 + 33430.575583588128105) * r + 67265.770927008700853) * r
                  + 45921.953931549871457) * r + 13731.693765509461125) * r + 1971.5909503065514427) * r
               + 133.14166789178437745) * r + 3.387132872796366608
        den = ((((((r * 5226.495278852545925 + 28729.085735721942674) * r + 39307.89580009271061) * r
                  + 21213.794301586595867) * r + 5394.1960214247511077) * r + 687.1870074920579083) * r
               + 42.313330701600911252) * r + 1.0
        out[central] = qc * num / den
    tail = ~central
    if tail.any():
        qt = q[tail]
        r = np.sqrt(-np.log(np.where(qt < 0, p[tail], 1.0 - p[tail])))
        near = r <= 5.0
        val = np.empty_like(r)
        s = r[near] - 1.6
        num = ((((((s * 7.7454501427834140764e-4 + 0.0227238449892691845833) * s + 0.24178072517745061177) * s
                  + 1.27045825245236838258) * s + 3.64784832476320460504) * s + 5.7694972214606914055) * s
               + 4.6303378461565452959) * s + 1.42343711074968357734
        den = ((((((s * 1.05075007164441684324e-9 + 5.475938084995344946e-4) * s + 0.0151986665636164571966) * s
                  + 0.14810397642748007459) * s + 0.68976733498510000455) * s + 1.6763848301838038494) * s
               + 2.05319162663775882187) * s + 1.0
        val[near] = num / den
        s = r[~near] - 5.0
        num = ((((((s * 2.01033439929228813265e-7 + 2.71155556874348757815e-5) * s + 0.0012426609473880784386) * s
                  + 0.026532189526576123093) * s + 0.29656057182850489123) * s + 1.7848265399172913358) * s
               + 5.4637849111641143699) * s + 6.6579046435011037772
        den = ((((((s * 2.04426310338993978564e-15 + 1.4215117583164458887e-7) * s + 1.8463183175100546818e-5) * s
                  + 7.868691311456132591e-4) * s + 0.0148753612908506148525) * s + 0.13692988092273580531) * s
               + 0.59983220655588793769) * s + 1.0
        val[~near] = num / den
        out[tail] = np.where(qt < 0, -val, val)
    return out


U_EPS = float(ndtr(np.array([-Y_MAX]))[0])


def unrle(runs: Sequence[Sequence[float]]) -> np.ndarray:
    """A quantile grid from its run-length encoding ``[[value, repeat], ...]``."""
    return np.concatenate([np.full(int(n), v, dtype=np.float64) for v, n in runs]) if runs else np.zeros(0)


def _knot_position(grid: np.ndarray, v: np.ndarray, side: str) -> np.ndarray:
    """Fractional knot index where the piecewise-linear ``grid`` first reaches ``v`` (side "left")
    or last stays at or below ``v`` (side "right"); 0 below the grid, ``len(grid) - 1`` above."""
    g = grid.shape[0]
    k = np.searchsorted(grid, v, side=side)
    pos = np.empty_like(v)
    below, above = k == 0, k == g
    mid = ~(below | above)
    km = k[mid]
    a, b = grid[km - 1], grid[km]
    frac = np.where(b > a, (v[mid] - a) / np.where(b > a, b - a, 1.0), 0.0)
    pos[mid] = km - 1 + np.clip(frac, 0.0, 1.0)
    pos[below] = 0.0
    pos[above] = g - 1.0
    return pos


def quantile_encode(grid: np.ndarray, decimals: int | None, values: np.ndarray) -> np.ndarray:
    """Values to the middle of the interval of y that decodes to them, clipped to the fitted range."""
    step = 2 * Y_MAX / (grid.shape[0] - 1)
    half = ROUND_HALF * 10.0 ** (-decimals) if decimals is not None else 0.0
    v = np.clip(values, grid[0], grid[-1])
    lo_u = ndtr(-Y_MAX + step * _knot_position(grid, v - half, "left"))
    hi_u = ndtr(-Y_MAX + step * _knot_position(grid, v + half, "right"))
    hi_u = np.maximum(hi_u, lo_u)
    u = 0.5 * (lo_u + hi_u)
    return ndtri(np.clip(u, U_EPS, 1.0 - U_EPS)).astype(np.float32)


class EvasionSpace:
    """The manifest's ``evasion`` section at work: masks, encoding, decoding and repair of rows."""

    def __init__(self, section: Mapping[str, Any], outputs: Sequence[Mapping[str, Any]]):
        self.columns = [(str(a), str(b)) for a, b in section["columns"]]
        self.names = [c for c, _ in self.columns]
        self.label = str(section["label"])
        self.category_map = dict(section["category_map"]) if section.get("category_map") else None
        self.threat = section["threat"]
        self.plans = [dict(p) for p in section["encoding"]]
        self.slots: dict[str, tuple[int, int]] = {}
        self.grids: dict[str, np.ndarray] = {}
        pos = 0
        for p in self.plans:
            w = len(p["vocab"]) if p["encoding"] == "onehot" else 1
            self.slots[p["name"]] = (pos, pos + w)
            if p["encoding"] == "quantile":
                self.grids[p["name"]] = unrle(p["grid"])
            pos += w
        self.dim = pos
        self.repair = Repair(section["rules"], self.columns)
        self.outputs = [dict(o) for o in outputs]

    # --- checking and classifying rows -----------------------------------------------------------

    def check_rows(self, df: pd.DataFrame, source: str) -> None:
        """Refuse, in one line, rows the model cannot disguise: a missing feature or label column, a
        numeric cell that is missing or not a number, a category or flag value never seen in training."""
        missing = [c for c in [*self.names, self.label] if c not in df.columns]
        if missing:
            shown = ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
            raise ModelError(
                f"{source} lacks {len(missing)} column(s) the model was trained on: {shown} "
                f"(it needs the {len(self.names)} feature columns and the label column {self.label!r})"
            )
        for p in self.plans:
            col = df[p["name"]]
            if p["encoding"] == "quantile":
                values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
                bad = np.flatnonzero(~np.isfinite(values))
                if bad.size:
                    raise ModelError(
                        f"{source}: numeric column {p['name']!r} holds a missing or non-numeric value in row {int(bad[0])} "
                        f"({col.iloc[int(bad[0])]!r}); {bad.size} row(s) in all"
                    )
                continue
            codes = self._codes(p, col)
            bad = np.flatnonzero(codes < 0)
            if bad.size:
                unseen = sorted({str(v) for v in col.iloc[bad].tolist()})
                shown = ", ".join(repr(v) for v in unseen[:5]) + (" ..." if len(unseen) > 5 else "")
                raise ModelError(
                    f"{source}: column {p['name']!r} holds value(s) never seen in training: {shown} "
                    f"(row {int(bad[0])}; {bad.size} row(s) in all); the model knows {len(p['vocab'])} values"
                )

    def classes(self, df: pd.DataFrame) -> np.ndarray:
        """Each row's attack class: its label, mapped to a category where the run maps labels."""
        labels = df[self.label].astype(str)
        if self.category_map:
            labels = labels.map(self.category_map).fillna(labels)
        return labels.astype(str).to_numpy()

    def masks(self, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(may change, may only grow) per row and feature column, from the run's threat model."""
        n = len(classes)
        mask = np.zeros((n, len(self.names)), dtype=bool)
        up = np.zeros((n, len(self.names)), dtype=bool)
        for cls in np.unique(classes) if n else []:
            rows = classes == cls
            modifiable = self._modifiable(str(cls))
            if not modifiable:
                raise ModelError(
                    f"nothing is modifiable for attack class {str(cls)!r} under the {self.threat['name']} threat model: "
                    "every feature is functional, so no row of that class can be disguised"
                )
            directions = self.threat["directions"].get(str(cls), self.threat["default_directions"])
            mask[rows] = [c in modifiable for c in self.names]
            up[rows] = [directions.get(c) == "up" for c in self.names]
        return mask, up

    def _modifiable(self, cls: str) -> set[str]:
        if cls in self.threat["modifiable"]:
            return set(self.threat["modifiable"][cls])
        if self.threat["default"] is not None:
            return set(self.threat["default"])
        known = ", ".join(sorted(self.threat["modifiable"])) or "none"
        raise ModelError(
            f"the {self.threat['name']} threat model says nothing about attack class {cls!r} (it covers: {known}); "
            f"check the label column {self.label!r}"
        )

    # --- encoding ----------------------------------------------------------------------------------

    @staticmethod
    def _codes(plan: Mapping[str, Any], col: pd.Series) -> np.ndarray:
        if plan["kind"] == "flag":
            keys = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
            levels = {float(v): i for i, v in enumerate(plan["vocab"])}
            return np.array([levels.get(float(k), -1) for k in keys], dtype=np.int64)
        vocab = pd.Index([str(v) for v in plan["vocab"]])
        return vocab.get_indexer(col.astype(str).to_numpy(dtype=object)).astype(np.int64)

    def encode(self, df: pd.DataFrame) -> np.ndarray:
        """Rows (checked by :meth:`check_rows`) to encoded float32 ``[n, dim]``, as the attack encodes them."""
        out = np.zeros((len(df), self.dim), dtype=np.float32)
        for p in self.plans:
            start, _ = self.slots[p["name"]]
            col = df[p["name"]]
            if p["encoding"] == "onehot":
                codes = self._codes(p, col)
                hit = codes >= 0
                out[np.flatnonzero(hit), start + codes[hit]] = 1.0
            else:
                values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
                out[:, start] = quantile_encode(self.grids[p["name"]], p["decimals"], values)
        return out

    # --- after the graph ----------------------------------------------------------------------------

    def decoded(self, produced: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The graph's outputs as typed columns (``advgen_tabular.transform.frame_from_arrays``):
        integers, values rounded to their resolution, categories from their vocabulary."""
        cols: dict[str, np.ndarray] = {}
        for desc in self.outputs:
            values = produced[desc["name"]]
            vocabs = desc.get("vocabularies") or [None] * len(desc["columns"])
            dtypes = desc.get("dtypes") or [None] * len(desc["columns"])
            decimals = desc.get("decimals") or [None] * len(desc["columns"])
            for j, name in enumerate(desc["columns"]):
                if vocabs[j] is not None:
                    idx = np.asarray(values[:, j], dtype=np.int64)
                    vocab = np.asarray([str(v) for v in vocabs[j]], dtype=object)
                    if idx.size and (idx.min() < 0 or idx.max() >= len(vocab)):
                        raise ModelError(f"the graph gave column {name!r} a category index outside its vocabulary")
                    cols[name] = vocab[idx]
                    continue
                v = values[:, j].astype(np.float64)
                if dtypes[j] == "int64":
                    cols[name] = np.rint(v).astype(np.int64)
                elif decimals[j] is not None:
                    cols[name] = np.round(v, int(decimals[j]))
                else:
                    cols[name] = v
        return cols

    def realise(self, decoded: Mapping[str, np.ndarray], orig: pd.DataFrame, mask: np.ndarray, up: np.ndarray) -> pd.DataFrame:
        """The disguised rows: decoded modifiable cells on top of ``orig`` (which keeps every column it
        has), repaired, then every functional cell copied from ``orig``; the index is reset."""
        base = orig.reset_index(drop=True)
        cols = {c: base[c].to_numpy() for c in base.columns}
        for j, col in enumerate(self.names):
            m = mask[:, j]
            if m.any():
                cols[col] = _merged(cols[col], np.asarray(decoded[col]), m)
        out = pd.DataFrame(cols, columns=base.columns)
        out = self.repair(out, base, mask, up)
        restore_functional(out, base, mask, self.names)
        return out


def _merged(cur: np.ndarray, new: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``cur`` with ``new`` written where ``rows`` (boolean), in ``cur``'s dtype (integers rounded)."""
    cur = cur.copy()
    if cur.dtype == object or new.dtype == object or new.dtype.kind in "US":
        cur = cur.astype(object)
        cur[rows] = new[rows].astype(object)
    elif cur.dtype.kind in "iu":
        cur[rows] = np.rint(new[rows]).astype(cur.dtype) if new.dtype.kind == "f" else new[rows].astype(cur.dtype)
    else:
        cur[rows] = new[rows].astype(cur.dtype)
    return cur


def restore_functional(out: pd.DataFrame, orig: pd.DataFrame, mask: np.ndarray, names: Sequence[str]) -> None:
    """Copy every functional cell from ``orig`` (the last word: no repair may move them)."""
    whole = [col for j, col in enumerate(names) if not mask[:, j].any()]
    if whole:
        out[whole] = orig[whole]
    for j, col in enumerate(names):
        keep = ~mask[:, j]
        if keep.any() and not keep.all():
            cur = out[col].to_numpy(copy=True)
            src = orig[col].to_numpy()
            if cur.dtype != src.dtype:
                cur = cur.astype(object) if src.dtype == object else cur.astype(src.dtype)
            cur[keep] = src[keep]
            out[col] = cur
