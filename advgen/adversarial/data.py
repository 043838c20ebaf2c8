"""The tables an attack works on: the detector's training data and the attack rows to disguise.

Both are read like everywhere else in advgen (a registered dataset split such as ``nsl-kdd:train20``,
or any CSV/Parquet file with ``--label``), plus one layout of binary feature vectors that malware
research uses: a folder holding ``*_mal.npy`` and ``*_ben.npy`` (MalGAN's trial data), read with
``allow_pickle=False`` into flag columns ``f000 ...`` and a label ``malware``/``benign``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from advgen.errors import InvalidDataError
from advgen.metrics.detectors import benign_class

NPY_LABEL = "label"


@dataclass
class AttackTable:
    """A cleaned table: features, a label, optional label -> category map and feature groups."""

    name: str
    df: pd.DataFrame
    features: list[tuple[str, str]]
    label: str
    category_map: dict[str, str] | None = None
    feature_groups: dict[str, list[str]] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)
    schema: list[Any] | None = None  # advgen_datasets ColumnSchema list, to read a second file alike
    dataset: str | None = None
    notes: list[str] = field(default_factory=list)
    # the columns the loader dropped as constant in the training data, one row per row of ``df`` (an
    # attack file's own values where it has them), and the file's column order: written back with
    # the disguised rows, so that a detector trained on the file's columns can score them
    extras: pd.DataFrame | None = None
    order: list[str] | None = None

    @property
    def feature_names(self) -> list[str]:
        return [c for c, _ in self.features]

    def classes(self) -> np.ndarray:
        """Each row's class: its category where the data maps labels to categories, else its label."""
        labels = self.df[self.label].astype(str)
        if self.category_map:
            return labels.map(self.category_map).fillna(labels).astype(str).to_numpy()
        return labels.to_numpy()

    def subset(self, rows: np.ndarray) -> AttackTable:
        return AttackTable(
            self.name, self.df.iloc[rows].reset_index(drop=True), self.features, self.label, self.category_map,
            self.feature_groups, self.constants, self.schema, self.dataset, list(self.notes),
            self.extras.iloc[rows].reset_index(drop=True) if self.extras is not None else None, self.order,
        )

    def complete(self, df: pd.DataFrame, rows: np.ndarray | None = None) -> pd.DataFrame:
        """``df`` (rows made from this table's rows ``rows``, in order; default: from rows with the
        constant values) with the columns the loader dropped as constant put back, every column in the
        file's order; columns the file lacks (``source_row``) come last."""
        out = df.reset_index(drop=True)
        missing = [c for c in self.constants if c not in out.columns]
        if missing:
            out = out.copy()
            for c in missing:
                if rows is not None and self.extras is not None and c in self.extras.columns:
                    out[c] = self.extras[c].to_numpy()[np.asarray(rows, dtype=np.int64)]
                else:
                    out[c] = _broadcast(self.constants[c], len(out))
        if self.order:
            first = [c for c in self.order if c in out.columns]
            out = out[first + [c for c in out.columns if c not in set(first)]]
        return out


def _broadcast(value: Any, n: int) -> np.ndarray:
    if value is None:
        return np.full(n, None, dtype=object)
    return np.repeat(np.asarray([value]), n)


def _from_advgen_table(t: Any, dataset: str | None, order: list[str] | None = None,
                       extras: pd.DataFrame | None = None) -> AttackTable:
    if t.label is None:
        raise InvalidDataError(f"{t.name} has no label column; pass --label COLUMN")
    feats = [(c.name, c.kind) for c in t.columns if c.role == "feature"]
    if not feats:
        raise InvalidDataError(f"{t.name} has no feature columns")
    return AttackTable(
        t.name, t.df.reset_index(drop=True), feats, t.label, dict(t.category_map) if t.category_map else None,
        dict(t.feature_groups or {}), dict(t.constants or {}), list(t.columns), dataset, list(t.notes),
        extras, order,
    )


def _read_table(dataset: str | None, split: str | None = None, *, path: Path | None = None, label: str | None = None,
                schema_file: str | None = None, like: AttackTable | None = None) -> AttackTable:
    """``advgen_datasets.load_table``'s steps, keeping what it drops: the file's column order and, for
    an attack file read with the training schema (``like``), its own values of the columns constant in
    the training data (read as they are, set apart from the features)."""
    from advgen_datasets.manifest import ColumnSpec
    from advgen_datasets.table import _read_file, finish_table, resolve_table

    schema = like.schema if like is not None else None
    request = resolve_table(dataset, split, path=path, label=label, schema_file=schema_file if schema is None else None,
                            schema=schema)
    frames = [_read_file(f, request.fmt, request.read_declared, request.force_str, request.notes, sniff=request.sniff)
              for f in request.files]
    df = frames[0]
    if len(frames) > 1:
        cols = list(frames[0].columns)
        for f, frame in zip(request.files[1:], frames[1:]):
            if list(frame.columns) != cols:
                raise InvalidDataError(f"{f} has other columns than {request.files[0]}")
        df = pd.concat(frames, ignore_index=True)
    order = [str(c) for c in df.columns]
    kept: list[str] = []
    raw_int: set[str] = set()
    if like is not None:
        for c in like.constants:
            if c in df.columns and c not in request.plan.declared:
                numeric = pd.api.types.is_numeric_dtype(df[c])
                if numeric and pd.api.types.is_integer_dtype(df[c]):
                    raw_int.add(c)
                request.plan.declared[c] = ColumnSpec(c, "continuous" if numeric else "categorical", "feature")
                kept.append(c)
    t = finish_table(request, df)
    extras = None
    if like is not None:
        extras = pd.DataFrame(index=pd.RangeIndex(len(t.df)))
        for c in like.constants:
            if c in kept:
                v = t.df[c]
                extras[c] = v.astype("int64") if c in raw_int else v
            else:
                extras[c] = _broadcast(like.constants[c], len(t.df))  # the file lacks it: the training value
        t.df = t.df.drop(columns=kept)
        t.columns = [c for c in t.columns if c.name not in set(kept)]
        t.constants = dict(like.constants)
    out = _from_advgen_table(t, dataset, order=order, extras=extras)
    if like is None:
        out.extras = pd.DataFrame({c: _broadcast(v, len(out.df)) for c, v in out.constants.items()},
                                  index=pd.RangeIndex(len(out.df)))
    return out


def is_npy_folder(path: Path) -> bool:
    return path.is_dir() and any(path.glob("*_mal.npy")) and any(path.glob("*_ben.npy"))


def _load_npy_folder(path: Path) -> AttackTable:
    mal_files, ben_files = sorted(path.glob("*_mal.npy")), sorted(path.glob("*_ben.npy"))
    if len(mal_files) != 1 or len(ben_files) != 1:
        raise InvalidDataError(f"{path} must hold exactly one *_mal.npy and one *_ben.npy")
    arrays = []
    for f in (mal_files[0], ben_files[0]):
        try:
            a = np.load(f, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InvalidDataError(f"cannot read {f.name}: {exc}") from None
        if a.ndim != 2 or a.shape[0] == 0:
            raise InvalidDataError(f"{f.name} must be a non-empty 2-D array, got shape {a.shape}")
        if not np.isfinite(a).all() or not np.isin(a, (0, 1)).all():
            raise InvalidDataError(f"{f.name} must hold binary features (0 or 1 only)")
        arrays.append(a.astype(np.int64))
    mal, ben = arrays
    if mal.shape[1] != ben.shape[1]:
        raise InvalidDataError(f"{mal_files[0].name} has {mal.shape[1]} features, {ben_files[0].name} {ben.shape[1]}")
    width = len(str(mal.shape[1] - 1))
    names = [f"f{j:0{max(3, width)}d}" for j in range(mal.shape[1])]
    df = pd.DataFrame(np.vstack([mal, ben]), columns=names)
    df[NPY_LABEL] = ["malware"] * len(mal) + ["benign"] * len(ben)
    return AttackTable(path.name, df, [(n, "flag") for n in names], NPY_LABEL, dataset=None,
                       notes=[f"read {len(mal)} malware and {len(ben)} benign rows of {len(names)} binary features"])


def load_attack_table(
    ref: str, *, label: str | None = None, schema_file: str | None = None, like: AttackTable | None = None
) -> AttackTable:
    """``ref``: a file, a MalGAN-style folder of .npy files, or ``DATASET[:SPLIT]``.

    With ``like`` (the detector's training table) the file is read with the same columns and kinds.
    """
    try:
        from advgen_datasets import registry
    except ImportError:  # pragma: no cover - installed with advgen
        raise InvalidDataError("reading tables needs the advgen_datasets package (installed with advgen)") from None
    path = Path(ref)
    if path.exists():
        if is_npy_folder(path):
            t = _load_npy_folder(path)
            if like is not None and t.feature_names != like.feature_names:
                raise InvalidDataError(f"{ref} has other features than the training data")
            return t
        if path.is_dir():
            raise InvalidDataError(f"{ref} is a folder; give a CSV/Parquet file, DATASET:SPLIT or a folder of *_mal.npy/*_ben.npy")
        if path.stat().st_size == 0:
            raise InvalidDataError(f"{ref} is empty")
        if like is not None and like.schema is not None:
            return _read_table(like.dataset, path=path, like=like)
        return _read_table(None, path=path, label=label, schema_file=schema_file)
    name, _, split = ref.partition(":")
    if name in registry():
        same = like if like is not None and like.dataset == name and like.schema is not None else None
        out = _read_table(name, split or None, schema_file=schema_file, like=same)
        if like is not None and out.feature_names != like.feature_names:
            raise InvalidDataError(f"{ref} has other feature columns than the training data")
        return out
    raise InvalidDataError(
        f"{ref} is neither a file nor a registered dataset ({', '.join(sorted(registry()))}); "
        "give a path or DATASET:SPLIT such as nsl-kdd:test"
    )


def resolve_normal(table: AttackTable, normal: str | None, notes: list[str]) -> str:
    """The benign class as the table spells it (:func:`~advgen.metrics.detectors.benign_class`), with a
    note when it is not the name asked for; none found is the error :func:`check_normal` gives."""
    asked = normal or "normal"
    found = benign_class(table.classes().tolist(), normal)
    if found is None:
        return asked
    if found != asked:
        notes.append(f"normal class: {found!r} (no class is named {asked!r})")
    return found


def check_normal(table: AttackTable, normal: str) -> None:
    classes = table.classes()
    if not (classes == normal).any():
        shown = ", ".join(sorted(set(classes.tolist()))[:12])
        raise InvalidDataError(f"{table.name} has no {normal!r} rows (its classes: {shown}); name the benign class with --normal")


def select_attacks(
    table: AttackTable, *, category: list[str] | None = None, label_value: list[str] | None = None, normal: str = "normal"
) -> np.ndarray:
    """Indices of the rows to disguise: the chosen categories or labels (default: every non-normal row)."""
    classes = table.classes()
    labels = table.df[table.label].astype(str).to_numpy()
    if category:
        known = sorted(set(table.category_map.values())) if table.category_map else sorted(set(classes.tolist()))
        for c in category:
            if c not in known:
                raise InvalidDataError(f"unknown category {c!r}; {table.name} has: {', '.join(known)}")
            if c == normal:
                raise InvalidDataError(f"{c!r} is the benign class; choose attack categories to disguise")
        keep = np.isin(classes, category)
        if not keep.any():
            raise InvalidDataError(f"the attack rows ({table.name}) hold no rows of category {', '.join(category)}")
    elif label_value:
        keep = np.isin(labels, label_value)
        missing = [v for v in label_value if v not in set(labels.tolist())]
        if missing:
            raise InvalidDataError(f"the attack rows ({table.name}) hold no rows labelled {', '.join(missing)}")
    else:
        keep = classes != normal
        if not keep.any():
            raise InvalidDataError(f"the attack rows ({table.name}) hold only {normal!r} rows")
    return np.flatnonzero(keep)


def split_holdout(table: AttackTable, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, held out), stratified by class: the detector learns one part, the attack uses the other."""
    if not 0.0 < fraction < 1.0:
        raise InvalidDataError(f"the held-out fraction must lie in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    classes = table.classes()
    train, held = [], []
    for c in sorted(set(classes.tolist())):
        idx = np.flatnonzero(classes == c)
        idx = idx[rng.permutation(len(idx))]
        k = int(round(len(idx) * fraction))
        held.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))
