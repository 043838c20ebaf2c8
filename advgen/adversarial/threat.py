"""What an attack may change: functional and modifiable features per attack class.

An attack row keeps its **functional** features bit for bit (they make the attack work: a SYN flood's
flag and error rates, a malware's API calls) and may rewrite its **modifiable** ones. A
:class:`ThreatModel` holds, for each attack class, the set of modifiable feature columns, plus
per-column directions (``"up"``: a value may only grow, as features are only *added* to malware).

Masks come from presets that name feature groups (a dataset manifest's ``[feature_groups]``, or a
schema TOML's), from ``--frozen COLS`` or from a mask TOML file::

    # what each attack class may change; names are columns or feature groups
    [default]                    # every class without a table of its own
    frozen = ["intrinsic", "time"]
    [classes.probe]
    modifiable = ["content"]
    increase_only = ["dst_host_count"]

Presets:

- ``idsgan`` (Lin, Shi, Xue, arXiv 1809.02077; NSL-KDD's groups): DoS keeps intrinsic + time-based,
  Probe keeps intrinsic + time-based + host-based, R2L and U2R keep intrinsic + content;
- ``realistic``: ``idsgan`` made stricter: categoricals and flags never change (a session was logged in or
  not), DoS content features stay as they were (a flood has no session content), and the counts of
  past connections (time- and host-based counts) may only grow: an attacker can send extra traffic
  to shape them, never take back connections already made;
- ``malgan`` (Hu and Tan, arXiv 1702.05983): every binary feature may be added (0 -> 1), none removed.

Whatever the preset, the repair (:mod:`advgen.adversarial.constraints`) keeps types, ranges and the
relations the validators fitted on real traffic.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from advgen.errors import InvalidDataError

PRESETS = ("idsgan", "realistic", "malgan")
IDSGAN_GROUPS = ("intrinsic", "content", "time", "host")
# functional groups of each NSL-KDD attack category in IDSGAN (its Table 2)
IDSGAN_FUNCTIONAL = {
    "dos": ("intrinsic", "time"),
    "probe": ("intrinsic", "time", "host"),
    "r2l": ("intrinsic", "content"),
    "u2r": ("intrinsic", "content"),
}
DIRECTIONS = ("up",)


@dataclass
class ThreatModel:
    """Modifiable columns per attack class, and directions some columns may only move in.

    ``columns`` are the table's feature columns as ``(name, kind)``, in table order. A class missing
    from ``modifiable`` uses ``default`` (None: the class is not covered, an error when it is attacked).
    """

    columns: list[tuple[str, str]]
    modifiable: dict[str, frozenset[str]] = field(default_factory=dict)
    default: frozenset[str] | None = None
    directions: dict[str, dict[str, str]] = field(default_factory=dict)  # class -> column -> "up"
    default_directions: dict[str, str] = field(default_factory=dict)
    name: str = "custom"

    @property
    def names(self) -> list[str]:
        return [c for c, _ in self.columns]

    def modifiable_for(self, cls: str) -> frozenset[str]:
        if cls in self.modifiable:
            return self.modifiable[cls]
        if self.default is not None:
            return self.default
        known = ", ".join(sorted(self.modifiable)) or "none"
        raise InvalidDataError(f"the {self.name} threat model says nothing about attack class {cls!r} (it covers: {known})")

    def directions_for(self, cls: str) -> dict[str, str]:
        return dict(self.directions.get(cls, self.default_directions))

    def mask(self, classes: Iterable[str]) -> np.ndarray:
        """Boolean ``[n_rows, n_columns]``: True where a row's column may change."""
        names = self.names
        cache: dict[str, np.ndarray] = {}
        rows = []
        for c in classes:
            c = str(c)
            if c not in cache:
                mod = self.modifiable_for(c)
                cache[c] = np.array([n in mod for n in names], dtype=bool)
            rows.append(cache[c])
        return np.stack(rows) if rows else np.zeros((0, len(names)), dtype=bool)

    def up_mask(self, classes: Iterable[str]) -> np.ndarray:
        """Boolean ``[n_rows, n_columns]``: True where a row's column may only grow."""
        names = self.names
        rows = []
        for c in classes:
            d = self.directions_for(str(c))
            rows.append(np.array([d.get(n) == "up" for n in names], dtype=bool))
        return np.stack(rows) if rows else np.zeros((0, len(names)), dtype=bool)

    def check(self, classes: Iterable[str]) -> None:
        """Every class attacked has something to change; one clear line otherwise."""
        for c in sorted({str(c) for c in classes}):
            if not self.modifiable_for(c):
                raise InvalidDataError(
                    f"nothing is modifiable for attack class {c!r} under the {self.name} threat model: every "
                    "feature is functional, so no row can be disguised (free some with --mask or a smaller --frozen)"
                )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "columns": [list(c) for c in self.columns],
            "modifiable": {k: sorted(v) for k, v in sorted(self.modifiable.items())},
            "default": sorted(self.default) if self.default is not None else None,
            "directions": self.directions,
            "default_directions": self.default_directions,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ThreatModel:
        try:
            return cls(
                columns=[(str(a), str(b)) for a, b in d["columns"]],
                modifiable={str(k): frozenset(map(str, v)) for k, v in d["modifiable"].items()},
                default=frozenset(map(str, d["default"])) if d.get("default") is not None else None,
                directions={str(k): {str(a): str(b) for a, b in v.items()} for k, v in d.get("directions", {}).items()},
                default_directions={str(a): str(b) for a, b in d.get("default_directions", {}).items()},
                name=str(d.get("name", "custom")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidDataError(f"malformed threat model: {exc}") from None


def _expand(names: Iterable[str], columns: list[str], groups: Mapping[str, list[str]], where: str) -> set[str]:
    """Column names, feature groups expanded; unknown names are one clear error."""
    out: set[str] = set()
    for n in names:
        n = str(n).strip()
        if not n:
            continue
        if n in groups:
            out.update(m for m in groups[n] if m in columns)
        elif n in columns:
            out.add(n)
        else:
            hint = f"; feature groups: {', '.join(sorted(groups))}" if groups else ""
            raise InvalidDataError(f"{where}: {n!r} is neither a feature column nor a feature group{hint}")
    return out


def _need_groups(groups: Mapping[str, list[str]], preset: str) -> None:
    missing = [g for g in IDSGAN_GROUPS if g not in groups]
    if missing:
        raise InvalidDataError(
            f"the {preset} preset needs the feature groups {', '.join(IDSGAN_GROUPS)} (NSL-KDD's manifest has them; "
            f"name them under [feature_groups] in a schema TOML); this table lacks {', '.join(missing)}. "
            "For other data, use --frozen COLS or --mask FILE.toml"
        )


def preset(name: str, columns: list[tuple[str, str]], groups: Mapping[str, list[str]]) -> ThreatModel:
    """The named preset for a table with these feature columns and groups."""
    names = [c for c, _ in columns]
    kinds = dict(columns)
    if name == "idsgan":
        _need_groups(groups, name)
        modifiable = {
            cls: frozenset(set(names) - _expand(functional, names, groups, "idsgan preset"))
            for cls, functional in IDSGAN_FUNCTIONAL.items()
        }
        return ThreatModel(columns, modifiable, name=name)
    if name == "realistic":
        _need_groups(groups, name)
        fixed_kinds = {n for n in names if kinds[n] in ("categorical", "flag")}
        counts = {n for n in _expand(["time", "host"], names, groups, "realistic preset") if kinds[n] == "count"}
        modifiable = {}
        directions = {}
        for cls, functional in IDSGAN_FUNCTIONAL.items():
            frozen = _expand(functional, names, groups, "realistic preset") | fixed_kinds
            if cls == "dos":
                frozen |= _expand(["content"], names, groups, "realistic preset")
            mod = frozenset(set(names) - frozen)
            modifiable[cls] = mod
            directions[cls] = {n: "up" for n in mod & counts}
        return ThreatModel(columns, modifiable, directions=directions, name=name)
    if name == "malgan":
        bad = [n for n in names if kinds[n] != "flag"]
        if bad:
            raise InvalidDataError(
                f"the malgan preset is for binary features (0/1 flags); {len(bad)} columns are not: "
                + ", ".join(bad[:5]) + (" ..." if len(bad) > 5 else "")
            )
        return ThreatModel(columns, {}, default=frozenset(names), default_directions={n: "up" for n in names}, name=name)
    raise InvalidDataError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")


def frozen_model(frozen: Iterable[str], columns: list[tuple[str, str]], groups: Mapping[str, list[str]]) -> ThreatModel:
    """Every class may change every feature but ``frozen`` (columns or groups)."""
    names = [c for c, _ in columns]
    fixed = _expand(frozen, names, groups, "--frozen")
    return ThreatModel(columns, {}, default=frozenset(set(names) - fixed), name="frozen")


def add_frozen(model: ThreatModel, frozen: Iterable[str], groups: Mapping[str, list[str]]) -> ThreatModel:
    """``model`` with ``frozen`` (columns or groups) made functional for every class."""
    fixed = _expand(frozen, model.names, groups, "--frozen")
    if not fixed:
        return model
    return ThreatModel(
        model.columns,
        {k: v - fixed for k, v in model.modifiable.items()},
        default=model.default - fixed if model.default is not None else None,
        directions={k: {c: d for c, d in v.items() if c not in fixed} for k, v in model.directions.items()},
        default_directions={c: d for c, d in model.default_directions.items() if c not in fixed},
        name=f"{model.name}+frozen",
    )


def _names_list(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidDataError(f"{where} must be a list of column or group names")
    return list(value)


def _class_table(
    table: Any, names: list[str], groups: Mapping[str, list[str]], where: str
) -> tuple[frozenset[str], dict[str, str]]:
    if not isinstance(table, dict):
        raise InvalidDataError(f"{where} must be a table")
    unknown = set(table) - {"frozen", "modifiable", "increase_only"}
    if unknown:
        raise InvalidDataError(f"{where} has unknown keys {sorted(unknown)} (use frozen, modifiable, increase_only)")
    if ("frozen" in table) == ("modifiable" in table):
        raise InvalidDataError(f"{where}: give exactly one of frozen = [...] and modifiable = [...]")
    if "frozen" in table:
        mod = set(names) - _expand(_names_list(table["frozen"], f"{where}.frozen"), names, groups, where)
    else:
        mod = _expand(_names_list(table["modifiable"], f"{where}.modifiable"), names, groups, where)
    up = _expand(_names_list(table.get("increase_only", []), f"{where}.increase_only"), names, groups, where)
    stray = up - mod
    if stray:
        raise InvalidDataError(f"{where}: increase_only names columns that are not modifiable: {', '.join(sorted(stray))}")
    return frozenset(mod), {n: "up" for n in sorted(up)}


def load_mask(path: str | Path, columns: list[tuple[str, str]], groups: Mapping[str, list[str]]) -> ThreatModel:
    """A threat model from a mask TOML file (format in this module's docstring)."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise InvalidDataError(f"cannot read mask file {p}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidDataError(f"mask file {p.name} is not valid TOML: {exc}") from None
    unknown = set(data) - {"default", "classes"}
    if unknown:
        raise InvalidDataError(f"mask file {p.name} has unknown keys {sorted(unknown)} (use [default] and [classes.NAME])")
    names = [c for c, _ in columns]
    default = None
    default_dirs: dict[str, str] = {}
    if "default" in data:
        default, default_dirs = _class_table(data["default"], names, groups, f"{p.name} [default]")
    classes = data.get("classes", {})
    if not isinstance(classes, dict):
        raise InvalidDataError(f"mask file {p.name}: write classes as [classes.NAME] tables")
    modifiable: dict[str, frozenset[str]] = {}
    directions: dict[str, dict[str, str]] = {}
    for cls, table in classes.items():
        modifiable[str(cls)], directions[str(cls)] = _class_table(table, names, groups, f"{p.name} [classes.{cls}]")
    if default is None and not modifiable:
        raise InvalidDataError(f"mask file {p.name} names no class and no [default]")
    return ThreatModel(columns, modifiable, default=default, directions=directions,
                       default_directions=default_dirs, name=p.stem)
