"""Augment a detector's training set with generated rows of chosen (rare) classes.

A security team's detector usually sees thousands of normal connections and a handful of rare
attacks. :func:`augment` tops those classes up with rows sampled from a conditional run and marks
them, so the team can train on the result, or on the real rows alone, with the same file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from advgen.errors import AdvgenError, InvalidDataError
from advgen.io import TABLE_SUFFIXES, read_table, write_table  # noqa: F401 (re-exported)
from advgen.writers import integers_restored

SYNTHETIC_COLUMN = "synthetic"


def condition_key(run: Any, classes: Sequence[str]) -> str:
    """The condition name under which every one of ``classes`` is known to the run.

    A tabular run conditioned on attack labels also understands ``category=...``; the category is tried
    first, then the run's own conditioning variable. Unknown values raise the domain's own error, which
    lists the known ones.
    """
    cond = run.spec.get("conditions")
    if not cond:
        raise AdvgenError(f"run {run.run_dir} is not conditional; it cannot sample rows of a chosen class")
    candidates = ["category", str(cond["name"])] if cond["name"] != "category" else ["category"]
    errors: dict[str, AdvgenError] = {}
    for key in candidates:
        try:
            for c in classes:
                run.domain.condition_classes(run.spec, key, c)
        except AdvgenError as exc:
            errors[key] = exc
            continue
        return key
    # the category's complaint lists the known categories; without a category map it only says "unknown key"
    raise errors["category"] if run.spec.get("category_map") else errors[candidates[-1]]


def class_values(run: Any, data: pd.DataFrame, key: str, category_map: dict[str, str] | None = None) -> pd.Series:
    """Each real row's value of the condition ``key``: its own column, or its label mapped to a category."""
    if key in data.columns:
        return data[key].astype(str)
    label = run.spec.get("label") or run.spec["conditions"]["name"]
    cmap = category_map or run.spec.get("category_map")
    if key == "category" and cmap and label in data.columns:
        labels = data[label].astype(str)
        return labels.map(cmap).fillna(labels).astype(str)
    raise InvalidDataError(f"the training data has no column {key!r} to count classes by")


def augment(
    run: Any,
    train_data: pd.DataFrame,
    classes: Sequence[str],
    *,
    per_class: int | None = None,
    balance: bool = False,
    seed: int = 0,
    category_map: dict[str, str] | None = None,
    constants: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Real rows plus synthetic rows of ``classes``, with a 0/1 column ``synthetic`` marking the generated ones.

    ``per_class=N`` adds N rows of each class; ``balance=True`` adds to each class as many rows as it lacks
    to match the training data's largest class. Rows are sampled with ``run.sample(n, condition=...)``,
    class by class with seeds ``seed, seed + 1, ...``; their columns are put in the real data's order
    and dtypes. When the classes are categories the real data lacks as a column (NSL-KDD's attack names
    map to 5 categories), the category column is added to every row so the result can train a
    category detector directly (``category_map`` maps labels to categories where the run's spec does not).

    The columns are those ``run.sample`` returns (what ``advgen sample`` writes), in the same order
    (the training file's), then any column only the real data has, then ``synthetic``; a categorical
    whose values were integers in the training file (a 0/1 label) holds integers, real rows too.
    Constant columns a dataset loader dropped from the real rows are written back with ``constants``
    (the real table's, e.g. ``Table.constants``), else the run's own.
    """
    if (per_class is None) == (not balance):
        raise AdvgenError("choose exactly one of per_class=N and balance=True")
    if per_class is not None and (isinstance(per_class, bool) or per_class < 1):
        raise AdvgenError(f"per_class must be a positive integer, got {per_class!r}")
    classes = [str(c).strip() for c in classes if str(c).strip()]
    if not classes:
        raise AdvgenError("no class to augment; name at least one, e.g. r2l,u2r")
    if len(set(classes)) != len(classes):
        raise AdvgenError(f"a class is named twice in {', '.join(classes)}")
    if not isinstance(train_data, pd.DataFrame):
        raise InvalidDataError("augmentation works on tables: the training data must be a DataFrame")
    if len(train_data) == 0:
        raise InvalidDataError("the training data is empty")
    if SYNTHETIC_COLUMN in train_data.columns:
        raise InvalidDataError(f"the training data already has a column {SYNTHETIC_COLUMN!r}")
    key = condition_key(run, classes)
    values = class_values(run, train_data, key, category_map)
    counts = values.value_counts()
    if balance:
        target = int(counts.max())
        wanted = {c: max(0, target - int(counts.get(c, 0))) for c in classes}
    else:
        wanted = {c: int(per_class) for c in classes}  # type: ignore[arg-type]

    real = train_data.copy()
    add_key = key not in real.columns
    if add_key:
        real[key] = values.to_numpy()
    parts = []
    for i, c in enumerate(classes):
        if wanted[c] == 0:
            continue
        rows = run.sample(wanted[c], condition={key: c}, seed=seed + i)
        if not isinstance(rows, pd.DataFrame):
            raise InvalidDataError(f"the {run.domain.name} domain does not sample tables; augmentation needs rows")
        if key not in rows.columns:
            rows = rows.copy()
            rows[key] = c
        parts.append(rows)
    # the output has the columns `advgen sample` writes, in its order (constant columns included), so a
    # pipeline reading either file sees one schema; columns only the real data has follow
    layout = parts[0] if parts else run.sample(1, condition={key: classes[0]}, seed=seed)
    known_constants = {**run.spec.get("constants", {}), **dict(constants or {})}
    real = _complete(real, list(layout.columns), run, known_constants, category_map)
    order = list(layout.columns) + ([key] if key not in layout.columns else [])
    order += [col for col in real.columns if col not in order]
    real = real[order]
    parts = [_like(_with_columns(rows, real.columns), real) for rows in parts]
    real[SYNTHETIC_COLUMN] = np.zeros(len(real), dtype=np.int8)
    synth = pd.concat(parts, ignore_index=True) if parts else real.iloc[:0].drop(columns=[SYNTHETIC_COLUMN])
    synth[SYNTHETIC_COLUMN] = np.ones(len(synth), dtype=np.int8)
    out = pd.concat([real, synth], ignore_index=True) if len(synth) else real.reset_index(drop=True)
    # a categorical whose values were integers in the training file (a 0/1 label) is integers again,
    # as `advgen sample` writes it: Parquet would otherwise store the real rows' labels as text too
    out = integers_restored(out, run.spec.get("integer_columns") or ())
    out.attrs["added"] = {c: int(n) for c, n in wanted.items()}
    out.attrs["condition_key"] = key
    return out


def _complete(
    real: pd.DataFrame,
    columns: Sequence[str],
    run: Any,
    constants: Mapping[str, Any],
    category_map: dict[str, str] | None,
) -> pd.DataFrame:
    """``real`` with every column of ``columns``: constants written back, the label's category mapped."""
    for col in columns:
        if col in real.columns:
            continue
        if col in constants:
            real[col] = constants[col]
        elif col == run.spec.get("category_column"):
            real[col] = class_values(run, real, "category", category_map).to_numpy()
    missing = [col for col in columns if col not in real.columns]
    if missing:
        shown = ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
        raise InvalidDataError(f"the training data lacks {len(missing)} column(s) the run generates: {shown}")
    return real


def _with_columns(rows: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Generated ``rows`` cut to ``columns``; one clear line when the generator lacks a real column."""
    missing = [col for col in columns if col not in rows.columns]
    if missing:
        shown = ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
        raise InvalidDataError(f"generated rows lack {len(missing)} column(s) of the training data: {shown}")
    return rows[list(columns)]


def _like(rows: pd.DataFrame, real: pd.DataFrame) -> pd.DataFrame:
    """Cast generated columns to the real columns' dtypes where the values allow it (ints stay ints)."""
    rows = rows.reset_index(drop=True).copy()
    for col in real.columns:
        dtype = real[col].dtype
        if rows[col].dtype == dtype:
            continue
        try:
            if pd.api.types.is_integer_dtype(dtype):
                values = pd.to_numeric(rows[col], errors="raise")
                if np.all(np.isfinite(values)) and np.allclose(values, np.round(values)):
                    rows[col] = np.round(values).astype(dtype)
            elif pd.api.types.is_float_dtype(dtype):
                rows[col] = pd.to_numeric(rows[col], errors="raise").astype(dtype)
            else:
                rows[col] = rows[col].astype(dtype)
        except (ValueError, TypeError):
            pass  # keep the generated dtype: a value the real column cannot hold is for validators to flag
    return rows
