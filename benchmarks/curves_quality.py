"""Curves quality: train the default curves run (or load one) and print validity and mode coverage.

    python benchmarks/curves_quality.py            # trains with the defaults into a temp dir
    python benchmarks/curves_quality.py RUN_DIR    # judges an existing run

Prints: training time, validator pass rate of 1,000 samples, and the Kolmogorov-Smirnov distance of
the fitted ``a`` coefficients to U[1, 2] (targets: >= 90% pass, KS < 0.1).
"""

from __future__ import annotations

import sys
import tempfile

import numpy as np
from scipy import stats

from advgen.api import load_run, train
from advgen_curves import A_RANGE, fit_quadratic


def judge(run, n: int = 1000, seed: int = 123) -> dict[str, float]:
    curves = run.sample(n, seed=seed)
    report = run.validate(curves)
    a = fit_quadratic(curves)[0][:, 0]
    ks = stats.kstest(a, stats.uniform(loc=A_RANGE[0], scale=A_RANGE[1] - A_RANGE[0]).cdf).statistic
    return {"pass_rate": report.pass_rate, "ks_a_uniform": float(ks), "a_min": float(a.min()), "a_max": float(a.max())}


def main() -> None:
    if len(sys.argv) > 1:
        run = load_run(sys.argv[1])
        seconds = None
    else:
        out = tempfile.mkdtemp(prefix="advgen-curves-")
        run = train({"plugin": "curves", "out": out})
        seconds = run.summary["seconds"]
    result = judge(run)
    if seconds is not None:
        print(f"training seconds: {seconds:.1f}  rows/s: {run.summary['rows_per_s']:,.0f}")
    print(f"pass rate (1000 samples): {result['pass_rate']:.1%}")
    print(f"KS distance of fitted a to U[1,2]: {result['ks_a_uniform']:.3f}  (a in [{result['a_min']:.2f}, {result['a_max']:.2f}])")


if __name__ == "__main__":
    main()
