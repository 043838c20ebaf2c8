"""Integer columns whose values are multiples: of a constant step, or of another column's value.

PE headers are full of them: ``SizeOfHeaders`` and ``SizeOfRawData`` are multiples of the file
alignment (512), ``SizeOfImage`` a multiple of ``SectionAlignment`` (4,096 in most files, 512 or
65,536 in others). A generator that draws each value from its column's quantile function writes
``SizeOfImage = 1,234,567`` (real rows: 99.4% pass ``SizeOfImage % SectionAlignment == 0``; a 1,500-step
run's rows 62%), which no loader accepts and any detector can see.

:func:`fit_multiples` finds both kinds from the data, for every data set alike, and returns them as
``multiple`` rules (:mod:`advgen_tabular.rules`): ``{"type": "multiple", "a": A, "step": g}`` or
``{"type": "multiple", "a": A, "of": B}``. The validators judge rows with them, the repair of disguised
rows snaps to them, and the decoder (:class:`advgen_tabular.transform.TableDecoder`) writes ``a`` as
the multiple nearest to its drawn value, within ``a``'s range.

A step ``g`` (powers of two up to 2**20, powers of ten up to 10**6; the largest that holds) is kept when
at least ``min_pass`` of the real rows are multiples of it and the column has enough distinct non-zero
values that chance would not explain it (``g ** -distinct <= 2 ** -30``). A column ``b`` is a divisor
candidate when it looks like an alignment: a few distinct values (at most 64), at least 2 in half the
rows; ``a % b == 0`` is kept when the real rows pass it and rows with ``a`` shuffled against ``b`` clearly
do not (at most ``max_shuffled``), so a divisor that merely divides ``a``'s own step never counts. Each
column keeps its most telling divisor (the one the shuffled rows fail most).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from advgen_tabular.rules import multiple_ok

STEPS = tuple(sorted({2**k for k in range(1, 21)} | {10**k for k in range(1, 7)}))
MIN_VALUES = 8  # distinct non-zero values a column needs before its multiples say anything
CHANCE_BITS = 30  # ... and enough that g ** -distinct <= 2 ** -30
MAX_DIVISOR_VALUES = 64
MIN_DIVISOR_SHARE = 0.5
KINDS = ("count", "continuous")


def fit_multiples(
    values: dict[str, np.ndarray],
    shuffled: dict[str, np.ndarray],
    kinds: dict[str, str],
    *,
    min_pass: float,
    max_shuffled: float,
) -> list[dict[str, Any]]:
    """``multiple`` rules of the real rows' ``values`` (column name to float64 values); ``shuffled``
    holds the same columns, each permuted on its own."""
    ints = [c for c, v in values.items() if kinds.get(c) in KINDS and _integral(v)]
    rules: list[dict[str, Any]] = []
    subjects = []
    for a in ints:
        v = values[a]
        distinct = np.unique(v[v != 0]).size
        if distinct < MIN_VALUES:
            continue
        subjects.append(a)
        for g in reversed(STEPS):
            if distinct * math.log2(g) < CHANCE_BITS:
                break  # smaller steps need even more values
            if np.mean(multiple_ok(v, g)) >= min_pass:
                rules.append({"type": "multiple", "a": a, "step": float(g)})
                break
    divisors = [b for b in ints if _divisor_like(values[b])]
    for a in subjects:
        best: tuple[float, str] | None = None
        for b in divisors:
            if b == a or np.mean(multiple_ok(values[a], values[b])) < min_pass:
                continue
            chance = float(np.mean(multiple_ok(shuffled[a], shuffled[b])))
            if chance <= max_shuffled and (best is None or chance < best[0]):
                best = (chance, b)
        if best is not None:
            rules.append({"type": "multiple", "a": a, "of": best[1]})
    return rules


def _integral(v: np.ndarray) -> bool:
    finite = v[np.isfinite(v)]
    return finite.size > 0 and bool(np.all(finite == np.round(finite))) and float(np.abs(finite).max()) < 2.0**53


def _divisor_like(v: np.ndarray) -> bool:
    return 2 <= np.unique(v).size <= MAX_DIVISOR_VALUES and float(np.mean(v >= 2)) >= MIN_DIVISOR_SHARE


def decoding_order(
    rules: list[dict[str, Any]], exclude: set[str], values: Mapping[str, np.ndarray] | None = None
) -> list[dict[str, Any]]:
    """The ``multiple`` rules the decoder applies, in order: steps first, then each column's divisor
    rule, a column that is some other column's divisor before that column. Rules touching a column in
    ``exclude`` (computed later in decoding, which would undo the snap) are left to the validators.

    With the real rows' ``values``, a divisor rule also carries its divisor column's distinct values
    (``"values"``, at most :data:`MAX_DIVISOR_VALUES`), and the decoder writes the divisor as the
    nearest of them: a generator's draw between two alignments (11,540 between 4,096 and 65,536, from
    the quantile decode of a point-mass column's "other" slot) is no alignment any file has, and no
    ``a`` could be snapped to a multiple of it and still keep ``a``'s own step."""
    kept = [
        {k: v for k, v in r.items() if k != "real_pass"}
        for r in rules
        if r["type"] == "multiple" and r["a"] not in exclude and r.get("of") not in exclude
    ]
    if values is not None:
        for r in kept:
            seen = np.unique(np.asarray(values[r["of"]], dtype=np.float64)) if r.get("of") is not None else None
            if seen is not None:
                seen = seen[np.isfinite(seen)]
                if 0 < seen.size <= MAX_DIVISOR_VALUES:
                    r["values"] = [float(v) for v in seen]
    divisors = {r["of"] for r in kept if r.get("of") is not None}
    return sorted(kept, key=lambda r: (r.get("of") is not None, r["a"] not in divisors))
