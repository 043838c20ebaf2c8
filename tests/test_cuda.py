"""CUDA and mixed precision: run where a GPU is present (the project's device checks); skipped on CPU-only CI."""

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
    result = export(run, tmp_path / "m.onnx")
    assert result.parity is not None
    rows = load(tmp_path / "m.onnx").sample(20, seed=0)
    assert len(rows) == 20
