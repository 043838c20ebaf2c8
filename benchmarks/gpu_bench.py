"""Benchmark: training steps/s and rows/s, eager against captured, and tabular sampling rows/s, on a GPU or the CPU.

    python benchmarks/gpu_bench.py                   # CUDA when present: every domain, several batch sizes
    python benchmarks/gpu_bench.py --quick           # fewer cells; under 3 minutes on one H200
    python benchmarks/gpu_bench.py --device cpu --quick
    python benchmarks/gpu_bench.py --json bench.json # also write the figures

Training cells time the step strategies of :mod:`advgen.step_capture` on the domain's default data and
nets (NSL-KDD for tabular, the embedded digits for images, the quadratic family for curves) with the
domain's default config except the batch size:

* ``eager``: today's step, every op launched from Python (``--no-compile``);
* ``cuda-graph``: the whole step captured once and replayed (``--compile`` on CUDA, the default there);
* ``cuda-graph+inductor``: the nets compiled by torch.compile before the capture (not a user option:
  measured here to decide whether it should become one);
* ``inductor`` (CPU, with ``--modes inductor``): the nets compiled, the rest eager (``--compile`` on CPU).

Each cell reports steps/s and rows/s (real rows the discriminator sees a second: batch x d_steps x
steps/s), the seconds spent building the step (capture or compile, warm-up included), the GPU's busy
share while timing (``nvidia-smi``'s utilization.gpu, sampled every 0.2 s in a thread: the share of
time a kernel was running, as ``nvidia-smi dmon``'s ``sm`` column), and the matmul/convolution FLOP rate
of the step (counted by torch's FlopCounterMode on one eager step) as a fraction of the rate of one
large bfloat16 matmul timed on the same device (float32 on a CPU).

The sampling rows time a tabular generator: latent draws alone (host RNG), generator plus decoding on
the device with the decoded values copied to the host, decoded DataFrames (``Run.iter_samples``), the
same through the CPU decoder (the path before decoding moved to the device), and a Parquet file
(``Run.write_samples``). Not a test: figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any, Callable

import torch

DOMAINS = ("tabular", "images", "curves")
BATCHES = {"tabular": (512, 4096, 32768), "images": (64, 512, 4096), "curves": (128, 4096, 32768)}
QUICK_BATCHES = {"tabular": (512, 32768), "images": (64, 1024), "curves": (128, 32768)}
CPU_QUICK_BATCHES = {"tabular": (512, 4096), "images": (64, 512), "curves": (128, 4096)}


class BusySampler:
    """Samples ``nvidia-smi``'s utilization.gpu of one GPU in a thread; ``mean`` is None without nvidia-smi."""

    def __init__(self, index: int, every: float = 0.2):
        self.cmd = ["nvidia-smi", f"--id={index}", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
        self.every = every
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True) if shutil.which("nvidia-smi") else None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(self.cmd, capture_output=True, text=True, timeout=5).stdout.strip()
                self.samples.append(float(out.splitlines()[0]))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                pass
            self._stop.wait(self.every)

    def __enter__(self) -> BusySampler:
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device) -> tuple[float, str]:
    """FLOP/s of one large matmul: bfloat16 8192^3 on a GPU, float32 2048^3 on a CPU."""
    n, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (2048, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    synchronize(device)
    reps, start = 0, time.perf_counter()
    while True:
        a @ b
        reps += 1
        synchronize(device)
        if time.perf_counter() - start > 1.0:
            break
    return 2 * n**3 * reps / (time.perf_counter() - start), f"{str(dtype).split('.')[-1]} {n}^3 matmul"


def timed_steps(step: Callable[[], None], device: torch.device, min_seconds: float) -> float:
    """Steps/s of ``step``, timed over batches of steps until one batch lasts ``min_seconds``."""
    n = 8
    while True:
        synchronize(device)
        start = time.perf_counter()
        for _ in range(n):
            step()
        synchronize(device)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return n / elapsed
        n = int(n * max(2.0, 1.2 * min_seconds / max(elapsed, 1e-4)))


def build(domain_name: str, device: torch.device, batch: int, cache: dict[str, Any]) -> Any:
    """A fresh trainer for ``domain_name`` at ``batch`` (data loaded once per domain; nothing written)."""
    from advgen.api import build_config
    from advgen.engine import Trainer, seed_everything
    from advgen.plugins import get_manager

    manager = get_manager()
    cfg, domain = build_config(domain_name, {"device": str(device), "batch_size": batch}, manager)
    if domain_name not in cache:
        seed_everything(cfg.seed)
        cache[domain_name] = domain.load_data(cfg)
    seed_everything(cfg.seed)
    trainer = Trainer(cfg, domain, cache[domain_name], manager, cache["folder"] / "run")
    trainer.generator.train()
    trainer.discriminator.train()
    return trainer


def make_step(trainer: Any, mode: str, notes: list[str]) -> Any:
    from advgen import step_capture

    note = notes.append
    if mode == "eager":
        return step_capture.EagerStep(trainer)
    if mode == "cuda-graph":
        return step_capture.CudaGraphStep(trainer, note)
    if mode == "cuda-graph+inductor":
        return step_capture.CudaGraphStep(trainer, note, fuse=True)
    if mode == "inductor":
        return step_capture.CompiledStep(trainer, note)
    raise SystemExit(f"unknown mode {mode!r}")


def train_cell(domain: str, batch: int, mode: str, device: torch.device, args: argparse.Namespace,
               cache: dict[str, Any], flops: dict[tuple[str, int], float]) -> dict[str, Any]:
    from torch.utils.flop_counter import FlopCounterMode

    trainer = build(domain, device, batch, cache)
    sums = (torch.zeros((), device=device), torch.zeros((), device=device))
    if (domain, batch) not in flops:
        with FlopCounterMode(display=False) as counter:
            trainer.train_step(*sums)
        flops[(domain, batch)] = float(counter.get_total_flops())
    notes: list[str] = []
    step = make_step(trainer, mode, notes)

    def one() -> None:
        step(*sums)
        trainer.step += 1

    start = time.perf_counter()
    for _ in range(args.warmup):  # the first call captures or compiles
        one()
    synchronize(device)
    build_s = time.perf_counter() - start
    with BusySampler(device.index or 0) if device.type == "cuda" else _Null() as busy:
        rate = timed_steps(one, device, args.min_seconds)
    finite = bool(torch.isfinite(sums[0]).item() and torch.isfinite(sums[1]).item())
    rows = rate * batch * trainer.cfg.d_steps
    return {
        "domain": domain, "batch": batch, "mode": mode, "ran_as": step.name, "steps_per_s": rate,
        "rows_per_s": rows, "build_s": build_s, "busy_pct": getattr(busy, "mean", None),
        "flop_per_step": flops[(domain, batch)], "flop_per_s": flops[(domain, batch)] * rate,
        "finite_losses": finite, "notes": notes,
    }


class _Null:
    mean = None

    def __enter__(self) -> _Null:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def sampling_cells(device: torch.device, n: int, cache: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows/s of each stage of sampling a tabular generator (an untrained one: speed does not depend on training)."""
    from advgen.api import Run
    from advgen.plugins import get_manager
    from advgen.sampling import chunk_rows, chunk_seed, chunk_spans

    trainer = build("tabular", device, 512, cache)
    run = Run(trainer.run_dir, trainer.domain, trainer.spec, trainer.cfg, trainer.sampling_generator().eval(),
              device, get_manager())
    spec, domain = run.spec, run.domain
    seed, fixed, probs = run._sampling_plan(n, None, 0)
    out: list[dict[str, Any]] = []

    def cell(name: str, fn: Callable[[], None]) -> None:
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        out.append({"stage": name, "rows": n, "rows_per_s": n / (time.perf_counter() - start)})

    def draws() -> None:
        size = chunk_rows()
        for index, _, _ in chunk_spans(n):
            gen = torch.Generator().manual_seed(chunk_seed(seed, index))
            torch.randn(size, run.config.z_dim, generator=gen)
            if probs is not None:
                torch.multinomial(probs, size, replacement=True, generator=gen)

    def on_device() -> None:
        for _, x, _ in run._encoded_chunks(n, seed, fixed, probs, host=False):
            num, cat = domain.decode_tensors(x, spec)
            num.cpu(), cat.cpu()

    def frames() -> None:
        for _ in run.iter_samples(n, seed=0):
            pass

    def host_decoded() -> None:
        for x, cond in run.iter_encoded(n, seed=0):
            domain.decode(x, cond, spec)

    folder = Path(tempfile.mkdtemp(prefix="gpu-bench-samples-"))
    try:
        cell("latent and class draws (host RNG)", draws)
        cell("generator + decoder on the device, values to host", on_device)
        cell("decoded DataFrames (iter_samples)", frames)
        cell("decoded DataFrames, CPU decoder (old path)", host_decoded)
        cell("Parquet file (write_samples)", lambda: run.write_samples(folder / "rows.parquet", n, seed=0))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return out


def render(meta: dict[str, Any], cells: list[dict[str, Any]], sampling: list[dict[str, Any]]) -> str:
    peak = meta["matmul_flop_per_s"]
    lines = [
        f"gpu_bench {meta['date']}: {meta['device_name']}, torch {meta['torch']}, {meta['host']}",
        f"reference: {meta['matmul']} at {peak / 1e12:.1f} TFLOP/s",
        "",
        f"{'domain':<8} {'batch':>6} {'mode':<20} {'ran as':<11} {'steps/s':>9} {'rows/s':>12} {'build s':>8} "
        f"{'busy %':>7} {'TFLOP/s':>8} {'of peak':>8}",
    ]
    for c in cells:
        busy = f"{c['busy_pct']:.0f}" if c["busy_pct"] is not None else "-"
        lines.append(
            f"{c['domain']:<8} {c['batch']:>6} {c['mode']:<20} {c['ran_as']:<11} {c['steps_per_s']:>9,.0f} "
            f"{c['rows_per_s']:>12,.0f} {c['build_s']:>8.1f} {busy:>7} {c['flop_per_s'] / 1e12:>8.3f} "
            f"{c['flop_per_s'] / peak:>8.2%}" + ("" if c["finite_losses"] else "  NON-FINITE LOSSES")
        )
        for note in c["notes"]:
            lines.append(f"    note: {note}")
    if sampling:
        lines += ["", f"tabular sampling, {sampling[0]['rows']:,} rows:"]
        lines += [f"  {s['stage']:<52} {s['rows_per_s']:>12,.0f} rows/s" for s in sampling]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    parser.add_argument("--quick", action="store_true",
                        help="fewer cells and shorter timings (under 3 minutes on a GPU)")
    parser.add_argument("--domains", default=",".join(DOMAINS), help="comma-separated domains to train")
    parser.add_argument("--modes", help="comma-separated step modes (default: eager,cuda-graph on CUDA "
                        "(+cuda-graph+inductor without --quick); eager on a CPU)")
    parser.add_argument("--min-seconds", type=float, help="minimum duration of one timing (default 1, quick 0.5)")
    parser.add_argument("--batches", help="comma-separated batch sizes for every domain (default: per domain)")
    parser.add_argument("--warmup", type=int, default=5, help="steps before timing (the first captures or compiles)")
    parser.add_argument("--sample-rows", type=int, help="rows for the sampling cells (default 2M, quick 1M; CPU 200k)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    from advgen.engine import resolve_device

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    args.min_seconds = args.min_seconds or (0.5 if args.quick else 1.0)
    modes = args.modes.split(",") if args.modes else (
        ["eager", "cuda-graph"] + ([] if args.quick else ["cuda-graph+inductor"]) if cuda else ["eager"]
    )
    batches = (QUICK_BATCHES if cuda else CPU_QUICK_BATCHES) if args.quick else BATCHES
    if args.batches:
        batches = {d: tuple(int(b) for b in args.batches.split(",")) for d in DOMAINS}
    n_rows = args.sample_rows or ((1_000_000 if args.quick else 2_000_000) if cuda else 200_000)
    peak, matmul = matmul_peak(device)
    meta = {
        "date": str(date.today()),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else (platform.processor() or platform.machine()),
        "torch": torch.__version__,
        "host": f"{os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads",
        "matmul": matmul,
        "matmul_flop_per_s": peak,
    }
    cache: dict[str, Any] = {"folder": Path(tempfile.mkdtemp(prefix="gpu-bench-"))}
    flops: dict[tuple[str, int], float] = {}
    cells = []
    domains = args.domains.split(",")
    try:
        for domain in domains:
            for batch in batches[domain]:
                for mode in modes:
                    print(f"{domain} batch {batch} {mode} ...", file=sys.stderr, flush=True)
                    cells.append(train_cell(domain, batch, mode, device, args, cache, flops))
        if args.quick and cuda and not args.modes and "tabular" in domains:
            # one fused cell, to learn whether inductor pays inside a graph
            print("tabular batch 512 cuda-graph+inductor ...", file=sys.stderr, flush=True)
            cells.append(train_cell("tabular", 512, "cuda-graph+inductor", device, args, cache, flops))
        print("sampling ...", file=sys.stderr, flush=True)
        sampling = sampling_cells(device, n_rows, cache) if "tabular" in domains else []
    finally:
        shutil.rmtree(cache["folder"], ignore_errors=True)
    print(render(meta, cells, sampling))
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "training": cells, "sampling": sampling}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
