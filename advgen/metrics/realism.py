"""Realism: can a detector tell synthetic samples from real ones, and is the dependence between features kept?

- :func:`realism_auc`: cross-validated ROC AUC of a detector separating real from synthetic rows; lower
  is better, 0.5 is ideal (indistinguishable), 1.0 means every synthetic row is told apart;
- :func:`correlation_difference`: mean absolute difference of Pearson correlations between features, real
  vs synthetic; lower is better, 0 is ideal.

Both read featurized samples (arrays), so they judge tables, images and curves alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from advgen.errors import AdvgenError, InvalidDataError
from advgen.metrics.detectors import DetectorFactory, positive_scores


def realism_auc(
    real_X: np.ndarray,
    synth_X: np.ndarray,
    detector: DetectorFactory,
    *,
    folds: int = 5,
    max_rows: int | None = 10_000,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Cross-validated ROC AUC of ``detector`` separating real (0) from synthetic (1) rows.

    Lower is better; 0.5 is ideal (indistinguishable), 1.0 means every synthetic row is told apart.
    Both sides are cut to the same count (at most ``max_rows`` each) so that the AUC reflects realism and
    not class balance. Folds are stratified; the mean and spread over folds are reported.
    ``progress`` is told ``"fold k/folds"`` before each fit.
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    rng = np.random.default_rng(seed)
    n = min(len(real_X), len(synth_X))
    if max_rows is not None:
        n = min(n, max_rows)
    if n < folds * 2:
        raise AdvgenError(f"realism AUC needs at least {folds * 2} real and synthetic rows, got {n}")
    r = real_X[rng.choice(len(real_X), size=n, replace=False)]
    s = synth_X[rng.choice(len(synth_X), size=n, replace=False)]
    X = np.vstack([r, s])
    y = np.r_[np.zeros(n, dtype=int), np.ones(n, dtype=int)]
    aucs = []
    for k, (tr, te) in enumerate(StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y)):
        if progress is not None:
            progress(f"fold {k + 1}/{folds}")
        model = detector(seed + k)
        model.fit(X[tr], y[tr])
        aucs.append(float(roc_auc_score(y[te], positive_scores(model, X[te]))))
    return {"mean": float(np.mean(aucs)), "std": float(np.std(aucs)), "folds": aucs, "n_per_side": n}


def _corr(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlation matrix and the mask of non-constant columns."""
    X = np.asarray(X, dtype=np.float64)
    sd = X.std(axis=0)
    live = sd > 1e-12
    Z = np.zeros_like(X)
    Z[:, live] = (X[:, live] - X[:, live].mean(axis=0)) / sd[live]
    return (Z.T @ Z) / max(len(X), 1), live


def correlation_difference(real_X: np.ndarray, synth_X: np.ndarray, *, max_features: int = 512) -> float:
    """Mean absolute difference of Pearson correlations, real vs synthetic, over feature pairs.

    Lower is better; 0 is ideal. Pairs involving a column constant in the real data are left out (their
    correlation is undefined); a column constant only in the synthetic data counts as correlation 0,
    which is what it carries. Wide inputs (images) keep the ``max_features`` columns of highest real
    variance, so the cost stays bounded.
    """
    real_X = np.asarray(real_X, dtype=np.float64)
    synth_X = np.asarray(synth_X, dtype=np.float64)
    if real_X.shape[1] != synth_X.shape[1]:
        raise InvalidDataError(
            f"real and synthetic samples have {real_X.shape[1]} and {synth_X.shape[1]} features"
        )
    if real_X.shape[1] > max_features:
        keep = np.sort(np.argsort(real_X.var(axis=0))[::-1][:max_features])
        real_X, synth_X = real_X[:, keep], synth_X[:, keep]
    cr, live = _corr(real_X)
    cs, _ = _corr(synth_X)
    idx = np.flatnonzero(live)
    if len(idx) < 2:
        return float("nan")
    sub_r = cr[np.ix_(idx, idx)]
    sub_s = cs[np.ix_(idx, idx)]
    iu = np.triu_indices(len(idx), k=1)
    return float(np.mean(np.abs(sub_r[iu] - sub_s[iu])))
