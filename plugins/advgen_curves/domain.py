"""The curves domain: 1D curves of fixed length.

Default data, embedded and needing no file: the family of the classic "GAN learns to draw a quadratic
curve" tutorial, ``y = a * x**2 + (a - 1)`` with ``a ~ U[1, 2]`` on a fixed grid of ``x`` in [-1, 1].
User data: a CSV with one curve per row (numeric columns, a header row).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from advgen.config import TrainConfig
from advgen.domain import Domain, RealData, Validator
from advgen.errors import InvalidDataError
from advgen.io import save_figure


A_RANGE = (1.0, 2.0)
FIT_TOLERANCE = {"residual_rms": 0.05, "coef": 0.05}


def quadratic_family(n: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` curves ``a x^2 + (a - 1)``, ``a ~ U[1, 2]``, on ``length`` points of [-1, 1]."""
    x = np.linspace(-1.0, 1.0, length)
    a = rng.uniform(*A_RANGE, size=(n, 1))
    return a * x**2 + (a - 1.0), a[:, 0]


def fit_quadratic(curves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares ``p2 x^2 + p1 x + p0`` per curve: coefficients ``[n, 3]`` and residual RMS ``[n]``."""
    curves = np.asarray(curves, dtype=np.float64)
    x = np.linspace(-1.0, 1.0, curves.shape[1])
    basis = np.stack([x**2, x, np.ones_like(x)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, curves.T, rcond=None)
    resid = curves - (basis @ coef).T
    return coef.T, np.sqrt((resid**2).mean(axis=1))


def roughness(curves: np.ndarray) -> np.ndarray:
    """RMS of second differences: how jagged each curve is."""
    d2 = np.diff(np.asarray(curves, dtype=np.float64), n=2, axis=1)
    return np.sqrt((d2**2).mean(axis=1)) if d2.shape[1] else np.zeros(len(curves))


def read_curves_csv(path: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise InvalidDataError(f"curves file not found: {p}")
    try:
        df = pd.read_csv(p)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InvalidDataError(f"cannot parse {p} as CSV: {str(exc).splitlines()[0]}") from None
    if df.empty or df.shape[1] < 3:
        raise InvalidDataError(f"{p} must hold one curve per row with at least 3 numeric columns")
    values = df.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise InvalidDataError(
            f"{p}: {int(bad.sum())} values are missing or not finite numbers "
            f"(first at data row {row + 1}, column {df.columns[col]!r})"
        )
    return values


# domain options (``--option KEY=VALUE``): default and allowed range
OPTIONS = {"length": (32, 3, 4096), "n_real": (8192, 1, 10_000_000), "hidden": (128, 1, 8192)}


def curve_options(cfg: TrainConfig) -> dict[str, int]:
    """The run's curves options, checked: unknown keys and values out of range are one clear error."""
    given = dict(cfg.options or {})
    unknown = sorted(set(given) - set(OPTIONS))
    if unknown:
        raise InvalidDataError(f"unknown curves option(s) {unknown}; known: {', '.join(OPTIONS)}")
    out = {}
    for key, (default, low, high) in OPTIONS.items():
        value = given.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high or value != int(value):
            raise InvalidDataError(f"curves option {key} must be an integer in [{low}, {high}], got {value!r}")
        out[key] = int(value)
    return out


class CurveGenerator(nn.Module):
    def __init__(self, z_dim: int, length: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(z_dim, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, length),
        )

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z)


class CurveDiscriminator(nn.Module):
    """An MLP critic that also sees the batch's spread (minibatch standard deviation), against collapse."""

    def __init__(self, length: int, hidden: int):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(length, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden), nn.LeakyReLU(0.2))
        self.head = nn.Linear(hidden + 1, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.body(x)
        spread = x.std(dim=0).mean().expand(x.shape[0], 1)
        return self.head(torch.cat([h, spread], dim=1)).squeeze(1)


class Destandardize(nn.Module):
    """Generator followed by the inverse of the per-point standardisation: final curve values."""

    def __init__(self, generator: nn.Module, mean: list[float], std: list[float]):
        super().__init__()
        self.generator = generator
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z, None) * self.std + self.mean


class CurvesDomain(Domain):
    name = "curves"
    description = "1D curves of fixed length (default: the quadratic family y = a x^2 + a - 1)"
    version = "0.1.0"
    export_tolerance = 1e-4

    def default_config(self) -> dict[str, Any]:
        return {
            "steps": 3000,
            "batch_size": 128,
            "z_dim": 16,
            "lr_g": 1e-3,
            "lr_d": 1e-3,
            "beta1": 0.5,
            "beta2": 0.99,
            "ema": 0.995,
            "log_every": 100,
            # nets of width 128: bf16 casts cost more than the products save (3,000 steps on the
            # project's CPU: 9.0 s with autocast, 7.4 s without); --amp turns it back on
            "amp": False,
            "options": {"length": 32, "n_real": 8192, "hidden": 128},
        }

    # --- data ------------------------------------------------------------------------------------

    def load_data(self, cfg: TrainConfig) -> RealData:
        opts = curve_options(cfg)
        if cfg.dataset:
            raise InvalidDataError("the curves plugin has no registered datasets; use --data FILE.csv")
        if cfg.data:
            curves = read_curves_csv(cfg.data)
            family = "user"
        else:
            length, n_real = opts["length"], opts["n_real"]
            curves, _ = quadratic_family(n_real, length, np.random.default_rng(cfg.seed))
            family = "quadratic"
        mean = curves.mean(axis=0)
        std = curves.std(axis=0) + 1e-6
        spec: dict[str, Any] = {
            "shape": [curves.shape[1]],
            "conditions": None,
            "family": family,
            "mean": mean.tolist(),
            "std": std.tolist(),
        }
        if family == "user":
            span = float(curves.max() - curves.min()) or 1.0
            spec["bounds"] = {
                "low": (curves.min(axis=0) - 0.05 * span).tolist(),
                "high": (curves.max(axis=0) + 0.05 * span).tolist(),
                "roughness": float(np.quantile(roughness(curves), 0.99) * 1.5 + 1e-9),
            }
        x = torch.tensor((curves - mean) / std, dtype=torch.float32)
        return RealData(x=x, spec=spec, samples=curves)

    # --- nets ------------------------------------------------------------------------------------

    def build_generator(self, spec: dict[str, Any], cfg: TrainConfig) -> nn.Module:
        return CurveGenerator(cfg.z_dim, spec["shape"][0], curve_options(cfg)["hidden"])

    def build_discriminator(self, spec: dict[str, Any], cfg: TrainConfig) -> nn.Module:
        return CurveDiscriminator(spec["shape"][0], curve_options(cfg)["hidden"])

    # --- samples ---------------------------------------------------------------------------------

    def decode(self, x: torch.Tensor, cond: np.ndarray | None, spec: dict[str, Any]) -> np.ndarray:
        return x.numpy().astype(np.float64) * np.asarray(spec["std"]) + np.asarray(spec["mean"])

    # samples are float64 arrays [n, length]: the Domain defaults write them (.csv, .npz, .npy) chunk by
    # chunk and size them (8 bytes a value, 13 characters in CSV)

    def read_samples(self, path: Path, spec: dict[str, Any]) -> np.ndarray:
        from advgen.io import read_array_samples

        arr = read_array_samples(path)
        if arr.ndim != 2 or arr.shape[1] != spec["shape"][0]:
            raise InvalidDataError(f"{path}: expected curves of length {spec['shape'][0]}, got shape {arr.shape}")
        return arr

    def plot(self, real: Any, fake: Any, path: Path, spec: dict[str, Any]) -> bool:
        from advgen.io import pyplot

        plt = pyplot()
        real, fake = np.asarray(real), np.asarray(fake)
        x = np.linspace(-1, 1, real.shape[1])
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for curves, colour, label in ((real[:40], "0.6", "real"), (fake[:40], "tab:red", "generated")):
            for i, c in enumerate(curves):
                axes[0].plot(x, c, color=colour, alpha=0.5, lw=1, label=label if i == 0 else None)
        axes[0].set_title("curves: real vs generated")
        axes[0].legend()
        if spec.get("family") == "quadratic":
            bins = np.linspace(0.8, 2.2, 29)
            axes[1].hist(fit_quadratic(real)[0][:, 0], bins=bins, alpha=0.5, density=True, label="real", color="0.5")
            axes[1].hist(fit_quadratic(fake)[0][:, 0], bins=bins, alpha=0.5, density=True, label="generated", color="tab:red")
            axes[1].set_title("fitted a (ideal: uniform on [1, 2])")
        else:
            axes[1].hist(roughness(real), bins=30, alpha=0.5, density=True, label="real", color="0.5")
            axes[1].hist(roughness(fake), bins=30, alpha=0.5, density=True, label="generated", color="tab:red")
            axes[1].set_title("roughness (RMS of second differences)")
        axes[1].legend()
        fig.tight_layout()
        save_figure(fig, path)
        return True

    # --- judging ---------------------------------------------------------------------------------

    def validators(self, spec: dict[str, Any]) -> list[Validator]:
        length = spec["shape"][0]

        def finite(c: np.ndarray) -> np.ndarray:
            return np.isfinite(c).all(axis=1) & (c.shape[1] == length)

        rules = [Validator("finite", "every value is a finite number", finite, "shape")]
        if spec.get("family") == "quadratic":
            tol = FIT_TOLERANCE

            def quadratic_fit(c: np.ndarray) -> np.ndarray:
                return fit_quadratic(c)[1] <= tol["residual_rms"]

            def coefficients(c: np.ndarray) -> np.ndarray:
                coef, _ = fit_quadratic(c)
                a, b, c0 = coef[:, 0], coef[:, 1], coef[:, 2]
                in_range = (a >= A_RANGE[0] - tol["coef"]) & (a <= A_RANGE[1] + tol["coef"])
                return in_range & (np.abs(b) <= tol["coef"]) & (np.abs(c0 - (a - 1)) <= tol["coef"])

            rules += [
                Validator("quadratic-fit", f"a least-squares quadratic leaves RMS residual <= {tol['residual_rms']}", quadratic_fit),
                Validator("family-coefficients", f"fitted a in [1, 2], b = 0, c = a - 1 (within {tol['coef']})", coefficients),
            ]
        elif "bounds" in spec:
            low, high = np.asarray(spec["bounds"]["low"]), np.asarray(spec["bounds"]["high"])
            limit = spec["bounds"]["roughness"]
            rules += [
                Validator("bounds", "each point within the real data's range (5% margin)", lambda c: ((c >= low) & (c <= high)).all(axis=1)),
                Validator("smoothness", "RMS second difference <= 1.5x the real 99th percentile", lambda c: roughness(c) <= limit),
            ]
        return rules

    def export_module(self, generator: nn.Module, spec: dict[str, Any]) -> nn.Module:
        return Destandardize(generator, spec["mean"], spec["std"])

    def export_outputs(self, spec: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"name": "curves", "dtype": "float32", "shape": list(spec["shape"]), "meaning": "curve values"}]
