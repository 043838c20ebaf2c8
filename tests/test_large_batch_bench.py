"""benchmarks/large_batch.py: settings are checked, and a report's figures reach the table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "large_batch.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("large_batch", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("text", ["4096:2500:2e-4", "a:1:2e-4:0.9", "0:10:2e-4:0.9", "512:10:2:0.9", "512:10:2e-4:1"])
def test_bad_settings_are_one_line(bench, text):
    with pytest.raises(SystemExit, match="error: .*setting"):
        bench.parse_setting(text)


def test_the_default_settings_parse_and_name_their_runs(bench):
    settings = [bench.parse_setting(t) for t in bench.DEFAULT_SETTINGS]
    names = {bench.name_of(s) for s in settings}
    assert len(names) == len(settings)  # every setting has its own run folder in --work
    assert bench.name_of(settings[0]) == "b512-s20000-lr0.0002-ema0.9995"
    # another training seed gets its own folder: a --seed 1 run must not replace seed 0's
    assert bench.name_of(settings[0], 1) == "b512-s20000-lr0.0002-ema0.9995-seed1"


def _spread(mean):
    return {"mean": mean, "std": 0.0}


def _report():
    per_class = lambda recall, precision: {"recall": _spread(recall), "precision": _spread(precision), "support": 10}  # noqa: E731
    return {
        "realism": {"auc": {"logistic-regression": _spread(0.61), "gradient-boosting": _spread(0.99)}},
        "fidelity": {"ks_complement": {"mean": 0.97, "per_column": {}}, "tv_complement": {"mean": 0.95, "per_column": {}}},
        "validity": {"synthetic": {"pass_rate": 0.9, "per_group": {"schema": 1.0, "cross-column": 0.9}}},
        "utility": {"tstr": {"macro_f1": _spread(0.52)}, "trtr": {"macro_f1": _spread(0.5)}},
        "augmentation": {
            "classes": ["r2l", "u2r"], "added": {"r2l": 1000, "u2r": 1000},
            "base": {"macro_f1": _spread(0.5), "per_class": {"r2l": per_class(0.05, 0.99), "u2r": per_class(0.02, 0.8)}},
            "augmented": {"macro_f1": _spread(0.6), "per_class": {"r2l": per_class(0.15, 0.98), "u2r": per_class(0.3, 0.7)}},
        },
    }


def test_a_reports_figures_reach_the_table(bench):
    setting = bench.parse_setting("4096:2500:2e-4:0.996")
    row = bench.figures({"setting": setting, "run": "x", "summary": {"seconds": 100.0}, "report": _report()})
    assert row["rows_per_s"] == pytest.approx(4096 * 2500 / 100)
    assert (row["ks"], row["tv"], row["auc_logistic"], row["auc_boosting"]) == (0.97, 0.95, 0.61, 0.99)
    assert (row["cross_column"], row["tstr"], row["r2l"], row["u2r"], row["u2r_precision"]) == (0.9, 0.52, 0.15, 0.3, 0.7)
    text = bench.table([row])
    assert "| 4,096 | 2,500 | 0.0002 | 0.996 | 10.24M | 100 | 102,400 | 0.970 | 0.950 | 0.610 | 0.990 | 0.900 |" in text
    assert "u2r 0.020 (precision 0.800)" in text
