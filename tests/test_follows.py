"""A feature with one value per class (UNSW-NB15's binary ``label`` beside ``attack_cat``) is written
from the class in a conditional run's samples, in torch and in the exported ONNX graph alike."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from advgen_tabular import TabularDomain
from advgen_tabular.follows import fit_follows

DOMAIN = TabularDomain()
ONE_THREAD = {"threads": 1}
CLASSES = ["dos", "normal", "probe"]


def _csv(path, n: int = 1500, seed: int = 0):
    rng = np.random.default_rng(seed)
    label = rng.choice(CLASSES, n, p=[0.3, 0.5, 0.2])
    df = pd.DataFrame(
        {
            "bytes": np.round(rng.lognormal(5, 2, n)),
            "rate": np.round(rng.random(n), 2),
            "is_attack": (label != "normal").astype(int),
            "family": np.where(label == "normal", "benign", "malicious"),
            "attack_cat": label,
        }
    )
    df.to_csv(path, index=False)
    return df


def _consistent(rows: pd.DataFrame) -> np.ndarray:
    attack = rows["attack_cat"] != "normal"
    return (rows["is_attack"].astype(int) == attack.astype(int)).to_numpy() & (
        rows["family"] == np.where(attack, "malicious", "benign")
    ).to_numpy()


def test_following_columns_and_their_values_are_found():
    y = ["a"] * 5 + ["b"] * 4 + ["c"]
    df = pd.DataFrame({"y": y, "f": [{"a": 1, "b": 0, "c": 5}[v] for v in y], "g": range(10)})
    found = fit_follows(df, [("f", "count"), ("g", "count")], "y", ["a", "b", "c"], {"f", "g"})
    assert found == [{"column": "f", "values": [1, 0, 5]}]
    assert fit_follows(df, [("f", "count")], "y", ["a", "b", "c"], set()) == []  # not decodable alone


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from advgen.api import train

    root = tmp_path_factory.mktemp("follows")
    _csv(root / "t.csv")
    out = {}
    for on in (True, False):
        out[on] = train({
            "plugin": "tabular", "data": str(root / "t.csv"), "label": "attack_cat", "steps": 30, "n_samples": 0,
            "out": str(root / f"run{on}"), "log_every": 10, "options": {"follow_label": on}, **ONE_THREAD,
        })
    return out


def test_samples_carry_the_class_value_of_every_following_column(runs):
    spec = runs[True].spec
    assert [f["column"] for f in spec["follows_label"]] == ["is_attack", "family"]
    rows = runs[True].sample(3000, seed=0)
    assert _consistent(rows).all()
    # what it fixes: a 30-step generator draws them at random
    assert _consistent(runs[False].sample(3000, seed=0)).mean() < 0.9
    assert runs[False].spec["follows_label"] == []


def test_the_exported_graph_writes_them_as_decode_does(runs, tmp_path):
    import onnxruntime as ort

    run = runs[True]
    spec = run.spec
    module = DOMAIN.export_module(run.generator, spec).eval()
    z = torch.randn(257, run.config.z_dim)
    cond = torch.randint(0, len(CLASSES), (257,))
    with torch.no_grad():
        num, cat = module(z, cond)
        rows = DOMAIN.decode(run.generator(z, cond), cond.numpy(), spec)
    assert _consistent(rows).all()
    outputs = DOMAIN.export_outputs(spec)
    j = outputs[0]["columns"].index("is_attack")
    np.testing.assert_array_equal(num[:, j].numpy(), rows["is_attack"].to_numpy(dtype=np.float32))
    k = outputs[1]["columns"].index("family")
    assert [outputs[1]["vocabularies"][k][i] for i in cat[:, k].tolist()] == rows["family"].tolist()
    path = tmp_path / "g.onnx"
    torch.onnx.export(
        module, (z, cond), str(path), input_names=["z", "cond"], output_names=["numeric", "categorical"],
        dynamic_axes={"z": {0: "n"}, "cond": {0: "n"}}, opset_version=17, dynamo=False,
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    o_num, o_cat = sess.run(None, {"z": z.numpy(), "cond": cond.numpy()})
    np.testing.assert_array_equal(o_num[:, j], num[:, j].numpy())
    np.testing.assert_array_equal(o_cat, cat.numpy())


@pytest.mark.parametrize("bad, says", [
    ([{"column": "nope", "values": [1, 0, 1]}], "unknown column"),
    ([{"column": "is_attack", "values": [1, 0]}], "2 values for 3 classes"),
    ([{"column": "is_attack", "values": [1, float("nan"), 1]}], "not a finite number"),
    ([{"column": "family", "values": ["benign", "x", "benign"]}], "not in its vocabulary"),
    ("rm -rf", "not a list"),
])
def test_an_edited_follows_entry_is_one_clear_error(runs, bad, says):
    from advgen.errors import InvalidDataError

    run = runs[True]
    spec = dict(run.spec, follows_label=bad)
    z, cond = torch.randn(5, run.config.z_dim), torch.zeros(5, dtype=torch.long)
    with torch.no_grad():
        x = run.generator(z, cond)
    with pytest.raises(InvalidDataError, match=says):
        DOMAIN.decode(x, cond.numpy(), spec)
    with pytest.raises(InvalidDataError, match=says):
        DOMAIN.export_module(run.generator, spec)


def test_the_run_says_which_columns_follow_the_label(tmp_path):
    from advgen.api import train

    _csv(tmp_path / "t.csv", n=300)
    lines = []
    train({"plugin": "tabular", "data": str(tmp_path / "t.csv"), "label": "attack_cat", "steps": 2, "n_samples": 0,
           "out": str(tmp_path / "run"), **ONE_THREAD}, log=lines.append)
    said = [line for line in lines if "one value per class" in line]
    assert len(said) == 1 and "'is_attack', 'family'" in said[0] and "'attack_cat'" in said[0], lines
