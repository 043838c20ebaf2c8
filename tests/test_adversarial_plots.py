"""The figures of advgen evade and advgen harden (advgen/adversarial/plots.py)."""

from __future__ import annotations

import math
import sys

import pytest

from advgen.adversarial.plots import detection_table, plot_evasion, plot_hardening, write_figure

PNG = b"\x89PNG\r\n\x1a\n"


def _evade_report(judges=("decision-tree", "mlp")) -> dict:
    def metrics(after: float, shift: float) -> dict:
        return {"detection_rate": {"before": 0.98, "after": after},
                "transfer": {j: {"dr_orig": 0.9 - 0.1 * i, "dr_adv": after + shift * (i + 1), "eir": 0.0}
                             for i, j in enumerate(judges)}}

    return {"detector": {"name": "random-forest"}, "inputs": {"rows": 1234, "classes": {"dos": 1000, "probe": 234}},
            "attacks": {"gan": metrics(0.10, 0.2), "mimicry": metrics(0.60, 0.1), "random": metrics(0.95, 0.0)}}


def test_detection_table_puts_the_attacked_detector_first_then_the_judges():
    detectors, before, after = detection_table(_evade_report())
    assert detectors == ["random-forest", "decision-tree", "mlp"]
    assert before == [0.98, 0.9, 0.8]
    assert after["gan"] == pytest.approx([0.10, 0.30, 0.50])
    assert after["mimicry"] == pytest.approx([0.60, 0.70, 0.80])
    assert list(after) == ["gan", "mimicry", "random"]


def test_the_judge_that_repeats_the_attacked_detector_is_shown_once():
    report = _evade_report(judges=("random-forest", "decision-tree"))
    detectors, before, _ = detection_table(report)
    assert detectors == ["random-forest", "decision-tree"]
    assert before == [0.98, 0.8]


def test_a_judge_missing_from_one_attack_is_a_gap_not_an_error():
    report = _evade_report()
    del report["attacks"]["random"]["transfer"]["mlp"]
    _, _, after = detection_table(report)
    assert math.isnan(after["random"][2])


def test_evasion_figure_with_and_without_a_training_curve(tmp_path):
    history = [{"round": r, "queries": 500 + 100 * r, "evaded": r / 10, "substitute_agrees": 0.8} for r in range(1, 11)]
    assert plot_evasion(_evade_report(), history, tmp_path / "a.png").read_bytes()[:8] == PNG
    # a saved generator (no training) and no transfer judges: one panel
    assert plot_evasion(_evade_report(judges=()), [], tmp_path / "b.png").read_bytes()[:8] == PNG


def test_hardening_figure(tmp_path):
    rounds = [{"round": i, "dr_adversarial": 0.2 + 0.3 * i, "dr_clean": 0.95, "fpr_normal": 0.02 + 0.01 * i,
               "dr_adversarial_known_types": None} for i in range(3)]
    report = {"rounds": rounds, "detector": {"name": "random-forest"}, "inputs": {"test_attack_rows": 800}}
    assert plot_hardening(report, tmp_path / "h.png").read_bytes()[:8] == PNG


def test_without_matplotlib_nothing_is_written_and_the_user_is_told(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    said: list[str] = []
    target = tmp_path / "evasion.png"
    assert write_figure(lambda p: plot_evasion(_evade_report(), [], p), target, said.append) is None
    assert not target.exists()
    assert said == ["no evasion.png: plots need matplotlib (pip install 'advgen[plot]')"]
