"""A checkpoint whose bytes changed after it was written is refused, not loaded into a generator that
would then produce garbage without a word: every checkpoint carries a SHA-256 of its contents."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from advgen.checkpoint import DIGEST_KEY, load_checkpoint, payload_digest
from advgen.cli import cli
from advgen.errors import CheckpointError

REPO = Path(__file__).resolve().parents[1]


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def corrupted_line(ckpt: Path) -> str:
    return f"checkpoint {ckpt} is corrupted or was tampered with (its contents do not match their digest)"


def _tensor_bytes(t: torch.Tensor) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def flip_a_generator_byte(ckpt: Path) -> str:
    """Flip one bit in the storage of the largest weight of the generator that sampling uses, by
    rewriting that member of the checkpoint's zip (the zip itself stays valid); return the member."""
    payload = torch.load(ckpt, weights_only=True)
    weights = payload["generator_ema"] or payload["generator"]
    target = _tensor_bytes(max(weights.values(), key=lambda t: t.numel()))
    with zipfile.ZipFile(ckpt) as z:
        members = [(info, z.read(info)) for info in z.infolist()]
    name = next(info.filename for info, data in members if "/data/" in info.filename and data == target)
    flipped = ckpt.with_name("flipped.pt")
    with zipfile.ZipFile(flipped, "w", zipfile.ZIP_STORED) as z:
        for info, data in members:
            if info.filename == name:
                data = bytearray(data)
                data[len(data) // 2] ^= 0x10
                data = bytes(data)
            z.writestr(info, data)
    flipped.replace(ckpt)
    return name


def _one_clean_line(result) -> str:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_a_flipped_byte_in_a_tensor_is_one_clear_error(curves_run, tmp_path):
    ckpt = curves_run / "checkpoint.pt"
    member = flip_a_generator_byte(ckpt)
    assert torch.load(ckpt, weights_only=True)["step"] == 5, f"{member}: the zip must stay readable"
    with pytest.raises(CheckpointError, match=f"^{re.escape(corrupted_line(ckpt))}$"):
        load_checkpoint(curves_run)
    for args in (
        ("sample", str(curves_run), "-n", "5", "-o", str(tmp_path / "x.csv")),
        ("train", "--resume", str(curves_run), "--steps", "10", "-q"),
    ):
        assert _one_clean_line(invoke(*args)) == f"Error: {corrupted_line(ckpt)}", args
    assert not (tmp_path / "x.csv").exists()
    # the command itself, in a process of its own: one line on stderr, nothing on stdout
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "advgen", "sample", str(curves_run), "-n", "5", "-o", str(tmp_path / "y.csv")],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=300,
    )
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.strip() == f"Error: {corrupted_line(ckpt)}", proc.stderr
    assert not (tmp_path / "y.csv").exists()


@pytest.mark.parametrize("field", ["step", "config", "opt_g"])
def test_a_rewritten_value_with_the_old_digest_is_refused(curves_run, field):
    ckpt = curves_run / "checkpoint.pt"
    payload = torch.load(ckpt, weights_only=True)
    if field == "step":
        payload["step"] = 4
    elif field == "config":
        payload["config"] = payload["config"].replace('"steps": 5', '"steps": 6')
        assert '"steps": 6' in payload["config"]
    else:  # an optimizer setting: the learning rate a resumed run would train with
        payload["opt_g"]["param_groups"][0]["lr"] *= 10
    torch.save(payload, ckpt)
    with pytest.raises(CheckpointError, match=f"^{re.escape(corrupted_line(ckpt))}$"):
        load_checkpoint(ckpt)


def test_checkpoints_carry_a_digest_and_those_written_before_it_still_load(curves_run, tmp_path):
    ckpt = curves_run / "checkpoint.pt"
    payload = torch.load(ckpt, weights_only=True)
    digest = payload.pop(DIGEST_KEY)
    assert re.fullmatch(r"[0-9a-f]{64}", digest) and payload_digest(payload) == digest
    assert DIGEST_KEY not in load_checkpoint(ckpt)
    assert invoke("sample", str(curves_run), "-n", "7", "-o", str(tmp_path / "a.csv"), "--seed", "3").exit_code == 0
    torch.save(payload, ckpt)  # as advgen wrote it before checkpoints had a digest: loaded unchecked
    assert load_checkpoint(ckpt)["step"] == 5
    assert invoke("sample", str(curves_run), "-n", "7", "-o", str(tmp_path / "b.csv"), "--seed", "3").exit_code == 0
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    # resuming such a run writes a checkpoint with a digest again
    result = invoke("train", "--resume", str(curves_run), "--steps", "8", "-q")
    assert result.exit_code == 0, result.output
    resumed = torch.load(ckpt, weights_only=True)
    assert resumed["step"] == 8 and payload_digest(resumed) == resumed[DIGEST_KEY]


def test_the_digest_covers_names_dtypes_shapes_and_bytes_not_layout_or_order():
    w = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    base = payload_digest({"a": {"w": w, "b": torch.zeros(3)}, "step": 1})
    # the same values: keys in another order, a non-contiguous tensor holding the same numbers
    assert payload_digest({"step": 1, "a": {"b": torch.zeros(3), "w": w.t().contiguous().t()}}) == base
    assert payload_digest({"a": {"w": w, "b": torch.zeros(3)}, "step": 1, DIGEST_KEY: "x"}) == base
    changed = [
        {"a": {"w": w.reshape(3, 2), "b": torch.zeros(3)}, "step": 1},  # shape
        {"a": {"w": w.view(torch.int32), "b": torch.zeros(3)}, "step": 1},  # dtype, same bytes
        {"a": {"v": w, "b": torch.zeros(3)}, "step": 1},  # name
        {"a": {"w": w, "b": torch.tensor([0.0, -0.0, 0.0])}, "step": 1},  # one bit
        {"a": {"w": w, "b": torch.zeros(3)}, "step": 2},  # a plain value
        {"a": {"w": w, "b": torch.zeros(3)}, "step": "1"},  # its type
    ]
    assert len({base, *(payload_digest(p) for p in changed)}) == len(changed) + 1
