"""Best-of-K mimicry: borrow the modifiable features of real normal rows.

For each attack row, K random normal rows lend it their modifiable features (the functional ones stay);
the detector is asked about each candidate (K queries a row) and the candidate it scores most normal is
kept. With labels only, a row stops at its first candidate the detector calls normal (fewer queries).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from typing import Any

from advgen.adversarial.base import EvasionAttack
from advgen.adversarial.rows import restore_functional
from advgen.adversarial.space import put


class Mimicry(EvasionAttack):
    name = "mimicry"

    def __init__(self, *args, normal_rows: pd.DataFrame, k: int = 64, **kwargs):
        super().__init__(*args, **kwargs)
        if k < 1:
            raise ValueError("k must be >= 1")
        if len(normal_rows) == 0:
            raise ValueError("mimicry needs normal rows to copy from")
        self.normal_rows = normal_rows.reset_index(drop=True)
        self.k = int(k)

    def candidate(self, x: pd.DataFrame, mask: np.ndarray, up: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
        return borrow(self.space, x, mask, up, self.normal_rows, rng)

    def generate(self, x: pd.DataFrame) -> pd.DataFrame:
        return best_of_k(self, x)


def borrow(space: Any, x: pd.DataFrame, mask: np.ndarray, up: np.ndarray, donors: pd.DataFrame,
           rng: np.random.Generator) -> pd.DataFrame:
    """``x`` with the modifiable cells (``mask``) of one random donor row each, repaired; functional cells kept."""
    lent = donors.iloc[rng.integers(0, len(donors), len(x))].reset_index(drop=True)
    out = x.copy()
    for j, col in enumerate(space.names):
        m = mask[:, j]
        if m.any():
            put(out, col, np.flatnonzero(m), lent[col].to_numpy()[m])
    return repaired(space, out, x, mask, up)


def repaired(space: Any, cand: pd.DataFrame, x: pd.DataFrame, mask: np.ndarray, up: np.ndarray) -> pd.DataFrame:
    """Candidate rows repaired against the rules, functional cells restored."""
    out = space.repair(cand, x, mask, up)
    restore_functional(out, x, mask, space.names)
    return out


def best_of_k(attack: EvasionAttack, x: pd.DataFrame) -> pd.DataFrame:
    """``attack.k`` candidates a row from ``attack.candidate``; keep the one the black box scores most normal.

    Stops asking when the budget runs out: rows not asked about keep their best candidate so far (or stay
    as they were)."""
    x = x.reset_index(drop=True)
    mask, up = attack.masks(x)
    rng = np.random.default_rng(attack.seed)
    best = x.copy()
    best_score = np.full(len(x), np.inf)
    open_rows = np.arange(len(x))
    bb = attack.blackbox
    for _ in range(attack.k):
        if len(open_rows) == 0:
            break
        if bb.remaining is not None and bb.remaining < len(open_rows):
            open_rows = open_rows[: bb.remaining]
            if len(open_rows) == 0:
                break
        sub = x.iloc[open_rows].reset_index(drop=True)
        cand = attack.candidate(sub, mask[open_rows], up[open_rows], rng)
        score = bb.answer(cand, what=attack.name)
        better = score < best_score[open_rows]
        rows = open_rows[better]
        best_score[rows] = score[better]
        for col in x.columns:
            put(best, col, rows, cand[col].to_numpy()[better])
        if not bb.allow_proba:
            # labels only: a row the detector already calls normal needs no more questions
            open_rows = open_rows[best_score[open_rows] >= 0.5]
    return best
