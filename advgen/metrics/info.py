"""What each number of an evaluation report means: which way is better and what an ideal generator gets.

``METRICS`` holds a :class:`MetricInfo` for every metric of :func:`advgen.evaluate.evaluate`'s report;
every report carries them under ``"metrics"``, the terminal table and the HTML page show them, and
``docs/metrics.md`` explains them at length. The evasion metrics of ``advgen evade`` have their own
``METRICS`` in :mod:`advgen.metrics.evasion`.
"""

from __future__ import annotations

from dataclasses import dataclass


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
        "Correlation difference (detector features)",
        "lower",
        "0",
        "Mean absolute difference between the Pearson correlation matrices of real and synthetic "
        "featurized samples, the features the detectors see (numeric columns through sign(x)*log1p(|x|), "
        "categoricals one-hot; upper triangle). Catches generators with right marginals and no dependence.",
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
        "Per numeric feature column 1 - Kolmogorov-Smirnov statistic between real and synthetic values; mean "
        "over columns. n/a (null) for a table with no numeric feature.",
    ),
    "tv_complement": MetricInfo(
        "TV complement",
        "higher",
        "1.0",
        "Per categorical feature column 1 - total-variation distance between real and synthetic category "
        "frequencies; mean over columns. The label is not a feature (its class balance is reported apart, "
        "fidelity.class_balance); n/a (null) for a table with no categorical feature.",
    ),
    "table_correlation_difference": MetricInfo(
        "Correlation difference (raw numeric columns)",
        "lower",
        "0",
        "Mean absolute difference between Pearson correlations of the numeric columns on their raw values "
        "(no log, no categoricals), real vs synthetic.",
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
        "synthetic/held-out median ratio 1.0; share closer than the held-out 5th percentile 0.05; no more "
        "exact copies than held-out rows hold (0 without duplicate rows)",
        "Euclidean distance (standardised featurized rows) from each synthetic row to its nearest real "
        "training row, against the same distance for held-out real rows. Much smaller: copying; much larger: "
        "samples off the data. When 5% or more of the held-out rows repeat a training row exactly "
        "(duplicate-heavy data), the ratio and the share compare the rows that are not exact copies, and "
        "exact copies are read against the held-out share.",
    ),
    "validity": MetricInfo(
        "Validator pass rate",
        "higher",
        "the real data's own rate (1.0 for rules fitted on it)",
        "Fraction of samples passing every domain rule; per rule and per group, for real and synthetic.",
    ),
}
