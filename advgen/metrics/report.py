"""The evaluation report as text: strict JSON, the headline rows and the terminal tables.

:func:`write_json` writes the report as strict JSON (NaN as null, via :func:`jsonable`);
:func:`summary_rows` gives ``(metric, value, better, ideal)`` for its headline numbers and
:func:`augmentation_rows` the per-class recall and precision with and without augmentation;
:func:`format_report` prints both for the terminal. :mod:`advgen.metrics.plots` and
:mod:`advgen.metrics.html_report` present the same report as figures and one HTML page.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from advgen.io import atomic_write_text
from advgen.metrics.augmentation import augmentation_flags
from advgen.metrics.info import METRICS
from advgen.metrics.privacy import NOT_COPIES


def jsonable(obj: Any) -> Any:
    """Plain Python types only, NaN as None, so that ``json.dumps`` writes strict JSON."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def write_json(report: dict[str, Any], path: str | Path) -> None:
    """Write ``report`` (made by :func:`advgen.evaluate.evaluate`, already JSON-able) as strict JSON, atomically."""
    atomic_write_text(path, json.dumps(report, indent=2, allow_nan=False) + "\n")


def format_value(value: Any, digits: int = 3) -> str:
    """A report value as table text: ``mean ± std`` for spreads, ``-`` for missing."""
    if value is None:
        return "-"
    if isinstance(value, dict) and "mean" in value:
        if _missing(value["mean"]):  # e.g. macro-F1 when the test set shares no class with training
            return "-"
        std = value.get("std")
        return f"{value['mean']:.{digits}f} ± {std:.{digits}f}" if not _missing(std) else f"{value['mean']:.{digits}f}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def complement_text(figure: Mapping[str, Any], kind: str) -> str:
    """A KS or TV complement's mean as table text; ``n/a (no <kind> features)`` when the table has no column
    of that kind (mean null, ``per_column`` empty), never a score for something not measured."""
    mean = figure.get("mean")
    if _missing(mean) and "per_column" in figure and not figure["per_column"]:
        return f"n/a (no {kind} features)"
    return format_value(mean)


# the two correlation differences, named by what they compare: the detectors' features (numeric columns
# through log1p, categoricals one-hot, the label left out) or the raw values of the numeric columns
FEATURE_CORR = "correlation difference (detector features)"
COLUMN_CORR = "correlation difference (raw numeric columns)"


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(metric, value, better, ideal) rows for the headline numbers of a report."""
    rows: list[tuple[str, str, str, str]] = []
    m = METRICS
    realism = report.get("realism")
    if realism:
        for name, auc in realism["auc"].items():
            rows.append((f"realism AUC ({name})", format_value(auc), m["realism_auc"].direction, m["realism_auc"].ideal))
        rows.append((FEATURE_CORR, format_value(realism["correlation_difference"]), "lower", "0"))
        if "cross_column_validity" in realism:
            ccv = realism["cross_column_validity"]
            rows.append(("cross-column validity", format_value(ccv["synthetic"]), "higher", f"real {format_value(ccv['real'])}"))
    fid = report.get("fidelity")
    if fid:
        ks, tv = fid.get("ks_complement") or {}, fid.get("tv_complement") or {}
        rows.append(("KS complement (numeric)", complement_text(ks, "numeric"), "higher", "1.0"))
        rows.append(("TV complement (categorical)", complement_text(tv, "categorical"), "higher", "1.0"))
        corr = fid.get("correlation_difference")
        few = "per_column" in ks and len(ks["per_column"]) < 2
        corr_text = "n/a (fewer than 2 numeric features)" if _missing(corr) and few else format_value(corr)
        rows.append((COLUMN_CORR, corr_text, "lower", "0"))
        balance = fid.get("class_balance")
        if balance:
            rows.append((f"class balance ({balance['column']}, TV complement)", format_value(balance["tv_complement"]),
                         "higher", "1.0"))
    lf = report.get("label_fidelity")
    if lf:
        ref = lf.get("real_test_recall_mean")
        rows.append(("label fidelity (mean over classes)", format_value(lf["mean"]), "higher", f"real {format_value(ref)}" if ref is not None else "1.0"))
    ut = report.get("utility")
    if ut:
        rows.append(("TSTR macro-F1", format_value(ut["tstr"]["macro_f1"]), "higher", f"TRTR {format_value(ut['trtr']['macro_f1'])}"))
        rows.append(("TSTR accuracy", format_value(ut["tstr"]["accuracy"]), "higher", f"TRTR {format_value(ut['trtr']['accuracy'])}"))
        rows.append(("TSTR/TRTR macro-F1 ratio", format_value(ut["ratio"]["macro_f1"]), "higher", "1.0"))
    au = report.get("augmentation")
    if au:
        rows.append(("augmented macro-F1", format_value(au["augmented"]["macro_f1"]), "higher", f"base {format_value(au['base']['macro_f1'])}"))
        if "fpr_normal" in au["base"]:
            rose = any(f["metric"] == "fpr_normal" for f in flags_of(au))
            value = format_value(au["augmented"]["fpr_normal"]) + ("  ! rose" if rose else "")
            rows.append(("augmented FPR on normal", value, "lower", f"base {format_value(au['base']['fpr_normal'])}"))
    mem = report.get("memorisation")
    if mem:
        # duplicate-heavy data: the distance figures compare the rows that are not exact copies (a note says why)
        scope = " (non-copies)" if mem.get("reference") == NOT_COPIES else ""
        rows.append((f"DCR median ratio synth/held-out{scope}", format_value(mem["median_ratio"]), "closer to 1", "1.0"))
        rows.append((f"share closer than held-out p5{scope}", format_value(mem["closer_than_holdout_p05"]), "closer to 0.05", "0.05"))
        held = (mem.get("holdout") or {}).get("exact_copies")
        if held:  # unseen real rows repeat training rows this often: the fair reference
            rows.append(("exact copies of training rows", format_value(mem["exact_copies"]), "at most held-out", f"held-out {held:.3f}"))
        else:
            rows.append(("exact copies of training rows", format_value(mem["exact_copies"]), "lower", "0"))
    val = report.get("validity")
    if val:
        rows.append(("validity (all rules)", format_value(val["synthetic"]["pass_rate"]), "higher", f"real {format_value(val['real']['pass_rate'])}"))
        for g, rate in val["synthetic"]["per_group"].items():
            rows.append((f"validity ({g})", format_value(rate), "higher", f"real {format_value(val['real']['per_group'].get(g))}"))
    return rows


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns under a dashed header line, for the terminal."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(header)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(header, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


AUGMENTATION_HEADER = ("class", "test rows", "added", "recall base", "recall aug", "precision base", "precision aug", "flag")


def flags_of(au: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The augmentation's flags (reports written before flags existed get them computed here)."""
    return list(au["flags"]) if "flags" in au else augmentation_flags(au)


def augmentation_rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    """Per class (``AUGMENTATION_HEADER``): test rows, rows added, recall and precision without and with
    augmentation, and a flag where precision fell by more than ``PRECISION_DROP``."""
    au = report.get("augmentation")
    if not au:
        return []
    fell = {f["class"] for f in flags_of(au) if f["metric"] == "precision"}
    rows = []
    for c, base in au["base"]["per_class"].items():
        aug = au["augmented"]["per_class"][c]
        mark = "*" if c in au.get("classes", []) else ""
        rows.append((
            f"{c}{mark}", str(base["support"]), str(au["added"].get(c, 0)),
            format_value(base["recall"]), format_value(aug["recall"]), format_value(base["precision"]), format_value(aug["precision"]),
            "! precision fell" if c in fell else "",
        ))
    return rows


def augmentation_warnings(report: dict[str, Any]) -> list[str]:
    """One sentence per flag of the augmentation (precision drops, false-positive rise)."""
    au = report.get("augmentation")
    return [f["message"] for f in flags_of(au)] if au else []


def format_report(report: dict[str, Any]) -> str:
    """The report as terminal tables: headline metrics, then per-class recall/precision with and without augmentation."""
    n = report["n"]
    parts = [
        f"{report['subject']}: {n['synthetic']} synthetic, {n['real']} real training, {n['test']} real test samples; "
        f"detector {report['detector']}",
        "",
        text_table(("metric", "value", "better", "ideal / reference"), summary_rows(report)),
    ]
    rows = augmentation_rows(report)
    if rows:
        parts += [
            "",
            "augmentation (* = augmented class; mean ± std over seeds)",
            text_table(AUGMENTATION_HEADER, rows),
        ]
        parts += [f"WARNING: {w}" for w in augmentation_warnings(report)]
    for key, reason in report.get("skipped", {}).items():
        parts.append(f"skipped {key}: {reason}")
    for note in report.get("notes", []):
        parts.append(f"note: {note}")
    return "\n".join(parts)


def worst_columns(report: Mapping[str, Any], limit: int | None = None) -> list[tuple[str, str, float]]:
    """``(column, metric, value)`` of the report's per-column fidelity, the most different first
    (lowest KS or TV complement); at most ``limit``."""
    fid = report.get("fidelity") or {}
    scored = [(c, "KS", v) for c, v in (fid.get("ks_complement") or {}).get("per_column", {}).items()]
    scored += [(c, "TV", v) for c, v in (fid.get("tv_complement") or {}).get("per_column", {}).items()]
    scored.sort(key=lambda cmv: (cmv[2] if cmv[2] is not None else -1.0, cmv[0]))
    return scored[:limit] if limit is not None else scored
