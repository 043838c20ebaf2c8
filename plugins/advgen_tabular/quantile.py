"""The numeric half of the tabular quantile encoding, NumPy only: values to standard-normal ``y``.

:class:`advgen_tabular.transform.TableTransform` fits each numeric column's grid (its empirical
quantiles at knots evenly spaced in ``y`` on [-Y_MAX, Y_MAX], stored run-length encoded) and its
resolution (``decimals``); its tensor decoder sends ``y`` back through the grid. Encoding inverts the
decoder: a value goes to the interval of ``y`` that decodes to it after rounding, at the middle of the
interval (the attack's encoding) or at a random point in it (training's dequantised encoding).

The standard normal CDF and its inverse are arguments. The transform, and with it ``advgen evade``,
passes scipy's ``ndtr``/``ndtri``; the torch-free runtime, which has no scipy, passes :func:`ndtr`
and :func:`ndtri` below, which agree with scipy's to about 1e-16 relative, so the two encode a row to
the same float32 values but for a rare last bit.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

# the quantile knots sit at y = -Y_MAX ... Y_MAX, the end knots on the minimum and the maximum;
# encoded values stay within the same range
Y_MAX = 5.0
# a value decodes to v when it lies within this fraction of the resolution around v; < 0.5 leaves a
# margin so that float32 decoding never lands on a rounding boundary
ROUND_HALF = 0.49

_ERFC = np.frompyfunc(math.erfc, 1, 1)


def ndtr(x: np.ndarray) -> np.ndarray:
    """The standard normal CDF (``scipy.special.ndtr``), from the C library's ``erfc``."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * _ERFC(-x / math.sqrt(2.0)).astype(np.float64)


def ndtri(p: np.ndarray) -> np.ndarray:
    """The inverse of :func:`ndtr` on (0, 1) (``scipy.special.ndtri``): Wichura's AS 241 (PPND16),
    relative error about 1e-16."""
    p = np.asarray(p, dtype=np.float64)
    q = p - 0.5
    out = np.empty_like(p)
    central = np.abs(q) <= 0.425
    if central.any():
        qc = q[central]
        r = 0.180625 - qc * qc
        num = ((((((r * 2509.0809287301226727 + 33430.575583588128105) * r + 67265.770927008700853) * r
                  + 45921.953931549871457) * r + 13731.693765509461125) * r + 1971.5909503065514427) * r
               + 133.14166789178437745) * r + 3.387132872796366608
        den = ((((((r * 5226.495278852545925 + 28729.085735721942674) * r + 39307.89580009271061) * r
                  + 21213.794301586595867) * r + 5394.1960214247511077) * r + 687.1870074920579083) * r
               + 42.313330701600911252) * r + 1.0
        out[central] = qc * num / den
    tail = ~central
    if tail.any():
        qt = q[tail]
        r = np.sqrt(-np.log(np.where(qt < 0, p[tail], 1.0 - p[tail])))
        near = r <= 5.0
        val = np.empty_like(r)
        s = r[near] - 1.6
        num = ((((((s * 7.7454501427834140764e-4 + 0.0227238449892691845833) * s + 0.24178072517745061177) * s
                  + 1.27045825245236838258) * s + 3.64784832476320460504) * s + 5.7694972214606914055) * s
               + 4.6303378461565452959) * s + 1.42343711074968357734
        den = ((((((s * 1.05075007164441684324e-9 + 5.475938084995344946e-4) * s + 0.0151986665636164571966) * s
                  + 0.14810397642748007459) * s + 0.68976733498510000455) * s + 1.6763848301838038494) * s
               + 2.05319162663775882187) * s + 1.0
        val[near] = num / den
        s = r[~near] - 5.0
        num = ((((((s * 2.01033439929228813265e-7 + 2.71155556874348757815e-5) * s + 0.0012426609473880784386) * s
                  + 0.026532189526576123093) * s + 0.29656057182850489123) * s + 1.7848265399172913358) * s
               + 5.4637849111641143699) * s + 6.6579046435011037772
        den = ((((((s * 2.04426310338993978564e-15 + 1.4215117583164458887e-7) * s + 1.8463183175100546818e-5) * s
                  + 7.868691311456132591e-4) * s + 0.0148753612908506148525) * s + 0.13692988092273580531) * s
               + 0.59983220655588793769) * s + 1.0
        val[~near] = num / den
        out[tail] = np.where(qt < 0, -val, val)
    return out


def unrle(runs: Sequence[Sequence[float]]) -> np.ndarray:
    """A quantile grid from its run-length encoding ``[[value, repeat], ...]``."""
    return np.concatenate([np.full(int(n), v, dtype=np.float64) for v, n in runs]) if runs else np.zeros(0)


def knot_position(grid: np.ndarray, v: np.ndarray, side: str) -> np.ndarray:
    """Fractional knot index where the piecewise-linear ``grid`` first reaches ``v`` (side "left")
    or last stays at or below ``v`` (side "right"); 0 below the grid, ``len(grid) - 1`` above."""
    g = grid.shape[0]
    k = np.searchsorted(grid, v, side=side)
    pos = np.empty_like(v)
    below, above = k == 0, k == g
    mid = ~(below | above)
    km = k[mid]
    a, b = grid[km - 1], grid[km]
    frac = np.where(b > a, (v[mid] - a) / np.where(b > a, b - a, 1.0), 0.0)
    pos[mid] = km - 1 + np.clip(frac, 0.0, 1.0)
    pos[below] = 0.0
    pos[above] = g - 1.0
    return pos


def quantile_encode(
    grid: np.ndarray,
    decimals: int | None,
    values: np.ndarray,
    *,
    cdf: Callable[[np.ndarray], np.ndarray],
    ppf: Callable[[np.ndarray], np.ndarray],
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """``values`` (float64, finite) to float32 ``y``: the middle of the interval of ``y`` that decodes to
    each value, or a uniform draw in it when ``rng`` is given. Values outside the grid are clipped to
    it. ``cdf``/``ppf``: the standard normal CDF and its inverse (see the module's docstring)."""
    step = 2 * Y_MAX / (grid.shape[0] - 1)
    half = ROUND_HALF * 10.0 ** (-decimals) if decimals is not None else 0.0
    v = np.clip(values, grid[0], grid[-1])
    # the y-interval [lo, hi] decodes to values within half a resolution step of v
    lo_u = cdf(-Y_MAX + step * knot_position(grid, v - half, "left"))
    hi_u = cdf(-Y_MAX + step * knot_position(grid, v + half, "right"))
    hi_u = np.maximum(hi_u, lo_u)
    if rng is not None:
        u = lo_u + rng.random(v.shape[0]) * (hi_u - lo_u)
    else:
        u = 0.5 * (lo_u + hi_u)
    u_eps = float(cdf(np.array([-Y_MAX]))[0])
    return ppf(np.clip(u, u_eps, 1.0 - u_eps)).astype(np.float32)
