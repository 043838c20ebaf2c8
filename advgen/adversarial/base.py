"""What every attack shares: the black box it may query, the threat model, the space rows live in.

An attack is a class with one verb, ``generate(rows) -> disguised rows`` (as in ART's evasion attacks);
its threat model (the detector it may query, what each row may change, its query budget) is fixed in
the constructor. Baselines are attacks too, so every attack goes through the same report.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from advgen.adversarial.blackbox import BlackBox
from advgen.adversarial.space import AttackSpace
from advgen.adversarial.threat import ThreatModel

RowClasses = Callable[[pd.DataFrame], np.ndarray]


class EvasionAttack:
    """Base class: ``generate(x)`` returns rows like ``x`` (same columns, same order, index reset) whose
    functional cells are those of ``x``, bit for bit."""

    name = "attack"

    def __init__(self, blackbox: BlackBox, space: AttackSpace, threat: ThreatModel, row_classes: RowClasses, seed: int = 0):
        self.blackbox = blackbox
        self.space = space
        self.threat = threat
        self.row_classes = row_classes
        self.seed = int(seed)

    def masks(self, x: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(may change, may only grow) per row and feature column."""
        classes = self.row_classes(x)
        self.threat.check(classes)
        return self.threat.mask(classes), self.threat.up_mask(classes)

    def generate(self, x: pd.DataFrame) -> pd.DataFrame:  # pragma: no cover - interface
        raise NotImplementedError
