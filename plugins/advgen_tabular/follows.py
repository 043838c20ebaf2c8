"""Features that follow the label: one value per class, such as UNSW-NB15's binary ``label`` beside
``attack_cat`` (1 for every attack category, 0 for Normal).

A generator conditioned on the class draws such a column like any other, and gets it wrong now and
then (0.53% of a 1,500-step UNSW-NB15 run's rows were a Normal with ``label`` 1 or an attack with 0:
rows no data set holds, and a give-away to any detector). In a conditional run the class is known when
a row is decoded, so the column is written from it: :func:`fit_follows` finds the columns and each
class's value, :func:`write_follows` puts them in a decoded frame, and :func:`follows_module` does the
same on the decoder's tensors for the ONNX export. A disguise must not change such a column either
(``advgen evade`` freezes it): it would relabel the row, not hide it.

NumPy and pandas only but for :func:`follows_module` (torch is imported there, when called).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from advgen.errors import InvalidDataError

# a column follows the label when every label with at least two rows holds one value of it, and those
# labels hold this share of the rows at least (labels of one row each prove nothing)
FOLLOWS_LABEL_MIN_SHARE = 0.9


def label_columns(df: pd.DataFrame, features: list[tuple[str, str]], label: str) -> list[str]:
    """Features that are a function of the label in ``df`` (one value per label, two values at least)."""
    labels = df[label].astype(str)
    sizes = labels.value_counts()
    multi = labels.isin(sizes.index[sizes >= 2])
    if len(df) == 0 or multi.mean() < FOLLOWS_LABEL_MIN_SHARE:
        return []
    out = []
    for name, _ in features:
        col = df[name]
        if col.nunique(dropna=False) >= 2 and col[multi].groupby(labels[multi]).nunique(dropna=False).max() <= 1:
            out.append(name)
    return out


def fit_follows(
    df: pd.DataFrame, features: list[tuple[str, str]], label: str, classes: list[str], decodable: set[str]
) -> list[dict[str, Any]]:
    """``[{"column", "values"}]``: each following column and its value for each class (in ``classes``
    order; a class of one row gives its own value). ``decodable`` are the columns the decoder outputs
    one by one (not members of a joint categorical, whose combination must stay one seen in training)."""
    labels = df[label].astype(str)
    out = []
    for name in label_columns(df, features, label):
        if name not in decodable:
            continue
        first = df[name].groupby(labels).first()
        values = [_plain(first[c]) for c in classes]
        out.append({"column": name, "values": values})
    return out


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def check_follows(
    follows: Any, n_classes: int, numeric: list[str], cats: dict[str, list[str]]
) -> None:
    """The ``follows_label`` of a run's spec (data someone could have edited) checked before use: known
    columns, one value per class, a categorical's values in its vocabulary."""
    def bad(why: str) -> InvalidDataError:
        return InvalidDataError(f"the run's spec holds a malformed follows_label entry: {why}")

    if not isinstance(follows, list):
        raise bad("not a list")
    for f in follows:
        if not isinstance(f, dict) or not isinstance(f.get("values"), list):
            raise bad(str(f)[:120])
        name = f.get("column")
        if name not in numeric and name not in cats:
            raise bad(f"unknown column {str(name)[:80]!r}")
        if len(f["values"]) != n_classes:
            raise bad(f"{name!r} gives {len(f['values'])} values for {n_classes} classes")
        for v in f["values"]:
            if name in cats:
                if str(v) not in cats[name]:
                    raise bad(f"{name!r} value {str(v)[:80]!r} is not in its vocabulary")
            elif isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
                raise bad(f"{name!r} value {str(v)[:80]!r} is not a finite number")


def write_follows(frame: pd.DataFrame, follows: list[dict[str, Any]], cond: np.ndarray) -> None:
    """Each following column of a decoded ``frame`` set to its class's value (``cond``: class
    indices), keeping the column's dtype."""
    idx = np.asarray(cond, dtype=np.int64)
    for f in follows:
        col = frame[f["column"]]
        if pd.api.types.is_numeric_dtype(col):
            frame[f["column"]] = np.asarray(f["values"], dtype=col.dtype)[idx]
        else:
            values = np.asarray([str(v) for v in f["values"]], dtype=object)[idx]
            frame[f["column"]] = pd.Series(values, index=frame.index).astype(col.dtype)


def follows_module(follows: list[dict[str, Any]], info: dict[str, Any], n_classes: int) -> Any:
    """A torch module ``(numeric, categorical, cond) -> (numeric, categorical)`` that writes the
    following columns from the class, with the same ops in torch and in the exported graph."""
    import torch
    from torch import nn

    numeric = [c["name"] for c in info["numeric"]]
    cats = {c["name"]: [str(v) for v in c["vocab"]] for c in info["categorical"]}
    check_follows(follows, n_classes, numeric, cats)

    class FollowsLabel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            num_cols, num_vals, cat_cols, cat_vals = [], [], [], []
            for f in follows:
                if f["column"] in numeric:
                    num_cols.append(numeric.index(f["column"]))
                    num_vals.append([float(v) for v in f["values"]])
                else:
                    vocab = cats[f["column"]]
                    cat_cols.append(list(cats).index(f["column"]))
                    cat_vals.append([vocab.index(str(v)) for v in f["values"]])
            self.has_num, self.has_cat = bool(num_cols), bool(cat_cols)
            # [class, column] lookup tables
            num_table = torch.tensor(num_vals, dtype=torch.float64).T if num_vals else torch.zeros(0, dtype=torch.float64)
            cat_table = torch.tensor(cat_vals, dtype=torch.long).T if cat_vals else torch.zeros(0, dtype=torch.long)
            self.register_buffer("num_table", num_table.contiguous())
            self.register_buffer("cat_table", cat_table.contiguous())
            self.register_buffer("num_take", torch.tensor(_take(len(numeric), num_cols), dtype=torch.long))
            self.register_buffer("cat_take", torch.tensor(_take(len(cats), cat_cols), dtype=torch.long))

        def forward(
            self, num: torch.Tensor, cat: torch.Tensor, cond: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            if self.has_num:
                num = torch.cat([num, self.num_table[cond]], dim=1).index_select(1, self.num_take)
            if self.has_cat:
                cat = torch.cat([cat, self.cat_table[cond]], dim=1).index_select(1, self.cat_take)
            return num, cat

    return FollowsLabel()


def _take(width: int, replaced: list[int]) -> list[int]:
    """Column j of ``[out, new]`` for the output: ``new``'s k-th column in place of ``replaced[k]``."""
    take = list(range(width))
    for k, j in enumerate(replaced):
        take[j] = width + k
    return take
