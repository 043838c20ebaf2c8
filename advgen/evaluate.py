"""Judge generated samples with scikit-learn detectors: realism, fidelity, utility, uplift, privacy, rules.

Everything here works on what a domain exposes (``featurize``, ``labels``, validators), so images and
curves are judged by the same code as tables; only the per-column fidelity metrics and histograms need
tables (pandas DataFrames plus the ``[{"name", "kind", "role"}]`` column list a tabular spec carries).

Each metric is a plain function of arrays or DataFrames, documented with its direction and the value an
ideal generator gets (``METRICS`` holds the same facts for the report, the terminal table and
``docs/metrics.md``). :func:`evaluate` runs them all and returns a JSON-able report;
:func:`format_report`, :func:`write_plots` and :func:`write_html` present it.

Detectors are factories ``seed -> unfitted estimator`` taken by name from the plugin manager's
``detectors()`` registry. A user's pickled estimator can be used too, but only through
:func:`load_pickled_detector`, whose name says what it does: unpickling executes code.
"""

from __future__ import annotations

import base64
import html
import json
import math
import pickle
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from advgen.domain import Domain, Validator, run_validators
from advgen.errors import AdvgenError, InvalidDataError
from advgen.io import atomic_write_text, save_figure

DetectorFactory = Callable[[int], Any]

NUMERIC_KINDS = frozenset({"continuous", "count", "rate", "flag"})
CATEGORICAL_KINDS = frozenset({"categorical"})


# --- what each metric means ---------------------------------------------------------------------


@dataclass(frozen=True)
class MetricInfo:
    """How to read one number of the report: which way is better and what a perfect generator gets."""

    title: str
    direction: str  # "lower", "higher" or "closer to the ideal"
    ideal: str
    meaning: str


METRICS: dict[str, MetricInfo] = {
    "realism_auc": MetricInfo(
        "Realism AUC",
        "lower",
        "0.5",
        "Cross-validated ROC AUC of a detector told to separate real from synthetic rows (equal counts). "
        "0.5: indistinguishable; 1.0: every synthetic row is told apart. Run with gradient boosting (strict) "
        "and logistic regression on standardised features (graded, blind to broken dependence).",
    ),
    "correlation_difference": MetricInfo(
        "Correlation difference",
        "lower",
        "0",
        "Mean absolute difference between the Pearson correlation matrices of real and synthetic "
        "featurized samples (upper triangle). Catches generators with right marginals and no dependence.",
    ),
    "cross_column_validity": MetricInfo(
        "Cross-column validity",
        "higher",
        "the real data's own rate (1.0 for rules fitted on it)",
        "Fraction of samples passing every rule of the 'cross-column' validator group.",
    ),
    "ks_complement": MetricInfo(
        "KS complement",
        "higher",
        "1.0",
        "Per numeric column 1 - Kolmogorov-Smirnov statistic between real and synthetic values; mean over columns.",
    ),
    "tv_complement": MetricInfo(
        "TV complement",
        "higher",
        "1.0",
        "Per categorical column 1 - total-variation distance between real and synthetic category "
        "frequencies; mean over columns.",
    ),
    "table_correlation_difference": MetricInfo(
        "Column correlation difference",
        "lower",
        "0",
        "Mean absolute difference between Pearson correlations of the numeric columns, real vs synthetic.",
    ),
    "label_fidelity": MetricInfo(
        "Label fidelity",
        "higher",
        "the detector's recall on real test rows of the class (1.0 at best)",
        "A detector trained on real labelled rows classifies synthetic rows; per class c, the fraction of "
        "synthetic rows generated as c that it assigns to c.",
    ),
    "tstr_macro_f1": MetricInfo(
        "TSTR macro-F1",
        "higher",
        "TRTR macro-F1 (ratio 1.0)",
        "Detector trained on synthetic rows, tested on the real test set, against the same detector trained "
        "on the real training rows (TRTR). Ratio = TSTR / TRTR.",
    ),
    "augmentation_uplift": MetricInfo(
        "Augmentation uplift",
        "higher (recall and precision of the rare classes, macro-F1); lower (false-positive rate)",
        "positive recall gain with no precision loss and no rise of the normal class's false-positive rate",
        "Detector trained on real rows against the same detector trained on real rows plus synthetic rows of "
        "the rare classes, on the real test set, mean and standard deviation over detector seeds.",
    ),
    "memorisation": MetricInfo(
        "Distance to closest record",
        "closer to the ideal",
        "synthetic/held-out median ratio 1.0; share closer than the held-out 5th percentile 0.05; no exact copies",
        "Euclidean distance (standardised featurized rows) from each synthetic row to its nearest real "
        "training row, against the same distance for held-out real rows. Much smaller: copying; much larger: "
        "samples off the data.",
    ),
    "validity": MetricInfo(
        "Validator pass rate",
        "higher",
        "the real data's own rate (1.0 for rules fitted on it)",
        "Fraction of samples passing every domain rule; per rule and per group, for real and synthetic.",
    ),
}


# --- detectors ----------------------------------------------------------------------------------


def resolve_detector(name: str | DetectorFactory, manager: Any | None = None) -> tuple[str, DetectorFactory]:
    """A detector factory by registry name (or a factory passed through); unknown names list the known ones."""
    if callable(name):
        return getattr(name, "__name__", "custom"), name
    if manager is None:
        from advgen.plugins import get_manager

        manager = get_manager()
    registry = manager.detectors()
    if name not in registry:
        raise AdvgenError(f"unknown detector {name!r}; available: {', '.join(sorted(registry))}")
    return name, registry[name]


def load_pickled_detector(path: str | Path) -> DetectorFactory:
    """A factory cloning the scikit-learn estimator pickled in ``path``.

    Unpickling runs whatever code the file names: call this only on files you trust (the CLI puts it
    behind ``--unsafe-load-detector``). Each seed gets an unfitted clone with ``random_state`` set where
    the estimator has one.
    """
    from sklearn.base import clone

    p = Path(path)
    if not p.is_file():
        raise AdvgenError(f"detector file not found: {p}")
    try:
        with p.open("rb") as fh:
            estimator = pickle.load(fh)  # noqa: S301 - explicitly requested by the user, see docstring
    except Exception as exc:
        raise AdvgenError(f"cannot unpickle detector {p}: {type(exc).__name__}: {exc}") from None
    if not (hasattr(estimator, "fit") and hasattr(estimator, "predict")):
        raise AdvgenError(f"{p} holds a {type(estimator).__name__}, not an estimator with fit and predict")

    def factory(seed: int) -> Any:
        est = clone(estimator)
        params = est.get_params() if hasattr(est, "get_params") else {}
        seeded = {k: seed for k in params if k == "random_state" or k.endswith("__random_state")}
        if seeded:
            est.set_params(**seeded)
        return est

    factory.__name__ = f"pickled:{p.name}"
    return factory


# --- realism ------------------------------------------------------------------------------------


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _take(n: int, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    """Indices of at most ``limit`` of ``n`` rows, drawn without replacement."""
    if limit is None or n <= limit:
        return np.arange(n)
    return np.sort(rng.choice(n, size=limit, replace=False))


def _positive_scores(model: Any, X: np.ndarray) -> np.ndarray:
    if hasattr(model, "predict_proba"):
        return model.predict_proba(X)[:, 1]
    if hasattr(model, "decision_function"):
        return model.decision_function(X)
    return model.predict(X).astype(float)


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

    rng = _rng(seed)
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
        aucs.append(float(roc_auc_score(y[te], _positive_scores(model, X[te]))))
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


# --- fidelity of tables -------------------------------------------------------------------------


def _split_columns(columns: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    numeric = [c["name"] for c in columns if c.get("kind") in NUMERIC_KINDS and c.get("role", "feature") != "ignored"]
    categorical = [
        c["name"] for c in columns if c.get("kind") in CATEGORICAL_KINDS and c.get("role", "feature") != "ignored"
    ]
    return numeric, categorical


def check_columns(real: pd.DataFrame, synth: pd.DataFrame, columns: Sequence[Mapping[str, Any]], what: str = "synthetic") -> None:
    """Raise one clear line when ``synth`` lacks columns the schema (and the real data) has."""
    names = [c["name"] for c in columns]
    for frame, label in ((real, "real"), (synth, what)):
        missing = [n for n in names if n not in frame.columns]
        if missing:
            shown = ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
            raise InvalidDataError(f"{label} data lacks {len(missing)} column(s) of the schema: {shown}")


def _numeric(series: pd.Series) -> np.ndarray:
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
        r, s = _numeric(real[name]), _numeric(synth[name])
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
    """KS complement over numeric columns, TV complement over categoricals, correlation difference of numerics."""
    check_columns(real, synth, columns)
    numeric, categorical = _split_columns(columns)
    out: dict[str, Any] = {
        "ks_complement": ks_complement(real, synth, numeric),
        "tv_complement": tv_complement(real, synth, categorical),
    }
    if len(numeric) >= 2:
        r = real[numeric].apply(pd.to_numeric, errors="coerce").fillna(0.0).to_numpy(np.float64)
        s = synth[numeric].apply(pd.to_numeric, errors="coerce").fillna(0.0).to_numpy(np.float64)
        out["correlation_difference"] = correlation_difference(r, s)
    else:
        out["correlation_difference"] = float("nan")
    return out


# --- detectors on labelled data -----------------------------------------------------------------


class _Fits:
    """Detector fits cached by (training set name, seed): TRTR and the augmentation baseline share fits."""

    def __init__(self, factory: DetectorFactory) -> None:
        self.factory = factory
        self._cache: dict[tuple[str, int], Any] = {}

    def model(self, key: str, seed: int, X: np.ndarray, y: np.ndarray) -> Any:
        if (key, seed) not in self._cache:
            m = self.factory(seed)
            m.fit(X, y)
            self._cache[(key, seed)] = m
        return self._cache[(key, seed)]


def _classification(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str], normal: str | None) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    p, r, f, support = precision_recall_fscore_support(
        y_true, y_pred, labels=list(classes), zero_division=0
    )
    out: dict[str, Any] = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=list(classes), average="macro", zero_division=0)),
        "per_class": {
            c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(support[i])}
            for i, c in enumerate(classes)
        },
    }
    if normal is not None and normal in classes:
        is_normal = y_true == normal
        out["fpr_normal"] = float(np.mean(y_pred[is_normal] != normal)) if is_normal.any() else float("nan")
    return out


def _mean_std(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation, key by key, of nested dicts of floats with the same shape."""
    first = runs[0]
    out: dict[str, Any] = {}
    for key, value in first.items():
        if isinstance(value, dict):
            out[key] = _mean_std([r[key] for r in runs])
        elif key == "support":
            out[key] = value
        else:
            vals = np.array([r[key] for r in runs], dtype=np.float64)
            out[key] = {"mean": float(np.mean(vals)), "std": float(np.std(vals))}
    return out


def classes_of(y: np.ndarray) -> list[str]:
    """The sorted distinct classes of a label array (metrics are computed over the test set's classes)."""
    return sorted({str(v) for v in y})


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
    fits: _Fits | None = None,
) -> dict[str, Any]:
    """Per class c: share of synthetic rows generated as c that a detector trained on real rows calls c.

    Higher is better. The detector's own recall of c on real test rows (when given) is reported beside
    it as the reference an ideal generator reaches; ``mean`` is the unweighted mean over classes.
    """
    fits = fits or _Fits(detector)
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
    fits: _Fits | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train on synthetic, test on real (TSTR) against train on real, test on real (TRTR).

    Higher is better for both; the ideal generator's TSTR equals TRTR (ratio 1.0). Accuracy and macro-F1
    over the test set's classes, mean and spread over detector seeds.
    """
    fits = fits or _Fits(detector)
    classes = classes_of(test_y)
    trtr, tstr = [], []
    for i, s in enumerate(seeds):
        if progress is not None:
            progress(f"seed {i + 1}/{len(seeds)}")
        trtr.append(_classification(test_y, fits.model("real", s, train_X, train_y).predict(test_X), classes, normal))
        tstr.append(_classification(test_y, fits.model("synthetic", s, synth_X, synth_y).predict(test_X), classes, normal))
    keep = ("accuracy", "macro_f1")
    a = _mean_std([{k: r[k] for k in keep} for r in trtr])
    b = _mean_std([{k: r[k] for k in keep} for r in tstr])
    ratio = {
        k: (b[k]["mean"] / a[k]["mean"]) if a[k]["mean"] > 0 else float("nan") for k in keep
    }
    return {"trtr": a, "tstr": b, "ratio": ratio, "seeds": list(seeds)}


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
    fits: _Fits | None = None,
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
    fits = fits or _Fits(detector)
    classes = classes_of(test_y)
    aug_X = np.vstack([train_X, extra_X])
    aug_y = np.concatenate([train_y, extra_y])
    base_runs, aug_runs = [], []
    for i, s in enumerate(seeds):
        if progress is not None:
            progress(f"seed {i + 1}/{len(seeds)}")
        base_runs.append(_classification(test_y, fits.model("real", s, train_X, train_y).predict(test_X), classes, normal))
        aug_runs.append(_classification(test_y, fits.model("augmented", s, aug_X, aug_y).predict(test_X), classes, normal))
    base, aug = _mean_std(base_runs), _mean_std(aug_runs)
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


# --- memorisation -------------------------------------------------------------------------------

# distances below this (in standard deviations) count as copies: the neighbour search computes
# |a|^2 + |b|^2 - 2ab, whose rounding leaves about 1e-7 where the true distance is 0
EXACT_COPY = 1e-5


def memorisation(
    train_X: np.ndarray,
    synth_X: np.ndarray,
    holdout_X: np.ndarray,
    *,
    max_rows: int | None = 5_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Distance to the closest real training row: synthetic rows against held-out real rows.

    Rows are standardised with the training rows' mean and deviation; distances are Euclidean, found with
    scikit-learn's ``NearestNeighbors``. An ideal generator's rows lie as far from the training rows as
    unseen real rows do: ``median_ratio`` (synthetic median / held-out median) near 1, the share of
    synthetic rows closer than the held-out 5th percentile near 0.05, and no exact copies. A ratio well
    below 1 means the generator copies training rows; well above 1, it samples away from the data.
    Held-out rows from a shifted distribution (a later test set) lie farther away than unseen rows of the
    training distribution would, which flatters the ratio; the training rows' own nearest-other-row
    distance is reported as a second reference.
    """
    from sklearn.neighbors import NearestNeighbors

    rng = _rng(seed)
    train_X = np.asarray(train_X, dtype=np.float64)
    mu = train_X.mean(axis=0)
    sd = train_X.std(axis=0)
    sd[sd < 1e-12] = 1.0

    def scale(A: np.ndarray) -> np.ndarray:
        return (np.asarray(A, dtype=np.float64) - mu) / sd

    T = scale(train_X)
    nn = NearestNeighbors(n_neighbors=2).fit(T)
    S = scale(synth_X)[_take(len(synth_X), max_rows, rng)]
    H = scale(holdout_X)[_take(len(holdout_X), max_rows, rng)]
    d_s = nn.kneighbors(S, n_neighbors=1, return_distance=True)[0][:, 0]
    d_h = nn.kneighbors(H, n_neighbors=1, return_distance=True)[0][:, 0]
    own = T[_take(len(T), max_rows, rng)]
    d_t = nn.kneighbors(own, n_neighbors=2, return_distance=True)[0][:, 1]

    def summary(d: np.ndarray) -> dict[str, float]:
        return {
            "median": float(np.median(d)),
            "mean": float(np.mean(d)),
            "p05": float(np.percentile(d, 5)),
        }

    p05_h = float(np.percentile(d_h, 5))
    med_h = float(np.median(d_h))
    return {
        "synthetic": summary(d_s),
        "holdout": summary(d_h),
        "train_nearest_other": summary(d_t),
        "median_ratio": float(np.median(d_s) / med_h) if med_h > 0 else float("nan"),
        "closer_than_holdout_p05": float(np.mean(d_s < p05_h)),
        "exact_copies": float(np.mean(d_s < EXACT_COPY)),
        "n": {"synthetic": int(len(S)), "holdout": int(len(H))},
    }


# --- validity -----------------------------------------------------------------------------------


def validity(samples: Any, validators: Sequence[Validator], n: int) -> dict[str, Any]:
    """Validator pass rate overall, per group and per rule (higher is better; ideal: the real data's rate)."""
    return run_validators(samples, list(validators), n).to_dict()


# --- how evaluation sees samples -----------------------------------------------------------------


@dataclass
class Subject:
    """How samples are turned into what the metrics read: features, labels, rules and (for tables) columns.

    Built from a domain and its spec (:meth:`from_domain`), or from a DataFrame schema when no run is at
    hand (:meth:`for_table`: a CTGAN output, a CSV written by another tool). ``label_map`` maps the
    domain's labels to the classes evaluated (e.g. attack name -> category); values it lacks are kept.
    """

    featurize: Callable[[Any], np.ndarray]
    labels: Callable[[Any], np.ndarray | None]
    validators: list[Validator] = field(default_factory=list)
    count: Callable[[Any], int] = len
    columns: list[dict[str, Any]] | None = None
    plot: Callable[[Any, Any, Path], bool] | None = None
    name: str = "samples"
    label_map: dict[str, str] | None = None

    def y(self, samples: Any) -> np.ndarray | None:
        raw = self.labels(samples)
        if raw is None:
            return None
        values = np.asarray(raw).astype(str)
        if self.label_map:
            values = np.array([self.label_map.get(v, v) for v in values], dtype=object).astype(str)
        return values

    @classmethod
    def from_domain(
        cls,
        domain: Domain,
        spec: dict[str, Any],
        *,
        validators: Sequence[Validator] | None = None,
        label_map: dict[str, str] | None = None,
    ) -> Subject:
        if validators is None:
            from advgen.plugins import get_manager

            validators = get_manager().validators(domain, spec)
        columns = spec.get("columns")
        return cls(
            featurize=lambda s: np.asarray(domain.featurize(s, spec), dtype=np.float64),
            labels=lambda s: domain.labels(s, spec),
            validators=list(validators),
            count=domain.num_samples,
            columns=[dict(c) for c in columns] if columns else None,
            plot=lambda real, fake, path: bool(domain.plot(real, fake, path, spec)),
            name=domain.name,
            label_map=label_map,
        )

    @classmethod
    def for_table(
        cls,
        columns: Sequence[Mapping[str, Any]],
        real: pd.DataFrame,
        *,
        label: str | None = None,
        label_map: dict[str, str] | None = None,
        validators: Sequence[Validator] = (),
        name: str = "table",
    ) -> Subject:
        """Featurize DataFrames by the schema: numeric columns, categoricals one-hot.

        Counts and continuous columns pass through ``sign(x) * log1p(|x|)``: tree detectors do not
        notice a monotone map, and linear ones are no longer ruled by a few rows of 10^8 bytes (on raw
        NSL-KDD values, logistic regression needs minutes to converge and then sees little but the
        outliers). The vocabulary of each categorical is fitted on ``real`` (unseen synthetic values get
        all zeros); a numeric value that is not a finite number becomes the real column's median.
        """
        cols = [dict(c) for c in columns]
        if label is None:
            label = next((c["name"] for c in cols if c.get("role") == "label"), None)
        features = [c for c in cols if c.get("role", "feature") == "feature"]
        if not features:
            raise InvalidDataError("the table schema has no feature column")
        check_columns(real, real, cols, what="real")
        numeric = [c["name"] for c in features if c.get("kind") in NUMERIC_KINDS]
        logged = np.array([c.get("kind") in ("count", "continuous") for c in features if c.get("kind") in NUMERIC_KINDS])
        categorical = [c["name"] for c in features if c.get("kind") in CATEGORICAL_KINDS]
        medians = {n: float(np.nanmedian(pd.to_numeric(real[n], errors="coerce"))) for n in numeric}
        vocab = {n: sorted(real[n].astype(str).unique()) for n in categorical}

        def featurize(df: pd.DataFrame) -> np.ndarray:
            check_columns(real, df, [c for c in cols if c.get("role", "feature") == "feature"])
            parts = []
            if numeric:
                num = df[numeric].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
                for j, n in enumerate(numeric):
                    bad = ~np.isfinite(num[:, j])
                    if bad.any():
                        num[bad, j] = medians[n]
                num[:, logged] = np.sign(num[:, logged]) * np.log1p(np.abs(num[:, logged]))
                parts.append(num)
            for n in categorical:
                values = df[n].astype(str).to_numpy()
                index = {v: i for i, v in enumerate(vocab[n])}
                onehot = np.zeros((len(df), len(vocab[n])), dtype=np.float64)
                pos = np.array([index.get(v, -1) for v in values])
                hit = pos >= 0
                onehot[np.flatnonzero(hit), pos[hit]] = 1.0
                parts.append(onehot)
            return np.hstack(parts)

        def labels(df: pd.DataFrame) -> np.ndarray | None:
            if label is None:
                return None
            if label not in df.columns:
                raise InvalidDataError(f"samples lack the label column {label!r}")
            return df[label].astype(str).to_numpy()

        return cls(
            featurize=featurize,
            labels=labels,
            validators=list(validators),
            count=len,
            columns=cols,
            plot=None,
            name=name,
            label_map=label_map,
        )


# --- the whole evaluation -----------------------------------------------------------------------

ALL_SECTIONS = ("realism", "fidelity", "label_fidelity", "utility", "augmentation", "memorisation", "validity")


def default_rare_classes(train_y: np.ndarray, share: float = 0.05) -> list[str]:
    """Classes below ``share`` of the training rows: the ones augmentation is meant to help."""
    values, counts = np.unique(train_y, return_counts=True)
    return [str(v) for v, c in zip(values, counts) if c / len(train_y) < share]


@contextmanager
def _phase(say: Callable[[str], None], name: str, timings: dict[str, float], key: str) -> Iterator[Callable[[str], None]]:
    """Tell ``say`` when a phase starts and how many seconds it took; the block gets a callable for
    progress within the phase. The seconds add up under ``timings[key]`` for the report."""
    say(f"{name} ...")
    t = time.perf_counter()
    yield lambda msg: say(f"{name}: {msg}")
    seconds = time.perf_counter() - t
    timings[key] = timings.get(key, 0.0) + seconds
    say(f"{name}: done in {seconds:.1f} s")


def evaluate(
    synthetic: Any,
    real: Any,
    test: Any | None = None,
    *,
    subject: Subject,
    detector: str | DetectorFactory = "random-forest",
    seeds: int = 5,
    utility_seeds: int | None = None,
    seed: int = 0,
    rare: Sequence[str] | None = None,
    normal: str | None = "normal",
    augment_with: Any | None = None,
    augment_per_class: int | None = None,
    holdout: Any | None = None,
    realism_detectors: Sequence[str | DetectorFactory] = ("gradient-boosting", "logistic-regression"),
    folds: int = 5,
    max_rows: int | None = 10_000,
    sections: Collection[str] = ALL_SECTIONS,
    manager: Any | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Judge ``synthetic`` samples against ``real`` training samples and a real ``test`` set.

    ``detector`` (a registry name or a factory) drives label fidelity, utility and augmentation, over
    ``seeds`` detector seeds (``utility_seeds`` for TSTR/TRTR, default the same). Augmentation adds the
    synthetic rows of the ``rare`` classes (default: classes under 5% of the training rows) to the real
    training rows, at most ``augment_per_class`` per class, taken from ``augment_with`` when given (e.g.
    rows sampled per class from a conditional run) or else from ``synthetic``. Memorisation compares with
    ``holdout`` real rows, default the test set. Returns a JSON-able dict; sections that cannot be
    computed (no labels, no test set, no table columns) are listed under ``skipped`` with the reason.

    ``progress`` is told when each phase starts, its progress (folds, seeds) and its seconds. On a
    machine shared with other work, run the call inside ``advgen.threads.limit_threads(n)``: the
    detectors otherwise start a thread per core each.
    """
    say = progress or (lambda _msg: None)
    unknown = set(sections) - set(ALL_SECTIONS)
    if unknown:
        raise AdvgenError(f"unknown evaluation section(s) {sorted(unknown)}; known: {', '.join(ALL_SECTIONS)}")
    if seeds < 1:
        raise AdvgenError(f"seeds must be at least 1, got {seeds}")
    det_name, factory = resolve_detector(detector, manager)
    n_syn, n_real = subject.count(synthetic), subject.count(real)
    if n_syn == 0:
        raise InvalidDataError("the synthetic samples are empty")
    if n_real == 0:
        raise InvalidDataError("the real samples are empty")
    if test is not None and subject.count(test) == 0:
        raise InvalidDataError("the test samples are empty")

    started = time.perf_counter()
    report: dict[str, Any] = {
        "subject": subject.name,
        "detector": det_name,
        "n": {"synthetic": n_syn, "real": n_real, "test": subject.count(test) if test is not None else 0},
        "skipped": {},
        "notes": [],
        "metrics": {k: vars(v) for k, v in METRICS.items()},
    }
    skipped = report["skipped"]
    timings: dict[str, float] = {}

    with _phase(say, "featurizing", timings, "featurizing"):
        real_X, syn_X = subject.featurize(real), subject.featurize(synthetic)
        if real_X.shape[1] != syn_X.shape[1]:
            raise InvalidDataError(
                f"real and synthetic samples featurize to {real_X.shape[1]} and {syn_X.shape[1]} features"
            )
        test_X = subject.featurize(test) if test is not None else None
    real_y, syn_y = subject.y(real), subject.y(synthetic)
    test_y = subject.y(test) if test is not None else None
    labelled = real_y is not None and syn_y is not None
    chosen: list[str] = []
    if "augmentation" in sections and labelled and test_y is not None:
        # checked before any detector is fitted: a typo should cost seconds, not minutes
        chosen = list(rare) if rare else default_rare_classes(real_y)
        missing = [c for c in chosen if c not in set(test_y)]
        if missing:
            raise InvalidDataError(
                f"class(es) {', '.join(missing)} do not occur in the test set; "
                f"its classes: {', '.join(classes_of(test_y))}"
            )
        unknown_rare = [c for c in chosen if c not in set(real_y)]
        if unknown_rare:
            raise InvalidDataError(
                f"class(es) {', '.join(unknown_rare)} do not occur in the real training data; "
                f"its classes: {', '.join(classes_of(real_y))}"
            )
    fits = _Fits(factory)
    seed_list = [seed + i for i in range(seeds)]
    utility_list = [seed + i for i in range(utility_seeds or seeds)]

    validators = subject.validators
    if "validity" in sections or "realism" in sections:
        if validators:
            with _phase(say, "validators", timings, "validity"):
                report["validity"] = {
                    "real": validity(real, validators, n_real),
                    "synthetic": validity(synthetic, validators, n_syn),
                }
        else:
            skipped["validity"] = "no validators for these samples"

    if "realism" in sections:
        realism: dict[str, Any] = {"auc": {}}
        for det in realism_detectors:
            name, fac = resolve_detector(det, manager)
            with _phase(say, f"realism AUC ({name})", timings, "realism") as step:
                realism["auc"][name] = realism_auc(
                    real_X, syn_X, fac, folds=folds, max_rows=max_rows, seed=seed, progress=step
                )
        with _phase(say, "correlation difference", timings, "realism"):
            realism["correlation_difference"] = correlation_difference(real_X, syn_X)
        groups = report.get("validity", {})
        if groups and "cross-column" in groups["synthetic"]["per_group"]:
            realism["cross_column_validity"] = {
                "real": groups["real"]["per_group"]["cross-column"],
                "synthetic": groups["synthetic"]["per_group"]["cross-column"],
            }
        report["realism"] = realism

    if "fidelity" in sections:
        if subject.columns and isinstance(real, pd.DataFrame) and isinstance(synthetic, pd.DataFrame):
            with _phase(say, "fidelity per column", timings, "fidelity"):
                report["fidelity"] = table_fidelity(real, synthetic, subject.columns)
        else:
            skipped["fidelity"] = "per-column fidelity needs table samples with a column schema"

    if "label_fidelity" in sections:
        if labelled:
            with _phase(say, f"label fidelity ({det_name} on the real rows)", timings, "label_fidelity"):
                report["label_fidelity"] = label_fidelity(
                    real_X, real_y, syn_X, syn_y, factory, seed=seed, test_X=test_X, test_y=test_y, fits=fits
                )
        else:
            skipped["label_fidelity"] = "samples have no labels"

    need_test = [s for s in ("utility", "augmentation", "memorisation") if s in sections]
    if test is None:
        for s in need_test:
            skipped[s] = "no test set"
    if test is not None and "utility" in sections:
        if labelled and test_y is not None:
            with _phase(say, f"utility (TSTR vs TRTR, {det_name})", timings, "utility") as step:
                report["utility"] = utility(
                    real_X, real_y, syn_X, syn_y, test_X, test_y, factory, seeds=utility_list, normal=normal,
                    fits=fits, progress=step,
                )
        else:
            skipped["utility"] = "samples have no labels"

    if test is not None and "augmentation" in sections:
        if labelled and test_y is not None:
            if augment_with is not None:
                ext_X, ext_y = subject.featurize(augment_with), subject.y(augment_with)
                if ext_y is None:
                    raise InvalidDataError("the augmentation samples have no labels")
            else:
                ext_X, ext_y = syn_X, syn_y
            rng = _rng(seed)
            pick = []
            for c in chosen:
                idx = np.flatnonzero(ext_y == c)
                if augment_per_class is not None and len(idx) > augment_per_class:
                    idx = np.sort(rng.choice(idx, size=augment_per_class, replace=False))
                pick.append(idx)
            pick_idx = np.concatenate(pick) if pick else np.array([], dtype=int)
            if not chosen:
                skipped["augmentation"] = "no rare class (none under 5% of the training rows); pass rare=[...]"
            elif len(pick_idx) == 0:
                skipped["augmentation"] = f"no synthetic rows of {', '.join(chosen)}"
            else:
                phase = f"augmentation uplift ({', '.join(chosen)}, {det_name})"
                with _phase(say, phase, timings, "augmentation") as step:
                    up = augmentation_uplift(
                        real_X, real_y, ext_X[pick_idx], ext_y[pick_idx], test_X, test_y, factory,
                        seeds=seed_list, normal=normal, fits=fits, progress=step,
                    )
                up["classes"] = chosen
                up["flags"] = augmentation_flags(up)
                absent = [c for c in chosen if c not in up["added"]]
                if absent:
                    report["notes"].append(f"no synthetic rows of {', '.join(absent)} to add")
                report["augmentation"] = up
        else:
            skipped["augmentation"] = "samples have no labels"

    if "memorisation" in sections and (test is not None or holdout is not None):
        skipped.pop("memorisation", None)
        with _phase(say, "memorisation (distance to closest record)", timings, "memorisation"):
            hold_X = subject.featurize(holdout) if holdout is not None else test_X
            report["memorisation"] = memorisation(real_X, syn_X, hold_X, max_rows=max_rows, seed=seed)
        report["memorisation"]["holdout"]["source"] = "holdout" if holdout is not None else "test set"

    timings["total"] = time.perf_counter() - started
    report["seconds"] = timings
    return _jsonable(report)


def _jsonable(obj: Any) -> Any:
    """Plain Python types only, NaN as None, so that ``json.dumps`` writes strict JSON."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def write_json(report: dict[str, Any], path: str | Path) -> None:
    atomic_write_text(path, json.dumps(report, indent=2, allow_nan=False) + "\n")


# --- presenting ---------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict) and "mean" in value:
        std = value.get("std")
        return f"{value['mean']:.{digits}f} ± {std:.{digits}f}" if std is not None else f"{value['mean']:.{digits}f}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(metric, value, better, ideal) rows for the headline numbers of a report."""
    rows: list[tuple[str, str, str, str]] = []
    m = METRICS
    realism = report.get("realism")
    if realism:
        for name, auc in realism["auc"].items():
            rows.append((f"realism AUC ({name})", _fmt(auc), m["realism_auc"].direction, m["realism_auc"].ideal))
        rows.append(("correlation difference", _fmt(realism["correlation_difference"]), "lower", "0"))
        if "cross_column_validity" in realism:
            ccv = realism["cross_column_validity"]
            rows.append(("cross-column validity", _fmt(ccv["synthetic"]), "higher", f"real {_fmt(ccv['real'])}"))
    fid = report.get("fidelity")
    if fid:
        rows.append(("KS complement (numeric)", _fmt(fid["ks_complement"]["mean"]), "higher", "1.0"))
        rows.append(("TV complement (categorical)", _fmt(fid["tv_complement"]["mean"]), "higher", "1.0"))
        rows.append(("column correlation difference", _fmt(fid["correlation_difference"]), "lower", "0"))
    lf = report.get("label_fidelity")
    if lf:
        ref = lf.get("real_test_recall_mean")
        rows.append(("label fidelity (mean over classes)", _fmt(lf["mean"]), "higher", f"real {_fmt(ref)}" if ref is not None else "1.0"))
    ut = report.get("utility")
    if ut:
        rows.append(("TSTR macro-F1", _fmt(ut["tstr"]["macro_f1"]), "higher", f"TRTR {_fmt(ut['trtr']['macro_f1'])}"))
        rows.append(("TSTR accuracy", _fmt(ut["tstr"]["accuracy"]), "higher", f"TRTR {_fmt(ut['trtr']['accuracy'])}"))
        rows.append(("TSTR/TRTR macro-F1 ratio", _fmt(ut["ratio"]["macro_f1"]), "higher", "1.0"))
    au = report.get("augmentation")
    if au:
        rows.append(("augmented macro-F1", _fmt(au["augmented"]["macro_f1"]), "higher", f"base {_fmt(au['base']['macro_f1'])}"))
        if "fpr_normal" in au["base"]:
            rose = any(f["metric"] == "fpr_normal" for f in _flags(au))
            value = _fmt(au["augmented"]["fpr_normal"]) + ("  ! rose" if rose else "")
            rows.append(("augmented FPR on normal", value, "lower", f"base {_fmt(au['base']['fpr_normal'])}"))
    mem = report.get("memorisation")
    if mem:
        rows.append(("DCR median ratio synth/held-out", _fmt(mem["median_ratio"]), "closer to 1", "1.0"))
        rows.append(("share closer than held-out p5", _fmt(mem["closer_than_holdout_p05"]), "closer to 0.05", "0.05"))
        rows.append(("exact copies of training rows", _fmt(mem["exact_copies"]), "lower", "0"))
    val = report.get("validity")
    if val:
        rows.append(("validity (all rules)", _fmt(val["synthetic"]["pass_rate"]), "higher", f"real {_fmt(val['real']['pass_rate'])}"))
        for g, rate in val["synthetic"]["per_group"].items():
            rows.append((f"validity ({g})", _fmt(rate), "higher", f"real {_fmt(val['real']['per_group'].get(g))}"))
    return rows


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(header)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(header, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


AUGMENTATION_HEADER = ("class", "test rows", "added", "recall base", "recall aug", "precision base", "precision aug", "flag")


def _flags(au: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The augmentation's flags (reports written before flags existed get them computed here)."""
    return list(au["flags"]) if "flags" in au else augmentation_flags(au)


def augmentation_rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    """Per class (``AUGMENTATION_HEADER``): test rows, rows added, recall and precision without and with
    augmentation, and a flag where precision fell by more than ``PRECISION_DROP``."""
    au = report.get("augmentation")
    if not au:
        return []
    fell = {f["class"] for f in _flags(au) if f["metric"] == "precision"}
    rows = []
    for c, base in au["base"]["per_class"].items():
        aug = au["augmented"]["per_class"][c]
        mark = "*" if c in au.get("classes", []) else ""
        rows.append((
            f"{c}{mark}", str(base["support"]), str(au["added"].get(c, 0)),
            _fmt(base["recall"]), _fmt(aug["recall"]), _fmt(base["precision"]), _fmt(aug["precision"]),
            "! precision fell" if c in fell else "",
        ))
    return rows


def augmentation_warnings(report: dict[str, Any]) -> list[str]:
    """One sentence per flag of the augmentation (precision drops, false-positive rise)."""
    au = report.get("augmentation")
    return [f["message"] for f in _flags(au)] if au else []


def format_report(report: dict[str, Any]) -> str:
    """The report as terminal tables: headline metrics, then per-class recall/precision with and without augmentation."""
    n = report["n"]
    parts = [
        f"{report['subject']}: {n['synthetic']} synthetic, {n['real']} real training, {n['test']} real test samples; "
        f"detector {report['detector']}",
        "",
        _table(("metric", "value", "better", "ideal / reference"), summary_rows(report)),
    ]
    rows = augmentation_rows(report)
    if rows:
        parts += [
            "",
            "augmentation (* = augmented class; mean ± std over seeds)",
            _table(AUGMENTATION_HEADER, rows),
        ]
        parts += [f"WARNING: {w}" for w in augmentation_warnings(report)]
    for key, reason in report.get("skipped", {}).items():
        parts.append(f"skipped {key}: {reason}")
    for note in report.get("notes", []):
        parts.append(f"note: {note}")
    return "\n".join(parts)


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise AdvgenError("plots need matplotlib: pip install 'advgen[plot]'") from None
    return plt


def worst_columns(report: Mapping[str, Any], limit: int | None = None) -> list[tuple[str, str, float]]:
    """``(column, metric, value)`` of the report's per-column fidelity, the most different first
    (lowest KS or TV complement); at most ``limit``."""
    fid = report.get("fidelity") or {}
    scored = [(c, "KS", v) for c, v in (fid.get("ks_complement") or {}).get("per_column", {}).items()]
    scored += [(c, "TV", v) for c, v in (fid.get("tv_complement") or {}).get("per_column", {}).items()]
    scored.sort(key=lambda cmv: (cmv[2] if cmv[2] is not None else -1.0, cmv[0]))
    return scored[:limit] if limit is not None else scored


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
            r, s = _numeric(real[name]), _numeric(synth[name])
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
    fell = {f["class"] for f in _flags(au) if f["metric"] == "precision"}
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


def write_html(report: dict[str, Any], images: Sequence[str | Path], path: str | Path, *, title: str = "advgen evaluation") -> Path:
    """One self-contained HTML file: the headline table, per-class augmentation (drops flagged), validity
    per rule, per-column fidelity (worst first, folded), and the plots embedded as base64 PNG, so the
    file can be mailed or archived alone."""
    esc = html.escape

    def table(header: Sequence[str], rows: Sequence[Sequence[str]], flag_col: int | None = None) -> str:
        head = "".join(f"<th>{esc(str(h))}</th>" for h in header)
        body = "".join(
            ("<tr class='flag'>" if flag_col is not None and r[flag_col] else "<tr>")
            + "".join(f"<td>{esc(str(c))}</td>" for c in r)
            + "</tr>"
            for r in rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    n = report["n"]
    warnings = augmentation_warnings(report)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
        "th{background:#eee}img{max-width:100%}tr.flag td{background:#fde2e1}"
        ".warn{background:#fde2e1;border-left:4px solid #c0392b;padding:6px 10px;margin:1em 0}"
        "summary{cursor:pointer;font-weight:bold;margin:1em 0}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f"<p>{esc(report['subject'])}: {n['synthetic']} synthetic, {n['real']} real training, {n['test']} real test "
        f"samples; detector <b>{esc(report['detector'])}</b>.</p>",
        "<h2>Summary</h2>",
        table(("metric", "value", "better", "ideal / reference"), summary_rows(report)),
    ]
    parts += [f"<p class='warn'>Warning: {esc(w)}</p>" for w in warnings]
    rows = augmentation_rows(report)
    if rows:
        parts += [
            "<h2>Augmentation</h2><p>Mean ± std over detector seeds; * marks the augmented classes; rows whose "
            f"precision fell by more than {PRECISION_DROP:.2f} are flagged.</p>",
            table(AUGMENTATION_HEADER, rows, flag_col=len(AUGMENTATION_HEADER) - 1),
        ]
    val = report.get("validity")
    if val:
        rule_rows = [
            (rule, _fmt(val["real"]["per_rule"].get(rule)), _fmt(rate)) for rule, rate in val["synthetic"]["per_rule"].items()
        ]
        parts += ["<h2>Validity per rule</h2>", table(("rule", "real", "synthetic"), rule_rows)]
    for img in images:
        data = base64.b64encode(Path(img).read_bytes()).decode("ascii")
        heading = plot_title(img)
        parts.append(f"<h2>{esc(heading)}</h2><img alt='{esc(heading)}' src='data:image/png;base64,{data}'>")
    scored = worst_columns(report)
    if scored:
        col_rows = [(c, f"{metric} complement", _fmt(v)) for c, metric, v in scored]
        parts += [
            f"<details><summary>Fidelity of every column ({len(scored)} columns, most different first)</summary>",
            table(("column", "metric", "value (1.0: same distribution)"), col_rows),
            "</details>",
        ]
    parts.append("<h2>Metric definitions</h2>")
    parts.append(table(("metric", "better", "ideal", "meaning"), [(v.title, v.direction, v.ideal, v.meaning) for v in METRICS.values()]))
    skipped = report.get("skipped", {})
    if skipped:
        parts.append("<h2>Skipped</h2><ul>" + "".join(f"<li>{esc(k)}: {esc(v)}</li>" for k, v in skipped.items()) + "</ul>")
    parts.append(
        "<details><summary>Raw report (JSON)</summary><pre>" + esc(json.dumps(report, indent=1)) + "</pre></details>"
    )
    parts.append("</body></html>")
    target = Path(path)
    atomic_write_text(target, "\n".join(parts))
    return target
