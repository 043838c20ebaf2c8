from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_PLUGIN = REPO / "examples" / "pattern_plugin.py"

# small real runs on CPU: keep torch from oversubscribing CI's two cores
torch.set_num_threads(min(2, os.cpu_count() or 1))
# bfloat16 on the CPU is decided by timing both (advgen.amp_probe), which a loaded machine answers
# differently from a quiet one: the suite trains in float32 wherever it runs, so a seed gives the same
# runs on every machine; the tests that ask for autocast (--amp, amp=True) and the probe's own tests
# still run it
os.environ.setdefault("ADVGEN_CPU_AMP", "off")


@pytest.fixture
def fresh_manager():
    """A plugin manager with the default plugins loaded, independent of the process-wide one."""
    from advgen.plugins import PluginManager

    manager = PluginManager()
    manager.load_default()
    return manager


@pytest.fixture(autouse=True)
def _reset_global_manager():
    from advgen import cli
    from advgen.plugins import reset_manager

    reset_manager()
    cli._COMMANDS_LOADED = False
    yield
    reset_manager()
    cli._COMMANDS_LOADED = False


@pytest.fixture
def data_dir() -> Path:
    """The NSL-KDD data directory: ADVGEN_DATA, else ../shared/datasets beside the repo. Fails if absent."""
    candidates = [os.environ.get("ADVGEN_DATA"), str(REPO.parent / "shared" / "datasets")]
    for c in candidates:
        if c and (Path(c) / "nsl-kdd" / "KDDTrain+_20Percent.txt").is_file():
            os.environ["ADVGEN_DATA"] = c
            return Path(c)
    pytest.fail("NSL-KDD files not found: set ADVGEN_DATA to a folder holding nsl-kdd/KDDTrain+_20Percent.txt")


@pytest.fixture
def curves_run(tmp_path) -> Path:
    """A 5-step curves run (a checkpoint to sample, tamper with or export)."""
    return train_tiny_curves(tmp_path / "run")


def train_tiny_curves(out: Path) -> Path:
    from click.testing import CliRunner

    from advgen.cli import cli

    result = CliRunner().invoke(cli, [
        "train", "--plugin", "curves", "--steps", "5", "--batch-size", "16", "--n-samples", "0",
        "--option", "n_real=64", "--option", "length=8", "--threads", "1", "--out", str(out), "-q",
    ])
    assert result.exit_code == 0, result.output
    return out


def assert_decoder_matches_onnx(transform, tmp_path: Path, sizes=(1, 257), scale: float = 2.0):
    """The transform's decoder exported to ONNX gives onnxruntime the very numbers torch decodes;
    returns the graph's numeric output at the last size."""
    import numpy as np
    import onnxruntime as ort

    from advgen_tabular.transform import TableDecoder

    decoder = TableDecoder(transform.to_dict()).eval()
    path = tmp_path / "decoder.onnx"
    torch.onnx.export(
        decoder, (torch.randn(8, transform.dim),), str(path), input_names=["x"],
        output_names=["numeric", "categorical"], dynamic_axes={"x": {0: "n"}}, opset_version=17, dynamo=False,
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in sizes:
        xs = torch.randn(n, transform.dim) * scale
        num, _ = sess.run(None, {"x": xs.numpy()})
        np.testing.assert_array_equal(num, transform.decode_arrays(xs)[0])
    return num


def returns_within(fn, seconds: float, release=None):
    """Run ``fn`` in a thread; (finished, result or exception). ``release`` unblocks a hung thread."""
    out: dict = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["value"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    finished = not t.is_alive()
    if not finished and release is not None:
        release()
        t.join(5)
    return finished, out.get("value")
