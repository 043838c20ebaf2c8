"""Evaluation figures on tables that do not fit the usual shape: no categorical (or no numeric) feature,
and many exact duplicate rows.

An audit on a PE-header malware table (50 integer columns, label ``Malware`` 0/1, 18% exact duplicate
rows) found ``TV complement (categorical) 1.000`` for a table with no categorical feature (the only
"categorical" judged was the label, matched by construction), and memorisation figures made meaningless
by the duplicates: held-out 5th percentile 0, so no synthetic row could be closer, and a median ratio
of 62.9 against a held-out median pulled to 0 by rows that repeat training rows. The tables here are
small synthetic stand-ins with the same traits, built so that the answer is known.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from advgen import evaluate as ev
from advgen.metrics import privacy
from advgen.metrics.privacy import EXACT_COPY, memorisation
from advgen.metrics.report import summary_rows

N_FEATURES = 12
FEATURES = [f"f{i}" for i in range(N_FEATURES)]
PE_COLUMNS = [{"name": n, "kind": "count", "role": "feature"} for n in FEATURES] + [
    {"name": "Malware", "kind": "categorical", "role": "label"}
]


def _prototypes(seed: int = 123, k: int = 40) -> np.ndarray:
    """Rows that recur verbatim (packers, builds of one family): the source of exact duplicates."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 60_000, size=(k, N_FEATURES))


def pe_table(n: int, seed: int, dup: float = 0.3) -> pd.DataFrame:
    """Integer features, a 0/1 label, and a share ``dup`` of rows drawn from a few recurring prototypes,
    so that train, test and a fresh sample all repeat each other's rows (the other rows are distinct)."""
    rng = np.random.default_rng(seed)
    protos = _prototypes()
    X = rng.integers(0, 60_000, size=(n, N_FEATURES))
    repeat = rng.random(n) < dup
    X[repeat] = protos[rng.integers(0, len(protos), size=int(repeat.sum()))]
    df = pd.DataFrame(X, columns=FEATURES)
    df["Malware"] = (X[:, 0] > 30_000).astype(int)
    return df


# --- F-D: TV complement with no categorical feature ---------------------------------------------


def test_the_label_is_not_a_categorical_feature_for_the_tv_complement():
    real, synth = pe_table(600, 0), pe_table(600, 1)
    fid = ev.table_fidelity(real, synth, PE_COLUMNS)
    tv = fid["tv_complement"]
    assert tv["per_column"] == {}, tv  # was {"Malware": 0.99...}
    assert np.isnan(tv["mean"]), tv  # never a perfect score for something not measured
    assert "Malware" not in fid["ks_complement"]["per_column"]
    assert set(fid["ks_complement"]["per_column"]) == set(FEATURES)
    # the class balance is reported on its own, named as such
    cb = fid["class_balance"]
    assert cb["column"] == "Malware" and 0.9 < cb["tv_complement"] <= 1.0


def test_no_categorical_feature_reads_na_in_terminal_html_and_null_in_json(tmp_path: Path):
    real, synth, test = pe_table(500, 0), pe_table(500, 1), pe_table(300, 2)
    subject = ev.Subject.for_table(PE_COLUMNS, real)
    report = ev.evaluate(synth, real, test, subject=subject, sections=("fidelity",), realism_detectors=())
    assert report["fidelity"]["tv_complement"]["mean"] is None
    assert report["fidelity"]["tv_complement"]["per_column"] == {}
    text = ev.format_report(report)
    row = next(line for line in text.splitlines() if line.startswith("TV complement"))
    assert "n/a (no categorical features)" in row and "1.000" not in row, row
    assert any(line.startswith("class balance") for line in text.splitlines()), text
    page = ev.write_html(report, [], tmp_path / "r.html").read_text()
    assert "n/a (no categorical features)" in page
    json.dumps(report, allow_nan=False)


def test_no_numeric_feature_reads_na_symmetrically():
    rng = np.random.default_rng(0)

    def table(n: int) -> pd.DataFrame:
        return pd.DataFrame({"proto": rng.choice(["tcp", "udp", "icmp"], n), "flag": rng.choice(["SF", "S0"], n),
                             "cls": rng.choice(["a", "b"], n)})

    cols = [{"name": "proto", "kind": "categorical"}, {"name": "flag", "kind": "categorical"},
            {"name": "cls", "kind": "categorical", "role": "label"}]
    real, synth = table(400), table(400)
    subject = ev.Subject.for_table(cols, real)
    report = ev.evaluate(synth, real, None, subject=subject, sections=("fidelity",), realism_detectors=())
    fid = report["fidelity"]
    assert fid["ks_complement"]["mean"] is None and fid["ks_complement"]["per_column"] == {}
    assert set(fid["tv_complement"]["per_column"]) == {"proto", "flag"}  # the label is not among them
    rows = {r[0]: r[1] for r in summary_rows(report)}
    assert rows["KS complement (numeric)"] == "n/a (no numeric features)"
    assert rows["correlation difference (raw numeric columns)"].startswith("n/a"), rows
    tv = rows["TV complement (categorical)"]
    assert tv not in ("-", "") and not tv.startswith("n/a"), tv


def test_reports_written_before_the_change_still_print():
    # a report from before has no class_balance and may lack per_column; peers' tables read "mean"
    old = {"fidelity": {"ks_complement": {"mean": 0.9}, "tv_complement": {"mean": 0.95}, "correlation_difference": 0.1}}
    rows = {r[0]: r[1] for r in summary_rows(old)}
    assert rows["KS complement (numeric)"] == "0.900" and rows["TV complement (categorical)"] == "0.950"


def test_benchmark_readers_take_a_null_tv_complement():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "peer_report.py"
    spec = importlib.util.spec_from_file_location("peer_report", path)
    peer_report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer_report)
    report = {"fidelity": {"ks_complement": {"mean": 0.95, "per_column": {}},
                           "tv_complement": {"mean": None, "per_column": {}}, "correlation_difference": 0.1}}
    head = peer_report.headline(report)
    assert head["tv_complement"] is None and head["ks_complement"] == 0.95
    assert peer_report.spread([head["tv_complement"]]) is None
    assert "met" not in peer_report.floor_text("tv_complement", None)


# --- F-E: memorisation on duplicate-heavy data --------------------------------------------------


def _X(df: pd.DataFrame) -> np.ndarray:
    return df[FEATURES].to_numpy(np.float64)


def test_memorisation_on_duplicate_heavy_data_keeps_its_ideal_values():
    # train, held-out and "synthetic" rows are three independent draws of one distribution: an ideal
    # generator. Its figures must read ideal (ratio ~1, ~5% closer than the held-out p5) even though a
    # third of the held-out rows repeat a training row exactly (p5 = 0: nothing could be closer)
    train, hold, fresh = _X(pe_table(3000, 0)), _X(pe_table(2000, 1)), _X(pe_table(2000, 2))
    mem = memorisation(train, fresh, hold, max_rows=5000)
    share = mem["holdout"]["exact_copies"]
    assert 0.2 < share < 0.4 and share >= privacy.DUPLICATE_SHARE
    assert mem["holdout"]["p05"] == 0.0  # what made the old figure impossible
    assert mem["reference"] == "rows that are not exact copies"
    assert 0.85 < mem["median_ratio"] < 1.2, mem
    assert 0.02 < mem["closer_than_holdout_p05"] < 0.09, mem
    # exact copies are judged against the held-out share: an ideal generator repeats training rows as often
    assert abs(mem["exact_copies"] - share) < 0.06
    assert mem["distinct"]["holdout"]["p05"] > EXACT_COPY
    assert mem["n"]["holdout_distinct"] == round((1 - share) * mem["n"]["holdout"])


def test_memorisation_on_duplicate_heavy_data_still_tells_copies_and_far_rows():
    train, hold = _X(pe_table(3000, 0)), _X(pe_table(2000, 1))
    rng = np.random.default_rng(5)
    # a generator that copies training rows: copies far above the held-out share
    copied = memorisation(train, train[:1500], hold, max_rows=5000)
    assert copied["exact_copies"] == 1.0 and copied["exact_copies"] > copied["holdout"]["exact_copies"] + 0.5
    # near-copies (tiny noise, not exact): the distance figures catch them
    near = memorisation(train, train[:1500] + rng.normal(0, 5.0, size=(1500, N_FEATURES)), hold, max_rows=5000)
    assert near["exact_copies"] == 0.0
    assert near["median_ratio"] < 0.1 and near["closer_than_holdout_p05"] > 0.5
    # rows off the data: far above 1
    far = memorisation(train, rng.integers(200_000, 300_000, size=(1500, N_FEATURES)).astype(float), hold,
                       max_rows=5000)
    assert far["median_ratio"] > 3 and far["closer_than_holdout_p05"] < 0.01


def test_memorisation_without_duplicates_is_unchanged():
    # data without duplicate rows (NSL-KDD): the figures are the old ones, over every row
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(0)
    train, hold, synth = rng.normal(size=(800, 6)), rng.normal(size=(500, 6)), rng.normal(size=(600, 6)) * 1.1
    synth[:30] = train[:30]  # a few exact copies by the generator, none in the held-out rows
    mem = memorisation(train, synth, hold, max_rows=5000)
    mu, sd = train.mean(axis=0), train.std(axis=0)
    nn = NearestNeighbors(n_neighbors=1).fit((train - mu) / sd)
    d_s = nn.kneighbors((synth - mu) / sd)[0][:, 0]
    d_h = nn.kneighbors((hold - mu) / sd)[0][:, 0]
    assert mem["holdout"]["exact_copies"] == 0.0 and mem["reference"] == "all rows"
    assert mem["median_ratio"] == pytest.approx(np.median(d_s) / np.median(d_h), rel=1e-9)
    assert mem["closer_than_holdout_p05"] == pytest.approx(np.mean(d_s < np.percentile(d_h, 5)), abs=1e-12)
    assert mem["exact_copies"] == pytest.approx(30 / 600)
    report = {"memorisation": mem}
    rows = {r[0]: r for r in summary_rows(report)}
    assert "DCR median ratio synth/held-out" in rows and "share closer than held-out p5" in rows
    assert rows["exact copies of training rows"][3] == "0"


def test_duplicate_heavy_held_out_rows_get_a_note_and_labelled_figures(tmp_path: Path):
    real, synth, test = pe_table(1500, 0), pe_table(1500, 1), pe_table(1000, 2)
    subject = ev.Subject.for_table(PE_COLUMNS, real)
    report = ev.evaluate(synth, real, test, subject=subject, sections=("memorisation",), realism_detectors=())
    mem = report["memorisation"]
    share = mem["holdout"]["exact_copies"]
    note = next((n for n in report["notes"] if "repeat a training row exactly" in n), None)
    assert note is not None, report["notes"]
    assert f"{share:.1%}" in note and "not exact copies" in note
    rows = {r[0]: r for r in summary_rows(report)}
    ratio = next(v for k, v in rows.items() if k.startswith("DCR median ratio"))
    assert "not exact copies" in ratio[0] or "non-copies" in ratio[0]
    assert 0.8 < float(ratio[1]) < 1.25, ratio
    closer = next(v for k, v in rows.items() if k.startswith("share closer than held-out p5"))
    assert float(closer[1]) > 0.0, closer
    copies = rows["exact copies of training rows"]
    assert copies[3] == f"held-out {share:.3f}", copies
    json.dumps(report, allow_nan=False)


def test_cli_evaluate_on_a_duplicate_heavy_integer_table(tmp_path: Path):
    """The audit's command on a stand-in: all-integer features, a 0/1 label, many exact duplicates."""
    from advgen.cli import cli

    train, test, synth = pe_table(800, 0), pe_table(400, 2), pe_table(800, 1)
    for name, df in (("train", train), ("test", test), ("synth", synth)):
        df.to_csv(tmp_path / f"{name}.csv", index=False)
    out = tmp_path / "r.json"
    res = CliRunner().invoke(cli, [
        "evaluate", str(tmp_path / "synth.csv"), "--real", str(tmp_path / "train.csv"),
        "--test", str(tmp_path / "test.csv"), "--label", "Malware", "--detector", "logistic-regression",
        "--realism", "logistic-regression", "--seeds", "1", "--folds", "2", "--no-plots", "--threads", "1",
        "--json", str(out), "-q",
    ])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert report["fidelity"]["tv_complement"]["mean"] is None
    assert "Malware" not in report["fidelity"]["tv_complement"]["per_column"]
    assert "TV complement (categorical)" in res.output and "n/a (no categorical features)" in res.output
    assert report["memorisation"]["closer_than_holdout_p05"] > 0.0
    assert "repeat a training row exactly" in res.output
