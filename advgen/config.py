"""Run configuration: a dataclass of plain values, defaults in code, TOML in, saved in checkpoints.

Precedence, lowest first: the defaults below, the domain's ``default_config()``, a TOML file
(``--config run.toml``), then command-line flags. Every CLI option of ``advgen train`` maps one to one
onto a field here.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advgen.errors import AdvgenError
from advgen.sampling import check_seed
from advgen.threads import available_cores

MAX_Z_DIM = 16384
MAX_BATCH_VALUES = 1 << 28  # latent values drawn per step: 1 GiB of float32
# samples written at the end of training (held in memory; the run also checks they fit before it trains)
MAX_N_SAMPLES = 10**12


@dataclass
class TrainConfig:
    plugin: str = ""
    # data: a file, a registered dataset (with a split), and the label column for tables
    data: str | None = None
    dataset: str | None = None
    split: str | None = None
    label: str | None = None
    # optimisation
    steps: int = 2000
    batch_size: int = 256
    z_dim: int = 64
    loss: str = "non-saturating"
    d_steps: int = 1
    reuse_fake: bool = True  # the generator step scores the batch the last D step generated (DCGAN's loop)
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    gp_weight: float = 10.0
    ema: float = 0.999  # decay of the generator's weight average; 0 disables it
    conditional: bool = True  # train conditioned on labels when the domain has them
    cond_sampling: str = "log"  # class frequencies when drawing training conditions: empirical|sqrt|log|uniform
    # machinery
    device: str = "auto"
    amp: bool = True  # bfloat16 autocast on CUDA and on CPUs with native bf16 (AVX512-BF16, AMX); else fp32
    # capture the training step as a CUDA graph (CUDA) or compile the nets (CPU); None: on for CUDA only
    compile: bool | None = None
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 keeps torch's default
    log_every: int = 50
    ckpt_every: int = 1000
    n_samples: int = 1000  # samples written into the run directory at the end
    out: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        positive = ["steps", "batch_size", "z_dim", "d_steps", "log_every", "ckpt_every"]
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise AdvgenError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.n_samples, int) or isinstance(self.n_samples, bool) or self.n_samples < 0:
            raise AdvgenError(f"n_samples must be an integer >= 0, got {self.n_samples!r}")
        if self.n_samples > MAX_N_SAMPLES:
            raise AdvgenError(f"n_samples must be at most {MAX_N_SAMPLES:,}, got {self.n_samples:,}")
        for name in ["lr_g", "lr_d"]:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 < value < 1):
                raise AdvgenError(f"{name} must be in (0, 1), got {value!r}")
        for name in ["beta1", "beta2"]:
            value = getattr(self, name)
            if not (0 <= value < 1):
                raise AdvgenError(f"{name} must be in [0, 1), got {value!r}")
        if self.compile is not None and not isinstance(self.compile, bool):
            raise AdvgenError(f"compile must be true, false or unset, got {self.compile!r}")
        if not (0 <= self.ema < 1):
            raise AdvgenError(f"ema must be in [0, 1), got {self.ema!r}")
        if self.gp_weight < 0 or not math.isfinite(self.gp_weight):
            raise AdvgenError(f"gp_weight must be >= 0, got {self.gp_weight!r}")
        if self.cond_sampling not in ("empirical", "sqrt", "log", "uniform"):
            raise AdvgenError(
                f"cond_sampling must be empirical, sqrt, log or uniform, got {self.cond_sampling!r}"
            )
        check_seed(self.seed)  # torch and numpy generators take [0, 2**63)
        if self.batch_size > 1_000_000 or self.steps > 100_000_000:
            raise AdvgenError("steps or batch_size is absurdly large")
        cores = available_cores()
        if not 0 <= self.threads <= cores:
            raise AdvgenError(f"threads must be in 0..{cores} (the CPU cores this process may use), got {self.threads}")
        if self.z_dim > MAX_Z_DIM:
            raise AdvgenError(f"z_dim must be at most {MAX_Z_DIM}, got {self.z_dim}")
        if self.batch_size * self.z_dim > MAX_BATCH_VALUES:
            raise AdvgenError(
                f"batch_size x z_dim = {self.batch_size * self.z_dim:,} latent values a step is too large "
                f"(at most {MAX_BATCH_VALUES:,}); lower --batch-size or --z-dim"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        cfg = cls()
        return cfg.updated(values)

    def updated(self, values: dict[str, Any]) -> TrainConfig:
        """A copy with ``values`` applied; ``options`` is merged key by key; unknown keys are errors."""
        known = {f.name: f for f in dataclasses.fields(self)}
        new = dataclasses.replace(self, options=dict(self.options))
        for key, value in values.items():
            key = key.replace("-", "_")
            if key not in known:
                raise AdvgenError(f"unknown config key {key!r}; known keys: {', '.join(sorted(known))}")
            if key == "options":
                if not isinstance(value, dict):
                    raise AdvgenError("options must be a table of KEY = VALUE")
                new.options.update(value)
                continue
            setattr(new, key, _coerce(key, value, getattr(self, key), known[key].type))
        return new


def _coerce(key: str, value: Any, current: Any, type_name: Any) -> Any:
    if value is None:
        return None
    expected = str(type_name)
    try:
        if expected.startswith("int"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if expected.startswith("float"):
            return float(value)
        if expected.startswith("bool"):
            if isinstance(value, str):
                low = value.lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            return bool(value)
        if expected.startswith("str"):
            return str(value)
    except (TypeError, ValueError):
        raise AdvgenError(f"config key {key!r} expects {expected}, got {value!r}") from None
    return value


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a run TOML file: top-level keys are config fields, ``[options]`` holds domain options."""
    p = Path(path)
    if not p.is_file():
        raise AdvgenError(f"config file not found: {p}")
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise AdvgenError(f"config file {p} is not valid TOML: {exc}") from None


def parse_option(text: str) -> tuple[str, Any]:
    """Parse ``KEY=VALUE`` from ``--option``; VALUE is read as TOML when it can be (numbers, booleans)."""
    if "=" not in text:
        raise AdvgenError(f"option {text!r} must look like KEY=VALUE")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise AdvgenError(f"option {text!r} has an empty key")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value
