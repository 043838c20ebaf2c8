"""Privacy: does the generator copy its training rows? Distance to the closest record.

:func:`memorisation` compares each synthetic row's distance to its nearest real training row with the
same distance for held-out real rows. Closer to the ideal is better: a synthetic/held-out median ratio of
1.0 (well below: copying; well above: samples away from the data), 5% of synthetic rows closer than the
held-out 5th percentile, and no more exact copies than held-out rows hold.

Tables with many exact duplicate rows (PE headers, UNSW-NB15) put many held-out rows at distance 0 from a
training row: from :data:`DUPLICATE_SHARE` (5%) of them on, the held-out 5th percentile is 0, so no row
could be closer, and the median mixes those zeros with the distances of the other rows. There the two
distance figures compare only the rows that are not exact copies, on both sides, and the synthetic exact
copies are read against the held-out rows' share of exact copies (unseen real rows repeat training rows
that often; an ideal generator too). :func:`memorisation_notes` says so in the report.
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

# from this share of held-out rows that repeat a training row exactly, the held-out 5th percentile is 0
# (nothing can be closer) and the distance figures compare the rows that are not exact copies instead
DUPLICATE_SHARE = 0.05

# what the median ratio and the share closer than the held-out p5 are computed over (``reference``)
ALL_ROWS = "all rows"
NOT_COPIES = "rows that are not exact copies"


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
    synthetic rows closer than the held-out 5th percentile near 0.05, and ``exact_copies`` (share of
    synthetic rows at distance below :data:`EXACT_COPY`) no higher than the held-out rows' own share,
    ``holdout.exact_copies`` (0 on data without duplicate rows). A ratio well below 1 means the generator
    copies training rows; well above 1, it samples away from the data. Held-out rows from a shifted
    distribution (a later test set) lie farther away than unseen rows of the training distribution
    would, which flatters the ratio; the training rows' own nearest-other-row distance is reported as a
    second reference.

    When :data:`DUPLICATE_SHARE` or more of the held-out rows repeat a training row exactly,
    ``reference`` is :data:`NOT_COPIES`: the ratio and the share closer than p5 compare the synthetic and
    held-out rows that are not exact copies (``distinct``), since the held-out 5th percentile over every
    row is then 0. Otherwise ``reference`` is :data:`ALL_ROWS` and every row counts, as always.
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

    def summary(d: np.ndarray) -> dict[str, float] | None:
        if len(d) == 0:
            return None
        return {
            "median": float(np.median(d)),
            "mean": float(np.mean(d)),
            "p05": float(np.percentile(d, 5)),
        }

    copy_s, copy_h = d_s < EXACT_COPY, d_h < EXACT_COPY
    held_copies = float(np.mean(copy_h))
    distinct_s, distinct_h = d_s[~copy_s], d_h[~copy_h]
    duplicated = held_copies >= DUPLICATE_SHARE
    ref_s, ref_h = (distinct_s, distinct_h) if duplicated else (d_s, d_h)
    if len(ref_s) and len(ref_h):
        p05_h = float(np.percentile(ref_h, 5))
        med_h = float(np.median(ref_h))
        # a held-out median within float noise of 0 would make the ratio a division by noise: undefined,
        # not 2.6 million (over every row it cannot happen here: half the rows repeating training rows
        # switch to the rows that are not copies, whose distances are at least EXACT_COPY)
        ratio = float(np.median(ref_s) / med_h) if med_h >= EXACT_COPY else float("nan")
        closer = float(np.mean(ref_s < p05_h))
    else:  # every synthetic or every held-out row is an exact copy: nothing left to compare
        ratio = closer = float("nan")
    return {
        "synthetic": summary(d_s),
        "holdout": {**(summary(d_h) or {}), "exact_copies": held_copies},
        "train_nearest_other": summary(d_t),
        "distinct": {"synthetic": summary(distinct_s), "holdout": summary(distinct_h)},
        "reference": NOT_COPIES if duplicated else ALL_ROWS,
        "median_ratio": ratio,
        "closer_than_holdout_p05": closer,
        "exact_copies": float(np.mean(copy_s)),
        "n": {
            "synthetic": int(len(S)),
            "holdout": int(len(H)),
            "synthetic_distinct": int(len(distinct_s)),
            "holdout_distinct": int(len(distinct_h)),
        },
    }


def memorisation_notes(mem: dict[str, Any]) -> list[str]:
    """What a reader needs to read :func:`memorisation`'s figures: held-out rows that repeat training rows
    exactly (the fair reference for exact copies; from :data:`DUPLICATE_SHARE` on, why the distance figures
    compare the rows that are not copies) and a ratio left undefined."""
    notes: list[str] = []
    held = (mem.get("holdout") or {}).get("exact_copies") or 0.0
    n = mem.get("n", {})
    if mem.get("reference") == NOT_COPIES:
        notes.append(
            f"memorisation: {held:.1%} of the held-out rows repeat a training row exactly (the data holds "
            f"duplicate rows), so the held-out 5th percentile over every row is 0 and no row could be closer; "
            f"the DCR median ratio and the share closer than p5 compare the rows that are not exact copies "
            f"({n.get('synthetic_distinct', 0):,} synthetic, {n.get('holdout_distinct', 0):,} held-out), and "
            f"exact copies of training rows are read against the held-out share {held:.3f} (unseen real rows "
            f"repeat training rows that often; more means copying)"
        )
    elif held > 0:
        notes.append(
            f"memorisation: {held:.1%} of the held-out rows repeat a training row exactly; exact copies of "
            f"training rows are read against that share (unseen real rows repeat training rows that often)"
        )
    ratio = mem.get("median_ratio")
    if ratio is None or (isinstance(ratio, float) and np.isnan(ratio)):
        if n.get("synthetic_distinct", 1) == 0:
            why = "every synthetic row is an exact copy of a training row"
        elif n.get("holdout_distinct", 1) == 0:
            why = "every held-out row repeats a training row exactly"
        else:
            why = "half or more of the held-out rows repeat a training row exactly (distance 0)"
        notes.append(f"DCR median ratio undefined: {why}; read exact copies and the distances instead")
    return notes
