"""The ``evasion`` section of a manifest: what the runtime needs to disguise attack rows, checked field by field.

An exported evasion model (``advgen export`` on an ``advgen evade`` run) takes encoded attack rows, their
masks and noise; the manifest carries what turns a CSV row into those inputs and the graph's outputs
back into a valid disguised row::

    "evasion": {
      "columns":  [["duration", "count"], ["protocol_type", "categorical"], ...],   # feature columns, table order
      "label": "label",                       # the column that gives each row's attack class
      "category_map": {"neptune": "dos", ...} or null,
      "encoding": [{"name", "kind", "encoding": "quantile", "min", "max", "decimals", "grid"},
                   {"name", "kind", "encoding": "onehot", "vocab"}, ...],        # one per column
      "threat": {"name", "modifiable": {class: [columns]}, "default": [columns] or null,
                 "directions": {class: {column: "up"}}, "default_directions": {column: "up"}},
      "rules": [{"type": "range" | "vocab" | "combo" | "order" | "zero" | "fraction" | "derived" | "multiple", ...}, ...],
      "classes": ["dos"]                      # optional: the attack classes the generator was trained on;
    }                                         # rows of other classes are written unchanged

Like the rest of the manifest, every field is checked against this schema with bounds before anything
is used (:func:`check_evasion`), and the whole manifest, this section included, is bound to the model
by its digest. Nothing in it is code: the rules are data that :class:`advgen.adversarial.constraints.Repair`
reads.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from advgen_export.manifest import (
    MAX_CLASSES,
    MAX_COLUMNS,
    MAX_DECIMALS,
    MAX_DIM,
    MAX_NAME,
    MAX_VOCABULARY,
    ModelError,
    _array,
    _bad,
    _integer,
    _key,
    _mapping,
    _number,
    _object,
    _one_of,
    _show,
    _text,
    _unique,
)

KINDS = ("continuous", "count", "rate", "flag", "categorical")
NUMERIC_KINDS = ("continuous", "count", "rate")
MAX_GRID = 1 << 20  # quantile knots of one column (advgen fits 2,049)
MAX_RULES = 100_000
_RULE_KEYS = {
    # min_positive: absent from manifests exported before range rules recorded it
    "range": (("type", "column", "kind", "min", "max"), ("integer", "decimals", "min_positive", "real_pass")),
    "vocab": (("type", "column", "values"), ("numeric", "real_pass")),
    "combo": (("type", "columns", "allowed"), ("real_pass",)),
    "order": (("type", "a", "b"), ("real_pass",)),
    "zero": (("type", "a", "b"), ("real_pass",)),
    "fraction": (("type", "rate", "count", "decimals"), ("real_pass",)),
    "derived": (("type", "target", "num", "den", "k", "decimals"), ("real_pass",)),
    "multiple": (("type", "a"), ("of", "step", "real_pass")),  # exactly one of of and step
}
_SECTION_KEYS = ("columns", "label", "category_map", "encoding", "threat", "rules")
_OPTIONAL_KEYS = ("classes",)  # absent in exports made before runs recorded their classes


def check_evasion(value: Any, outputs: Mapping[str, Mapping[str, Any]]) -> tuple[int, int]:
    """Check the ``evasion`` section against the schema; return (encoded width, feature columns), the
    widths of the graph's ``rows`` and ``mask`` inputs. ``outputs`` are the manifest's outputs by name,
    already checked: together they must decode every feature column once."""
    s = _object(value, "evasion", _SECTION_KEYS, _OPTIONAL_KEYS)
    columns = _columns(s["columns"])
    names = [c for c, _ in columns]
    label = _text(s["label"], "evasion.label", max_len=MAX_NAME, name=True)
    if label in names:
        raise ModelError(f"evasion.label {_show(label)} is also a feature column")
    if s["category_map"] is not None:
        for key, cls in _mapping(s["category_map"], "evasion.category_map", MAX_VOCABULARY).items():
            where = _key("evasion.category_map", key)
            _text(key, where, empty=True)
            _text(cls, where, max_len=MAX_NAME)
    if "classes" in s:
        classes = _array(s["classes"], "evasion.classes", 1, MAX_CLASSES)
        for i, cls in enumerate(classes):
            _text(cls, f"evasion.classes[{i}]", max_len=MAX_NAME)
        _unique(classes, "evasion.classes")
    dim = _encoding(s["encoding"], columns)
    _threat(s["threat"], set(names))
    _rules(s["rules"], set(names), label)
    produced = [c for o in outputs.values() for c in o.get("columns") or []]
    if sorted(produced) != sorted(names):
        stray = sorted(set(produced) - set(names))[:3]
        lacking = sorted(set(names) - set(produced))[:3]
        raise ModelError(
            "the outputs must decode exactly the feature columns of evasion.columns"
            + (f"; they also give {_show(stray)}" if stray else "") + (f"; they lack {_show(lacking)}" if lacking else "")
        )
    return dim, len(names)


def _columns(value: Any) -> list[tuple[str, str]]:
    out = []
    for j, pair in enumerate(_array(value, "evasion.columns", 1, MAX_COLUMNS)):
        where = f"evasion.columns[{j}]"
        name, kind = _array(pair, where, 2, 2, what="[name, kind]")
        out.append((_text(name, f"{where}[0]", max_len=MAX_NAME, name=True), _one_of(kind, f"{where}[1]", KINDS)))
    _unique([c for c, _ in out], "evasion.columns")
    return out


def _encoding(value: Any, columns: list[tuple[str, str]]) -> int:
    """Each column's encoding, in column order; returns the encoded width."""
    plans = _array(value, "evasion.encoding", len(columns), len(columns), what=f"one plan per column ({len(columns)})")
    dim = 0
    for j, ((name, kind), raw) in enumerate(zip(columns, plans)):
        where = f"evasion.encoding[{j}]"
        if kind in NUMERIC_KINDS:
            p = _object(raw, where, ("name", "kind", "encoding", "min", "max", "decimals", "grid"))
            _one_of(p["encoding"], f"{where}.encoding", ("quantile",))
            lo = _number(p["min"], f"{where}.min", -math.inf, math.inf)
            hi = _number(p["max"], f"{where}.max", -math.inf, math.inf)
            if lo > hi:
                raise ModelError(f"{where} has min {lo:g} > max {hi:g}")
            if p["decimals"] is not None:
                _integer(p["decimals"], f"{where}.decimals", 0, MAX_DECIMALS)
            _grid(p["grid"], f"{where}.grid")
            width = 1
        else:
            p = _object(raw, where, ("name", "kind", "encoding", "vocab"))
            _one_of(p["encoding"], f"{where}.encoding", ("onehot",))
            vocab = _array(p["vocab"], f"{where}.vocab", 1, MAX_VOCABULARY)
            for i, v in enumerate(vocab):
                if kind == "flag":
                    _number(v, f"{where}.vocab[{i}]", -math.inf, math.inf)
                else:
                    _text(v, f"{where}.vocab[{i}]", empty=True)
            _unique([float(v) if kind == "flag" else v for v in vocab], f"{where}.vocab")
            width = len(vocab)
        if p["name"] != name or p["kind"] != kind:
            raise ModelError(f"{where} describes {_show(p['name'])} ({_show(p['kind'])}), but evasion.columns[{j}] is {name!r} ({kind})")
        dim += width
    if dim > MAX_DIM:
        raise ModelError(f"evasion.encoding is {dim:,} values wide; at most {MAX_DIM:,} are allowed")
    return dim


def _grid(value: Any, where: str) -> None:
    """A run-length encoded quantile grid: ``[[value, repeat], ...]``, non-decreasing, 2.. knots."""
    runs = _array(value, where, 1, MAX_GRID)
    knots, last = 0, -math.inf
    for i, run in enumerate(runs):
        v, n = _array(run, f"{where}[{i}]", 2, 2, what="[value, repeat]")
        v = _number(v, f"{where}[{i}][0]", -math.inf, math.inf)
        knots += _integer(n, f"{where}[{i}][1]", 1, MAX_GRID)
        if v < last:
            raise ModelError(f"{where}[{i}] goes down ({v:g} after {last:g}); a quantile grid never does")
        last = v
    if not 2 <= knots <= MAX_GRID:
        raise ModelError(f"{where} holds {knots:,} knots; a grid holds 2..{MAX_GRID:,}")


def _column_list(value: Any, where: str, names: set[str], min_len: int = 0) -> list[str]:
    cols = _array(value, where, min_len, MAX_COLUMNS)
    for i, c in enumerate(cols):
        if not isinstance(c, str) or c not in names:
            raise _bad(f"{where}[{i}]", "a feature column of evasion.columns", c)
    _unique(cols, where)
    return cols


def _directions(value: Any, where: str, names: set[str]) -> None:
    for col, d in _mapping(value, where, MAX_COLUMNS).items():
        at = _key(where, col)
        if col not in names:
            raise ModelError(f"{at} is not a feature column of evasion.columns")
        _one_of(d, at, ("up",))


def _threat(value: Any, names: set[str]) -> None:
    t = _object(value, "evasion.threat", ("name", "modifiable", "default", "directions", "default_directions"))
    _text(t["name"], "evasion.threat.name", max_len=MAX_NAME)
    for cls, cols in _mapping(t["modifiable"], "evasion.threat.modifiable", MAX_CLASSES).items():
        where = _key("evasion.threat.modifiable", cls)
        _text(cls, where, max_len=MAX_NAME)
        _column_list(cols, where, names)
    if t["default"] is not None:
        _column_list(t["default"], "evasion.threat.default", names)
    for cls, table in _mapping(t["directions"], "evasion.threat.directions", MAX_CLASSES).items():
        where = _key("evasion.threat.directions", cls)
        _text(cls, where, max_len=MAX_NAME)
        _directions(table, where, names)
    _directions(t["default_directions"], "evasion.threat.default_directions", names)
    if not t["modifiable"] and t["default"] is None:
        raise ModelError("evasion.threat covers no attack class: give modifiable columns per class or a default")


def _derived(r: Mapping[str, Any], where: str, names: set[str]) -> None:
    """``target = k * sum(num) / sum(den)`` over distinct numeric feature columns."""
    cols = []
    for key, lo in (("num", 1), ("den", 0)):
        for i, c in enumerate(_array(r[key], f"{where}.{key}", lo, 2)):
            if not isinstance(c, str) or c not in names:
                raise _bad(f"{where}.{key}[{i}]", "a feature column", c)
            cols.append(c)
    if not isinstance(r["target"], str) or r["target"] not in names:
        raise _bad(f"{where}.target", "a feature column", r["target"])
    _unique([r["target"], *cols], f"{where}'s columns")
    k = _number(r["k"], f"{where}.k", -math.inf, math.inf)
    if k == 0:
        raise ModelError(f"{where}.k must not be 0")
    if r["decimals"] is not None:
        _integer(r["decimals"], f"{where}.decimals", 0, MAX_DECIMALS)


def _rules(value: Any, names: set[str], label: str) -> None:
    known = names | {label}
    for k, raw in enumerate(_array(value, "evasion.rules", 0, MAX_RULES)):
        where = f"evasion.rules[{k}]"
        if not isinstance(raw, dict):
            raise _bad(where, "an object", raw)
        kind = _one_of(raw.get("type"), f"{where}.type", _RULE_KEYS)
        required, optional = _RULE_KEYS[kind]
        r = _object(raw, where, required, optional)

        def column(key: str) -> str:
            c = r[key]
            if not isinstance(c, str) or c not in known:
                raise _bad(f"{where}.{key}", "a feature column or the label", c)
            return c

        if "real_pass" in r:
            _number(r["real_pass"], f"{where}.real_pass", 0.0, 1.0)
        if kind == "range":
            column("column")
            _text(r["kind"], f"{where}.kind", max_len=MAX_NAME)
            lo = _number(r["min"], f"{where}.min", -math.inf, math.inf)
            hi = _number(r["max"], f"{where}.max", -math.inf, math.inf)
            if lo > hi:
                raise ModelError(f"{where} has min {lo:g} > max {hi:g}")
            if "integer" in r and not isinstance(r["integer"], bool):
                raise _bad(f"{where}.integer", "true or false", r["integer"])
            if r.get("decimals") is not None:
                _integer(r["decimals"], f"{where}.decimals", 0, MAX_DECIMALS)
            if r.get("min_positive") is not None:
                floor = _number(r["min_positive"], f"{where}.min_positive", 0.0, math.inf)
                if floor <= 0:
                    raise _bad(f"{where}.min_positive", "a number above 0", r["min_positive"])
        elif kind == "vocab":
            column("column")
            numeric = r.get("numeric", False)
            if not isinstance(numeric, bool):
                raise _bad(f"{where}.numeric", "true or false", numeric)
            for i, v in enumerate(_array(r["values"], f"{where}.values", 1, MAX_VOCABULARY)):
                if numeric:
                    _number(v, f"{where}.values[{i}]", -math.inf, math.inf)
                else:
                    _text(v, f"{where}.values[{i}]", empty=True)
        elif kind == "combo":
            cols = _array(r["columns"], f"{where}.columns", 1, MAX_COLUMNS)
            for i, c in enumerate(cols):
                if not isinstance(c, str) or c not in known:
                    raise _bad(f"{where}.columns[{i}]", "a feature column or the label", c)
            _unique(cols, f"{where}.columns")
            for i, key in enumerate(_array(r["allowed"], f"{where}.allowed", 0, MAX_VOCABULARY)):
                _text(key, f"{where}.allowed[{i}]", empty=True)
        elif kind in ("order", "zero"):
            if column("a") == column("b"):
                raise ModelError(f"{where} relates {r['a']!r} to itself")
        elif kind == "derived":
            _derived(r, where, names)
        elif kind == "multiple":
            column("a")
            if (r.get("of") is None) == (r.get("step") is None):
                raise ModelError(f"{where} needs exactly one of 'of' (a column) and 'step' (a number)")
            if r.get("of") is not None and column("of") == r["a"]:
                raise ModelError(f"{where} relates {r['a']!r} to itself")
            if r.get("step") is not None:
                step = _number(r["step"], f"{where}.step", 0.0, math.inf)
                if step <= 0:
                    raise _bad(f"{where}.step", "a number above 0", r["step"])
        else:
            if column("rate") == column("count"):
                raise ModelError(f"{where} relates {r['rate']!r} to itself")
            _integer(r["decimals"], f"{where}.decimals", 0, MAX_DECIMALS)
