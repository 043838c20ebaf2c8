"""CUDA, mixed precision, the captured training step and GPU decoding: run where a GPU is present
(``bash benchmarks/gpu_check.sh``); skipped on CPU-only CI, where tests/test_step_capture.py and
tests/test_device_decode.py check what a CPU can."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from advgen.api import load_run, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_cuda_amp_training_learns(tmp_path):
    run = train({"plugin": "curves", "device": "auto", "amp": True, "steps": 1500, "out": str(tmp_path / "r"),
                 "n_samples": 500})
    assert run.summary["device"].startswith("cuda") and run.summary["amp"] is True
    assert run.summary["validity_synthetic"]["pass_rate"] > 0.85
    # a CUDA-trained run loads and samples on the CPU
    cpu = load_run(run.run_dir, device="cpu")
    assert np.isfinite(cpu.sample(10, seed=0)).all()


def test_autocast_runs_in_bfloat16(tmp_path):
    from advgen.api import build_config
    from advgen.engine import Trainer
    from advgen.plugins import get_manager

    manager = get_manager()
    cfg, domain = build_config("curves", {"device": "cuda", "amp": True, "options": {"n_real": 256}}, manager)
    data = domain.load_data(cfg)
    trainer = Trainer(cfg, domain, data, manager, tmp_path)
    seen = []
    handle = trainer.discriminator.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    trainer.d_step()
    handle.remove()
    assert torch.bfloat16 in seen


def test_export_after_cuda_training(tmp_path, data_dir):
    """A tabular run trained on CUDA exports and its model samples with onnxruntime."""
    from advgen.api import train
    from advgen_export.onnx_export import export
    from advgen_export.runtime import load

    run = train({"plugin": "tabular", "steps": 50, "batch_size": 256, "device": "cuda", "n_samples": 0,
                 "out": str(tmp_path / "run")})
    assert run.summary["step_mode"] == "cuda-graph"  # trained with the captured step, the default on CUDA
    result = export(run, tmp_path / "m.onnx")
    assert result.parity is not None
    rows = load(tmp_path / "m.onnx").sample(20, seed=0)
    assert len(rows) == 20


# --- the captured step (advgen.step_capture): CUDA graphs replayed --------------------------------


def _flows_csv(path):
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 400
    kind = rng.choice(["benign", "scan", "flood"], n, p=[0.6, 0.25, 0.15])
    pd.DataFrame({
        "Proto": np.where(kind == "flood", "udp", rng.choice(["tcp", "udp", "icmp"], n)),
        "Bytes": rng.integers(40, 5000, n),
        "Rate": rng.uniform(0, 1, n).round(3),
        "Label": kind,
    }).to_csv(path, index=False)
    return str(path)


def _cuda_config(domain, tmp_path, **kw):
    base = {"device": "cuda", "steps": 12, "log_every": 2, "n_samples": 0}
    if domain == "curves":
        cfg = {"plugin": "curves", "options": {"n_real": 1024}}
    elif domain == "images":
        cfg = {"plugin": "images", "batch_size": 64, "options": {"width": 16}}
    else:
        cfg = {"plugin": "tabular", "data": _flows_csv(tmp_path / "flows.csv"), "label": "Label", "batch_size": 256,
               "options": {"hidden": 64, "d_hidden": 64, "n_quantiles": 65}}
    return {**base, **cfg, **kw}


def _losses(run_dir):
    import json

    return [(r["loss_d"], r["loss_g"]) for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())]


def _assert_close_state(a, b, where):
    if torch.is_tensor(a):
        if a.is_floating_point():
            # loose: Adam moves a weight whose gradient is ~0 by about lr either way, so the GPU's own
            # run-to-run rounding (atomics in some backward kernels) can flip it; the losses are the check
            torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-3, msg=where)
        else:
            assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            _assert_close_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_close_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.parametrize("domain", ["tabular", "curves", "images"])
def test_captured_step_gives_the_eager_losses(tmp_path, domain):
    """The default on CUDA captures the step as one graph; it trains as the eager step does (the same
    kernels, so equal up to the GPU's own run-to-run differences)."""
    from advgen.checkpoint import load_checkpoint

    eager = train(_cuda_config(domain, tmp_path, compile=False, out=str(tmp_path / "eager")))
    captured = train(_cuda_config(domain, tmp_path, out=str(tmp_path / "captured")))
    assert eager.summary["step_mode"] == "eager" and captured.summary["step_mode"] == "cuda-graph"
    np.testing.assert_allclose(_losses(captured.run_dir), _losses(eager.run_dir), rtol=1e-4, atol=1e-6)
    a, b = load_checkpoint(eager.run_dir), load_checkpoint(captured.run_dir)
    for key in ("generator", "discriminator", "generator_ema", "rng_cuda"):
        _assert_close_state(a[key], b[key], key)


def test_captured_step_resumes_as_an_uninterrupted_run(tmp_path):
    from advgen.checkpoint import load_checkpoint

    cfg = _cuda_config("tabular", tmp_path, ckpt_every=6)
    train(dict(cfg, out=str(tmp_path / "straight")))
    train(dict(cfg, steps=6, out=str(tmp_path / "split")))
    resumed = train({"steps": 12}, resume=tmp_path / "split")
    assert resumed.summary["step_mode"] == "cuda-graph"
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "split")
    for key in ("generator", "discriminator", "generator_ema", "opt_g", "opt_d", "rng_cuda"):
        _assert_close_state(a[key], b[key], key)
    np.testing.assert_allclose(_losses(tmp_path / "split"), _losses(tmp_path / "straight"), rtol=1e-4, atol=1e-6)
    # the optimizers are saved as an eager run saves them (capturable only while capturing)
    assert not any(g.get("capturable") for g in a["opt_g"]["param_groups"] + a["opt_d"]["param_groups"])


def test_gpu_sampling_decodes_on_the_gpu_as_the_cpu_does(tmp_path):
    """A CUDA run's rows are decoded on the GPU (decode is handed CUDA tensors) and equal the CPU
    decode of the same encoded rows, for Run.sample and for a written file."""
    import pandas as pd

    run = train(_cuda_config("tabular", tmp_path, steps=20, out=str(tmp_path / "run")))
    x, cond = run.sample_encoded(70_000, seed=5)  # more than one chunk
    assert x.device.type == "cpu"
    on_cpu = run.domain.decode(x, cond, run.spec)
    seen = []
    decode = run.domain.decode

    def spy(xs, cs, spec):
        seen.append(xs.device.type)
        return decode(xs, cs, spec)

    run.domain.decode = spy
    try:
        on_gpu = run.sample(70_000, seed=5)
        run.write_samples(tmp_path / "rows.parquet", 70_000, seed=5)
    finally:
        run.domain.decode = decode
    assert seen and set(seen) == {"cuda"}
    pd.testing.assert_frame_equal(on_gpu, on_cpu)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "rows.parquet"), on_cpu, check_dtype=False)
