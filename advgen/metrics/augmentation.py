"""Augmentation uplift: does adding synthetic rows of the rare classes to the real rows help a detector?

- :func:`augmentation_uplift`: the detector trained on real rows against the same detector trained on
  real plus synthetic rows, both on the real test set. Higher recall and precision of the rare classes
  and higher macro-F1 are better; a lower false-positive rate of the normal class is better. Ideal:
  recall up, precision and false-positive rate unchanged;
- :func:`augmentation_flags`: the harm it did: precision falls beyond ``PRECISION_DROP``, a
  false-positive rate rising beyond ``FPR_RISE``;
- :func:`default_rare_classes`: the classes augmentation is meant to help.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from advgen.errors import AdvgenError
from advgen.metrics.detectors import DetectorFactory, Fits, classification_scores, mean_std, scored_classes


def augmentation_uplift(
    train_X: np.ndarray,
    train_y: np.ndarray,
    extra_X: np.ndarray,
    extra_y: np.ndarray,
    test_X: np.ndarray,
    test_y: np.ndarray,
    detector: DetectorFactory,
    *,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    normal: str | None = "normal",
    fits: Fits | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The detector trained on real rows against the same detector trained on real + ``extra`` rows.

    Both are scored on the real test set: per-class precision and recall, macro-F1 and the normal class's
    false-positive rate (share of normal test rows flagged as anything else), as mean and standard
    deviation over detector seeds. A useful augmentation raises the rare classes' recall without
    lowering their precision or raising the false-positive rate; ``delta`` is augmented minus base.
    """
    if len(extra_X) == 0:
        raise AdvgenError("augmentation needs at least one synthetic row of the chosen classes")
    fits = fits or Fits(detector)
    classes = scored_classes(test_y, train_y)  # a class no training row holds cannot be predicted
    aug_X = np.vstack([train_X, extra_X])
    aug_y = np.concatenate([train_y, extra_y])
    base_runs, aug_runs = [], []
    for i, s in enumerate(seeds):
        if progress is not None:
            progress(f"seed {i + 1}/{len(seeds)}")
        base_runs.append(classification_scores(test_y, fits.model("real", s, train_X, train_y).predict(test_X), classes, normal))
        aug_runs.append(classification_scores(test_y, fits.model("augmented", s, aug_X, aug_y).predict(test_X), classes, normal))
    base, aug = mean_std(base_runs), mean_std(aug_runs)
    delta: dict[str, Any] = {
        "macro_f1": aug["macro_f1"]["mean"] - base["macro_f1"]["mean"],
        "accuracy": aug["accuracy"]["mean"] - base["accuracy"]["mean"],
        "per_class": {
            c: {
                m: aug["per_class"][c][m]["mean"] - base["per_class"][c][m]["mean"]
                for m in ("precision", "recall", "f1")
            }
            for c in classes
        },
    }
    if "fpr_normal" in base:
        delta["fpr_normal"] = aug["fpr_normal"]["mean"] - base["fpr_normal"]["mean"]
    added = {str(c): int(n) for c, n in zip(*np.unique(extra_y, return_counts=True))}
    return {"added": added, "base": base, "augmented": aug, "delta": delta, "seeds": list(seeds)}


# a detector team notices these: a class's precision falling by 5 points means many more false alerts
# of it; one more normal connection in a hundred flagged is a day's extra triage on a busy network
PRECISION_DROP = 0.05
FPR_RISE = 0.01


def augmentation_flags(
    uplift: Mapping[str, Any], *, precision_drop: float = PRECISION_DROP, fpr_rise: float = FPR_RISE
) -> list[dict[str, Any]]:
    """The harm an augmentation did, from :func:`augmentation_uplift`'s result: every class whose mean
    precision fell by more than ``precision_drop``, and the normal class's false-positive rate when it
    rose by more than ``fpr_rise`` (both absolute). Each flag holds ``metric``, ``class`` (None for the
    false-positive rate), ``base``, ``augmented`` and ``message``."""
    flags: list[dict[str, Any]] = []
    base, aug = uplift["base"], uplift["augmented"]
    for c, b in base["per_class"].items():
        before, after = b["precision"]["mean"], aug["per_class"][c]["precision"]["mean"]
        if before - after > precision_drop:
            flags.append({
                "metric": "precision", "class": c, "base": before, "augmented": after,
                "message": f"{c} precision fell from {before:.2f} to {after:.2f} with augmentation "
                f"(more than {precision_drop:.2f}): more rows of other classes are now called {c}",
            })
    if "fpr_normal" in base and "fpr_normal" in aug:
        before, after = base["fpr_normal"]["mean"], aug["fpr_normal"]["mean"]
        if after - before > fpr_rise:
            flags.append({
                "metric": "fpr_normal", "class": None, "base": before, "augmented": after,
                "message": f"false-positive rate on the normal class rose from {before:.3f} to {after:.3f} "
                f"with augmentation (more than {fpr_rise:.3f})",
            })
    return flags


def default_rare_classes(train_y: np.ndarray, share: float = 0.05) -> list[str]:
    """Classes below ``share`` of the training rows: the ones augmentation is meant to help."""
    values, counts = np.unique(train_y, return_counts=True)
    return [str(v) for v, c in zip(values, counts) if c / len(train_y) < share]
