"""Evasion metrics: how well disguised rows slip past a detector, and what the disguise cost.

Each metric is a plain function of the original attack rows, the disguised rows and a detector (or the
rules), documented with its direction; ``METRICS`` holds the same facts for the report, the terminal
table, docs/adversarial.md and docs/metrics.md. :func:`attack_metrics` gathers them for one attack.

- detection rate (DR): share of rows the detector calls attack, before and after the disguise;
- evasion increase rate EIR = 1 - DR_adv / DR_orig (IDSGAN's measure), undefined where DR_orig = 0;
- functional changes: functional cells whose value differs in any bit, counted on every row (must be 0);
- validity: share of disguised rows passing every rule fitted on real traffic (the original rows' own
  share beside it);
- L0 / L2: cells changed per row, and the Euclidean size of the change in the attack's encoded space
  (numerics as standard-normal quantiles, so a column's scale does not matter; a changed category counts
  sqrt(2));
- atypical cells: changed cells whose value lies outside the middle 99% of real traffic's values in
  their column (or, for categories, is one real traffic never takes): rows that evade by being unlike
  any traffic the detector saw rather than by looking normal;
- transfer: DR and EIR of the same rows under other detectors trained on the same data;
- realism AUC: can a classifier tell disguised rows from the real attack rows (or from real normal
  traffic)? 0.5: no; 1.0: always.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from advgen.metrics.info import MetricInfo

METRICS: dict[str, MetricInfo] = {
    "detection_rate": MetricInfo(
        "Detection rate", "lower (after the attack)", "0 after the attack",
        "Share of attack rows the detector calls attack; before (original rows) and after (disguised rows).",
    ),
    "eir": MetricInfo(
        "Evasion increase rate", "higher", "1.0",
        "1 - DR_adv / DR_orig: the share of the detections the disguise removes. Undefined (null) when the "
        "detector misses every original row (DR_orig = 0). Can be negative if the disguise is detected more.",
    ),
    "functional_changes": MetricInfo(
        "Functional-feature changes", "must be 0", "0",
        "Functional cells (those the threat model freezes) whose value differs in any bit from the original "
        "row, counted on every row, not a sample.",
    ),
    "validity": MetricInfo(
        "Validator pass rate", "higher", "the original rows' own rate (1.0 for rules fitted on them)",
        "Share of disguised rows passing every rule (types, ranges, vocabularies, combinations, orderings, "
        "zero implications, fractions) fitted on real traffic: the detector's training data and the attack rows.",
    ),
    "l0": MetricInfo("L0 of the change", "lower", "0", "Mean number of cells changed per row."),
    "l2": MetricInfo(
        "L2 of the change", "lower", "0",
        "Mean Euclidean distance between original and disguised rows in the attack's encoded space "
        "(numerics as standard-normal quantiles of real traffic, categories one-hot).",
    ),
    "queries": MetricInfo("Queries", "lower", "0", "Rows the attack asked the black box about, in all."),
    "atypical": MetricInfo(
        "Atypical changed cells", "lower", "0",
        "Share of the changed cells whose new value lies outside the middle 99% (0.5th to 99.5th percentile) "
        "of real traffic's values in that column, or is a category real traffic never takes. Validity accepts "
        "anything within the real minimum and maximum; this says how much of the disguise sits in the tails.",
    ),
    "transfer": MetricInfo(
        "Transfer", "higher EIR", "1.0",
        "DR and EIR of the disguised rows under other detectors trained on the same data (the attack never "
        "queried them).",
    ),
    "realism_auc": MetricInfo(
        "Realism AUC", "lower", "0.5",
        "Cross-validated ROC AUC of gradient boosting told to separate disguised rows from the real attack "
        "rows (vs_attacks) and from real normal rows (vs_normal), on advgen's detector features.",
    ),
}


def detection_rate(predict: Callable[[pd.DataFrame], np.ndarray], rows: pd.DataFrame) -> float:
    if len(rows) == 0:
        return float("nan")
    return float(np.mean(np.asarray(predict(rows)) != 0))


def eir(dr_orig: float, dr_adv: float) -> float | None:
    """1 - DR_adv / DR_orig; None when DR_orig is 0 (nothing to evade)."""
    if not np.isfinite(dr_orig) or dr_orig <= 0:
        return None
    return float(1.0 - dr_adv / dr_orig)


def _differs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per element: differs in any bit (floats compared as their bytes, text as text)."""
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    if a.dtype.kind == "f" and b.dtype.kind == "f" and a.dtype == b.dtype:
        bytes_a = a.view(np.uint8).reshape(len(a), -1)
        bytes_b = b.view(np.uint8).reshape(len(b), -1)
        return (bytes_a != bytes_b).any(axis=1)
    if a.dtype.kind in "iub" and b.dtype.kind in "iub":
        return a != b
    if a.dtype != b.dtype and (a.dtype.kind in "fiub") and (b.dtype.kind in "fiub"):
        return np.ones(len(a), dtype=bool)  # a changed type is a change
    return np.asarray([str(x) != str(y) or type(x) is not type(y) for x, y in zip(a, b)], dtype=bool)


def functional_changes(orig: pd.DataFrame, adv: pd.DataFrame, mask: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """Functional cells that differ from the original in any bit, over every row."""
    if len(orig) != len(adv):
        raise ValueError("original and disguised rows differ in number")
    cells = 0
    rows = np.zeros(len(orig), dtype=bool)
    per_column: dict[str, int] = {}
    for j, col in enumerate(names):
        keep = ~mask[:, j]
        if not keep.any():
            continue
        a = orig[col].to_numpy()[keep]
        b = adv[col].to_numpy()[keep]
        d = _differs(a, b)
        if d.any():
            per_column[col] = int(d.sum())
            cells += int(d.sum())
            rows[np.flatnonzero(keep)[d]] = True
    return {"cells": cells, "rows": int(rows.sum()), "checked_rows": int(len(orig)), "per_column": per_column}


def validity(check: Callable[[pd.DataFrame], np.ndarray], orig: pd.DataFrame, adv: pd.DataFrame) -> dict[str, float]:
    return {"adversarial": float(np.mean(check(adv))), "original": float(np.mean(check(orig)))}


ATYPICAL_TAIL = 0.005  # each side: values beyond the 0.5th and 99.5th percentiles of real traffic


def atypical(reference: pd.DataFrame, orig: pd.DataFrame, adv: pd.DataFrame, names: Sequence[str],
             tail: float = ATYPICAL_TAIL) -> dict[str, Any]:
    """Changed cells whose new value real traffic (``reference``) rarely or never takes: numerics outside
    its ``[tail, 1 - tail]`` quantiles, other values absent from it. ``share`` of the changed cells (None
    when nothing changed), counts, and the columns with most such cells."""
    changed_cells = atypical_cells = 0
    per_column: dict[str, int] = {}
    for col in names:
        a, b = orig[col].to_numpy(), adv[col].to_numpy()
        moved = _differs(a, b)
        if not moved.any():
            continue
        new = b[moved]
        ref = reference[col]
        if pd.api.types.is_numeric_dtype(ref) and not pd.api.types.is_bool_dtype(ref):
            values = pd.to_numeric(ref, errors="coerce").to_numpy(dtype=np.float64)
            values = values[np.isfinite(values)]
            if values.size == 0:
                continue
            lo, hi = np.quantile(values, [tail, 1.0 - tail])
            x = pd.to_numeric(pd.Series(new), errors="coerce").to_numpy(dtype=np.float64)
            odd = ~((x >= lo) & (x <= hi))
        else:
            odd = ~pd.Series(new).astype(str).isin(set(ref.dropna().astype(str))).to_numpy()
        changed_cells += int(moved.sum())
        if odd.any():
            per_column[col] = int(odd.sum())
            atypical_cells += int(odd.sum())
    top = dict(sorted(per_column.items(), key=lambda kv: -kv[1])[:5])
    return {"share": atypical_cells / changed_cells if changed_cells else None, "cells": atypical_cells,
            "changed_cells": changed_cells, "columns": top}


def perturbation_size(encode: Callable[[pd.DataFrame], np.ndarray], orig: pd.DataFrame, adv: pd.DataFrame,
                      names: Sequence[str]) -> dict[str, float]:
    changed = np.zeros(len(orig))
    for col in names:
        changed += _differs(orig[col].to_numpy(), adv[col].to_numpy())
    d = np.linalg.norm(encode(adv).astype(np.float64) - encode(orig).astype(np.float64), axis=1)
    return {"l0_mean": float(changed.mean()), "l0_median": float(np.median(changed)), "l2_mean": float(d.mean()),
            "l2_median": float(np.median(d))}


def transfer(judges: Mapping[str, Any], orig: pd.DataFrame, adv: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """DR before/after and EIR under each judge (a detector with ``predict``)."""
    out = {}
    for name, det in judges.items():
        before = detection_rate(det.predict, orig)
        after = detection_rate(det.predict, adv)
        out[name] = {"dr_orig": before, "dr_adv": after, "eir": eir(before, after)}
    return out


def realism(featurize: Callable[[pd.DataFrame], np.ndarray], real: pd.DataFrame, adv: pd.DataFrame, *, seed: int = 0,
            max_rows: int = 5000, folds: int = 5) -> dict[str, Any] | None:
    """Gradient boosting's cross-validated AUC telling ``adv`` from ``real`` (None with too few rows)."""
    from advgen.detectors import gradient_boosting
    from advgen.metrics.realism import realism_auc

    if min(len(real), len(adv)) < 2 * folds:
        return None
    res = realism_auc(featurize(real), featurize(adv), gradient_boosting, folds=folds, max_rows=max_rows, seed=seed)
    return {"mean": res["mean"], "std": res["std"], "n_per_side": res["n_per_side"]}


def attack_metrics(
    orig: pd.DataFrame, adv: pd.DataFrame, *, target: Any, mask: np.ndarray, names: Sequence[str],
    check: Callable[[pd.DataFrame], np.ndarray], encode: Callable[[pd.DataFrame], np.ndarray],
    judges: Mapping[str, Any] | None = None, queries: int | None = None, featurize: Callable | None = None,
    normal: pd.DataFrame | None = None, realism_rows: int = 5000, seed: int = 0,
    progress: Callable[[str], None] | None = None, reference: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Every metric of one attack's disguised rows ``adv`` (row i disguises ``orig`` row i); ``reference``:
    real traffic, for the atypical cells."""
    say = progress or (lambda _m: None)
    before = detection_rate(target.predict, orig)
    after = detection_rate(target.predict, adv)
    out: dict[str, Any] = {
        "rows": int(len(orig)),
        "detection_rate": {"before": before, "after": after},
        "eir": eir(before, after),
        "functional_changes": functional_changes(orig, adv, mask, names),
        "validity": validity(check, orig, adv),
        **perturbation_size(encode, orig, adv, names),
        "queries": queries,
    }
    if reference is not None:
        out["atypical"] = atypical(reference, orig, adv, names)
    if judges:
        say("transfer ...")
        out["transfer"] = transfer(judges, orig, adv)
    if featurize is not None:
        say("realism AUC ...")
        out["realism_auc"] = {
            "vs_attacks": realism(featurize, orig, adv, seed=seed, max_rows=realism_rows),
            "vs_normal": realism(featurize, normal, adv, seed=seed, max_rows=realism_rows) if normal is not None else None,
        }
    return out
