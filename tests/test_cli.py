"""The command line through click's CliRunner: happy paths and bad input (one line, non-zero, no traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from advgen.cli import cli

EXAMPLE = str(Path(__file__).resolve().parents[1] / "examples" / "pattern_plugin.py")


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def assert_clean_error(result, pattern: str) -> None:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.output
    assert pattern in errors[0], result.output


def test_plugins_json_lists_builtins():
    result = invoke("plugins", "--json")
    assert result.exit_code == 0, result.output
    infos = {p["name"]: p for p in json.loads(result.output)}
    assert infos["curves"]["domains"] == ["curves"]
    assert "advgen_register_losses" in infos["core"]["hooks"]


def test_train_sample_and_toml_config(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('plugin = "curves"\nsteps = 10\nbatch_size = 32\n[options]\nlength = 16\nn_real = 256\n')
    out = tmp_path / "run"
    result = invoke("train", "--config", str(toml), "--steps", "20", "--out", str(out), "-q")
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "config.json").read_text())
    assert saved["steps"] == 20 and saved["batch_size"] == 32 and saved["options"]["length"] == 16
    for name in ("checkpoint.pt", "metrics.jsonl", "summary.json", "samples.csv", "samples.png"):
        assert (out / name).is_file(), name
    result = invoke("sample", str(out), "-n", "7", "-o", str(tmp_path / "s.npz"), "--seed", "1")
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "s.npz")["x"].shape == (7, 16)


def test_example_plugin_learns_the_pattern(tmp_path):
    out = tmp_path / "pattern"
    result = invoke("train", "--plugin", EXAMPLE, "--out", str(out), "-q")
    assert result.exit_code == 0, result.output
    result = invoke("sample", str(out), "-n", "500", "-o", str(tmp_path / "p.csv"), "--seed", "0")
    assert result.exit_code == 0, result.output
    samples = np.loadtxt(tmp_path / "p.csv", delimiter=",", skiprows=1)
    assert np.abs(samples.mean(axis=0) - [1, 0, 1, 0]).max() < 0.1
    assert (np.abs(samples - [1, 0, 1, 0]) < 0.25).all(axis=1).mean() > 0.9


def test_python_m_advgen_works():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "advgen", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "train" in result.stdout


def test_unknown_plugin():
    assert_clean_error(invoke("train", "--plugin", "nope"), "unknown plugin 'nope'; available:")


def test_missing_data_file(tmp_path):
    assert_clean_error(
        invoke("train", "--plugin", "curves", "--data", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "r")),
        "not found",
    )
    assert not (tmp_path / "r").exists()


def test_malformed_csv(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,c,d\n1,2,3,4\n1,2,oops,4\n")
    assert_clean_error(invoke("train", "--plugin", "curves", "--data", str(bad)), "not finite numbers")
    nan = tmp_path / "nan.csv"
    nan.write_text("a,b,c\n1,2,3\n1,inf,3\n")
    assert_clean_error(invoke("train", "--plugin", "curves", "--data", str(nan)), "not finite numbers")


def test_user_curves_csv_trains(tmp_path):
    x = np.linspace(0, 1, 12)
    rng = np.random.default_rng(0)
    curves = np.sin(2 * np.pi * (x + rng.uniform(0, 1, (300, 1))))
    path = tmp_path / "curves.csv"
    np.savetxt(path, curves, delimiter=",", header=",".join(f"t{i}" for i in range(12)), comments="")
    result = invoke("train", "--plugin", "curves", "--data", str(path), "--steps", "50", "--out", str(tmp_path / "r"), "-q")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["validity_real"]["pass_rate"] > 0.98
    assert {"bounds", "smoothness"} <= set(summary["validity_synthetic"]["per_rule"])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = CliRunner().invoke(cli, ["train", "--plugin", "curves", "--steps", "10", "--out", str(out), "-q",
                                      "--option", "n_real=128"])
    assert result.exit_code == 0, result.output
    return out


def test_negative_sample_count(trained_run, tmp_path):
    assert_clean_error(invoke("sample", str(trained_run), "-n", "-5", "-o", str(tmp_path / "s.csv")), "-n")
    assert not (tmp_path / "s.csv").exists()


def test_corrupted_and_truncated_checkpoint(trained_run, tmp_path):
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    data = (trained_run / "checkpoint.pt").read_bytes()
    (damaged / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    assert_clean_error(invoke("sample", str(damaged), "-n", "5", "-o", str(tmp_path / "s.csv")), "corrupted")
    (damaged / "checkpoint.pt").write_bytes(b"\x00" * 100)
    assert_clean_error(invoke("sample", str(damaged), "-n", "5", "-o", str(tmp_path / "s.csv")), "corrupted")
    assert_clean_error(invoke("sample", str(tmp_path / "nowhere"), "-n", "5", "-o", str(tmp_path / "s.csv")), "no checkpoint")


def test_bad_arguments(trained_run, tmp_path):
    assert_clean_error(invoke("train", "--plugin", "curves", "--steps", "0"), "steps must be a positive integer")
    assert_clean_error(invoke("train", "--plugin", "curves", "--device", "tpu"), "unknown device")
    assert_clean_error(invoke("train", "--plugin", "curves", "--option", "length=-3", "--out", str(tmp_path / "x")), "length")
    assert_clean_error(invoke("sample", str(trained_run), "-n", "5", "-o", str(tmp_path / "s.xyz")), "can be written as")
    assert_clean_error(invoke("sample", str(trained_run), "-n", "5", "-o", str(tmp_path / "s.csv"), "--condition", "label=x"), "not conditional")
    assert_clean_error(invoke("train", "--config", str(tmp_path / "none.toml"), "--plugin", "curves"), "config file not found")


def test_existing_output_survives_a_failed_sample(trained_run, tmp_path):
    out = tmp_path / "keep.csv"
    out.write_text("precious\n")
    assert_clean_error(invoke("sample", str(trained_run), "-n", "5", "-o", str(out), "--condition", "a=b"), "not conditional")
    assert out.read_text() == "precious\n"


def test_sample_amp_flag_picks_the_precision(trained_run, tmp_path, monkeypatch):
    """--amp samples under bf16 autocast where the device supports it; --no-amp in float32, which is
    what the run itself does when it trained without autocast (the curves default)."""
    import advgen.engine as engine
    from advgen.api import load_run

    monkeypatch.setattr(engine, "amp_supported", lambda device: True)
    for flag, name in (("--amp", "a.npz"), ("--no-amp", "b.npz")):
        result = invoke("sample", str(trained_run), "-n", "64", "-o", str(tmp_path / name), "--seed", "1", flag)
        assert result.exit_code == 0, result.output
    a, b = (np.load(tmp_path / name)["x"] for name in ("a.npz", "b.npz"))
    np.testing.assert_array_equal(b, load_run(trained_run).sample(64, seed=1))
    assert not np.array_equal(a, b) and np.allclose(a, b, atol=0.1)


def test_sample_threads_sets_torch_threads_and_refuses_zero(trained_run, tmp_path):
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        result = invoke("sample", str(trained_run), "-n", "8", "-o", str(tmp_path / "s.npz"), "--threads", "1")
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert_clean_error(invoke("sample", str(trained_run), "-n", "8", "-o", str(tmp_path / "t.npz"), "--threads", "0"), "--threads")
