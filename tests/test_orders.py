"""Orderings ``a <= b`` kept at decoding (``--option keep_order=true``): which ones, in what order, and
what the decoder (torch and onnxruntime alike) makes of a row that breaks them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from conftest import assert_decoder_matches_onnx

from advgen.cli import cli
from advgen.errors import InvalidDataError
from advgen_tabular.orders import order_chain
from advgen_tabular.transform import TableDecoder, TableTransform

COLUMNS = [("shortest", "count"), ("avg", "continuous"), ("longest", "count"), ("other", "continuous")]


def _words(n: int = 1500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    words = rng.integers(1, 9, size=(n, 4))
    return pd.DataFrame({"shortest": words.min(axis=1), "avg": words.mean(axis=1).round(2),
                         "longest": words.max(axis=1), "other": rng.normal(5, 2, n).round(3)})


def _order(a: str, b: str) -> dict[str, str]:
    return {"type": "order", "a": a, "b": b}


def test_the_chain_is_acyclic_lower_bounds_first_and_leaves_computed_columns_alone():
    rules = [_order("avg", "longest"), _order("shortest", "avg"), _order("shortest", "longest"),
             _order("x", "y"), _order("y", "x"), {"type": "zero", "a": "p", "b": "q"}, _order("rate", "avg")]
    chain = order_chain(rules, exclude=["rate"])
    pairs = [(r["a"], r["b"]) for r in chain]
    assert set(pairs) == {("avg", "longest"), ("shortest", "avg"), ("shortest", "longest"), ("x", "y")}
    # every ordering into a column comes before those out of it
    assert pairs.index(("shortest", "avg")) < pairs.index(("avg", "longest"))
    assert order_chain([_order("a", "b"), _order("b", "c"), _order("c", "a")]) == [{"a": "a", "b": "b"}, {"a": "b", "b": "c"}]


def _transform(orders: bool) -> TableTransform:
    df = _words()
    t = TableTransform().fit(df, COLUMNS, seed=0)
    if orders:
        t.orders = order_chain([_order("shortest", "avg"), _order("avg", "longest"), _order("shortest", "longest")])
    return t


def test_decoded_rows_keep_the_chain_at_each_columns_resolution():
    kept, free = _transform(True), _transform(False)
    x = torch.randn(4000, kept.dim, generator=torch.Generator().manual_seed(0)) * 1.5
    rows, loose = kept.inverse_transform(x), free.inverse_transform(x)
    assert (loose["shortest"] > loose["avg"]).mean() > 0.1  # independent noise breaks the chain often
    assert (rows["shortest"] <= rows["avg"]).all() and (rows["avg"] <= rows["longest"]).all()
    assert (rows["longest"] == np.round(rows["longest"])).all()  # raised to a whole count, not to 4.25
    ok = (loose["shortest"] <= loose["avg"]) & (loose["avg"] <= loose["longest"])
    pd.testing.assert_frame_equal(rows[ok], loose[ok])  # rows that keep the chain are untouched
    pd.testing.assert_series_equal(rows["shortest"], loose["shortest"])  # nothing is lowered
    pd.testing.assert_series_equal(rows["other"], loose["other"])


def test_onnx_keeps_the_chain_as_torch_does(tmp_path):
    assert_decoder_matches_onnx(_transform(True), tmp_path, scale=1.5)


@pytest.mark.parametrize("bad", [{"a": "avg"}, {"a": "avg", "b": "avg"}, {"a": "avg", "b": "nowhere"}, "avg<=longest"])
def test_an_edited_ordering_is_one_error(bad):
    d = _transform(False).to_dict()
    d["orders"] = [bad]
    with pytest.raises(InvalidDataError, match="ordering|orders unknown"):
        TableDecoder(d)


def test_the_option_turns_it_on_and_a_run_without_it_decodes_as_before(tmp_path):
    _words(600).assign(label=["a", "b", "c"] * 200).to_csv(tmp_path / "w.csv", index=False)
    rows = {}
    for flag in ("true", "false"):
        out = tmp_path / f"run-{flag}"
        result = CliRunner().invoke(cli, [
            "train", "--plugin", "tabular", "--data", str(tmp_path / "w.csv"), "--label", "label", "--steps", "3",
            "--batch-size", "32", "--n-samples", "500", "--threads", "1", "--seed", "0", "--out", str(out),
            "--option", f"keep_order={flag}"])
        assert result.exit_code == 0, result.output
        assert ("orderings kept" in result.output) == (flag == "true"), result.output
        rows[flag] = pd.read_csv(out / "samples.csv")
    kept, free = rows["true"], rows["false"]
    assert (kept["shortest"] <= kept["avg"]).all() and (kept["avg"] <= kept["longest"]).all()
    assert not ((free["shortest"] <= free["avg"]) & (free["avg"] <= free["longest"])).all()
