"""Where does a gradient-boosting detector tell a tabular run's rows from real ones?

    python benchmarks/realism_diagnosis.py RUN_DIR --real nsl-kdd:train20 --markdown diag.md

The realism AUC of ``advgen evaluate`` is one number; this script breaks it down, to point model
changes at what the detector actually uses:

1. the overall AUC (the same featurization and detector as ``advgen evaluate``);
2. the AUC within each label (real rows of a label against synthetic rows of that label), and how much of
   the overall AUC the label mix alone explains (a detector that sees only the label);
3. within each label, the AUC of a detector that sees one column only (the conditional marginal), the
   columns sorted by it;
4. within each label, for the most telling columns, the AUC of a detector that sees a pair of columns
   minus the better of the two alone (what the joint structure adds);
5. for the most telling columns, the values whose share differs most between real and synthetic rows
   of the label (e.g. ``srv_count = 2``: 12% of real normal rows, 7% of synthetic ones).

Detectors are scikit-learn's HistGradientBoostingClassifier, 3-fold cross-validated, on equal numbers
of real and synthetic rows; categoricals are given as categories. Nothing is trained or changed in the
run: it is sampled once with ``--seed``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _auc(X: pd.DataFrame, y: np.ndarray, cats: list[str], seed: int, folds: int = 3) -> float:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    Xe = X.copy()
    for c in X.columns:
        if c in cats:
            Xe[c] = pd.Categorical(Xe[c].astype(str)).codes
    mask = [c in cats for c in X.columns]
    scores = np.zeros(len(y))
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(Xe, y):
        m = HistGradientBoostingClassifier(max_iter=100, random_state=seed, categorical_features=mask if any(mask) else None)
        m.fit(Xe.iloc[tr], y[tr])
        scores[te] = m.predict_proba(Xe.iloc[te])[:, 1]
    return float(roc_auc_score(y, scores))


def _value_gaps(real: pd.Series, synth: pd.Series, top: int) -> list[tuple[str, float, float]]:
    """Values (or, for columns with many values, deciles of the real column) whose shares differ most."""
    if real.nunique() > 20 and pd.api.types.is_numeric_dtype(real):
        edges = np.unique(np.quantile(real.to_numpy(dtype=float), np.linspace(0, 1, 11)))
        if len(edges) < 3:
            edges = np.unique(np.r_[edges, real.max() + 1])
        r = pd.cut(real, edges, include_lowest=True).astype(str)
        s = pd.cut(synth.clip(edges[0], edges[-1]), edges, include_lowest=True).astype(str)
    else:
        r, s = real.astype(str), synth.astype(str)
    pr, ps = r.value_counts(normalize=True), s.value_counts(normalize=True)
    vals = set(pr.index) | set(ps.index)
    gaps = sorted(((v, float(pr.get(v, 0.0)), float(ps.get(v, 0.0))) for v in vals), key=lambda t: -abs(t[1] - t[2]))
    return gaps[:top]


def diagnose(real: pd.DataFrame, synth: pd.DataFrame, label: str, cats: list[str], *, seed: int = 0,
             top: int = 6, max_rows: int = 10_000, say=lambda m: None) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    features = [c for c in real.columns if c != label and c in synth.columns]
    out: dict[str, Any] = {"labels": {}}
    n = min(len(real), len(synth), max_rows)
    r = real.iloc[rng.choice(len(real), n, replace=False)].reset_index(drop=True)
    s = synth.iloc[rng.choice(len(synth), n, replace=False)].reset_index(drop=True)
    both = pd.concat([r, s], ignore_index=True)
    y = np.r_[np.zeros(n, int), np.ones(n, int)]
    say("overall AUC ...")
    out["overall"] = _auc(both[features + [label]], y, cats + [label], seed)
    out["label_only"] = _auc(both[[label]], y, [label], seed)
    for lab in sorted(set(real[label].astype(str))):
        rl = real[real[label].astype(str) == lab]
        sl = synth[synth[label].astype(str) == lab]
        k = min(len(rl), len(sl), max_rows)
        if k < 30:
            out["labels"][lab] = {"rows": k, "skipped": "fewer than 30 rows on a side"}
            continue
        say(f"label {lab}: {k} rows a side ...")
        rl = rl.iloc[rng.choice(len(rl), k, replace=False)]
        sl = sl.iloc[rng.choice(len(sl), k, replace=False)]
        b = pd.concat([rl, sl], ignore_index=True)
        yl = np.r_[np.zeros(k, int), np.ones(k, int)]
        live = [c for c in features if b[c].nunique() > 1]
        entry: dict[str, Any] = {"rows": k, "auc": _auc(b[live], yl, cats, seed)}
        single = {c: _auc(b[[c]], yl, cats, seed) for c in live}
        ranked = sorted(single, key=lambda c: -single[c])
        entry["columns"] = [(c, single[c]) for c in ranked]
        head = ranked[:top]
        pairs = []
        for a, c in itertools.combinations(head, 2):
            pairs.append((a, c, _auc(b[[a, c]], yl, cats, seed) - max(single[a], single[c])))
        entry["pairs"] = sorted(pairs, key=lambda t: -t[2])[:top]
        entry["values"] = {c: _value_gaps(rl[c], sl[c], 4) for c in head[:3]}
        out["labels"][lab] = entry
    return out


def markdown(d: dict[str, Any], title: str, top: int) -> str:
    lines = [f"### {title}", "",
             f"Overall gradient-boosting AUC (label included): {d['overall']:.4f}; from the label mix alone: {d['label_only']:.4f}.", "",
             "| label | rows a side | AUC within the label | most telling columns alone (AUC) | pairs adding most over the better single column |",
             "|---|---|---|---|---|"]
    for lab, e in d["labels"].items():
        if "skipped" in e:
            lines.append(f"| {lab} | {e['rows']} | - | {e['skipped']} | |")
            continue
        cols = ", ".join(f"{c} {a:.3f}" for c, a in e["columns"][:top])
        pairs = ", ".join(f"{a}+{c} +{g:.3f}" for a, c, g in e["pairs"][:3])
        lines.append(f"| {lab} | {e['rows']:,} | {e['auc']:.4f} | {cols} | {pairs} |")
    lines += ["", "Shares of the values that differ most (real vs synthetic, within the label):", ""]
    for lab, e in d["labels"].items():
        for c, gaps in e.get("values", {}).items():
            g = "; ".join(f"`{v}` {pr:.1%} vs {ps:.1%}" for v, pr, ps in gaps)
            lines.append(f"- {lab} / {c}: {g}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="A tabular run folder.")
    ap.add_argument("--real", help="The real table (DATASET:SPLIT or a file); default: the run's training data.")
    ap.add_argument("-n", type=int, default=None, help="Synthetic rows (default: as many as real rows, at most 50,000).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--top", type=int, default=6)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args()

    from advgen.eval_cli import _load_for_evaluation

    t0 = time.perf_counter()
    say = lambda m: print(f"[{time.perf_counter() - t0:7.1f} s] {m}", file=sys.stderr, flush=True)  # noqa: E731
    loaded = _load_for_evaluation(args.run, args.real, None, None, None, None, "category", args.n, args.seed, [], 0, say)
    subject = loaded.subject
    real, synth = loaded.real.copy(), loaded.synthetic.copy()
    label = "__label__"
    real[label] = subject.y(loaded.real)
    synth[label] = subject.y(loaded.synthetic)
    cats = [c["name"] for c in subject.columns if c.get("kind") in ("categorical", "binary", "flag")]
    keep = [c["name"] for c in subject.columns if c["name"] in synth.columns]
    d = diagnose(real[keep + [label]], synth[keep + [label]], label, cats, seed=args.seed, top=args.top, say=say)
    text = markdown(d, f"Realism diagnosis of {args.run}", args.top)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
