"""Several processes: data-parallel training and sharded sampling, as torchrun launches them.

Each test starts two processes of the ``advgen`` command line with the environment torchrun gives its
workers (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) on gloo, one thread each. A short
prelude lets a process record what only it knows: its nets after training, the chunks it drew.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from advgen import api, distributed, sampling
from advgen.api import load_run, train
from advgen.checkpoint import load_checkpoint

CURVES = {"plugin": "curves", "log_every": 4, "n_samples": 0, "device": "cpu", "threads": 1,
          "options": {"n_real": 256}}
# the run of a process (torchrun's `-m advgen`), recording its nets and the chunks it drew into $TEST_DUMP
PRELUDE = """
import atexit, json, os, sys
import torch
import advgen.api, advgen.sampling
from advgen import engine

rank, dump = os.environ["RANK"], os.environ["TEST_DUMP"]
advgen.sampling.CHUNK_ROWS = int(os.environ.get("TEST_CHUNK_ROWS", advgen.sampling.CHUNK_ROWS))
chunks = []
chunk_seed = advgen.api.chunk_seed
def recording_chunk_seed(seed, index, stream=0):
    chunks.append(index)
    return chunk_seed(seed, index, stream)
advgen.api.chunk_seed = recording_chunk_seed
atexit.register(lambda: chunks and open(os.path.join(dump, f"chunks{rank}.json"), "w").write(json.dumps(chunks)))
trainer_train = engine.Trainer.train
def train(self, *args, **kwargs):
    summary = trainer_train(self, *args, **kwargs)
    nets = {"generator": self.generator, "discriminator": self.discriminator, "generator_ema": self.generator_ema}
    torch.save({k: v.state_dict() for k, v in nets.items()}, os.path.join(dump, f"nets{rank}.pt"))
    return summary
engine.Trainer.train = train
sys.argv[0] = "advgen"
from advgen.cli import main
main()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], cwd: Path, processes: int = 2, timeout: float = 90, **env: str):
    """Run ``advgen ARGS`` in ``processes`` processes as torchrun would; return each one's
    (exit status, stdout, stderr) and the seconds until the last ended."""
    dump = cwd / "dump"
    dump.mkdir(exist_ok=True)
    port = str(_free_port())
    procs = []
    for rank in range(processes):
        penv = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(processes), LOCAL_RANK=str(rank),
                    LOCAL_WORLD_SIZE=str(processes), MASTER_ADDR="127.0.0.1", MASTER_PORT=port,
                    OMP_NUM_THREADS="1", TEST_DUMP=str(dump), **env)
        procs.append(subprocess.Popen([sys.executable, "-c", PRELUDE, *args], cwd=cwd, env=penv,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    t0 = time.monotonic()
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=max(1.0, timeout - (time.monotonic() - t0)))
            results.append((p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return results, time.monotonic() - t0


def _assert_ok(results) -> None:
    for rank, (code, out, err) in enumerate(results):
        assert code == 0, f"rank {rank} exited {code}:\n{out}\n{err}"


def _assert_same(a: dict, b: dict, where: str) -> None:
    assert a.keys() == b.keys(), where
    for key in a:
        assert torch.equal(a[key], b[key]), f"{where}.{key} differs between the processes"


def _steps_logged(run_dir: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# --- training -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def curves_ddp(tmp_path_factory):
    """12 steps of curves in two processes, with a checkpoint (and the weights check) at step 8."""
    tmp = tmp_path_factory.mktemp("curves")
    args = ["train", "--plugin", "curves", "--steps", "12", "--log-every", "4", "--ckpt-every", "8",
            "--n-samples", "0", "--device", "cpu", "--threads", "1", "--option", "n_real=256", "--out", "run"]
    results, _ = launch(args, tmp)
    _assert_ok(results)
    return tmp, results


def test_two_processes_train_one_run_with_identical_weights(curves_ddp, tmp_path):
    tmp, results = curves_ddp
    run_dir = tmp / "run"
    nets = [torch.load(tmp / "dump" / f"nets{r}.pt", weights_only=True) for r in (0, 1)]
    for key in ("generator", "discriminator", "generator_ema"):
        _assert_same(nets[0][key], nets[1][key], key)
    ckpt = load_checkpoint(run_dir)
    assert ckpt["step"] == 12
    for key in ("generator", "discriminator", "generator_ema"):
        _assert_same(nets[0][key], ckpt[key], f"checkpoint {key}")  # plain state dicts: no DDP 'module.' prefix
    # the EMA moved away from its start, the same way in both processes
    assert not all(torch.equal(nets[0]["generator"][k], nets[0]["generator_ema"][k]) for k in nets[0]["generator"])
    # each process drew batches of its own and the gradients were averaged: not one process's run
    alone = train(dict(CURVES, steps=12, ckpt_every=8, out=str(tmp_path / "alone")))
    assert not torch.equal(alone.generator.state_dict()["net.0.weight"], ckpt["generator_ema"]["net.0.weight"])
    # rank 0 alone wrote the log (each step once) and the summary; rank 1 said nothing
    assert _steps_logged(run_dir) == [4, 8, 12]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["processes"], summary["batch_size_per_process"], summary["effective_batch_size"]) == (2, 128, 256)
    code, out, err = results[0]
    assert "device: cpu x 2 processes (batch 128 per process, 256 in all)" in out, out
    assert "on cpu x 2 processes (batch 128 per process, 256 in all)" in err, err
    assert results[1][1:] == ("", ""), results[1]


def test_a_two_process_checkpoint_loads_and_resumes_in_one_process(curves_ddp, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoint.pt").write_bytes((curves_ddp[0] / "run" / "checkpoint.pt").read_bytes())
    (run_dir / "metrics.jsonl").write_bytes((curves_ddp[0] / "run" / "metrics.jsonl").read_bytes())
    curves = load_run(run_dir).sample(50, seed=1)
    assert np.asarray(curves).shape[0] == 50 and np.isfinite(np.asarray(curves)).all()
    run = train({"steps": 16, "threads": 1}, resume=run_dir)
    assert run.summary["steps"] == 16 and "processes" not in run.summary
    assert _steps_logged(run_dir) == [4, 8, 12, 16]


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


@pytest.fixture(scope="module")
def tabular_ddp(tmp_path_factory):
    """A conditional table trained 4 steps in one process, then resumed to 8 in two (spectral norm in D)."""
    tmp = tmp_path_factory.mktemp("tabular")
    cfg = {"plugin": "tabular", "data": str(_flows_csv(tmp / "flows.csv")), "label": "Label", "batch_size": 64,
           "steps": 4, "log_every": 2, "n_samples": 0, "device": "cpu", "threads": 1, "out": str(tmp / "run"),
           "options": {"hidden": 32, "d_hidden": 32, "embed_dim": 8, "n_quantiles": 33}}
    train(cfg)
    results, _ = launch(["train", "--resume", "run", "--steps", "8", "--threads", "1"], tmp)
    _assert_ok(results)
    return tmp


def test_one_process_run_resumes_in_two_with_identical_weights(tabular_ddp):
    nets = [torch.load(tabular_ddp / "dump" / f"nets{r}.pt", weights_only=True) for r in (0, 1)]
    for key in ("generator", "discriminator", "generator_ema"):
        _assert_same(nets[0][key], nets[1][key], key)
    assert any("parametrizations" in k for k in nets[0]["discriminator"])  # spectral norm under DDP
    ckpt = load_checkpoint(tabular_ddp / "run")
    assert ckpt["step"] == 8
    _assert_same(nets[0]["generator_ema"], ckpt["generator_ema"], "checkpoint generator_ema")
    assert _steps_logged(tabular_ddp / "run") == [2, 4, 6, 8]
    assert json.loads((tabular_ddp / "run" / "summary.json").read_text())["processes"] == 2


# --- sampling -------------------------------------------------------------------------------------


def test_two_processes_sample_the_rows_of_one(tabular_ddp, monkeypatch):
    """Chunks of 100 rows, 450 rows: rank 0 draws chunks 0, 2, 4 and rank 1 chunks 1, 3; rank 0 joins."""
    args = ["sample", "run", "-n", "450", "-o", "two.csv", "--seed", "7", "--condition", "Label=scan"]
    results, _ = launch(args, tabular_ddp, TEST_CHUNK_ROWS="100")
    _assert_ok(results)
    drawn = [json.loads((tabular_ddp / "dump" / f"chunks{r}.json").read_text()) for r in (0, 1)]
    assert drawn == [[0, 2, 4], [1, 3]]
    monkeypatch.setattr(sampling, "CHUNK_ROWS", 100)
    written = load_run(tabular_ddp / "run").write_samples(tabular_ddp / "one.csv", 450, "Label=scan", seed=7, validate=True)
    assert (tabular_ddp / "two.csv").read_bytes() == (tabular_ddp / "one.csv").read_bytes()
    assert sorted(p.name for p in tabular_ddp.iterdir() if ".part-" in p.name) == []
    # the validator counts are summed over both processes
    assert f"validity: {written.pass_rate:.1%} pass all {written.rules} rules" in results[0][1]
    assert results[1][1:] == ("", "")


class _Simulated(distributed.World):
    """The processes of a world run one after another in this process: a broadcast gives the first
    process's value, sums and barriers do nothing (what the others wrote is already on disk)."""

    def __init__(self, rank: int, size: int, shared: dict):
        super().__init__(rank, size)
        self.shared, self.calls = shared, 0

    def broadcast_int(self, value: int) -> int:
        self.calls += 1
        return self.shared.setdefault(self.calls, value)

    def sum(self, values):
        return [float(v) for v in values]

    def barrier(self) -> None:
        pass


@pytest.mark.parametrize("suffix", [".parquet", ".npz", ".npy", ".csv"])
def test_joined_parts_equal_one_process(curves_ddp, tabular_ddp, tmp_path, monkeypatch, suffix):
    monkeypatch.setattr(sampling, "CHUNK_ROWS", 64)
    run = load_run(tabular_ddp / "run" if suffix == ".parquet" else curves_ddp[0] / "run")
    n = 64 * 4 + 10
    run.write_samples(tmp_path / f"one{suffix}", n, seed=3)
    for size in (2, 3):
        shared: dict = {}
        for rank in reversed(range(size)):  # rank 0 last: it joins the parts the others wrote
            run.write_samples(tmp_path / f"many{suffix}", n, seed=3, world=_Simulated(rank, size, shared))
        one, many = tmp_path / f"one{suffix}", tmp_path / f"many{suffix}"
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            a, b = pq.ParquetFile(one), pq.ParquetFile(many)
            assert a.schema_arrow.equals(b.schema_arrow, check_metadata=True)
            assert [a.metadata.row_group(i).num_rows for i in range(a.num_row_groups)] == \
                [b.metadata.row_group(i).num_rows for i in range(b.num_row_groups)]
            pd.testing.assert_frame_equal(a.read().to_pandas(), b.read().to_pandas())
        elif suffix == ".npz":
            with np.load(one) as a, np.load(many) as b:
                assert a.files == b.files
                for k in a.files:
                    np.testing.assert_array_equal(a[k], b[k])
        else:
            assert one.read_bytes() == many.read_bytes()
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_folder_of_images_is_not_split():
    class Images(api.Run):
        def __init__(self):
            pass

    from advgen.domain import Domain

    class D(Domain):
        name = "d"

        def sample_suffixes(self):
            return (".npz", "")

    run = Images()
    run.domain = D()
    with pytest.raises(api.AdvgenError, match=r"several processes write samples as \.npz; write a folder in one process"):
        run.write_samples(Path("out"), 10, world=_Simulated(0, 2, {}))


# --- failures -------------------------------------------------------------------------------------

FAULTY = '''
import os
from advgen.errors import AdvgenError
from advgen.hookspecs import hookimpl
from advgen.losses import NonSaturatingLoss

calls = [0]

class Faulty(NonSaturatingLoss):
    name = "faulty"

    @staticmethod
    def d_loss(real, fake):
        calls[0] += 1
        if os.environ["RANK"] == "1" and calls[0] == 4:
            if os.environ["FAULT"] == "die":
                os._exit(3)
            raise AdvgenError("the disk of rank 1 is on fire")
        return NonSaturatingLoss.d_loss(real, fake)

@hookimpl
def advgen_register_losses(register):
    register("faulty", Faulty)
'''


@pytest.mark.parametrize("fault", ["raise", "die"])
def test_a_failing_process_ends_the_run_with_one_line(tmp_path, fault):
    (tmp_path / "faulty.py").write_text(FAULTY)
    args = ["train", "--plugin", "curves", "--loss", "faulty", "--steps", "100000", "--ckpt-every", "100000",
            "--n-samples", "0", "--device", "cpu", "--threads", "1", "--option", "n_real=256", "--out", "run", "-q"]
    results, seconds = launch(args, tmp_path, timeout=60, ADVGEN_PLUGINS=str(tmp_path / "faulty.py"), FAULT=fault,
                              ADVGEN_DIST_TIMEOUT="300")
    assert all(code != 0 for code, _, _ in results), results
    lines = [line for _, out, err in results for line in (out + err).splitlines()]
    assert "Traceback" not in "\n".join(lines)
    if fault == "raise":
        assert lines == ["Error: process 1 of 2: the disk of rank 1 is on fire"], lines
    else:
        assert results[1][0] == 3
        # gloo's threads may abort at teardown after the line ("terminate called ..."): not ours to print
        ours = [line for line in lines if not line.startswith("terminate called")]
        assert len(ours) == 1 and ours[0].startswith("Error: process 0 of 2 lost the other processes of the run"), lines
    assert seconds < 45  # well before the 300 s timeout: nobody waited for the dead


@pytest.mark.parametrize("args, error", [
    (["--bogus"], "Error: No such option '--bogus'"),
    (["--steps", "0"], "Error: steps must be a positive integer, got 0"),
])
def test_a_mistake_every_process_makes_is_reported_once(tmp_path, args, error):
    results, _ = launch(["train", "--plugin", "curves", "--threads", "1", "--out", "run", *args], tmp_path)
    assert all(code != 0 for code, _, _ in results)
    assert error in results[0][2], results[0]
    assert results[1][1:] == ("", ""), results[1]
