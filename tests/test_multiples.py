"""Integer columns that are multiples of a step or of another column (advgen_tabular.multiples): found
from the data, judged by the validators, kept by the decoder (torch and ONNX alike), the repair and the
evasion manifest's schema."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import assert_decoder_matches_onnx

from advgen.adversarial.constraints import Repair
from advgen.errors import InvalidDataError
from advgen_tabular.multiples import decoding_order
from advgen_tabular.rules import multiple_ok, rule_check
from advgen_tabular.transform import TableDecoder, TableTransform
from advgen_tabular.validators import build_validators, fit_rules

COLUMNS = [("header", "count"), ("image", "count"), ("align", "count"), ("noise", "count"), ("small", "count")]


def _pe(n: int = 4000, seed: int = 0) -> pd.DataFrame:
    """PE-header-like rows: ``header`` multiples of 512, ``image`` a multiple of ``align`` (4,096 in most
    rows, 512 or 65,536 in others), ``noise`` any integer, ``small`` even numbers (too few to tell)."""
    rng = np.random.default_rng(seed)
    align = rng.choice([512, 4096, 65536], n, p=[0.15, 0.8, 0.05])
    image = align * rng.integers(1, 400, n)
    header = 512 * rng.integers(1, 40, n)  # 39 values: too many for point masses
    header[rng.random(n) < 0.1] = 0
    return pd.DataFrame({
        "header": header,
        "image": image,
        "align": align,
        "noise": rng.integers(0, 10**7, n),
        "small": rng.choice([2, 4, 6, 8, 10, 12, 14, 16], n),
    })


def _multiples(rules: list[dict]) -> dict[str, dict]:
    return {(r["a"], r.get("of") or r["step"]): r for r in rules if r["type"] == "multiple"}


def test_steps_and_divisor_columns_are_found_and_nothing_else():
    df = _pe()
    found = _multiples(fit_rules(df, COLUMNS))
    # the largest step that holds; image's step is align's smallest value; its divisor column is align
    assert set(found) == {("header", 512.0), ("image", 512.0), ("image", "align")}, found
    assert all(r["real_pass"] == 1.0 for r in found.values())
    names = {v.name: v for v in build_validators(list(found.values()))}
    assert names["multiple:image%align"].group == "cross-column"
    assert names["multiple:header%512"].description == "header is a multiple of 512"


def test_a_few_odd_rows_leave_the_rule_and_more_of_them_drop_it():
    df = _pe()
    df.loc[:2, "image"] += 1  # 3 odd rows of 4,000: 99.925% still pass
    assert ("image", "align") in _multiples(fit_rules(df, COLUMNS))
    df.loc[:20, "image"] += 1
    assert ("image", "align") not in _multiples(fit_rules(df, COLUMNS))


def test_a_divisor_that_only_divides_the_step_is_no_rule():
    df = _pe()
    df["align"] = np.random.default_rng(1).choice([2, 4, 8, 16], len(df))  # every multiple of 512 passes
    found = _multiples(fit_rules(df, COLUMNS))
    assert ("image", "align") not in found and ("image", 512.0) in found


def test_the_check_fails_non_multiples_and_says_nothing_where_the_divisor_is_zero():
    a = np.array([4096.0, 4097.0, 8192.0, 100.0, np.nan, 3.0e9])
    d = np.array([4096.0, 4096.0, 0.0, np.nan, 4096.0, 1.0e9])
    assert multiple_ok(a, d).tolist() == [True, False, True, True, False, True]
    df = pd.DataFrame({"image": a, "align": d})
    assert rule_check({"type": "multiple", "a": "image", "of": "align"})(df).tolist() == [True, False, True, True, False, True]
    assert rule_check({"type": "multiple", "a": "image", "step": 4096.0})(df).tolist() == [True, False, True, False, False, False]


def _fitted(df: pd.DataFrame, divisor_values: bool = True) -> TableTransform:
    t = TableTransform(point_masses=16).fit(df, COLUMNS)
    values = {c: df[c].to_numpy(dtype=np.float64) for c, _ in COLUMNS} if divisor_values else None
    t.multiples = decoding_order(fit_rules(df, COLUMNS), exclude=set(), values=values)
    return t


def test_decoded_rows_are_multiples_within_range_and_onnxruntime_decodes_the_same(tmp_path):
    df = _pe()
    t = _fitted(df)
    assert [r.get("of") or r["step"] for r in t.multiples] == [512.0, 512.0, "align"]  # steps first
    assert t.multiples[-1]["values"] == [512.0, 4096.0, 65536.0]
    plain = TableTransform.from_dict(dict(t.to_dict(), multiples=[]))
    x = torch.randn(3000, t.dim) * 1.5
    rows, without = t.inverse_transform(x), plain.inverse_transform(x)
    rules = fit_rules(df, COLUMNS)
    # random codes draw the alignment's "other" slot often, and its quantile decoding gives values such as
    # 6,705 between the real 4,096 and 65,536: the decoder writes the nearest real alignment instead
    assert not without["align"].isin(df["align"].unique()).all()
    assert rows["align"].isin(df["align"].unique()).all()
    for r in (r for r in rules if r["type"] == "multiple"):
        assert rule_check(r)(rows).all(), r
        if r["a"] == "image":  # header's 39 values are flat stretches of its quantile function anyway
            assert rule_check(r)(without).mean() < 0.5, r  # what the decoder fixes
    for r in (r for r in rules if r["type"] == "range"):
        assert rule_check(r)(rows).all(), r
    pd.testing.assert_frame_equal(rows[["noise", "small"]], without[["noise", "small"]])
    real = without["align"].isin(df["align"].unique())
    pd.testing.assert_series_equal(rows["align"][real], without["align"][real])
    moved = (rows["image"] - without["image"]).abs()
    assert (moved <= rows["align"] + 512).all()  # the nearest multiple (after the step's), or one further in
    num = assert_decoder_matches_onnx(t, tmp_path, sizes=(1, 513))
    assert num.dtype == np.float64


def test_a_divisor_rule_without_values_leaves_odd_alignments_and_their_rows_keep_the_step():
    df = _pe()
    t = _fitted(df, divisor_values=False)  # a transform written before divisor rules listed their values
    assert "values" not in t.multiples[-1]
    rows = t.inverse_transform(torch.randn(3000, t.dim) * 1.5)
    real_align = rows["align"].isin(df["align"].unique())
    assert 0.8 < real_align.mean() < 1.0
    of = {"type": "multiple", "a": "image", "of": "align"}
    assert rule_check(of)(rows)[real_align.to_numpy()].all()
    assert rule_check({"type": "multiple", "a": "image", "step": 512.0})(rows).all()


def test_a_format_5_transform_decodes_without_multiples():
    df = _pe(500)
    t = _fitted(df)
    old = dict(t.to_dict(), format=5)
    old.pop("multiples")
    x = torch.randn(50, t.dim)
    plain = TableTransform.from_dict(dict(t.to_dict(), multiples=[]))
    pd.testing.assert_frame_equal(TableTransform.from_dict(old).inverse_transform(x), plain.inverse_transform(x))


@pytest.mark.parametrize("edit", [
    {"step": 0.0}, {"step": float("nan")}, {"step": True}, {"of": "image"}, {"step": 512.0, "of": "align"},
    {"a": 7}, {"of": None, "step": -1.0}, {"of": None, "step": float("inf")}, {"of": None, "step": "x"},
    {"values": []}, {"values": [4096.0, 512.0]}, {"values": [512.0, 512.0]}, {"values": [float("nan")]},
    {"values": "512"}, {"values": [True]}, {"values": list(range(1, 66))}, {"of": None, "step": 512.0},
])
def test_an_edited_multiple_rule_is_one_clear_error(edit):
    d = _fitted(_pe(500)).to_dict()
    rule = next(r for r in d["multiples"] if r.get("of"))
    d["multiples"] = [{k: v for k, v in dict(rule, **edit).items() if v is not None}]
    with pytest.raises(InvalidDataError, match="malformed multiple rule"):
        TableDecoder(d)
    d["multiples"] = [dict(rule, of="nope")]
    with pytest.raises(InvalidDataError, match="unknown column"):
        TableDecoder(d)


def _repair(df: pd.DataFrame) -> Repair:
    return Repair(fit_rules(df, COLUMNS), COLUMNS)


def test_repair_snaps_a_modifiable_column_to_its_divisor():
    df = _pe(2000)
    repair = _repair(df)
    orig = df.iloc[:60].reset_index(drop=True)
    adv = orig.copy()
    adv["image"] = orig["image"] + 1000  # no multiple of 512 or 4,096 any more
    adv["header"] = orig["header"] + 100
    mask = np.ones((60, len(COLUMNS)), dtype=bool)
    out = repair(adv, orig, mask)
    for rule in repair.multiples:
        assert rule_check(rule)(out).all(), rule
    assert ((out["image"] - adv["image"]).abs() <= out["align"] / 2).all()  # the nearest multiple
    up = np.zeros_like(mask)
    up[:, 1] = True  # image may only grow
    grown = repair(adv, orig, mask, up)
    assert (grown["image"] >= orig["image"]).all() and rule_check(repair.multiples[-1])(grown).all()
    assert (grown["image"] >= adv["image"]).mean() > 0.9  # the next multiple up, but at the range's top


def test_repair_gives_back_a_divisor_that_a_functional_column_breaks():
    df = _pe(2000)
    repair = _repair(df)
    orig = df.iloc[:60].reset_index(drop=True)
    adv = orig.copy()
    adv["align"] = np.where(orig["align"] == 512, 4096, 65536)  # image stays: its value is a fact
    mask = np.ones((60, len(COLUMNS)), dtype=bool)
    mask[:, 1] = False
    out = repair(adv, orig, mask)
    np.testing.assert_array_equal(out["image"], orig["image"])
    assert rule_check({"type": "multiple", "a": "image", "of": "align"})(out).all()
    keeps = (orig["image"] % adv["align"] == 0).to_numpy()
    np.testing.assert_array_equal(out["align"].to_numpy()[keeps], adv["align"].to_numpy()[keeps])
    assert (~keeps).any()


def test_an_exported_manifest_carries_multiples_checked_field_by_field():
    from advgen_export.evasion_schema import _rules
    from advgen_export.manifest import ModelError

    names = {c for c, _ in COLUMNS}
    good = {"type": "multiple", "a": "image", "of": "align", "real_pass": 1.0}
    _rules([good, {"type": "multiple", "a": "header", "step": 512.0}], names, "label")
    for bad, says in (
        (dict(good, of="nope"), r"rules\[0\]\.of"),
        (dict(good, of="image"), "itself"),
        (dict(good, step=512.0), "exactly one"),
        ({"type": "multiple", "a": "image"}, "exactly one"),
        ({"type": "multiple", "a": "image", "step": -4.0}, r"rules\[0\]\.step"),
        ({"type": "multiple", "a": "image", "step": float("inf")}, r"rules\[0\]\.step"),
        (dict(good, code="__import__('os')"), "code"),
    ):
        with pytest.raises(ModelError, match=says):
            _rules([bad], names, "label")


def test_a_training_run_writes_multiples_and_align_false_turns_it_off(tmp_path):
    from advgen.api import train

    df = _pe(1500)
    df["label"] = np.where(df["noise"] > 5 * 10**6, "a", "b")
    df.to_csv(tmp_path / "pe.csv", index=False)
    rates = {}
    for align in (True, False):
        run = train({"plugin": "tabular", "data": str(tmp_path / "pe.csv"), "label": "label", "steps": 20,
                     "batch_size": 64, "n_samples": 0, "device": "cpu", "threads": 1, "seed": 0,
                     "out": str(tmp_path / f"run-{align}"),
                     "options": {"hidden": 32, "d_hidden": 32, "embed_dim": 8, "n_quantiles": 65, "align": align}})
        assert bool(run.spec["transform"]["multiples"]) == align
        rows = run.sample(500, seed=0)
        rules = [r for r in run.spec["rules"] if r["type"] == "multiple"]
        assert len(rules) == 3
        rates[align] = min(float(rule_check(r)(rows).mean()) for r in rules)
    assert rates[True] == 1.0 and rates[False] < 0.5, rates
