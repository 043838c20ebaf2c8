"""advgen evaluate on a test set that shares no class with training: a note and '-' figures, no traceback."""

from __future__ import annotations

import numpy as np
import pandas as pd
from click.testing import CliRunner

from advgen.cli import cli
from advgen.metrics.report import format_value


def test_a_missing_mean_formats_as_a_dash():
    assert format_value({"mean": None, "std": None}) == "-"
    assert format_value({"mean": float("nan"), "std": 0.1}) == "-"
    assert format_value({"mean": 0.5, "std": None}) == "0.500"


def test_evaluate_with_no_class_in_common_is_not_a_traceback(tmp_path):
    # the audit: training labels 0.0/1.0 (a blank row made them floats) against test labels 0/1 left macro-F1
    # None, and printing it raised "unsupported format string passed to NoneType.__format__"
    rng = np.random.default_rng(0)

    def table(labels, n):
        y = rng.choice(labels, n)
        return pd.DataFrame({"a": rng.normal(size=n) + (y == labels[0]), "b": rng.integers(0, 5, n), "y": y})

    table(["p", "q"], 300).to_csv(tmp_path / "train.csv", index=False)
    table(["r", "s"], 200).to_csv(tmp_path / "test.csv", index=False)
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--plugin", "tabular", "--data", str(tmp_path / "train.csv"), "--label", "y",
                                      "--steps", "3", "--batch-size", "32", "--n-samples", "200", "--threads", "1",
                                      "--out", str(run), "-q"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["evaluate", str(run), "--test", str(tmp_path / "test.csv"), "--label", "y",
                                      "--threads", "1", "--seeds", "1", "--no-plots", "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and (tmp_path / "r.json").is_file()
