"""Unusual but legitimate tables: values beyond float32 range, large integers, integers beyond int64,
columns whose every value is a point mass. Each case once decoded silently wrong."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from advgen.errors import InvalidDataError
from advgen_tabular.transform import TableTransform


def _roundtrip(t: TableTransform, df: pd.DataFrame) -> pd.DataFrame:
    return t.inverse_transform(t.transform(df))


def test_values_beyond_float32_are_a_clear_error_not_int64_garbage():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": np.floor(10 ** rng.uniform(40, 300, 500))})
    with pytest.raises(InvalidDataError, match="beyond the float32 range"):
        TableTransform().fit(df, [("a", "count")])


def test_values_below_float32_are_a_clear_error_not_zeros():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": 10 ** rng.uniform(-300, -200, 500)})
    with pytest.raises(InvalidDataError, match="below the float32 range"):
        TableTransform().fit(df, [("a", "continuous")])
    # a few such values among ordinary ones still train (they decode near zero)
    df = pd.DataFrame({"a": np.r_[rng.normal(size=500), 1e-300]})
    TableTransform().fit(df, [("a", "continuous")])


def test_integers_beyond_int64_decode_as_floats():
    rng = np.random.default_rng(0)
    values = np.floor(10 ** rng.uniform(19, 30, 500))  # integral floats above int64's maximum
    df = pd.DataFrame({"a": values})
    t = TableTransform().fit(df, [("a", "count")])
    assert t.output_info()["numeric"][0]["dtype"] == "float64"
    out = _roundtrip(t, df)["a"].to_numpy()
    assert np.all(out > 0)
    np.testing.assert_allclose(out, values, rtol=1e-2)  # the quantile map is lossy, not this far
    # timestamps in nanoseconds (1.6e18) still fit int64 and stay integers
    df = pd.DataFrame({"a": rng.integers(1_600_000_000 * 10**9, 1_700_000_000 * 10**9, 500).astype(float)})
    t = TableTransform().fit(df, [("a", "count")])
    assert t.output_info()["numeric"][0]["dtype"] == "int64"
    assert _roundtrip(t, df)["a"].min() > 0


@pytest.mark.parametrize("pair", [(3.5, 7.0), (-1.0, 1.0)])
def test_other_slot_of_a_column_made_only_of_point_masses_decodes_to_its_values(pair):
    """Two values, both point masses: the quantile code used to span the line from min to max, so a
    generator's "other" draw gave 4.2 in a column of 3.5 and 7 (or 0 in a column of -1 and 1)."""
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"t": rng.choice(pair, 2000)})
    t = TableTransform(point_masses=16).fit(df, [("t", "continuous")])
    x = np.asarray(t.transform(df)).copy()
    for s in t.segments():
        if s.activation == "linear":
            x[:, s.start : s.end] = rng.standard_normal((len(x), s.end - s.start))
        else:  # every row draws the "other" slot
            x[:, s.start : s.end] = 0.0
            x[:, s.start] = 1.0
    out = t.inverse_transform(x)["t"]
    assert out.isin(pair).mean() > 0.99


def test_loader_keeps_integers_beyond_int64_as_floats(tmp_path):
    """The loader cast every count column to int64: integers above 9.2e18 all became -2**63."""
    from advgen_datasets.table import load_table

    rng = np.random.default_rng(0)
    values = np.floor(10 ** rng.uniform(19, 30, 300))
    f = tmp_path / "big.csv"
    pd.DataFrame({"a": values, "x": rng.normal(size=300), "y": rng.choice(["p", "q"], 300)}).to_csv(f, index=False)
    a = load_table(path=f, label="y").df["a"].to_numpy(dtype=np.float64)
    np.testing.assert_allclose(a, values)


@pytest.mark.parametrize("values", [np.full(50, -9.2e18), -1.6e18 + np.arange(50.0)])
def test_plot_of_a_huge_column_of_narrow_span(tmp_path, values):
    """numpy cannot split a span narrower than float64's spacing at that magnitude into 40 bins;
    the plot at the end of training raised (and failed the run) instead of drawing one."""
    pytest.importorskip("matplotlib")
    from advgen_tabular import TabularDomain

    spec = {"columns": [{"name": "a", "kind": "continuous", "role": "feature"}]}
    real = pd.DataFrame({"a": values})
    assert TabularDomain().plot(real, real.copy(), tmp_path / "p.png", spec)


def _notes_of(tmp_path, when: np.ndarray) -> list[str]:
    from advgen.config import TrainConfig
    from advgen_datasets.table import load_table
    from advgen_tabular.domain import TabularDomain

    rng = np.random.default_rng(0)
    f = tmp_path / "t.csv"
    pd.DataFrame({"when": when, "x": rng.normal(size=len(when)), "y": rng.choice(["p", "q"], len(when))}).to_csv(
        f, index=False
    )
    return TabularDomain().encode_table(load_table(path=f, label="y"), TrainConfig(plugin="tabular", seed=0)).notes


def test_a_column_too_narrow_for_float64_at_its_magnitude_gets_a_note(tmp_path):
    """1e18 + 0..999 decodes to multiples of 128 (float64's spacing there): the run says so instead
    of silently writing a few values. Millisecond timestamps within one second (1.6e12 + 0..999),
    which the float32 decoder wrote as one constant, decode at full resolution and get no note."""
    rng = np.random.default_rng(0)
    notes = _notes_of(tmp_path, 10**18 + rng.integers(0, 1000, 300))
    coarse = [n for n in notes if "too coarse" in n]
    assert len(coarse) == 1 and "'when'" in coarse[0] and "'x'" not in coarse[0], notes
    assert not [n for n in _notes_of(tmp_path, 1_600_000_000_000 + rng.integers(0, 1000, 300)) if "too coarse" in n]


@pytest.mark.parametrize(
    "values",
    [
        1_420_000_000 + np.arange(0, 40_000, 7),  # Unix seconds (UNSW-NB15's stime): float32 kept multiples of 128
        np.arange(3_000_000_001, 3_000_060_001, 11),  # odd checksums above 2**24: float32 kept even ones
        1_600_000_000_000 + np.arange(1000),  # milliseconds within one second: float32 kept one value
    ],
)
def test_large_integers_decode_exactly(values):
    """Encoding a real value puts it in the middle of the interval that decodes to it; the decoder
    must then give the value back, low bits included (a float32 decoder has 24 bits of them)."""
    df = pd.DataFrame({"a": values.astype(float)})
    t = TableTransform().fit(df, [("a", "count")])
    num, _ = t.decode_arrays(t.transform(df, dequantize=False))
    assert num.dtype == np.float64
    out = np.rint(num[:, 0]).astype(np.int64)
    assert (out == values).mean() > 0.999, out[out != values][:5]
    assert len(np.unique(out % 2)) == 2


def test_large_integers_decode_exactly_in_the_exported_graph(tmp_path):
    """onnxruntime gives the very float64 values torch decodes (export's parity check allows 1e-4
    relative, 1.4e5 at 1.4e9, so it would not notice a float32 graph)."""
    from conftest import assert_decoder_matches_onnx

    values = 1_420_000_000 + np.arange(0, 40_000, 7)
    df = pd.DataFrame({"a": values.astype(float), "b": np.arange(3_000_000_001, 3_000_000_001 + 11 * len(values), 11)})
    t = TableTransform().fit(df, [("a", "count"), ("b", "count")])
    num = assert_decoder_matches_onnx(t, tmp_path, sizes=(1, 257, 4000))
    assert num.dtype == np.float64
    assert len(np.unique(np.rint(num[:, 1]) % 128)) > 64  # not the multiples of 128 a float32 graph keeps
