"""What a new user meets: thread limits, progress, one table schema, plain-words parity, readable plots.

A tiny tabular run (a few dozen steps on KDDTrain+_20Percent) is trained once for the module; its rows
are poor, but every command path it drives is the real one.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from advgen import evaluate as ev
from advgen.errors import InvalidDataError
from advgen.io import read_table
from advgen.metrics.augmentation import augmentation_flags
from advgen.metrics.html_report import write_html
from advgen.metrics.plots import plot_recall_bars, write_plots
from advgen.metrics.report import format_report

PANDAS4_WARNING = getattr(pd.errors, "Pandas4Warning", FutureWarning)


def _cli(args: list[str]) -> Any:
    from advgen.cli import cli

    return CliRunner().invoke(cli, args)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import os

    from advgen.api import train

    root = Path(__file__).resolve().parents[1]
    for c in (os.environ.get("ADVGEN_DATA"), str(root.parent / "shared" / "datasets")):
        if c and (Path(c) / "nsl-kdd" / "KDDTrain+_20Percent.txt").is_file():
            os.environ["ADVGEN_DATA"] = c
            break
    else:
        pytest.fail("NSL-KDD files not found: set ADVGEN_DATA to a folder holding nsl-kdd/KDDTrain+_20Percent.txt")
    out = tmp_path_factory.mktemp("ux") / "run"
    return train({"plugin": "tabular", "steps": 40, "batch_size": 128, "out": str(out), "n_samples": 0, "threads": 1})


@pytest.fixture(scope="module")
def nsl_files(tiny_run: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Header-less NSL-KDD-layout subsets (read with --dataset nsl-kdd) and a 'synthetic' CSV of real rows."""
    import os

    from advgen_datasets import load_table

    d = tmp_path_factory.mktemp("nsl")
    lines = (Path(os.environ["ADVGEN_DATA"]) / "nsl-kdd" / "KDDTrain+_20Percent.txt").read_text().splitlines()
    idx = np.random.default_rng(0).permutation(len(lines))
    (d / "train.txt").write_text("\n".join(lines[i] for i in idx[:1500]) + "\n")
    (d / "test.txt").write_text("\n".join(lines[i] for i in idx[1500:3000]) + "\n")
    # other real rows, read whole so that no column a small subset holds constant is dropped
    load_table("nsl-kdd", "train20").df.iloc[idx[3000:4500]].to_csv(d / "synth.csv", index=False)
    return d


# --- 6. the transform raises no pandas deprecation ---------------------------------------------------


def _small_table(n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "bytes": rng.integers(0, 1000, n),
        "proto": rng.choice(["tcp", "udp"], n),
        "service": rng.choice(["http", "ftp", "smtp"], n),
    })


@pytest.mark.parametrize("joint", [True, False])
def test_transform_of_unseen_categories_is_a_clear_error_not_a_pandas_warning(joint: bool) -> None:
    """Unseen values are looked up without building a Categorical outside its categories (which pandas 4
    turns into an error); the user gets the transform's own message."""
    from advgen_tabular.transform import TableTransform

    df = _small_table()
    cols = [("bytes", "count"), ("proto", "categorical"), ("service", "categorical")]
    t = TableTransform(joint_max=1000 if joint else 0).fit(df, cols)
    assert any(p["kind"] == "joint" for p in t.plans) == joint
    bad = df.head(5).copy()
    bad.loc[2, "service"] = "gopher"
    with warnings.catch_warnings():
        warnings.simplefilter("error", PANDAS4_WARNING)
        assert t.transform(df.head(50)).shape == (50, t.dim)
        with pytest.raises(InvalidDataError, match="never seen when fitting: .*gopher"):
            t.transform(bad)


# --- 3. every writer emits the same schema -----------------------------------------------------------


def test_augment_writes_the_columns_sample_writes(tiny_run: Any, nsl_files: Path, tmp_path: Path) -> None:
    run_dir = str(tiny_run.run_dir)
    res = _cli(["sample", run_dir, "-n", "30", "-o", str(tmp_path / "s.csv")])
    assert res.exit_code == 0, res.output
    res = _cli(["augment", run_dir, "--data", str(nsl_files / "train.txt"), "--classes", "u2r,r2l",
                "--per-class", "20", "-o", str(tmp_path / "a.csv")])
    assert res.exit_code == 0, res.output
    sampled, augmented = read_table(tmp_path / "s.csv"), read_table(tmp_path / "a.csv")
    assert list(augmented.columns) == list(sampled.columns) + ["synthetic"]
    assert {"num_outbound_cmds", "is_host_login"} <= set(augmented.columns)
    # the constants dropped from the real rows are written back with their value
    real = augmented[augmented["synthetic"] == 0]
    assert len(real) == 1500 and (real["num_outbound_cmds"] == 0).all() and (real["is_host_login"] == 0).all()
    assert augmented["synthetic"].sum() == 40
    # the run's own data (no --data), Parquet: the same schema again
    res = _cli(["augment", run_dir, "--classes", "u2r", "--per-class", "5", "--threads", "1",
                "-o", str(tmp_path / "b.parquet")])
    assert res.exit_code == 0, res.output
    assert list(read_table(tmp_path / "b.parquet").columns) == list(sampled.columns) + ["synthetic"]


# --- 1. --threads reaches torch, OpenMP/BLAS and n_jobs ----------------------------------------------

SEEN: list[dict[str, Any]] = []


def _thread_state(estimator: Any) -> dict[str, Any]:
    from threadpoolctl import threadpool_info

    return {
        "n_jobs": getattr(estimator, "n_jobs", None),
        "pools": sorted({p["num_threads"] for p in threadpool_info()}),
        "torch": torch.get_num_threads(),
    }


class SpyForest(RandomForestClassifier):
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Any:
        SEEN.append(_thread_state(self))
        return super().fit(X, y, sample_weight=sample_weight)


class SpyLogistic(LogisticRegression):
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Any:
        SEEN.append(_thread_state(self))
        return super().fit(X, y, sample_weight=sample_weight)


@pytest.fixture
def spies(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    from advgen.detectors import BUILTIN_DETECTORS

    SEEN.clear()
    monkeypatch.setitem(BUILTIN_DETECTORS, "spy-forest",
                        lambda seed: SpyForest(n_estimators=5, n_jobs=-1, random_state=seed))
    monkeypatch.setitem(BUILTIN_DETECTORS, "spy-logistic", lambda seed: SpyLogistic(max_iter=200, random_state=seed))
    return SEEN


def _evaluate_args(d: Path, *extra: str) -> list[str]:
    return ["evaluate", str(d / "synth.csv"), "--real", str(d / "train.txt"), "--dataset", "nsl-kdd",
            "--detector", "spy-forest", "--realism", "spy-logistic", "--seeds", "1", "--folds", "2",
            "--max-rows", "400", "--no-plots", *extra]


@pytest.mark.parametrize("threads", [1, None])
def test_evaluate_threads_cap_torch_openmp_blas_and_n_jobs(
    spies: list[dict[str, Any]], nsl_files: Path, threads: int | None
) -> None:
    from advgen.threads import available_cores

    before = torch.get_num_threads()
    args = _evaluate_args(nsl_files, "-q") + (["--threads", str(threads)] if threads else [])
    res = _cli(args)
    assert res.exit_code == 0, res.output
    want = threads or min(2, available_cores())
    assert spies, "the spy detectors were never fitted"
    for state in spies:
        assert state["torch"] == want
        assert max(state["pools"]) <= want
        if state["n_jobs"] is not None:
            assert state["n_jobs"] == want  # the forest asked for -1 (every core)
    assert torch.get_num_threads() == before  # restored once the command is done


def test_threads_option_is_documented_and_validated(nsl_files: Path) -> None:
    for command in ("evaluate", "augment"):
        res = _cli([command, "--help"])
        assert "--threads" in res.output and "min(2, cores)" in res.output
    res = _cli(_evaluate_args(nsl_files, "--threads", "0"))
    assert res.exit_code == 2 and "--threads" in res.output and "Traceback" not in res.output


# --- 2. progress and seconds per phase, on stderr ----------------------------------------------------


def test_evaluate_shows_phases_with_seconds_and_progress_within_them(spies: Any, nsl_files: Path, tmp_path: Path) -> None:
    d = nsl_files
    res = _cli(_evaluate_args(d, "--test", str(d / "test.txt"), "--rare", "r2l", "--threads", "1",
                              "--json", str(tmp_path / "r.json")))
    assert res.exit_code == 0, res.output
    err = res.stderr
    for phase in ("realism AUC (spy-logistic)", "label fidelity (spy-forest on the real rows)",
                  "utility (TSTR vs TRTR, spy-forest)", "augmentation uplift (r2l, spy-forest)",
                  "memorisation (distance to closest record)"):
        assert f"{phase} ..." in err, phase
        assert re.search(re.escape(phase) + r": done in \d+\.\d s", err), phase
    assert "realism AUC (spy-logistic): fold 2/2" in err
    assert "utility (TSTR vs TRTR, spy-forest): seed 1/1" in err
    assert "augmentation uplift (r2l, spy-forest): seed 1/1" in err
    assert re.search(r"^\[\s*\d+\.\d s\] ", err, re.M)  # every line carries the seconds since the start
    assert "fold 1/2" not in res.stdout and "done in" not in res.stdout  # progress stays off the report on stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["augmentation"]["flags"] == augmentation_flags(report["augmentation"])
    assert {"realism", "fidelity", "utility", "augmentation"} <= set(report["seconds"])


# --- 4. export says what parity compared ---------------------------------------------------------------


def test_export_reports_parity_in_words(tiny_run: Any, tmp_path: Path) -> None:
    res = _cli(["export", str(tiny_run.run_dir), "-o", str(tmp_path / "m.onnx")])
    assert res.exit_code == 0, res.output
    assert "parity with torch at batch sizes 1, 3, 257: passed" in res.output
    assert re.search(r"numeric \(float64\): largest difference \S+( in column \S+ \(torch value [^)]+\))?, within the "
                     r"allowed 0\.0001 \+ 0\.0001 x \|torch value\|", res.output)
    assert "categorical (int64 category indices): identical" in res.output
    assert "largest differences" not in res.output


def test_parity_summary_reads_the_report_defensively() -> None:
    from advgen_export.torch_cli import parity_summary

    parity = {"batch_sizes": [1, 3, 257], "atol": 1e-4, "rtol": 1e-4, "max_abs_diff": {"numeric": 99.0, "pixels": 1.0},
              "some_future_field": {"numeric": 0.5}}
    outputs = [{"name": "numeric", "dtype": "float32", "dtypes": ["int64"]}, {"name": "pixels", "dtype": "uint8"}]
    text = parity_summary(parity, outputs)
    assert "numeric (float32): largest difference 99, within the allowed 0.0001 + 0.0001 x |torch value|" in text
    assert "(one rounding step more in rounded columns)" in text
    assert "pixels (uint8): largest difference 1 (one rounding step allowed)" in text
    assert "some_future_field" not in text


# --- 5. plots that say what they show -----------------------------------------------------------------


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Figures passed to ``save_figure`` (still written), for their titles, legends and panels."""
    import advgen.io
    import advgen.metrics.plots
    import advgen_tabular.domain

    captured: list[Any] = []
    real_save = advgen.io.save_figure

    def capture(fig: Any, path: Any, *args: Any, **kwargs: Any) -> Any:
        captured.append(fig)
        return real_save(fig, path, *args, **kwargs)

    for module in (advgen.io, advgen.metrics.plots, advgen_tabular.domain):
        monkeypatch.setattr(module, "save_figure", capture)
    return captured


def _titles(fig: Any) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.axison]


def test_tabular_samples_plot_has_a_title_and_one_shared_legend(tiny_run: Any, figures: list[Any], tmp_path: Path) -> None:
    real = tiny_run.load_real().samples.iloc[:2000]
    fake = tiny_run.sample(500, seed=0)
    assert tiny_run.domain.plot(real, fake, tmp_path / "samples.png", tiny_run.spec)
    (fig,) = figures
    assert fig._suptitle is not None
    assert fig._suptitle.get_text() == "nsl-kdd:train20: 2,000 real vs 500 generated rows, 12 of 41 feature columns"
    assert len(fig.legends) == 1 and [t.get_text() for t in fig.legends[0].get_texts()] == ["real", "generated"]
    assert all(ax.get_legend() is None for ax in fig.axes)
    assert all(t.get_fontsize() >= 10 for t in (ax.title for ax in fig.axes if ax.axison))


def test_images_plot_labels_real_and_generated(figures: list[Any], tmp_path: Path) -> None:
    from advgen_images.domain import ImageSamples, ImagesDomain

    rng = np.random.default_rng(0)
    spec = {"shape": [1, 8, 8], "conditions": {"name": "label", "classes": ["0", "1", "2"]}, "source": "digits"}
    real = ImageSamples(rng.integers(0, 256, (30, 8, 8, 1), dtype=np.uint8), np.repeat(["0", "1", "2"], 10))
    fake = ImageSamples(rng.integers(0, 256, (30, 8, 8, 1), dtype=np.uint8), np.tile(["0", "1", "2"], 10))
    assert ImagesDomain().plot(real, fake, tmp_path / "grid.png", spec)
    (fig,) = figures
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["real", "generated"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "1", "2"]
    assert "real images (left) and generated ones (right)" in ax.get_title()
    assert (tmp_path / "grid.png").stat().st_size > 0


def _report_with_fidelity(columns: list[str]) -> dict[str, Any]:
    per = {c: 1.0 - i / 100 for i, c in enumerate(columns)}  # later columns differ more
    return {"subject": "nsl-kdd", "fidelity": {"ks_complement": {"mean": 0.8, "per_column": per},
                                              "tv_complement": {"mean": float("nan"), "per_column": {}},
                                              "correlation_difference": 0.1}}


def test_report_histograms_show_the_most_different_columns_large(tiny_run: Any, figures: list[Any], tmp_path: Path) -> None:
    real = tiny_run.load_real().samples.iloc[:1000]
    fake = tiny_run.sample(300, seed=0)
    columns = [c for c in tiny_run.spec["columns"] if c["role"] == "feature"]
    numeric = [c["name"] for c in columns if c["kind"] != "categorical"]
    report = _report_with_fidelity(numeric)
    subject = ev.Subject.for_table(columns, real)
    (path,) = write_plots(report, subject, real, fake, tmp_path)
    (fig,) = figures
    shown = [t.split("\n")[0].removeprefix("log1p(").removesuffix(")") for t in _titles(fig)]
    assert shown == numeric[::-1][:12]  # the 12 worst, worst first
    assert len(fig.legends) == 1 and fig._suptitle is not None and "differ most" in fig._suptitle.get_text()
    page = write_html(report | {"n": {"synthetic": 1, "real": 1, "test": 0}, "detector": "rf"}, [path],
                         tmp_path / "r.html").read_text()
    assert "<h2>Columns that differ most: real vs synthetic distributions</h2>" in page
    assert "<h2>eval_histograms</h2>" not in page
    folded = page[page.index("<details><summary>Fidelity of every column"):]
    assert folded.index(numeric[-1]) < folded.index(numeric[0])  # worst first, every column listed
    assert all(c in folded for c in numeric)


def _uplift(precision_after: float, fpr_after: float) -> dict[str, Any]:
    def cls(p: float, r: float, n: int) -> dict[str, Any]:
        return {"precision": {"mean": p, "std": 0.0}, "recall": {"mean": r, "std": 0.0},
                "f1": {"mean": 0.5, "std": 0.0}, "support": n}

    def side(u2r_p: float, fpr: float) -> dict[str, Any]:
        return {"accuracy": {"mean": 0.7, "std": 0.0}, "macro_f1": {"mean": 0.5, "std": 0.0},
                "fpr_normal": {"mean": fpr, "std": 0.0},
                "per_class": {"normal": cls(0.7, 0.97, 9711), "u2r": cls(u2r_p, 0.1, 67)}}

    return {"added": {"u2r": 500}, "base": side(0.80, 0.02), "augmented": side(precision_after, fpr_after),
            "classes": ["u2r"], "seeds": [0]}


def test_precision_drops_and_fpr_rises_are_flagged(tmp_path: Path, figures: list[Any]) -> None:
    report = {"subject": "nsl-kdd", "detector": "random-forest", "n": {"synthetic": 1, "real": 1, "test": 1},
              "skipped": {}, "notes": [], "augmentation": _uplift(0.31, 0.05)}
    flags = augmentation_flags(report["augmentation"])
    assert [(f["metric"], f["class"]) for f in flags] == [("precision", "u2r"), ("fpr_normal", None)]
    text = format_report(report)
    assert "WARNING: u2r precision fell from 0.80 to 0.31" in text
    assert "WARNING: false-positive rate on the normal class rose from 0.020 to 0.050" in text
    assert re.search(r"u2r\*.*! precision fell", text)
    assert re.search(r"augmented FPR on normal\s+0\.050 ± 0\.000\s+! rose", text)
    page = write_html(report, [], tmp_path / "r.html").read_text()
    assert "<p class='warn'>Warning: u2r precision fell" in page and "<tr class='flag'><td>u2r*" in page
    plot_recall_bars(report, tmp_path / "bars.png")
    ticks = [t.get_text() for t in figures[-1].axes[1].get_xticklabels()]
    assert ticks == ["normal", "u2r *\n! precision fell"]
    # small moves stay quiet
    report["augmentation"] = _uplift(0.78, 0.025)
    assert augmentation_flags(report["augmentation"]) == []
    assert "WARNING" not in format_report(report)
