"""How training degrades beside other work: threads x OpenMP wait policy x neighbour.

On a shared machine torch's OpenMP threads spin-wait for cores they do not get; a run beside one busy
process can slow down by two orders of magnitude. This script times a short tabular run (seconds per
step, median of ``--repeat`` runs) for each combination of

- ``--threads``: 1 and 2 (or the values given),
- ``OMP_WAIT_POLICY``: ``active`` (spin), ``passive`` (sleep at once) and ``default`` (unset: GNU
  OpenMP spins a while, then sleeps),
- the neighbour: none, a pure-Python busy loop on one core, another torch process multiplying
  matrices on 2 threads, and (``--nice``) the timed run itself niced beside the busy loop,

and prints a table. Run it on a machine with nothing else running:

    python benchmarks/threads_contention.py --steps 300 --repeat 3 [--json out.json]

The run is NSL-KDD's tabular default (ADVGEN_DATA must hold it, or it is downloaded).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUSY_PYTHON = "while True: pass"
BUSY_TORCH = (
    "import torch\n"
    "torch.set_num_threads(2)\n"
    "a = torch.randn(512, 512)\n"
    "while True:\n"
    "    a = torch.tanh(a @ a / 512)\n"
)


def _neighbour(kind: str) -> subprocess.Popen | None:
    if kind == "none":
        return None
    code = BUSY_PYTHON if kind in ("python-loop", "niced-beside-loop") else BUSY_TORCH
    env = dict(os.environ, OMP_NUM_THREADS="2")
    return subprocess.Popen([sys.executable, "-c", code], env=env)


def time_run(threads: int, policy: str, neighbour: str, steps: int, work: Path) -> float:
    """Seconds per training step of one short tabular run under the given conditions."""
    out = work / f"run-{threads}-{policy}-{neighbour}-{time.monotonic_ns()}"
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    env.pop("OMP_WAIT_POLICY", None)
    if policy != "default":  # "default": the OpenMP runtime's own (GNU: spin a while, then sleep)
        env["OMP_WAIT_POLICY"] = policy
    cmd = [
        sys.executable, "-m", "advgen.cli", "train", "--plugin", "tabular", "--steps", str(steps),
        "--n-samples", "0", "--threads", str(threads), "--log-every", str(steps), "--ckpt-every", str(steps),
        "--out", str(out), "-q",
    ]
    if neighbour == "niced-beside-loop":
        cmd = ["nice", "-n", "10", *cmd]
    busy = _neighbour(neighbour)
    try:
        time.sleep(0.5 if busy else 0)
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    summary = json.loads((out / "summary.json").read_text())
    return summary["seconds"] / summary["steps_this_session"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--policies", default="default,active,passive")
    parser.add_argument("--neighbours", default="none,python-loop,torch-2-threads,niced-beside-loop")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for neighbour in args.neighbours.split(","):
            for threads in (int(t) for t in args.threads.split(",")):
                for policy in args.policies.split(","):
                    times = [time_run(threads, policy, neighbour, args.steps, Path(tmp)) for _ in range(args.repeat)]
                    row = {
                        "neighbour": neighbour, "threads": threads, "omp_wait_policy": policy,
                        "ms_per_step": round(1000 * statistics.median(times), 2),
                        "all_ms": [round(1000 * t, 2) for t in times],
                    }
                    rows.append(row)
                    print(f"{neighbour:<18} threads={threads} {policy:<7} {row['ms_per_step']:>9.2f} ms/step  {row['all_ms']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
