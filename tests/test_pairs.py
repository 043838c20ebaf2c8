"""Rules a malware table needed and did not get (audit 7, ClaMP and PE headers): a sum of small counts
that are often 0 (``sections = suspicious + other``), a 0/1 flag that a categorical determines
(``packer == 1`` exactly when ``packer_type != "NoPacker"``) and two integer codes that go together
(``Magic`` 267 with an optional header of 224 bytes, 523 with 240); and none on columns that are
independent."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from advgen.domain import run_validators
from advgen_tabular.pairs import MAX_PAIRS, MAX_PER_COLUMN, fit_pairs
from advgen_tabular.rules import rule_check
from advgen_tabular.validators import build_validators, fit_rules

PACKERS = ["UPX", "ASPack", "PECompact", "MPRESS", "Themida", "NsPack"]


def _headers(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """PE-header-like rows: section counts, a packer name and its flag, header codes, and columns that
    relate to nothing (``noise_*``)."""
    rng = np.random.default_rng(seed)
    sus = rng.choice([0, 1, 2, 3, 4], n, p=[0.25, 0.45, 0.15, 0.1, 0.05])
    other = rng.choice([0, 1, 2, 3, 4, 5, 6], n, p=[0.2, 0.1, 0.2, 0.2, 0.15, 0.1, 0.05])
    other = np.where(sus + other == 0, 1, other)
    packed = rng.random(n) < 0.3
    packer_type = np.where(packed, rng.choice(PACKERS, n), "NoPacker")
    pe64 = rng.random(n) < 0.3
    out = {
        "sus_sections": sus,
        "non_sus_sections": other,
        "NumberOfSections": sus + other,
        "packer_type": packer_type,
        "packer": packed.astype(int),
        "Magic": np.where(pe64, 523, 267),
        "SizeOfOptionalHeader": np.where(pe64, 240, 224),
        "Subsystem": rng.choice([2, 3, 9], n, p=[0.6, 0.35, 0.05]),
        "FileAlignment": rng.choice([512, 4096], n, p=[0.8, 0.2]),
        "debug": (rng.random(n) < 0.4).astype(int),
        "noise_a": rng.choice([0, 0, 1, 2, 5], n),
        "noise_b": rng.choice([0, 1, 3], n),
        "noise_c": rng.choice([0, 0, 0, 2, 7, 9], n),
        "noise_d": rng.choice([0, 1, 1, 4, 6], n),
        "lang": rng.choice(["en", "de", "fr", "ru"], n),
    }
    return pd.DataFrame(out)


KINDS = [
    ("sus_sections", "count"), ("non_sus_sections", "count"), ("NumberOfSections", "count"),
    ("packer_type", "categorical"), ("packer", "flag"), ("Magic", "count"), ("SizeOfOptionalHeader", "count"),
    ("Subsystem", "count"), ("FileAlignment", "count"), ("debug", "flag"), ("noise_a", "count"),
    ("noise_b", "count"), ("noise_c", "count"), ("noise_d", "count"), ("lang", "categorical"),
]


def _rules(df: pd.DataFrame, kinds=KINDS, seed: int = 0) -> list[dict]:
    return fit_rules(df, kinds, seed=seed)


def _combos(rules: list[dict]) -> set[frozenset]:
    return {frozenset(r["columns"]) for r in rules if r["type"] == "combo"}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_sum_of_small_counts_that_are_often_zero_is_found(seed):
    """Signature rows where a column is 0 used to leave the column out of every sum: ``sus_sections`` is
    0 in a quarter of the rows, so 8 signature rows held a 0 in most draws and the sum went unfound."""
    df = _headers(seed=seed)
    decimals = {c: 0 for c, k in KINDS if k == "count"}  # whole numbers, as the transform finds them
    derived = [r for r in fit_rules(df, KINDS, decimals=decimals, seed=seed) if r["type"] == "derived"]
    assert [(r["target"], sorted(r["num"]), r["den"], r["k"]) for r in derived] == [
        ("NumberOfSections", ["non_sus_sections", "sus_sections"], [], 1.0)
    ]
    rule = derived[0]
    assert rule["real_pass"] == 1.0 and set(rule) == {"type", "target", "num", "den", "k", "decimals", "real_pass"}
    # a sum of whole numbers is exact: one section more or less is no rounding
    assert rule["decimals"] is None
    bad = df.head(3).copy()
    bad["NumberOfSections"] += [1, -1, 0]
    assert rule_check(rule)(bad).tolist() == [False, False, True]


def test_no_sum_of_independent_small_counts():
    """Small counts with many zeros agree with some sum of two others on a few signature rows by chance:
    the check on every row (and on shuffled rows) keeps none of them."""
    df = _headers().drop(columns=["NumberOfSections"])
    kinds = [k for k in KINDS if k[0] != "NumberOfSections"]
    for seed in range(3):
        assert not [r for r in _rules(df, kinds, seed) if r["type"] == "derived"]


def test_a_flag_that_a_categorical_determines_is_a_rule_and_independent_ones_are_not():
    df = _headers()
    rules = _rules(df)
    combos = _combos(rules)
    assert frozenset({"packer", "packer_type"}) in combos
    assert frozenset({"Magic", "SizeOfOptionalHeader"}) in combos
    # nothing between columns drawn independently
    independent = {"Subsystem", "FileAlignment", "debug", "lang", "noise_a", "noise_b", "noise_c", "noise_d"}
    assert not [c for c in combos if c & independent]
    rule = next(r for r in rules if r["type"] == "combo" and set(r["columns"]) == {"packer", "packer_type"})
    assert rule["real_pass"] == 1.0 and rule_check(rule)(df).all()
    v = build_validators([rule])[0]
    assert v.group == "cross-column" and v.name == f"combo:{'/'.join(rule['columns'])}"


def test_the_pair_rules_fail_rows_that_break_them_and_shuffled_rows():
    df = _headers()
    rules = [r for r in _rules(df) if r["type"] == "combo"]
    validators = build_validators(rules)
    assert run_validators(df, validators, len(df)).pass_rate == 1.0
    bad = df.head(4).copy()
    bad["packer"] = [1 - p for p in bad["packer"]]  # a named packer without the flag, or the flag without one
    bad["Magic"] = np.where(bad["SizeOfOptionalHeader"] == 224, 523, 267)
    report = run_validators(bad, validators, 4)
    packer, magic = "combo:packer_type/packer", "combo:Magic/SizeOfOptionalHeader"
    assert report.per_rule[packer] == 0 and report.per_rule[magic] == 0
    rng = np.random.default_rng(0)
    shuffled = df.apply(lambda s: s.to_numpy()[rng.permutation(len(s))])
    rates = run_validators(shuffled, validators, len(df)).rule_rates()
    assert rates[packer] < 0.8 and rates[magic] < 0.8


def test_only_combinations_independence_would_show_are_forbidden():
    """A rare value whose partner never showed up by chance is no evidence: a held-out row with it
    passes; a combination independent columns would fill many times over and real rows never do fails."""
    rng = np.random.default_rng(1)
    n = 4000
    kind = rng.choice(["a", "b", "c"], n, p=[0.5, 0.45, 0.05])
    code = np.where(kind == "a", rng.choice([1, 2], n), rng.choice([3, 4], n))
    code[:3] = 9  # a rare code, seen only with "a"
    kind[:3] = "a"
    df = pd.DataFrame({"kind": kind, "code": code})
    (rule,) = fit_pairs(df, [("kind", "categorical"), ("code", "count")], max_shuffled=0.98)
    check = rule_check(rule)
    rows = pd.DataFrame({"kind": ["a", "b", "c", "b", "a", "b"], "code": [1, 3, 4, 9, 3, 1]})
    # b with the rare 9: never seen, nothing says impossible; a with 3, b with 1: forbidden
    assert check(rows).tolist() == [True, True, True, True, False, False]
    assert not check(pd.DataFrame({"kind": ["a"], "code": [5]})).any()  # a code never seen


def test_a_code_column_with_an_open_tail_takes_no_part():
    """A column whose values are many rare ones (fresh rows would bring new ones) is left to its range."""
    rng = np.random.default_rng(2)
    n = 4000
    flag = rng.integers(0, 2, n)
    version = np.where(flag == 1, rng.choice([5, 6], n), rng.choice([4, 10], n))
    tail = rng.choice(n, 8, replace=False)
    version[tail] = 20 + np.arange(8)  # 8 values held by one row each: 0.2% of the rows
    df = pd.DataFrame({"flag": flag, "version": version})
    assert fit_pairs(df, [("flag", "flag"), ("version", "count")], max_shuffled=0.98) == []
    version[tail] = 5
    df = pd.DataFrame({"flag": flag, "version": version})
    assert len(fit_pairs(df, [("flag", "flag"), ("version", "count")], max_shuffled=0.98)) == 1


def test_pair_rules_are_bounded():
    """Twelve copies of one code: 66 dependent pairs, at most MAX_PER_COLUMN rules per column."""
    rng = np.random.default_rng(3)
    n = 2000
    base = rng.integers(0, 4, n)
    df = pd.DataFrame({f"c{i}": base * (i + 1) for i in range(12)})
    kinds = [(c, "count") for c in df.columns]
    rules = fit_pairs(df, kinds, max_shuffled=0.98)
    uses = pd.Series([c for r in rules for c in r["columns"]]).value_counts()
    assert 0 < len(rules) <= MAX_PAIRS and uses.max() <= MAX_PER_COLUMN


def test_pairs_of_flags_and_of_joint_categoricals_are_left_to_other_rules():
    rng = np.random.default_rng(4)
    n = 3000
    a = rng.integers(0, 2, n)
    proto = rng.choice(["tcp", "udp"], n)
    service = np.where(proto == "tcp", rng.choice(["http", "ftp"], n), rng.choice(["dns", "ntp"], n))
    df = pd.DataFrame({"a": a, "b": 1 - a, "proto": proto, "service": service})
    kinds = [("a", "flag"), ("b", "flag"), ("proto", "categorical"), ("service", "categorical")]
    rules = fit_rules(df, kinds)
    combos = [r["columns"] for r in rules if r["type"] == "combo"]
    assert combos == [["proto", "service"]]  # the joint rule; no pair rule repeats it, none on two flags
    assert fit_pairs(df, kinds, max_shuffled=0.98, categorical_pairs=True)[0]["columns"] == ["proto", "service"]
