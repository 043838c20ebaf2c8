"""Built-in scikit-learn detectors, each a factory ``seed -> unfitted estimator``."""

from __future__ import annotations

from typing import Any, Callable

from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def random_forest(seed: int) -> Any:
    return RandomForestClassifier(n_estimators=100, n_jobs=-1, random_state=seed)


def gradient_boosting(seed: int) -> Any:
    return HistGradientBoostingClassifier(max_iter=200, random_state=seed)


def logistic_regression(seed: int) -> Any:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))


def mlp(seed: int) -> Any:
    return make_pipeline(
        StandardScaler(),
        MLPClassifier(hidden_layer_sizes=(128, 64), max_iter=200, early_stopping=True, random_state=seed),
    )


BUILTIN_DETECTORS: dict[str, Callable[[int], Any]] = {
    "random-forest": random_forest,
    "gradient-boosting": gradient_boosting,
    "logistic-regression": logistic_regression,
    "mlp": mlp,
}
