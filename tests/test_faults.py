"""Faults: kill -9 and resume, what a killed run leaves behind, full and read-only disks.

A resumed run must equal an uninterrupted one (weights, EMA, optimizer states, metrics log); a kill at any
moment must leave a checkpoint that loads; temp files of killed writers go on the next write; a full or
read-only disk is one error line, never a traceback, and loses nothing already written.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from advgen import engine
from advgen.api import train
from advgen.checkpoint import load_checkpoint
from advgen.cli import cli
from advgen.errors import AdvgenError
from advgen.io import atomic_path, atomic_write_text, write_array_samples

CURVES = {"plugin": "curves", "log_every": 5, "n_samples": 0, "device": "cpu", "threads": 1,
          "options": {"n_real": 256}}


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """Runs here ask for one thread (exact resume); give the rest of the session its setting back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def curves(tmp_path: Path, **kw) -> dict:
    return {**CURVES, "out": str(tmp_path / "run"), **kw}


def steps_logged(run_dir: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def assert_clean_error(result, pattern: str) -> None:
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and pattern in errors[0], result.output


def temps(folder: Path, name: str) -> list[str]:
    return sorted(p.name for p in folder.glob(f".{name}.*.tmp"))


# --- resume equals an uninterrupted run ----------------------------------------------------------


def _flows_csv(path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 300
    kind = rng.choice(["benign", "scan", "flood"], n, p=[0.6, 0.25, 0.15])
    pd.DataFrame(
        {
            "Proto": np.where(kind == "flood", "udp", rng.choice(["tcp", "udp"], n)),
            "Bytes": rng.integers(40, 5000, n),
            "Rate": rng.uniform(0, 1, n).round(3),
            "Label": kind,
        }
    ).to_csv(path, index=False)
    return path


def _config(domain: str, tmp_path: Path) -> dict:
    if domain == "curves":
        return dict(CURVES, ckpt_every=7)
    csv = _flows_csv(tmp_path / "flows.csv")
    return {"plugin": "tabular", "data": str(csv), "label": "Label", "batch_size": 64, "log_every": 5,
            "ckpt_every": 7, "n_samples": 0, "device": "cpu", "threads": 1,
            "options": {"hidden": 32, "d_hidden": 32, "embed_dim": 8, "n_quantiles": 33}}


def _assert_same_state(a, b, where: str) -> None:
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys differ"
        for k in a:
            _assert_same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.parametrize("domain", ["curves", "tabular"])
def test_resume_equals_an_uninterrupted_run(tmp_path, domain):
    cfg = _config(domain, tmp_path)
    n = 30
    train(dict(cfg, steps=n, out=str(tmp_path / "straight")))
    train(dict(cfg, steps=n // 2, out=str(tmp_path / "split")))
    train({"steps": n}, resume=tmp_path / "split")
    straight, split = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "split")
    assert straight["step"] == split["step"] == n
    assert straight["generator_ema"] is not None
    for key in ("generator", "discriminator", "generator_ema", "opt_g", "opt_d", "rng_cpu"):
        _assert_same_state(straight[key], split[key], key)
    # the log is the same too: every step once, and the same losses
    logs = [[json.loads(line) for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
            for d in ("straight", "split")]
    assert [r["step"] for r in logs[0]] == [r["step"] for r in logs[1]] == list(range(5, n + 1, 5))
    assert [(r["loss_d"], r["loss_g"]) for r in logs[0]] == [(r["loss_d"], r["loss_g"]) for r in logs[1]]


# --- metrics.jsonl after a kill -------------------------------------------------------------------


def _interrupt_at(monkeypatch, step: int) -> None:
    """Stop training right after the metrics line of ``step`` is written, as a kill there would."""
    update = engine.Progress.update

    def update_then_stop(self, at, metrics):
        update(self, at, metrics)
        if at == step:
            raise KeyboardInterrupt

    monkeypatch.setattr(engine.Progress, "update", update_then_stop)


def test_resume_cuts_the_log_back_to_the_checkpoint(tmp_path, monkeypatch):
    cfg = curves(tmp_path, steps=100, ckpt_every=20)
    with monkeypatch.context() as m:
        _interrupt_at(m, 35)
        with pytest.raises(KeyboardInterrupt):
            train(cfg)
    run_dir = tmp_path / "run"
    assert load_checkpoint(run_dir)["step"] == 20 and steps_logged(run_dir)[-1] == 35
    with (run_dir / "metrics.jsonl").open("a") as fh:
        fh.write('{"step": 40, "loss_d": 1.3')  # a line cut short by the kill
    train({"steps": 50}, resume=run_dir)
    assert steps_logged(run_dir) == list(range(5, 51, 5))


def test_a_log_that_resumed_without_cutting_is_repaired(tmp_path):
    """Logs of older versions hold the steps after the checkpoint twice; the later session wins."""
    path = tmp_path / "metrics.jsonl"
    records = [(10, "a"), (20, "a"), (30, "a"), (20, "b"), (30, "b"), (40, "b")]
    path.write_text("".join(json.dumps({"step": s, "session": t}) + "\n" for s, t in records))
    assert engine.truncate_metrics(path, 40)
    kept = [(r["step"], r["session"]) for r in map(json.loads, path.read_text().splitlines())]
    assert kept == [(10, "a"), (20, "b"), (30, "b"), (40, "b")]
    assert not engine.truncate_metrics(path, 40), "an intact log is left as it is"


# --- a fresh run into a run directory --------------------------------------------------------------


def test_fresh_run_into_a_killed_runs_folder_is_refused(tmp_path, monkeypatch):
    with monkeypatch.context() as m:  # killed before its first checkpoint: config and metrics only
        _interrupt_at(m, 10)
        with pytest.raises(KeyboardInterrupt):
            train(curves(tmp_path, steps=100, ckpt_every=50))
    run_dir = tmp_path / "run"
    assert not (run_dir / "checkpoint.pt").exists()
    before = (run_dir / "metrics.jsonl").read_bytes()
    with pytest.raises(AdvgenError, match=r"already holds a run \(config\.json, metrics\.jsonl\); start over with --overwrite"):
        train(curves(tmp_path, steps=20))
    assert (run_dir / "metrics.jsonl").read_bytes() == before


def test_overwrite_clears_the_previous_run_and_only_it(tmp_path):
    run_dir = tmp_path / "run"
    train(curves(tmp_path, steps=20, n_samples=32, seed=1))
    assert (run_dir / "samples.csv").exists()
    (run_dir / ".checkpoint.pt.ab12cd34.tmp").write_bytes(b"left by a kill")
    with pytest.raises(AdvgenError, match="already holds a run.*continue it with --resume"):
        train(curves(tmp_path, steps=20))
    run = train(curves(tmp_path, steps=10, log_every=10, seed=2), overwrite=True)
    assert steps_logged(run_dir) == [10]
    assert load_checkpoint(run_dir)["step"] == 10 and run.summary["steps"] == 10
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.pt", "config.json", "metrics.jsonl", "summary.json"]

    # a folder that holds anything else is refused even with overwrite, and nothing in it is touched
    (run_dir / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    with pytest.raises(AdvgenError, match=r"holds files advgen did not write \(notes\.txt\)"):
        train(curves(tmp_path, steps=10), overwrite=True)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before


def test_a_folder_of_the_users_files_takes_a_run_beside_them(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    train(curves(tmp_path, steps=10))
    assert (folder / "notes.txt").read_text() == "mine" and (folder / "checkpoint.pt").exists()


def test_cli_overwrite_flag(tmp_path):
    out = str(tmp_path / "run")
    args = ["train", "--plugin", "curves", "--steps", "10", "--n-samples", "0", "--threads", "1", "-q",
            "--option", "n_real=128", "--out", out]
    assert invoke(*args).exit_code == 0
    assert_clean_error(invoke(*args), "already holds a run")
    result = invoke(*args, "--overwrite")
    assert result.exit_code == 0, result.output
    assert_clean_error(invoke("train", "--resume", out, "--overwrite"), "pass only one of them")
    assert "--overwrite" in invoke("train", "--help").output


# --- atomic writes: temp files, permissions ---------------------------------------------------------


def _host_tag(folder: Path) -> str:
    """The host part of this machine's temp names (``.{name}.{pid}.{host}.{random}.tmp``)."""
    with atomic_path(folder / "probe") as tmp:
        tmp.write_bytes(b"")
        return tmp.name.split(".")[3]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temp_files_of_killed_writers_go_on_the_next_write(tmp_path):
    target = tmp_path / "checkpoint.pt"
    with atomic_path(target) as tmp:
        # the writer's pid is in the temp name, so that a later writer can tell whether it still runs
        assert tmp.name.startswith(f".checkpoint.pt.{os.getpid()}.") and tmp.name.endswith(".tmp")
        tmp.write_bytes(b"x")
    host = _host_tag(tmp_path)
    old = time.time() - 3 * 24 * 3600
    files = {
        f".checkpoint.pt.{_dead_pid()}.{host}.a1b2c3d4.tmp": False,  # its writer is gone
        f".checkpoint.pt.{os.getpid()}.{host}.e5f6g7h8.tmp": True,  # its writer still runs
        ".checkpoint.pt.1.0badc0de.i9j0k1l2.tmp": True,  # another host's, recent
        ".checkpoint.pt.2.0badc0de.m3n4o5p6.tmp": False,  # another host's, days old
        ".checkpoint.pt.q7r8s9t0.tmp": True,  # an older advgen's (no pid), recent
        ".checkpoint.pt.u1v2w3x4.tmp": False,  # an older advgen's, days old
        f".checkpoint.pt.gz.{_dead_pid()}.{host}.y5z6a7b8.tmp": True,  # another target's
        ".checkpoint.pt.notes.tmp": True,  # not a temp file of advgen's
    }
    folder = tmp_path / "w"
    folder.mkdir()
    for name in files:
        (folder / name).write_bytes(b"partial checkpoint")
        if "0badc0de.m3n4" in name or "u1v2" in name:
            os.utime(folder / name, (old, old))
    atomic_write_text(folder / "checkpoint.pt", "new")
    assert (folder / "checkpoint.pt").read_text() == "new"
    left = {p.name for p in folder.iterdir()} - {"checkpoint.pt"}
    assert left == {name for name, kept in files.items() if kept}


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_respect_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        write_array_samples(np.zeros((2, 3)), tmp_path / "s.csv")
        with open(tmp_path / "plain", "w") as fh:
            fh.write("x")
    finally:
        os.umask(previous)
    plain = (tmp_path / "plain").stat().st_mode & 0o777
    assert plain == 0o666 & ~umask
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == plain
    assert (tmp_path / "s.csv").stat().st_mode & 0o777 == plain


def test_a_rewrite_keeps_the_files_permissions(tmp_path):
    target = tmp_path / "summary.json"
    atomic_write_text(target, "1")
    os.chmod(target, 0o640)
    atomic_write_text(target, "2")
    assert target.stat().st_mode & 0o777 == 0o640 and target.read_text() == "2"


# --- kill -9 at random moments ------------------------------------------------------------------------


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def test_kill_9_never_corrupts_a_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    ckpt = run_dir / "checkpoint.pt"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    base = [sys.executable, "-m", "advgen", "train", "-q"]
    fresh = base + ["--plugin", "curves", "--steps", "1000000", "--ckpt-every", "2", "--log-every", "2",
                    "--n-samples", "0", "--device", "cpu", "--threads", "1", "--option", "n_real=256",
                    "--out", str(run_dir)]
    seed = random.randrange(2**31)
    rng = random.Random(seed)
    last_step, killed = 0, []
    for session in range(3):
        before = _identity(ckpt)
        proc = subprocess.Popen(fresh if session == 0 else base + ["--resume", str(run_dir)], cwd=tmp_path,
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while _identity(ckpt) in (None, before):  # each checkpoint is a new file, renamed over the last
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint within a minute"
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        killed.append(proc.pid)
        payload = load_checkpoint(run_dir)  # whole, whenever the kill came (seed {seed})
        assert payload["step"] > last_step, f"seed {seed}"
        last_step = payload["step"]
    left_by_kills = temps(run_dir, "checkpoint.pt")
    stale = run_dir / f".checkpoint.pt.{killed[-1]}.{_host_tag(tmp_path)}.zzzzzzzz.tmp"
    stale.write_bytes(b"half a checkpoint")
    # the last session runs here: a process start costs seconds on a busy machine
    train({"steps": last_step + 4}, resume=run_dir)
    assert load_checkpoint(run_dir)["step"] == last_step + 4
    assert steps_logged(run_dir) == list(range(2, last_step + 5, 2)), f"seed {seed}"
    assert temps(run_dir, "checkpoint.pt") == [], f"seed {seed}; left by the kills: {left_by_kills}"


# --- full and read-only disks ----------------------------------------------------------------------------


def _checkpoint_temps_on_a_full_disk(monkeypatch) -> None:
    """Temp files of checkpoint.pt opened for writing go to /dev/full: the kernel answers ENOSPC."""
    real_open = builtins.open

    def fake_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and Path(file).name.startswith(".checkpoint.pt.") and "w" in mode:
            return real_open("/dev/full", mode, *args, **kwargs)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_disk_full_during_a_checkpoint_is_one_line_and_keeps_the_last_one(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    assert invoke("train", "--plugin", "curves", "--steps", "10", "--n-samples", "0", "-q", "--threads", "1",
                  "--option", "n_real=128", "--out", str(run_dir)).exit_code == 0
    before = (run_dir / "checkpoint.pt").read_bytes()
    _checkpoint_temps_on_a_full_disk(monkeypatch)
    result = invoke("train", "--resume", str(run_dir), "--steps", "20", "-q")
    # torch itself says "unexpected pos ..."
    assert_clean_error(result, f"disk full while writing {run_dir / 'checkpoint.pt'}")
    assert (run_dir / "checkpoint.pt").read_bytes() == before and temps(run_dir, "checkpoint.pt") == []


def test_disk_full_inside_torch_save(tmp_path, monkeypatch):
    train(curves(tmp_path, steps=10))
    run_dir = tmp_path / "run"
    before = (run_dir / "checkpoint.pt").read_bytes()

    def save(obj, f, *args, **kwargs):
        with (open(f, "wb") if isinstance(f, (str, os.PathLike)) else contextlib.nullcontext(f)) as fh:
            fh.write(b"PK\x03\x04 half a zip")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(AdvgenError, match=f"^disk full while writing {re.escape(str(run_dir / 'checkpoint.pt'))}$"):
        train({"steps": 20}, resume=run_dir)
    assert (run_dir / "checkpoint.pt").read_bytes() == before and temps(run_dir, "checkpoint.pt") == []


def _fail_opening(monkeypatch, name: str, code: int) -> None:
    """Writes to files called ``name`` fail with ``code`` (reads still work)."""
    real_open = builtins.open

    def fake_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and Path(file).name == name and set(mode) & set("wax+"):

            class Full:
                def __getattr__(self, attr):
                    return getattr(f, attr)

                def write(self, data):
                    raise OSError(code, os.strerror(code))

                def __enter__(self):
                    return self

                def __exit__(self, *exc):
                    f.close()

            return Full()
        return f

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)


def test_disk_full_while_logging_metrics(tmp_path, monkeypatch):
    _fail_opening(monkeypatch, "metrics.jsonl", errno.ENOSPC)
    result = invoke("train", "--plugin", "curves", "--steps", "10", "--log-every", "5", "--n-samples", "0",
                    "-q", "--threads", "1", "--option", "n_real=128", "--out", str(tmp_path / "run"))
    assert_clean_error(result, f"disk full while writing {tmp_path / 'run' / 'metrics.jsonl'}")


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_resume_on_a_read_only_run_folder(tmp_path, monkeypatch, code):
    # tests run as root, whom chmod does not stop: the file system's answer is simulated instead
    run_dir = tmp_path / "run"
    train(curves(tmp_path, steps=10))
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    real_mkstemp = tempfile.mkstemp

    def read_only(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == run_dir:
            raise OSError(code, os.strerror(code), str(run_dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    result = invoke("train", "--resume", str(run_dir), "--steps", "20", "-q")
    assert_clean_error(result, f"cannot write {run_dir / 'config.json'}: {run_dir} is read-only")
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before


def test_write_errors_stay_oserrors_for_code_that_catches_them(tmp_path):
    target = tmp_path / "x.bin"
    target.write_bytes(b"kept")
    with pytest.raises(OSError) as caught:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert isinstance(caught.value, AdvgenError) and caught.value.errno == errno.ENOSPC
    assert str(caught.value) == f"disk full while writing {target}"
    assert target.read_bytes() == b"kept" and temps(tmp_path, "x.bin") == []
