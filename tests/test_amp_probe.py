"""bf16 autocast on a CPU is chosen by a measurement remembered per machine, not by a CPU flag alone."""

from __future__ import annotations

import json

import pytest
import torch

from advgen import amp_probe, engine


@pytest.fixture(autouse=True)
def _fresh(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("ADVGEN_CPU_AMP", raising=False)
    monkeypatch.setattr(amp_probe, "_decided", {})


def _times(fp32: float, bf16: float):
    calls = []

    def fake(reps: int = 15):
        calls.append(reps)
        return {"fp32_s": fp32, "bf16_s": bf16}

    return fake, calls


def test_faster_bf16_is_kept_and_remembered(monkeypatch):
    fake, calls = _times(2.0, 1.0)
    monkeypatch.setattr(amp_probe, "measure", fake)
    assert amp_probe.bf16_pays() is True
    entry = json.loads(amp_probe.cache_file().read_text())
    assert [v["bf16"] for v in entry.values()] == [True]
    # a new process (no in-memory answer) reads the file and does not measure again
    monkeypatch.setattr(amp_probe, "_decided", {})
    assert amp_probe.bf16_pays() is True
    assert len(calls) == 1


def test_slower_bf16_is_dropped(monkeypatch):
    fake, _ = _times(1.0, 1.4)  # the Intel Xeon of this project: autocast 1.4x slower
    monkeypatch.setattr(amp_probe, "measure", fake)
    assert amp_probe.bf16_pays() is False


def test_a_small_gain_is_not_worth_it(monkeypatch):
    fake, _ = _times(1.05, 1.0)
    monkeypatch.setattr(amp_probe, "measure", fake)
    assert amp_probe.bf16_pays() is False


def test_a_corrupt_cache_means_measuring_again(monkeypatch):
    path = amp_probe.cache_file()
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    fake, calls = _times(2.0, 1.0)
    monkeypatch.setattr(amp_probe, "measure", fake)
    assert amp_probe.bf16_pays() is True and len(calls) == 1
    assert json.loads(path.read_text())  # rewritten whole


def test_an_unwritable_cache_is_no_error(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # a file where the cache folder should be
    fake, _ = _times(2.0, 1.0)
    monkeypatch.setattr(amp_probe, "measure", fake)
    assert amp_probe.bf16_pays() is True


@pytest.mark.parametrize("value, expected", [("off", False), ("on", True)])
def test_the_environment_decides_without_measuring(monkeypatch, value, expected):
    monkeypatch.setenv("ADVGEN_CPU_AMP", value)
    monkeypatch.setattr(amp_probe, "measure", lambda reps=15: pytest.fail("measured"))
    assert amp_probe.bf16_pays() is expected


def test_measuring_leaves_the_seeded_generator_alone():
    torch.manual_seed(3)
    want = torch.rand(4)
    torch.manual_seed(3)
    amp_probe.measure(reps=1)
    assert torch.equal(torch.rand(4), want)


def test_engine_asks_the_probe_only_on_a_cpu_with_native_bf16(monkeypatch):
    monkeypatch.setattr(amp_probe, "measure", lambda reps=15: {"fp32_s": 1.0, "bf16_s": 2.0})
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert engine.amp_supported(torch.device("cpu")) is False  # flag present, measured slower
    monkeypatch.setattr(amp_probe, "_decided", {})
    monkeypatch.setattr(amp_probe, "measure", lambda reps=15: {"fp32_s": 3.0, "bf16_s": 1.0})
    amp_probe.cache_file().unlink()
    assert engine.amp_supported(torch.device("cpu")) is True
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(amp_probe, "measure", lambda reps=15: pytest.fail("measured without native bf16"))
    assert engine.amp_supported(torch.device("cpu")) is False
