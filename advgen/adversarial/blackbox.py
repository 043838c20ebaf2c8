"""The detector under attack, seen as a black box that counts every question asked of it.

An attack sees only :class:`BlackBox`: ``predict`` (attack or not, per row) and, when the user allows
it, ``predict_proba`` (the detector's attack probability). Every row asked about is one query; with a
budget, a question that would go beyond it raises :class:`QueryBudgetExhausted` before anything is
asked, so an attack can stop training cleanly and say so.

Detectors (:func:`make_detector`):

- built-in names, trained by advgen on the training data as a binary normal-vs-attack IDS on advgen's
  detector features (numeric columns, counts as ``sign(x) log1p|x|``, categoricals one-hot):
  ``random-forest`` (100 trees), ``gradient-boosting``, ``logistic-regression``, ``mlp`` (the project's
  registry, where plugins add theirs), and ``svm``, ``knn``, ``naive-bayes``, ``decision-tree``;
- a ``.onnx`` file: a user's model exported with skl2onnx, run by onnxruntime (loading it executes no
  Python). Either one float input ``[N, W]`` fed with advgen's detector features (W must match), or
  one input per feature column, named as the column (strings for categoricals);
- a pickled scikit-learn estimator, cloned and trained on the data, only with ``unsafe_pickle=True``
  (the CLI's ``--unsafe-load-detector``): unpickling executes code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import pandas as pd

from advgen.errors import AdvgenError, InvalidDataError

FEATURIZATION = "advgen-detector-features-1"


class QueryBudgetExhausted(AdvgenError):
    """The black box's query budget would be exceeded."""


# --- detector features ---------------------------------------------------------------------------


class Featurizer:
    """advgen's detector features of a table, as :meth:`advgen.evaluate.Subject.for_table` makes them:
    numeric columns and flags in table order (counts and continuous columns as ``sign(x) log1p|x|``, a
    non-finite value replaced by the training median), then each categorical one-hot over the
    training data's sorted vocabulary (an unseen value: all zeros). ``names`` names every feature."""

    def __init__(self, train: pd.DataFrame, features: Sequence[tuple[str, str]], label: str):
        from advgen.metrics.fidelity import CATEGORICAL_KINDS, NUMERIC_KINDS

        self.features = [(n, k) for n, k in features]
        missing = [n for n, _ in self.features if n not in train.columns]
        if missing:
            raise InvalidDataError(f"the training data lacks the columns {', '.join(missing[:5])}")
        self.numeric = [n for n, k in self.features if k in NUMERIC_KINDS]
        self.logged = np.array([k in ("count", "continuous") for n, k in self.features if k in NUMERIC_KINDS], dtype=bool)
        self.categorical = [n for n, k in self.features if k in CATEGORICAL_KINDS]
        self.medians = {n: float(np.nanmedian(pd.to_numeric(train[n], errors="coerce"))) for n in self.numeric}
        self.vocab = {n: sorted(train[n].astype(str).unique()) for n in self.categorical}
        self.names = self.numeric + [f"{n}={v}" for n in self.categorical for v in self.vocab[n]]

    @property
    def width(self) -> int:
        return len(self.names)

    def __call__(self, df: pd.DataFrame) -> np.ndarray:
        missing = [n for n, _ in self.features if n not in df.columns]
        if missing:
            raise InvalidDataError(f"the rows lack the feature columns {', '.join(missing[:5])}")
        parts = []
        if self.numeric:
            num = np.array(df[self.numeric].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64), dtype=np.float64)
            for j, n in enumerate(self.numeric):
                bad = ~np.isfinite(num[:, j])
                if bad.any():
                    num[bad, j] = self.medians[n]
            num[:, self.logged] = np.sign(num[:, self.logged]) * np.log1p(np.abs(num[:, self.logged]))
            parts.append(num)
        for n in self.categorical:
            pos = pd.Index(self.vocab[n]).get_indexer(df[n].astype(str).to_numpy(dtype=object))
            onehot = np.zeros((len(df), len(self.vocab[n])), dtype=np.float64)
            hit = pos >= 0
            onehot[np.flatnonzero(hit), pos[hit]] = 1.0
            parts.append(onehot)
        return np.hstack(parts) if parts else np.zeros((len(df), 0))

    def signature(self) -> str:
        return json.dumps(self.names)


# --- detectors -----------------------------------------------------------------------------------


class Detector(Protocol):
    name: str

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        """1 where the detector says attack, 0 where it says normal."""

    def score(self, df: pd.DataFrame) -> np.ndarray | None:
        """The detector's attack probability per row, or None when it gives only labels."""


def _svm(seed: int) -> Any:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    return make_pipeline(StandardScaler(), SVC(kernel="rbf", C=1.0, gamma="scale", random_state=seed))


def _knn(seed: int) -> Any:
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=5))


def _naive_bayes(seed: int) -> Any:
    from sklearn.naive_bayes import GaussianNB

    return GaussianNB()


def _decision_tree(seed: int) -> Any:
    from sklearn.tree import DecisionTreeClassifier

    return DecisionTreeClassifier(random_state=seed)


EXTRA_DETECTORS: dict[str, Callable[[int], Any]] = {
    "svm": _svm,
    "knn": _knn,
    "naive-bayes": _naive_bayes,
    "decision-tree": _decision_tree,
}
# the transfer matrix's detectors: the project's four plus three of these
BUILTIN_NAMES = ("random-forest", "gradient-boosting", "logistic-regression", "mlp", "svm", "knn", "naive-bayes")


def detector_factories(manager: Any | None = None) -> dict[str, Callable[[int], Any]]:
    """Every detector a name can pick: the plugin registry (built-ins and plugins) and the extras here."""
    if manager is None:
        from advgen.plugins import get_manager

        manager = get_manager()
    found = dict(manager.detectors())
    for k, v in EXTRA_DETECTORS.items():
        found.setdefault(k, v)
    return found


@dataclass
class FittedDetector:
    """A scikit-learn estimator trained on advgen's detector features (attack = 1)."""

    name: str
    estimator: Any
    featurize: Featurizer
    seed: int = 0

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.estimator.predict(self.featurize(df))).astype(np.int64).reshape(-1)

    def score(self, df: pd.DataFrame) -> np.ndarray | None:
        X = self.featurize(df)
        est = self.estimator
        if hasattr(est, "predict_proba"):
            p = np.asarray(est.predict_proba(X), dtype=np.float64)
            classes = list(getattr(est, "classes_", [0, 1]))
            return p[:, classes.index(1)] if 1 in classes else np.zeros(len(X))
        if hasattr(est, "decision_function"):
            return 1.0 / (1.0 + np.exp(-np.asarray(est.decision_function(X), dtype=np.float64)))
        return None


def binary_target(classes: np.ndarray, normal: str) -> np.ndarray:
    return (np.asarray(classes).astype(str) != normal).astype(np.int64)


def train_detector(
    factory: Callable[[int], Any], name: str, X_df: pd.DataFrame, y: np.ndarray, featurize: Featurizer,
    seed: int = 0, threads: int = 1,
) -> FittedDetector:
    """Fit ``factory(seed)`` on ``X_df`` (featurized) against the binary target ``y``."""
    from advgen.threads import cap_n_jobs

    est = factory(seed)
    if not hasattr(est, "fit") or not hasattr(est, "predict"):
        raise InvalidDataError(
            f"detector {name!r} gives a {type(est).__name__}, which has no fit/predict; a detector must be a "
            "scikit-learn style classifier with fit and predict"
        )
    est = cap_n_jobs(est, threads)
    if len(np.unique(y)) < 2:
        raise InvalidDataError("the detector's training data needs both normal and attack rows")
    try:
        est.fit(featurize(X_df), y)
    except (ValueError, TypeError) as exc:
        raise InvalidDataError(f"cannot train detector {name!r}: {str(exc).splitlines()[0][:200]}") from None
    return FittedDetector(name, est, featurize, seed)


class OnnxDetector:
    """A detector exported to ONNX, run with onnxruntime. Loading executes no Python code."""

    def __init__(self, path: str | Path, featurize: Featurizer, normal: str = "normal"):
        try:
            import onnxruntime as ort
        except ImportError:
            raise AdvgenError("ONNX detectors need onnxruntime: pip install onnxruntime") from None
        p = Path(path)
        if not p.is_file():
            raise InvalidDataError(f"ONNX detector not found: {p}")
        self.name = p.name
        self.normal = normal
        self.featurize = featurize
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        from advgen_export.manifest import ModelError
        from advgen_export.onnx_guard import session_from_bytes

        try:
            # from its bytes, refusing external data: a detector someone hands you reads no other file
            self.session = session_from_bytes(p.read_bytes(), opts, p.name)
        except ModelError as exc:
            raise InvalidDataError(f"ONNX detector {exc}" if str(exc).startswith("not ") else str(exc)) from None
        except OSError as exc:
            raise InvalidDataError(f"cannot read the ONNX detector {p}: {exc.strerror or exc}") from None
        self.inputs = self.session.get_inputs()
        meta = self.session.get_modelmeta().custom_metadata_map or {}
        names = [f for f, _ in featurize.features]
        if len(self.inputs) == 1 and self.inputs[0].name not in names:
            inp = self.inputs[0]
            width = inp.shape[1] if len(inp.shape) == 2 else None
            if len(inp.shape) != 2 or "float" not in inp.type:
                raise InvalidDataError(f"{p.name}: its input {inp.name!r} is {inp.type} {inp.shape}; expected a float matrix [N, {featurize.width}]")
            if isinstance(width, int) and width != featurize.width:
                raise InvalidDataError(
                    f"{p.name} expects {width} input features, but advgen's detector features of this table have "
                    f"{featurize.width} (numeric columns, counts as sign*log1p, then categoricals one-hot); export the "
                    "model on advgen.adversarial.api.detector_features(...) or with one input per column"
                )
            sig = meta.get("advgen.featurization")
            if sig is not None and sig != featurize.signature():
                raise InvalidDataError(
                    f"{p.name} was exported on other detector features than this table gives (other columns or "
                    "categories): use the training data it was made with (--data)"
                )
            self.mode = "matrix"
        else:
            missing = [i.name for i in self.inputs if i.name not in names]
            if missing:
                raise InvalidDataError(
                    f"{p.name} has inputs {', '.join(missing[:5])} that are not feature columns of this table; expected "
                    f"one float input [N, {featurize.width}] or one input per feature column"
                )
            self.mode = "columns"
        outs = self.session.get_outputs()
        self.label_out = next((o.name for o in outs if "float" not in o.type or len(o.shape) == 1), outs[0].name)
        self.proba_out = next((o.name for o in outs if o.name != self.label_out and "float" in o.type), None)

    def _feed(self, df: pd.DataFrame) -> dict[str, np.ndarray]:
        if self.mode == "matrix":
            return {self.inputs[0].name: self.featurize(df).astype(np.float32)}
        feed = {}
        for i in self.inputs:
            col = df[i.name]
            if "string" in i.type:
                feed[i.name] = col.astype(str).to_numpy(dtype=object).reshape(-1, 1)
            elif "int64" in i.type:
                feed[i.name] = pd.to_numeric(col).to_numpy(dtype=np.int64).reshape(-1, 1)
            elif "double" in i.type:
                feed[i.name] = pd.to_numeric(col).to_numpy(dtype=np.float64).reshape(-1, 1)
            else:
                feed[i.name] = pd.to_numeric(col).to_numpy(dtype=np.float32).reshape(-1, 1)
        return feed

    def _run(self, df: pd.DataFrame, names: list[str]) -> list[Any]:
        try:
            return self.session.run(names, self._feed(df))
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InvalidDataError(f"{self.name} failed on the rows: {first[:200]}") from None

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        (lab,) = self._run(df, [self.label_out])
        lab = np.asarray(lab).reshape(-1)
        if lab.dtype.kind in "iufb":
            return (lab != 0).astype(np.int64)
        return (lab.astype(str) != self.normal).astype(np.int64)

    def score(self, df: pd.DataFrame) -> np.ndarray | None:
        if self.proba_out is None:
            return None
        lab, proba = self._run(df, [self.label_out, self.proba_out])
        proba = np.asarray(proba, dtype=np.float64)
        if np.asarray(lab).dtype.kind not in "iub" or proba.ndim != 2 or proba.shape[1] != 2:
            return None  # only a binary 0/1 model says which column is the attack's
        return proba[:, 1]


# --- the black box -------------------------------------------------------------------------------


@dataclass
class BlackBox:
    """Query-counting access to a detector. ``budget`` None: no cap."""

    detector: Any
    budget: int | None = None
    allow_proba: bool = False
    queries: int = 0
    log: list[tuple[str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.budget is not None and self.budget < 0:
            raise InvalidDataError(f"the query budget must be >= 0, got {self.budget}")
        if not callable(getattr(self.detector, "predict", None)):
            raise InvalidDataError(f"detector {getattr(self.detector, 'name', self.detector)!r} has no predict method")

    @property
    def name(self) -> str:
        return str(getattr(self.detector, "name", "detector"))

    @property
    def remaining(self) -> int | None:
        return None if self.budget is None else max(0, self.budget - self.queries)

    def _spend(self, n: int, what: str) -> None:
        if self.budget is not None and self.queries + n > self.budget:
            raise QueryBudgetExhausted(
                f"query budget of {self.budget:,} reached: {self.queries:,} used, {n:,} more asked ({what})"
            )
        self.queries += n
        self.log.append((what, n))

    def predict(self, df: pd.DataFrame, what: str = "predict") -> np.ndarray:
        self._spend(len(df), what)
        return self.detector.predict(df)

    def predict_proba(self, df: pd.DataFrame, what: str = "predict_proba") -> np.ndarray:
        if not self.allow_proba:
            raise AdvgenError("this black box answers labels only (allow probabilities with --allow-proba)")
        self._spend(len(df), what)
        score = self.detector.score(df)
        if score is None:
            raise AdvgenError(f"detector {self.name} gives no probabilities; attack it with labels only")
        return np.asarray(score, dtype=np.float64)

    def answer(self, df: pd.DataFrame, what: str = "query") -> np.ndarray:
        """What an attack learns from: the attack probability when allowed and given, else the 0/1 label."""
        self._spend(len(df), what)
        if self.allow_proba:
            score = self.detector.score(df)
            if score is not None:
                return np.asarray(score, dtype=np.float64)
        return np.asarray(self.detector.predict(df), dtype=np.float64)

    def queries_by_purpose(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for what, n in self.log:
            out[what] = out.get(what, 0) + n
        return out
