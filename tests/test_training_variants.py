"""The training paths beside the defaults, trained end to end: the ``wgan-gp`` and ``hinge`` losses
(curves domain) and the ``log`` and ``msn`` numeric encodings (tabular, on a slice of NSL-KDD).

Each run is a few hundred steps on one thread. It must finish, log finite losses, and beat an untrained
generator of the same architecture on a cheap fidelity measure, so a loss or an encoding that is wired
wrongly (a flipped sign, a decoder that undoes the wrong transform) fails here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from advgen.api import train
from advgen.metrics.fidelity import table_fidelity


def logged(run) -> list[dict]:
    return [json.loads(line) for line in (Path(run.run_dir) / "metrics.jsonl").read_text().splitlines()]


def untrained_generator(run) -> torch.nn.Module:
    """The run's generator architecture with freshly initialised weights."""
    torch.manual_seed(0)
    return run.domain.build_generator(run.spec, run.config).eval()


def check_finite_log(run, steps: int, log_every: int) -> list[dict]:
    records = logged(run)
    assert [r["step"] for r in records] == list(range(log_every, steps + 1, log_every))
    for r in records:
        assert math.isfinite(r["loss_d"]) and math.isfinite(r["loss_g"]), r
    assert run.summary["steps"] == steps
    return records


# --- losses, on the curves domain -------------------------------------------------------------------


def marginal_w1(real: np.ndarray, fake: np.ndarray) -> float:
    """Mean over curve points of the 1-Wasserstein distance between real and generated values."""
    return float(np.mean([stats.wasserstein_distance(real[:, j], fake[:, j]) for j in range(real.shape[1])]))


@pytest.mark.parametrize("loss", ["wgan-gp", "hinge"])
def test_loss_trains_curves_end_to_end(tmp_path, loss):
    steps, log_every = 300, 25
    run = train({"plugin": "curves", "loss": loss, "steps": steps, "log_every": log_every, "n_samples": 0,
                 "threads": 1, "seed": 0, "out": str(tmp_path / "run"), "options": {"n_real": 2048}})
    assert run.config.loss == loss
    records = check_finite_log(run, steps, log_every)
    if loss == "hinge":  # both hinge terms are ReLUs: the discriminator loss can never go below 0
        assert all(r["loss_d"] >= 0 for r in records)
    real = run.load_real().samples
    with torch.no_grad():
        before = run.domain.decode(untrained_generator(run)(torch.randn(1000, run.config.z_dim), None), None, run.spec)
    after = run.sample(1000, seed=5)
    w1_before, w1_after = marginal_w1(real, before), marginal_w1(real, after)
    # about 0.32 untrained, 0.06-0.09 after these 300 steps
    assert w1_after < 0.5 * w1_before, f"{loss}: W1 to real {w1_after:.3f}, untrained {w1_before:.3f}"


# --- numeric encodings, on the tabular domain ---------------------------------------------------------


@pytest.fixture
def nsl_slice(data_dir, tmp_path) -> Path:
    """1,000 random rows of KDDTrain+_20Percent, read with the registered NSL-KDD layout."""
    lines = (data_dir / "nsl-kdd" / "KDDTrain+_20Percent.txt").read_text().splitlines()
    keep = np.random.default_rng(0).permutation(len(lines))[:1000]
    path = tmp_path / "slice.txt"
    path.write_text("\n".join(lines[i] for i in keep) + "\n")
    return path


@pytest.mark.parametrize("encoding", ["log", "msn"])
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # msn's mixtures on few rows
def test_encoding_trains_tabular_end_to_end(tmp_path, nsl_slice, encoding):
    steps, log_every = 250, 25
    run = train({"plugin": "tabular", "data": str(nsl_slice), "dataset": "nsl-kdd", "steps": steps,
                 "batch_size": 128, "log_every": log_every, "n_samples": 0, "threads": 1, "seed": 0,
                 "out": str(tmp_path / "run"), "options": {"encoding": encoding, "hidden": 64, "d_hidden": 64}})
    spec = run.spec
    assert spec["transform"]["encoding"] == encoding
    check_finite_log(run, steps, log_every)
    real = run.load_real().samples
    n = 2000
    cond = torch.multinomial(torch.tensor(spec["conditions"]["counts"], dtype=torch.float), n, True,
                             generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = run.domain.decode(untrained_generator(run)(torch.randn(n, run.config.z_dim), cond), cond.numpy(), spec)
    after = run.sample(n, seed=0)
    features = [c for c in spec["columns"] if c["role"] == "feature"]
    fid_before, fid_after = table_fidelity(real, before, features), table_fidelity(real, after, features)
    # the encoding decides the numeric columns (KS), the categoricals are one-hot either way (TV);
    # untrained: KS about 0.60, TV 0.32-0.42; after these 250 steps: KS 0.79-0.81, TV 0.76-0.80
    for measure in ("ks_complement", "tv_complement"):
        b, a = fid_before[measure]["mean"], fid_after[measure]["mean"]
        assert a > b + 0.1, f"{encoding}: {measure} {a:.3f}, untrained {b:.3f}"
    assert run.validate(after).group_rates()["schema"] == 1.0  # decoded values stay typed and in range
