"""Point masses of numeric columns: the values a generator should pick like a category.

Traffic features pile up on a few exact values: within NSL-KDD's probe rows ``src_bytes`` is 0, 1 or 8
in 91% of them (39/21/31%). The quantile encoding maps each such value to an interval of the
standard-normal code, as wide as the value's share of the *whole* column; a value common within one
label and rare overall gets a sliver, and a smooth generator does not put 21% of a label's rows on a
sliver (it gave 5% in the run diagnosed in docs/tabular.md). So a column's point masses also get a
one-hot group, ``[other, v_1, ..., v_k]``, beside its quantile code: the generator draws the value from
a softmax as it draws a category (CTGAN's mode-specific normalisation, with exact values as the modes),
and the quantile code, fitted on the other values alone, decodes only the rows whose draw is
``other`` (a point mass's row carries noise there), so any code decodes to a value that is not a point
mass and the generator need not tie its code to its draw.

A value is a point mass when it holds at least ``share`` of the rows of the whole column or of one
label (``groups``) with at least ``MIN_GROUP_ROWS`` rows, and at least ``MIN_ROWS`` rows of that label;
each column keeps its ``limit`` values of the largest share. Nothing here knows any data set.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# a label needs this many rows for its own shares to count ...
MIN_GROUP_ROWS = 30
# ... and a value this many rows within it (or within the whole column)
MIN_ROWS = 10
# default share of the rows that makes a value a point mass
SHARE = 0.05


def find_point_masses(
    values: np.ndarray, groups: np.ndarray | None, *, limit: int, share: float = SHARE
) -> list[float]:
    """The point masses of one numeric column (finite float64 ``values``), sorted ascending; at most
    ``limit`` of them, those of largest share (in the column or in any one group) first."""
    if limit <= 0 or values.size == 0 or values.min() == values.max():
        return []  # nothing to choose from a constant column
    best: dict[float, float] = {}
    _collect(values, share, best)
    if groups is not None:
        codes, _ = pd.factorize(pd.Series(groups), sort=True)
        sizes = np.bincount(codes[codes >= 0]) if codes.size else np.zeros(0, dtype=np.int64)
        order = np.argsort(codes, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        for g, n in enumerate(sizes):
            if n >= MIN_GROUP_ROWS:
                _collect(values[order[bounds[g] : bounds[g + 1]]], share, best)
    ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    return sorted(v for v, _ in ranked)


def _collect(values: np.ndarray, share: float, best: dict[float, float]) -> None:
    """Values holding ``share`` of ``values`` (and ``MIN_ROWS`` rows): their largest share so far."""
    n = values.size
    if n == 0:
        return
    uniq, counts = np.unique(values, return_counts=True)
    need = max(MIN_ROWS, int(np.ceil(share * n)))
    for v, c in zip(uniq[counts >= need].tolist(), counts[counts >= need].tolist()):
        s = c / n
        if s > best.get(v, 0.0):
            best[float(v)] = s


def mode_codes(values: np.ndarray, spikes: list[float]) -> np.ndarray:
    """Each value's slot in the group ``[other, spikes...]``: ``1 + i`` for ``spikes[i]``, 0 otherwise."""
    table = np.asarray(spikes, dtype=np.float64)
    idx = np.searchsorted(table, values).clip(0, max(len(spikes) - 1, 0))
    hit = table[idx] == values if len(spikes) else np.zeros(values.shape, dtype=bool)
    return np.where(hit, idx + 1, 0).astype(np.int64)
