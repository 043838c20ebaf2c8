"""Training steps run eagerly, compiled or captured (advgen.step_capture), checked on the CPU.

A CUDA graph cannot be captured here, but everything around the capture can: the warm-up steps and
their undoing, the EMA weight read from a device tensor, the losses summed on the device, the
fallback when a capture fails. :func:`~advgen.step_capture.record_eagerly` takes the place of the
graph (the same warm-up and restore, then each replay runs the captured step eagerly), so a run must
equal an eager run bit for bit. tests/test_cuda.py replays real graphs on a GPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from advgen import engine, step_capture
from advgen.api import build_config, train
from advgen.checkpoint import load_checkpoint
from advgen.cli import cli
from advgen.plugins import get_manager

STATE = ("generator", "discriminator", "generator_ema", "opt_g", "opt_d", "rng_cpu")


def _flows_csv(path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 300
    kind = rng.choice(["benign", "scan", "flood"], n, p=[0.6, 0.25, 0.15])
    pd.DataFrame({
        "Proto": np.where(kind == "flood", "udp", rng.choice(["tcp", "udp"], n)),
        "Bytes": rng.integers(40, 5000, n),
        "Rate": rng.uniform(0, 1, n).round(3),
        "Label": kind,
    }).to_csv(path, index=False)
    return path


def _config(domain: str, tmp_path: Path, **kw) -> dict:
    base = {"log_every": 2, "n_samples": 0, "device": "cpu", "threads": 1, "steps": 8}
    if domain == "curves":
        cfg = {"plugin": "curves", "options": {"n_real": 256}}
    elif domain == "curves-wgan":  # a gradient penalty (double backward) and two D steps a step
        cfg = {"plugin": "curves", "loss": "wgan-gp", "d_steps": 2, "options": {"n_real": 256}}
    elif domain == "images":  # batch norm buffers in G, spectral norm in D
        cfg = {"plugin": "images", "batch_size": 16, "options": {"width": 8, "max_images": 200}}
    else:  # conditional: class draws, spectral norm, one-hot sampling
        cfg = {"plugin": "tabular", "data": str(_flows_csv(tmp_path / "flows.csv")), "label": "Label",
               "batch_size": 64, "options": {"hidden": 32, "d_hidden": 32, "embed_dim": 8, "n_quantiles": 33}}
    return {**base, **cfg, **kw}


def _assert_same(a, b, where: str) -> None:
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys differ"
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _losses(run_dir: Path) -> list[tuple[float, float]]:
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [(json.loads(line)["loss_d"], json.loads(line)["loss_g"]) for line in lines]


def _use(monkeypatch, make) -> None:
    """Make the trainer use ``make(trainer, note)`` as its step strategy."""
    monkeypatch.setattr(engine, "train_step_for", make)


def _graph_step(trainer, note):
    return step_capture.CudaGraphStep(trainer, note, record=step_capture.record_eagerly)


# --- choosing a strategy ---------------------------------------------------------------------------


def test_compile_is_on_for_cuda_and_off_for_the_cpu_unless_asked(tmp_path):
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert step_capture.compile_wanted(None, cuda) and not step_capture.compile_wanted(None, cpu)
    assert step_capture.compile_wanted(True, cpu) and not step_capture.compile_wanted(False, cuda)
    cfg, _ = build_config("curves", {"compile": "off"}, get_manager())
    assert cfg.compile is False
    run = train(_config("curves", tmp_path, steps=2, out=str(tmp_path / "run")))
    assert run.summary["step_mode"] == "eager"
    assert json.loads((run.run_dir / "config.json").read_text())["compile"] is None


def test_no_cpp_compiler_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(step_capture.shutil, "which", lambda name: None)
    result = CliRunner().invoke(cli, ["train", "--plugin", "curves", "--device", "cpu", "--compile", "--steps", "2",
                                      "-o", str(tmp_path / "run"), "-q"])
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert not (tmp_path / "run").exists()  # refused before the run folder was written
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "C++ compiler" in errors[0] and "--no-compile" in errors[0], result.output


# --- the captured step's logic, replayed eagerly -----------------------------------------------------


@pytest.mark.parametrize("domain", ["curves", "curves-wgan", "tabular", "images"])
def test_captured_step_trains_exactly_as_the_eager_step(tmp_path, monkeypatch, domain):
    """Three warm-up steps are taken and undone (weights, buffers, Adam's fresh state, the random
    generators) and the EMA weight comes from a device tensor: the run equals an eager one bit for bit."""
    eager = train(_config(domain, tmp_path, out=str(tmp_path / "eager")))
    _use(monkeypatch, _graph_step)
    captured = train(_config(domain, tmp_path, out=str(tmp_path / "captured")))
    assert captured.summary["step_mode"] == "cuda-graph"
    a, b = load_checkpoint(eager.run_dir), load_checkpoint(captured.run_dir)
    for key in STATE:
        _assert_same(a[key], b[key], key)
    assert _losses(eager.run_dir) == _losses(captured.run_dir)


def test_captured_step_resumes_as_an_uninterrupted_run(tmp_path, monkeypatch):
    """A resumed run captures again from the loaded state (Adam's state is no longer fresh)."""
    cfg = _config("tabular", tmp_path, ckpt_every=4)
    train(dict(cfg, steps=8, out=str(tmp_path / "straight")))
    _use(monkeypatch, _graph_step)
    train(dict(cfg, steps=4, out=str(tmp_path / "split")))
    resumed = train({"steps": 8}, resume=tmp_path / "split")
    assert resumed.summary["step_mode"] == "cuda-graph"
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "split")
    for key in STATE:
        _assert_same(a[key], b[key], key)
    assert _losses(tmp_path / "straight") == _losses(tmp_path / "split")


def test_a_failed_capture_trains_eagerly_after_a_note(tmp_path, monkeypatch):
    def record_then_fail(warmup, restore, step):
        for _ in range(step_capture.WARMUP_STEPS):
            warmup()  # the warm-up changed the weights before the capture failed
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing\nmore detail")

    eager = train(_config("tabular", tmp_path, out=str(tmp_path / "eager")))
    _use(monkeypatch, lambda t, note: step_capture.CudaGraphStep(t, note, record=record_then_fail))
    lines: list[str] = []
    run = train(_config("tabular", tmp_path, out=str(tmp_path / "fell-back")), log=lines.append)
    assert run.summary["step_mode"] == "eager"
    notes = [line for line in lines if "capture failed" in line]
    assert notes == ["note: CUDA graph capture failed (RuntimeError: CUDA error: operation not permitted when "
                     "stream is capturing); training eagerly"], lines
    a, b = load_checkpoint(eager.run_dir), load_checkpoint(run.run_dir)
    for key in STATE:
        _assert_same(a[key], b[key], key)


# --- torch.compile on the CPU ----------------------------------------------------------------------


def test_compiled_step_matches_the_eager_step(tmp_path, monkeypatch):
    """``--compile`` on the CPU: the nets compiled by inductor (C++), losses as the eager step's within
    float rounding over a few steps, for curves and a conditional table. Compiling takes most of this test."""
    step_capture.require_cpp_compiler()  # CI has one; without it the test above checks the error line
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(inductor_config, "compile_threads", 1)  # no pool of compiler processes on a small CI box
    for domain in ("curves", "tabular"):
        cfg = _config(domain, tmp_path, steps=6, log_every=1)
        eager = train(dict(cfg, out=str(tmp_path / f"{domain}-eager")))
        compiled = train(dict(cfg, compile=True, out=str(tmp_path / f"{domain}-compiled")))
        assert compiled.summary["step_mode"] == "inductor", domain
        # losses, not weights: Adam moves a weight by about lr whatever its gradient's size, so rounding
        # in a near-zero gradient (a class embedding no row of the batch used) flips single weights by 2e-4
        assert len(_losses(eager.run_dir)) == 6
        np.testing.assert_allclose(_losses(compiled.run_dir), _losses(eager.run_dir), rtol=1e-4, err_msg=domain)


def test_a_failed_compile_trains_eagerly_after_a_note(tmp_path, monkeypatch):
    """The compiled generator runs (drawing noise, moving batch-norm statistics), then the compiled
    discriminator fails: all of it is undone and the run equals an eager one bit for bit."""
    calls = []

    def fake_compile(module, **kwargs):
        calls.append(module)
        if len(calls) == 1:
            return module  # the generator "compiles"

        def broken(*args, **kw):
            raise RuntimeError("BackendCompilerFailed: C++ compile error\n...")

        return broken

    eager = train(_config("images", tmp_path, out=str(tmp_path / "eager")))
    monkeypatch.setattr(step_capture.torch, "compile", fake_compile)
    lines: list[str] = []
    run = train(_config("images", tmp_path, compile=True, out=str(tmp_path / "fell-back")), log=lines.append)
    assert run.summary["step_mode"] == "eager" and len(calls) == 2
    expected = "note: torch.compile failed (RuntimeError: BackendCompilerFailed: C++ compile error); training eagerly"
    assert expected in lines, lines
    a, b = load_checkpoint(eager.run_dir), load_checkpoint(run.run_dir)
    for key in STATE:
        _assert_same(a[key], b[key], key)
    assert _losses(eager.run_dir) == _losses(run.run_dir)


def test_rows_read_from_disk_and_torchrun_train_eagerly(tmp_path):
    """Where a step cannot be captured (batches read from disk, DDP), --compile leaves a note."""
    cfg, domain = build_config("curves", {"device": "cpu", "compile": True, "options": {"n_real": 64}}, get_manager())
    trainer = engine.Trainer(cfg, domain, domain.load_data(cfg), get_manager(), tmp_path)
    notes: list[str] = []
    trainer.sampler.store = object()  # as for a table encoded to disk
    assert step_capture.train_step_for(trainer, notes.append).name == "eager"
    trainer.sampler.store = None
    trainer.world.size = 2
    assert step_capture.train_step_for(trainer, notes.append).name == "eager"
    assert len(notes) == 2 and "rows read from disk" in notes[0] and "torchrun" in notes[1]
