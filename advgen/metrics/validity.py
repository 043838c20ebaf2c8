"""Validity: the share of samples passing the domain's rules; higher is better, the ideal is the real data's rate.

The rules are the validators the domain and plugins register (:mod:`advgen.domain`); :func:`validity`
reports the pass rate overall, per group (``schema``, ``cross-column``, ...) and per rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # advgen.domain imports torch, which the other metrics do without
    from advgen.domain import Validator


def validity(samples: Any, validators: Sequence[Validator], n: int) -> dict[str, Any]:
    """Validator pass rate overall, per group and per rule (higher is better; ideal: the real data's rate)."""
    from advgen.domain import run_validators

    return run_validators(samples, list(validators), n).to_dict()
