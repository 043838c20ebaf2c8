"""Engine: losses, checkpoints and resume, seeded determinism, config precedence."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from advgen import engine
from advgen.api import build_config, load_run, train
from advgen.checkpoint import load_checkpoint
from advgen.config import TrainConfig, parse_option
from advgen.engine import BatchSampler, Trainer, class_probabilities
from advgen.domain import RealData
from advgen.errors import AdvgenError, CheckpointError
from advgen.losses import BUILTIN_LOSSES, gradient_penalty
from advgen.plugins import get_manager
from conftest import EXAMPLE_PLUGIN

LOG2 = math.log(2.0)


def small(tmp_path, **kw):
    cfg = {"plugin": "curves", "steps": 30, "log_every": 10, "n_samples": 64, "out": str(tmp_path / "run"), "device": "cpu",
           "options": {"n_real": 512}}
    cfg.update(kw)
    return cfg


def test_losses_on_known_logits():
    zero = torch.zeros(4)
    big = torch.full((4,), 20.0)
    ns, mm, hinge, wgan = (BUILTIN_LOSSES[n] for n in ("non-saturating", "minimax", "hinge", "wgan-gp"))
    # at logits 0 the discriminator is undecided: each BCE term is log 2
    assert ns.d_loss(zero, zero).item() == pytest.approx(2 * LOG2)
    assert ns.g_loss(zero).item() == pytest.approx(LOG2)
    assert mm.g_loss(zero).item() == pytest.approx(-LOG2)
    # a perfect discriminator has ~0 loss; the non-saturating generator loss is then large
    assert ns.d_loss(big, -big).item() == pytest.approx(0.0, abs=1e-6)
    assert ns.g_loss(-big).item() == pytest.approx(20.0, abs=1e-6)
    assert hinge.d_loss(torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])).item() == pytest.approx(0.25 + 0.5)
    assert hinge.g_loss(torch.tensor([1.0, 3.0])).item() == pytest.approx(-2.0)
    assert wgan.d_loss(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 1.0])).item() == pytest.approx(-1.5)
    assert wgan.gradient_penalty and not ns.gradient_penalty


def test_gradient_penalty_of_a_linear_critic():
    w = torch.tensor([3.0, 4.0])  # |grad| = 5 everywhere, so the penalty is (5 - 1)^2
    critic = lambda x, c: x @ w  # noqa: E731
    gp = gradient_penalty(critic, torch.randn(8, 2), torch.randn(8, 2), None)
    assert gp.item() == pytest.approx(16.0, rel=1e-5)


def test_class_sampling_reaches_rare_classes():
    counts = np.array([10000, 100, 1])
    emp, sqrt, log, uni = (class_probabilities(counts, m) for m in ("empirical", "sqrt", "log", "uniform"))
    assert emp[2] < 1e-3 < sqrt[2] < log[2] < uni[2] == pytest.approx(1 / 3)
    assert sqrt[0] == pytest.approx(100 / 111)
    x = torch.arange(10101, dtype=torch.float32).unsqueeze(1)
    cond = torch.tensor([0] * 10000 + [1] * 100 + [2])
    spec = {"shape": [1], "conditions": {"name": "label", "classes": ["a", "b", "c"], "counts": counts.tolist()}}
    sampler = BatchSampler(RealData(x=x, spec=spec, cond=cond), torch.device("cpu"), "uniform", True)
    torch.manual_seed(0)
    rows, c = sampler.draw(3000)
    assert (cond[rows.squeeze(1).long()] == c).all(), "a drawn row must belong to its drawn class"
    assert (c == 2).float().mean().item() == pytest.approx(1 / 3, abs=0.05)


def test_checkpoint_round_trip_and_resume(tmp_path):
    run = train(small(tmp_path, ckpt_every=10))
    payload = load_checkpoint(run.run_dir)
    assert payload["step"] == 30 and payload["plugin"] == "curves"
    assert payload["config"]["steps"] == 30 and payload["spec"]["shape"] == [32]
    loaded = load_run(run.run_dir, ema=False)
    for k, v in payload["generator"].items():
        assert torch.equal(loaded.generator.state_dict()[k], v)
    resumed = train({"steps": 50}, resume=run.run_dir)
    after = load_checkpoint(run.run_dir)
    assert after["step"] == 50
    assert resumed.summary["steps_this_session"] == 20
    lines = (run.run_dir / "metrics.jsonl").read_text().splitlines()
    assert [int(line.split('"step": ')[1].split(",")[0]) for line in lines] == [10, 20, 30, 40, 50]
    assert any(not torch.equal(after["generator"][k], v) for k, v in payload["generator"].items())
    with pytest.raises(AdvgenError, match="already at step 50"):
        train({"steps": 40}, resume=run.run_dir)


def test_same_seed_same_samples(tmp_path):
    a = train(small(tmp_path, out=str(tmp_path / "a"), seed=7))
    b = train(small(tmp_path, out=str(tmp_path / "b"), seed=7))
    c = train(small(tmp_path, out=str(tmp_path / "c"), seed=8))
    sa, sb, sc = (r.sample(16, seed=3) for r in (a, b, c))
    np.testing.assert_array_equal(sa, sb)
    assert not np.allclose(sa, sc)
    np.testing.assert_array_equal(a.sample(5, seed=1), load_run(a.run_dir).sample(5, seed=1))
    assert not np.allclose(a.sample(5, seed=1), a.sample(5, seed=2))


def test_existing_run_is_not_overwritten(tmp_path):
    train(small(tmp_path))
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    with pytest.raises(AdvgenError, match="already holds a run"):
        train(small(tmp_path))
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before


@pytest.mark.parametrize("damage", ["truncate", "garbage", "pickle"])
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_damaged_checkpoint_is_a_clear_error(tmp_path, damage, capsys):
    run = train(small(tmp_path))
    ckpt = run.run_dir / "checkpoint.pt"
    if damage == "truncate":
        ckpt.write_bytes(ckpt.read_bytes()[:2000])
    elif damage == "garbage":
        ckpt.write_bytes(b"not a checkpoint at all")
    else:  # a pickle that would run code if it were unpickled without weights_only
        import pickle

        class Evil:
            def __reduce__(self):
                return (print, ("pwned",))

        ckpt.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError, match="checkpoint"):
        load_run(run.run_dir)
    assert "pwned" not in capsys.readouterr().out


def test_config_precedence_and_validation():
    cfg = TrainConfig(plugin="x").updated({"steps": "12", "options": {"a": 1}}).updated({"options": {"b": 2}})
    assert cfg.steps == 12 and cfg.options == {"a": 1, "b": 2}
    with pytest.raises(AdvgenError, match="unknown config key"):
        cfg.updated({"stepz": 1})
    with pytest.raises(AdvgenError, match="steps must be a positive integer"):
        TrainConfig(steps=-5).validate()
    with pytest.raises(AdvgenError, match="lr_g"):
        TrainConfig(lr_g=float("nan")).validate()
    assert parse_option("length=64") == ("length", 64)
    assert parse_option("name=abc") == ("name", "abc")


def test_device_resolution():
    from advgen.engine import resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(AdvgenError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(AdvgenError, match="CUDA is not available"):
            resolve_device("cuda:0")


@pytest.mark.parametrize("amp", [True, False])
def test_cpu_bfloat16_autocast_learns(tmp_path, monkeypatch, amp):
    """The CPU bf16 path (taken on CPUs with native bf16) runs the nets' products in bf16 and still
    learns the example plugin's pattern; --no-amp keeps fp32 everywhere."""
    monkeypatch.setattr(engine, "amp_supported", lambda device: True)
    manager = get_manager([str(EXAMPLE_PLUGIN)])
    run = train({"plugin": "pattern", "out": str(tmp_path / "p"), "device": "cpu", "amp": amp, "n_samples": 0},
                manager=manager)
    assert run.summary["amp"] is amp
    trainer = Trainer(run.config, run.domain, run.load_real(), manager, tmp_path / "probe")
    seen = []
    first = next(m for m in trainer.discriminator.modules() if isinstance(m, torch.nn.Linear))
    first.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    trainer.d_step()
    assert set(seen) == {torch.bfloat16 if amp else torch.float32}
    samples = run.sample(500, seed=0)
    assert np.abs(samples.mean(axis=0) - [1, 0, 1, 0]).max() < 0.1


@pytest.mark.parametrize("reuse", [True, False])
def test_generator_batches_per_step(tmp_path, fresh_manager, reuse):
    """With reuse_fake the generator step scores the batch the last discriminator step made: one
    generator pass per D step; without it, one more fresh batch per step. Both train."""
    cfg, domain = build_config("curves", small(tmp_path, d_steps=2, reuse_fake=reuse), fresh_manager)
    trainer = Trainer(cfg, domain, domain.load_data(cfg), fresh_manager, tmp_path / "run")
    calls = []
    trainer.generator.register_forward_hook(lambda mod, inp, out: calls.append(out.requires_grad))
    trainer.train(progress=False)
    assert len(calls) == cfg.steps * (2 if reuse else 3)
    assert sum(calls) == cfg.steps  # only the batch the generator step scores carries gradients
    losses = [json.loads(line)["loss_g"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)


def test_a_relative_data_path_is_recorded_absolute_so_resume_works_from_another_folder(tmp_path, monkeypatch):
    x = np.linspace(-1, 1, 16)
    a = np.random.default_rng(0).uniform(1, 2, size=(256, 1))
    (tmp_path / "data").mkdir()
    np.savetxt(tmp_path / "data" / "curves.csv", a * x**2 + a - 1, delimiter=",",
               header=",".join(f"x{i}" for i in range(16)), comments="")
    monkeypatch.chdir(tmp_path / "data")
    train(small(tmp_path, steps=10, n_samples=0, data="curves.csv"))
    saved = load_checkpoint(tmp_path / "run")["config"]["data"]
    assert saved == str(tmp_path / "data" / "curves.csv")
    monkeypatch.chdir(tmp_path)  # elsewhere: the run still finds its data
    run = train({"steps": 20}, resume=tmp_path / "run")
    assert load_checkpoint(run.run_dir)["step"] == 20
