"""Adversarial attack traffic: disguise attack rows so that a detector misses them, measure it, harden it.

- :func:`evade`: train a generator that rewrites the modifiable features of attack rows (functional
  features copied bit for bit, every row repaired to the rules of real traffic) against a black-box
  detector; baselines (mimicry, random perturbation) and metrics in the same report;
- :func:`disguise`: disguise new rows with a saved generator, without queries;
- :func:`harden`: retrain the detector on disguised rows, attack it again, repeat.

docs/adversarial.md explains the threat models, the attack and the figures.
"""

from typing import Any

__all__ = ["EvadeResult", "disguise", "evade", "harden", "load_generator"]


def __getattr__(name: str) -> Any:  # imported on first use: `advgen --help` lists the commands without torch
    if name in __all__:
        from advgen.adversarial import api

        return getattr(api, name)
    raise AttributeError(f"module 'advgen.adversarial' has no attribute {name!r}")
