"""The tabular domain: transform, decoder, nets, validators, conditional sampling, user CSVs.

Tests that read NSL-KDD use the ``data_dir`` fixture and fail (not skip) when the files are absent.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from advgen.config import TrainConfig
from advgen.domain import run_validators
from advgen.errors import AdvgenError, InvalidDataError
from advgen_tabular import TabularDomain
from advgen_tabular.nets import TabularDiscriminator, TabularGenerator
from advgen_tabular.transform import TableDecoder, TableTransform
from advgen_tabular.validators import build_validators, fit_rules, format_validation

DOMAIN = TabularDomain()
# these nets are small: one thread trains them about as fast, and two threads on a busy two-core
# machine can be twenty times slower (the threads spin waiting for each other)
ONE_THREAD = {"threads": 1}


@pytest.fixture(scope="module")
def nsl_table():
    import os
    from pathlib import Path

    from advgen_datasets import load_table

    here = Path(__file__).resolve().parents[1]
    for c in (os.environ.get("ADVGEN_DATA"), str(here.parent / "shared" / "datasets")):
        if c and (Path(c) / "nsl-kdd" / "KDDTrain+_20Percent.txt").is_file():
            os.environ["ADVGEN_DATA"] = c
            return load_table(dataset="nsl-kdd", split="train20")
    pytest.fail("NSL-KDD files not found: set ADVGEN_DATA to a folder holding nsl-kdd/KDDTrain+_20Percent.txt")


def _features(table) -> list[tuple[str, str]]:
    return [(c.name, c.kind) for c in table.columns if c.role == "feature"]


@pytest.fixture(scope="module")
def nsl_transform(nsl_table):
    """Fitted as the domain fits it: point masses found per label."""
    df = nsl_table.df
    return TableTransform(point_masses=16).fit(df, _features(nsl_table), groups=df[nsl_table.label])


@pytest.fixture(scope="module")
def short_run(tmp_path_factory, nsl_table):
    """A short conditional run on NSL-KDD (its quality is not the point here)."""
    from advgen.api import train

    out = tmp_path_factory.mktemp("tabular") / "run"
    return train({"plugin": "tabular", "steps": 40, "n_samples": 0, "out": str(out), "log_every": 20, **ONE_THREAD})


# --- transform -----------------------------------------------------------------------------------


@pytest.mark.parametrize("point_masses", [0, 16])
def test_round_trip_on_nsl_kdd(nsl_table, point_masses):
    df = nsl_table.df
    transform = TableTransform(snap_fractions=False, point_masses=point_masses).fit(
        df, _features(nsl_table), groups=df[nsl_table.label]
    )
    assert bool(point_masses) == any(p.get("spikes") for p in transform.plans)
    x = transform.transform(df, rng=np.random.default_rng(1))
    assert x.dtype == np.float32 and np.isfinite(x).all() and np.abs(x).max() <= 5.0
    back = transform.inverse_transform(x)
    for name, kind in _features(nsl_table):
        a, b = df[name].to_numpy(), back[name].to_numpy()
        if kind == "categorical":
            assert (a.astype(str) == b.astype(str)).all(), name
            continue
        a, b = a.astype(np.float64), b.astype(np.float64)
        assert np.mean(a == b) >= 0.995, name
        # only float32 resolution on the steepest stretches of the quantile function is lost
        assert np.all(np.abs(a - b) <= 1e-2 * np.maximum(1.0, np.abs(a))), name


def test_snapping_changes_only_rows_that_are_not_fractions(nsl_table, nsl_transform):
    df = nsl_table.df
    assert {f["rate"]: f["count"] for f in nsl_transform.fractions}["same_srv_rate"] == "count"
    back = nsl_transform.inverse_transform(nsl_transform.transform(df, dequantize=False))
    for f in nsl_transform.fractions:
        assert np.mean(df[f["rate"]].to_numpy() == back[f["rate"]].to_numpy()) >= 0.998


def test_decoding_any_output_gives_typed_values(nsl_table, nsl_transform):
    torch.manual_seed(0)
    x = torch.randn(3000, nsl_transform.dim) * 4  # far outside what training produces
    rows = nsl_transform.inverse_transform(x)
    combos = set(map(tuple, nsl_table.df[["protocol_type", "service", "flag"]].astype(str).to_numpy()))
    assert set(map(tuple, rows[["protocol_type", "service", "flag"]].to_numpy())) <= combos
    for name, kind in _features(nsl_table):
        col, real = rows[name], nsl_table.df[name]
        if kind == "categorical":
            assert set(col) <= set(real.astype(str)), name
        elif kind == "flag":
            assert col.dtype == np.int64 and set(col) <= set(real), name
        else:
            assert col.min() >= real.min() and col.max() <= real.max(), name
            if kind == "count":
                assert col.dtype == np.int64, name
            if kind == "rate":
                assert col.between(0, 1).all() and np.allclose(col, col.round(2)), name


def test_transform_serialises_to_json(nsl_transform):
    restored = TableTransform.from_dict(json.loads(json.dumps(nsl_transform.to_dict())))
    x = torch.randn(500, nsl_transform.dim)
    pd.testing.assert_frame_equal(restored.inverse_transform(x), nsl_transform.inverse_transform(x))


def test_unseen_category_is_a_clear_error(nsl_table, nsl_transform):
    bad = nsl_table.df.head(3).copy()
    bad.loc[bad.index[0], "service"] = "gopher-over-carrier-pigeon"
    with pytest.raises(InvalidDataError, match="never seen"):
        nsl_transform.transform(bad)


def _skewed_table(n: int = 2000) -> pd.DataFrame:
    """Traffic-like columns: mostly-zero heavy-tailed byte counts, a rate in hundredths, a protocol."""
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "bytes": np.where(rng.random(n) < 0.6, 0, rng.lognormal(6, 3, n).round()),
            "rate": rng.integers(0, 101, n) / 100,
            "proto": rng.choice(["tcp", "udp"], n),
        }
    )


ALT_COLUMNS = [("bytes", "count"), ("rate", "rate"), ("proto", "categorical")]


def test_log_encoding_round_trip():
    df = _skewed_table()
    t = TableTransform("log").fit(df, ALT_COLUMNS)
    back = t.inverse_transform(t.transform(df))
    assert (back["proto"] == df["proto"]).all()
    assert back["bytes"].dtype == np.int64
    # log1p + standardise inverts exactly up to float32 rounding of the largest counts
    np.testing.assert_allclose(back["bytes"], df["bytes"], rtol=1e-6, atol=0)
    assert np.mean(back["bytes"] == df["bytes"]) >= 0.99
    np.testing.assert_array_equal(back["rate"], df["rate"])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # a 2-mode column asked for 10
def test_msn_encoding_round_trip_is_exact_within_four_deviations_of_the_drawn_mode():
    """CTGAN's mode-specific normalisation stores a value as (mode, alpha) with alpha = (v - mean) /
    (4 std) clipped to +-0.99: a value within 3.96 deviations of the mode drawn for it decodes back to
    itself; one beyond (a far outlier) decodes to that edge of the mode."""
    df = _skewed_table()
    t = TableTransform("msn").fit(df, ALT_COLUMNS)
    x = t.transform(df, rng=np.random.default_rng(1))
    back = t.inverse_transform(x)
    assert (back["proto"] == df["proto"]).all()
    assert back["bytes"].dtype == np.int64
    segments = {(s.column, s.activation): s for s in t.segments()}
    for name in ("bytes", "rate"):
        plan = t.plan(name)
        assert plan["encoding"] == "msn"
        means, stds = np.asarray(plan["means"]), np.asarray(plan["stds"])
        alpha_seg, mode_seg = segments[(name, "tanh")], segments[(name, "softmax")]
        alpha = x[:, alpha_seg.start].astype(np.float64)
        mode = x[:, mode_seg.start : mode_seg.end].argmax(axis=1)
        original, decoded = df[name].to_numpy(np.float64), back[name].to_numpy(np.float64)
        far = np.abs(original - means[mode]) > 3.96 * stds[mode]
        # the encoder clips exactly the values too far from their mode, and only those
        np.testing.assert_array_equal(np.abs(alpha) >= np.float32(0.99), far)
        np.testing.assert_array_equal(decoded[~far], original[~far], err_msg=name)
        edge = means[mode[far]] + np.sign(alpha[far]) * 3.96 * stds[mode[far]]
        edge = np.clip(edge, original.min(), original.max())
        np.testing.assert_allclose(decoded[far], edge, rtol=1e-6, atol=1.0, err_msg=name)
        assert far.mean() < 0.01, name
    # the heavy tail does reach past the widest mode here, so the clipped branch is exercised
    assert 0 < np.mean(back["bytes"] != df["bytes"]) < 0.01


# --- decoder: the same math for NumPy, torch and ONNX ---------------------------------------------


def test_decoder_matches_onnx_runtime(tmp_path, nsl_transform):
    import onnxruntime as ort

    decoder = TableDecoder(nsl_transform.to_dict()).eval()
    x = torch.randn(64, nsl_transform.dim) * 2
    path = tmp_path / "decoder.onnx"
    torch.onnx.export(
        decoder, (x,), str(path), input_names=["x"], output_names=["numeric", "categorical"],
        dynamic_axes={"x": {0: "n"}}, opset_version=17, dynamo=False,
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    xs = torch.randn(257, nsl_transform.dim) * 2
    num, cat = sess.run(None, {"x": xs.numpy()})
    ref_num, ref_cat = nsl_transform.decode_arrays(xs)
    assert (cat == ref_cat).all()
    np.testing.assert_allclose(num, ref_num, rtol=1e-6, atol=1e-6)


def test_export_module_agrees_with_decode(short_run):
    spec = short_run.spec
    module = DOMAIN.export_module(short_run.generator, spec)
    device = next(short_run.generator.parameters()).device  # CUDA where the run trained there
    z = torch.randn(100, short_run.config.z_dim, device=device)
    cond = torch.randint(0, len(spec["conditions"]["classes"]), (100,), device=device)
    with torch.no_grad():
        num, cat = (t.cpu() for t in module(z, cond))
        rows = DOMAIN.decode(short_run.generator(z, cond).cpu(), cond.cpu().numpy(), spec)
    outputs = DOMAIN.export_outputs(spec)
    assert [o["name"] for o in outputs] == ["numeric", "categorical"]
    assert num.dtype == torch.float64 and cat.dtype == torch.int64
    assert list(num.shape[1:]) == outputs[0]["shape"] and list(cat.shape[1:]) == outputs[1]["shape"]
    for j, name in enumerate(outputs[0]["columns"]):
        np.testing.assert_allclose(num[:, j].numpy(), rows[name].to_numpy(dtype=np.float64), rtol=1e-6)
    for j, (name, vocab) in enumerate(zip(outputs[1]["columns"], outputs[1]["vocabularies"])):
        assert [vocab[i] for i in cat[:, j].tolist()] == rows[name].tolist()
    manifest = DOMAIN.export_manifest(spec)
    assert manifest["columns"] == list(rows.columns)


# --- nets ------------------------------------------------------------------------------------------


def test_generator_emits_exact_one_hots_and_sampled_shares(nsl_transform):
    segments = nsl_transform.segments()
    g = TabularGenerator(64, segments, n_classes=3)
    z, c = torch.randn(4000, 64), torch.randint(0, 3, (4000,))
    out = g(z, c)
    out.sum().backward()  # straight-through: gradients reach the softmax logits
    assert g.head.weight.grad is not None and g.head.weight.grad.abs().sum() > 0
    g.eval()
    with torch.no_grad():
        x = g(z, c)
    for s in (s for s in segments if s.activation == "softmax"):
        block = x[:, s.start : s.end]
        assert torch.all((block == 0) | (block == 1)) and torch.all(block.sum(1) == 1)
    # with fixed logits, the sampled categories follow the softmax (not just its argmax)
    logits = torch.tensor([[2.0, 1.0, 0.0]]).expand(20000, 3)
    u = torch.rand(20000, 1)
    shares = g._sample(logits, u).mean(0)
    assert torch.allclose(shares, torch.softmax(logits[0], 0), atol=0.02)


def test_rare_categories_survive_bf16_autocast():
    """Under bfloat16 autocast (CUDA, CPUs with native bf16) the category draw stays in float32: a
    bf16 running sum or uniform would never pick the last categories of a long vocabulary."""
    from advgen_tabular.transform import Segment

    k = 234
    probs = torch.full((k,), 0.5 / (k - 1))
    probs[0] = 0.5  # one frequent category, then 233 rare ones (p = 0.0021 each)
    g = TabularGenerator(64, [Segment("joint", 0, k, "softmax")]).eval()
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.zero_()
        g.head.bias.copy_(probs.log())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            x = g(torch.randn(200_000, 64, generator=torch.Generator().manual_seed(0)))
    shares = x.float().mean(0)
    assert shares[0].item() == pytest.approx(0.5, abs=0.01)
    tail = shares[-40:]  # the categories a bf16 cumulative sum above 0.9 would skip
    assert (tail > 0).all() and tail.sum().item() == pytest.approx(40 * 0.5 / (k - 1), rel=0.15)


@pytest.mark.parametrize("pac", [1, 4])
def test_discriminator_scores_every_row(pac):
    for projection in (False, True):
        d = TabularDiscriminator(10, n_classes=4, pac=pac, projection=projection)
        for n in (8, 10, 1):
            out = d(torch.randn(n, 10), torch.randint(0, 4, (n,)))
            assert out.shape == (n,) and torch.isfinite(out).all()


def test_projection_lets_the_class_change_the_score():
    """With projection, the same row scores differently under different classes even when the
    input-side label embedding is silenced."""
    torch.manual_seed(0)
    d = TabularDiscriminator(10, n_classes=3, projection=True, spectral=False).eval()
    with torch.no_grad():
        d.embed.weight.zero_()
        x = torch.randn(5, 10).repeat(3, 1)
        c = torch.arange(3).repeat_interleave(5)
        scores = d(x, c).reshape(3, 5)
    assert (scores[0] - scores[1]).abs().min() > 0 and (scores[1] - scores[2]).abs().min() > 0
    plain = TabularDiscriminator(10, n_classes=3, projection=False, spectral=False).eval()
    with torch.no_grad():
        plain.embed.weight.zero_()
        assert torch.allclose(plain(x, c).reshape(3, 5)[0], plain(x, c).reshape(3, 5)[1])


# --- validators ------------------------------------------------------------------------------------


def test_real_data_passes_its_fitted_rules_and_shuffled_rows_do_not(nsl_table, nsl_transform):
    df = nsl_table.df
    decimals = {p["name"]: p.get("decimals") for p in nsl_transform.plans if "decimals" in p}
    rules = fit_rules(df, _features(nsl_table), "label", decimals=decimals)
    types = {r["type"] for r in rules}
    assert {"range", "vocab", "combo", "fraction"} <= types
    assert any(r["type"] == "fraction" and r["rate"] == "same_srv_rate" and r["count"] == "count" for r in rules)
    validators = build_validators(rules)
    assert {v.group for v in validators} == {"schema", "cross-column"}
    real = run_validators(df, validators, len(df))
    assert all(rate >= 0.999 for rate in real.rule_rates().values())
    rng = np.random.default_rng(0)
    shuffled = df.apply(lambda s: s.to_numpy()[rng.permutation(len(s))])
    fake = run_validators(shuffled, validators, len(df))
    assert fake.group_rates()["schema"] == 1.0  # each column is still a real column
    assert fake.group_rates()["cross-column"] < 0.3
    table = format_validation(fake, real, validators).splitlines()
    assert table[0].split() == ["rule", "synthetic", "real"]
    group_row = next(row.split() for row in table if row.split()[0] == "[cross-column]")
    assert float(group_row[1]) < 0.3 and float(group_row[2]) >= 0.998
    bad = df.head(4).copy()
    bad["count"] = [-1, 2.5, 3, 4]
    bad["serror_rate"] = [0.0, 0.0, 1.5, 0.0]
    report = run_validators(bad, validators, 4)
    assert report.per_rule["count:range"] == 2 and report.per_rule["serror_rate:range"] == 3


def test_orderings_cross_counts_and_reals_but_not_mere_scale():
    """shortest <= average <= longest word (a count, a real, a count) is a rule; a count of 0-3 below a
    byte rate of 1e5 holds because of units and is not."""
    rng = np.random.default_rng(0)
    n = 2000
    words = rng.integers(1, 6, size=(n, 4)) * rng.integers(1, 4, size=(n, 1))
    bytes_ = rng.integers(0, 2, n) * rng.integers(1, 10**6, n)
    df = pd.DataFrame({
        "shortest": words.min(axis=1), "avg": words.mean(axis=1).round(3), "longest": words.max(axis=1),
        "depth": np.where(bytes_ > 0, rng.integers(0, 4, n), 0), "bytes_per_s": bytes_ * 10,
    })
    kinds = [("shortest", "count"), ("avg", "continuous"), ("longest", "count"), ("depth", "count"),
             ("bytes_per_s", "continuous")]
    orders = {(r["a"], r["b"]) for r in fit_rules(df, kinds) if r["type"] == "order"}
    assert {("shortest", "avg"), ("avg", "longest"), ("shortest", "longest")} <= orders
    assert ("depth", "bytes_per_s") not in orders
    assert any(r["type"] == "zero" and (r["a"], r["b"]) == ("bytes_per_s", "depth") for r in fit_rules(df, kinds))


# --- the domain through the engine ------------------------------------------------------------------


def test_conditional_sampling_returns_the_requested_class(short_run):
    rows = short_run.sample(60, condition="label=guess_passwd", seed=0)
    assert set(rows["label"]) == {"guess_passwd"} and set(rows["category"]) == {"r2l"}
    rows = short_run.sample(300, condition="category=u2r", seed=0)
    assert set(rows["category"]) == {"u2r"}
    assert set(rows["label"]) <= {"buffer_overflow", "rootkit", "loadmodule", "perl"}
    assert list(rows.columns[-2:]) == ["label", "category"]
    assert "num_outbound_cmds" in rows.columns and (rows["num_outbound_cmds"] == 0).all()


def test_unknown_condition_is_a_clear_error(short_run):
    with pytest.raises(AdvgenError, match="category=apt never occurred in training; known values: dos"):
        short_run.sample(5, condition="category=apt")
    with pytest.raises(AdvgenError, match="label=mscan never occurred in training"):
        short_run.sample(5, condition="label=mscan")  # a KDDTest+-only attack
    with pytest.raises(AdvgenError, match="unknown condition 'service'"):
        short_run.sample(5, condition="service=http")
    # a key given twice silently kept its last value (audit); the runtime refuses it as no class matches both
    with pytest.raises(AdvgenError, match=r"condition names category twice \('dos' and 'r2l'\)"):
        short_run.sample(5, condition="category=dos,category=r2l")


def test_samples_files_round_trip_and_featurize_consistently(tmp_path, short_run):
    spec = short_run.spec
    rows = short_run.sample(200, seed=3)
    for suffix in DOMAIN.sample_suffixes():
        path = tmp_path / f"samples{suffix}"
        DOMAIN.write_samples(rows, path, spec)
        back = DOMAIN.read_samples(path, spec)
        pd.testing.assert_frame_equal(back, rows, check_dtype=False)
    real = short_run.load_real().samples
    fx, rx = DOMAIN.featurize(rows, spec), DOMAIN.featurize(real, spec)
    assert fx.shape[1] == rx.shape[1] and np.isfinite(fx).all()
    assert set(DOMAIN.labels(real, spec)) == {"normal", "dos", "probe", "r2l", "u2r"}
    with pytest.raises(AdvgenError, match="use .csv or .parquet"):
        DOMAIN.write_samples(rows, tmp_path / "samples.xlsx", spec)


def test_spec_is_json(short_run):
    spec = json.loads(json.dumps(short_run.spec))
    assert spec["shape"] == [TableTransform.from_dict(spec["transform"]).dim]
    assert spec["conditions"]["name"] == "label" and spec["target"] == "category"


def test_short_training_improves_fidelity(tmp_path, nsl_table):
    from advgen.api import train
    from advgen.metrics.fidelity import table_fidelity

    run = train({"plugin": "tabular", "steps": 400, "n_samples": 0, "out": str(tmp_path / "run"), "seed": 0, **ONE_THREAD})
    spec, real = run.spec, run.load_real().samples
    cfg = TrainConfig.from_dict(run.config.to_dict())
    torch.manual_seed(0)
    untrained = DOMAIN.build_generator(spec, cfg).eval()
    z = torch.randn(5000, cfg.z_dim)
    cond = torch.multinomial(torch.tensor(spec["conditions"]["counts"], dtype=torch.float), 5000, True)
    with torch.no_grad():
        before = DOMAIN.decode(untrained(z, cond), cond.numpy(), spec)
    after = run.sample(5000, seed=0)
    features = [c for c in spec["columns"] if c["role"] == "feature"]

    def score(frame: pd.DataFrame) -> float:
        fid = table_fidelity(real, frame, features)
        return (fid["ks_complement"]["mean"] + fid["tv_complement"]["mean"]) / 2

    assert score(after) > score(before) + 0.1
    report = run.validate(after)
    assert report.group_rates()["schema"] == 1.0


def test_user_csv_with_a_label_trains_and_samples(tmp_path):
    from advgen.api import train

    rng = np.random.default_rng(0)
    n = 900
    kind = rng.choice(["benign", "scan", "flood"], n, p=[0.7, 0.2, 0.1])
    pkts = np.where(kind == "flood", rng.integers(100, 500, n), rng.integers(1, 20, n))
    df = pd.DataFrame(
        {
            "Proto": np.where(kind == "flood", "udp", rng.choice(["tcp", "udp"], n)),
            "Bytes": (pkts * rng.lognormal(4, 1.5, n)).round().astype(int),
            "Packets": pkts,
            "SynRatio": rng.integers(0, 101, n) / 100,
            "Label": kind,
        }
    )
    path = tmp_path / "flows.csv"
    df.to_csv(path, index=False)
    run = train(
        {"plugin": "tabular", "data": str(path), "label": "Label", "steps": 60, "n_samples": 100,
         "out": str(tmp_path / "run"), **ONE_THREAD}
    )
    samples = pd.read_csv(tmp_path / "run" / "samples.csv")
    assert list(samples.columns) == ["Proto", "Bytes", "Packets", "SynRatio", "Label"]
    rows = run.sample(50, condition="Label=scan", seed=0)
    assert set(rows["Label"]) == {"scan"} and rows["Packets"].dtype == np.int64
    assert rows["SynRatio"].between(0, 1).all() and set(rows["Proto"]) <= {"tcp", "udp"}
    with pytest.raises(AdvgenError, match="unknown condition 'category'"):
        run.sample(5, condition="category=dos")
    assert DOMAIN.labels(rows, run.spec).tolist() == ["scan"] * 50


def test_export_module_follows_the_generator_to_its_device(short_run, monkeypatch):
    """A run trained on CUDA exports without moving it first: the decoder's lookup tables go to the
    generator's device (on CUDA, tables left on the CPU failed in index_select). Without a GPU here, a
    spy on the decoder's ``.to`` checks where it is sent; tests/test_cuda.py runs it for real."""
    from advgen_tabular import transform

    sent = []
    original = transform.TableDecoder.to

    def spy(self, *args, **kwargs):
        sent.append(torch.device(args[0]) if args else kwargs.get("device"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(transform.TableDecoder, "to", spy)
    module = DOMAIN.export_module(short_run.generator, short_run.spec)
    assert sent == [next(short_run.generator.parameters()).device]
    assert {b.device for b in module.buffers()} == {sent[0]}
