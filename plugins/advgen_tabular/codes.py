"""Pairs of code columns kept at decoding: a forbidden combination becomes the given value's usual one.

A ``combo`` rule on two numeric code columns (:mod:`advgen_tabular.pairs`: a PE header's ``Magic`` 267
goes with ``SizeOfOptionalHeader`` 224, 523 with 240) is something a generator learns only roughly: it
draws each column from its own point masses, and a 1,500-step run on a PE-header table wrote a
forbidden pair in 15.6% of its rows, the table's most failed rule. The class is known, the columns'
values are exact, and the rule lists every combination it allows, so the decoder can keep it:

:func:`decoding_pairs` turns each such rule into ``{"given": G, "fix": F, "allowed": [[g, f], ...],
"partner": [[g, f], ...], "values": [g, ...]}``: ``F`` is the column of the two with fewer distinct values (``Magic``, read
off the header size), ``allowed`` the rule's combinations, ``partner`` each value of ``G`` with the
value of ``F`` the training rows pair it with most. The decoder
(:meth:`advgen_tabular.transform.TableDecoder._keep_pairs`) first writes ``G`` as the nearest value it
has a partner for (a point-mass column's "other" slot decodes between its values: ``Magic`` 395), then
``F`` as ``G``'s partner in a row whose pair the rule does not allow.
Each column is rewritten by one pair at most, after the pair that rewrites its given column, so every
kept pair holds; rules on a column computed later in decoding (relations, fractions), or whose columns
are both rewritten by other pairs, are left to the validators.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from advgen_tabular.pairs import MAX_CELLS
from advgen_tabular.rules import numbers

SEPARATOR = "\x1f"  # how row_keys joins the columns of a combination


def decoding_pairs(
    rules: list[dict[str, Any]], df: pd.DataFrame, numeric: set[str], exclude: set[str]
) -> list[dict[str, Any]]:
    """What the decoder keeps of the two-column ``combo`` rules on numeric columns (``numeric``: the
    names the decoder writes as numbers, flags included), from the training rows ``df``, in the order
    it applies them.

    Each column is rewritten by one kept pair at most (the one of the two with fewer distinct values,
    else the other), and a pair comes after the one that rewrites its given column, so every kept pair
    holds in the decoded rows; a rule whose columns are both rewritten already, or that closes a cycle,
    is left to the validators."""
    kept: list[dict[str, Any]] = []
    fixed: set[str] = set()
    for r in rules:
        cols = r.get("columns") if r.get("type") == "combo" else None
        if not cols or len(cols) != 2 or not set(cols) <= numeric or set(cols) & exclude:
            continue
        allowed = _parse(r.get("allowed", []))
        if allowed is None or not 0 < len(allowed) <= MAX_CELLS:
            continue
        values = [numbers(df, c) for c in cols]
        first = 1 if np.unique(values[1]).size <= np.unique(values[0]).size else 0
        choice = next((i for i in (first, 1 - first) if cols[i] not in fixed), None)
        if choice is None:
            continue
        fix, given = choice, 1 - choice
        fixed.add(cols[fix])
        pairs = pd.DataFrame({"g": values[given], "f": values[fix]}).dropna().value_counts().reset_index()
        # the most common partner of each given value, the smaller value on a tie
        pairs = pairs.sort_values(["g", "count", "f"], ascending=[True, False, True]).drop_duplicates("g")
        kept.append({
            "given": cols[given],
            "fix": cols[fix],
            "allowed": [[p[given], p[fix]] for p in allowed],
            "partner": [[float(a), float(b)] for a, b in zip(pairs["g"], pairs["f"])],
        })
    for p in kept:
        # the given values, so that a drawn value between two of them (a point-mass column's "other"
        # slot decodes along its quantile function: Magic 395 between 267 and 523) is first written as
        # the nearest; it has a partner then
        p["values"] = sorted({g for g, _ in p["partner"]})
    return _ordered(kept)


def _ordered(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``pairs`` with the one that rewrites a column before those given it (Kahn's order); the pairs
    of a cycle are dropped."""
    out: list[dict[str, Any]] = []
    left = list(pairs)
    while left:
        pending = {p["fix"] for p in left}
        ready = [p for p in left if p["given"] not in pending]
        if not ready:
            break
        out += ready
        left = [p for p in left if p not in ready]
    return out


def _parse(keys: Any) -> list[tuple[float, float]] | None:
    """A combo rule's keys (``"224.0\\x1f267.0"``) as pairs of numbers; None when one is not a pair of finite numbers."""
    out = []
    if not isinstance(keys, list):
        return None
    for key in keys:
        parts = key.split(SEPARATOR) if isinstance(key, str) else []
        try:
            pair = tuple(float(p) for p in parts)
        except ValueError:
            return None
        if len(pair) != 2 or not all(math.isfinite(v) for v in pair):
            return None
        out.append(pair)
    return out
