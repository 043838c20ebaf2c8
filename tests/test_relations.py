"""Columns computed from others (``a = k * N / D``): found from the rows, checked by the validators,
computed by the decoder (torch and onnxruntime alike) and by the repair of disguised rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import assert_decoder_matches_onnx

from advgen.adversarial.constraints import Repair
from advgen_tabular.rules import derived_check, rule_check
from advgen_tabular.transform import TableDecoder, TableTransform
from advgen_tabular.validators import build_validators, fit_rules

COLUMNS = [
    ("dur", "continuous"),
    ("fwd_pkts", "count"),
    ("bwd_pkts", "count"),
    ("fwd_bytes", "count"),
    ("bwd_bytes", "count"),
    ("fwd_mean", "continuous"),
    ("bytes_per_s", "continuous"),
    ("fwd_hdr", "count"),
    ("noise", "continuous"),
    ("ttl", "count"),
]


def _flows(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """Flow records whose means, rates and header lengths are computed from their counts, as flow
    meters write them (means rounded to 2 decimals, a rate per second of a duration in microseconds,
    20 header bytes a packet); ``noise`` and ``ttl`` relate to nothing."""
    rng = np.random.default_rng(seed)
    fwd = rng.integers(1, 60, n)
    bwd = rng.integers(0, 40, n)
    fwd_bytes = fwd * rng.integers(40, 1500, n)
    bwd_bytes = np.where(bwd > 0, bwd * rng.integers(40, 1500, n), 0)
    dur = np.round(rng.lognormal(8, 2, n), 3)
    return pd.DataFrame(
        {
            "dur": dur,
            "fwd_pkts": fwd,
            "bwd_pkts": bwd,
            "fwd_bytes": fwd_bytes,
            "bwd_bytes": bwd_bytes,
            "fwd_mean": np.round(fwd_bytes / fwd, 2),
            "bytes_per_s": np.round((fwd_bytes + bwd_bytes) / dur * 1e6, 4),
            "fwd_hdr": 20 * fwd,
            "noise": np.round(rng.normal(100, 30, n), 2),
            "ttl": rng.choice([32, 64, 128, 254], n),
        }
    )


def _derived(rules: list[dict]) -> dict[str, dict]:
    return {r["target"]: r for r in rules if r["type"] == "derived"}


def _decimals(t: TableTransform) -> dict:
    return {p["name"]: p.get("decimals") for p in t.plans if p["kind"] != "flag"}


def test_relations_are_found_with_their_inputs_and_constants_and_nothing_else():
    df = _flows()
    t = TableTransform().fit(df, COLUMNS)
    found = _derived(fit_rules(df, COLUMNS, decimals=_decimals(t)))
    assert set(found) == {"fwd_mean", "bytes_per_s", "fwd_hdr"}
    mean = found["fwd_mean"]
    assert (mean["num"], mean["den"], mean["k"]) == (["fwd_bytes"], ["fwd_pkts"], 1.0)
    rate = found["bytes_per_s"]
    assert (sorted(rate["num"]), rate["den"], rate["k"]) == (["bwd_bytes", "fwd_bytes"], ["dur"], 1e6)
    assert (found["fwd_hdr"]["num"], found["fwd_hdr"]["den"], found["fwd_hdr"]["k"]) == (["fwd_pkts"], [], 20.0)
    assert all(r["real_pass"] == 1.0 for r in found.values())


def test_a_relation_broken_in_more_than_a_few_rows_is_not_kept():
    df = _flows()
    broken = df.sample(frac=0.01, random_state=0).index
    df.loc[broken, "fwd_mean"] += 7.0
    t = TableTransform().fit(df, COLUMNS)
    assert "fwd_mean" not in _derived(fit_rules(df, COLUMNS, decimals=_decimals(t)))


def test_the_check_fails_a_changed_target_and_says_nothing_where_the_denominator_is_zero():
    df = _flows(200)
    rule = {"type": "derived", "target": "fwd_mean", "num": ["fwd_bytes"], "den": ["fwd_pkts"], "k": 1.0, "decimals": 2}
    assert derived_check(rule)(df).all()
    bad = df.copy()
    bad.loc[:9, "fwd_mean"] += 0.05
    assert derived_check(rule)(bad).tolist() == [False] * 10 + [True] * 190
    zero = df.copy()
    zero.loc[:4, "fwd_pkts"] = 0
    assert rule_check(rule)(zero).all()  # undefined there: the data set's own convention
    name = [v.name for v in build_validators([rule])]
    assert name == ["derived:fwd_mean"]
    assert build_validators([rule])[0].description == "fwd_mean = fwd_bytes / fwd_pkts"


def _fitted(df: pd.DataFrame) -> TableTransform:
    t = TableTransform(point_masses=16).fit(df, COLUMNS)
    t.derived = [
        {k: v for k, v in r.items() if k != "real_pass"}
        for r in fit_rules(df, COLUMNS, decimals=_decimals(t))
        if r["type"] == "derived"
    ]
    return t


def test_decoded_rows_obey_every_relation_and_onnxruntime_decodes_the_same(tmp_path):
    df = _flows()
    t = _fitted(df)
    plain = TableTransform.from_dict(dict(t.to_dict(), derived=[]))
    x = torch.randn(2000, t.dim) * 1.5
    rows, without = t.inverse_transform(x), plain.inverse_transform(x)
    for r in t.derived:
        assert derived_check(dict(r))(rows).all(), r["target"]
        assert derived_check(dict(r))(without).mean() < 0.5, r["target"]  # what the decoder fixes
    # a total moves where total / count would leave the mean's training range; nothing else moves
    moved = {"fwd_bytes"}
    kept = [c for c, _ in COLUMNS if c not in {r["target"] for r in t.derived} | moved]
    pd.testing.assert_frame_equal(rows[kept], without[kept])
    mean = rows["fwd_mean"]
    assert mean.between(df["fwd_mean"].min(), df["fwd_mean"].max()).all()
    out_of_range = ~(without["fwd_bytes"] / without["fwd_pkts"]).between(df["fwd_mean"].min(), df["fwd_mean"].max())
    assert out_of_range.mean() > 0.05  # the case is exercised
    changed = rows["fwd_bytes"] != without["fwd_bytes"]
    assert not (changed & ~out_of_range).any()
    # there the row keeps the mean the generator drew (but where the total it implies is itself out of
    # the total's range, or rounds to another whole number of bytes)
    drawn = without["fwd_mean"][out_of_range]
    gap = (mean[out_of_range] - drawn).abs()
    assert gap.median() <= 0.011 and (gap <= 0.1 * drawn + 0.011).all()

    assert_decoder_matches_onnx(t, tmp_path, sizes=(1, 513))


def test_a_format_3_transform_decodes_without_relations():
    df = _flows(500)
    t = _fitted(df)
    old = dict(t.to_dict(), format=3)
    old.pop("derived")
    x = torch.randn(50, t.dim)
    plain = TableTransform.from_dict(dict(t.to_dict(), derived=[]))
    pd.testing.assert_frame_equal(TableTransform.from_dict(old).inverse_transform(x), plain.inverse_transform(x))


def test_a_relation_naming_an_unknown_column_is_refused():
    t = _fitted(_flows(500))
    d = t.to_dict()
    d["derived"] = [dict(d["derived"][0], num=["nope"])]
    with pytest.raises(Exception, match="unknown column"):
        TableDecoder(d)


def _repair(df: pd.DataFrame) -> Repair:
    t = TableTransform().fit(df, COLUMNS)
    return Repair(fit_rules(df, COLUMNS, decimals=_decimals(t)), COLUMNS)


def test_repair_computes_a_modifiable_derived_column_from_changed_inputs():
    df = _flows(2000)
    repair = _repair(df)
    orig = df.iloc[:50].reset_index(drop=True)
    adv = orig.copy()
    adv["fwd_bytes"] = orig["fwd_bytes"] + 10 * orig["fwd_pkts"]  # every packet 10 bytes longer
    mask = np.ones((50, len(COLUMNS)), dtype=bool)
    out = repair(adv, orig, mask)
    np.testing.assert_array_equal(out["fwd_bytes"], adv["fwd_bytes"])
    np.testing.assert_allclose(out["fwd_mean"], orig["fwd_mean"] + 10, atol=0.011)
    for rule in repair.derived:
        assert derived_check(rule)(out).all(), rule["target"]


def test_repair_reverts_inputs_that_would_change_a_functional_derived_column():
    df = _flows(2000)
    repair = _repair(df)
    orig = df.iloc[:50].reset_index(drop=True)
    adv = orig.copy()
    adv["fwd_bytes"] = orig["fwd_bytes"] + 10 * orig["fwd_pkts"]
    mask = np.ones((50, len(COLUMNS)), dtype=bool)
    mask[:, [c for c, _ in COLUMNS].index("fwd_mean")] = False  # the mean is a fact of the attack
    out = repair(adv, orig, mask)
    np.testing.assert_array_equal(out["fwd_mean"], orig["fwd_mean"])
    np.testing.assert_array_equal(out["fwd_bytes"], orig["fwd_bytes"])
    for rule in repair.derived:
        assert derived_check(rule)(out).all(), rule["target"]


def test_an_exported_manifest_carries_relations_checked_field_by_field():
    from advgen_export.evasion_schema import _rules
    from advgen_export.manifest import ModelError

    names = {c for c, _ in COLUMNS}
    good = {"type": "derived", "target": "fwd_mean", "num": ["fwd_bytes"], "den": ["fwd_pkts"], "k": 1.0,
            "decimals": 2, "real_pass": 1.0}
    _rules([good], names, "label")
    for bad, says in (
        (dict(good, num=["nope"]), "num"),
        (dict(good, target="label"), "target"),
        (dict(good, den=["fwd_mean"]), "twice"),
        (dict(good, k=0), "must not be 0"),
        (dict(good, k=float("inf")), "k"),
        (dict(good, num=["fwd_bytes", "bwd_bytes", "dur"]), "num"),
        (dict(good, code="__import__('os')"), "code"),
    ):
        with pytest.raises(ModelError, match=says):
            _rules([bad], names, "label")


@pytest.mark.parametrize("edit", [
    {"k": float("nan")}, {"k": 0}, {"k": True}, {"num": []}, {"num": ["fwd_bytes"] * 3}, {"den": "fwd_pkts"},
    {"decimals": 99}, {"decimals": "2"}, {"target": "fwd_bytes"},
])
def test_an_edited_relation_is_one_clear_error(edit):
    t = _fitted(_flows(500))
    d = t.to_dict()
    rel = next(r for r in d["derived"] if r["target"] == "fwd_mean")
    d["derived"] = [dict(rel, **edit)]
    with pytest.raises(Exception, match="malformed relation"):
        TableDecoder(d)


def test_values_near_the_float_limit_are_screened_without_warnings():
    import warnings

    from advgen_tabular.relations import fit_derived

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.uniform(1e307, 1.7e308, 3000), "b": rng.uniform(1e307, 1.7e308, 3000),
                       "c": rng.uniform(1, 2, 3000)})
    df["s"] = df["a"] / df["c"]
    shuffled = df.apply(lambda col: col.to_numpy()[rng.permutation(len(df))])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = fit_derived(df, [(c, "continuous") for c in df], {c: None for c in df}, min_pass=0.999,
                            max_shuffled=0.98, shuffled=shuffled)
        assert derived_check(found[0])(df).all()
    assert [(r["target"], r["num"], r["den"]) for r in found] == [("s", ["a"], ["c"])]


def test_a_denominator_small_enough_to_overflow_float32_keeps_the_drawn_value(tmp_path):
    rng = np.random.default_rng(0)
    n = 2000
    df = pd.DataFrame({"a": rng.uniform(1e6, 1e7, n), "b": rng.uniform(1e6, 1e7, n)})
    # a rate near the float32 limit: finite in every real row, not for a large total over a small time
    df["d"] = (df["a"] + df["b"]) * 1e-38 * rng.uniform(1, 3, n)
    df["rate"] = (df["a"] + df["b"]) / df["d"]
    cols = [("a", "continuous"), ("b", "continuous"), ("d", "continuous"), ("rate", "continuous")]
    t = TableTransform().fit(df, cols)
    t.derived = [{"type": "derived", "target": "rate", "num": ["a", "b"], "den": ["d"], "k": 1.0, "decimals": None}]
    x = torch.randn(4000, t.dim) * 3
    num, _ = t.decode_arrays(x)
    assert np.isfinite(num).all()
    rate = num[:, 3].astype(np.float64)
    computed = (num[:, 0].astype(np.float64) + num[:, 1]) / num[:, 2]
    assert 0.01 < np.mean(computed > 3.4e38) < 0.99  # the case is exercised, and most rows are computed
    assert_decoder_matches_onnx(t, tmp_path, sizes=(4000,), scale=3.0)


def test_a_column_of_values_below_one_millionth_is_not_rounded_to_zero():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"tiny": rng.uniform(1e-9, 9e-7, 1000), "n": rng.integers(0, 9, 1000)})
    t = TableTransform().fit(df, [("tiny", "continuous"), ("n", "count")])
    assert t.plan("tiny").get("decimals") is None and t.plan("n").get("decimals") == 0
    rows = t.inverse_transform(torch.randn(2000, t.dim))
    assert (rows["tiny"] > 0).all() and rows["tiny"].between(1e-9, 9e-7).all()
