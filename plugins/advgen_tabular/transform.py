"""Reversible mixed-type encoding of table rows for a GAN, with the decoder as tensor math.

Numeric columns (kinds ``continuous``, ``count``, ``rate``) are encoded, by default, with a
*dequantised quantile-to-normal* map. The decoder sends a standard-normal ``y`` to ``Q(Phi(y))``,
the column's empirical quantile function, tabulated at knots evenly spaced in ``y`` (levels
``Phi(y_k)``) and linear between them: one gather and one lerp, and no ``erf``, so that torch and
onnxruntime give bit-identical results. Encoding inverts it, and a value ``v`` is sent to a point
drawn (with Gaussian density) from the whole interval that decodes to ``v`` after rounding to the
column's resolution (integers for counts, two decimals for NSL-KDD's rates, found from the data;
:mod:`advgen_tabular.quantile`, NumPy only, so the torch-free runtime encodes rows the same way).
So point masses (90% zeros in most traffic counts) become intervals instead of spikes, every
column's encoded marginal is close to N(0, 1), heavy tails (``src_bytes`` up to 1e9) cost nothing,
and any generator output decodes inside the column's observed range. A value that holds a large share
of a column, or of one label's rows, also gets a slot in a one-hot group beside the column's code
(``point_masses``, :mod:`advgen_tabular.spikes`): the generator picks it like a category, and the
quantile code decodes only the rows whose pick is the group's "other" slot.

Two alternatives stay selectable for comparison (``encoding="log"``: log1p and standardise;
``encoding="msn"``: CTGAN's mode-specific normalisation with a variational Gaussian mixture);
``benchmarks/tabular_quality.py --option encoding=log`` measures them. On NSL-KDD the quantile
encoding gave the best fidelity of the three (docs/tabular.md has the figures).

Flags and categoricals are one-hot groups. When the categoricals form few distinct combinations in
the data (NSL-KDD: 234 protocol/service/flag triples), they are encoded jointly, as one categorical
over the combinations seen. Rates that are fractions ``k / count`` of a count column in the real rows
(found from the data) decode as such fractions of the decoded count, and a column that other columns
compute (``a = k * N / D``, :mod:`advgen_tabular.relations`) decodes as computed from them (the
generator still draws it; its draw is replaced). Decoding takes the argmax of
each group, so it accepts hard one-hots, probabilities or raw logits alike.

The decoder is one :class:`TableDecoder` module (gathers, lerps, clamps, rounding) shared by the
NumPy path (:meth:`TableTransform.inverse_transform`) and the ONNX export, so both give the same
numbers. It decodes in float64 (the encoded rows stay float32): integers up to 2**53 and Unix
timestamps come out at full resolution, where float32 would keep 24 bits (multiples of 128 around
1.6e9). Everything fitted is plain JSON (:meth:`TableTransform.to_dict`), kept in a run's spec.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd
import torch
from scipy.special import ndtr, ndtri
from torch import nn

from advgen.errors import InvalidDataError
from advgen_tabular.multiples import MAX_DIVISOR_VALUES
from advgen_tabular.pairs import MAX_CELLS
from advgen_tabular.quantile import Y_MAX, quantile_encode, unrle
from advgen_tabular.rules import fraction_ok, rule_columns
from advgen_tabular.spikes import SHARE, find_point_masses, mode_codes

# version of the JSON layout of a fitted transform (bumped whenever decoding changes meaning); 3 added
# point masses (a quantile plan's "spikes"), 4 columns computed from others ("derived"), 5 orderings
# kept at decoding ("orders"), 6 columns decoded as multiples ("multiples"), 7 pairs of codes kept
# ("pairs"), so an older transform still reads as one without them
FORMAT = 7
READABLE_FORMATS = (2, 3, 4, 5, 6, 7)
NUMERIC_KINDS = ("continuous", "count", "rate")
DISCRETE_KINDS = ("flag", "categorical")
ENCODINGS = ("quantile", "log", "msn")
MAX_DECIMALS = 6
FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_TINY = float(np.finfo(np.float32).tiny)
# the decoder's arithmetic and its numeric output, torch and ONNX alike; the encoded rows (the generator's
# input and output) stay float32
DECODE_DTYPE = torch.float64
# integral columns are written as int64 only up to this magnitude (decoding may round 2**63 - 1 up to
# 2**63, which overflows int64); larger ones are written as floats
INT64_SAFE = 2.0**62
# a rate is snapped to fractions of a count when this share of real rows already is one ...
FRACTION_MIN_PASS = 0.999
# ... and no more than this share of rows with the count shuffled independently would be
FRACTION_MAX_SHUFFLED = 0.98


@dataclass(frozen=True)
class Segment:
    """A slice of the encoded row and how a generator should produce it."""

    column: str
    start: int
    end: int
    activation: str  # "linear", "tanh" or "softmax"


def _decimals(values: np.ndarray, kind: str) -> int | None:
    """The fewest decimals that represent every value exactly (counts: 0), or None when none do.

    "Exactly" is relative to the value: 3.0000000001 is 3, but 4e-7 is not 0 (a column of values
    all below 1e-6 used to get 0 decimals and decode as zeros)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0
    for d in range(0, MAX_DECIMALS + 1):
        scaled = finite * 10.0**d
        if np.all(np.abs(scaled - np.round(scaled)) <= 1e-6 * np.abs(scaled)):
            return d
    return 0 if kind == "count" else None


def _rle(values: np.ndarray) -> list[list[float]]:
    """Run-length encoding ``[[value, repeat], ...]``: quantile grids of traffic data are mostly runs."""
    out: list[list[float]] = []
    for v in values.tolist():
        if out and out[-1][0] == v:
            out[-1][1] += 1
        else:
            out.append([float(v), 1])
    return out


def _json_scalar(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    return v


class TableTransform:
    """Fit on a DataFrame, encode rows to a float32 matrix, decode generator output to typed rows.

    ``columns`` is a list of ``(name, kind)``; kinds are those of the dataset schema. Columns are
    encoded in the given order; decoding returns them in the same order.
    """

    def __init__(
        self,
        encoding: str = "quantile",
        n_quantiles: int = 2049,
        msn_modes: int = 10,
        joint_max: int = 1000,
        snap_fractions: bool = True,
        point_masses: int = 0,
        point_share: float = SHARE,
    ):
        if encoding not in ENCODINGS:
            raise InvalidDataError(f"unknown numeric encoding {encoding!r}; choose one of {', '.join(ENCODINGS)}")
        if n_quantiles < 2:
            raise InvalidDataError("n_quantiles must be at least 2")
        self.encoding = encoding
        self.n_quantiles = int(n_quantiles)
        self.msn_modes = int(msn_modes)
        self.joint_max = int(joint_max)
        self.snap_fractions = bool(snap_fractions)
        # quantile columns only: up to this many exact values per column get a one-hot slot (spikes.py)
        self.point_masses = int(point_masses) if encoding == "quantile" else 0
        self.point_share = float(point_share)
        self.plans: list[dict[str, Any]] = []
        self.order: list[str] = []
        self.fractions: list[dict[str, Any]] = []
        # relations a = k * N / D (advgen_tabular.relations), inputs first; set after fitting, as the
        # validators find them
        self.derived: list[dict[str, Any]] = []
        # orderings a <= b the decoder keeps ({"a", "b"}, in the order it applies them: see order_chain)
        self.orders: list[dict[str, str]] = []
        # columns decoded as multiples of a step or of another column (advgen_tabular.multiples), steps first
        self.multiples: list[dict[str, Any]] = []
        # pairs of code columns whose forbidden combinations the decoder rewrites (advgen_tabular.codes)
        self.pairs: list[dict[str, Any]] = []

    # --- fitting -------------------------------------------------------------------------------

    def fit(
        self, df: pd.DataFrame, columns: Iterable[tuple[str, str]], seed: int = 0, groups: Iterable[Any] | None = None
    ) -> TableTransform:
        """Fit on ``df``'s ``columns``. ``groups`` (one label per row, optional) lets a value common
        within one label become a point mass of its column even when it is rare overall."""
        self.plans = []
        group_arr = None if groups is None else np.asarray([str(g) for g in groups], dtype=object)
        if group_arr is not None and group_arr.shape[0] != len(df):
            raise InvalidDataError("groups must give one label per row")
        columns = list(columns)
        if not columns:
            raise InvalidDataError("nothing to encode: the table has no feature columns")
        if len(df) == 0:
            raise InvalidDataError("cannot fit the transform on an empty table")
        for name, kind in columns:
            if name not in df.columns:
                raise InvalidDataError(f"column {name!r} is missing from the data")
            if kind in NUMERIC_KINDS:
                values = pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=np.float64)
                if not np.isfinite(values).all():
                    raise InvalidDataError(f"numeric column {name!r} holds missing or non-finite values")
                if np.abs(values).max() > FLOAT32_MAX:
                    # the encodings and the ONNX parity checks are float32 (and such values are never data)
                    raise InvalidDataError(
                        f"numeric column {name!r} holds values up to {np.abs(values).max():.3g}, beyond the "
                        f"float32 range ({FLOAT32_MAX:.3g}) that advgen supports; rescale it (log10, or "
                        f"another unit) or drop it"
                    )
                nonzero = np.abs(values[values != 0])
                if nonzero.size and np.mean(nonzero < FLOAT32_TINY) > 0.01:
                    # nor below float32's smallest normal number
                    raise InvalidDataError(
                        f"numeric column {name!r} holds values as small as {nonzero.min():.3g}, below the "
                        f"float32 range ({FLOAT32_TINY:.3g}) that advgen supports; rescale it (another "
                        f"unit, or log10) or drop it"
                    )
                self.plans.append(self._fit_numeric(name, kind, values, seed, group_arr))
            elif kind in DISCRETE_KINDS:
                self.plans.append(self._fit_discrete(name, kind, df[name]))
            else:
                raise InvalidDataError(f"column {name!r} has unknown kind {kind!r}")
        self.order = [name for name, _ in columns]
        self._fit_joint(df)
        self.fractions = self._fit_fractions(df, seed) if self.snap_fractions else []
        return self

    def _fit_joint(self, df: pd.DataFrame) -> None:
        """Encode the categoricals as one categorical over the combinations seen, when they are few.

        Independent one-hots let a generator pair a service with a protocol it never runs on; one
        softmax over the observed combinations models their joint distribution directly and keeps
        every decoded row's combination a real one.
        """
        cats = [p for p in self.plans if p["kind"] == "categorical"]
        if len(cats) < 2 or self.joint_max < 2:
            return
        names = [p["name"] for p in cats]
        combos = df[names].astype(str).drop_duplicates().sort_values(names)
        if len(combos) > min(self.joint_max, max(50, 0.05 * len(df))):
            return
        table = [
            [cats[j]["vocab"].index(v) for j, v in enumerate(row)] for row in combos.itertuples(index=False)
        ]
        joint = {
            "name": "|".join(names),
            "kind": "joint",
            "encoding": "onehot",
            "members": [{"name": p["name"], "vocab": p["vocab"]} for p in cats],
            "vocab": table,
        }
        first = self.plans.index(cats[0])
        self.plans = [p for p in self.plans if p["kind"] != "categorical"]
        self.plans.insert(first, joint)

    def _fit_fractions(self, df: pd.DataFrame, seed: int) -> list[dict[str, Any]]:
        """Rates that are fractions ``k / count`` of a count column in (almost) every row.

        Decoding rounds such a rate to the nearest fraction of its decoded count, as the rate's
        own resolution (two decimals) is rounded: a rate of 0.5 with a count of 1 is no traffic
        record. A pair is kept only when independent shuffling of the two columns breaks it (the
        count carries information about the rate), and each rate takes the most informative count.
        """
        rng = np.random.default_rng(seed)
        n = len(df)
        rates = [p for p in self.plans if p["kind"] == "rate" and p.get("decimals") is not None]
        counts = [p for p in self.plans if p["kind"] == "count" and p.get("decimals") == 0 and p["min"] >= 0]
        out = []
        for r in rates:
            rv = df[r["name"]].to_numpy(dtype=np.float64)
            best: tuple[float, str] | None = None
            for c in counts:
                cv = df[c["name"]].to_numpy(dtype=np.float64)
                if np.mean(fraction_ok(rv, cv, r["decimals"])) < FRACTION_MIN_PASS:
                    continue
                shuffled = float(np.mean(fraction_ok(rv, cv[rng.permutation(n)], r["decimals"])))
                if shuffled <= FRACTION_MAX_SHUFFLED and (best is None or shuffled < best[0]):
                    best = (shuffled, c["name"])
            if best is not None:
                out.append({"rate": r["name"], "count": best[1], "decimals": int(r["decimals"])})
        return out

    def _fit_numeric(
        self, name: str, kind: str, values: np.ndarray, seed: int, groups: np.ndarray | None = None
    ) -> dict[str, Any]:
        lo, hi = float(values.min()), float(values.max())
        plan: dict[str, Any] = {
            "name": name,
            "kind": kind,
            "encoding": self.encoding,
            "min": lo,
            "max": hi,
            "decimals": _decimals(values, kind),
        }
        if self.encoding == "quantile":
            spikes = find_point_masses(values, groups, limit=self.point_masses, share=self.point_share)
            # with point masses, the quantile code carries only the other values ("other" rows), so any
            # code decodes to one of them and the generator need not tie the code to its slot draw
            # (the column's minimum and maximum stay its end knots, so values of a file larger than the
            # rows fitted on, between a point mass and the nearest other value, still decode)
            others = values[~np.isin(values, spikes)] if spikes else values
            # when the point masses hold every value, an "other" draw decodes as the whole column does
            # (steps between its values), not along the line from min to max (3.5/7 gave 4.2)
            rest = np.concatenate([others, [lo, hi]]) if spikes and others.size else values
            grid = np.quantile(rest, quantile_levels(self.n_quantiles))
            grid = np.maximum.accumulate(grid)  # guard against float noise breaking monotonicity
            plan["grid"] = _rle(grid)
            if spikes:
                plan["spikes"] = spikes
        elif self.encoding == "log":
            shift = lo
            t = np.log1p(values - shift) if kind != "rate" else values
            plan.update(shift=shift, log=kind != "rate", mean=float(t.mean()), std=float(t.std() or 1.0))
        else:
            plan.update(_fit_msn(values, self.msn_modes, seed))
        return plan

    @staticmethod
    def _fit_discrete(name: str, kind: str, series: pd.Series) -> dict[str, Any]:
        if kind == "flag":
            values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
            if not np.isfinite(values).all():
                raise InvalidDataError(f"flag column {name!r} holds missing or non-numeric values")
            vocab: list[Any] = sorted({_json_scalar(v) for v in np.unique(values).tolist()})
            vocab = [int(v) if float(v).is_integer() else float(v) for v in vocab]
        else:
            vocab = sorted(series.astype(str).unique().tolist())
        return {"name": name, "kind": kind, "encoding": "onehot", "vocab": vocab}

    # --- layout --------------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return sum(plan_width(p) for p in self.plans)

    @property
    def columns(self) -> list[str]:
        return list(self.order)

    @property
    def numeric_columns(self) -> list[str]:
        """Columns of the decoder's float output: numerics and flags, in table order."""
        return _numeric_columns(self.to_dict())

    @property
    def categorical_columns(self) -> list[str]:
        """Columns of the decoder's index output: categoricals, in table order."""
        return [c["name"] for c in _categorical_members(self.to_dict())]

    def vocabulary(self, name: str) -> list[Any]:
        """The values a categorical or flag column decodes to."""
        for c in _categorical_members(self.to_dict()):
            if c["name"] == name:
                return list(c["vocab"])
        return list(self.plan(name)["vocab"])

    def plan(self, name: str) -> dict[str, Any]:
        for p in self.plans:
            if p["name"] == name:
                return p
        raise KeyError(name)

    def segments(self) -> list[Segment]:
        out: list[Segment] = []
        pos = 0
        for p in self.plans:
            w = plan_width(p)
            if p["encoding"] == "onehot":
                out.append(Segment(p["name"], pos, pos + w, "softmax"))
            elif p["encoding"] == "msn":
                out.append(Segment(p["name"], pos, pos + 1, "tanh"))
                out.append(Segment(p["name"], pos + 1, pos + w, "softmax"))
            else:
                out.append(Segment(p["name"], pos, pos + 1, "linear"))
                if w > 1:  # point masses: [other, spikes...]
                    out.append(Segment(p["name"], pos + 1, pos + w, "softmax"))
            pos += w
        return out

    # --- encoding ------------------------------------------------------------------------------

    def transform(
        self, df: pd.DataFrame, rng: np.random.Generator | None = None, dequantize: bool = True
    ) -> np.ndarray:
        """Encode rows. With ``dequantize`` (training), a value is spread uniformly over the encoded
        interval that decodes to it; without, it goes to the middle of that interval."""
        if not self.plans:
            raise InvalidDataError("the transform has not been fitted")
        rng = rng if rng is not None else np.random.default_rng(0)
        n = len(df)
        blocks: list[np.ndarray] = []
        for p in self.plans:
            names = [m["name"] for m in p["members"]] if p["kind"] == "joint" else [p["name"]]
            for name in names:
                if name not in df.columns:
                    raise InvalidDataError(f"column {name!r} is missing from the data")
            col = df[names] if p["kind"] == "joint" else df[p["name"]]
            if p["encoding"] == "onehot":
                blocks.append(_onehot(p, col))
                continue
            values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
            if not np.isfinite(values).all():
                raise InvalidDataError(f"numeric column {p['name']!r} holds missing or non-finite values")
            if p["encoding"] == "quantile":
                y = quantile_encode(unrle(p["grid"]), p["decimals"], values, cdf=ndtr, ppf=ndtri,
                                    rng=rng if dequantize else None)
                codes = mode_codes(values, p["spikes"]) if p.get("spikes") else None
                if codes is not None:
                    # a point mass's code is never decoded: noise (training) or 0, independent of the value
                    on = codes > 0
                    y[on] = np.clip(rng.standard_normal(int(on.sum())), -Y_MAX, Y_MAX) if dequantize else 0.0
                blocks.append(y.reshape(n, 1))
                if codes is not None:
                    blocks.append(_onehot_codes(codes, 1 + len(p["spikes"])))
            elif p["encoding"] == "log":
                t = np.log1p(np.maximum(values - p["shift"], 0.0)) if p["log"] else values
                blocks.append(((t - p["mean"]) / p["std"]).astype(np.float32).reshape(n, 1))
            else:
                blocks.append(_msn_encode(p, values, rng))
        return np.concatenate(blocks, axis=1).astype(np.float32, copy=False)

    # --- decoding ------------------------------------------------------------------------------

    def decoder(self) -> TableDecoder:
        return TableDecoder(self.to_dict())

    def decode_arrays(self, x: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Encoded rows to ``(numeric float64 [N, n_num], category index int64 [N, n_cat])``."""
        t = torch.as_tensor(np.asarray(x, dtype=np.float32) if not torch.is_tensor(x) else x)
        with torch.no_grad():
            num, cat = self.decoder()(t.detach().to("cpu", torch.float32))
        return num.numpy(), cat.numpy()

    def inverse_transform(self, x: np.ndarray | torch.Tensor) -> pd.DataFrame:
        num, cat = self.decode_arrays(x)
        return frame_from_arrays(num, cat, self.output_info())

    def output_info(self) -> dict[str, Any]:
        """What the decoder's two outputs hold, enough to build typed rows without torch."""
        d = self.to_dict()
        by_name = {p["name"]: p for p in self.plans}
        numeric = [by_name[name] for name in _numeric_columns(d)]
        cats = _categorical_members(d)
        return {
            "numeric": [
                {
                    "name": p["name"],
                    "kind": p["kind"],
                    "dtype": "int64" if _is_integral(p) else "float64",
                    "decimals": p.get("decimals") if p["kind"] != "flag" else 0,
                }
                for p in numeric
            ],
            "categorical": [{"name": p["name"], "vocab": list(p["vocab"])} for p in cats],
            "order": list(self.order),
        }

    # --- serialisation -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "encoding": self.encoding,
            "n_quantiles": self.n_quantiles,
            "msn_modes": self.msn_modes,
            "joint_max": self.joint_max,
            "snap_fractions": self.snap_fractions,
            "point_masses": self.point_masses,
            "point_share": self.point_share,
            "plans": self.plans,
            "order": self.order,
            "fractions": self.fractions,
            "derived": self.derived,
            "orders": self.orders,
            "multiples": self.multiples,
            "pairs": self.pairs,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TableTransform:
        _check_format(d)
        t = cls(
            d["encoding"],
            d.get("n_quantiles", 2049),
            d.get("msn_modes", 10),
            d.get("joint_max", 1000),
            d.get("snap_fractions", True),
            d.get("point_masses", 0),
            d.get("point_share", SHARE),
        )
        t.plans = [dict(p) for p in d["plans"]]
        t.order = list(d["order"])
        t.fractions = [dict(f) for f in d.get("fractions", [])]
        t.derived = [dict(r) for r in d.get("derived", [])]
        t.orders = [dict(r) for r in d.get("orders", [])]
        t.multiples = [dict(r) for r in d.get("multiples", [])]
        t.pairs = [dict(r) for r in d.get("pairs", [])]
        return t


def _check_format(d: dict[str, Any]) -> None:
    if d.get("format") not in READABLE_FORMATS:
        raise InvalidDataError(
            f"this run's table transform has format {d.get('format')!r}; this advgen-tabular reads formats "
            f"{', '.join(map(str, READABLE_FORMATS))} (retrain the run with this version)"
        )


def plan_width(plan: dict[str, Any]) -> int:
    """Encoded values of one plan: a one-hot's vocabulary; msn's scalar and modes; a quantile code, plus
    its point-mass group ``[other, spikes...]`` when it has point masses."""
    if plan["encoding"] == "onehot":
        return len(plan["vocab"])
    if plan["encoding"] == "msn":
        return 1 + len(plan["means"])
    spikes = plan.get("spikes") or []
    return 1 + (1 + len(spikes) if spikes else 0)


def _onehot_codes(idx: np.ndarray, width: int) -> np.ndarray:
    """Rows of ``width`` zeros with a one at each ``idx``."""
    out = np.zeros((idx.shape[0], width), dtype=np.float32)
    out[np.arange(idx.shape[0]), idx] = 1.0
    return out


def _numeric_columns(d: dict[str, Any]) -> list[str]:
    kinds = {p["name"] for p in d["plans"] if p["kind"] not in ("categorical", "joint")}
    return [name for name in d["order"] if name in kinds]


def _categorical_members(d: dict[str, Any]) -> list[dict[str, Any]]:
    """Every categorical column (joint groups expanded) with its vocabulary, in table order."""
    found: dict[str, dict[str, Any]] = {}
    for p in d["plans"]:
        if p["kind"] == "categorical":
            found[p["name"]] = {"name": p["name"], "vocab": p["vocab"]}
        elif p["kind"] == "joint":
            for m in p["members"]:
                found[m["name"]] = {"name": m["name"], "vocab": m["vocab"]}
    return [found[name] for name in d["order"] if name in found]


def _is_integral(plan: dict[str, Any]) -> bool:
    if plan["kind"] == "flag":
        return all(float(v).is_integer() for v in plan["vocab"])
    return plan.get("decimals") == 0 and max(abs(plan["min"]), abs(plan["max"])) <= INT64_SAFE


def _codes(values: np.ndarray, vocab: list[Any]) -> np.ndarray:
    """Each value's index in ``vocab`` (compared as strings), -1 for a value the vocabulary lacks.

    Not ``pd.Categorical(values, categories=vocab).codes``: pandas deprecates building a Categorical
    from values outside its categories (``Pandas4Warning``, an error in pandas 4), and unseen values
    are exactly what the callers look for.
    """
    return pd.Index([str(v) for v in vocab]).get_indexer(np.asarray(values, dtype=object)).astype(np.int64)


def _onehot(plan: dict[str, Any], col: pd.Series | pd.DataFrame) -> np.ndarray:
    vocab = plan["vocab"]
    if plan["kind"] == "joint":
        # each member's index into its own vocabulary, combined into one integer per combination
        members = plan["members"]
        codes = np.zeros(len(col), dtype=np.int64)
        known = np.ones(len(col), dtype=bool)
        for m in members:
            member_idx = _codes(col[m["name"]].astype(str).to_numpy(), m["vocab"])
            known &= member_idx >= 0
            codes = codes * len(m["vocab"]) + np.maximum(member_idx, 0)
        table = np.asarray(vocab, dtype=np.int64).reshape(len(vocab), len(members))
        table_codes = np.zeros(len(vocab), dtype=np.int64)
        for j, m in enumerate(members):
            table_codes = table_codes * len(m["vocab"]) + table[:, j]
        lookup = pd.Series(np.arange(len(vocab)), index=table_codes)
        idx = np.where(known, pd.Series(codes).map(lookup).fillna(-1).to_numpy(dtype=np.int64), -1)
        keys = col.astype(str).to_numpy()
        keys = np.array(["/".join(r) for r in keys[idx < 0]], dtype=object) if (idx < 0).any() else keys[:0]
        if (idx < 0).any():
            raise InvalidDataError(
                f"columns {plan['name'].replace('|', '/')} hold combinations never seen when fitting: "
                + ", ".join(sorted(set(keys.tolist()))[:10])
            )
    elif plan["kind"] == "flag":
        keys = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
        levels = np.asarray([float(v) for v in vocab])
        idx = np.searchsorted(levels, keys).clip(0, len(levels) - 1)
        idx = np.where(levels[idx] == keys, idx, -1)
    else:
        keys = col.astype(str).to_numpy()
        idx = _codes(keys, vocab)
    if (idx < 0).any():
        unseen = sorted({str(k) for k in np.asarray(keys)[idx < 0]})
        raise InvalidDataError(
            f"column {plan['name']!r} holds values never seen when fitting: {', '.join(unseen[:10])}"
        )
    return _onehot_codes(idx, len(vocab))


def quantile_levels(n_knots: int) -> np.ndarray:
    """Probability levels of the knots: ``Phi`` of ``n_knots`` points evenly spaced on [-Y_MAX, Y_MAX],
    the end knots pinned to the minimum and maximum."""
    levels = ndtr(np.linspace(-Y_MAX, Y_MAX, n_knots))
    levels[0], levels[-1] = 0.0, 1.0
    return levels


def _fit_msn(values: np.ndarray, modes: int, seed: int) -> dict[str, Any]:
    """CTGAN's mode-specific normalisation: a variational Gaussian mixture, modes of weight > 0.5%."""
    from sklearn.mixture import BayesianGaussianMixture

    rng = np.random.default_rng(seed)
    sample = values if values.size <= 20000 else rng.choice(values, 20000, replace=False)
    n_modes = int(min(modes, max(1, np.unique(sample).size)))
    gm = BayesianGaussianMixture(
        n_components=n_modes,
        weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=0.001,
        max_iter=100,
        random_state=seed,
    )
    gm.fit(sample.reshape(-1, 1))
    keep = gm.weights_ > 0.005
    if not keep.any():
        keep[np.argmax(gm.weights_)] = True
    means = gm.means_.reshape(-1)[keep]
    stds = np.sqrt(gm.covariances_.reshape(-1))[keep]
    return {"means": means.tolist(), "stds": np.maximum(stds, 1e-6).tolist(), "weights": gm.weights_[keep].tolist()}


def _msn_encode(plan: dict[str, Any], values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    means, stds = np.asarray(plan["means"]), np.asarray(plan["stds"])
    weights = np.asarray(plan["weights"])
    z = (values[:, None] - means[None, :]) / stds[None, :]
    logp = -0.5 * z**2 - np.log(stds)[None, :] + np.log(weights)[None, :]
    p = np.exp(logp - logp.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    cum = p.cumsum(axis=1)
    mode = (rng.random((values.shape[0], 1)) > cum).sum(axis=1).clip(0, len(means) - 1)
    alpha = np.clip((values - means[mode]) / (4 * stds[mode]), -0.99, 0.99)
    out = np.zeros((values.shape[0], 1 + len(means)), dtype=np.float32)
    out[:, 0] = alpha
    out[np.arange(values.shape[0]), 1 + mode] = 1.0
    return out


class TableDecoder(nn.Module):
    """Encoded rows ``[N, D]`` (any float dtype) to ``(numeric float64 [N, n_num], category index int64
    [N, n_cat])``, computed in float64: a float32 decode keeps 24 bits, so integers above 2**24 lost their
    low bits (PE checksums never odd) and Unix seconds came out as multiples of 128.

    Only elementary ops that export to ONNX and that onnxruntime computes bit for bit as torch does:
    index_select, indexing by a tensor, add, multiply, floor, clamp, round, argmax. The numeric output holds the numeric columns and the flags, in table order; the
    categorical output holds each categorical's index into its vocabulary, in table order.
    """

    def __init__(self, transform: dict[str, Any]):
        super().__init__()
        _check_format(transform)
        plans = transform["plans"]
        numeric_names = _numeric_columns(transform)
        cat_names = [c["name"] for c in _categorical_members(transform)]
        q_in, q_out, grids = [], [], []
        l_in, l_out, l_mean, l_std, l_shift, l_log = [], [], [], [], [], []
        self.msn: list[tuple[int, int, int, int]] = []  # (alpha pos, modes start, modes end, out index)
        msn_params = []
        self.flags: list[tuple[int, int, int]] = []  # (start, end, out index)
        flag_values = []
        self.cats: list[tuple[int, int, bool]] = []  # (start, end, joint?)
        cat_order: list[int] = []
        joint_tables = []
        lo, hi, scale, rounded = [0.0] * len(numeric_names), [0.0] * len(numeric_names), [], []
        scale = [1.0] * len(numeric_names)
        rounded = [False] * len(numeric_names)
        n_grid = int(transform.get("n_quantiles", 2049))
        spikes: list[tuple[int, int, list[float]]] = []  # (quantile column, group start, [0, values...])
        pos = 0
        for p in plans:
            w = plan_width(p)
            if p["kind"] not in ("categorical", "joint"):
                out_idx = numeric_names.index(p["name"])
                dec = p.get("decimals") if p["kind"] != "flag" else None
                lo[out_idx] = float(p.get("min", min(float(v) for v in p.get("vocab", [0.0]))))
                hi[out_idx] = float(p.get("max", max(float(v) for v in p.get("vocab", [0.0]))))
                scale[out_idx] = 10.0**dec if dec is not None else 1.0
                rounded[out_idx] = dec is not None
            if p["encoding"] == "quantile":
                grid = unrle(p["grid"])
                if grid.shape[0] != n_grid:
                    raise InvalidDataError(f"column {p['name']!r} has {grid.shape[0]} quantile knots, expected {n_grid}")
                if w > 1:
                    spikes.append((len(q_in), pos + 1, [0.0] + [float(v) for v in p["spikes"]]))
                q_in.append(pos)
                q_out.append(out_idx)
                grids.append(grid)
            elif p["encoding"] == "log":
                l_in.append(pos)
                l_out.append(out_idx)
                l_mean.append(p["mean"])
                l_std.append(p["std"])
                l_shift.append(p["shift"])
                l_log.append(bool(p["log"]))
            elif p["encoding"] == "msn":
                self.msn.append((pos, pos + 1, pos + w, out_idx))
                msn_params.append((p["means"], p["stds"]))
            elif p["kind"] == "flag":
                self.flags.append((pos, pos + w, out_idx))
                flag_values.append([float(v) for v in p["vocab"]])
            elif p["kind"] == "joint":
                self.cats.append((pos, pos + w, True))
                joint_tables.append(p["vocab"])
                cat_order += [cat_names.index(m["name"]) for m in p["members"]]
            else:
                self.cats.append((pos, pos + w, False))
                cat_order.append(cat_names.index(p["name"]))
            pos += w
        self.dim = pos
        self.n_grid = n_grid
        self.n_num = len(numeric_names)
        f64 = DECODE_DTYPE
        self.register_buffer("q_in", torch.tensor(q_in, dtype=torch.long))
        flat = np.stack(grids).reshape(-1) if grids else np.zeros(0)
        self.register_buffer("grid_flat", torch.tensor(flat, dtype=f64))
        self.register_buffer("grid_offset", torch.arange(len(grids), dtype=torch.long) * n_grid)
        # float64 constants shared by torch and the exported graph
        self.register_buffer("y_max", torch.tensor(Y_MAX, dtype=f64))
        self.register_buffer("inv_step", torch.tensor((n_grid - 1) / (2 * Y_MAX), dtype=f64))
        self.has_quantile = bool(q_in)
        self._point_mass_buffers(spikes, len(q_in))
        self.has_log = bool(l_in)
        self.has_fractions = bool(transform.get("fractions"))
        self.register_buffer("l_in", torch.tensor(l_in, dtype=torch.long))
        self.register_buffer("l_mean", torch.tensor(l_mean, dtype=f64))
        self.register_buffer("l_std", torch.tensor(l_std, dtype=f64))
        self.register_buffer("l_shift", torch.tensor(l_shift, dtype=f64))
        self.register_buffer("l_log", torch.tensor(l_log, dtype=torch.bool))
        for i, (m, sd) in enumerate(msn_params):
            self.register_buffer(f"msn_mean{i}", torch.tensor(m, dtype=f64))
            self.register_buffer(f"msn_std{i}", torch.tensor(sd, dtype=f64))
        for i, vals in enumerate(flag_values):
            self.register_buffer(f"flag_values{i}", torch.tensor(vals, dtype=f64))
        for i, table in enumerate(joint_tables):
            self.register_buffer(f"joint_table{i}", torch.tensor(table, dtype=torch.long))
        # decoded columns come out family by family; the permutations put them back in table order
        order = q_out + l_out + [m[3] for m in self.msn] + [f[2] for f in self.flags]
        self.register_buffer("perm", torch.tensor(np.argsort(np.asarray(order, dtype=np.int64)), dtype=torch.long))
        self.register_buffer(
            "cat_perm", torch.tensor(np.argsort(np.asarray(cat_order, dtype=np.int64)), dtype=torch.long)
        )
        self.register_buffer("lo", torch.tensor(lo, dtype=f64))
        self.register_buffer("hi", torch.tensor(hi, dtype=f64))
        self.register_buffer("scale", torch.tensor(scale, dtype=f64))
        self.register_buffer("rounded", torch.tensor(rounded, dtype=torch.bool))
        fr = transform.get("fractions", [])
        self.register_buffer("frac_rate", torch.tensor([numeric_names.index(f["rate"]) for f in fr], dtype=torch.long))
        self.register_buffer(
            "frac_count", torch.tensor([numeric_names.index(f["count"]) for f in fr], dtype=torch.long)
        )
        self.register_buffer("frac_scale", torch.tensor([10.0 ** f["decimals"] for f in fr], dtype=f64))
        # column j of the snapped output is column take[j] of [num, snapped rates]
        take = list(range(len(numeric_names)))
        for i, f in enumerate(fr):
            take[numeric_names.index(f["rate"])] = len(numeric_names) + i
        self.register_buffer("frac_take", torch.tensor(take, dtype=torch.long))
        self._derived_buffers(transform.get("derived", []), numeric_names, scale, rounded, lo, hi)
        self._order_buffers(transform.get("orders", []), numeric_names, scale, rounded, hi)
        self._multiple_buffers(transform.get("multiples", []), numeric_names, lo, hi)
        self._pair_buffers(transform.get("pairs", []), numeric_names)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # the argmaxes read the float32 rows; only the numeric slices are widened to float64
        x = x.to(torch.float32)
        n = x.shape[0]
        parts: list[torch.Tensor] = []
        if self.has_quantile:
            # Q(Phi(y)), tabulated at knots evenly spaced in y and linear between them
            y = x.index_select(1, self.q_in).to(DECODE_DTYPE)
            pos = ((y + self.y_max) * self.inv_step).clamp(0.0, float(self.n_grid - 1))
            k = torch.floor(pos).clamp(max=float(self.n_grid - 2))
            frac = pos - k
            idx = k.to(torch.long) + self.grid_offset.unsqueeze(0)
            a = self.grid_flat[idx]
            b = self.grid_flat[idx + 1]
            q = a + frac * (b - a)
            parts.append(self._point_masses(x, q) if self.has_spikes else q)
        if self.has_log:
            y = x.index_select(1, self.l_in).to(DECODE_DTYPE) * self.l_std + self.l_mean
            parts.append(torch.where(self.l_log, torch.expm1(y) + self.l_shift, y))
        for i, (a_pos, m0, m1, _) in enumerate(self.msn):
            mode = x[:, m0:m1].argmax(dim=1)
            mean = getattr(self, f"msn_mean{i}")[mode]
            std = getattr(self, f"msn_std{i}")[mode]
            alpha = x[:, a_pos].to(DECODE_DTYPE).clamp(-1.0, 1.0)
            parts.append((alpha * 4.0 * std + mean).unsqueeze(1))
        for i, (s, e, _) in enumerate(self.flags):
            parts.append(getattr(self, f"flag_values{i}")[x[:, s:e].argmax(dim=1)].unsqueeze(1))
        if parts:
            num = torch.cat(parts, dim=1).index_select(1, self.perm)
            num = torch.maximum(torch.minimum(num, self.hi), self.lo)
            num = torch.where(self.rounded, torch.round(num * self.scale) / self.scale, num)
            num = self._keep_pairs(num)
            num = self._snap_multiples(num)
            if self.has_fractions:
                num = self._snap_fractions(num)
            num = self._keep_orders(num)
            num = self._derive(num)
        else:
            num = x.new_zeros((n, 0), dtype=DECODE_DTYPE)
        cat_parts: list[torch.Tensor] = []
        j = 0
        for s, e, joint in self.cats:
            idx = x[:, s:e].argmax(dim=1)
            if joint:
                cat_parts.append(getattr(self, f"joint_table{j}")[idx])
                j += 1
            else:
                cat_parts.append(idx.unsqueeze(1))
        if cat_parts:
            cat = torch.cat(cat_parts, dim=1).index_select(1, self.cat_perm)
        else:
            cat = torch.zeros((n, 0), dtype=torch.long, device=x.device)
        return num, cat

    def _point_mass_buffers(self, spikes: list[tuple[int, int, list[float]]], n_quantile: int) -> None:
        """Lookup tables of the point-mass groups, padded to the widest: the group slots of every
        spiked column side by side (``spike_idx``; a narrower column's padding repeats its slot 0, which
        the argmax, taking the first of equal values, never picks over slot 0 itself: no mask to add,
        which took as long as the gather), the value of each slot (``spike_values``, flat) and where
        each column's slots start in it."""
        self.has_spikes = bool(spikes)
        width = max((len(v) for _, _, v in spikes), default=1)
        idx = np.zeros((len(spikes), width), dtype=np.int64)
        values: list[float] = []
        offset = []
        for i, (_, start, vals) in enumerate(spikes):
            idx[i, : len(vals)] = np.arange(start, start + len(vals))
            idx[i, len(vals) :] = start
            offset.append(len(values))
            values.extend(vals)
        self.spike_width = width
        self.n_spiked = len(spikes)
        self.register_buffer("spike_idx", torch.tensor(idx.reshape(-1), dtype=torch.long))
        self.register_buffer("spike_values", torch.tensor(values, dtype=DECODE_DTYPE))
        self.register_buffer("spike_offset", torch.tensor(offset, dtype=torch.long))
        self.register_buffer("spike_cols", torch.tensor([c for c, _, _ in spikes], dtype=torch.long))
        # column j of the result is column take[j] of [quantile values, spiked columns' values]
        take = list(range(n_quantile))
        for i, (c, _, _) in enumerate(spikes):
            take[c] = n_quantile + i
        self.register_buffer("spike_take", torch.tensor(take, dtype=torch.long))

    def _point_masses(self, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Quantile-decoded values ``q`` with each spiked column's value replaced by the point mass its
        group picks (argmax; slot 0, "other", keeps the quantile value)."""
        groups = x.index_select(1, self.spike_idx).reshape(-1, self.n_spiked, self.spike_width)
        slot = groups.argmax(dim=2)
        picked = self.spike_values[slot + self.spike_offset]
        kept = q.index_select(1, self.spike_cols)
        spiked = torch.where(slot == 0, kept, picked)
        return torch.cat([q, spiked], dim=1).index_select(1, self.spike_take)

    def _snap_fractions(self, num: torch.Tensor) -> torch.Tensor:
        """Round each fraction-like rate to ``k / count`` of its decoded count, then to its decimals."""
        rate = num.index_select(1, self.frac_rate)
        count = num.index_select(1, self.frac_count)
        safe = torch.clamp(count, min=1.0)
        snapped = torch.round(torch.round(rate * safe) / safe * self.frac_scale) / self.frac_scale
        snapped = torch.where(count > 0, snapped, torch.zeros_like(snapped))
        return torch.cat([num, snapped], dim=1).index_select(1, self.frac_take)

    def _multiple_buffers(self, rules: list[dict[str, Any]], names: list[str], lo: list[float], hi: list[float]) -> None:
        """Per ``multiple`` rule (in the order they apply): ``a``'s position, the divisor's (or its
        constant step), ``a``'s range, ``a``'s own step where it has one, and the permutation that puts
        the new ``a`` in its place."""
        # (step or 0, a's lo, hi, divisor column?, a's own step or 0, divisor snapped to its real values?)
        self.multiples: list[tuple[float, float, float, bool, float, bool]] = []
        for r in rules:
            _check_multiple(r)  # every rule, before any is read
        own_step = {r["a"]: float(r["step"]) for r in rules if r.get("of") is None}
        for i, r in enumerate(rules):
            missing = [c for c in rule_columns({**r, "type": "multiple"}) if c not in names]
            if missing:
                raise InvalidDataError(f"the transform decodes multiples of unknown column(s) {', '.join(missing)}")
            a = names.index(r["a"])
            self.register_buffer(f"multiple_a{i}", torch.tensor([a], dtype=torch.long))
            by_column = r.get("of") is not None
            seen = r.get("values") if by_column else None
            if by_column:
                b = names.index(r["of"])
                self.register_buffer(f"multiple_of{i}", torch.tensor([b], dtype=torch.long))
            if seen is not None:
                self._nearest_buffers(f"multiple_of{i}", seen, b, len(names))  # the divisor: one of its real values
            take = list(range(len(names)))
            take[a] = len(names)
            self.register_buffer(f"multiple_take{i}", torch.tensor(take, dtype=torch.long))
            self.multiples.append((
                0.0 if by_column else float(r["step"]), float(lo[a]), float(hi[a]), by_column,
                own_step.get(r["a"], 0.0) if by_column else 0.0, seen is not None,
            ))

    def _snap_multiples(self, num: torch.Tensor) -> torch.Tensor:
        """Each ``a`` becomes the multiple of its divisor nearest to it, one divisor further in where
        that leaves ``a``'s range; a row whose divisor is not above 0, or with no multiple in range,
        keeps its value, and so does a row whose divisor column drew a value that is no multiple of
        ``a``'s own step (an alignment of 6,705 where real ones are powers of two): ``a`` keeps its step.
        A divisor whose rule lists the divisor column's real values is first written as the nearest of
        them, so that no row is left with such a draw."""
        for i, (step, lo, hi, by_column, own, seen) in enumerate(self.multiples):
            a = num.index_select(1, getattr(self, f"multiple_a{i}"))
            d: torch.Tensor | float = step
            if by_column:
                divisor = num.index_select(1, getattr(self, f"multiple_of{i}"))
                if seen:
                    num, divisor = self._to_nearest(num, divisor, f"multiple_of{i}")
                d = torch.where(divisor > 0, divisor, torch.ones_like(divisor))
            q = torch.round(a / d) * d
            q = torch.where(q > hi, q - d, q)
            q = torch.where(q < lo, q + d, q)
            keep = (q >= lo) & (q <= hi)
            if by_column:
                keep = keep & (divisor > 0)
                if own > 0:
                    keep = keep & (torch.round(divisor / own) * own == divisor)
            new = torch.where(keep, q, a)
            num = torch.cat([num, new], dim=1).index_select(1, getattr(self, f"multiple_take{i}"))
        return num

    def _pair_buffers(self, pairs: list[dict[str, Any]], names: list[str]) -> None:
        """Per pair of codes kept (advgen_tabular.codes): the two positions, the allowed combinations
        and each given value's partner, as float64 rows to compare against, and the permutation that
        puts the new ``fix`` column in its place."""
        self.n_pairs = len(pairs)
        self.pair_snaps: list[bool] = []
        for i, r in enumerate(pairs):
            _check_pair(r)
            missing = [c for c in (r["given"], r["fix"]) if c not in names]
            if missing:
                raise InvalidDataError(f"the transform keeps pairs of unknown column(s) {', '.join(missing)}")
            g, f = names.index(r["given"]), names.index(r["fix"])
            allowed = torch.tensor(r["allowed"], dtype=DECODE_DTYPE).reshape(-1, 2)
            partner = torch.tensor(r["partner"], dtype=DECODE_DTYPE).reshape(-1, 2)
            self.register_buffer(f"pair_g{i}", torch.tensor([g], dtype=torch.long))
            self.register_buffer(f"pair_f{i}", torch.tensor([f], dtype=torch.long))
            self.register_buffer(f"pair_allowed_g{i}", allowed[:, 0].reshape(1, -1).contiguous())
            self.register_buffer(f"pair_allowed_f{i}", allowed[:, 1].reshape(1, -1).contiguous())
            self.register_buffer(f"pair_partner_g{i}", partner[:, 0].reshape(1, -1).contiguous())
            self.register_buffer(f"pair_partner_f{i}", partner[:, 1].reshape(1, -1).contiguous())
            take = list(range(len(names)))
            take[f] = len(names)
            self.register_buffer(f"pair_take{i}", torch.tensor(take, dtype=torch.long))
            # the given column snapped to the nearest of its values first (pairs written before these had none)
            seen = r.get("values")
            self.pair_snaps.append(seen is not None)
            if seen is not None:
                self._nearest_buffers(f"pair_g{i}", seen, g, len(names))

    def _nearest_buffers(self, name: str, values: list[float], column: int, n_columns: int) -> None:
        """Buffers of :meth:`_to_nearest` for one column: its sorted values, their midpoints, and the
        permutation that puts the new column in its place."""
        v = torch.tensor(values, dtype=DECODE_DTYPE)
        self.register_buffer(f"{name}_values", v)
        self.register_buffer(f"{name}_mid", ((v[1:] + v[:-1]) / 2).reshape(1, -1))
        take = list(range(n_columns))
        take[column] = n_columns
        self.register_buffer(f"{name}_take", torch.tensor(take, dtype=torch.long))

    def _to_nearest(self, num: torch.Tensor, col: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Column ``col`` of ``num`` as the nearest of its values (the first whose upper midpoint it is
        below): ``num`` with it written back, and the new column."""
        idx = (col > getattr(self, f"{name}_mid")).sum(dim=1)
        col = getattr(self, f"{name}_values").index_select(0, idx).unsqueeze(1)
        return torch.cat([num, col], dim=1).index_select(1, getattr(self, f"{name}_take")), col

    def _keep_pairs(self, num: torch.Tensor) -> torch.Tensor:
        """The given column as the nearest of its values (where the pair lists them), then a row whose
        pair of codes the rule forbids gets ``fix`` = the given value's partner (the given value, exact
        after rounding, matches one partner entry at most); a given value with no partner (a pair
        without ``values``) leaves the row as drawn."""
        for i in range(self.n_pairs):
            g = num.index_select(1, getattr(self, f"pair_g{i}"))
            if self.pair_snaps[i]:
                num, g = self._to_nearest(num, g, f"pair_g{i}")
            f = num.index_select(1, getattr(self, f"pair_f{i}"))
            ok = ((g == getattr(self, f"pair_allowed_g{i}")) & (f == getattr(self, f"pair_allowed_f{i}"))).any(dim=1, keepdim=True)
            match = g == getattr(self, f"pair_partner_g{i}")
            known = match.any(dim=1, keepdim=True)
            partner = (match.to(num.dtype) * getattr(self, f"pair_partner_f{i}")).sum(dim=1, keepdim=True)
            new = torch.where(ok | ~known, f, partner)
            num = torch.cat([num, new], dim=1).index_select(1, getattr(self, f"pair_take{i}"))
        return num

    def _order_buffers(
        self, orders: list[dict[str, Any]], names: list[str], scale: list[float], rounded: list[bool], hi: list[float]
    ) -> None:
        """Per ordering ``a <= b`` (in the order they apply): the two positions, the permutation that
        puts a new ``b`` in its place, and ``b``'s resolution and upper bound."""
        self.orders: list[tuple[float, bool, float]] = []  # (b's scale, rounded, hi)
        for i, r in enumerate(orders):
            if not isinstance(r, dict) or not isinstance(r.get("a"), str) or not isinstance(r.get("b"), str) or r["a"] == r["b"]:
                raise InvalidDataError(f"the transform's ordering {i} is malformed: {str(r)[:200]}")
            missing = [c for c in (r["a"], r["b"]) if c not in names]
            if missing:
                raise InvalidDataError(f"the transform orders unknown column(s) {', '.join(missing)}")
            b = names.index(r["b"])
            self.register_buffer(f"order_a{i}", torch.tensor([names.index(r["a"])], dtype=torch.long))
            self.register_buffer(f"order_b{i}", torch.tensor([b], dtype=torch.long))
            take = list(range(len(names)))
            take[b] = len(names)
            self.register_buffer(f"order_take{i}", torch.tensor(take, dtype=torch.long))
            self.orders.append((float(scale[b]), bool(rounded[b]), float(hi[b])))

    def _keep_orders(self, num: torch.Tensor) -> torch.Tensor:
        """Where a row breaks ``a <= b``, ``b`` becomes ``a`` (at ``b``'s resolution, never below ``a``
        unless ``b``'s range ends first); lower bounds first, so a chain ``shortest <= avg <= longest``
        holds as a whole. Nothing is lowered, so an ordering kept stays kept."""
        for i, (scale, rounded, hi) in enumerate(self.orders):
            a = num.index_select(1, getattr(self, f"order_a{i}"))
            b = num.index_select(1, getattr(self, f"order_b{i}"))
            raised = a
            if rounded:
                raised = torch.round(a * scale) / scale
                raised = torch.where(raised < a, raised + 1.0 / scale, raised)
            new = torch.where(a > b, torch.clamp(raised, max=hi), b)
            num = torch.cat([num, new], dim=1).index_select(1, getattr(self, f"order_take{i}"))
        return num

    def _derived_buffers(
        self,
        relations: list[dict[str, Any]],
        names: list[str],
        scale: list[float],
        rounded: list[bool],
        lo: list[float],
        hi: list[float],
    ) -> None:
        """Per relation ``a = k * N / D``: its inputs' positions, its constant and rounding, and the
        permutation that puts the computed column in the target's place; and which relations may move
        their numerator to keep the target in its range (:meth:`_keep_in_range`)."""
        self.derived: list[tuple[float, bool, float, bool]] = []  # (k, has denominator, scale, rounded)
        # (relation, k, numerator's scale, rounded, lo, hi, target's lo, hi)
        self.adjust: list[tuple[int, float, float, bool, float, float, float, float]] = []
        targets = {r.get("target") for r in relations if isinstance(r, dict)}
        moved: set[str] = set()
        for i, r in enumerate(relations):
            _check_relation(r)
            missing = [c for c in [r["target"], *r["num"], *r["den"]] if c not in names]
            if missing:
                raise InvalidDataError(f"the transform relates unknown column(s) {', '.join(missing)}")
            t = names.index(r["target"])
            self.register_buffer(f"derived_num{i}", torch.tensor([names.index(c) for c in r["num"]], dtype=torch.long))
            self.register_buffer(f"derived_den{i}", torch.tensor([names.index(c) for c in r["den"]], dtype=torch.long))
            self.register_buffer(f"derived_target{i}", torch.tensor([t], dtype=torch.long))
            take = list(range(len(names)))
            take[t] = len(names)
            self.register_buffer(f"derived_take{i}", torch.tensor(take, dtype=torch.long))
            self.derived.append((float(r["k"]), bool(r["den"]), float(scale[t]), bool(rounded[t])))
            inputs = set(r["num"]) | set(r["den"])
            if len(r["num"]) == 1 and r["den"] and not inputs & targets and r["num"][0] not in moved:
                n = names.index(r["num"][0])
                moved.add(r["num"][0])
                take_n = list(range(len(names)))
                take_n[n] = len(names)
                self.register_buffer(f"adjust_take{i}", torch.tensor(take_n, dtype=torch.long))
                self.adjust.append(
                    (i, float(r["k"]), float(scale[n]), bool(rounded[n]), lo[n], hi[n], lo[t], hi[t])
                )

    def _keep_in_range(self, num: torch.Tensor) -> torch.Tensor:
        """Where a total and a count the generator drew give a mean outside the mean's training range
        (a 3,000-byte mean packet), the row keeps the mean it drew and its total becomes mean x count
        instead. Only a numerator of one column that nothing computes moves, once, before any target
        is computed, so every relation still holds after :meth:`_derive`."""
        for i, k, n_scale, n_rounded, n_lo, n_hi, t_lo, t_hi in self.adjust:
            n_idx = getattr(self, f"derived_num{i}")
            total = num.index_select(1, n_idx)
            den = num.index_select(1, getattr(self, f"derived_den{i}")).sum(dim=1, keepdim=True)
            drawn = num.index_select(1, getattr(self, f"derived_target{i}"))
            nonzero = den != 0
            value = total * k / torch.where(nonzero, den, torch.ones_like(den))
            out = nonzero & ((value < t_lo) | (value > t_hi))
            moved = drawn * den / k
            if n_rounded:
                moved = torch.round(moved * n_scale) / n_scale
            moved = moved.clamp(n_lo, n_hi)
            total = torch.where(out, moved, total)
            num = torch.cat([num, total], dim=1).index_select(1, getattr(self, f"adjust_take{i}"))
        return num

    def _derive(self, num: torch.Tensor) -> torch.Tensor:
        """Each computed column replaced by ``k * N / D`` of the decoded inputs, rounded to its
        decimals; where ``D`` is 0 it keeps the generator's value. Relations come inputs first."""
        num = self._keep_in_range(num)
        for i, (k, has_den, scale, rounded) in enumerate(self.derived):
            value = num.index_select(1, getattr(self, f"derived_num{i}")).sum(dim=1, keepdim=True) * k
            if has_den:
                den = num.index_select(1, getattr(self, f"derived_den{i}")).sum(dim=1, keepdim=True)
                nonzero = den != 0
                drawn = num.index_select(1, getattr(self, f"derived_target{i}"))
                value = torch.where(nonzero, value / torch.where(nonzero, den, torch.ones_like(den)), drawn)
                # a tiny denominator can overflow: such a row keeps its drawn value, not inf
                value = torch.where(torch.isfinite(value), value, drawn)
            if rounded:
                value = torch.round(value * scale) / scale
            num = torch.cat([num, value], dim=1).index_select(1, getattr(self, f"derived_take{i}"))
        return num


def _check_multiple(r: Any) -> None:
    """A ``multiple`` rule of a run's spec is data someone could have edited: its shape is checked."""
    step = r.get("step") if isinstance(r, dict) else None
    of = r.get("of") if isinstance(r, dict) else None
    ok = (
        isinstance(r, dict)
        and isinstance(r.get("a"), str)
        and (of is None) != (step is None)
        and (of is None or (isinstance(of, str) and of != r["a"]))
        and (step is None or (isinstance(step, (int, float)) and not isinstance(step, bool) and math.isfinite(step) and step > 0))
        and ("values" not in r or (of is not None and _sorted_numbers(r["values"], MAX_DIVISOR_VALUES)))
    )
    if not ok:
        raise InvalidDataError(f"the transform holds a malformed multiple rule: {str(r)[:200]}")


def _check_pair(r: Any) -> None:
    """A kept pair of a run's spec is data someone could have edited: its shape is checked."""
    ok = (
        isinstance(r, dict)
        and isinstance(r.get("given"), str)
        and isinstance(r.get("fix"), str)
        and r["given"] != r["fix"]
        and _number_pairs(r.get("allowed"), MAX_CELLS)
        and _number_pairs(r.get("partner"), MAX_CELLS)
        and len({p[0] for p in r["partner"]}) == len(r["partner"])
        and ("values" not in r or _sorted_numbers(r["values"], MAX_CELLS))
    )
    if not ok:
        raise InvalidDataError(f"the transform holds a malformed pair of codes: {str(r)[:200]}")


def _number_pairs(v: Any, most: int) -> bool:
    """Whether ``v`` is a list of 1 to ``most`` pairs of finite numbers."""
    return (
        isinstance(v, list)
        and 0 < len(v) <= most
        and all(
            isinstance(p, list) and len(p) == 2
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in p)
            for p in v
        )
    )


def _sorted_numbers(v: Any, most: int) -> bool:
    """Whether ``v`` is a list of 1 to ``most`` finite numbers in increasing order."""
    return (
        isinstance(v, list)
        and 0 < len(v) <= most
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
        and all(x < y for x, y in zip(v, v[1:]))
    )


def _check_relation(r: Any) -> None:
    """A relation of a run's spec is data someone could have edited: its shape is checked before use."""
    ok = (
        isinstance(r, dict)
        and isinstance(r.get("target"), str)
        and isinstance(r.get("num"), list) and 1 <= len(r["num"]) <= 2
        and isinstance(r.get("den"), list) and len(r["den"]) <= 2
        and all(isinstance(c, str) for c in r["num"] + r["den"])
        and len({r["target"], *r["num"], *r["den"]}) == 1 + len(r["num"]) + len(r["den"])
        and isinstance(r.get("k"), (int, float)) and not isinstance(r.get("k"), bool)
        and np.isfinite(r["k"]) and r["k"] != 0
        and (r.get("decimals") is None or (isinstance(r["decimals"], int) and 0 <= r["decimals"] <= MAX_DECIMALS))
    )
    if not ok:
        raise InvalidDataError(f"the transform holds a malformed relation: {str(r)[:200]}")


def frame_from_arrays(num: np.ndarray, cat: np.ndarray, info: dict[str, Any]) -> pd.DataFrame:
    """Typed DataFrame from the decoder's outputs: integers for counts and flags, rounded floats,
    categories from their vocabulary; columns in table order. NumPy and pandas only."""
    cols: dict[str, Any] = {}
    for j, c in enumerate(info["numeric"]):
        v = num[:, j].astype(np.float64)
        if c["dtype"] == "int64":
            cols[c["name"]] = np.rint(v).astype(np.int64)
        elif c.get("decimals") is not None:
            cols[c["name"]] = np.round(v, int(c["decimals"]))
        else:
            cols[c["name"]] = v
    for j, c in enumerate(info["categorical"]):
        vocab = np.asarray([str(v) for v in c["vocab"]], dtype=object)
        cols[c["name"]] = vocab[np.asarray(cat[:, j], dtype=np.int64)]
    return pd.DataFrame({name: cols[name] for name in info["order"] if name in cols})
