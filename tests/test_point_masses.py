"""Point masses of numeric columns: found per label, encoded as a one-hot beside the quantile code,
decoded exactly (torch and onnxruntime alike), drawn by the generator together in one batch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import assert_decoder_matches_onnx

from advgen.errors import AdvgenError
from advgen_tabular import TabularDomain
from advgen_tabular.nets import TabularGenerator
from advgen_tabular.spikes import find_point_masses, mode_codes
from advgen_tabular.transform import Segment, TableDecoder, TableTransform


def _table(n: int = 4000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """``bytes`` is smooth for label a; for label b (10% of rows) it is 8 in 30% and 1 in 20% of rows,
    shares of 3% and 2% overall; ``flag`` is a binary column."""
    rng = np.random.default_rng(seed)
    label = np.where(rng.random(n) < 0.1, "b", "a")
    bytes_ = np.round(rng.lognormal(6, 1.5, n))
    b = label == "b"
    pick = rng.random(n)
    bytes_[b & (pick < 0.3)] = 8
    bytes_[b & (pick >= 0.3) & (pick < 0.5)] = 1
    df = pd.DataFrame({"bytes": bytes_, "flag": rng.integers(0, 2, n), "rate": np.round(rng.random(n), 2)})
    df.loc[rng.random(n) < 0.4, "rate"] = 0.0
    return df, label


COLUMNS = [("bytes", "count"), ("flag", "flag"), ("rate", "rate")]


def test_a_value_common_within_one_label_is_a_point_mass_even_when_rare_overall():
    df, label = _table()
    values = df["bytes"].to_numpy(dtype=np.float64)
    assert find_point_masses(values, None, limit=16) == []  # 3% and 2% overall: below the 5% share
    assert find_point_masses(values, label, limit=16) == [1.0, 8.0]
    assert find_point_masses(values, label, limit=1) == [8.0]  # the larger share kept first
    assert find_point_masses(values, label, limit=0) == []
    assert find_point_masses(np.full(100, 3.0), None, limit=16) == []  # a constant needs no choice
    rate = df["rate"].to_numpy(dtype=np.float64)
    assert find_point_masses(rate, None, limit=16) == [0.0]


def test_mode_codes_are_exact_matches_only():
    codes = mode_codes(np.array([0.0, 1.0, 8.0, 8.5, -1.0, 100.0]), [1.0, 8.0])
    assert codes.tolist() == [0, 1, 2, 0, 0, 0]
    assert mode_codes(np.array([1.0]), []).tolist() == [0]


def test_layout_encoding_and_exact_round_trip():
    df, label = _table()
    t = TableTransform(point_masses=16).fit(df, COLUMNS, groups=label)
    plan = t.plan("bytes")
    assert plan["spikes"] == [1.0, 8.0]
    segs = [(s.column, s.end - s.start, s.activation) for s in t.segments()]
    assert segs[:2] == [("bytes", 1, "linear"), ("bytes", 3, "softmax")]
    x = t.transform(df, rng=np.random.default_rng(0))
    group = x[:, 1:4]
    assert np.all(group.sum(1) == 1)
    assert np.array_equal(group[:, 1] == 1, df["bytes"].to_numpy() == 1)
    assert np.array_equal(group[:, 2] == 1, df["bytes"].to_numpy() == 8)
    assert np.array_equal(group[:, 0] == 1, ~np.isin(df["bytes"].to_numpy(), [1, 8]))
    back = t.inverse_transform(x)
    for name, _ in COLUMNS:
        np.testing.assert_array_equal(back[name].to_numpy(dtype=np.float64), df[name].to_numpy(dtype=np.float64))


def test_the_group_decides_the_value_and_other_decodes_the_code_over_the_other_values():
    df, label = _table()
    t = TableTransform(point_masses=16).fit(df, COLUMNS, groups=label)
    x = torch.zeros(3, t.dim)
    x[:, 0] = 2.0  # a quantile code that decodes to a large byte count
    x[0, 1] = 1.0  # other
    x[1, 2] = 1.0  # the point mass 1
    x[2, 3] = 5.0  # raw logits: 8 wins
    for s in t.segments()[2:]:
        x[:, s.start] = 1.0  # every other group: its first slot
    decoded = t.inverse_transform(x)["bytes"].tolist()
    # "other" decodes through the quantiles of the values that are not point masses
    rest = df.loc[~df["bytes"].isin([1, 8]), ["bytes"]]
    ends = pd.DataFrame({"bytes": [df["bytes"].min(), df["bytes"].max()]})  # the column's range stays the grid's
    alone = TableTransform().fit(pd.concat([rest, ends]), [("bytes", "count")])
    assert decoded[0] == alone.inverse_transform(x[:1, :1])["bytes"].item() > 100 and decoded[1:] == [1, 8]


def test_a_point_mass_rows_code_is_noise_and_other_rows_codes_cover_the_normal():
    """The code of a row on a point mass is never decoded: it is independent noise (so the generator
    need not tie its code to its slot), and the other rows' codes spread over N(0, 1) on their own."""
    df, label = _table(20000)
    t = TableTransform(point_masses=16).fit(df, COLUMNS, groups=label)
    x = t.transform(df, rng=np.random.default_rng(0))
    on = df["bytes"].isin([1, 8]).to_numpy()
    for part in (x[on, 0], x[~on, 0]):
        assert abs(part.mean()) < 0.05 and abs(part.std() - 1) < 0.05
    assert np.array_equal(t.transform(df, dequantize=False)[on, 0], np.zeros(on.sum(), dtype=np.float32))


def test_each_group_picks_the_first_largest_of_its_own_slots_whatever_the_widths():
    """Raw logits, with ties, for two spiked columns of 3 and 2 slots (the narrower one padded to 3):
    each column's value is its own argmax's point mass (the first of equal logits), or its "other"
    decoding at slot 0, checked against numpy one row at a time."""
    df, label = _table()
    t = TableTransform(point_masses=16).fit(df, COLUMNS, groups=label)
    groups = {s.column: s for s in t.segments() if s.activation == "softmax" and s.column in ("bytes", "rate")}
    assert [groups[c].end - groups[c].start for c in ("bytes", "rate")] == [3, 2]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, t.dim, generator=gen)
    for seg in groups.values():  # small integers: many ties, between slot 0 and others too
        x[:, seg.start : seg.end] = torch.randint(-2, 3, (400, seg.end - seg.start), generator=gen).float()
    decoded = t.inverse_transform(x)
    for name, seg in groups.items():
        spikes = t.plan(name)["spikes"]
        slot = np.argmax(x[:, seg.start : seg.end].numpy(), axis=1)
        other = x.clone()
        other[:, seg.start : seg.end] = 0.0
        other[:, seg.start] = 1.0
        at_zero = t.inverse_transform(other)[name].to_numpy(dtype=np.float64)
        want = np.where(slot == 0, at_zero, np.array([0.0, *spikes])[slot])
        np.testing.assert_array_equal(decoded[name].to_numpy(dtype=np.float64), want)
        assert 0 < (slot == 0).mean() < 1


def test_decoder_with_point_masses_matches_onnx_runtime(tmp_path):
    df, label = _table()
    t = TableTransform(point_masses=16).fit(df, COLUMNS, groups=label)
    assert_decoder_matches_onnx(t, tmp_path, sizes=(1, 257))
    assert TableDecoder(t.to_dict())(torch.zeros(0, t.dim))[0].shape == (0, 3)


def test_a_format_2_transform_still_decodes_as_before():
    df, label = _table()
    plain = TableTransform().fit(df, COLUMNS)
    old = dict(plain.to_dict(), format=2)
    old.pop("point_masses")
    old.pop("point_share")
    x = torch.randn(100, plain.dim)
    pd.testing.assert_frame_equal(TableTransform.from_dict(old).inverse_transform(x), plain.inverse_transform(x))
    with pytest.raises(Exception, match="format"):
        TableTransform.from_dict(dict(old, format=99))


def _groups_reference(g: TabularGenerator, z: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
    """The generator's output with every group drawn alone by ``_sample`` (the unbatched definition)."""
    import math

    h = torch.cat([z, g.embed(cond)], dim=1) if g.embed is not None else z
    raw = g.head(g.blocks(g.stem(h)))
    out = torch.where(g.tanh_mask, torch.tanh(raw), raw) if g.has_tanh else raw.clone()
    u = 0.5 * (1.0 + torch.erf((z.float() @ g.u_proj) * (1.0 / math.sqrt(2.0))))
    pieces = []
    prev = 0
    for k, (s, e) in enumerate(g.softmax_groups):
        pieces += [out[:, prev:s], g._sample(raw[:, s:e], u[:, k : k + 1])]
        prev = e
    pieces.append(out[:, prev:])
    return torch.cat(pieces, dim=1)


@pytest.mark.parametrize("training", [False, True])
def test_batched_draws_equal_one_group_at_a_time(training):
    segments = [Segment("a", 0, 1, "linear"), Segment("a", 1, 4, "softmax"), Segment("j", 4, 60, "softmax"),
                Segment("b", 60, 61, "linear"), Segment("b", 61, 63, "softmax"), Segment("f", 63, 65, "softmax"),
                Segment("c", 65, 66, "linear"), Segment("c", 66, 83, "softmax")]
    torch.manual_seed(0)
    g = TabularGenerator(16, segments, n_classes=3).train(training)
    with torch.no_grad():
        g.head.weight.mul_(20)  # logits far apart, as a trained generator's are
    assert g.n_batched == 4 and g.wide_groups == [1]
    z, c = torch.randn(2000, 16), torch.randint(0, 3, (2000,))
    out = g(z, c)
    ref = _groups_reference(g, z, c)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    if training:  # the straight-through gradient reaches every group's logits
        out[:, 61:63].sum().backward()
        assert g.head.weight.grad[61:63].abs().sum() > 0


def test_point_mass_options_are_checked():
    from advgen.config import TrainConfig

    def build(options):
        TabularDomain().build_generator({"transform": {}, "shape": [1]}, TrainConfig(plugin="tabular", options=options))

    for bad in (-1, 1.5, True, 10_000):
        with pytest.raises(AdvgenError, match="point_masses"):
            build({"point_masses": bad})
    for bad in (0, 1.5, "x"):
        with pytest.raises(AdvgenError, match="point_share"):
            build({"point_share": bad})
