"""An `advgen evade` generator exported to ONNX and run by the torch-free runtime (issue 11, 1).

One tiny evade run on NSL-KDD subsamples (a mask with a default and a class of its own, increase-only
columns), exported with `advgen export`; then the runtime (`advgen-runtime disguise`, EvasionModel)
against the torch attack on the same rows and noise, functional cells checked bit for bit on every
row, the runtime's encoding and repair against the torch attack's, tampered manifests, wrong widths and
bad rows. One thread.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from advgen_export import cli as runtime_cli
from advgen_export.manifest import ModelError, manifest_path

REPO = Path(__file__).resolve().parents[1]
PYTHONPATH = os.pathsep.join([str(REPO), str(REPO / "export"), os.environ.get("PYTHONPATH", "")])
TINY = dict(rounds=3, query_batch=100, d_steps=5, g_steps=5, batch=64, hidden=32, normal_queries=200,
            attack_queries=100, final_tries=0)
MASK = """
[default]
frozen = ["intrinsic", "time"]
[classes.satan]
modifiable = ["host", "content", "protocol_type"]
increase_only = ["dst_host_count", "dst_host_srv_count"]
"""


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny evade run, exported with `advgen export`: paths, the export's printed lines and the rows."""
    from advgen.adversarial.api import evade
    from advgen.adversarial.data import load_attack_table
    from advgen.cli import cli

    for c in (os.environ.get("ADVGEN_DATA"), str(REPO.parent / "shared" / "datasets")):
        if c and (Path(c) / "nsl-kdd" / "KDDTrain+_20Percent.txt").is_file():
            os.environ["ADVGEN_DATA"] = c
            break
    else:
        pytest.fail("NSL-KDD files not found: set ADVGEN_DATA")
    d = tmp_path_factory.mktemp("evade-export")
    train = load_attack_table("nsl-kdd:train20")
    test = load_attack_table("nsl-kdd:test", like=train)
    rng = np.random.default_rng(0)
    train.df.iloc[np.sort(rng.choice(len(train.df), 1500, replace=False))].to_csv(d / "train.csv", index=False)
    test_rows = test.df.iloc[np.sort(rng.choice(len(test.df), 800, replace=False))]
    test_rows.to_csv(d / "test.csv", index=False)
    test_rows[test_rows["label"] != "normal"].to_csv(d / "attacks.csv", index=False)
    groups = "\n".join(f"{g} = {json.dumps(list(m))}" for g, m in train.feature_groups.items())
    (d / "schema.toml").write_text(f'label = "label"\n[feature_groups]\n{groups}\n')
    (d / "mask.toml").write_text(MASK)
    evade(str(d / "train.csv"), str(d / "test.csv"), schema_file=str(d / "schema.toml"), detector="decision-tree",
          mask_file=str(d / "mask.toml"), query_budget=3_000, config=TINY, baselines=(), transfer=[], realism=False,
          out=d / "run")
    res = CliRunner().invoke(cli, ["export", str(d / "run"), "-o", str(d / "evade.onnx")])
    assert res.exit_code == 0, res.output
    return {"dir": d, "run": d / "run", "model": d / "evade.onnx", "attacks": d / "attacks.csv", "output": res.output}


@pytest.fixture(scope="module")
def attacks(exported):
    from advgen.io import read_table

    return read_table(exported["attacks"])


@pytest.fixture(scope="module")
def attack(exported):
    from advgen.adversarial.api import load_generator

    return load_generator(exported["run"])


def _bits(values) -> np.ndarray:
    """One bytes object per cell: floats and integers compared bit for bit, text as text."""
    a = np.asarray(values)
    if a.dtype.kind in "fiub":
        return np.array([row.tobytes() for row in a.reshape(len(a), 1)], dtype=object)
    return a.astype(object)


# --- the export ------------------------------------------------------------------------------------


def test_export_checks_parity_and_end_to_end_and_writes_a_bound_pair(exported):
    out = exported["output"]
    assert "parity with torch at batch sizes 1, 3, 257: passed" in out
    assert "end to end on" in out and "functional cells bit-identical in both" in out
    manifest = json.loads(manifest_path(exported["model"]).read_text())
    assert manifest["sample"] == {"kind": "evasion"}
    assert [i["name"] for i in manifest["inputs"]] == ["rows", "mask", "z"]
    section = manifest["evasion"]
    assert section["label"] == "label" and section["threat"]["directions"]["satan"] == {
        "dst_host_count": "up", "dst_host_srv_count": "up"}
    assert {r["type"] for r in section["rules"]} >= {"range", "vocab", "fraction", "order"}


# --- the runtime against torch ---------------------------------------------------------------------


def test_runtime_disguises_as_the_torch_attack_does_on_the_same_rows_and_noise(exported, attacks, attack):
    from advgen_export.runtime import load

    model = load(exported["model"], chunk_rows=100)  # several graph batches per chunk
    assert model.kind == "evasion"
    have = model.disguise(attacks, seed=7)
    z = model.noise(7, 0, len(attacks))  # all rows are in chunk 0
    want = attack.disguise_with_noise(attacks, torch.from_numpy(z))
    assert list(have.columns) == [*attacks.columns, "source_row"]
    assert (have["source_row"].to_numpy() == np.arange(len(attacks))).all()
    have = have.drop(columns=["source_row"])
    mask, _ = attack.masks(attacks)
    changed = 0
    differ = np.zeros(len(attacks), dtype=bool)
    for j, col in enumerate(attack.space.names):
        # functional cells: bit-identical to the attack row, on every row, in both paths
        keep = ~mask[:, j]
        assert (_bits(have[col])[keep] == _bits(attacks[col])[keep]).all(), col
        assert (_bits(want[col])[keep] == _bits(attacks[col])[keep]).all(), col
        changed += int((_bits(have[col]) != _bits(attacks[col])).sum())
        if pd.api.types.is_numeric_dtype(want[col]):
            w, h = want[col].to_numpy(np.float64), have[col].to_numpy(np.float64)
            differ |= ~np.isclose(w, h, rtol=1e-4, atol=1e-4)
        else:
            differ |= want[col].to_numpy() != have[col].to_numpy()
    assert changed > len(attacks)  # the generator does change the modifiable cells
    # float32 noise may move a value across a rounding or argmax boundary in a rare row (docs/export.md)
    assert differ.sum() <= max(1, 0.01 * len(attacks)), np.flatnonzero(differ)[:5]
    extra = [c for c in attacks.columns if c not in attack.space.names]
    assert extra and all((_bits(have[c]) == _bits(attacks[c])).all() for c in extra)  # other columns pass through


def test_cli_disguise_keeps_functional_cells_bit_for_bit_on_every_row_and_is_reproducible(exported, attacks, attack):
    d = exported["dir"]
    argv = ["disguise", str(exported["model"]), "--attacks", str(exported["attacks"]), "--seed", "3"]
    assert runtime_cli.main([*argv, "-o", str(d / "a.csv")]) == 0
    assert runtime_cli.main([*argv, "-o", str(d / "b.csv")]) == 0
    assert (d / "a.csv").read_bytes() == (d / "b.csv").read_bytes()
    argv[-1] = "4"
    assert runtime_cli.main([*argv, "-o", str(d / "c.csv")]) == 0
    assert (d / "a.csv").read_bytes() != (d / "c.csv").read_bytes()
    adv = pd.read_csv(d / "a.csv")
    assert list(adv.columns) == [*attacks.columns, "source_row"] and len(adv) == len(attacks)
    mask, up = attack.masks(attacks)
    for j, col in enumerate(attack.space.names):
        keep = ~mask[:, j]
        assert (_bits(adv[col])[keep] == _bits(attacks[col])[keep]).all(), col
        grow = mask[:, j] & up[:, j]
        assert (adv[col].to_numpy()[grow] >= attacks[col].to_numpy()[grow]).all(), col
    assert attack.space.validity(adv).mean() >= attack.space.validity(attacks).mean()
    # Parquet in, Parquet out: the same rows
    attacks.to_parquet(d / "attacks.parquet", index=False)
    assert runtime_cli.main(["disguise", str(exported["model"]), "--attacks", str(d / "attacks.parquet"), "--seed", "3",
                             "-o", str(d / "a.parquet")]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(d / "a.parquet"), adv, check_dtype=False)


# --- rows the generator was not trained on ---------------------------------------------------------


@pytest.fixture(scope="module")
def mixed(exported):
    """The whole test table (normal rows too), one attack row relabelled with a label the run never
    trained on and one with an attack label of the training data the run did not see; one normal row
    with a service no model knows (it is not the model's to disguise, so not refused). Written as CSV."""
    from advgen.io import read_table

    rows = read_table(exported["dir"] / "test.csv")
    trained = sorted(set(rows["label"]) - {"normal"})  # the run disguised (so trained on) every attack row
    other = sorted(set(read_table(exported["dir"] / "train.csv")["label"]) - set(trained) - {"normal"})[0]
    attack_at = np.flatnonzero(rows["label"].isin(trained).to_numpy())
    rows.loc[attack_at[0], "label"] = "zz_never_seen"
    rows.loc[attack_at[1], "label"] = other
    rows.loc[int(np.flatnonzero((rows["label"] == "normal").to_numpy())[0]), "service"] = "no_such_service"
    path = exported["dir"] / "mixed.csv"
    rows.to_csv(path, index=False)
    rows = read_table(path)
    return {"path": path, "rows": rows, "trained": trained, "take": rows["label"].isin(trained).to_numpy()}


def test_runtime_writes_rows_of_other_classes_unchanged_with_a_note(exported, mixed, attack, capsys):
    d, rows, take = exported["dir"], mixed["rows"], mixed["take"]
    assert 0 < take.sum() < len(rows) and set(rows["label"][~take]) >= {"normal", "zz_never_seen"}
    assert runtime_cli.main(["disguise", str(exported["model"]), "--attacks", str(mixed["path"]), "--seed", "3",
                             "-o", str(d / "mixed-out.csv")]) == 0
    err = capsys.readouterr().err
    other = int((~take).sum())
    assert f"note: {other:,} rows are not of the {len(mixed['trained'])} classes the generator was trained on (" in err
    assert "and were written unchanged" in err
    out = pd.read_csv(d / "mixed-out.csv")
    assert len(out) == len(rows) and (out["source_row"].to_numpy() == np.arange(len(rows))).all()
    for col in rows.columns:  # every cell of every other row, bit for bit
        assert (_bits(out[col])[~take] == _bits(rows[col])[~take]).all(), col
    # and as text: the file's own lines come back, with their source_row
    lines_in = (mixed["path"]).read_text().splitlines()[1:]
    lines_out = (d / "mixed-out.csv").read_text().splitlines()[1:]
    for i in np.flatnonzero(~take):
        assert lines_out[i] == f"{lines_in[i]},{i}"
    # the trained classes' rows are disguised, functional cells kept
    mask, _ = attack.masks(rows[take])
    names = attack.space.names
    assert sum(int((_bits(out[c])[take] != _bits(rows[c])[take]).sum()) for c in names) > take.sum()
    for j, col in enumerate(names):
        assert (_bits(out[col])[take][~mask[:, j]] == _bits(rows[col])[take][~mask[:, j]]).all(), col
    assert json.loads(manifest_path(exported["model"]).read_text())["evasion"]["classes"] == mixed["trained"]


def test_info_lists_the_mask_of_each_class_it_disguises_and_no_other(exported, capsys):
    # info said 'rows of other classes are written unchanged' and then '(any other class): 73 of 81 columns
    # modifiable'; that line was the threat model's default, the mask of the trained classes it does not name
    from advgen_export.runtime import load

    model = load(exported["model"])
    info = model.info()
    trained = [str(c) for c in info["trained_classes"]]
    groups = info["disguised"]
    assert sorted(c for g in groups for c in g["classes"]) == sorted(trained)  # every trained class, once
    threat = json.loads(manifest_path(exported["model"]).read_text())["evasion"]["threat"]
    for g in groups:  # the mask a row of each class gets when disguised
        for cls in g["classes"]:
            mask, _ = model.space.masks(np.array([cls]))
            assert sorted(np.asarray(model.space.names)[mask[0]]) == g["modifiable"], cls
        assert g["mask"] == ("own" if g["classes"][0] in threat["modifiable"] else "default")
    assert runtime_cli.main(["info", str(exported["model"])]) == 0
    out = capsys.readouterr().out
    assert "rows of other classes are written unchanged" in out and "(any other class)" not in out
    if "satan" in trained:
        assert re.search(r"^  satan: \d+ of \d+ columns modifiable", out, re.M), out


def test_info_of_a_one_class_model_does_not_contradict_itself():
    # the phishing audit: trained on one class, a --frozen threat model (a default mask only)
    info = {"model": "m.onnx", "opset": 17, "sha256": "0" * 64, "z_dim": 16, "created": None,
            "plugin": {"name": "advgen.adversarial.gan", "version": "0"}, "columns": [f"c{i}" for i in range(81)],
            "label": "status", "category_map": False, "trained_classes": ["phishing"], "rules": 144,
            "threat": {"name": "frozen", "classes": {"(any other class)": {"modifiable": ["c0"] * 73, "increase_only": []}}},
            "disguised": [{"classes": ["phishing"], "mask": "default", "modifiable": [f"c{i}" for i in range(73)],
                           "increase_only": []}]}
    text = runtime_cli._describe_evasion(info)
    assert "trained   phishing: rows of other classes are written unchanged" in text
    assert "  phishing: 73 of 81 columns modifiable" in text and "any other class" not in text


def test_torch_path_follows_the_same_rule_as_the_runtime(exported, mixed, attack):
    """GanAttack (advgen evade --generator, advgen.adversarial.disguise) and the runtime on the same
    rows and noise: the other classes' rows untouched in both, the trained ones disguised alike."""
    from advgen.adversarial.api import disguise
    from advgen_export.runtime import load

    rows, take = mixed["rows"], mixed["take"]
    model = load(exported["model"])
    z = model.noise(5, 0, len(rows))
    have = model.disguise_with_noise(rows, z)
    attack.notes = []
    want = attack.disguise_with_noise(rows, torch.from_numpy(z))
    assert any("were written unchanged" in n for n in attack.notes)
    said = []
    again = disguise(exported["run"], rows, progress=said.append)
    assert [n for n in said if "written unchanged" in n] == [n for n in attack.notes if "written unchanged" in n]
    differ = np.zeros(len(rows), dtype=bool)
    for col in rows.columns:
        for out in (have, want, again):
            assert (_bits(out[col])[~take] == _bits(rows[col])[~take]).all(), col
        if pd.api.types.is_numeric_dtype(want[col]):
            differ |= ~np.isclose(want[col].to_numpy(np.float64), have[col].to_numpy(np.float64), rtol=1e-4, atol=1e-4)
        else:
            differ |= want[col].to_numpy() != have[col].to_numpy()
    assert differ.sum() <= max(1, 0.01 * take.sum())
    assert sum(int((_bits(again[c])[take] != _bits(rows[c])[take]).sum()) for c in attack.space.names) > take.sum()


def test_evade_with_a_saved_generator_leaves_other_classes_unchanged(exported, mixed):
    from advgen.adversarial.api import evade

    d, rows, take = exported["dir"], mixed["rows"], mixed["take"]
    res = evade(str(d / "train.csv"), str(mixed["path"]), schema_file=str(d / "schema.toml"), detector="decision-tree",
                mask_file=str(d / "mask.toml"), generator=str(exported["run"]), baselines=(), transfer=[], realism=False)
    adv = res.adversarial
    source = adv["source_row"].to_numpy()
    assert (source == np.flatnonzero((rows["label"] != "normal").to_numpy())).all()  # every non-normal row
    picked = rows.iloc[source].reset_index(drop=True)
    other = ~take[source]
    assert other.sum() == 2  # the relabelled rows
    columns = adv.columns.drop("source_row")
    for col in columns:
        assert (_bits(adv[col])[other] == _bits(picked[col])[other]).all(), col
    assert sum(int((_bits(adv[c])[~other] != _bits(picked[c])[~other]).sum()) for c in columns) > (~other).sum()
    assert f"2 rows are not of the {len(mixed['trained'])} classes" in " ".join(res.report["notes"])


def test_rows_without_a_label_column_are_taken_as_the_one_trained_class(exported, attacks, attack, tmp_path, capsys):
    """A generator trained on one class (its manifest says so) takes label-less rows as that class, with a
    note; the torch attack does the same."""
    import onnxruntime as ort

    from advgen_export.evasion import EvasionModel

    manifest = json.loads(manifest_path(exported["model"]).read_text())
    manifest["evasion"]["classes"] = ["neptune"]
    model = EvasionModel.from_session(manifest, ort.InferenceSession(str(exported["model"]), providers=["CPUExecutionProvider"]),
                                      exported["model"])
    rows = attacks.drop(columns=["label"])
    notes = []
    have = model.disguise(rows, seed=1, note=notes.append).drop(columns=["source_row"])
    assert notes == [f"the rows have no label column 'label': all {len(rows):,} were taken as neptune, the class the "
                     "generator was trained on"]
    want = model.disguise(attacks.assign(label="neptune"), seed=1).drop(columns=["source_row", "label"])
    for col in rows.columns:
        assert (_bits(have[col]) == _bits(want[col])).all(), col
    attack.trained_classes, saved = ["neptune"], attack.trained_classes
    try:
        attack.notes = []
        z = torch.from_numpy(model.noise(1, 0, len(rows)))
        torch_rows = attack.disguise_with_noise(rows, z)
        assert attack.notes == notes
        pd.testing.assert_frame_equal(torch_rows, attack.disguise_with_noise(attacks.assign(label="neptune"), z).drop(columns=["label"]))
    finally:
        attack.trained_classes = saved


def test_runtime_works_with_torch_absent(exported, tmp_path):
    """Nor pluggy or scipy: the runtime's install (README, .ci/runtime-without-torch) has neither, and it
    imports modules ``advgen evade`` uses too (advgen_tabular.rules and .quantile, advgen.adversarial.rows
    and .constraints)."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(textwrap.dedent("""
        import sys
        class _NoTorch:
            def find_spec(self, name, path=None, target=None):
                top = name.partition(".")[0]
                if top in ("torch", "pluggy", "scipy"):
                    raise ModuleNotFoundError(f"{top} is blocked in this test", name=top)
                return None
        sys.meta_path.insert(0, _NoTorch())
    """))
    out = tmp_path / "adv.csv"
    script = textwrap.dedent(f"""
        import sys
        try:
            import torch
        except ImportError:
            pass
        else:
            raise SystemExit("the hook failed to block torch")
        from advgen_export import cli
        assert cli.main(["disguise", {str(exported['model'])!r}, "--attacks", {str(exported['attacks'])!r},
                         "-o", {str(out)!r}, "--seed", "3"]) == 0
        assert cli.main(["info", {str(exported['model'])!r}]) == 0
        assert not [m for m in sys.modules if m.partition(".")[0] in ("torch", "pluggy", "scipy")]
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), PYTHONPATH])}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "evasion: disguises attack rows" in proc.stdout
    assert out.read_bytes() == (exported["dir"] / "a.csv").read_bytes()  # as with torch installed


# --- the runtime's steps against the torch attack's ----------------------------------------------


def test_torch_free_encoding_matches_the_attack_space(attack, attacks):
    from scipy.special import ndtr, ndtri

    from advgen_export import evasion_space

    p = np.concatenate([np.linspace(1e-12, 1 - 1e-12, 20001), np.logspace(-300, -1, 500), 1 - np.logspace(-16, -1, 500)])
    assert np.allclose(evasion_space.ndtri(p), ndtri(p), rtol=1e-14, atol=0)
    x = np.linspace(-8, 8, 2001)
    assert np.allclose(evasion_space.ndtr(x), ndtr(x), rtol=1e-13, atol=0)
    space = evasion_space.EvasionSpace(_section(attack), _outputs(attack))
    want = attack.space.encode(attacks)
    have = space.encode(attacks)
    assert have.dtype == np.float32 and have.shape == want.shape
    assert np.abs(have - want).max() <= 1e-6
    assert (have == want).mean() > 0.999


def _section(attack):
    from advgen_export.evasion_export import _PLAN_KEYS

    threat = attack.threat.to_dict()
    return {"columns": [list(c) for c in attack.space.columns], "label": attack.space.label, "category_map": None,
            "encoding": [{k: p[k] for k in _PLAN_KEYS[p["encoding"]]} for p in attack.space.transform.plans],
            "threat": {k: threat[k] for k in ("name", "modifiable", "default", "directions", "default_directions")},
            "rules": attack.space.rules}


def _outputs(attack):
    from advgen_export.evasion_export import _outputs as outputs

    return outputs(attack.space)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_torch_free_repair_matches_the_attack_space_on_wild_rows(attack, attacks, seed):
    """Arbitrary encodings (scaled noise over real rows), random masks and directions, values far out of
    range and unseen categories: the port gives the rows the torch path gives, cell for cell."""
    from advgen_export.evasion_space import EvasionSpace

    space = EvasionSpace(_section(attack), _outputs(attack))
    rng = np.random.default_rng(seed)
    rows = attacks.iloc[rng.choice(len(attacks), 200)].reset_index(drop=True)
    rows["src_bytes"] = rng.integers(0, 2**40, len(rows))
    rows["same_srv_rate"] = rng.uniform(-5, 5, len(rows))
    names = attack.space.names
    mask = rng.random((len(rows), len(names))) < rng.uniform(0.2, 1.0)
    up = rng.random((len(rows), len(names))) < 0.3
    enc = attack.space.encode(rows) + rng.choice([1.0, 5.0, 50.0]) * rng.standard_normal((len(rows), attack.space.dim)).astype(np.float32)
    want = attack.space.realise(enc, rows, mask, up)
    decoded = attack.space.decode(enc)
    have = space.realise({c: decoded[c].to_numpy() for c in names}, rows, mask, up)
    assert list(have.columns) == list(want.columns)
    for c in want.columns:
        assert (_bits(have[c]) == _bits(want[c])).all(), c


def _every_rule_table(n: int = 2000) -> pd.DataFrame:
    """Rows whose fitted rules hold one of each type: combinations, orderings, zero implications,
    fractions, ranges, numeric and text vocabularies."""
    rng = np.random.default_rng(0)
    a = rng.choice(["x", "y", "z"], n)
    b = np.where(a == "x", "p", np.where(a == "y", "q", rng.choice(["p", "q"], n)))
    c = rng.integers(0, 50, n)
    d = np.floor(c * rng.random(n)).astype(np.int64)
    r = np.round(np.floor(rng.random(n) * (c + 1)) / np.maximum(c, 1), 2)
    e = np.where(rng.random(n) < 0.3, 0, rng.integers(1, 20, n))
    f = np.where(e == 0, 0, rng.integers(1, 9, n))
    return pd.DataFrame({"a": a, "b": b, "c": c, "d": d, "r": r, "e": e, "f": f, "g": rng.integers(0, 2, n),
                         "h": np.round(rng.normal(size=n), 3), "label": rng.choice(["atk", "ok"], n)})


@pytest.mark.parametrize("seed", [0, 1])
def test_torch_free_repair_matches_on_every_rule_type(seed):
    from advgen.adversarial.space import AttackSpace
    from advgen.adversarial.threat import ThreatModel
    from advgen_export.evasion_export import _PLAN_KEYS
    from advgen_export.evasion_export import _outputs as outputs
    from advgen_export.evasion_space import EvasionSpace

    df = _every_rule_table()
    cols = [("a", "categorical"), ("b", "categorical"), ("c", "count"), ("d", "count"), ("r", "rate"), ("e", "count"),
            ("f", "count"), ("g", "flag"), ("h", "continuous")]
    space = AttackSpace.fit(df, cols, "label")
    assert {r["type"] for r in space.rules} == {"range", "vocab", "combo", "order", "zero", "fraction"}
    threat = ThreatModel(cols, {}, default=frozenset(c for c, _ in cols)).to_dict()
    section = {"columns": [list(c) for c in cols], "label": "label", "category_map": None,
               "encoding": [{k: p[k] for k in _PLAN_KEYS[p["encoding"]]} for p in space.transform.plans],
               "threat": {k: threat[k] for k in ("name", "modifiable", "default", "directions", "default_directions")},
               "rules": space.rules}
    port = EvasionSpace(section, outputs(space))
    rng = np.random.default_rng(seed)
    rows = df.iloc[rng.choice(len(df), 400)].reset_index(drop=True)
    mask = rng.random((len(rows), len(cols))) < 0.6
    up = rng.random((len(rows), len(cols))) < 0.3
    assert np.abs(port.encode(rows) - space.encode(rows)).max() <= 1e-6
    for scale in (0.5, 3.0, 30.0):
        enc = space.encode(rows) + scale * rng.standard_normal((len(rows), space.dim)).astype(np.float32)
        want = space.realise(enc, rows, mask, up)
        decoded = space.decode(enc)
        have = port.realise({c: decoded[c].to_numpy() for c, _ in cols}, rows, mask, up)
        for c in want.columns:
            assert (_bits(have[c]) == _bits(want[c])).all(), (scale, c)


# --- tampering, widths, bad rows ------------------------------------------------------------------


def _copy(exported, tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(exported["model"].read_bytes())
    manifest = json.loads(manifest_path(exported["model"]).read_text())
    return model, manifest


def _load(model, manifest):
    from advgen_export.runtime import load

    manifest_path(model).write_text(json.dumps(manifest))
    return load(model)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["evasion"]["threat"]["default"].pop(), "edited after export"),
    (lambda m: m["evasion"]["rules"][0].update(max=1e9), "edited after export"),
    (lambda m: m["evasion"]["encoding"][0]["grid"].reverse(), r"evasion\.encoding\[0\]\.grid\[1\] goes down"),
    (lambda m: m["evasion"]["rules"].append({"type": "python", "code": "import os"}), r"evasion\.rules\[\d+\]\.type must be one of range"),
    (lambda m: m["evasion"]["threat"]["modifiable"].update(satan=["no_such_column"]), "must be a feature column"),
    (lambda m: m["evasion"].pop("rules"), r"evasion\.rules is missing"),
    (lambda m: m["evasion"].update(classes=[]), r"evasion\.classes must be a list of 1\.\.65,536 items"),
    (lambda m: m["evasion"].update(classes=["dos", "dos"]), r'evasion\.classes lists "dos" twice'),
    (lambda m: m["evasion"]["classes"].append("normal"), "edited after export"),
    (lambda m: m.update(sample={"kind": "table", "columns": ["duration"]}), "sample.kind must be 'evasion'"),
    (lambda m: m["inputs"][0]["shape"].__setitem__(1, 7), "inputs must be"),
])
def test_tampered_manifest_is_refused(exported, tmp_path, edit, message):
    model, manifest = _copy(exported, tmp_path)
    edit(manifest)
    with pytest.raises(ModelError, match=message):
        _load(model, manifest)


def test_recomputed_digest_is_refused(exported, tmp_path):
    from advgen_export.manifest import manifest_digest

    model, manifest = _copy(exported, tmp_path)
    manifest["evasion"]["threat"]["default"] = [c for c, _ in manifest["evasion"]["columns"]]  # every column modifiable
    manifest["manifest_sha256"] = manifest_digest(manifest)
    with pytest.raises(ModelError, match="does not belong to model"):
        _load(model, manifest)


def test_wrong_input_width_is_refused(exported, attacks):
    from advgen_export.runtime import load

    model = load(exported["model"])
    n = 4
    rows, mask = model.space.encode(attacks.iloc[:n]), np.ones((n, len(model.space.names)), dtype=np.float32)
    z = np.zeros((n, model.z_dim), dtype=np.float32)
    assert set(model.run(rows, mask, z)) == {"numeric", "categorical"}
    with pytest.raises(ModelError, match=rf"rows must have shape \[4, {model.space.dim}\], got \[4, {model.space.dim - 1}\]"):
        model.run(rows[:, 1:], mask, z)
    with pytest.raises(ModelError, match="mask must have shape"):
        model.run(rows, mask[:, :3], z)
    with pytest.raises(ModelError, match="z must have shape"):
        model.run(rows, mask, z[:, :1])
    with pytest.raises(ModelError, match="z must have shape"):
        model.disguise_with_noise(attacks.iloc[:n], z[:3])


def _bad_rows(attacks, how):
    df = attacks.copy()
    if how == "missing":
        return df.drop(columns=["service"]), "lacks 1 column(s) the model was trained on: service"
    if how == "label":
        return df.drop(columns=["label"]), "the label column 'label'"
    if how == "category":
        df.loc[5, "service"] = "no_such_service"
        return df, "column 'service' holds value(s) never seen in training: 'no_such_service' (row 5"
    if how == "flag":
        df.loc[2, "land"] = 7
        return df, "column 'land' holds value(s) never seen in training"
    df["src_bytes"] = df["src_bytes"].astype(object)
    df.loc[3, "src_bytes"] = "lots"
    return df, "numeric column 'src_bytes' holds a missing or non-numeric value in row 3"


@pytest.mark.parametrize("how", ["missing", "label", "category", "flag", "number"])
def test_bad_rows_are_one_line_and_write_nothing(exported, attacks, tmp_path, capsys, how):
    df, message = _bad_rows(attacks, how)
    df.to_csv(tmp_path / "rows.csv", index=False)
    out = tmp_path / "adv.csv"
    out.write_text("earlier file\n")
    code = runtime_cli.main(["disguise", str(exported["model"]), "--attacks", str(tmp_path / "rows.csv"), "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("advgen-runtime: error: "), err
    assert message in err[0]
    assert out.read_text() == "earlier file\n"


def test_a_generator_command_on_an_evasion_model_is_one_line(exported, tmp_path, capsys):
    for argv in (["sample", str(exported["model"]), "-n", "3", "-o", str(tmp_path / "x.csv")],
                 ["serve", str(exported["model"]), "--port", "0"]):
        assert runtime_cli.main(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is an evasion model" in err[0] and "advgen-runtime disguise" in err[0], err
    from advgen_export.runtime import GeneratorModel

    with pytest.raises(ModelError, match="is an evasion model"):
        GeneratorModel(exported["model"])


def test_disguise_replaces_an_existing_file_and_says_so(exported, tmp_path, capsys):
    out = tmp_path / "adv.csv"
    argv = ["disguise", str(exported["model"]), "--attacks", str(exported["attacks"]), "--seed", "3", "-o", str(out)]
    assert runtime_cli.main(argv) == 0
    assert "note: replaced" not in capsys.readouterr().err
    out.write_text("earlier file\n")
    assert runtime_cli.main(argv) == 0
    err = capsys.readouterr().err.splitlines()
    assert f"note: replaced existing file {out}" in err and err[-1].startswith(f"wrote {len(pd.read_csv(out))} rows"), err


def test_disguise_over_its_own_attack_rows_is_refused(exported, tmp_path, capsys):
    rows = tmp_path / "rows.csv"
    rows.write_bytes(Path(exported["attacks"]).read_bytes())
    code = runtime_cli.main(["disguise", str(exported["model"]), "--attacks", str(rows), "-o", str(rows)])
    assert code == 1 and capsys.readouterr().err == (
        f"advgen-runtime: error: -o {rows} is the input --attacks: writing there would replace it; choose another file\n")
    assert rows.read_bytes() == Path(exported["attacks"]).read_bytes()


def test_disguise_to_a_folder_a_pipe_or_a_device_is_one_line(exported, tmp_path, capsys):
    folder = tmp_path / "adv.csv"
    folder.mkdir()
    cases = [(folder, "a folder", stat.S_ISDIR)]
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.csv")
        cases.append((tmp_path / "pipe.csv", "a pipe", stat.S_ISFIFO))
    if os.path.exists("/dev/full"):
        cases.append((Path("/dev/full"), "a device", stat.S_ISCHR))
    for path, what, still in cases:
        code = runtime_cli.main(["disguise", str(exported["model"]), "--attacks", str(exported["attacks"]), "-o", str(path)])
        assert code == 1 and capsys.readouterr().err == f"advgen-runtime: error: -o {path} is {what}, not a regular file\n"
        assert still(os.stat(path).st_mode), what
    assert list(folder.iterdir()) == []
