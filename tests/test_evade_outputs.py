"""What `advgen evade` writes: repaired values real rows could have, and every column of the attack rows.

- a zero implication (``links_ext != 0 => ratio_ext != 0``) met by making a real-valued column non-zero
  gives it the smallest value above 0 that real rows hold, not a step of 1e-6 (a phishing run wrote
  ``ratio_extHyperlinks = 1e-06`` into 590 of 1,725 rows, the real minimum being 0.00064), in the torch
  path and in the exported runtime alike; the validators reject a value between 0 and that minimum;
  rules saved before the minimum was recorded repair without inventing one, and manifests without it load;
- ``adversarial.csv`` (and ``--generator``, and harden's ``hardening_rows.csv``) carry the columns the
  loader dropped as constant, each attack row's own value, in the input's column order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

TINY = dict(rounds=2, query_batch=100, d_steps=5, g_steps=5, batch=128, hidden=32, normal_queries=200,
            attack_queries=100, final_tries=1, substitutes=1, select=1)
COLS = [("links", "count"), ("links_ext", "count"), ("ratio_ext", "continuous"), ("noise", "continuous")]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def _pages(n: int, seed: int) -> pd.DataFrame:
    """Pages with ``links_ext`` external hyperlinks and ``ratio_ext`` their share of all links (full
    float precision: no fixed decimals; the total is not a column, ``links`` only roughly follows it), so
    ``ratio_ext`` is 0 exactly when ``links_ext`` is."""
    rng = np.random.default_rng(seed)
    total = rng.integers(1, 1500, n)
    ext = np.where(rng.random(n) < 0.3, 0, rng.integers(1, 400, n) % total + 1)
    ext = np.minimum(ext, total)
    links = total // 3 + rng.integers(0, 5, n)
    return pd.DataFrame({"links": links, "links_ext": ext, "ratio_ext": ext / total,
                         "noise": rng.normal(size=n).round(4), "label": rng.choice(["phishing", "legitimate"], n)})


def _broken_rows(space, df):
    """Rows with ``links_ext`` (functional) non-zero and ``ratio_ext`` (modifiable) set to 0: the zero
    rule must make ``ratio_ext`` non-zero again."""
    rows = df[df["links_ext"] > 0].head(200).reset_index(drop=True)
    adv = rows.copy()
    adv["ratio_ext"] = 0.0
    mask = np.zeros((len(rows), len(space.names)), dtype=bool)
    mask[:, space.names.index("ratio_ext")] = True
    return rows, adv, mask


def _section(space):
    from advgen.adversarial.threat import ThreatModel
    from advgen_export.evasion_export import _PLAN_KEYS

    threat = ThreatModel(COLS, {}, default=frozenset(["ratio_ext", "noise"])).to_dict()
    return {"columns": [list(c) for c in COLS], "label": "label", "category_map": None,
            "encoding": [{k: p[k] for k in _PLAN_KEYS[p["encoding"]]} for p in space.transform.plans],
            "threat": {k: threat[k] for k in ("name", "modifiable", "default", "directions", "default_directions")},
            "rules": space.rules}


def test_zero_rule_repair_writes_the_smallest_real_nonzero_value_in_torch_and_runtime():
    from advgen.adversarial.space import AttackSpace
    from advgen_export.evasion_export import _outputs
    from advgen_export.evasion_space import EvasionSpace

    df = _pages(3000, 0)
    space = AttackSpace.fit(df, COLS, "label")
    assert any(r["type"] == "zero" and (r["a"], r["b"]) == ("ratio_ext", "links_ext") for r in space.rules)
    smallest = float(df["ratio_ext"][df["ratio_ext"] > 0].min())
    rows, adv, mask = _broken_rows(space, df)
    fixed = space.repair(adv, rows, mask)
    assert (fixed["ratio_ext"] > 0).all()
    assert np.allclose(fixed["ratio_ext"], smallest)  # not 1e-6: a value real pages have
    assert space.validity(fixed).all()
    # the exported runtime repairs with the manifest's rules: the same cells
    port = EvasionSpace(_section(space), _outputs(space))
    assert np.array_equal(port.repair(adv, rows, mask)["ratio_ext"].to_numpy(), fixed["ratio_ext"].to_numpy())
    # the validators reject what no real row holds (between 0 and the smallest value above 0), and real rows pass
    assert space.validity(df).all()
    tiny = rows.assign(ratio_ext=1e-6)
    assert not space.validity(tiny).any()
    # a generated value in that gap is moved to the nearer of 0 and the smallest real value, then repaired
    again = space.repair(tiny, rows, mask)
    assert space.validity(again).all() and (again["ratio_ext"] >= smallest).all()


def test_rules_saved_without_the_minimum_invent_no_value():
    """An old run's (or manifest's) rules: no smallest value recorded, no fixed decimals; the rule is met
    by the attack row's own value rather than by a made-up 1e-6."""
    from advgen.adversarial.constraints import Repair
    from advgen.adversarial.space import AttackSpace

    df = _pages(3000, 0)
    space = AttackSpace.fit(df, COLS, "label")
    old = [{k: v for k, v in r.items() if k != "min_positive"} for r in space.rules]
    rows, adv, mask = _broken_rows(space, df)
    fixed = Repair(old, COLS)(adv, rows, mask)
    assert np.array_equal(fixed["ratio_ext"].to_numpy(), rows["ratio_ext"].to_numpy())


def test_manifest_rules_with_and_without_the_minimum_load_and_bad_ones_are_refused():
    from advgen.adversarial.space import AttackSpace
    from advgen_export.evasion_export import _outputs
    from advgen_export.evasion_schema import check_evasion
    from advgen_export.manifest import ModelError

    space = AttackSpace.fit(_pages(1000, 1), COLS, "label")
    section, outputs = _section(space), {o["name"]: o for o in _outputs(space)}
    assert any("min_positive" in r for r in section["rules"])
    check_evasion(section, outputs)
    old = dict(section, rules=[{k: v for k, v in r.items() if k != "min_positive"} for r in section["rules"]])
    check_evasion(old, outputs)  # exported before the field existed
    j = next(i for i, r in enumerate(section["rules"]) if "min_positive" in r)
    for bad in (0.0, -1.0, float("inf"), "0.1", True):
        rules = [dict(r) for r in section["rules"]]
        rules[j]["min_positive"] = bad
        with pytest.raises(ModelError, match=rf"evasion\.rules\[{j}\]\.min_positive"):
            check_evasion(dict(section, rules=rules), outputs)


# --- every column of the attack rows ---------------------------------------------------------------


def _csvs(d, n_train: int = 600, n_test: int = 300):
    """Training and attack files with columns constant in training between the features: ``zero`` (0
    in training; the attack file has values of its own), ``tag`` (text) and ``one`` (1.5)."""
    def table(n, seed):
        rng = np.random.default_rng(seed)
        attack = rng.random(n) < 0.5
        f = np.where(attack, rng.integers(40, 100, n), rng.integers(0, 45, n))
        m = np.where(attack, rng.integers(60, 100, n), rng.integers(0, 40, n))
        r = np.round(np.where(attack, rng.uniform(0.5, 1, n), rng.uniform(0, 0.5, n)), 2)
        return pd.DataFrame({"f": f, "zero": 0, "m": m, "tag": "x", "r": r, "one": 1.5,
                             "label": np.where(attack, "attack", "normal")})

    train, test = table(n_train, 0), table(n_test, 1)
    test["zero"] = np.arange(n_test) % 3  # the attack rows' own values of a column constant in training
    train.to_csv(d / "train.csv", index=False)
    test.to_csv(d / "test.csv", index=False)
    return test


def test_adversarial_rows_carry_the_constant_columns_in_the_input_order(tmp_path):
    from advgen.adversarial.api import evade

    test = _csvs(tmp_path)
    kw = dict(label="label", detector="decision-tree", frozen="f", query_budget=1_000, config=TINY, baselines=(),
              transfer=[], realism=False)
    res = evade(str(tmp_path / "train.csv"), str(tmp_path / "test.csv"), out=tmp_path / "run", **kw)
    written = pd.read_csv(tmp_path / "run" / "adversarial.csv")
    assert list(written.columns) == [*test.columns, "source_row"]
    assert list(res.adversarial.columns) == list(written.columns)
    src = written["source_row"].to_numpy()
    for c in ("zero", "tag", "one", "f", "label"):  # copied from each attack row, unchanged
        assert (written[c].to_numpy() == test[c].to_numpy()[src]).all(), c
    # a saved generator (advgen evade --generator) writes the same columns
    again = evade(str(tmp_path / "train.csv"), str(tmp_path / "test.csv"), generator=str(tmp_path / "run"),
                  out=tmp_path / "gen", **kw)
    assert list(pd.read_csv(tmp_path / "gen" / "adversarial.csv").columns) == [*test.columns, "source_row"]
    assert (again.adversarial["zero"].to_numpy() == test["zero"].to_numpy()[again.adversarial["source_row"]]).all()
    # without --attacks, the held-out rows of the training file: its constants, in its order
    held = evade(str(tmp_path / "train.csv"), None, out=tmp_path / "held", **kw)
    assert list(held.adversarial.columns) == [*test.columns, "source_row"]
    assert (held.adversarial["zero"] == 0).all() and (held.adversarial["tag"] == "x").all()


def test_hardening_rows_carry_the_constant_columns(tmp_path):
    from advgen.adversarial.api import harden

    test = _csvs(tmp_path)
    harden(str(tmp_path / "train.csv"), str(tmp_path / "test.csv"), label="label", detector="decision-tree",
           frozen="f", rounds=1, cover=0, query_budget=1_000, config=TINY, out=tmp_path / "run")
    rows = pd.read_csv(tmp_path / "run" / "hardening_rows.csv")
    assert list(rows.columns) == list(test.columns)
    assert (rows["zero"] == 0).all() and (rows["tag"] == "x").all() and (rows["one"] == 1.5).all()
