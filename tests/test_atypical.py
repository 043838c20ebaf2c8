"""The atypical-cells metric of advgen evade: changed cells in the tails of real traffic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from advgen.adversarial.cli import ATYPICAL_NOTE, atypical_note
from advgen.metrics.evasion import atypical


def _frames():
    reference = pd.DataFrame({"v": np.arange(1000, dtype=np.int64), "c": ["a", "b"] * 500, "f": np.linspace(0, 1, 1000)})
    orig = pd.DataFrame({"v": [500, 500, 500, 500], "c": ["a", "a", "a", "a"], "f": [0.5] * 4})
    adv = pd.DataFrame({"v": [999, 600, 500, 0], "c": ["a", "z", "b", "a"], "f": [0.5] * 4})
    return reference, orig, adv


def test_changed_cells_beyond_the_middle_99_percent_or_unseen_categories_count():
    reference, orig, adv = _frames()
    out = atypical(reference, orig, adv, ["v", "c", "f"])
    # v: 999 and 0 lie beyond the 0.5th/99.5th percentiles (4.995, 994.005) though within min..max; 600 does not;
    # c: "z" is no real value, "b" is; f did not change
    assert out["changed_cells"] == 5
    assert out["cells"] == 3 and out["columns"] == {"v": 2, "c": 1}
    assert out["share"] == pytest.approx(3 / 5)


def test_nothing_changed_is_no_share():
    reference, orig, _ = _frames()
    out = atypical(reference, orig, orig.copy(), ["v", "c", "f"])
    assert out["share"] is None and out["changed_cells"] == 0


def test_the_note_names_the_attack_and_its_columns_above_the_threshold():
    heavy = {"share": 0.45, "cells": 45, "changed_cells": 100, "columns": {"MajorOperatingSystemVersion": 30, "CheckSum": 15}}
    light = {"share": ATYPICAL_NOTE / 2, "cells": 1, "changed_cells": 10, "columns": {"x": 1}}
    note = atypical_note({"gan": {"atypical": heavy}, "mimicry": {"atypical": light}})
    assert note is not None and note.startswith("45% of the cells gan changed now hold values beyond")
    assert "MajorOperatingSystemVersion, CheckSum" in note
    assert atypical_note({"gan": {"atypical": light}, "random": {}}) is None
