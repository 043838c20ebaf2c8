"""Pairs of discrete columns whose real rows never show some combinations: ``combo`` rules on two columns.

The joint-categorical rule (:mod:`advgen_tabular.validators`) covers the text categoricals together. A
0/1 flag determined by a categorical (ClaMP's ``packer == 1`` exactly when ``packer_type != "NoPacker"``)
or two integer codes that go together (a PE header's ``Magic`` 267 with ``SizeOfOptionalHeader`` 224,
523 with 240) are numeric columns to the rest of the plugin, so no combination rule saw them: a generator
that drew each column well and the pair independently passed every rule.

Here the columns that take part are the flags, the categoricals and the *codes*: integer numeric columns
with at most ``MAX_CODES`` distinct values. For each pair the table of value counts is built once
(integer codes and ``np.bincount``, no strings per row) and a cell the rows leave empty is *forbidden*
when the columns, were they independent, would leave it empty with probability at most ``ALPHA``
(hypergeometric, from the two values' counts): ``packer = 0`` with a packer seen in 30 rows, where 85%
of all rows have ``packer = 0``, is no accident; a rare value's missing partner is. A pair becomes a rule
when rows whose columns are shuffled independently would land in a forbidden cell clearly often (the
forbidden cells hold at least ``1 - max_shuffled`` of the independent mass, as every validator rule must
fail shuffled rows); the rule allows every combination of the values seen except the forbidden ones, so
a held-out row with two rare values that never met in training still passes. Real rows pass it by
construction (every cell they fill is allowed); a value never seen in training fails it.

Bounded: a pair's table has at most ``MAX_CELLS`` cells, each column takes part in at most
``MAX_PER_COLUMN`` pair rules and there are at most ``MAX_PAIRS``, those whose forbidden cells hold the
most independent mass first. Pairs of two flags are left to the zero rules (``a == 0 => b == 0``), pairs
of two categoricals to the joint-categorical rule when it is kept.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import gammaln

from advgen_tabular.rules import row_keys

NUMERIC_KINDS = ("continuous", "count", "rate")
MAX_CODES = 16  # an integer numeric column with at most this many distinct values is a code
MAX_CELLS = 1024  # the most value combinations a pair may have to be screened
ALPHA = 1e-6  # an empty cell is forbidden when independent columns would leave it empty this rarely
MAX_PER_COLUMN = 2
MAX_PAIRS = 32
UNSEEN = 0.0005  # the most rows of a code column that may hold a value no other row has
SCREEN_ROWS = 8192  # a pair of a larger table is first counted on every k-th row, this many


class _Column:
    """A discrete column as integer codes, with the key of each code as ``combo`` rules write it."""

    def __init__(self, name: str, kind: str, codes: np.ndarray, keys: list[str]):
        self.name, self.kind, self.codes, self.keys = name, kind, codes, keys
        self.size = len(keys)
        self.few = codes


def _discrete(df: pd.DataFrame, name: str, kind: str, unseen: float) -> _Column | None:
    s = df[name]
    if kind == "categorical":
        codes, uniques = pd.factorize(s.astype(str), sort=True)
    elif kind == "flag" or kind in NUMERIC_KINDS:
        v = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64)
        # -0.0 and 0.0 are one value to factorize but two keys to the check: such a column stays out
        if not np.all(np.isfinite(v)) or np.any((v == 0) & np.signbit(v)) or not pd.api.types.is_numeric_dtype(s):
            return None
        if kind in NUMERIC_KINDS and not np.all(v == np.round(v)):
            return None
        codes, uniques = pd.factorize(v, sort=True)
        if kind in NUMERIC_KINDS:
            if len(uniques) > MAX_CODES:
                return None
            # a code's range rule lets a fresh row hold a value training never had, the pair rule does
            # not: only a closed set of values takes part, where such a row is rare (Good-Turing: as rare
            # as the rows whose value no other row has)
            if np.sum(np.bincount(codes) == 1) > unseen * len(codes):
                return None
    else:
        return None
    if len(uniques) < 2:
        return None
    codes = codes.astype(np.int32)  # pairs have at most MAX_CELLS cells: int32 products, half the traffic
    first = np.empty(len(uniques), dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)  # the last write wins: each value's first row
    keys = [str(k) for k in row_keys(df.iloc[first], [name])]
    return _Column(name, kind, codes, keys)


def fit_pairs(
    df: pd.DataFrame,
    columns: list[tuple[str, str]],
    *,
    max_shuffled: float,
    categorical_pairs: bool = True,
) -> list[dict[str, Any]]:
    """``combo`` rules on pairs of discrete columns (see the module's docstring), each with its
    ``real_pass`` (1.0: real rows fill only allowed cells). ``categorical_pairs``: whether pairs of
    two categoricals are screened (not when the joint-categorical rule already holds them all)."""
    n = len(df)
    if n == 0:
        return []
    cols = [c for c in (_discrete(df, name, kind, UNSEEN) for name, kind in columns) if c is not None]
    stride = n // SCREEN_ROWS
    for col in cols:
        col.few = col.codes[:: max(stride, 1)]
    found = []
    for a, b in itertools.combinations(cols, 2):
        if a.kind == b.kind == "flag" or (a.kind == b.kind == "categorical" and not categorical_pairs):
            continue
        if a.size * b.size > MAX_CELLS:
            continue
        if stride > 1 and np.bincount(a.few * np.int32(b.size) + b.few, minlength=a.size * b.size).all():
            continue  # every combination occurs in a sample of the rows: none is forbidden
        table = np.bincount(a.codes * np.int32(b.size) + b.codes, minlength=a.size * b.size).reshape(a.size, b.size)
        empty = table == 0
        if not empty.any():
            continue
        r = table.sum(axis=1).astype(np.float64)[:, None]
        c = table.sum(axis=0).astype(np.float64)[None, :]
        ri, cj = np.broadcast_to(r, table.shape)[empty], np.broadcast_to(c, table.shape)[empty]
        # P(cell = 0) for independent columns with these counts: C(n - c, r) / C(n, r)
        log_p0 = gammaln(n - cj + 1) - gammaln(n - cj - ri + 1) + gammaln(n - ri + 1) - gammaln(n + 1)
        forbidden = np.zeros_like(empty)
        forbidden[empty] = log_p0 <= np.log(ALPHA)
        mass = float((r * c)[forbidden].sum()) / (n * n)
        if mass < 1.0 - max_shuffled:
            continue
        allowed = [
            f"{ka}\x1f{kb}" for i, ka in enumerate(a.keys) for j, kb in enumerate(b.keys) if not forbidden[i, j]
        ]
        found.append((mass, a.name, b.name, allowed))
    found.sort(key=lambda f: -f[0])
    rules: list[dict[str, Any]] = []
    uses: dict[str, int] = {}
    for mass, a, b, allowed in found:
        if len(rules) >= MAX_PAIRS:
            break
        if uses.get(a, 0) >= MAX_PER_COLUMN or uses.get(b, 0) >= MAX_PER_COLUMN:
            continue
        uses[a] = uses.get(a, 0) + 1
        uses[b] = uses.get(b, 0) + 1
        rules.append({"type": "combo", "columns": [a, b], "allowed": sorted(allowed), "real_pass": 1.0})
    return rules
