"""Privacy: does the generator copy its training rows? Distance to the closest record.

:func:`memorisation` compares each synthetic row's distance to its nearest real training row with the
same distance for held-out real rows. Closer to the ideal is better: a synthetic/held-out median ratio of
1.0 (well below: copying; well above: samples away from the data), 5% of synthetic rows closer than the
held-out 5th percentile, and no exact copies (lower is better).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _take(n: int, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    """Indices of at most ``limit`` of ``n`` rows, drawn without replacement."""
    if limit is None or n <= limit:
        return np.arange(n)
    return np.sort(rng.choice(n, size=limit, replace=False))


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

    rng = np.random.default_rng(seed)
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
        # a held-out median within float noise of 0 (half the held-out rows repeat a training row, as in
        # UNSW-NB15) would make the ratio a division by noise: undefined, not 2.6 million
        "median_ratio": float(np.median(d_s) / med_h) if med_h >= EXACT_COPY else float("nan"),
        "closer_than_holdout_p05": float(np.mean(d_s < p05_h)),
        "exact_copies": float(np.mean(d_s < EXACT_COPY)),
        "n": {"synthetic": int(len(S)), "holdout": int(len(H))},
    }
