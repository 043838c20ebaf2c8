"""Rules a generated row must obey, fitted from the training table and kept as JSON in the spec.

Two families:

* ``schema``: each column's type and range for its kind (counts are non-negative integers, rates
  lie in [0, 1], every numeric within the training range) and each categorical's vocabulary;
* ``cross-column``: dependencies that hold in (almost) every real row, found from the data rather
  than written for one dataset:
  - combinations of the categorical columns seen in real rows, alone and together with the label
    (NSL-KDD: protocol/service/flag, and protocol/service/flag/attack), when there are few enough
    of them for "seen" to mean something;
  - pairs of discrete columns (flags, categoricals, integer codes of at most 16 values) whose real
    rows never show combinations that independent columns would show (``packer`` 0 with a named
    packer; found by :mod:`advgen_tabular.pairs`);
  - orderings ``a <= b`` between rates, or between counts and real-valued columns (``srv_count <= count``,
    ``shortest_word <= avg_word``);
  - zero implications ``a == 0 => b == 0`` (a rate that is 0 whenever its count is);
  - rates that are fractions of a count (``rate * count`` within rounding of an integer);
  - columns computed from others, ``a = k * N / D`` (a mean, a rate, a copy, a sum; found by
    :mod:`advgen_tabular.relations`), which the decoder also computes;
  - integer columns whose values are multiples of a step or of another column (``SizeOfImage`` of
    ``SectionAlignment``; found by :mod:`advgen_tabular.multiples`), which the decoder also keeps.

A candidate rule is kept only when the real rows pass it (at least ``min_pass``, 99.9%) *and* it
says something about dependence: rows whose columns are shuffled independently (same marginals)
must fail it clearly more often (pass at most ``max_shuffled``). Without that test, hundreds of
vacuous rules (``urgent <= count`` where ``urgent`` is almost always 0) would dilute the report.
Every rule records the real data's own pass rate, shown beside the synthetic one. What each rule type
checks is :mod:`advgen_tabular.rules`, which the repair of disguised rows reads as well.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd

from advgen.domain import ValidationReport, Validator
from advgen.errors import InvalidDataError
from advgen_tabular.multiples import fit_multiples
from advgen_tabular.pairs import fit_pairs
from advgen_tabular.relations import fit_derived
from advgen_tabular.rules import fraction_ok, numbers, row_keys, rule_check

NUMERIC_KINDS = ("continuous", "count", "rate")
# orderings are looked for within a family of kinds that share units: a count and a real-valued column
# can be compared (shortest word <= average word <= longest word), a rate in [0, 1] only with rates
ORDER_FAMILIES = (("count", "continuous"), ("rate",))
# an ordering is kept only where a comes within this share of b often enough (see _binding)
MIN_BINDING = 0.05
MIN_PASS = 0.999
MAX_SHUFFLED = 0.98
# a categorical combination rule is kept only while distinct combinations stay below this share of
# the rows (otherwise "seen in training" would just memorise the table)
MAX_COMBO_SHARE = 0.05


def _describe(rule: dict[str, Any]) -> tuple[str, str, str]:
    """(name, description, group) of a rule."""
    t = rule["type"]
    if t == "range":
        what = "integer" if rule.get("integer") else "number"
        if rule.get("kind") == "rate":
            what = "rate"
        floor = f", 0 or at least {rule['min_positive']:g}" if rule.get("min_positive") is not None else ""
        return (
            f"{rule['column']}:range",
            f"{rule['column']} is a {what} in [{rule['min']:g}, {rule['max']:g}]{floor}",
            "schema",
        )
    if t == "vocab":
        n = len(rule["values"])
        return f"{rule['column']}:vocabulary", f"{rule['column']} is one of the {n} values seen in training", "schema"
    if t == "combo":
        cols = "/".join(rule["columns"])
        n = len(rule["allowed"])
        # a pair rule (advgen_tabular.pairs) also allows combinations of seen values that no evidence rules out
        return f"combo:{cols}", f"({cols}) is one of the {n} combinations the training rows allow", "cross-column"
    if t == "order":
        return f"order:{rule['a']}<={rule['b']}", f"{rule['a']} <= {rule['b']}", "cross-column"
    if t == "zero":
        return f"zero:{rule['a']}=>{rule['b']}", f"{rule['b']} is 0 whenever {rule['a']} is 0", "cross-column"
    if t == "fraction":
        return (
            f"fraction:{rule['rate']}/{rule['count']}",
            f"{rule['rate']} is a fraction k/{rule['count']} (to {rule['decimals']} decimals)",
            "cross-column",
        )
    if t == "derived":
        return f"derived:{rule['target']}", f"{rule['target']} = {derived_formula(rule)}", "cross-column"
    if t == "multiple":
        if rule.get("of") is not None:
            return f"multiple:{rule['a']}%{rule['of']}", f"{rule['a']} is a multiple of {rule['of']}", "cross-column"
        return f"multiple:{rule['a']}%{rule['step']:g}", f"{rule['a']} is a multiple of {rule['step']:g}", "schema"
    raise InvalidDataError(f"unknown rule type {t!r} in the run's spec")


def derived_formula(rule: dict[str, Any]) -> str:
    """``k * (b + c) / d`` as people write it."""

    def term(cols: list[str]) -> str:
        return f"({' + '.join(cols)})" if len(cols) > 1 else cols[0]

    out = term(rule["num"])
    if rule["k"] != 1:
        out = f"{rule['k']:g} * {out}"
    if rule["den"]:
        out = f"{out} / {term(rule['den'])}"
    return out


def build_validators(rules: list[dict[str, Any]]) -> list[Validator]:
    out = []
    for rule in rules:
        name, description, group = _describe(rule)
        out.append(Validator(name=name, description=description, check=rule_check(rule), group=group))
    return out


# --- fitting -------------------------------------------------------------------------------------


def fit_rules(
    df: pd.DataFrame,
    columns: list[tuple[str, str]],
    label: str | None = None,
    *,
    decimals: dict[str, int | None] | None = None,
    min_pass: float = MIN_PASS,
    max_shuffled: float = MAX_SHUFFLED,
    seed: int = 0,
    min_positive: bool = False,
) -> list[dict[str, Any]]:
    """Fit schema and cross-column rules on the real training rows.

    ``columns`` are the feature columns as ``(name, kind)``; ``label`` the label column, if any;
    ``decimals`` each numeric column's resolution (from the transform), used for the fraction rules.
    ``min_positive``: each non-integer numeric column's range rule also records the smallest value
    above 0 the rows hold (``min_positive``), and a value between 0 and it breaks the rule
    (``advgen evade`` fits its rules so: a repaired ratio of 1e-6 where real pages start at 6e-4 is no
    real row). The rows fitted on pass it by construction.
    """
    n = len(df)
    if n == 0:
        raise InvalidDataError("cannot fit validators on an empty table")
    decimals = decimals or {}
    rng = np.random.default_rng(seed)
    kinds = dict(columns)
    rules: list[dict[str, Any]] = []

    # schema -------------------------------------------------------------------------------------
    for name, kind in columns:
        if kind in NUMERIC_KINDS:
            v = numbers(df, name)
            rule: dict[str, Any] = {"type": "range", "column": name, "kind": kind, "min": float(v.min()),
                                    "max": float(v.max())}
            if kind == "count":
                if rule["min"] >= 0:
                    rule["min"] = 0.0  # counts are non-negative, whatever the smallest one seen
                rule["integer"] = bool(np.all(v == np.round(v)))
            if kind == "rate" and rule["min"] >= 0 and rule["max"] <= 1:
                rule["min"], rule["max"] = 0.0, 1.0
            dec = decimals.get(name)
            if dec is not None and not rule.get("integer"):
                rule["decimals"] = int(dec)
            if min_positive and not rule.get("integer"):
                positive = v[np.isfinite(v) & (v > 0)]
                if positive.size:
                    rule["min_positive"] = float(positive.min())
            rules.append(rule)
        elif kind == "flag":
            vals = sorted({float(x) for x in numbers(df, name)})
            rules.append({"type": "vocab", "column": name, "numeric": True, "values": vals})
        else:
            rules.append({"type": "vocab", "column": name, "values": sorted(df[name].astype(str).unique().tolist())})
    if label is not None and label in df.columns:
        rules.append({"type": "vocab", "column": label, "values": sorted(df[label].astype(str).unique().tolist())})

    # cross-column -------------------------------------------------------------------------------
    shuffled = df.copy()
    for c in shuffled.columns:
        shuffled[c] = shuffled[c].to_numpy()[rng.permutation(n)]
    candidates: list[dict[str, Any]] = []

    cats = [c for c, k in columns if k == "categorical"]
    if len(cats) >= 2:
        candidates.append({"type": "combo", "columns": cats})
    if cats and label is not None and label in df.columns:
        candidates.append({"type": "combo", "columns": cats + [label]})
    for cand in [c for c in candidates if c["type"] == "combo"]:
        keys = row_keys(df, cand["columns"])
        allowed = sorted(set(keys.tolist()))
        cand["allowed"] = allowed
        if len(allowed) > max(50, MAX_COMBO_SHARE * n):
            cand["skip"] = True

    numeric = [c for c, k in columns if k in NUMERIC_KINDS]
    values = {c: numbers(df, c) for c in numeric + [c for c, k in columns if k == "flag"]}
    for family in ORDER_FAMILIES:
        same = [c for c in numeric if kinds[c] in family]
        for a, b in itertools.permutations(same, 2):
            if np.mean(values[a] <= values[b] + 1e-9) >= min_pass and _binding(values[a], values[b]):
                candidates.append({"type": "order", "a": a, "b": b})
    zero_cols = [c for c in values if 0.01 <= np.mean(values[c] == 0) <= 0.99]
    for a, b in itertools.permutations(zero_cols, 2):
        if np.mean((values[a] != 0) | (values[b] == 0)) >= min_pass:
            candidates.append({"type": "zero", "a": a, "b": b})
    rates = [c for c in numeric if kinds[c] == "rate" and decimals.get(c) is not None]
    counts = [c for c in numeric if kinds[c] == "count" and values[c].min() >= 0]
    for r in rates:
        for c in counts:
            if np.mean(fraction_ok(values[r], values[c], int(decimals[r]))) >= min_pass:
                candidates.append({"type": "fraction", "rate": r, "count": c, "decimals": int(decimals[r])})

    best_fraction: dict[str, tuple[float, dict[str, Any]]] = {}
    for cand in candidates:
        if cand.pop("skip", False):
            continue
        check = rule_check(cand)
        real = float(np.mean(check(df)))
        shuffled_pass = float(np.mean(check(shuffled)))
        if real < min_pass or shuffled_pass > max_shuffled:
            continue
        cand["real_pass"] = real
        if cand["type"] == "fraction":
            # a rate is a fraction of one count: keep the count that explains it best (as the
            # transform's decoder does)
            held = best_fraction.get(cand["rate"])
            if held is None or shuffled_pass < held[0]:
                best_fraction[cand["rate"]] = (shuffled_pass, cand)
            continue
        rules.append(cand)
    rules += [cand for _, cand in best_fraction.values()]
    joint = any(r["type"] == "combo" and r["columns"] == cats for r in rules)
    rules += fit_pairs(df, columns, max_shuffled=max_shuffled, categorical_pairs=not joint)
    rules += fit_derived(
        df, columns, decimals, min_pass=min_pass, max_shuffled=max_shuffled, shuffled=shuffled, seed=seed
    )
    rules += fit_multiples(
        {c: values[c] for c in numeric}, {c: numbers(shuffled, c) for c in numeric}, kinds,
        min_pass=min_pass, max_shuffled=max_shuffled,
    )
    for rule in rules:
        if "real_pass" not in rule:
            rule["real_pass"] = float(np.mean(rule_check(rule)(df)))
    return rules


def _binding(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ``a <= b`` says more than the scales of the two columns: among rows where both are
    positive, a reaches at least ``MIN_BINDING`` of b in a tenth of them. ``trans_depth <= dload``
    (a count of 0-10 below a rate of 1e5 bytes/s) holds because of units; what it says beyond that (b
    is 0, so a is) the zero rules say."""
    both = (a > 0) & (b > 0)
    if both.sum() < max(10, 0.01 * len(a)):
        return True  # the rule is about zeros and signs: nothing to compare
    return bool(np.quantile(a[both] / b[both], 0.9) >= MIN_BINDING)


def format_validation(
    synthetic: ValidationReport, real: ValidationReport | None = None, validators: list[Validator] | None = None
) -> str:
    """A per-group and per-rule table of pass rates, the real data's own rate beside the synthetic one.

    A rule the real rows themselves fail now and then (a held-out file, say) reads differently from
    one only the generator breaks; printing both side by side keeps that visible. ``validators``
    (the list the reports were made with) gives each rule its group.
    """
    group_of = {v.name: v.group for v in validators or []}
    groups: dict[str, list[str]] = {}
    for name in synthetic.per_rule:
        groups.setdefault(group_of.get(name, "rules"), []).append(name)
    s_rules = synthetic.rule_rates()
    r_rules = real.rule_rates() if real is not None else {}
    r_groups = real.group_rates() if real is not None else {}
    s_groups = synthetic.group_rates()
    width = max([len(n) + 2 for n in synthetic.per_rule] + [20])

    def line(name: str, s: float, r: float | None) -> str:
        return f"{name:<{width}}  {s:9.4f}  " + (f"{r:9.4f}" if r is not None else f"{'-':>9}")

    out = [f"{'rule':<{width}}  {'synthetic':>9}  {'real':>9}"]
    out.append(line("all rules", synthetic.pass_rate, real.pass_rate if real is not None else None))
    for group in sorted(groups):
        if group in s_groups:
            out.append(line(f"[{group}]", s_groups[group], r_groups.get(group)))
        for name in sorted(groups[group], key=lambda n: s_rules[n]):
            out.append(line(f"  {name}", s_rules[name], r_rules.get(name)))
    return "\n".join(out)
