"""Random perturbation: modifiable features drawn at random within the ranges seen in real traffic.

Numerics are drawn uniformly between the column's smallest and largest real value, flags and
categoricals uniformly among the values seen, then the row is repaired against the rules. K
candidates a row, the one the black box scores most normal kept (as :mod:`~advgen.adversarial.mimicry`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from advgen.adversarial.base import EvasionAttack
from advgen.adversarial.mimicry import best_of_k, repaired
from advgen.adversarial.space import put


class RandomPerturbation(EvasionAttack):
    name = "random"

    def __init__(self, *args, k: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        if k < 1:
            raise ValueError("k must be >= 1")
        self.k = int(k)

    def candidate(self, x: pd.DataFrame, mask: np.ndarray, up: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
        return uniform_draw(self.space, x, mask, up, rng)

    def generate(self, x: pd.DataFrame) -> pd.DataFrame:
        return best_of_k(self, x)


def uniform_draw(space: Any, x: pd.DataFrame, mask: np.ndarray, up: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """``x`` with its modifiable cells (``mask``) drawn uniformly within their real ranges, repaired."""
    out = x.copy()
    for j, col in enumerate(space.names):
        rows = np.flatnonzero(mask[:, j])
        if len(rows) == 0:
            continue
        plan = space.transform.plan(col)
        if plan["encoding"] == "onehot":
            vocab = np.asarray(plan["vocab"], dtype=object if plan["kind"] == "categorical" else np.float64)
            put(out, col, rows, vocab[rng.integers(0, len(vocab), len(rows))])
        else:
            put(out, col, rows, rng.uniform(plan["min"], plan["max"], len(rows)))
    return repaired(space, out, x, mask, up)
