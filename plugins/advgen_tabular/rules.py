"""What each rule of :func:`advgen_tabular.validators.fit_rules` means, as a check on rows.

A rule is data (a dict with a ``type``: ``range``, ``vocab``, ``combo``, ``order``, ``zero``,
``fraction``, ``derived`` or ``multiple``); :func:`rule_check` turns one into a function from a
DataFrame to a boolean per row.
The validators judge generated rows with these checks, and the repair of disguised rows
(:class:`advgen.adversarial.constraints.Repair`) reads the same rules, in ``advgen evade`` and in the
torch-free runtime alike.

NumPy and pandas only: ``advgen-runtime`` imports this module where neither torch nor scipy is
installed.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from advgen.errors import InvalidDataError

def fraction_ok(rate: np.ndarray, count: np.ndarray, decimals: int) -> np.ndarray:
    """``rate`` equals ``k / count`` rounded to ``decimals`` for an integer ``0 <= k <= count``
    (and is 0 where the count is 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(count > 0, count, 1.0)
        k = np.clip(np.round(rate * c), 0, c)
        half = 0.5 * 10.0 ** (-decimals) + 1e-6
        ok = np.zeros(rate.shape, dtype=bool)
        for dk in (-1.0, 0.0, 1.0):
            ok |= np.abs(np.clip(k + dk, 0, c) / c - rate) <= half
    return np.where(count > 0, ok, rate == 0)


def positive_ok(v: np.ndarray, min_positive: float) -> np.ndarray:
    """Whether each value is 0 or below, or at least ``min_positive`` (a range rule's smallest value
    above 0 in real rows; float noise allowed)."""
    return (v <= 0) | (v >= min_positive * (1.0 - 1e-9))


def multiple_ok(a: np.ndarray, d: np.ndarray | float) -> np.ndarray:
    """Whether each ``a`` is an integer multiple of its divisor ``d`` (a remainder within a millionth of
    the divisor: float noise, never a whole unit); rows whose divisor is not above 0 (or not a number)
    pass: the rule says nothing of them."""
    d = np.broadcast_to(np.asarray(d, dtype=np.float64), np.shape(a))
    usable = np.isfinite(d) & (d > 0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        safe = np.where(usable, d, 1.0)
        ok = np.abs(a - np.round(a / safe) * safe) <= 1e-6 * safe
    return np.where(usable, ok & np.isfinite(a), True)


def multiple_divisor(values: Mapping[str, np.ndarray], rule: dict[str, Any]) -> np.ndarray | float:
    """A ``multiple`` rule's divisor: the column ``of`` names, or its constant ``step``."""
    return values[rule["of"]] if rule.get("of") is not None else float(rule["step"])


def derived_values(values: Mapping[str, np.ndarray], rule: dict[str, Any]) -> np.ndarray:
    """What a ``derived`` rule computes its target to be from its inputs' ``values``:
    ``k * sum(num) / sum(den)`` (``den`` empty: ``k * sum(num)``), NaN where the denominator is 0:
    data sets write 0, a sentinel or anything there, so the relation says nothing of those rows."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        num = sum(values[c] for c in rule["num"])
        if not rule["den"]:
            return rule["k"] * num
        den = sum(values[c] for c in rule["den"])
        return np.where(den != 0, rule["k"] * num / np.where(den != 0, den, 1.0), np.nan)


def derived_ok(values: Mapping[str, np.ndarray], rule: dict[str, Any]) -> np.ndarray:
    """Whether each row's target lies within one unit of its resolution (rounded or truncated
    alike) plus float noise of what its inputs compute; rows where that is undefined pass."""
    want = derived_values(values, rule)
    decimals = rule.get("decimals")
    unit = 10.0 ** (-decimals) if decimals is not None else 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        close = np.abs(values[rule["target"]] - want) <= unit + 1e-5 * np.abs(want) + 1e-9
    return close | np.isnan(want)


def derived_check(rule: dict[str, Any]) -> Callable[[pd.DataFrame], np.ndarray]:
    """The check of a ``derived`` rule (``target = k * N / D``, see :mod:`advgen_tabular.relations`)."""

    def check(df: pd.DataFrame) -> np.ndarray:
        return derived_ok({c: numbers(df, c) for c in rule_columns(rule)}, rule)

    return check


def rule_columns(rule: dict[str, Any]) -> list[str]:
    """The columns a rule reads."""
    t = rule["type"]
    if t in ("range", "vocab"):
        return [rule["column"]]
    if t == "combo":
        return list(rule["columns"])
    if t in ("order", "zero"):
        return [rule["a"], rule["b"]]
    if t == "fraction":
        return [rule["rate"], rule["count"]]
    if t == "derived":
        return [rule["target"], *rule["num"], *rule["den"]]
    if t == "multiple":
        return [rule["a"]] + ([rule["of"]] if rule.get("of") is not None else [])
    return []


def column(df: pd.DataFrame, name: str) -> pd.Series:
    if name not in df.columns:
        raise InvalidDataError(f"samples have no column {name!r}")
    return df[name]


def numbers(df: pd.DataFrame, name: str) -> np.ndarray:
    """A column as float64, NaN where a cell is not a number."""
    return pd.to_numeric(column(df, name), errors="coerce").to_numpy(dtype=np.float64)


def row_keys(df: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """One string key per row for a tuple of columns (numbers written canonically), as ``combo``
    rules store them."""
    parts = []
    for c in columns:
        s = column(df, c)
        if pd.api.types.is_numeric_dtype(s):
            v = s.to_numpy(dtype=np.float64)
            parts.append(np.array([repr(float(x)) for x in v], dtype=object))
        else:
            parts.append(s.astype(str).to_numpy(dtype=object))
    out = parts[0]
    for p in parts[1:]:
        out = out + "\x1f" + p
    return out


def rule_check(rule: dict[str, Any]) -> Callable[[pd.DataFrame], np.ndarray]:
    """The check of one rule: rows in, a boolean per row (True where the row passes) out."""
    t = rule["type"]
    if t == "range":

        def check(df: pd.DataFrame) -> np.ndarray:
            v = numbers(df, rule["column"])
            ok = np.isfinite(v) & (v >= rule["min"]) & (v <= rule["max"])
            if rule.get("integer"):
                ok &= np.isclose(v, np.round(v), rtol=0, atol=1e-9)
            elif rule.get("decimals") is not None:
                s = v * 10.0 ** rule["decimals"]
                ok &= np.abs(s - np.round(s)) <= 1e-6 * np.maximum(1.0, np.abs(s))
            if rule.get("min_positive") is not None:
                ok &= positive_ok(v, float(rule["min_positive"]))
            return ok

    elif t == "vocab":
        allowed = {str(v) for v in rule["values"]}
        numeric = rule.get("numeric", False)

        def check(df: pd.DataFrame) -> np.ndarray:
            if numeric:
                vals = {float(v) for v in rule["values"]}
                return np.isin(numbers(df, rule["column"]), list(vals))
            return column(df, rule["column"]).astype(str).isin(allowed).to_numpy()

    elif t == "combo":
        allowed_keys = set(rule["allowed"])

        def check(df: pd.DataFrame) -> np.ndarray:
            return pd.Series(row_keys(df, rule["columns"])).isin(allowed_keys).to_numpy()

    elif t == "order":

        def check(df: pd.DataFrame) -> np.ndarray:
            return numbers(df, rule["a"]) <= numbers(df, rule["b"]) + 1e-9

    elif t == "zero":

        def check(df: pd.DataFrame) -> np.ndarray:
            return (numbers(df, rule["a"]) != 0) | (numbers(df, rule["b"]) == 0)

    elif t == "fraction":

        def check(df: pd.DataFrame) -> np.ndarray:
            return fraction_ok(numbers(df, rule["rate"]), numbers(df, rule["count"]), rule["decimals"])

    elif t == "derived":
        return derived_check(rule)
    elif t == "multiple":

        def check(df: pd.DataFrame) -> np.ndarray:
            values = {c: numbers(df, c) for c in rule_columns(rule)}
            return multiple_ok(values[rule["a"]], multiple_divisor(values, rule))

    else:
        raise InvalidDataError(f"unknown rule type {t!r} in the run's spec")
    return check
