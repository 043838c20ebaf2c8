"""The contract a domain plugin fulfils.

A domain (tabular rows, images, curves, ...) is a :class:`Domain` subclass registered through the
``advgen_register_domains`` hook. The core calls its methods in this order:

1. ``default_config()``: the domain's training defaults (overrides of :class:`advgen.config.TrainConfig`
   fields, plus domain ``options``);
2. ``load_data(cfg)``: reads the real data and returns :class:`RealData`: the encoded tensor the
   discriminator sees, the class index of each row where the domain has labels, the decoded real
   samples, and ``spec``, a JSON-serialisable description of the data (shape, fitted transform,
   condition vocabulary) from which every other method can rebuild what it needs. ``spec`` is saved
   in every checkpoint and in the ONNX manifest;
3. ``build_generator(spec, cfg)`` / ``build_discriminator(spec, cfg)``: the nets. A generator maps
   ``(z [N, z_dim], cond [N] int64 or None)`` to the encoded space (``[N, *spec["shape"]]``); a
   discriminator maps ``(x, cond)`` to logits ``[N]``;
4. ``decode(x, cond, spec)``: encoded generator output (a CPU tensor, or one on the generator's device
   for a domain with ``decodes_on_device``) to domain samples (a DataFrame, an
   array of images, an array of curves); ``open_writer(path, spec, n)`` writes them to a file chunk
   by chunk (so that any number of samples fits in memory), ``bytes_per_sample`` sizes that file
   before it is written, and ``write_samples`` writes samples already in memory;
5. ``validators(spec)``: domain rules, each giving a per-sample pass/fail;
6. ``featurize(samples, spec)`` / ``labels(samples, spec)``: what a scikit-learn detector sees;
7. ``export_module(generator, spec)``: the generator plus in-graph decoding, for ONNX export.

Samples are whatever the domain decodes to; the core never looks inside them except through these
methods, so a new domain needs no change to the core.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from torch import nn

from advgen.errors import AdvgenError

if TYPE_CHECKING:  # pragma: no cover
    from advgen.config import TrainConfig
    from advgen.writers import SampleWriter


@runtime_checkable
class RowStore(Protocol):
    """Encoded rows kept out of memory (a table larger than memory, encoded to a file), read by index.

    ``shape`` is ``(rows, *row_shape)``; ``rows(idx)`` returns those rows as a float32 CPU tensor, in
    the order of ``idx`` (an int64 array). ``class_counts`` is None, or says the rows are grouped by
    class: the first ``class_counts[0]`` rows are class 0, the next ``class_counts[1]`` class 1, and so
    on. The store checks its values itself (finite, in range) before it is used. An optional ``paths``
    names the files it reads, which starting a run over in their folder (``--overwrite``) leaves in place.
    """

    shape: tuple[int, ...]
    class_counts: Sequence[int] | None

    def rows(self, idx: np.ndarray) -> torch.Tensor: ...


@dataclass
class RealData:
    """Real training data, already encoded for the discriminator.

    ``x`` is one tensor in memory, which the core moves to the training device once, or a
    :class:`RowStore` on disk, from which each batch is read; either way batches are drawn by index.
    ``cond`` holds each row's class index into ``spec["conditions"]["classes"]`` (for a store, its
    ``class_counts`` say that instead and ``cond`` is None).
    """

    x: torch.Tensor | RowStore
    spec: dict[str, Any]
    cond: torch.Tensor | None = None
    samples: Any = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.x.shape) < 2 or self.x.shape[0] == 0:
            raise AdvgenError(f"real data must have at least one row, got shape {tuple(self.x.shape)}")
        if isinstance(self.x, torch.Tensor) and not torch.isfinite(self.x).all():
            raise AdvgenError("encoded real data holds NaN or inf values")
        if self.cond is not None and self.cond.shape[0] != self.x.shape[0]:
            raise AdvgenError("real data and its conditions have different lengths")

    @property
    def has_classes(self) -> bool:
        """Whether each row's class is known (``cond``, or a store's class counts)."""
        return self.cond is not None or getattr(self.x, "class_counts", None) is not None


@dataclass
class Validator:
    """A domain rule: ``check(samples)`` returns a boolean array with one entry per sample.

    ``group`` sorts rules into families (``schema``, ``cross-column``, ``shape``, ...) so that reports
    can give a pass rate per family as well as per rule.
    """

    name: str
    description: str
    check: Callable[[Any], np.ndarray]
    group: str = "domain"


@dataclass
class ValidationReport:
    """Per-sample pass/fail over all rules, and per-rule and per-group pass counts."""

    n: int
    passed: np.ndarray
    per_rule: dict[str, int]
    per_group: dict[str, int]
    descriptions: dict[str, str]

    @property
    def pass_rate(self) -> float:
        return float(self.passed.mean()) if self.n else float("nan")

    def rule_rates(self) -> dict[str, float]:
        return {k: v / self.n if self.n else float("nan") for k, v in self.per_rule.items()}

    def group_rates(self) -> dict[str, float]:
        return {k: v / self.n if self.n else float("nan") for k, v in self.per_group.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "pass_rate": self.pass_rate,
            "per_group": self.group_rates(),
            "per_rule": self.rule_rates(),
        }


def run_validators(samples: Any, validators: list[Validator], n: int) -> ValidationReport:
    """Apply every validator to ``samples`` (``n`` of them)."""
    passed = np.ones(n, dtype=bool)
    per_rule: dict[str, int] = {}
    groups: dict[str, np.ndarray] = {}
    for v in validators:
        ok = np.asarray(v.check(samples), dtype=bool).reshape(-1)
        if ok.shape[0] != n:
            raise AdvgenError(f"validator {v.name!r} returned {ok.shape[0]} results for {n} samples")
        per_rule[v.name] = int(ok.sum())
        passed &= ok
        groups[v.group] = groups.get(v.group, np.ones(n, dtype=bool)) & ok
    return ValidationReport(
        n=n,
        passed=passed,
        per_rule=per_rule,
        per_group={g: int(m.sum()) for g, m in groups.items()},
        descriptions={v.name: v.description for v in validators},
    )


class Domain:
    """Base class of a domain plugin; subclass it and register it with ``advgen_register_domains``.

    Class attributes ``name``, ``description`` and ``version`` identify the domain. Methods marked
    *required* must be overridden; the others have working defaults.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    version: ClassVar[str] = "0"
    #: torch-vs-onnxruntime parity tolerance for float outputs of ``export_module`` (abs and relative),
    #: a float or ``{"atol": ..., "rtol": ...}``; category outputs must always match exactly
    export_tolerance: ClassVar[float | dict[str, float]] = 1e-4
    #: whether ``decode`` takes encoded samples on the device that generated them (a GPU) and does its
    #: tensor work there, returning samples on the host; if False the core moves them to the CPU first
    decodes_on_device: ClassVar[bool] = False

    # --- configuration -------------------------------------------------------------------------

    def default_config(self) -> dict[str, Any]:
        """Overrides of :class:`~advgen.config.TrainConfig` defaults for this domain.

        Keys are config field names; ``options`` holds domain-specific settings (merged key by key
        with the user's ``--option KEY=VALUE`` and the TOML file's ``[options]`` table).
        """
        return {}

    # --- data ----------------------------------------------------------------------------------

    def load_data(self, cfg: TrainConfig) -> RealData:  # required
        """Read the real data named by ``cfg.data`` / ``cfg.dataset`` (or the domain's default data)
        and encode it. Raise :class:`~advgen.errors.InvalidDataError` with one clear line on bad input."""
        raise NotImplementedError

    def condition_classes(self, spec: dict[str, Any], key: str, value: str) -> list[int]:
        """Class indices (into ``spec["conditions"]["classes"]``) that a condition ``key=value`` selects.

        The default understands the conditioning variable itself (``label=guess_passwd``); domains
        override it for derived conditions (tabular: ``category=r2l``).
        """
        cond = spec.get("conditions")
        if not cond:
            raise AdvgenError(f"this {self.name} run is not conditional; --condition cannot be used")
        if key != cond["name"]:
            raise AdvgenError(f"unknown condition {key!r}; this run is conditioned on {cond['name']!r}")
        classes = [str(c) for c in cond["classes"]]
        if str(value) not in classes:
            shown = ", ".join(classes[:30]) + (" ..." if len(classes) > 30 else "")
            raise AdvgenError(
                f"{key}={value} never occurred in training; known values: {shown}"
            )
        return [classes.index(str(value))]

    def condition_values(self, spec: dict[str, Any]) -> dict[str, list[str]]:
        """Every ``key -> [values]`` a user may pass as ``--condition key=value`` (export stores them)."""
        cond = spec.get("conditions")
        return {cond["name"]: [str(c) for c in cond["classes"]]} if cond else {}

    # --- nets ----------------------------------------------------------------------------------

    def build_generator(self, spec: dict[str, Any], cfg: TrainConfig) -> nn.Module:  # required
        """The generator: ``forward(z, cond) -> x`` in the encoded space, differentiable."""
        raise NotImplementedError

    def build_discriminator(self, spec: dict[str, Any], cfg: TrainConfig) -> nn.Module:  # required
        """The discriminator: ``forward(x, cond) -> logits [N]``."""
        raise NotImplementedError

    # --- samples -------------------------------------------------------------------------------

    def decode(self, x: torch.Tensor, cond: np.ndarray | None, spec: dict[str, Any]) -> Any:  # required
        """Encoded generator output (a CPU float tensor; on the generator's device where the domain sets
        ``decodes_on_device``) to domain samples."""
        raise NotImplementedError

    def num_samples(self, samples: Any) -> int:
        return len(samples)

    def open_writer(self, path: Path, spec: dict[str, Any], n: int) -> SampleWriter:
        """A :class:`~advgen.writers.SampleWriter` for ``n`` samples at ``path`` (the suffix picks the
        format): ``write(chunk)`` takes what ``decode`` returns for some rows, ``close()`` puts the file
        in place once all ``n`` came, ``abort()`` leaves any earlier file untouched. ``advgen sample``
        writes through it one chunk at a time, so memory does not grow with ``n``.

        Default: arrays as ``.csv``, ``.npz`` (array ``x``) or ``.npy``
        (:class:`~advgen.writers.ArrayWriter`); tables use :class:`~advgen.writers.TableWriter`.
        """
        from advgen.writers import ArrayWriter

        return ArrayWriter(path, n)

    def bytes_per_sample(self, spec: dict[str, Any], suffix: str) -> int:
        """About how many bytes one sample takes in a file of ``suffix``; ``advgen sample`` refuses to
        start a file that would not fit on its disk. Default: ``spec["shape"]`` float64 values, 8 bytes
        each in binary files and up to 13 characters each in CSV."""
        values = int(np.prod(spec.get("shape") or [1]))
        return values * (13 if suffix.lower() == ".csv" else 8)

    def write_samples(self, samples: Any, path: Path, spec: dict[str, Any]) -> None:
        """Write samples held in memory to ``path``, through ``open_writer`` in one chunk."""
        with self.open_writer(Path(path), spec, self.num_samples(samples)) as writer:
            writer.write(samples)

    def sample_suffixes(self) -> tuple[str, ...]:
        """File suffixes ``open_writer`` understands, the first being the default."""
        return (".csv", ".npz", ".npy")

    def plot(self, real: Any, fake: Any, path: Path, spec: dict[str, Any]) -> bool:
        """Write a PNG comparing real and generated samples. Return False when nothing was drawn."""
        return False

    # --- judging -------------------------------------------------------------------------------

    def validators(self, spec: dict[str, Any]) -> list[Validator]:
        """The domain's own rules. Other plugins add more through ``advgen_register_validators``."""
        return []

    def featurize(self, samples: Any, spec: dict[str, Any]) -> np.ndarray:
        """Numeric features ``[n, d]`` a scikit-learn detector judges samples by."""
        arr = np.asarray(samples, dtype=np.float64)
        return arr.reshape(arr.shape[0], -1)

    def labels(self, samples: Any, spec: dict[str, Any]) -> np.ndarray | None:
        """Class label of each sample (strings), where the domain has labels; None otherwise."""
        return None

    def read_samples(self, path: Path, spec: dict[str, Any]) -> Any:
        """Read samples written by ``write_samples`` (used by ``advgen evaluate SAMPLES``)."""
        from advgen.io import read_array_samples

        return read_array_samples(path)

    # --- export --------------------------------------------------------------------------------

    def export_module(self, generator: nn.Module, spec: dict[str, Any]) -> nn.Module:
        """The generator followed by every decoding step that is tensor math, for ONNX export.

        ``forward(z, cond)`` (``cond`` only for conditional runs) returns a tensor or a tuple of tensors
        whose meaning ``export_outputs`` describes. The default returns the raw generator output.
        """
        return generator

    def export_outputs(self, spec: dict[str, Any]) -> list[dict[str, Any]]:
        """Describe ``export_module``'s outputs for the ONNX manifest: name, dtype and meaning.

        The keys a runtime understands (``columns``, ``kinds``, ``vocabularies``, ``layout``, ...) are
        listed in ``docs/export.md``.
        """
        return [{"name": "x", "dtype": "float32", "shape": list(spec["shape"])}]

    def export_manifest(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Extra JSON for the ONNX manifest's ``sample`` section (tables: final column order, derived
        columns, constants), so the torch-free runtime can assemble final samples. Default: nothing."""
        return {}
