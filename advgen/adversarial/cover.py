"""Cover rows for hardening: attack rows wearing the modifiable features of real normal traffic.

An attacker controls the modifiable features of its rows, so a detector that leans on them can be
fooled; a hardened detector should decide from the functional features an attack cannot change. Cover
rows teach it that: each training attack row is copied ``draws`` times with its modifiable cells taken
from random normal training rows (as best-of-K mimicry builds its candidates, but without asking the
detector anything), repaired against the rules, functional cells kept bit for bit, and labelled as an
attack. They cost no queries and cover, from the first round, the part of the attacker's reach that
looks most like normal traffic; the GAN rows of each round then cover what the attacker actually finds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from advgen.adversarial.base import RowClasses
from advgen.adversarial.mimicry import borrow
from advgen.adversarial.space import AttackSpace
from advgen.adversarial.threat import ThreatModel


def cover_rows(
    rows: pd.DataFrame, normal_rows: pd.DataFrame, space: AttackSpace, threat: ThreatModel, row_classes: RowClasses,
    *, draws: int = 1, seed: int = 0,
) -> pd.DataFrame:
    """``draws`` cover copies of every row of ``rows`` (``draws * len(rows)`` rows; none when draws is 0)."""
    if draws < 0:
        raise ValueError(f"draws must be >= 0, got {draws}")
    rows = rows.reset_index(drop=True)
    if draws == 0 or len(rows) == 0:
        return rows.iloc[:0].copy()
    if len(normal_rows) == 0:
        raise ValueError("cover rows need normal rows to borrow from")
    classes = row_classes(rows)
    threat.check(classes)
    mask, up = threat.mask(classes), threat.up_mask(classes)
    donors = normal_rows.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    return pd.concat([borrow(space, rows, mask, up, donors, rng) for _ in range(draws)], ignore_index=True)
