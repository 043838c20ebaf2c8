"""Attack rows in, disguised rows out, without torch: the steps around an exported evasion graph.

The graph of an exported evasion model holds the generator and the tabular decoder (tensor math); the
rest of what ``advgen evade`` does to a row is data-dependent pandas work, and runs here, driven by the
manifest's ``evasion`` section (see :mod:`advgen_export.evasion_schema`):

- each row's attack class (its label, through the category map) says whether the model disguises it
  at all (the classes the run trained on; other rows are written unchanged, by the rule ``advgen evade``
  follows, :func:`advgen.adversarial.rows.rows_to_disguise`) and gives its mask: which feature columns
  it may change and which may only grow (the threat model of the run);
- rows are checked (:meth:`EvasionSpace.check_rows`: a category or flag value never seen in training is
  refused, where ``advgen evade`` would encode it as zeros) and encoded as the attack encodes them;
- after the graph, the decoded modifiable cells go on top of the attack row, the row is repaired to the
  rules fitted on real traffic, and every functional cell is copied from the attack row, bit for bit,
  as the last step.

Encoding, repair and the last two steps are the very code ``advgen evade`` runs
(:mod:`advgen.adversarial.rows`, :class:`advgen.adversarial.constraints.Repair`), NumPy and pandas
only; the one difference is the normal CDF of the quantile encoding, scipy's there and
:mod:`advgen_tabular.quantile`'s here (scipy is not installed with the runtime).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from advgen.adversarial.constraints import Repair
from advgen.adversarial.rows import category_codes, encode_rows, realise, rows_to_disguise, slot_spans
from advgen.errors import AdvgenError
from advgen_export.manifest import ModelError
from advgen_tabular.quantile import ndtr, ndtri


class EvasionSpace:
    """The manifest's ``evasion`` section at work: masks, encoding, decoding and repair of rows."""

    def __init__(self, section: Mapping[str, Any], outputs: Sequence[Mapping[str, Any]]):
        self.columns = [(str(a), str(b)) for a, b in section["columns"]]
        self.names = [c for c, _ in self.columns]
        self.label = str(section["label"])
        self.category_map = dict(section["category_map"]) if section.get("category_map") else None
        self.threat = section["threat"]
        # the classes the generator was trained on; None: an export from before they were recorded
        self.trained = [str(c) for c in section["classes"]] if section.get("classes") else None
        self.plans = [dict(p) for p in section["encoding"]]
        self.dim = max((end for _, end in slot_spans(self.plans).values()), default=0)
        self.repair = Repair(section["rules"], self.columns)
        self.outputs = [dict(o) for o in outputs]

    # --- checking and classifying rows -----------------------------------------------------------

    def split(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(each row's class, which rows the model disguises, notes): the rows of the classes it was trained
        on; without a label column every row is taken as the trained class, with a note."""
        try:
            return rows_to_disguise(self.classes(df) if self.label in df.columns else None, self.trained, len(df), self.label)
        except AdvgenError as exc:
            raise ModelError(str(exc)) from None

    def check_rows(self, df: pd.DataFrame, source: str, take: np.ndarray | None = None) -> None:
        """Refuse, in one line, rows the model cannot disguise: a missing feature column (or label column,
        where the model cannot do without it: :meth:`split`), a numeric cell that is missing or not a
        number, a category or flag value never seen in training. ``take``: only those rows' cells are
        checked (the others are written unchanged); row numbers are positions in ``df``."""
        need = self.names if self.trained is not None and len(self.trained) == 1 else [*self.names, self.label]
        missing = [c for c in need if c not in df.columns]
        if missing:
            shown = ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
            raise ModelError(
                f"{source} lacks {len(missing)} column(s) the model was trained on: {shown} "
                f"(it needs the {len(self.names)} feature columns and the label column {self.label!r})"
            )
        positions = np.arange(len(df)) if take is None else np.flatnonzero(take)
        df = df if take is None else df.iloc[positions]
        for p in self.plans:
            col = df[p["name"]]
            if p["encoding"] == "quantile":
                values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
                bad = np.flatnonzero(~np.isfinite(values))
                if bad.size:
                    raise ModelError(
                        f"{source}: numeric column {p['name']!r} holds a missing or non-numeric value in row "
                        f"{int(positions[bad[0]])} ({col.iloc[int(bad[0])]!r}); {bad.size} row(s) in all"
                    )
                continue
            codes = category_codes(p, col)
            bad = np.flatnonzero(codes < 0)
            if bad.size:
                unseen = sorted({str(v) for v in col.iloc[bad].tolist()})
                shown = ", ".join(repr(v) for v in unseen[:5]) + (" ..." if len(unseen) > 5 else "")
                raise ModelError(
                    f"{source}: column {p['name']!r} holds value(s) never seen in training: {shown} "
                    f"(row {int(positions[bad[0]])}; {bad.size} row(s) in all); the model knows {len(p['vocab'])} values"
                )

    def classes(self, df: pd.DataFrame) -> np.ndarray:
        """Each row's attack class: its label, mapped to a category where the run maps labels."""
        labels = df[self.label].astype(str)
        if self.category_map:
            labels = labels.map(self.category_map).fillna(labels)
        return labels.astype(str).to_numpy()

    def masks(self, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(may change, may only grow) per row and feature column, from the run's threat model."""
        n = len(classes)
        mask = np.zeros((n, len(self.names)), dtype=bool)
        up = np.zeros((n, len(self.names)), dtype=bool)
        for cls in np.unique(classes) if n else []:
            rows = classes == cls
            modifiable = self._modifiable(str(cls))
            if not modifiable:
                raise ModelError(
                    f"nothing is modifiable for attack class {str(cls)!r} under the {self.threat['name']} threat model: "
                    "every feature is functional, so no row of that class can be disguised"
                )
            directions = self.threat["directions"].get(str(cls), self.threat["default_directions"])
            mask[rows] = [c in modifiable for c in self.names]
            up[rows] = [directions.get(c) == "up" for c in self.names]
        return mask, up

    def _modifiable(self, cls: str) -> set[str]:
        if cls in self.threat["modifiable"]:
            return set(self.threat["modifiable"][cls])
        if self.threat["default"] is not None:
            return set(self.threat["default"])
        known = ", ".join(sorted(self.threat["modifiable"])) or "none"
        raise ModelError(
            f"the {self.threat['name']} threat model says nothing about attack class {cls!r} (it covers: {known}); "
            f"check the label column {self.label!r}"
        )

    # --- encoding ----------------------------------------------------------------------------------

    def encode(self, df: pd.DataFrame) -> np.ndarray:
        """Rows (checked by :meth:`check_rows`) to encoded float32 ``[n, dim]``, as the attack encodes them."""
        return encode_rows(self.plans, df, cdf=ndtr, ppf=ndtri)

    # --- after the graph ----------------------------------------------------------------------------

    def decoded(self, produced: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The graph's outputs as typed columns (``advgen_tabular.transform.frame_from_arrays``):
        integers, values rounded to their resolution, categories from their vocabulary."""
        cols: dict[str, np.ndarray] = {}
        for desc in self.outputs:
            values = produced[desc["name"]]
            vocabs = desc.get("vocabularies") or [None] * len(desc["columns"])
            dtypes = desc.get("dtypes") or [None] * len(desc["columns"])
            decimals = desc.get("decimals") or [None] * len(desc["columns"])
            for j, name in enumerate(desc["columns"]):
                if vocabs[j] is not None:
                    idx = np.asarray(values[:, j], dtype=np.int64)
                    vocab = np.asarray([str(v) for v in vocabs[j]], dtype=object)
                    if idx.size and (idx.min() < 0 or idx.max() >= len(vocab)):
                        raise ModelError(f"the graph gave column {name!r} a category index outside its vocabulary")
                    cols[name] = vocab[idx]
                    continue
                v = values[:, j].astype(np.float64)
                if dtypes[j] == "int64":
                    cols[name] = np.rint(v).astype(np.int64)
                elif decimals[j] is not None:
                    cols[name] = np.round(v, int(decimals[j]))
                else:
                    cols[name] = v
        return cols

    def realise(self, decoded: Mapping[str, np.ndarray], orig: pd.DataFrame, mask: np.ndarray, up: np.ndarray) -> pd.DataFrame:
        """The disguised rows: decoded modifiable cells on top of ``orig`` (which keeps every column it
        has), repaired, then every functional cell copied from ``orig``; the index is reset."""
        return realise(decoded, orig, mask, up, self.names, self.repair)
