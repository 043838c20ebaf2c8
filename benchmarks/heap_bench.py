"""Sampling with and without the process keeping the memory torch frees (advgen.heap), side by side.

    python benchmarks/heap_bench.py RUN_DIR [--rows 25192] [--pairs 8] [--threads 1]

Each pair times ``Run.sample(rows)`` (median of ``--repeats`` calls after a warm-up) in two fresh
processes, ``ADVGEN_KEEP_MEMORY=off`` first, then on, so that a slow spell of a shared machine hits
both; each process also counts its minor page faults per call. Prints every pair, the median of the
per-pair ratios (off time / on time) and the faults. Run it with nothing else on the machine. Not a
test: timings depend on the machine and on how its kernel pays for page faults.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys


def child(run_dir: str, rows: int, repeats: int, threads: int) -> None:
    import resource
    import time

    import torch

    from advgen.api import load_run

    torch.set_num_threads(threads)
    run = load_run(run_dir)
    run.sample(min(rows, 1000), seed=1)
    run.sample(rows, seed=0)
    times = []
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(repeats):
        start = time.perf_counter()
        run.sample(rows, seed=0)
        times.append(time.perf_counter() - start)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0) / repeats
    print(json.dumps({"seconds": statistics.median(times), "faults": faults}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir")
    p.add_argument("--rows", type=int, default=25192)
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.run_dir, args.rows, args.repeats, args.threads)
        return
    ratios = []
    faults: dict[str, list[float]] = {"off": [], "on": []}
    print(f"{args.rows:,} rows, {args.threads} thread(s), median of {args.repeats} calls per process")
    for i in range(args.pairs):
        seconds = {}
        for mode in ("off", "on"):
            env = dict(os.environ, ADVGEN_KEEP_MEMORY=mode)
            cmd = [sys.executable, __file__, args.run_dir, "--child", "--rows", str(args.rows),
                   "--repeats", str(args.repeats), "--threads", str(args.threads)]
            out = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout)
            seconds[mode] = out["seconds"]
            faults[mode].append(out["faults"])
        ratios.append(seconds["off"] / seconds["on"])
        print(f"pair {i + 1}: off {seconds['off'] * 1000:7.1f} ms ({args.rows / seconds['off']:,.0f} rows/s)  "
              f"on {seconds['on'] * 1000:7.1f} ms ({args.rows / seconds['on']:,.0f} rows/s)  ratio {ratios[-1]:.2f}")
    print(f"median ratio off/on {statistics.median(ratios):.2f} (range {min(ratios):.2f}-{max(ratios):.2f}); "
          f"minor page faults per call: off {statistics.median(faults['off']):,.0f}, on {statistics.median(faults['on']):,.0f}")


if __name__ == "__main__":
    main()
