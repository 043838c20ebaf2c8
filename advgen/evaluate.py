"""Judge generated samples with scikit-learn detectors: realism, fidelity, utility, uplift, privacy, rules.

Everything here works on what a domain exposes (``featurize``, ``labels``, validators), so images and
curves are judged by the same code as tables; only the per-column fidelity metrics and histograms need
tables (pandas DataFrames plus the ``[{"name", "kind", "role"}]`` column list a tabular spec carries).

This module holds the orchestration: :class:`Subject` (how samples become features, labels and rules)
and :func:`evaluate`, which runs every metric in phases and returns a JSON-able report. The metrics live
by family in :mod:`advgen.metrics` (one module each, every metric a plain function documented with its
direction and the value an ideal generator gets; ``METRICS`` holds the same facts for the report, the
terminal table and ``docs/metrics.md``); :func:`format_report`, :func:`write_plots` and
:func:`write_html` present the report. The names imported below stay importable from here.

Detectors are factories ``seed -> unfitted estimator`` taken by name from the plugin manager's
``detectors()`` registry. A user's pickled estimator can be used too, but only through
:func:`load_pickled_detector`, whose name says what it does: unpickling executes code.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from advgen.domain import Domain, Validator
from advgen.errors import AdvgenError, InvalidDataError
from advgen.metrics.augmentation import augmentation_flags, augmentation_uplift, default_rare_classes
from advgen.metrics.detectors import (
    DetectorFactory, Fits, benign_class, classes_of, load_pickled_detector, resolve_detector, unseen_classes,
)
from advgen.metrics.fidelity import (
    CATEGORICAL_KINDS,
    NUMERIC_KINDS,
    check_columns,
    ks_complement,
    table_fidelity,
    tv_complement,
)
from advgen.metrics.html_report import write_html
from advgen.metrics.info import METRICS, MetricInfo
from advgen.metrics.plots import write_plots
from advgen.metrics.privacy import memorisation, memorisation_notes
from advgen.metrics.realism import correlation_difference, realism_auc
from advgen.metrics.report import format_report, jsonable, write_json
from advgen.metrics.utility import label_fidelity, utility
from advgen.metrics.validity import validity

# the API this module offered before the metrics moved into advgen.metrics
__all__ = [
    "ALL_SECTIONS", "CATEGORICAL_KINDS", "METRICS", "NUMERIC_KINDS", "DetectorFactory", "MetricInfo", "Subject",
    "augmentation_flags", "augmentation_uplift", "check_columns", "correlation_difference", "default_rare_classes",
    "evaluate", "format_report", "ks_complement", "label_fidelity", "load_pickled_detector", "memorisation",
    "realism_auc", "resolve_detector", "table_fidelity", "tv_complement", "utility", "validity", "write_html",
    "write_json", "write_plots",
]


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
                # a copy: it is written below, and an all-float frame gives a read-only view
                num = df[numeric].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64, copy=True)
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


def _normal_class(normal: str, real_y: np.ndarray, test_y: np.ndarray | None, notes: list[str]) -> str | None:
    """The benign class as the labels spell it (:func:`~advgen.metrics.detectors.benign_class`); a class
    found under another spelling gets a note, and none a note that no false-positive rate is reported,
    rather than nothing."""
    classes = set(classes_of(real_y)) | (set(classes_of(test_y)) if test_y is not None else set())
    found = benign_class(classes, normal)
    if found is None:
        notes.append(
            f"no class is named {normal!r}, so no false-positive rate on normal traffic is reported; "
            f"name the benign class with --normal (classes: {', '.join(sorted(classes))})"
        )
    elif found != normal:
        notes.append(f"normal class: {found!r} (no class is named {normal!r})")
    return found


def _note_unseen_classes(real_y: np.ndarray, test_y: np.ndarray, notes: list[str]) -> None:
    """A note naming the test classes no training row holds, with their row counts, and how the scores
    treat them (:func:`~advgen.metrics.detectors.scored_classes`)."""
    unseen = unseen_classes(test_y, real_y)
    if not unseen:
        return
    rows = sum(unseen.values())
    shared = len(set(classes_of(test_y)) - set(unseen))
    listed = ", ".join(f"{c} ({n:,} row{'s' if n != 1 else ''})" for c, n in unseen.items())
    notes.append(
        f"test: class(es) never seen in training: {listed}; the detectors cannot predict a class they never "
        f"learned, so macro-F1 and the per-class scores cover the {shared} test class(es) training has, while "
        f"accuracy still counts the {rows:,} row(s) as errors"
    )


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
    if normal is not None and labelled and test_y is not None:
        normal = _normal_class(normal, real_y, test_y, report["notes"])
    if labelled and test_y is not None:
        _note_unseen_classes(real_y, test_y, report["notes"])
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
    fits = Fits(factory)
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
        with _phase(say, "correlation difference (detector features)", timings, "realism"):
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
            rng = np.random.default_rng(seed)
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
        # held-out rows that repeat training rows (duplicate-heavy data) change how the figures read
        report["notes"].extend(memorisation_notes(report["memorisation"]))

    timings["total"] = time.perf_counter() - started
    report["seconds"] = timings
    return jsonable(report)
