"""Evaluation metrics on controlled cases whose answer is known, on real NSL-KDD rows.

Subsets stay small (a few thousand rows, light detectors) so the whole file runs in seconds on CI's
two cores; every comparison below is one a broken metric would fail.
"""

from __future__ import annotations

import functools
import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

from advgen import evaluate as ev
from advgen.augment import augment, read_table, write_table
from advgen.domain import Validator
from advgen.errors import AdvgenError, InvalidDataError


def small_forest(seed: int) -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=30, n_jobs=1, random_state=seed)


def small_boosting(seed: int) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(max_iter=50, random_state=seed)


@functools.lru_cache(maxsize=1)
def _nsl() -> tuple:
    from advgen_datasets import load_table

    train = load_table("nsl-kdd", "train20")
    test = load_table("nsl-kdd", "test", schema=train.columns)
    return train, test


@pytest.fixture
def nsl(data_dir: Path):
    return _nsl()


@pytest.fixture
def parts(nsl):
    """Disjoint random subsets of KDDTrain+_20Percent: A (train), B (another sample), H (held out), pool."""
    train, _ = nsl
    perm = np.random.default_rng(0).permutation(len(train.df))
    take = lambda a, b: train.df.iloc[perm[a:b]].reset_index(drop=True)  # noqa: E731
    return {"A": take(0, 3000), "B": take(3000, 6000), "H": take(6000, 10000), "pool": take(10000, None)}


@pytest.fixture
def subject(nsl, parts):
    train, _ = nsl
    cols = [c.to_dict() for c in train.columns]
    return ev.Subject.for_table(cols, parts["A"], label=train.label, label_map=train.category_map)


def shuffled(df: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    """Every column permuted independently: real marginals, no dependence between columns."""
    rng = np.random.default_rng(seed)
    out = df.copy()
    for c in out.columns:
        out[c] = rng.permutation(out[c].to_numpy())
    return out


# --- realism --------------------------------------------------------------------------------------


def test_realism_auc_near_half_for_real_data_and_high_for_shuffled_columns(subject, parts, fresh_manager):
    gb = small_boosting
    _, lr = ev.resolve_detector("logistic-regression", fresh_manager)
    XA = subject.featurize(parts["A"].iloc[:1500])
    XB = subject.featurize(parts["B"].iloc[:1500])
    XS = subject.featurize(shuffled(parts["B"].iloc[:1500]))
    same_gb = ev.realism_auc(XA, XB, gb, folds=3)
    same_lr = ev.realism_auc(XA, XB, lr, folds=3)
    shuf_gb = ev.realism_auc(XA, XS, gb, folds=3)
    shuf_lr = ev.realism_auc(XA, XS, lr, folds=3)
    assert abs(same_gb["mean"] - 0.5) < 0.06, same_gb
    assert abs(same_lr["mean"] - 0.5) < 0.06, same_lr
    assert shuf_gb["mean"] > 0.9, shuf_gb
    # the linear detector is blind to broken dependence: why the report carries both
    assert shuf_gb["mean"] - shuf_lr["mean"] > 0.2
    assert same_gb["n_per_side"] == 1500 and len(same_gb["folds"]) == 3
    for r in (same_gb, same_lr, shuf_gb, shuf_lr):  # the summary is of the folds it reports
        assert r["mean"] == pytest.approx(np.mean(r["folds"]), abs=1e-12)
        assert r["std"] == pytest.approx(np.std(r["folds"]), abs=1e-12)
    assert same_gb["std"] > 0 and same_lr["std"] > 0
    assert all(abs(a - 0.5) < 0.1 for a in same_gb["folds"] + same_lr["folds"]), (same_gb, same_lr)
    # the correlation difference sees what the linear detector misses
    assert ev.correlation_difference(XA, XS) > 2 * ev.correlation_difference(XA, XB)


def test_realism_auc_uses_equal_counts_and_rejects_tiny_inputs(subject, parts, fresh_manager):
    _, lr = ev.resolve_detector("logistic-regression", fresh_manager)
    XA = subject.featurize(parts["A"])
    r = ev.realism_auc(XA, XA[:400], lr, folds=2)
    assert r["n_per_side"] == 400
    with pytest.raises(AdvgenError, match="at least 10"):
        ev.realism_auc(XA, XA[:4], lr, folds=5)


# --- fidelity -------------------------------------------------------------------------------------


def test_table_fidelity_reads_marginals_and_dependence(subject, parts):
    A, B = parts["A"], parts["B"]
    same = ev.table_fidelity(A, B, subject.columns)
    shuf = ev.table_fidelity(A, shuffled(B), subject.columns)
    assert same["ks_complement"]["mean"] > 0.95 and same["tv_complement"]["mean"] > 0.95
    # shuffling keeps every marginal: KS and TV cannot tell, the correlations can
    assert shuf["ks_complement"]["mean"] == pytest.approx(same["ks_complement"]["mean"])
    assert shuf["tv_complement"]["mean"] == pytest.approx(same["tv_complement"]["mean"])
    assert shuf["correlation_difference"] > 3 * same["correlation_difference"]
    bent = B.copy()
    bent["src_bytes"] = bent["src_bytes"] * 10 + 1
    bent["protocol_type"] = "icmp"
    bad = ev.table_fidelity(A, bent, subject.columns)
    assert bad["ks_complement"]["per_column"]["src_bytes"] < same["ks_complement"]["per_column"]["src_bytes"] - 0.3
    assert bad["tv_complement"]["per_column"]["protocol_type"] < 0.3
    assert bad["ks_complement"]["per_column"]["count"] == same["ks_complement"]["per_column"]["count"]


def test_missing_column_is_one_clear_error(subject, parts):
    with pytest.raises(InvalidDataError, match="synthetic data lacks 1 column.*src_bytes"):
        ev.table_fidelity(parts["A"], parts["B"].drop(columns=["src_bytes"]), subject.columns)
    with pytest.raises(InvalidDataError, match="src_bytes"):
        subject.featurize(parts["B"].drop(columns=["src_bytes"]))


# --- labels: label fidelity, utility ----------------------------------------------------------------


def test_tstr_matches_trtr_for_real_rows_and_collapses_with_swapped_labels(subject, parts):
    A, B, H = parts["A"], parts["B"], parts["H"]
    XA, XB, XH = subject.featurize(A), subject.featurize(B), subject.featurize(H)
    yA, yB, yH = subject.y(A), subject.y(B), subject.y(H)
    assert set(yA) <= {"normal", "dos", "probe", "r2l", "u2r"}  # labels mapped to categories
    good = ev.utility(XA, yA, XB, yB, XH, yH, small_forest, seeds=[0, 1])
    swapped = ev.utility(XA, yA, XB, np.random.default_rng(0).permutation(yB), XH, yH, small_forest, seeds=[0, 1])
    assert good["ratio"]["macro_f1"] > 0.85
    assert swapped["tstr"]["macro_f1"]["mean"] < 0.5 * swapped["trtr"]["macro_f1"]["mean"]
    assert swapped["tstr"]["accuracy"]["mean"] < 0.7 * swapped["trtr"]["accuracy"]["mean"]
    assert good["trtr"] == swapped["trtr"]  # same real fits, same seeds


def test_label_fidelity_drops_when_labels_are_wrong(subject, parts):
    A, B, H = parts["A"], parts["B"], parts["H"]
    XA, XB = subject.featurize(A), subject.featurize(B)
    yA, yB = subject.y(A), subject.y(B)
    good = ev.label_fidelity(XA, yA, XB, yB, small_forest, test_X=subject.featurize(H), test_y=subject.y(H))
    bad = ev.label_fidelity(XA, yA, XB, np.random.default_rng(0).permutation(yB), small_forest)
    assert good["per_class"]["dos"]["agreement"] > 0.95
    assert good["per_class"]["dos"]["n"] == int((yB == "dos").sum())
    assert good["mean"] > bad["mean"] + 0.3
    assert good["real_test_recall_mean"] is not None and bad["real_test_recall_mean"] is None


# --- augmentation ---------------------------------------------------------------------------------


def _uplift(subject, parts, extra: pd.DataFrame) -> dict:
    A, H = parts["A"], parts["H"]
    return ev.augmentation_uplift(
        subject.featurize(A), subject.y(A), subject.featurize(extra), subject.y(extra),
        subject.featurize(H), subject.y(H), small_forest, seeds=[0, 1, 2],
    )


def test_augmentation_with_real_rare_rows_raises_recall(subject, parts):
    A, pool = parts["A"], parts["pool"]
    cats = subject.y(pool)
    copies = pd.concat([A[subject.y(A) == "r2l"]] * 5, ignore_index=True)
    unseen = pool[cats == "r2l"].head(150)
    by_copies = _uplift(subject, parts, copies)
    by_unseen = _uplift(subject, parts, unseen)
    assert by_copies["added"] == {"r2l": len(copies)}
    assert by_copies["delta"]["per_class"]["r2l"]["recall"] > 0
    # rows the detector has not seen (an ideal generator) teach it more than copies do
    assert by_unseen["delta"]["per_class"]["r2l"]["recall"] > max(0.05, by_copies["delta"]["per_class"]["r2l"]["recall"])
    r2l = by_unseen["augmented"]["per_class"]["r2l"]
    assert set(r2l) == {"precision", "recall", "f1", "support"}
    # mean and spread over the three detector seeds, recomputed here fit by fit
    from sklearn.metrics import f1_score

    X = np.vstack([subject.featurize(A), subject.featurize(unseen)])
    y = np.concatenate([subject.y(A), subject.y(unseen)])
    XH, yH = subject.featurize(parts["H"]), subject.y(parts["H"])
    preds = [small_forest(s).fit(X, y).predict(XH) for s in (0, 1, 2)]
    recall = [np.mean(p[yH == "r2l"] == "r2l") for p in preds]
    precision = [np.mean(yH[p == "r2l"] == "r2l") for p in preds]
    macro_f1 = [f1_score(yH, p, labels=sorted(set(yH)), average="macro") for p in preds]
    assert r2l["support"] == int((yH == "r2l").sum())
    for got, per_seed in ((r2l["recall"], recall), (r2l["precision"], precision),
                          (by_unseen["augmented"]["macro_f1"], macro_f1)):
        assert got["mean"] == pytest.approx(np.mean(per_seed), abs=1e-12)
        assert got["std"] == pytest.approx(np.std(per_seed), abs=1e-12)
    # the seeds disagree on r2l precision here: a spread stuck at 0 would be a bug
    assert r2l["precision"]["std"] > 0.01 and by_unseen["augmented"]["macro_f1"]["std"] > 0


def test_noise_labelled_rare_shows_no_gain_once_precision_and_fpr_are_read(subject, parts):
    noise = shuffled(parts["pool"].sample(150, random_state=0))
    noise["label"] = "guess_passwd"  # an r2l attack name
    up = _uplift(subject, parts, noise)
    d = up["delta"]
    assert d["per_class"]["r2l"]["precision"] < -0.03
    assert d["macro_f1"] < 0.005
    assert d["fpr_normal"] >= 0
    assert "fpr_normal" in up["base"] and 0 <= up["base"]["fpr_normal"]["mean"] < 0.05


# --- memorisation, validity -----------------------------------------------------------------------


def test_memorisation_tells_copies_from_fresh_rows(subject, parts):
    XA, XB, XH = (subject.featurize(parts[k]) for k in ("A", "B", "H"))
    fresh = ev.memorisation(XA, XB, XH, max_rows=1000)
    copied = ev.memorisation(XA, XA[:1000], XH, max_rows=1000)
    assert 0.8 < fresh["median_ratio"] < 1.25
    assert fresh["exact_copies"] < 0.02
    assert copied["exact_copies"] == 1.0 and copied["median_ratio"] < 1e-5
    assert copied["closer_than_holdout_p05"] == 1.0


def test_validity_per_rule_and_group(parts):
    rules = [
        Validator("rates_in_unit", "rates in [0, 1]", lambda df: df["serror_rate"].between(0, 1).to_numpy(), "schema"),
        Validator("srv_le_count", "srv_count <= 511", lambda df: (df["srv_count"] <= 511).to_numpy(), "cross-column"),
    ]
    broken = parts["B"].copy()
    broken.loc[: len(broken) // 4 - 1, "serror_rate"] = 2.0
    real = ev.validity(parts["A"], rules, len(parts["A"]))
    synth = ev.validity(broken, rules, len(broken))
    assert real["pass_rate"] == 1.0
    assert synth["per_rule"]["rates_in_unit"] == pytest.approx(0.75)
    assert synth["per_group"] == {"schema": pytest.approx(0.75), "cross-column": 1.0}


# --- the whole report -----------------------------------------------------------------------------


def test_evaluate_api_report_is_complete_json_and_renders(subject, parts, tmp_path, fresh_manager):
    rule = Validator("srv_le_count", "srv_count <= 511", lambda df: (df["srv_count"] <= 511).to_numpy(), "cross-column")
    subject.validators = [rule]
    synth = shuffled(parts["B"].iloc[:1500])
    report = ev.evaluate(
        synth, parts["A"].iloc[:1500], parts["H"].iloc[:1500], subject=subject, detector=small_forest,
        seeds=2, rare=["r2l"], folds=2, max_rows=600, manager=fresh_manager,
        realism_detectors=(small_boosting, "logistic-regression"),
    )
    for key in ("realism", "fidelity", "label_fidelity", "utility", "augmentation", "memorisation", "validity"):
        assert key in report, key
    assert report["skipped"] == {}
    assert set(report["realism"]["auc"]) == {"small_boosting", "logistic-regression"}
    assert report["realism"]["cross_column_validity"] == {"real": 1.0, "synthetic": 1.0}
    assert report["augmentation"]["classes"] == ["r2l"]
    assert report["utility"]["seeds"] == [0, 1]
    assert report["metrics"]["realism_auc"]["ideal"] == "0.5"
    json.dumps(report, allow_nan=False)
    text = ev.format_report(report)
    assert "realism AUC (small_boosting)" in text and "r2l*" in text
    images = ev.write_plots(report, subject, parts["A"].iloc[:1500], synth, tmp_path)
    assert [p.name for p in images] == ["eval_histograms.png", "eval_augmentation_recall.png"]
    page = ev.write_html(report, images, tmp_path / "r.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "Augmentation" in page


def test_evaluate_skips_what_it_cannot_compute_and_rejects_bad_input(subject, parts, fresh_manager):
    A = parts["A"].iloc[:600]
    report = ev.evaluate(
        parts["B"].iloc[:600], A, None, subject=subject, detector=small_forest, seeds=1, folds=2,
        sections=("realism", "utility", "augmentation"), manager=fresh_manager,
        realism_detectors=("logistic-regression",),
    )
    assert report["skipped"] == {
        "utility": "no test set", "augmentation": "no test set", "validity": "no validators for these samples"
    }
    with pytest.raises(InvalidDataError, match="synthetic samples are empty"):
        ev.evaluate(A.iloc[:0], A, None, subject=subject, manager=fresh_manager)
    no_u2r = parts["H"][subject.y(parts["H"]) != "u2r"]
    with pytest.raises(InvalidDataError, match="u2r do not occur in the test set"):
        ev.evaluate(parts["B"].iloc[:600], A, no_u2r, subject=subject, detector=small_forest, rare=["u2r"],
                    sections=("augmentation",), manager=fresh_manager)
    with pytest.raises(AdvgenError, match="unknown detector 'nope'; available: .*random-forest"):
        ev.evaluate(parts["B"], A, None, subject=subject, detector="nope", manager=fresh_manager)


def test_pickled_detector_is_cloned_per_seed(tmp_path):
    path = tmp_path / "det.pkl"
    path.write_bytes(pickle.dumps(RandomForestClassifier(n_estimators=7)))
    factory = ev.load_pickled_detector(path)
    a, b = factory(3), factory(4)
    assert a is not b and a.random_state == 3 and b.n_estimators == 7
    (tmp_path / "junk.pkl").write_bytes(pickle.dumps({"not": "an estimator"}))
    with pytest.raises(AdvgenError, match="not an estimator"):
        ev.load_pickled_detector(tmp_path / "junk.pkl")


# --- augment --------------------------------------------------------------------------------------


class RealRowsRun:
    """Stands in for a conditional tabular run: 'samples' real rows of the requested category."""

    def __init__(self, pool: pd.DataFrame, category_map: dict[str, str]):
        from advgen.domain import Domain

        self.pool = pool
        self.cats = pool["label"].map(category_map).fillna(pool["label"])
        labels = sorted(pool["label"].unique())
        self.spec = {"conditions": {"name": "label", "classes": labels, "counts": [1] * len(labels)},
                     "category_map": category_map}
        self.run_dir = Path("fake")
        cats = self.cats

        class Tab(Domain):
            name = "tabular"

            def condition_classes(self, spec, key, value):
                if key != "category" or value not in set(cats):
                    raise AdvgenError(f"unknown condition {key}={value}")
                return [0]

        self.domain = Tab()
        self.calls: list = []

    def sample(self, n, condition=None, seed=None):
        self.calls.append((n, dict(condition), seed))
        rows = self.pool[self.cats == condition["category"]]
        return rows.sample(n, replace=True, random_state=seed).reset_index(drop=True)


def test_augment_adds_marked_rows_per_class_and_balances(nsl, parts, tmp_path):
    train, _ = nsl
    run = RealRowsRun(parts["pool"], train.category_map)
    A = parts["A"]
    out = augment(run, A, ["r2l", "u2r"], per_class=40, seed=5)
    assert len(out) == len(A) + 80 and out["synthetic"].sum() == 80
    assert list(out.columns) == [*A.columns, "category", "synthetic"]
    assert out.loc[out["synthetic"] == 1, "category"].value_counts().to_dict() == {"r2l": 40, "u2r": 40}
    assert (out.loc[out["synthetic"] == 0].drop(columns=["category", "synthetic"]).equals(A))
    assert out["src_bytes"].dtype == A["src_bytes"].dtype
    assert run.calls == [(40, {"category": "r2l"}, 5), (40, {"category": "u2r"}, 6)]
    balanced = augment(run, A, ["u2r"], balance=True)
    counts = balanced["category"].value_counts()
    assert counts["u2r"] == counts["normal"] == counts.max()
    for path in (tmp_path / "aug.csv", tmp_path / "aug.parquet"):
        write_table(out, path)
        back = read_table(path)
        assert back.shape == out.shape and back["synthetic"].sum() == 80
    with pytest.raises(AdvgenError, match="unknown condition category=nope"):
        augment(run, A, ["nope"], per_class=3)
    with pytest.raises(AdvgenError, match="exactly one"):
        augment(run, A, ["r2l"], per_class=3, balance=True)


# --- command line ---------------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path, parts, data_dir):
    """Header-less NSL-KDD-layout subsets (read with --dataset nsl-kdd) and a synthetic CSV."""
    lines = (data_dir / "nsl-kdd" / "KDDTrain+_20Percent.txt").read_text().splitlines()
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(lines))
    (tmp_path / "train.txt").write_text("\n".join(lines[i] for i in idx[:1500]) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(lines[i] for i in idx[1500:3000]) + "\n")
    synth = parts["pool"].iloc[:1500]
    synth.to_csv(tmp_path / "synth.csv", index=False)
    return tmp_path


def _cli(args):
    from advgen.cli import cli

    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_cli_evaluate_writes_json_and_html(files):
    d = files
    (d / "det.pkl").write_bytes(pickle.dumps(RandomForestClassifier(n_estimators=20)))
    res = _cli([
        "evaluate", str(d / "synth.csv"), "--real", str(d / "train.txt"), "--test", str(d / "test.txt"),
        "--unsafe-load-detector", str(d / "det.pkl"),
        "--dataset", "nsl-kdd", "--seeds", "1", "--folds", "2", "--max-rows", "500", "--rare", "r2l",
        "--realism", "logistic-regression",
        "--json", str(d / "r.json"), "--html", str(d / "r.html"), "-q",
    ])
    assert res.exit_code == 0, res.output
    assert "realism AUC (logistic-regression)" in res.output and "r2l*" in res.output
    report = json.loads((d / "r.json").read_text())
    assert report["n"] == {"synthetic": 1500, "real": 1500, "test": 1500}
    assert report["detector"] == "pickled:det.pkl"
    assert abs(report["realism"]["auc"]["logistic-regression"]["mean"] - 0.5) < 0.1
    assert "data:image/png;base64," in (d / "r.html").read_text()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: read_table(d / "synth.csv").drop(columns=["flag"]).to_csv(d / "synth.csv", index=False),
         "synthetic data lacks 1 column(s) of the schema: flag"),
        (lambda d: (d / "synth.csv").write_text(""), "synth.csv is empty"),
        (lambda d: (d / "synth.csv").write_text(read_table(d / "synth.csv").columns.str.cat(sep=",") + "\n"),
         "has a header but no rows"),
    ],
    ids=["missing-column", "empty-file", "header-only"],
)
def test_cli_evaluate_bad_samples_give_one_line(files, mutate, message):
    d = files
    mutate(d)
    res = _cli(["evaluate", str(d / "synth.csv"), "--real", str(d / "train.txt"), "--dataset", "nsl-kdd", "-q"])
    assert res.exit_code == 1
    assert message in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1


def test_cli_evaluate_rare_class_missing_from_test_and_unknown_detector(files):
    d = files
    test = [line for line in (d / "test.txt").read_text().splitlines() if ",buffer_overflow," not in line
            and not any(f",{a}," in line for a in ("rootkit", "loadmodule", "perl"))]
    (d / "test.txt").write_text("\n".join(test) + "\n")
    base = ["evaluate", str(d / "synth.csv"), "--real", str(d / "train.txt"), "--test", str(d / "test.txt"),
            "--dataset", "nsl-kdd", "-q", "--seeds", "1"]
    res = _cli([*base, "--rare", "u2r"])
    assert res.exit_code == 1 and "u2r do not occur in the test set" in res.output
    res = _cli([*base, "--detector", "nope"])
    assert res.exit_code == 1 and "unknown detector 'nope'" in res.output
    res = _cli(["evaluate", "--help"])
    assert "--unsafe-load-detector" in res.output and "executes" in res.output
    res = _cli(["evaluate", str(d / "synth.csv")])
    assert res.exit_code != 0 and "--real" in res.output


def test_every_metric_is_documented_with_direction_and_ideal():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "metrics.md").read_text()
    for key, info in ev.METRICS.items():
        assert f"## {key}:" in doc, key
        assert info.direction and info.ideal


def test_the_two_correlation_differences_say_what_each_compares():
    # the report listed "correlation difference 0.068" and "column correlation difference 0.066"
    from advgen.metrics.report import summary_rows

    report = {"realism": {"auc": {}, "correlation_difference": 0.068}, "fidelity": {
        "ks_complement": {"mean": 0.9}, "tv_complement": {"mean": 0.9}, "correlation_difference": 0.066}}
    names = [r[0] for r in summary_rows(report) if "correlation" in r[0]]
    assert names == ["correlation difference (detector features)", "correlation difference (raw numeric columns)"]
    doc = (Path(__file__).resolve().parents[1] / "docs" / "metrics.md").read_text()
    for key, name in (("realism.correlation_difference", names[0]), ("fidelity.correlation_difference", names[1])):
        assert f"| `{key}` | {name} |" in doc, key
        assert any(info.title.lower() == name for info in ev.METRICS.values()), name


def test_cli_evaluate_run_of_another_domain_goes_through_its_featurize(tmp_path):
    """Curves have no labels and no columns: realism and validity are computed, the rest is skipped."""
    from advgen.api import train

    run = train({"plugin": "curves", "steps": 30, "out": str(tmp_path / "run"), "n_samples": 50, "threads": 1})
    res = _cli(["evaluate", str(run.run_dir), "-n", "400", "--folds", "2", "--realism", "logistic-regression",
                "--json", str(tmp_path / "r.json"), "-q"])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["subject"] == "curves" and report["n"]["synthetic"] == 400
    # thirty steps leave the generator far from the family: every fold tells its curves apart
    realism = report["realism"]["auc"]["logistic-regression"]
    assert realism["mean"] > 0.95 and min(realism["folds"]) > 0.9 and realism["n_per_side"] == 400
    # while two halves of the real curves, through the same featurize and detector, cannot be told apart
    real = run.domain.featurize(run.load_real().samples, run.spec)
    half = len(real) // 2
    same = ev.realism_auc(real[:half], real[half:], ev.resolve_detector("logistic-regression")[1], folds=2)
    assert abs(same["mean"] - 0.5) < 0.06, same
    assert report["validity"]["real"]["pass_rate"] > report["validity"]["synthetic"]["pass_rate"]
    assert report["skipped"]["fidelity"].startswith("per-column fidelity needs table samples")
    assert report["skipped"]["label_fidelity"] == "samples have no labels"
    assert (run.run_dir / "eval_samples.png").is_file()


@pytest.fixture
def tabular_run(tmp_path, data_dir):
    """A short conditional tabular run on KDDTrain+_20Percent: poor rows, but every code path of a real run."""
    from advgen.api import train

    return train({"plugin": "tabular", "steps": 30, "out": str(tmp_path / "run"), "n_samples": 0, "threads": 1})


def test_cli_evaluate_and_augment_a_tabular_run(tabular_run, files):
    d = files
    res = _cli(["evaluate", str(tabular_run.run_dir), "--real", str(d / "train.txt"), "--test", str(d / "test.txt"),
                "--dataset", "nsl-kdd", "-n", "1000", "--seeds", "1", "--folds", "2", "--max-rows", "500",
                "--realism", "logistic-regression", "--rare", "r2l", "--aug-per-class", "100",
                "--json", str(d / "r.json"), "-q"])
    assert res.exit_code == 0, res.output
    report = json.loads((d / "r.json").read_text())
    assert report["n"]["synthetic"] == 1000 and report["detector"] == "random-forest"
    assert report["augmentation"]["added"] == {"r2l": 100}  # sampled from the run with condition category=r2l
    assert set(report["validity"]["synthetic"]["per_group"]) == {"schema", "cross-column"}
    assert report["validity"]["real"]["pass_rate"] > 0.99
    assert (tabular_run.run_dir / "eval_augmentation_recall.png").is_file()

    res = _cli(["augment", str(tabular_run.run_dir), "--data", str(d / "train.txt"),
                "--classes", "r2l,u2r", "--per-class", "25", "-o", str(d / "aug.csv")])
    assert res.exit_code == 0, res.output
    aug = read_table(d / "aug.csv")
    assert len(aug) == 1500 + 50 and aug["synthetic"].sum() == 50
    res = _cli(["augment", str(tabular_run.run_dir), "--classes", "nope", "--per-class", "5", "-o", str(d / "x.csv")])
    assert res.exit_code == 1 and "category=nope never occurred in training; known values: dos, normal" in res.output


def _flows(n: int, seed: int, benign: str = "BENIGN") -> pd.DataFrame:
    """A small flow table whose numeric columns are all floats (as in many exported IDS CSVs)."""
    rng = np.random.default_rng(seed)
    cls = rng.choice([benign, "DoS", "PortScan"], size=n, p=[0.6, 0.3, 0.1])
    shift = pd.Series(cls).map({benign: 0.0, "DoS": 3.0, "PortScan": -3.0}).to_numpy()
    return pd.DataFrame({"x": rng.normal(shift, 1.0), "y": rng.normal(-shift, 1.0), "cls": cls})


FLOW_COLUMNS = [{"name": "x", "kind": "continuous"}, {"name": "y", "kind": "continuous"},
                {"name": "cls", "kind": "categorical", "role": "label"}]


def test_a_table_of_float_columns_featurizes_with_missing_values():
    # pandas hands an all-float frame back as a read-only view: featurize must not write into it
    real = _flows(50, 0)
    subject = ev.Subject.for_table(FLOW_COLUMNS, real)
    odd = real.copy()
    odd.loc[3, "x"] = np.nan
    X = subject.featurize(odd)
    assert X.shape == (50, 2) and np.isfinite(X).all()
    median = np.nanmedian(real["x"])
    assert X[3, 0] == pytest.approx(np.sign(median) * np.log1p(abs(median)))


@pytest.mark.parametrize("benign, asked, found", [
    ("BENIGN", "normal", "BENIGN"),  # CIC-IDS2017's spelling, under the default --normal
    ("Normal", "normal", "Normal"),  # UNSW-NB15's
    ("Normal", "NORMAL", "Normal"),
    ("background", "normal", None),  # none: said in a note, not silently left out
])
def test_the_normal_class_is_found_as_the_labels_spell_it_or_its_absence_is_a_note(benign, asked, found):
    real, synth, test = _flows(400, 0, benign), _flows(400, 1, benign), _flows(300, 2, benign)
    subject = ev.Subject.for_table(FLOW_COLUMNS, real)
    report = ev.evaluate(synth, real, test, subject=subject, detector=small_forest, seeds=1, rare=["PortScan"],
                         sections=("augmentation",), realism_detectors=())
    base = report["augmentation"]["base"]
    if found is None:
        assert "fpr_normal" not in base
        assert any(f"no class is named {asked!r}" in n and "--normal" in n for n in report["notes"]), report["notes"]
    else:
        assert 0.0 <= base["fpr_normal"]["mean"] <= 1.0
        assert any(repr(found) in n for n in report["notes"]), report["notes"]


def test_dcr_ratio_is_not_huge_when_held_out_rows_repeat_training_rows():
    # UNSW-NB15 repeats many rows: the held-out median distance is float noise (~1e-7), and the ratio
    # was printed as 2,644,954; it was then left undefined. Now the ratio compares the rows that are not
    # exact copies (docs/metrics.md, duplicate-heavy data): fresh rows read about 1
    rng = np.random.default_rng(0)
    train = rng.normal(size=(400, 5)) * 1e3
    holdout = np.vstack([train[:300] + 1e-4, rng.normal(size=(100, 5)) * 1e3])  # 75% repeats, up to noise
    synth = rng.normal(size=(400, 5)) * 1e3
    mem = ev.memorisation(train, synth, holdout, max_rows=1000)
    assert 0 < mem["holdout"]["median"] < 1e-5
    assert mem["holdout"]["exact_copies"] == 0.75 and mem["reference"] == "rows that are not exact copies"
    assert 0.7 < mem["median_ratio"] < 1.4, mem
    # every held-out row a repeat: nothing left to compare, undefined rather than a division by noise
    mem = ev.memorisation(train, synth, train[:300] + 1e-4, max_rows=1000)
    assert np.isnan(mem["median_ratio"]) and np.isnan(mem["closer_than_holdout_p05"])
    real, test = _flows(300, 0), _flows(200, 2)
    subject = ev.Subject.for_table(FLOW_COLUMNS, real)
    report = ev.evaluate(_flows(300, 1), real, real.iloc[:150], subject=subject, sections=("memorisation",),
                         realism_detectors=())
    assert report["memorisation"]["median_ratio"] is None  # NaN in strict JSON
    row = next(line for line in ev.format_report(report).splitlines() if line.startswith("DCR median ratio"))
    assert row.split()[5] == "-", row  # "DCR median ratio synth/held-out (non-copies) -"
    assert any("DCR median ratio undefined: every held-out row repeats a training row exactly" in n
               for n in report["notes"]), report["notes"]
    # 75% of the test rows repeat training rows: a ratio, with a note saying over which rows
    report = ev.evaluate(_flows(300, 1), real, pd.concat([real.iloc[:150], test.iloc[:50]], ignore_index=True),
                         subject=subject, sections=("memorisation",), realism_detectors=())
    assert report["memorisation"]["median_ratio"] is not None
    assert any(n.startswith("memorisation: 75.0% of the held-out rows repeat a training row exactly")
               for n in report["notes"]), report["notes"]


# --- test classes training never saw, notes on the test table --------------------------------------


def test_a_test_class_unseen_in_training_is_named_and_left_out_of_macro_f1():
    # six test rows of a class no training row holds took TRTR macro-F1 from 0.96 to 0.64 without a word
    real, synth, test = _flows(600, 0), _flows(600, 1), _flows(300, 2)
    subject = ev.Subject.for_table(FLOW_COLUMNS, real)
    kw = dict(subject=subject, detector=small_forest, seeds=1, sections=("utility",), realism_detectors=())
    clean = ev.evaluate(synth, real, test, **kw)
    odd = test.copy()
    odd.loc[:5, "cls"] = "malware"
    report = ev.evaluate(synth, real, odd, **kw)
    ut, ref = report["utility"], clean["utility"]
    assert ut["unseen_test_classes"] == {"malware": 6} and "malware" not in ut["classes"]
    for side in ("trtr", "tstr"):
        assert ut[side]["macro_f1"]["mean"] == pytest.approx(ref[side]["macro_f1"]["mean"], abs=0.03), side
        assert ut[side]["accuracy"]["mean"] <= 1 - 6 / len(odd)  # the six rows still count as errors
    assert any(n.startswith("test: class(es) never seen in training: malware (6 rows)") and "macro-F1" in n
               for n in report["notes"]), report["notes"]
    assert not any("never seen in training" in n for n in clean["notes"])


@pytest.fixture
def tiny_table_run(tmp_path):
    """A 5-step tabular run on a 300-row CSV with a constant column (seconds to train)."""
    from advgen.api import train

    rng = np.random.default_rng(0)
    cls = rng.choice(["legit", "phish"], size=400)
    s = np.where(cls == "phish", 3.0, 0.0)
    df = pd.DataFrame({"a": rng.normal(s, 1).round(3), "b": rng.poisson(3 + s), "c": rng.normal(-s, 1).round(3),
                       "konst": 0, "status": cls})
    df.iloc[:300].to_csv(tmp_path / "train.csv", index=False)
    test = df.iloc[300:].reset_index(drop=True)
    test["a"] = test["a"].astype(object)
    test.loc[:4, "a"] = "inf"
    test.to_csv(tmp_path / "test.csv", index=False)
    train({"plugin": "tabular", "data": str(tmp_path / "train.csv"), "label": "status", "steps": 5,
           "out": str(tmp_path / "run"), "n_samples": 0, "threads": 1})
    return tmp_path


def test_cli_evaluate_notes_the_test_table_and_calls_constant_columns_constant(tiny_table_run):
    d = tiny_table_run
    res = _cli(["evaluate", str(d / "run"), "--test", str(d / "test.csv"), "--seeds", "1", "--folds", "2",
                "--realism", "logistic-regression", "--threads", "1", "--no-plots", "-q"])
    assert res.exit_code == 0, res.output
    notes = [line for line in res.output.splitlines() if line.startswith("note: ")]
    # the test file's own problems are said, as the training table's are
    assert "note: test: infinite values treated as missing in a (5)" in notes, notes
    # a column constant in the training data is not one 'the schema does not keep'
    assert not any("the schema does not keep" in n for n in notes), notes
    assert any(n.startswith("note: real and test: dropped columns constant in the run's training data")
               and n.endswith("konst=0") for n in notes), notes
