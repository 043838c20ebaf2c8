"""Pairs of code columns kept at decoding (advgen_tabular.codes): a combination the combo rule forbids is
rewritten to the given value's usual partner, in torch and in the ONNX graph alike."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import assert_decoder_matches_onnx
from test_pairs import KINDS, _headers

from advgen.errors import InvalidDataError
from advgen_tabular.codes import decoding_pairs
from advgen_tabular.rules import rule_check
from advgen_tabular.transform import TableDecoder, TableTransform
from advgen_tabular.validators import fit_rules

NUMERIC = {c for c, k in KINDS if k != "categorical"}
HEADER = ("Magic", "SizeOfOptionalHeader")


def _fitted(df: pd.DataFrame) -> tuple[TableTransform, list[dict]]:
    rules = fit_rules(df, KINDS)
    t = TableTransform(point_masses=16).fit(df, KINDS)
    t.pairs = decoding_pairs(rules, df, NUMERIC, exclude=set())
    return t, rules


def _combos(rules: list[dict]) -> list[dict]:
    return [r for r in rules if r["type"] == "combo" and set(r["columns"]) <= NUMERIC]


def test_a_numeric_combo_rule_becomes_a_kept_pair_with_each_values_usual_partner():
    df = _headers()
    t, rules = _fitted(df)
    header = next(p for p in t.pairs if {p["given"], p["fix"]} == set(HEADER))
    partner = dict(map(tuple, header["partner"]))
    if header["given"] == "Magic":
        assert partner == {267.0: 224.0, 523.0: 240.0}
    else:
        assert partner == {224.0: 267.0, 240.0: 523.0}
    assert sorted(map(tuple, header["allowed"])) == sorted(set(zip(df[header["given"]] * 1.0, df[header["fix"]] * 1.0)))
    # categoricals are decoded elsewhere: a rule on one of them is left to the validators
    assert all({p["given"], p["fix"]} <= NUMERIC for p in t.pairs)
    assert decoding_pairs(rules, df, NUMERIC, exclude={"Magic"}) == [p for p in t.pairs if "Magic" not in (p["given"], p["fix"])]


def test_decoded_rows_keep_every_pair_and_onnxruntime_decodes_the_same(tmp_path):
    df = _headers()
    t, rules = _fitted(df)
    assert t.pairs
    plain = TableTransform.from_dict(dict(t.to_dict(), pairs=[]))
    x = torch.randn(3000, t.dim, generator=torch.Generator().manual_seed(0)) * 1.5
    rows, without = t.inverse_transform(x), plain.inverse_transform(x)
    assert len(t.pairs) == 3  # sus_sections is in two rules: rewritten for one only
    for p in t.pairs:
        rule = next(r for r in _combos(rules) if set(r["columns"]) == {p["given"], p["fix"]})
        assert rule_check(rule)(rows).all(), rule
        assert rows[p["given"]].isin(p["values"]).all()
    # random codes draw the "other" slot often, whose quantile decoding gives the header's codes values
    # between theirs (no row has them): the decoder writes the nearest
    header = next(p for p in t.pairs if {p["given"], p["fix"]} == set(HEADER))
    assert not without[header["given"]].isin(header["values"]).all()
    assert len({p["fix"] for p in t.pairs}) == len(t.pairs)
    rule = next(r for r in _combos(rules) if set(r["columns"]) == set(HEADER))
    assert rule_check(rule)(without).mean() < 0.8  # random codes: what the decoder fixes
    touched = {p["fix"] for p in t.pairs} | {p["given"] for p in t.pairs}
    same = [c for c in rows.columns if c not in touched]
    pd.testing.assert_frame_equal(rows[same], without[same])
    assert_decoder_matches_onnx(t, tmp_path, sizes=(1, 513))


def test_a_given_value_without_partner_leaves_the_row_as_drawn():
    df = _headers(500)
    t, _ = _fitted(df)
    d = t.to_dict()
    pair = next(p for p in d["pairs"] if {p["given"], p["fix"]} == set(HEADER))
    pair.pop("values")  # as a pair written before the given column was snapped
    d["pairs"] = [dict(pair, partner=pair["partner"][:1])]  # the second given value has no partner now
    dec = TableDecoder(d)
    names = [c for c in t.order if c in NUMERIC]
    g, f = names.index(pair["given"]), names.index(pair["fix"])
    num = torch.zeros(4, len(names), dtype=torch.float64)
    first, second = pair["partner"][0][0], pair["partner"][1][0]
    wrong_first = next(v for gv, v in pair["allowed"] if gv == second)
    num[:, g] = torch.tensor([first, first, second, second], dtype=torch.float64)
    num[:, f] = torch.tensor([pair["partner"][0][1], wrong_first, wrong_first, 12345.0], dtype=torch.float64)
    out = dec._keep_pairs(num)
    assert out[:, f].tolist() == [pair["partner"][0][1], pair["partner"][0][1], wrong_first, 12345.0]


@pytest.mark.parametrize("edit", [
    {"given": 3}, {"fix": None}, {"fix": "Magic", "given": "Magic"}, {"allowed": []}, {"allowed": [[1.0]]},
    {"allowed": [[1.0, float("nan")]]}, {"allowed": "224|267"}, {"partner": [[1.0, 2.0], [1.0, 3.0]]},
    {"partner": [[True, 2.0]]}, {"allowed": [[0.0, 0.0]] * 1025}, {"values": [523.0, 267.0]}, {"values": []},
    {"values": "267"},
])
def test_an_edited_pair_is_one_clear_error(edit):
    d = _fitted(_headers(500))[0].to_dict()
    pair = next(p for p in d["pairs"] if {p["given"], p["fix"]} == set(HEADER))
    edited = dict(pair, **edit)
    d["pairs"] = [{k: v for k, v in edited.items() if v is not None}]
    with pytest.raises(InvalidDataError, match="malformed pair of codes"):
        TableDecoder(d)
    d["pairs"] = [dict(pair, fix="nope")]
    with pytest.raises(InvalidDataError, match="unknown column"):
        TableDecoder(d)


def test_a_format_6_transform_decodes_without_pairs():
    t, _ = _fitted(_headers(500))
    old = dict(t.to_dict(), format=6)
    old.pop("pairs")
    x = torch.randn(50, t.dim)
    plain = TableTransform.from_dict(dict(t.to_dict(), pairs=[]))
    pd.testing.assert_frame_equal(TableTransform.from_dict(old).inverse_transform(x), plain.inverse_transform(x))


def test_a_training_run_keeps_pairs_and_keep_pairs_false_turns_it_off(tmp_path):
    from advgen.api import train

    df = _headers(1500)
    df["label"] = np.where(df["noise_a"] > 1, "a", "b")
    df.to_csv(tmp_path / "pe.csv", index=False)
    rates = {}
    for keep in (True, False):
        run = train({"plugin": "tabular", "data": str(tmp_path / "pe.csv"), "label": "label", "steps": 20,
                     "batch_size": 64, "n_samples": 0, "device": "cpu", "threads": 1, "seed": 0,
                     "out": str(tmp_path / f"run-{keep}"),
                     "options": {"hidden": 32, "d_hidden": 32, "embed_dim": 8, "n_quantiles": 65, "keep_pairs": keep}})
        assert bool(run.spec["transform"]["pairs"]) == keep
        rows = run.sample(2000, seed=0)
        rules = [r for r in _combos(run.spec["rules"]) if set(r["columns"]) == set(HEADER)]
        assert len(rules) == 1
        rates[keep] = float(rule_check(rules[0])(rows).mean())
    assert rates[True] == 1.0 and rates[False] < 0.99, rates
