"""Detectors as the metrics use them: found by name, fitted once per seed, scored on labelled rows.

Detectors are factories ``seed -> unfitted estimator`` taken by name from the plugin manager's
``detectors()`` registry (:func:`resolve_detector`). A user's pickled estimator can be used too, but only
through :func:`load_pickled_detector`, whose name says what it does: unpickling executes code.
:class:`Fits` lets metrics trained on the same rows with the same seed share one fit;
:func:`classification_scores` gives accuracy and macro-F1 (higher is better), per-class precision, recall
and F1 (higher) and the normal class's false-positive rate (lower).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from advgen.errors import AdvgenError

DetectorFactory = Callable[[int], Any]


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


def positive_scores(model: Any, X: np.ndarray) -> np.ndarray:
    """The score of class 1 (probability, else decision function, else the prediction) that ROC AUC ranks."""
    if hasattr(model, "predict_proba"):
        return model.predict_proba(X)[:, 1]
    if hasattr(model, "decision_function"):
        return model.decision_function(X)
    return model.predict(X).astype(float)


class Fits:
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


def classification_scores(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str], normal: str | None) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-class precision/recall/F1/support over ``classes``, and, when ``normal``
    is one of them, ``fpr_normal``: the share of normal rows predicted as anything else."""
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


def mean_std(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation, key by key, of nested dicts of floats with the same shape."""
    first = runs[0]
    out: dict[str, Any] = {}
    for key, value in first.items():
        if isinstance(value, dict):
            out[key] = mean_std([r[key] for r in runs])
        elif key == "support":
            out[key] = value
        else:
            vals = np.array([r[key] for r in runs], dtype=np.float64)
            out[key] = {"mean": float(np.mean(vals)), "std": float(np.std(vals))}
    return out


def classes_of(y: np.ndarray) -> list[str]:
    """The sorted distinct classes of a label array (metrics are computed over the test set's classes)."""
    return sorted({str(v) for v in y})


def scored_classes(test_y: np.ndarray, train_y: np.ndarray) -> list[str]:
    """The classes macro-F1 and the per-class scores are computed over: the test set's classes that the
    training rows hold. A detector can never predict a class it was not trained on, so such a class
    would only add an F1 of 0 to the mean (six test rows of a new class took a macro-F1 of 0.96 to
    0.64); its rows stay in the test set, count as errors in accuracy and as false alarms of the
    class they are called (:func:`unseen_classes` names them)."""
    trained = {str(v) for v in train_y}
    return [c for c in classes_of(test_y) if c in trained]


def unseen_classes(test_y: np.ndarray, train_y: np.ndarray) -> dict[str, int]:
    """Test classes the training rows do not hold, with their number of test rows."""
    trained = {str(v) for v in train_y}
    values, counts = np.unique(np.asarray(test_y).astype(str), return_counts=True)
    return {str(v): int(n) for v, n in zip(values, counts) if str(v) not in trained}


def benign_class(classes: Iterable[str], normal: str | None) -> str | None:
    """The benign class as the labels spell it: ``normal`` (default ``"normal"``) itself, else the one
    class equal to it but for case (UNSW-NB15's ``Normal``), else, for the default, a ``benign`` class in
    any case (CIC-IDS2017's ``BENIGN``, malware folders' ``benign``); None when there is none."""
    classes = set(classes)
    asked = normal or "normal"
    if asked in classes:
        return asked
    for wanted in (asked, "benign") if asked == "normal" else (asked,):
        same = [c for c in classes if c.casefold() == wanted.casefold()]
        if len(same) == 1:
            return same[0]
    return None
