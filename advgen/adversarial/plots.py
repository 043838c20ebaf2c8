"""Figures of the adversarial commands, written beside their report.json:

- ``evasion.png`` (``advgen evade``): each detector's detection rate on the attack rows before and after
  each attack disguised them (the attacked detector first, then the transfer judges), and, for a GAN
  that trained, the share of each round's rows that evaded against the queries spent.
- ``hardening.png`` (``advgen harden``): round by round, the detection rate on fresh disguised rows and on
  clean attack rows, and the false-positive rate on normal rows.

matplotlib is imported when a figure is drawn (``pip install 'advgen[plot]'``); without it
:func:`write_figure` writes nothing and says why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from advgen.io import save_figure

EVASION_PLOT = "evasion.png"
HARDENING_PLOT = "hardening.png"

ATTACK_LABELS = {"gan": "GAN attack", "mimicry": "mimicry baseline", "random": "random baseline"}


def _pyplot() -> Any:
    from advgen.io import pyplot

    return pyplot()


def detection_table(report: Mapping[str, Any]) -> tuple[list[str], list[float], dict[str, list[float]]]:
    """The detectors (the attacked one first, then the transfer judges but the one that repeats it), the
    detection rate of the original attack rows under each, and per attack the rate of its disguised rows
    (NaN where a judge is missing)."""
    attacks: Mapping[str, Any] = report["attacks"]
    first = next(iter(attacks.values()))
    target = str(report["detector"]["name"])
    # a judge of the attacked detector's own name and seed is that detector again
    judges = [j for j in (first.get("transfer") or {}) if j != target]
    detectors = [target, *judges]
    before = [first["detection_rate"]["before"]] + [first["transfer"][j]["dr_orig"] for j in judges]
    after: dict[str, list[float]] = {}
    for name, m in attacks.items():
        t = m.get("transfer") or {}
        after[name] = [m["detection_rate"]["after"]] + [t.get(j, {}).get("dr_adv", float("nan")) for j in judges]
    return detectors, [float(b) for b in before], {k: [float(v) for v in vs] for k, vs in after.items()}


def plot_evasion(report: Mapping[str, Any], history: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """``evasion.png``: detection rates before and after disguise per detector; the GAN's training curve
    beside them when ``history`` (its rounds) is not empty."""
    plt = _pyplot()
    detectors, before, after = detection_table(report)
    curve = [h for h in history if h.get("queries") is not None and h.get("evaded") is not None]
    width_bars = min(11.0, max(5.5, 0.3 * len(detectors) * (1 + len(after))))
    cols = 2 if curve else 1
    fig, axes = plt.subplots(1, cols, figsize=(width_bars + (5.5 if curve else 0), 4.6), squeeze=False,
                             gridspec_kw={"width_ratios": [width_bars, 5.5] if curve else [1]})
    ax = axes[0, 0]
    x = np.arange(len(detectors))
    series = [("original attack rows", before), *((ATTACK_LABELS.get(k, k), v) for k, v in after.items())]
    w = 0.8 / len(series)
    for i, (label, vals) in enumerate(series):
        ax.bar(x - 0.4 + w * (i + 0.5), vals, width=w, label=label, color="0.6" if i == 0 else f"C{i - 1}")
    names = [f"{detectors[0]}\n(attacked)", *detectors[1:]]
    ax.set_xticks(x, names, rotation=30 if len(detectors) > 4 else 0, ha="right" if len(detectors) > 4 else "center",
                  fontsize=9)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("detection rate (share of attack rows flagged)")
    ax.set_title("Detection before and after disguise", fontsize=11)
    ax.legend(fontsize=8, loc="upper right", frameon=False)
    if curve:
        ax2 = axes[0, 1]
        q = [h["queries"] for h in curve]
        ax2.plot(q, [h["evaded"] for h in curve], label="rows of the round that evaded")
        agree = [h.get("substitute_agrees") for h in curve]
        if all(a is not None for a in agree):
            ax2.plot(q, agree, label="substitute agrees with the detector", alpha=0.7)
        ax2.set_ylim(0, 1.05)
        ax2.set_xlabel("queries to the detector")
        ax2.set_title("GAN training", fontsize=11)
        ax2.legend(fontsize=8, frameon=False)
    inputs = report.get("inputs", {})
    what = ", ".join(f"{k} ({v:,})" for k, v in (inputs.get("classes") or {}).items())
    fig.suptitle(f"advgen evade: {inputs.get('rows', 0):,} attack rows{': ' + what if what else ''}", x=0.01,
                 ha="left", fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    return save_figure(fig, path)


def plot_hardening(report: Mapping[str, Any], path: str | Path) -> Path:
    """``hardening.png``: detection and false-positive rates of the detector after each round (0: before
    hardening)."""
    plt = _pyplot()
    rounds = report["rounds"]
    r = [h["round"] for h in rounds]
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    lines = [("dr_adversarial", "fresh disguised attack rows: detected", "C0", "-"),
             ("dr_clean", "clean attack rows: detected", "C2", "-"),
             ("fpr_normal", "normal rows: falsely flagged", "C3", "-"),
             ("dr_adversarial_known_types", "disguised rows of types seen in training", "C0", ":")]
    for key, label, color, style in lines:
        vals = [h.get(key) for h in rounds]
        if any(v is None for v in vals):
            continue
        ax.plot(r, vals, marker="o", color=color, linestyle=style, label=label)
    ax.set_xticks(r)
    ax.set_xlabel("hardening round (0: the detector as trained)")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of rows")
    ax.legend(fontsize=8, frameon=False, loc="best")
    det = report.get("detector", {}).get("name", "detector")
    ax.set_title(f"advgen harden: {det}, {report.get('inputs', {}).get('test_attack_rows', 0):,} held-out attack rows",
                 fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)


def write_figure(draw: Callable[[Path], Path], path: Path, say: Callable[[str], None]) -> str | None:
    """Draw one figure to ``path``; the path written, or None (and a line to ``say``) without matplotlib."""
    try:
        draw(path)
    except ImportError:
        say(f"no {path.name}: plots need matplotlib (pip install 'advgen[plot]')")
        return None
    return str(path)
