"""Utility of labelled samples: are their classes recognisable, and can a detector be trained on them?

- :func:`label_fidelity`: per class c, the share of synthetic rows generated as c that a detector trained
  on real rows calls c; higher is better, the ideal is that detector's own recall of c on real test rows;
- :func:`utility`: train on synthetic, test on real (TSTR) against train on real, test on real (TRTR);
  higher is better, the ideal TSTR equals TRTR (ratio 1.0).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from advgen.metrics.detectors import (
    DetectorFactory, Fits, classification_scores, mean_std, scored_classes, unseen_classes,
)


def label_fidelity(
    train_X: np.ndarray,
    train_y: np.ndarray,
    synth_X: np.ndarray,
    synth_y: np.ndarray,
    detector: DetectorFactory,
    *,
    seed: int = 0,
    test_X: np.ndarray | None = None,
    test_y: np.ndarray | None = None,
    fits: Fits | None = None,
) -> dict[str, Any]:
    """Per class c: share of synthetic rows generated as c that a detector trained on real rows calls c.

    Higher is better. The detector's own recall of c on real test rows (when given) is reported beside
    it as the reference an ideal generator reaches; ``mean`` is the unweighted mean over classes.
    """
    fits = fits or Fits(detector)
    model = fits.model("real", seed, train_X, train_y)
    pred = model.predict(synth_X)
    tp = model.predict(test_X) if test_X is not None and test_y is not None else None
    per: dict[str, Any] = {}
    for c in sorted({str(v) for v in synth_y}):
        mask = synth_y == c
        entry: dict[str, Any] = {"n": int(mask.sum()), "agreement": float(np.mean(pred[mask] == c))}
        if tp is not None and test_y is not None:
            tmask = test_y == c
            entry["real_test_recall"] = float(np.mean(tp[tmask] == c)) if tmask.any() else None
        per[c] = entry
    agreements = [e["agreement"] for e in per.values()]
    ref = [e["real_test_recall"] for e in per.values() if e.get("real_test_recall") is not None]
    return {
        "per_class": per,
        "mean": float(np.mean(agreements)) if agreements else float("nan"),
        "real_test_recall_mean": float(np.mean(ref)) if ref else None,
    }


def utility(
    train_X: np.ndarray,
    train_y: np.ndarray,
    synth_X: np.ndarray,
    synth_y: np.ndarray,
    test_X: np.ndarray,
    test_y: np.ndarray,
    detector: DetectorFactory,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    normal: str | None = None,
    fits: Fits | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train on synthetic, test on real (TSTR) against train on real, test on real (TRTR).

    Higher is better for both; the ideal generator's TSTR equals TRTR (ratio 1.0). Accuracy over every
    test row; macro-F1 over the test set's classes that the real training rows hold
    (:func:`~advgen.metrics.detectors.scored_classes`; the others are listed under ``unseen_test_classes``
    with their row counts), mean and spread over detector seeds.
    """
    fits = fits or Fits(detector)
    classes = scored_classes(test_y, train_y)
    trtr, tstr = [], []
    for i, s in enumerate(seeds):
        if progress is not None:
            progress(f"seed {i + 1}/{len(seeds)}")
        trtr.append(classification_scores(test_y, fits.model("real", s, train_X, train_y).predict(test_X), classes, normal))
        tstr.append(classification_scores(test_y, fits.model("synthetic", s, synth_X, synth_y).predict(test_X), classes, normal))
    keep = ("accuracy", "macro_f1")
    a = mean_std([{k: r[k] for k in keep} for r in trtr])
    b = mean_std([{k: r[k] for k in keep} for r in tstr])
    ratio = {
        k: (b[k]["mean"] / a[k]["mean"]) if a[k]["mean"] > 0 else float("nan") for k in keep
    }
    return {
        "trtr": a, "tstr": b, "ratio": ratio, "seeds": list(seeds), "classes": classes,
        "unseen_test_classes": unseen_classes(test_y, train_y),
    }
