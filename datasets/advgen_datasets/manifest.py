"""Dataset manifests: one TOML file per dataset saying where its files come from and what they hold.

A manifest is data, not code, so adding a dataset needs no change to any loader: name the files
(URL, sha256, row count), how they are written (CSV with or without header, separator), every column
(name, kind, role), the label-to-category map and the feature groups. ``docs/datasets.md`` describes
the format; the built-in manifests in ``manifests/`` are the examples.

Some datasets ship files of different layouts (UNSW-NB15's partitioned sets with a header, and its
raw captures without one). A manifest's top-level ``format``/``columns``/... describe the default
layout; ``[layouts.NAME]`` tables override any of them, and a split names the layout its files use.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advgen.errors import InvalidDataError

KINDS = ("continuous", "count", "rate", "flag", "categorical")
"""Column kinds: real numbers; non-negative integers; reals in [0, 1]; {0, 1}; strings from a vocabulary."""

ROLES = ("feature", "label", "ignored")
"""Column roles: modelled; the class label (at most one); read but dropped on load."""

NUMERIC_KINDS = ("continuous", "count", "rate", "flag")

_LAYOUT_KEYS = ("format", "columns", "categories", "feature_groups", "label_missing", "label_aliases")


@dataclass(frozen=True)
class ColumnSpec:
    """One declared column. ``kind`` None means "infer from the data" (schema override files)."""

    name: str
    kind: str | None = None
    role: str = "feature"


@dataclass(frozen=True)
class FileFormat:
    type: str = "csv"  # "csv" or "parquet"
    header: bool = True
    separator: str = ","
    encoding: str = "utf-8"
    na_values: tuple[str, ...] = ()


@dataclass
class Layout:
    """How a set of files is written and what its columns mean."""

    format: FileFormat
    columns: list[ColumnSpec] | None
    categories: dict[str, list[str]] = field(default_factory=dict)
    feature_groups: dict[str, list[str]] = field(default_factory=dict)
    label_missing: str | None = None
    label_aliases: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str | None:
        for c in self.columns or []:
            if c.role == "label":
                return c.name
        return None

    def category_map(self) -> dict[str, str] | None:
        """Label value -> category, inverted from the manifest's category -> labels lists."""
        if not self.categories:
            return None
        return {lab: cat for cat, labels in self.categories.items() for lab in labels}


@dataclass(frozen=True)
class FileEntry:
    """A file of a dataset. ``sha256``/``rows`` None mean unknown: that check is skipped.

    ``git_sha1`` is the git blob id a repository lists for the file (SHA-1 of ``blob <size>\\0`` and
    the bytes): a content checksum for files whose sha256 nobody published but whose mirror is a git
    repository. It is checked when there is no sha256.
    """

    name: str
    url: str | None = None
    sha256: str | None = None
    rows: int | None = None
    git_sha1: str | None = None


@dataclass(frozen=True)
class Split:
    name: str
    files: tuple[str, ...]
    layout: str = "default"
    description: str = ""


@dataclass
class Manifest:
    name: str
    description: str
    homepage: str
    license: str
    citation: str
    default_split: str
    splits: dict[str, Split]
    files: dict[str, FileEntry]
    layouts: dict[str, Layout]
    download_hint: str = ""
    path: Path | None = None

    def split(self, name: str | None) -> Split:
        key = name or self.default_split
        if key not in self.splits:
            raise InvalidDataError(
                f"dataset {self.name!r} has no split {key!r}; splits: {', '.join(self.splits)}"
            )
        return self.splits[key]

    def layout(self, split: Split) -> Layout:
        return self.layouts[split.layout]


def _fail(where: str, msg: str) -> InvalidDataError:
    return InvalidDataError(f"manifest {where}: {msg}")


def _parse_columns(raw: Any, where: str, *, need_kind: bool) -> list[ColumnSpec]:
    if not isinstance(raw, list) or not raw:
        raise _fail(where, "'columns' must be a non-empty list of {name, kind, role} tables")
    cols: list[ColumnSpec] = []
    seen: set[str] = set()
    for i, c in enumerate(raw):
        if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not c["name"].strip():
            raise _fail(where, f"column {i + 1} needs a 'name'")
        name = c["name"].strip()
        unknown = set(c) - {"name", "kind", "role"}
        if unknown:
            raise _fail(where, f"column {name!r} has unknown keys {sorted(unknown)}")
        kind = c.get("kind")
        role = c.get("role", "feature")
        if kind is None and need_kind:
            raise _fail(where, f"column {name!r} needs a 'kind' (one of {', '.join(KINDS)})")
        if kind is not None and kind not in KINDS:
            raise _fail(where, f"column {name!r} has kind {kind!r}; kinds: {', '.join(KINDS)}")
        if role not in ROLES:
            raise _fail(where, f"column {name!r} has role {role!r}; roles: {', '.join(ROLES)}")
        if role == "label" and kind not in (None, "categorical"):
            raise _fail(where, f"label column {name!r} must be categorical")
        if name in seen:
            raise _fail(where, f"column {name!r} is declared twice")
        seen.add(name)
        cols.append(ColumnSpec(name=name, kind=kind, role=role))
    if sum(c.role == "label" for c in cols) > 1:
        raise _fail(where, "more than one column has role 'label'")
    return cols


def _parse_format(raw: Any, where: str) -> FileFormat:
    if raw is None:
        return FileFormat()
    if not isinstance(raw, dict):
        raise _fail(where, "'format' must be a table")
    unknown = set(raw) - {"type", "header", "separator", "encoding", "na_values"}
    if unknown:
        raise _fail(where, f"format has unknown keys {sorted(unknown)}")
    ftype = raw.get("type", "csv")
    if ftype not in ("csv", "parquet"):
        raise _fail(where, f"format type {ftype!r} is not 'csv' or 'parquet'")
    sep = raw.get("separator", ",")
    if not isinstance(sep, str) or len(sep) != 1:
        raise _fail(where, "format separator must be one character")
    return FileFormat(
        type=ftype,
        header=bool(raw.get("header", True)),
        separator=sep,
        encoding=str(raw.get("encoding", "utf-8")),
        na_values=tuple(str(v) for v in raw.get("na_values", ())),
    )


def _parse_layout(raw: dict[str, Any], where: str) -> Layout:
    columns = _parse_columns(raw["columns"], where, need_kind=True) if "columns" in raw else None
    categories = raw.get("categories", {})
    if not isinstance(categories, dict) or not all(
        isinstance(v, list) and all(isinstance(x, str) for x in v) for v in categories.values()
    ):
        raise _fail(where, "'categories' must map each category to a list of label values")
    owner: dict[str, str] = {}
    for cat, labels in categories.items():
        for lab in labels:
            if lab in owner:
                raise _fail(where, f"label {lab!r} is in categories {owner[lab]!r} and {cat!r}")
            owner[lab] = cat
    groups = raw.get("feature_groups", {})
    if not isinstance(groups, dict):
        raise _fail(where, "'feature_groups' must map each group to a list of column names")
    if columns is not None:
        names = {c.name for c in columns}
        for g, members in groups.items():
            missing = [m for m in members if m not in names]
            if missing:
                raise _fail(where, f"feature group {g!r} names unknown columns {missing}")
    aliases = raw.get("label_aliases", {})
    if not isinstance(aliases, dict) or not all(isinstance(v, str) for v in aliases.values()):
        raise _fail(where, "'label_aliases' must map label spellings to label values")
    missing_label = raw.get("label_missing")
    if missing_label is not None and not isinstance(missing_label, str):
        raise _fail(where, "'label_missing' must be a string")
    return Layout(
        format=_parse_format(raw.get("format"), where),
        columns=columns,
        categories={k: list(v) for k, v in categories.items()},
        feature_groups={k: list(v) for k, v in groups.items()},
        label_missing=missing_label,
        label_aliases=dict(aliases),
    )


def parse_manifest(data: dict[str, Any], where: str, path: Path | None = None) -> Manifest:
    """Validate a manifest's TOML tables; every problem raises one line naming the manifest."""
    for key in ("name", "description", "splits", "files", "columns"):
        if key not in data:
            raise _fail(where, f"missing required key {key!r}")
    name = data["name"]
    if not isinstance(name, str) or not name or name != name.strip().lower() or " " in name:
        raise _fail(where, f"name {name!r} must be lowercase without spaces")

    base = {k: data[k] for k in _LAYOUT_KEYS if k in data}
    layouts = {"default": _parse_layout(base, where)}
    for lname, ltab in data.get("layouts", {}).items():
        if not isinstance(ltab, dict):
            raise _fail(where, f"layout {lname!r} must be a table")
        unknown = set(ltab) - set(_LAYOUT_KEYS)
        if unknown:
            raise _fail(where, f"layout {lname!r} has unknown keys {sorted(unknown)}")
        layouts[lname] = _parse_layout({**base, **ltab}, f"{where} (layout {lname})")
    for lname, layout in layouts.items():
        if layout.columns is None:
            raise _fail(where, f"layout {lname!r} declares no columns")

    files: dict[str, FileEntry] = {}
    for fname, ftab in data["files"].items():
        if not isinstance(ftab, dict):
            raise _fail(where, f"file {fname!r} must be a table")
        unknown = set(ftab) - {"url", "sha256", "rows", "git_sha1"}
        if unknown:
            raise _fail(where, f"file {fname!r} has unknown keys {sorted(unknown)}")
        sha = ftab.get("sha256")
        if sha is not None and (
            not isinstance(sha, str) or len(sha) != 64 or any(ch not in "0123456789abcdef" for ch in sha)
        ):
            raise _fail(where, f"file {fname!r}: sha256 must be 64 lowercase hex digits")
        git_sha1 = ftab.get("git_sha1")
        if git_sha1 is not None and (
            not isinstance(git_sha1, str) or len(git_sha1) != 40 or any(ch not in "0123456789abcdef" for ch in git_sha1)
        ):
            raise _fail(where, f"file {fname!r}: git_sha1 must be 40 lowercase hex digits")
        rows = ftab.get("rows")
        if rows is not None and (not isinstance(rows, int) or rows <= 0):
            raise _fail(where, f"file {fname!r}: rows must be a positive integer")
        if "/" in fname or "\\" in fname or fname.startswith("."):
            raise _fail(where, f"file name {fname!r} must be a plain file name")
        files[fname] = FileEntry(name=fname, url=ftab.get("url"), sha256=sha, rows=rows, git_sha1=git_sha1)

    splits: dict[str, Split] = {}
    for sname, stab in data["splits"].items():
        if not isinstance(stab, dict) or not isinstance(stab.get("files"), list) or not stab["files"]:
            raise _fail(where, f"split {sname!r} needs a non-empty 'files' list")
        for f in stab["files"]:
            if f not in files:
                raise _fail(where, f"split {sname!r} names file {f!r} that has no [files] entry")
        layout = stab.get("layout", "default")
        if layout not in layouts:
            raise _fail(where, f"split {sname!r} uses unknown layout {layout!r}")
        splits[sname] = Split(
            name=sname, files=tuple(stab["files"]), layout=layout, description=stab.get("description", "")
        )
    default_split = data.get("default_split", next(iter(splits)))
    if default_split not in splits:
        raise _fail(where, f"default_split {default_split!r} is not a split")
    return Manifest(
        name=name,
        description=str(data["description"]),
        homepage=str(data.get("homepage", "")),
        license=str(data.get("license", "")),
        citation=str(data.get("citation", "")),
        default_split=default_split,
        splits=splits,
        files=files,
        layouts=layouts,
        download_hint=str(data.get("download_hint", "")),
        path=path,
    )


def read_manifest(path: str | Path) -> Manifest:
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidDataError(f"manifest {p.name}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise InvalidDataError(f"cannot read manifest {p}: {exc.strerror}") from None
    return parse_manifest(data, p.name, p)


def builtin_manifest_paths() -> list[Path]:
    """The manifests shipped in the package (package data ``manifests/*.toml``)."""
    return sorted(Path(__file__).with_name("manifests").glob("*.toml"))


def user_manifest_dir() -> Path:
    """Where a user drops extra manifests: ``<data dir>/manifests``."""
    from advgen_datasets.fetch import data_dir

    return data_dir() / "manifests"


def manifest_paths() -> list[Path]:
    """Built-in manifests, then the user's (which may replace a built-in one of the same name)."""
    paths = builtin_manifest_paths()
    user = user_manifest_dir()
    if user.is_dir():
        paths += sorted(user.glob("*.toml"))
    return paths


def registry() -> dict[str, Manifest]:
    """Every known dataset by name. Read afresh each call: manifests are small and users edit them."""
    found: dict[str, Manifest] = {}
    for p in manifest_paths():
        m = read_manifest(p)
        found[m.name] = m
    return dict(sorted(found.items()))


def get_manifest(name: str) -> Manifest:
    reg = registry()
    if name not in reg:
        raise InvalidDataError(f"unknown dataset {name!r}; known datasets: {', '.join(reg) or 'none'}")
    return reg[name]
