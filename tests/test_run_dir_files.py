"""A run folder's metrics.jsonl when it is not what advgen wrote: a symbolic link, a device, a pipe,
a huge or sparse file, a hard link. ``--resume`` reads it (to cut it back to the checkpoint) and
appends to it; each of these is refused with one line, or read as a bounded stream."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from advgen import engine
from advgen.cli import cli
from advgen.errors import AdvgenError, CheckpointError
from conftest import returns_within, train_tiny_curves


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def old_truncation(lines: list[bytes], step: int) -> list[bytes]:
    """The rule as it was written before streaming: a stack of records, later sessions win."""
    kept: list[tuple[int, bytes]] = []
    for line in lines:
        try:
            record_step = json.loads(line)["step"]
        except (ValueError, TypeError, KeyError):
            continue
        if not isinstance(record_step, int) or not line.endswith(b"\n"):
            continue
        while kept and kept[-1][0] >= record_step:
            kept.pop()
        kept.append((record_step, line))
    return [line for s, line in kept if s <= step]


# --- refused ---------------------------------------------------------------------------------------


def test_resume_refuses_a_metrics_log_that_is_a_symlink_and_writes_nothing_through_it(tmp_path):
    run = train_tiny_curves(tmp_path / "run")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to(victim)
    result = CliRunner().invoke(cli, ["train", "--resume", str(run), "--steps", "10", "--threads", "1", "-q"])
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "metrics.jsonl is a symbolic link" in errors[0], result.output
    assert victim.read_text() == "precious\n"
    assert (run / "metrics.jsonl").is_symlink()


def test_a_symlink_is_refused_when_the_log_is_opened_for_a_fresh_run_too(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("")
    (tmp_path / "metrics.jsonl").symlink_to(victim)
    with pytest.raises(CheckpointError, match="is a symbolic link"):
        engine.MetricsLog(tmp_path / "metrics.jsonl", 0)
    (tmp_path / "dangling.jsonl").symlink_to(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="is a symbolic link"):
        engine.MetricsLog(tmp_path / "dangling.jsonl", 0)
    assert victim.read_text() == "" and not (tmp_path / "nowhere").exists()


def test_a_fifo_in_place_of_the_log_is_refused_instead_of_hanging(tmp_path):
    fifo = tmp_path / "metrics.jsonl"
    os.mkfifo(fifo)

    def release():  # a writer that comes and goes unblocks a reader stuck in open() or read()
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)

    finished, value = returns_within(lambda: engine.truncate_metrics(fifo, 10), 5, release)
    assert finished, "reading a FIFO metrics log hung"
    assert isinstance(value, CheckpointError) and "not a regular file (a device, a pipe" in str(value), repr(value)


def test_a_folder_in_place_of_the_log_is_one_line(tmp_path):
    (tmp_path / "metrics.jsonl").mkdir()
    with pytest.raises(CheckpointError, match=r"not a regular file \(a folder\)"):
        engine.MetricsLog(tmp_path / "metrics.jsonl", 5)


def test_a_log_larger_than_the_cap_is_refused_before_it_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "MAX_METRICS_BYTES", 1 << 20)
    path = tmp_path / "metrics.jsonl"
    with path.open("wb") as fh:  # sparse: 2 MiB of holes cost no disk
        fh.truncate(2 << 20)
    with pytest.raises(CheckpointError, match=r"holds 2,097,152 bytes, more than the 1,048,576 of a metrics log"):
        engine.truncate_metrics(path, 10)


def test_dev_zero_behind_the_log_is_one_line_and_no_memory(tmp_path):
    """In a child whose address space allows only 256 MiB more than it has mapped: reading /dev/zero
    whole ran out of memory before."""
    path = tmp_path / "metrics.jsonl"
    path.symlink_to("/dev/zero")
    code = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from advgen import engine\n"
        "from advgen.errors import AdvgenError\n"
        "vm = next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmSize:'))\n"
        "resource.setrlimit(resource.RLIMIT_AS, (vm + (256 << 20), resource.RLIM_INFINITY))\n"
        "try:\n"
        "    engine.truncate_metrics(Path(sys.argv[1]), 10)\n"
        "except AdvgenError as exc:\n"
        "    print('refused:', exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0 and "refused:" in proc.stdout and "symbolic link" in proc.stdout, (
        proc.stdout + proc.stderr[-2000:]
    )


# --- read as a bounded stream ----------------------------------------------------------------------


def test_the_log_is_cut_by_a_stream_not_read_whole(tmp_path):
    """20,000 records (2 MB) cut back to the checkpoint: memory is 8 bytes a record, not the file
    and a list of its lines (about 6 MB before)."""
    path = tmp_path / "metrics.jsonl"
    line = '{"step": %d, "loss_d": 1.2345678, "loss_g": 0.9876543, "lr": 0.0002, "time": 12.3456789, "pad": "%s"}\n'
    with path.open("w") as fh:
        for s in range(1, 20_001):
            fh.write(line % (s, "x" * 10))
    size = path.stat().st_size
    tracemalloc.start()
    try:
        assert engine.truncate_metrics(path, 18_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < size / 4, f"cutting a {size / 2**20:.0f} MiB log took {peak / 2**20:.1f} MiB"
    with path.open("rb") as fh:
        steps = [json.loads(x)["step"] for x in fh]
    assert steps == list(range(1, 18_001))


def test_an_overlong_line_is_dropped_without_being_held(tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "MAX_METRICS_LINE", 1024)
    path = tmp_path / "metrics.jsonl"
    records = [json.dumps({"step": s}).encode() + b"\n" for s in (5, 10)]
    junk = b'{"step": 7, "pad": "' + b"y" * 5000 + b'"}\n'
    path.write_bytes(records[0] + junk + records[1] + b"z" * 3000)  # and a long tail cut short
    assert engine.truncate_metrics(path, 10)
    assert path.read_bytes() == records[0] + records[1]


@pytest.mark.parametrize("seed", range(6))
def test_streamed_cutting_keeps_exactly_what_the_old_rule_kept(tmp_path, seed):
    rng = random.Random(seed)
    lines = []
    for _ in range(rng.randint(0, 60)):
        kind = rng.random()
        if kind < 0.7:
            lines.append((json.dumps({"step": rng.randint(-3, 40), "v": rng.random()}) + "\n").encode())
        elif kind < 0.8:
            lines.append(b'{"step": 12, "loss')  # cut short, then the next record on the same line
        elif kind < 0.9:
            lines.append(rng.choice([b"[1, 2]\n", b'"text"\n', b'{"nostep": 1}\n', b'{"step": 1.5}\n',
                                     b'{"step": true}\n', b"\n", b"\xff\xfe garbage\n"]))
        else:
            lines.append((json.dumps({"step": 2 ** 70 * rng.choice([1, -1])}) + "\n").encode())
    raw = b"".join(lines)
    step = rng.randint(0, 40)
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(raw)
    expected = b"".join(old_truncation(raw.splitlines(keepends=True), step))
    changed = engine.truncate_metrics(path, step)
    assert path.read_bytes() == expected
    assert changed == (expected != raw)


def test_a_hard_linked_log_is_made_the_runs_own_before_appending(tmp_path):
    other = tmp_path / "elsewhere.jsonl"
    other.write_bytes(b'{"step": 5}\n')
    os.link(other, tmp_path / "metrics.jsonl")
    with engine.MetricsLog(tmp_path / "metrics.jsonl", 5) as log:
        log.write({"step": 10})
    assert other.read_bytes() == b'{"step": 5}\n'
    assert (tmp_path / "metrics.jsonl").read_bytes() == b'{"step": 5}\n{"step": 10}\n'


def test_a_plain_log_still_resumes(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 5}\n{"step": 10}\n{"step": 15}\n')
    with engine.MetricsLog(path, 10) as log:
        log.write({"step": 15, "again": True})
    assert path.read_bytes() == b'{"step": 5}\n{"step": 10}\n{"step": 15, "again": true}\n'
    assert not engine.truncate_metrics(path, 15)
    assert issubclass(CheckpointError, AdvgenError)
