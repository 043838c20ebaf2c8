"""An example third-party advgen plugin in one file: the "1010" pattern.

Real samples are 4 values near [1, 0, 1, 0] with a little Gaussian noise, as in the classic PyTorch GAN
tutorial. Train it with::

    advgen train --plugin examples/pattern_plugin.py

A plugin is a module with ``@hookimpl`` functions. This one registers a domain (the data, the nets,
decoding and a validator) and, to show a cross-cutting hook, a training callback that records the
logging steps of its runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from advgen.domain import Domain, RealData, Validator
from advgen.hookspecs import hookimpl

__version__ = "1.0.0"

PATTERN = np.array([1.0, 0.0, 1.0, 0.0])
NOISE = 0.05


class PatternDomain(Domain):
    name = "pattern"
    description = "4 values near [1, 0, 1, 0] (the classic GAN tutorial's pattern)"
    version = __version__
    export_tolerance = 1e-5

    def default_config(self) -> dict[str, Any]:
        return {"steps": 600, "batch_size": 64, "z_dim": 4, "lr_g": 2e-3, "lr_d": 2e-3, "ema": 0.99,
                "log_every": 50, "options": {"n_real": 2048}}

    def load_data(self, cfg) -> RealData:
        rng = np.random.default_rng(cfg.seed)
        x = PATTERN + rng.normal(0.0, NOISE, size=(int(cfg.options.get("n_real", 2048)), 4))
        return RealData(x=torch.tensor(x, dtype=torch.float32), spec={"shape": [4], "conditions": None}, samples=x)

    def build_generator(self, spec, cfg) -> nn.Module:
        return Generator(cfg.z_dim)

    def build_discriminator(self, spec, cfg) -> nn.Module:
        return Discriminator()

    def decode(self, x: torch.Tensor, cond, spec) -> np.ndarray:
        return x.numpy().astype(np.float64)

    def validators(self, spec) -> list[Validator]:
        def near_pattern(samples: np.ndarray) -> np.ndarray:
            return (np.abs(np.asarray(samples) - PATTERN) <= 0.25).all(axis=1)

        return [Validator("near-1010", "every value within 0.25 of [1, 0, 1, 0]", near_pattern)]


class Generator(nn.Module):
    def __init__(self, z_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(z_dim, 32), nn.LeakyReLU(0.2), nn.Linear(32, 4))

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z)


class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x).squeeze(1)


@hookimpl
def advgen_register_domains(register) -> None:
    register(PatternDomain)


LOG_STEPS: list[int] = []


@hookimpl
def advgen_train_log(trainer, step: int, metrics: dict[str, float]) -> None:
    """A training callback: any plugin can watch every run's logging steps (here, it just records them)."""
    if trainer.domain.name == "pattern":
        LOG_STEPS.append(step)
