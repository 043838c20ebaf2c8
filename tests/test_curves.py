"""The curves domain learns the quadratic family: a smaller version of the issue's quality check."""

from __future__ import annotations

import numpy as np
from scipy import stats

from advgen.api import train
from advgen_curves import A_RANGE, CurvesDomain, fit_quadratic, quadratic_family


def test_fit_recovers_family_coefficients():
    curves, a = quadratic_family(50, 32, np.random.default_rng(0))
    coef, resid = fit_quadratic(curves)
    np.testing.assert_allclose(coef[:, 0], a, atol=1e-9)
    np.testing.assert_allclose(coef[:, 2], a - 1, atol=1e-9)
    assert resid.max() < 1e-9


def test_validator_rejects_what_is_not_in_the_family():
    spec = {"shape": [32], "family": "quadratic"}
    rules = {v.name: v for v in CurvesDomain().validators(spec)}
    x = np.linspace(-1, 1, 32)
    good = 1.5 * x**2 + 0.5
    assert rules["family-coefficients"].check(good[None])[0]
    assert not rules["family-coefficients"].check((3.0 * x**2 + 2.0)[None])[0]  # a out of range
    assert not rules["quadratic-fit"].check((good + 0.3 * np.sin(8 * x))[None])[0]  # not a quadratic


def test_short_run_learns_and_covers_the_family(tmp_path):
    run = train({"plugin": "curves", "steps": 1500, "out": str(tmp_path / "run"), "n_samples": 0, "seed": 1})
    curves = run.sample(500, seed=5)
    assert run.validate(curves).pass_rate >= 0.85
    assert ks_to_uniform(curves) < 0.15, "fitted a collapsed"
    # an untrained generator outputs about the mean curve: valid-looking, but every a is the same
    untrained = train({"plugin": "curves", "steps": 1, "ema": 0, "out": str(tmp_path / "u"), "n_samples": 0})
    assert ks_to_uniform(untrained.sample(500, seed=5)) > 0.3


def ks_to_uniform(curves: np.ndarray) -> float:
    a = fit_quadratic(curves)[0][:, 0]
    return stats.kstest(a, stats.uniform(loc=A_RANGE[0], scale=A_RANGE[1] - A_RANGE[0]).cdf).statistic
