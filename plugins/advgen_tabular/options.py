"""The tabular domain's options (``--option KEY=VALUE``, ``[options]`` in a run's TOML): each one's
default and what it accepts, in one table, and :func:`check_options`, which turns an unknown name or
a value of the wrong type or out of range into one :class:`~advgen.errors.AdvgenError` line before
anything is read or allocated.

Sizes have upper bounds well above anything the nets or the transform need (the defaults are 256
wide, 2 deep, 2,049 knots); together, ``hidden x hidden x depth`` (and the discriminator's) is bounded
too, since each bound alone still lets a net take more memory than any machine has.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from advgen.errors import AdvgenError
from advgen_tabular.nets import CATEGORICAL_MODES
from advgen_tabular.streamed import STORAGES, parse_budget
from advgen_tabular.transform import ENCODINGS

#: weights of a net's hidden layers (width x width x depth) at most: 4 GiB of float32, about 20 GiB
#: with gradients, Adam's moments and the average of the generator's weights
MAX_WEIGHTS = 1 << 30


@dataclass(frozen=True)
class Option:
    """What one option accepts. ``kind``: ``int`` and ``number`` (finite, within ``low``..``high``;
    ``open_low``/``open_high`` exclude the bound), ``bool``, ``choice`` (one of ``choices``), ``path``
    (a file name, or unset), ``size`` (bytes, or text such as ``2GB``; unset means the default)."""

    default: Any
    kind: str
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple[str, ...] = ()

    def expected(self) -> str:
        """What the option accepts, in words (the end of its error line)."""
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        if self.kind == "path":
            return "the path of a file (a string)"
        if self.kind == "size":
            return "a size such as 2GB or 1.5GiB, or a positive number of bytes"
        noun = "an integer" if self.kind == "int" else "a number"
        if self.high is None:  # only a lower bound (tau): open at 0
            return "a positive finite number" if self.kind == "number" else "a positive integer"
        return f"{noun} in {'(' if self.open_low else '['}{self.low}, {self.high}{')' if self.open_high else ']'}"

    def check(self, key: str, value: Any) -> Any:
        """``value`` as the option's type (an integral float becomes an int), or one error line."""
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
        elif self.kind == "choice":
            if isinstance(value, str) and value in self.choices:
                return value
        elif self.kind == "path":
            if value is None or (isinstance(value, str) and value.strip()):
                return value
        elif self.kind == "size":
            if value is None or isinstance(value, str) or (_is_number(value) and math.isfinite(value) and value > 0):
                return value
        else:
            number = _number(value, integral=self.kind == "int")
            if number is not None and self._within(number):
                return number if self.kind == "int" else float(number)
        raise AdvgenError(f"option {key} must be {self.expected()}, got {_shown(value)}")

    def _within(self, x: float) -> bool:
        if self.low is not None and (x <= self.low if self.open_low else x < self.low):
            return False
        if self.high is not None and (x >= self.high if self.open_high else x > self.high):
            return False
        return True


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _number(value: Any, integral: bool) -> int | float | None:
    """A finite int or float from ``value`` (for ``integral``, an int, also from 1e3), else None."""
    if not _is_number(value):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    x = float(value)
    if not math.isfinite(x):
        return None
    if integral:
        return int(x) if x.is_integer() else None
    return x


def _int(default: int, low: int, high: int) -> Option:
    return Option(default, "int", low, high)


OPTIONS: dict[str, Option] = {
    # data
    "schema": Option(None, "path"),  # TOML file overriding column kinds and roles (see advgen datasets docs)
    # auto | memory | disk: disk streams the table and encodes it once into the run folder
    "storage": Option("auto", "choice", choices=STORAGES),
    # e.g. "2GB": what the disk path may hold, and auto's threshold; None: half the RAM (at least 1GiB)
    "memory_budget": Option(None, "size"),
    # transform
    "encoding": Option("quantile", "choice", choices=ENCODINGS),  # numeric encoding
    "n_quantiles": _int(2049, 2, 100_000),  # knots of each quantile function
    # encode the categoricals jointly when they form at most this many combinations (0 or 1: never)
    "joint_max": _int(1000, 0, 1_000_000),
    "snap_fractions": Option(True, "bool"),  # decode rates that are fractions of a count as such
    # decode a column other columns compute (a mean, a rate, a copy) as computed (relations.py)
    "derive": Option(True, "bool"),
    # decode a column whose values are multiples of a step or of another column as such (multiples.py)
    "align": Option(True, "bool"),
    # decode a pair of code columns so that the combinations the validators forbid do not occur (codes.py)
    "keep_pairs": Option(True, "bool"),
    # decode rows so that the orderings the validators found hold (orders.py); off by default: it lifts
    # validity but moves the upper columns' distributions (docs/tabular.md, "Sixth round")
    "keep_order": Option(False, "bool"),
    # a conditional run writes a feature that has one value per class from the class (follows.py)
    "follow_label": Option(True, "bool"),
    # quantile numerics: up to this many exact values per column picked as categories (0: off)
    "point_masses": _int(16, 0, 256),
    # ... those holding this share of the column's rows, or of one label's
    "point_share": Option(0.05, "number", 0, 1, open_low=True),
    # nets
    "hidden": _int(256, 1, 32_768),
    "depth": _int(2, 1, 64),
    "embed_dim": _int(32, 1, 4096),
    "categorical": Option("sample", "choice", choices=CATEGORICAL_MODES),
    "tau": Option(1.0, "number", 0, None, open_low=True),  # temperature of the category softmax
    "d_hidden": _int(256, 1, 32_768),
    "d_depth": _int(2, 1, 64),
    # 0.1 scored the same (boosting AUC 0.991 vs 0.990 at 16k steps) and costs 40% more time
    "dropout": Option(0.0, "number", 0, 1, open_high=True),
    "spectral_norm": Option(True, "bool"),
    "pac": _int(1, 1, 64),  # rows packed into one discriminator decision (PacGAN)
    # class enters the discriminator by projection too (worse on NSL-KDD, see docs)
    "projection": Option(False, "bool"),
}

DEFAULT_OPTIONS: dict[str, Any] = {key: option.default for key, option in OPTIONS.items()}


def check_options(given: Any) -> dict[str, Any]:
    """Every option, the defaults overridden by ``given`` (a run config's ``options``), checked: an
    unknown name, a value of the wrong type or out of range, or nets too large is one clear line."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise AdvgenError(f"tabular options must be a table of KEY = VALUE, got {given!r}")
    unknown = sorted(str(k) for k in set(given) - set(OPTIONS))
    if unknown:
        raise AdvgenError(
            f"unknown tabular option(s) {', '.join(unknown)}; known: {', '.join(sorted(OPTIONS))}"
        )
    opts = {key: option.check(key, given.get(key, option.default)) for key, option in OPTIONS.items()}
    for width, depth in (("hidden", "depth"), ("d_hidden", "d_depth")):
        weights = opts[width] ** 2 * opts[depth]
        if weights > MAX_WEIGHTS:
            raise AdvgenError(
                f"options {width} x {width} x {depth} = {opts[width]:,} x {opts[width]:,} x {opts[depth]} = "
                f"{weights:,} weights is too large (at most {MAX_WEIGHTS:,}); lower {width} or {depth}"
            )
    if opts["memory_budget"] is not None:
        parse_budget(opts["memory_budget"])  # text it cannot read, or under 1GiB, is its one line
    return opts
