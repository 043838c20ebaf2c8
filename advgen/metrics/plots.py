"""Figures of an evaluation: real vs synthetic per-column histograms, per-class recall and precision with
and without augmentation, or the domain's own plot of real and generated samples.

matplotlib is imported when a figure is drawn (``pip install 'advgen[plot]'``), not with this module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from advgen.errors import AdvgenError
from advgen.io import save_figure
from advgen.metrics.fidelity import CATEGORICAL_KINDS, numeric_values
from advgen.metrics.report import flags_of, worst_columns

if TYPE_CHECKING:
    from advgen.evaluate import Subject


def _pyplot() -> Any:
    from advgen.io import pyplot

    try:
        plt = pyplot()
    except ImportError:
        raise AdvgenError("plots need matplotlib: pip install 'advgen[plot]'") from None
    return plt


def plot_table_histograms(
    real: pd.DataFrame,
    synth: pd.DataFrame,
    columns: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    top: int = 12,
    scores: Sequence[tuple[str, str, float]] | None = None,
    max_panels: int = 12,
    title: str | None = None,
) -> Path:
    """Overlaid real and synthetic histograms (numeric) or category shares (``top`` categories), one
    panel per column, for at most ``max_panels`` columns.

    With ``scores`` (``(column, "KS"|"TV", complement)`` as :func:`worst_columns` gives), the panels are
    the most different columns, worst first, each titled with its score; without, the first columns.
    """
    plt = _pyplot()
    cols = {c["name"]: c for c in columns if c.get("role", "feature") != "ignored"}
    if scores:
        chosen = [(cols[name], f"{metric} complement {value:.2f}") for name, metric, value in scores if name in cols]
    else:
        chosen = [(c, "") for c in cols.values()]
    chosen = chosen[:max_panels]
    ncols = min(4, max(1, len(chosen)))
    nrows = max(1, math.ceil(len(chosen) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.0 * nrows + 1.0), squeeze=False)
    for ax, (col, score) in zip(axes.flat, chosen):
        name = col["name"]
        label = name
        if col.get("kind") in CATEGORICAL_KINDS:
            p = real[name].astype(str).value_counts(normalize=True)
            q = synth[name].astype(str).value_counts(normalize=True)
            keys = list(p.index[:top])
            x = np.arange(len(keys))
            ax.bar(x - 0.2, p.reindex(keys, fill_value=0).to_numpy(), width=0.4, label="real", color="C0", alpha=0.6)
            ax.bar(x + 0.2, q.reindex(keys, fill_value=0).to_numpy(), width=0.4, label="synthetic", color="C1", alpha=0.6)
            ax.set_xticks(x, [str(k)[:12] for k in keys], rotation=60, fontsize=8)
            ax.set_ylabel("share", fontsize=8)
        else:
            r, s = numeric_values(real[name]), numeric_values(synth[name])
            if col.get("kind") in ("count", "continuous") and len(r) and np.ptp(r) > 100:
                # heavy tails (bytes, durations) leave one bar at 0 on a linear axis
                r, s = np.sign(r) * np.log1p(np.abs(r)), np.sign(s) * np.log1p(np.abs(s))
                label = f"log1p({name})"
            both = np.concatenate([r, s]) if len(s) else r
            lo, hi = np.percentile(both, [0.5, 99.5]) if len(both) else (0.0, 1.0)
            if hi <= lo:
                lo, hi = lo - 0.5, hi + 0.5
            bins = np.linspace(lo, hi, 31)
            ax.tick_params(axis="x", labelsize=8)
            ax.hist(np.clip(r, lo, hi), bins=bins, alpha=0.5, density=True, label="real", color="C0")
            if len(s):
                ax.hist(np.clip(s, lo, hi), bins=bins, alpha=0.5, density=True, label="synthetic", color="C1")
            ax.set_ylabel("density", fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
        ax.set_title(f"{label}\n{score}" if score else label, fontsize=10)
    for ax in list(axes.flat)[len(chosen):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", ncol=2, fontsize=10, frameon=False)
    if title is None:
        shown = "most different" if scores else "first"
        title = f"Real vs synthetic: the {len(chosen)} {shown} of {len(cols)} columns"
    fig.suptitle(title, fontsize=12, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))
    return save_figure(fig, path)


def plot_recall_bars(report: dict[str, Any], path: str | Path) -> Path:
    """Per-class recall and precision on the real test set, without and with augmentation (error bars: std
    over seeds); classes whose precision fell beyond ``PRECISION_DROP`` are marked in red."""
    plt = _pyplot()
    au = report["augmentation"]
    classes = list(au["base"]["per_class"])
    fell = {f["class"] for f in flags_of(au) if f["metric"] == "precision"}
    x = np.arange(len(classes))
    fig, axes = plt.subplots(1, 2, figsize=(max(6.0, 1.2 * len(classes)) * 2, 4.2))
    for ax, metric in zip(axes, ("recall", "precision")):
        for offset, key, label in ((-0.2, "base", "trained on real rows only"), (0.2, "augmented", "real + synthetic rows")):
            vals = [au[key]["per_class"][c][metric]["mean"] for c in classes]
            errs = [au[key]["per_class"][c][metric]["std"] for c in classes]
            ax.bar(x + offset, vals, width=0.4, yerr=errs, capsize=3, label=label)
        flagged = fell if metric == "precision" else set()
        names = [
            c + (" *" if c in au.get("classes", []) else "") + ("\n! precision fell" if c in flagged else "")
            for c in classes
        ]
        ax.set_xticks(x, names)
        for tick, c in zip(ax.get_xticklabels(), classes):
            if c in flagged:
                tick.set_color("#c0392b")
        ax.set_ylim(0, 1.05)
        ax.set_title(f"per-class {metric}", fontsize=11)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, frameon=False)
    fig.suptitle(
        f"Augmentation on the real test set ({report['detector']}, mean ± std over seeds; * augmented class)",
        x=0.01, ha="left", fontsize=12,
    )
    fig.tight_layout(rect=(0, 0.4 / fig.get_figheight(), 1, 1 - 0.3 / fig.get_figheight()))
    return save_figure(fig, path)


def write_plots(
    report: dict[str, Any], subject: Subject, real: Any, synthetic: Any, out_dir: str | Path, *, prefix: str = "eval_"
) -> list[Path]:
    """Write the report's plots into ``out_dir``: per-column histograms (tables) or the domain's own plot, and
    the augmentation recall bars. Returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if subject.columns and isinstance(real, pd.DataFrame) and isinstance(synthetic, pd.DataFrame):
        scores = worst_columns(report) or None
        n_cols = len([c for c in subject.columns if c.get("role", "feature") != "ignored"])
        title = (
            f"{report.get('subject', 'samples')}: real vs synthetic, the {min(12, len(scores))} of {n_cols} columns "
            "that differ most (lowest KS/TV complement)"
            if scores else None
        )
        target = out / f"{prefix}histograms.png"
        written.append(plot_table_histograms(real, synthetic, subject.columns, target, scores=scores, title=title))
    elif subject.plot is not None:
        target = out / f"{prefix}samples.png"
        if subject.plot(real, synthetic, target) and target.exists():
            written.append(target)
    if report.get("augmentation"):
        written.append(plot_recall_bars(report, out / f"{prefix}augmentation_recall.png"))
    return written


# what each plot of :func:`write_plots` shows, for the HTML report's section titles
PLOT_TITLES = {
    "histograms": "Columns that differ most: real vs synthetic distributions",
    "augmentation_recall": "Per-class recall and precision on the real test set, with and without augmentation",
    "samples": "Real and generated samples side by side",
}


def plot_title(path: str | Path, prefix: str = "eval_") -> str:
    """A human title for a plot file of :func:`write_plots` (other files: their name in words)."""
    stem = Path(path).stem
    key = stem[len(prefix):] if stem.startswith(prefix) else stem
    return PLOT_TITLES.get(key, key.replace("_", " ").replace("-", " ").capitalize())
