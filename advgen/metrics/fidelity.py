"""Per-column fidelity of tables: does each synthetic column follow the real column's distribution?

- :func:`ks_complement`: per numeric column, 1 - Kolmogorov-Smirnov statistic; higher is better, 1.0 ideal;
- :func:`tv_complement`: per categorical column, 1 - total-variation distance of category frequencies;
  higher is better, 1.0 ideal;
- :func:`table_fidelity`: both, and the correlation difference of the numeric columns (lower is better,
  0 ideal), over the feature columns only; the label's class balance (1 - TV of the class frequencies)
  is reported on its own, since a class-conditional generator matches it by construction.

A table with no categorical feature has no TV complement (mean NaN, null in JSON, "n/a" in the report),
and one with no numeric feature no KS complement: never a perfect score for something not measured.

Tables are pandas DataFrames plus the ``[{"name", "kind", "role"}]`` column list a tabular spec carries;
:func:`check_columns` turns a missing column into one clear error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from advgen.errors import InvalidDataError
from advgen.metrics.realism import correlation_difference

NUMERIC_KINDS = frozenset({"continuous", "count", "rate", "flag"})
CATEGORICAL_KINDS = frozenset({"categorical"})


def _split_columns(columns: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """The numeric and categorical feature columns: the label (and ignored columns) are not features."""
    features = [c for c in columns if c.get("role", "feature") == "feature"]
    numeric = [c["name"] for c in features if c.get("kind") in NUMERIC_KINDS]
    categorical = [c["name"] for c in features if c.get("kind") in CATEGORICAL_KINDS]
    return numeric, categorical


def check_columns(real: pd.DataFrame, synth: pd.DataFrame, columns: Sequence[Mapping[str, Any]], what: str = "synthetic") -> None:
    """Raise one clear line when ``synth`` lacks columns the schema (and the real data) has."""
    names = [c["name"] for c in columns]
    for frame, label in ((real, "real"), (synth, what)):
        missing = [n for n in names if n not in frame.columns]
        if missing:
            shown = ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
            raise InvalidDataError(f"{label} data lacks {len(missing)} column(s) of the schema: {shown}")


def numeric_values(series: pd.Series) -> np.ndarray:
    """The finite numbers of a column (text, missing and infinite values dropped)."""
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
    return values[np.isfinite(values)]


def ks_complement(real: pd.DataFrame, synth: pd.DataFrame, numeric: Sequence[str]) -> dict[str, Any]:
    """Per numeric column ``1 - KS(real, synthetic)``; higher is better, 1.0 ideal (same distribution).

    Non-numeric or missing synthetic values are dropped before the test (and cost nothing here: the
    validators count them); a column with no synthetic value left scores 0.
    """
    from scipy.stats import ks_2samp

    per: dict[str, float] = {}
    for name in numeric:
        r, s = numeric_values(real[name]), numeric_values(synth[name])
        per[name] = 0.0 if len(s) == 0 or len(r) == 0 else float(1.0 - ks_2samp(r, s, method="asymp").statistic)
    return {"mean": float(np.mean(list(per.values()))) if per else float("nan"), "per_column": per}


def tv_complement(real: pd.DataFrame, synth: pd.DataFrame, categorical: Sequence[str]) -> dict[str, Any]:
    """Per categorical column ``1 - TV(real, synthetic)`` of category frequencies; higher is better, 1.0 ideal."""
    per: dict[str, float] = {}
    for name in categorical:
        p = real[name].astype(str).value_counts(normalize=True)
        q = synth[name].astype(str).value_counts(normalize=True)
        keys = p.index.union(q.index)
        tv = 0.5 * float(np.abs(p.reindex(keys, fill_value=0.0) - q.reindex(keys, fill_value=0.0)).sum())
        per[name] = 1.0 - tv
    return {"mean": float(np.mean(list(per.values()))) if per else float("nan"), "per_column": per}


def table_fidelity(real: pd.DataFrame, synth: pd.DataFrame, columns: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """KS complement over numeric features, TV complement over categorical features, correlation difference
    of the numeric features; and ``class_balance``, the TV complement of the label's class frequencies
    (``{"column", "tv_complement"}``, absent without a label column), kept apart from the features' figures.

    With no categorical feature the TV complement's mean is NaN and ``per_column`` empty (likewise the KS
    complement with no numeric feature); fewer than two numeric features leave the correlation NaN."""
    check_columns(real, synth, columns)
    numeric, categorical = _split_columns(columns)
    out: dict[str, Any] = {
        "ks_complement": ks_complement(real, synth, numeric),
        "tv_complement": tv_complement(real, synth, categorical),
    }
    label = next((c["name"] for c in columns if c.get("role") == "label"), None)
    if label is not None:
        out["class_balance"] = {"column": label, "tv_complement": tv_complement(real, synth, [label])["mean"]}
    if len(numeric) >= 2:
        r = real[numeric].apply(pd.to_numeric, errors="coerce").fillna(0.0).to_numpy(np.float64)
        s = synth[numeric].apply(pd.to_numeric, errors="coerce").fillna(0.0).to_numpy(np.float64)
        out["correlation_difference"] = correlation_difference(r, s)
    else:
        out["correlation_difference"] = float("nan")
    return out
