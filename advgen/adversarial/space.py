"""The encoded space an attack works in, and the way back to typed, valid rows.

Rows are encoded with advgen's tabular transform (numerics quantile-encoded to standard-normal values,
flags and categoricals one-hot; each categorical on its own, so that one may stay functional while
another changes). A generator writes the encoded slots of the modifiable columns; :meth:`AttackSpace.realise`
decodes them with the transform's tensor decoder (types, ranges, resolution), copies every functional
cell bit for bit from the attack row, and repairs the row against the rules fitted on real traffic
(:class:`~advgen.adversarial.constraints.Repair`). So the functional features are identical, not
just close, and every value is one the data type allows.

Encoding accepts values the fit never saw (a category new in a test file, a count beyond the range):
unknown categories encode as an all-zero one-hot and numerics are clipped to the fitted range, so a
saved generator can disguise new rows.

The steps on either side of the decoder are NumPy (:mod:`advgen.adversarial.rows`), shared with the
torch-free runtime that disguises rows with an exported generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.special import ndtr, ndtri

from advgen.adversarial.constraints import Repair
from advgen.adversarial.rows import encode_rows, realise, slot_spans
from advgen.errors import InvalidDataError
from advgen_tabular.transform import TableTransform
from advgen_tabular.validators import build_validators, fit_rules

NUMERIC_KINDS = ("continuous", "count", "rate")


@dataclass(frozen=True)
class Slot:
    """Where one column lives in the encoded row."""

    column: str
    start: int
    end: int
    onehot: bool


class AttackSpace:
    """Encoding, decoding and repair for one table's feature columns."""

    def __init__(self, transform: TableTransform, rules: list[dict[str, Any]], columns: Sequence[tuple[str, str]], label: str):
        self.transform = transform
        self.rules = rules
        self.columns = [(str(a), str(b)) for a, b in columns]
        self.label = label
        self.repair = Repair(rules, self.columns)
        self.validators = build_validators(rules)
        spans = slot_spans(transform.plans)
        self.slots: dict[str, Slot] = {
            p["name"]: Slot(p["name"], *spans[p["name"]], p["encoding"] == "onehot") for p in transform.plans
        }
        self.dim = max((s.end for s in self.slots.values()), default=0)
        self._decoder = transform.decoder()
        self._info = transform.output_info()

    @classmethod
    def fit(cls, df: pd.DataFrame, columns: Sequence[tuple[str, str]], label: str, seed: int = 0) -> AttackSpace:
        """Fit the encoding and the rules on real rows (the detector's training data and the attack rows)."""
        columns = [(str(a), str(b)) for a, b in columns]
        transform = TableTransform(encoding="quantile", joint_max=0).fit(df, columns, seed=seed)
        decimals = {p["name"]: p.get("decimals") for p in transform.plans if p["kind"] in NUMERIC_KINDS}
        rules = fit_rules(df, columns, label, decimals=decimals, seed=seed, min_positive=True)
        return cls(transform, rules, columns, label)

    def to_dict(self) -> dict[str, Any]:
        return {"transform": self.transform.to_dict(), "rules": self.rules, "columns": [list(c) for c in self.columns],
                "label": self.label}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AttackSpace:
        try:
            return cls(TableTransform.from_dict(d["transform"]), list(d["rules"]), [tuple(c) for c in d["columns"]], d["label"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidDataError(f"malformed attack space in the checkpoint: {exc}") from None

    @property
    def names(self) -> list[str]:
        return [c for c, _ in self.columns]

    def slot_index(self, columns: Sequence[str]) -> np.ndarray:
        """Encoded positions of ``columns``, in encoded order."""
        want = set(columns)
        pos = [i for s in self.slots.values() if s.column in want for i in range(s.start, s.end)]
        return np.asarray(pos, dtype=np.int64)

    # --- encoding --------------------------------------------------------------------------------

    def encode(self, df: pd.DataFrame) -> np.ndarray:
        """Rows to encoded float32 ``[n, dim]``, each value at the middle of its interval (no noise)."""
        return encode_rows(self.transform.plans, df, cdf=ndtr, ppf=ndtri)

    # --- decoding and repair ---------------------------------------------------------------------

    def decode(self, enc: np.ndarray | torch.Tensor) -> pd.DataFrame:
        """Encoded rows to typed feature rows (argmax of one-hots, quantile decoding, rounding)."""
        from advgen_tabular.transform import frame_from_arrays

        t = enc if torch.is_tensor(enc) else torch.as_tensor(np.asarray(enc, dtype=np.float32))
        with torch.no_grad():
            num, cat = self._decoder(t.detach().to("cpu", torch.float32))
        return frame_from_arrays(num.numpy(), cat.numpy(), self._info)

    def realise(
        self, enc: np.ndarray | torch.Tensor, orig: pd.DataFrame, mask: np.ndarray, up: np.ndarray | None = None
    ) -> pd.DataFrame:
        """The disguised rows: decoded modifiable cells on top of ``orig`` (functional cells copied bit
        for bit), then repaired. ``orig`` keeps all its columns (label included); the index is reset."""
        decoded = self.decode(enc)
        return realise({c: decoded[c].to_numpy() for c in self.names}, orig, mask, up, self.names, self.repair)

    def validity(self, df: pd.DataFrame) -> np.ndarray:
        """Boolean per row: passes every rule fitted on real traffic."""
        ok = np.ones(len(df), dtype=bool)
        for v in self.validators:
            ok &= np.asarray(v.check(df), dtype=bool)
        return ok


def put(df: pd.DataFrame, col: str, rows: np.ndarray, values: np.ndarray) -> None:
    """``df[col][rows] = values``, keeping the column's dtype (integers rounded, text as text)."""
    cur = df[col].to_numpy(copy=True)
    vals = np.asarray(values)
    if cur.dtype == object or vals.dtype == object or vals.dtype.kind in "US":
        cur = cur.astype(object)
        vals = vals.astype(str).astype(object) if vals.dtype.kind in "US" else vals.astype(object)
    elif cur.dtype.kind in "iu":
        if vals.dtype.kind == "f":
            vals = np.rint(vals)
        vals = vals.astype(cur.dtype)
    elif cur.dtype.kind == "b":
        vals = vals.astype(bool)
    else:
        vals = vals.astype(cur.dtype)
    cur[rows] = vals
    df[col] = cur
