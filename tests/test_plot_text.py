"""Names and values from the data reach plots as plain text: matplotlib's mathtext never parses them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from click.testing import CliRunner

from advgen.cli import cli


def test_dollar_signs_in_names_and_labels_plot_as_text(tmp_path):
    # the audit: a column "cost $x^{", a category "$\frac{$" and a label "$\sqrt{$" crashed the plot at the end
    # of training (no summary.json) and in advgen evaluate
    rng = np.random.default_rng(0)
    n = 400
    pd.DataFrame({"cost $x^{": rng.normal(size=n), "b": rng.integers(0, 9, n),
                  "c": rng.choice(["$\\frac{$", "y"], n),
                  "Label": rng.choice(["normal", "$\\sqrt{$"], n)}).to_csv(tmp_path / "m.csv", index=False)
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--plugin", "tabular", "--data", str(tmp_path / "m.csv"), "--label", "Label",
                                      "--steps", "3", "--batch-size", "32", "--n-samples", "200", "--threads", "1",
                                      "--out", str(run), "-q"])
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "summary.json").read_text())
    assert "plot_skipped" not in summary and (run / "samples.png").is_file()
    result = CliRunner().invoke(cli, ["evaluate", str(run), "--html", str(tmp_path / "r.html"), "--threads", "1",
                                      "--seeds", "1"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.html").is_file() and (run / "eval_histograms.png").is_file()


def test_a_plot_that_fails_leaves_the_run_written(tmp_path, monkeypatch):
    from advgen_curves.domain import CurvesDomain

    def broken(self, real, fake, path, spec):
        raise ValueError("the figure broke")

    monkeypatch.setattr(CurvesDomain, "plot", broken)
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--plugin", "curves", "--steps", "3", "--batch-size", "16",
                                      "--option", "n_real=64", "--option", "length=8", "--threads", "1", "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert "note: no samples.png (ValueError: the figure broke)" in result.output
    assert json.loads((run / "summary.json").read_text())["plot_skipped"] == "ValueError: the figure broke"
