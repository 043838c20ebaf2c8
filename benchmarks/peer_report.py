"""The tables of ``benchmarks/peers.py``: headline figures per fit, mean +- std over seeds, floors, Markdown.

A floor counts as met only when the whole band mean +- std clears it: a mean that meets it within one
standard deviation is reported as missed, so that a lucky seed cannot carry a claim.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

TITLES = {
    "advgen": "advgen",
    "advgen-fp32": "advgen fp32",
    "ctgan": "CTGAN",
    "sdv-ctgan": "SDV CTGAN",
    "sdv-tvae": "SDV TVAE",
    "sdv-copula": "SDV GaussianCopula",
}
FLOORS = {
    "ks_complement": (">=", 0.92),
    "tv_complement": (">=", 0.96),
    "tstr_macro_f1": (">=", 0.45),
    "auc_logistic-regression": ("<", 0.86),
    "auc_gradient-boosting": ("<", 0.99),
    "validity_schema": (">=", 0.99),
    "validity_cross-column": (">=", 0.95),
}
QUALITY_ROWS = [
    ("auc_gradient-boosting", "realism AUC, gradient boosting (0.5 ideal)", 3),
    ("auc_logistic-regression", "realism AUC, logistic regression (0.5 ideal)", 3),
    ("correlation_difference", "correlation difference (0 ideal)", 3),
    ("ks_complement", "KS complement, numeric (1 ideal)", 3),
    ("tv_complement", "TV complement, categorical (1 ideal)", 3),
    ("column_correlation_difference", "column correlation difference (0 ideal)", 3),
    ("label_fidelity", "label fidelity, mean over classes", 3),
    ("tstr_macro_f1", "TSTR macro-F1 (mean over detector seeds)", 3),
    ("trtr_macro_f1", "TRTR macro-F1 (reference)", 3),
    ("r2l_recall_base", "r2l recall, real only", 3),
    ("r2l_recall_aug", "r2l recall, augmented", 3),
    ("r2l_precision_base", "r2l precision, real only", 3),
    ("r2l_precision_aug", "r2l precision, augmented", 3),
    ("u2r_recall_base", "u2r recall, real only", 3),
    ("u2r_recall_aug", "u2r recall, augmented", 3),
    ("u2r_precision_base", "u2r precision, real only", 3),
    ("u2r_precision_aug", "u2r precision, augmented", 3),
    ("macro_f1_base", "macro-F1, real only", 3),
    ("macro_f1_aug", "macro-F1, augmented", 3),
    ("fpr_normal_base", "FPR on normal, real only", 4),
    ("fpr_normal_aug", "FPR on normal, augmented", 4),
    ("validity_all", "validity, all rules", 3),
    ("validity_schema", "validity, schema rules", 3),
    ("validity_cross-column", "validity, cross-column rules", 3),
    ("dcr_median_ratio", "DCR median ratio synth/held-out (1 ideal)", 3),
    ("exact_copies", "exact copies of training rows", 3),
]
FIT_ROWS = [
    ("fit_seconds", "whole fit, s (reading, transforms, encoding, sampler, training)", 1),
    ("loop_seconds", "training loop alone, s", 1),
    ("train_rows_per_s", "training rows/s (rows fed per second of loop)", 0),
    ("sample_rows_per_s", "sampling rows/s (median of timed runs)", 0),
    ("peak_rss_mib", "peak memory of the fit's process, MiB", 0),
    ("post_processing_changed", "share of numeric values post-processing changed", 4),
]
SPEED_TARGETS = {"train_rows_per_s": 5, "sample_rows_per_s": 3}  # advgen against CTGAN


def headline(report: dict[str, Any]) -> dict[str, Any]:
    """The figures the tables show, from one :func:`advgen.evaluate.evaluate` report."""
    out: dict[str, Any] = {}
    realism = report.get("realism", {})
    for det, auc in realism.get("auc", {}).items():
        out[f"auc_{det}"] = auc["mean"]
    out["correlation_difference"] = realism.get("correlation_difference")
    fidelity = report.get("fidelity", {})
    out["ks_complement"] = fidelity.get("ks_complement", {}).get("mean")
    out["tv_complement"] = fidelity.get("tv_complement", {}).get("mean")
    out["column_correlation_difference"] = fidelity.get("correlation_difference")
    utility = report.get("utility", {})
    out["tstr_macro_f1"] = utility.get("tstr", {}).get("macro_f1", {}).get("mean")
    out["trtr_macro_f1"] = utility.get("trtr", {}).get("macro_f1", {}).get("mean")
    out["label_fidelity"] = report.get("label_fidelity", {}).get("mean")
    au = report.get("augmentation")
    if au:
        for c in au["classes"]:
            for m in ("recall", "precision"):
                out[f"{c}_{m}_base"] = au["base"]["per_class"][c][m]["mean"]
                out[f"{c}_{m}_aug"] = au["augmented"]["per_class"][c][m]["mean"]
            out[f"{c}_added"] = au["added"].get(c, 0)
        out["macro_f1_base"] = au["base"]["macro_f1"]["mean"]
        out["macro_f1_aug"] = au["augmented"]["macro_f1"]["mean"]
        out["fpr_normal_base"] = au["base"].get("fpr_normal", {}).get("mean")
        out["fpr_normal_aug"] = au["augmented"].get("fpr_normal", {}).get("mean")
    val = report.get("validity", {}).get("synthetic", {})
    out["validity_all"] = val.get("pass_rate")
    for g, rate in val.get("per_group", {}).items():
        out[f"validity_{g}"] = rate
    memo = report.get("memorisation", {})
    out["dcr_median_ratio"] = memo.get("median_ratio")
    out["exact_copies"] = memo.get("exact_copies")
    return out


def _fit_figures(info: dict[str, Any]) -> dict[str, Any]:
    out = {key: info.get(key) for key, _, _ in FIT_ROWS}
    for cat, counts in (info.get("augmentation_rows") or {}).items():
        out[f"{cat}_asked"] = counts["asked"]
        out[f"{cat}_returned_in_category"] = counts["returned_in_category"]
    return out


def spread(values: list[Any]) -> dict[str, Any] | None:
    """Mean, standard deviation (n-1; 0 for one value) and the values; None when any is missing."""
    if not values or any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
        return None
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values), "values": list(values)}


def summarise(reports: dict[str, dict[str, list]], infos: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """``{generator: {"raw"|"post"|"fit": {figure: spread}}}`` over the seeds."""
    out: dict[str, Any] = {}
    for name, by_treatment in reports.items():
        out[name] = {}
        for treatment, per_seed in by_treatment.items():
            rows = [headline(r) for r in per_seed]
            keys = sorted({k for row in rows for k in row})
            out[name][treatment] = {k: spread([row.get(k) for row in rows]) for k in keys}
        fits = [_fit_figures(i) for i in infos[name]]
        keys = sorted({k for row in fits for k in row})
        out[name]["fit"] = {k: spread([row.get(k) for row in fits]) for k in keys}
    return out


def _fmt(s: dict[str, Any] | None, digits: int) -> str:
    if s is None:
        return "-"
    mean = f"{s['mean']:,.{digits}f}"
    return mean if s["n"] == 1 else f"{mean} ± {s['std']:,.{digits}f}"


def floor_text(key: str, s: dict[str, Any] | None) -> str:
    """``>= 0.92 met``; ``MISSED`` when the mean misses, ``MISSED (within 1 std)`` when only the band does."""
    if key not in FLOORS:
        return ""
    op, bound = FLOORS[key]
    if s is None:
        return f"{op} {bound} MISSED (no value)"
    mean, std = s["mean"], s["std"]
    if op == ">=":
        ok_mean, ok_band = mean >= bound, mean - std >= bound
    else:
        ok_mean, ok_band = mean < bound, mean + std < bound
    verdict = "met" if ok_band else ("MISSED (within 1 std)" if ok_mean else "MISSED")
    return f"{op} {bound} {verdict}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    return "\n".join(lines)


def quality_table(summary: dict[str, Any], treatment: str, floors: bool) -> str:
    names = [n for n in TITLES if treatment in summary.get(n, {})]
    header = ["metric", *[TITLES[n] for n in names]] + (["advgen floor"] if floors else [])
    rare = sorted({k[: -len("_added")] for n in names for k in summary[n][treatment] if k.endswith("_added")})
    rows = []
    for key, title, digits in QUALITY_ROWS + [(f"{c}_added", f"{c} rows added to the detector's training", 0)
                                              for c in rare]:
        row = [title, *[_fmt(summary[n][treatment].get(key), digits) for n in names]]
        if floors:
            row.append(floor_text(key, summary["advgen"][treatment].get(key)) if "advgen" in names else "")
        rows.append(row)
    return _table(header, rows)


def _speed_target(key: str, summary: dict[str, Any]) -> str:
    if key not in SPEED_TARGETS or "ctgan" not in summary:
        return ""
    a, c = summary["advgen"]["fit"].get(key), summary["ctgan"]["fit"].get(key)
    if not a or not c or not c["mean"]:
        return ""
    factor = SPEED_TARGETS[key]
    ratio = a["mean"] / c["mean"]
    band = (a["mean"] - a["std"]) / (c["mean"] + c["std"])
    verdict = "met" if band >= factor else ("MISSED (within 1 std)" if ratio >= factor else "MISSED")
    return f">= {factor}x CTGAN: {ratio:.1f}x {verdict}"


def budget_text(name: str, b: dict[str, Any]) -> str:
    if "units" not in b:
        return f"{TITLES[name]} {b['unit']}"
    if "seconds_per_unit" in b:
        return (f"{TITLES[name]} {b['units']:,} {b['unit']} (calibrated: {b['fixed_seconds']:.1f} s fixed, "
                f"{b['seconds_per_unit'] * 1000:.1f} ms per {b['unit'][:-1]})")
    return f"{TITLES[name]} {b['units']:,} {b['unit']}"


def fit_table(summary: dict[str, Any], infos: dict[str, list[dict[str, Any]]]) -> str:
    names = [n for n in TITLES if n in summary]
    header = ["", *[TITLES[n] for n in names], "advgen target"]

    def same(field: str) -> list[str]:
        out = []
        for n in names:
            values = sorted({str(i.get(field)) for i in infos[n] if i.get(field) is not None})
            out.append(", ".join(values) or "-")
        return out

    budget = []
    for n in names:
        units = infos[n][0].get("steps") or infos[n][0].get("epochs")
        unit = "step" if "steps" in infos[n][0] else "epoch"
        budget.append("-" if not units else f"{units:,} {unit}{'s' if units != 1 else ''}")
    rows = [["precision", *same("precision"), ""], ["device", *same("device"), ""],
            ["budget", *budget, ""], ["post-processing", *[
                "SDV's own" if n.startswith("sdv-") else "raw; SDV's applied here" for n in names], ""]]
    for key, title, digits in FIT_ROWS:
        rows.append([title, *[_fmt(summary[n]["fit"].get(key), digits) for n in names], _speed_target(key, summary)])
    rare = sorted({k[: -len("_asked")] for n in names for k in summary[n]["fit"] if k.endswith("_asked")})
    for c in rare:
        rows.append([f"{c} rows asked / returned in {c}", *[
            f"{_fmt(summary[n]['fit'].get(f'{c}_asked'), 0)} / "
            f"{_fmt(summary[n]['fit'].get(f'{c}_returned_in_category'), 0)}" for n in names], ""])
    return _table(header, rows)


def speed_table(info: dict[str, Any]) -> str:
    """advgen's sampling against the matrix-multiply rate of the same CPU (seed 0)."""
    sp = info.get("speed")
    if not sp:
        return ""
    best = sp["matmul"]["best_gflops"]
    best16 = sp.get("matmul_bf16", {}).get("best_gflops")
    vs16 = f"; {sp['sampling_gflops'] / best16:.2f}x bf16 matmul {best16:.1f}" if best16 else ""
    rows = [
        [f"sampling GFLOP/s, as shipped ({sp['sample_dtype']}; generator FLOPs/row x rows/s)",
         f"{sp['sampling_gflops']:.1f} ({sp['flops_per_row'] / 1e6:.2f} MFLOP/row)",
         f">= 0.5 x fp32 matmul {best:.1f}: {sp['sampling_gflops'] / best:.2f}x "
         f"{'met' if sp['sampling_gflops'] >= 0.5 * best else 'MISSED'}{vs16}"],
        ["generator-only GFLOP/s, as shipped (no decoding)", f"{sp['generator_gflops']:.1f}",
         f"{sp['generator_gflops'] / best:.2f}x fp32 matmul"],
        ["sampling rows/s and GFLOP/s in float32", f"{sp['fp32_sample_rows_per_s']:,.0f} rows/s, "
         f"{sp['fp32_sampling_gflops']:.1f} GFLOP/s",
         f"{sp['fp32_sampling_gflops'] / best:.2f}x fp32 matmul (generator only {sp['fp32_generator_gflops'] / best:.2f}x)"],
    ]
    return _table(["advgen sampling, seed 0", "value", "target"], rows)


def render(summary: dict[str, Any], infos: dict[str, list[dict[str, Any]]], note: str) -> str:
    parts = [
        "# advgen and its peers on NSL-KDD",
        note,
        "## Post-processed rows (the headline)\n\nEvery generator's rows with SDV's standard post-processing "
        "(numeric values clipped to the real min/max and rounded to the real decimals): SDV's own for the SDV "
        "peers, the same applied by the benchmark to advgen and the ctgan package. A floor is met only when "
        "mean +- std clears it.",
        quality_table(summary, "post", floors=True),
        "## Raw rows\n\nWhat the generators that do not post-process emit, judged as they come.",
        quality_table(summary, "raw", floors=False),
        "## Fit, precision and sampling\n\nWhole fit and training loop timed the same way for every generator; "
        "rows asked for each rare category through the generator's conditional sampling, and how many came "
        "back in that category (rows of another label are not added; the judge adds at most the asked number). "
        "Sampling rows/s are the library's own sampling (SDV's includes its post-processing; the benchmark's "
        "post-processing of the others is not timed).",
        fit_table(summary, infos),
    ]
    speed = speed_table(infos["advgen"][0])
    if speed:
        parts.append(speed)
    return "\n\n".join(parts)
