"""Attack rows into the attack's encoding, and disguised cells back onto attack rows, without torch.

Both sides of a disguise run these steps with the same data: ``advgen evade``
(:class:`advgen.adversarial.space.AttackSpace`, with the tabular transform's plans) and the torch-free
runtime (:class:`advgen_export.evasion_space.EvasionSpace`, with the copy of those plans an exported
model's manifest carries).

- :func:`encode_rows`: numerics to the middle of their standard-normal quantile interval, flags and
  categoricals one-hot, each column in its own slot (:func:`slot_spans`). A value outside a vocabulary
  encodes as an all-zero group, so a saved generator can disguise rows with categories new to it; the
  runtime refuses such rows beforehand instead (``EvasionSpace.check_rows``), as its model was checked
  only on values it knows.
- :func:`realise`: the decoded modifiable cells go on top of the attack rows, the rows are repaired to
  the rules of real traffic (:class:`advgen.adversarial.constraints.Repair`), and every functional cell
  is copied from the attack row, bit for bit, last.
- :func:`rows_to_disguise`: which rows a saved generator disguises (those of the classes it was trained
  on; the others are written unchanged), one rule for ``advgen evade --generator``,
  :func:`advgen.adversarial.api.disguise` and ``advgen-runtime disguise``.

NumPy and pandas only.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from advgen.errors import InvalidDataError
from advgen_tabular.quantile import quantile_encode, unrle


def slot_spans(plans: Sequence[Mapping[str, Any]]) -> dict[str, tuple[int, int]]:
    """Each column's ``(start, end)`` in the encoded row, in plan order: a one-hot group is as wide as
    its vocabulary, a numeric takes one slot."""
    spans, pos = {}, 0
    for p in plans:
        width = len(p["vocab"]) if p["encoding"] == "onehot" else 1
        spans[p["name"]] = (pos, pos + width)
        pos += width
    return spans


def category_codes(plan: Mapping[str, Any], col: pd.Series) -> np.ndarray:
    """Each cell's index in the plan's vocabulary (flags compared as numbers, categories as text), -1
    for a value the vocabulary lacks."""
    if plan["kind"] == "flag":
        keys = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
        levels = {float(v): i for i, v in enumerate(plan["vocab"])}
        return np.array([levels.get(float(k), -1) for k in keys], dtype=np.int64)
    vocab = pd.Index([str(v) for v in plan["vocab"]])
    return vocab.get_indexer(col.astype(str).to_numpy(dtype=object)).astype(np.int64)


def encode_rows(
    plans: Sequence[Mapping[str, Any]],
    df: pd.DataFrame,
    *,
    cdf: Callable[[np.ndarray], np.ndarray],
    ppf: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """Rows to encoded float32 ``[n, dim]``, each value at the middle of its interval (no noise).
    ``cdf``/``ppf``: the standard normal CDF and its inverse (:mod:`advgen_tabular.quantile`)."""
    spans = slot_spans(plans)
    dim = max((end for _, end in spans.values()), default=0)
    out = np.zeros((len(df), dim), dtype=np.float32)
    for p in plans:
        start, _ = spans[p["name"]]
        if p["name"] not in df.columns:
            raise InvalidDataError(f"the rows lack the column {p['name']!r}")
        col = df[p["name"]]
        if p["encoding"] == "onehot":
            codes = category_codes(p, col)
            hit = codes >= 0
            out[np.flatnonzero(hit), start + codes[hit]] = 1.0
        else:
            values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
            if not np.isfinite(values).all():
                raise InvalidDataError(f"numeric column {p['name']!r} holds missing or non-finite values")
            out[:, start] = quantile_encode(unrle(p["grid"]), p["decimals"], values, cdf=cdf, ppf=ppf)
    return out


def realise(
    decoded: Mapping[str, np.ndarray],
    orig: pd.DataFrame,
    mask: np.ndarray,
    up: np.ndarray | None,
    names: Sequence[str],
    repair: Callable[..., pd.DataFrame],
) -> pd.DataFrame:
    """The disguised rows: ``decoded`` modifiable cells (an array per feature column) on top of ``orig``,
    which keeps every column it has, label included; then ``repair(rows, orig, mask, up)``; then every
    functional cell copied from ``orig``. ``mask[i, j]``: row i may change ``names[j]``; ``up[i, j]``: only
    upwards. The index is reset."""
    base = orig.reset_index(drop=True)
    cols = {c: base[c].to_numpy() for c in base.columns}
    for j, col in enumerate(names):
        m = mask[:, j]
        if m.any():
            cols[col] = _merged(cols[col], np.asarray(decoded[col]), m)
    out = pd.DataFrame(cols, columns=base.columns)
    out = repair(out, base, mask, up)
    restore_functional(out, base, mask, names)
    return out


def _merged(cur: np.ndarray, new: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``cur`` with ``new`` written where ``rows`` (boolean), in ``cur``'s dtype (integers rounded)."""
    cur = cur.copy()
    if cur.dtype == object or new.dtype == object or new.dtype.kind in "US":
        cur = cur.astype(object)
        cur[rows] = new[rows].astype(object)
    elif cur.dtype.kind in "iu":
        cur[rows] = np.rint(new[rows]).astype(cur.dtype) if new.dtype.kind == "f" else new[rows].astype(cur.dtype)
    else:
        cur[rows] = new[rows].astype(cur.dtype)
    return cur


def restore_functional(out: pd.DataFrame, orig: pd.DataFrame, mask: np.ndarray, names: Sequence[str]) -> None:
    """Copy every functional cell from ``orig`` (the last word: no repair may move them)."""
    whole = [col for j, col in enumerate(names) if not mask[:, j].any()]
    if whole:
        out[whole] = orig[whole]
    for j, col in enumerate(names):
        keep = ~mask[:, j]
        if keep.any() and not keep.all():
            cur = out[col].to_numpy(copy=True)
            src = orig[col].to_numpy()
            if cur.dtype != src.dtype:
                cur = cur.astype(object) if src.dtype == object else cur.astype(src.dtype)
            cur[keep] = src[keep]
            out[col] = cur


def trained_text(trained: Sequence[str]) -> str:
    """The classes a generator was trained on, for a note: ``dos``, ``dos or probe``, ``dos, probe or r2l``."""
    shown = [str(c) for c in trained]
    if len(shown) > 4:
        return f"of the {len(shown)} classes the generator was trained on ({', '.join(shown[:4])}, ...)"
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"


def rows_to_disguise(
    classes: np.ndarray | None, trained: Sequence[str] | None, n: int, label: str,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(each row's class, which rows to disguise, notes) for a generator trained on the classes ``trained``.

    A generator disguises rows of the classes it was trained on; a row of any other class (the benign
    class, another attack, a label it never saw) is not its to disguise, and is written unchanged, with
    a note counting such rows. ``classes`` None: the rows have no label column ``label``, so every row
    is taken as the one trained class (with a note; refused when the generator knows several, as the
    class picks a row's mask). ``trained`` None: a generator saved before runs recorded their classes,
    which disguises every row, as it always did."""
    notes: list[str] = []
    if classes is None:
        if not trained:
            raise InvalidDataError(f"the rows lack the label column {label!r}, which gives each row's attack class")
        if len(trained) > 1:
            raise InvalidDataError(
                f"the rows lack the label column {label!r}, and the generator was trained on {len(trained)} classes "
                f"({', '.join(map(str, trained[:6]))}{', ...' if len(trained) > 6 else ''}): add the label column, "
                "as a row's class says what it may change"
            )
        notes.append(f"the rows have no label column {label!r}: all {n:,} were taken as {trained[0]}, the class the "
                     "generator was trained on")
        return np.full(n, str(trained[0]), dtype=object), np.ones(n, dtype=bool), notes
    classes = np.asarray(classes).astype(str)
    if trained is None:
        return classes, np.ones(n, dtype=bool), notes
    take = np.isin(classes, [str(c) for c in trained])
    other = int((~take).sum())
    if other:
        notes.append(f"{other:,} row{'s are' if other != 1 else ' is'} not {trained_text(trained)} and "
                     f"{'were' if other != 1 else 'was'} written unchanged")
    return classes, take, notes


def merge_rows(orig: pd.DataFrame, take: np.ndarray, adv: pd.DataFrame) -> pd.DataFrame:
    """``orig`` with the rows where ``take`` (boolean) replaced by ``adv``'s rows, in order, each column in
    ``orig``'s dtype: every other row's cells are ``orig``'s, untouched. The index is reset."""
    base = orig.reset_index(drop=True)
    idx = np.flatnonzero(take)
    cols = {}
    for col in base.columns:
        new = adv[col].to_numpy()
        spread = np.empty(len(base), dtype=new.dtype if new.dtype.kind in "biuf" else object)
        spread[idx] = new
        cols[col] = _merged(base[col].to_numpy(), spread, np.asarray(take, dtype=bool))
    return pd.DataFrame(cols, columns=base.columns)
