"""Benchmark: rows/s of an exported generator through onnxruntime vs torch eager on CPU, and HTTP latency.

    python benchmarks/export_bench.py                       # trains a short NSL-KDD tabular run first
    python benchmarks/export_bench.py --run runs/tabular    # or benchmarks an existing run
    python benchmarks/export_bench.py --plugin curves       # any domain

Both sides compute the same thing: the domain's ``export_module`` (generator plus in-graph decoding),
on the same latent and condition batches, with the same number of CPU threads (``--threads``, default
1 so that numbers are comparable between machines and undisturbed by other work). Each cell is the
median of ``--repeats`` timings of at least ``--min-seconds`` each. The HTTP rows time complete
``POST /sample`` requests (JSON encoding and decoding included) against a server on 127.0.0.1.

Floors (issue 6): onnxruntime at least as fast as torch at every batch size, and under 1 ms per row at
batch 1. The script exits with status 1 when a floor is missed. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import date
from pathlib import Path
from typing import Any, Callable

import numpy as np

BATCH_SIZES = (1, 64, 4096)


def timed(fn: Callable[[], Any], rows: int, min_seconds: float, repeats: int) -> float:
    """Median rows/s of ``fn`` over ``repeats`` timings of at least ``min_seconds`` each."""
    fn()  # warm-up: first-call allocations and lazy initialisation
    rates = []
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        rates.append(calls * rows / elapsed)
    return statistics.median(rates)


def http_latency(url: str, body: dict[str, Any], requests: int) -> tuple[float, float]:
    """Median and 95th percentile milliseconds of one POST /sample."""
    data = json.dumps(body).encode()
    times = []
    for i in range(requests + 5):
        req = urllib.request.Request(url + "/sample", data=data, headers={"Content-Type": "application/json"})
        start = time.perf_counter()
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.read()
        if i >= 5:  # the first few warm up the connection path
            times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def get_run(args: argparse.Namespace, workdir: Path) -> Any:
    from advgen.api import load_run, train

    if args.run:
        return load_run(args.run)
    config: dict[str, Any] = {"plugin": args.plugin, "steps": args.steps, "n_samples": 0, "seed": 0,
                              "out": str(workdir / "run"), "threads": args.threads}
    if args.plugin == "tabular":
        config["dataset"] = "nsl-kdd"
    print(f"training a {args.steps}-step {args.plugin} run to benchmark ...", file=sys.stderr)
    train(config)
    return load_run(workdir / "run")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="run directory to benchmark (default: train a short run)")
    parser.add_argument("--plugin", default="tabular", help="domain to train when --run is not given")
    parser.add_argument("--steps", type=int, default=50, help="training steps of that run")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch and onnxruntime")
    parser.add_argument("--min-seconds", type=float, default=0.3, help="minimum duration of one timing")
    parser.add_argument("--repeats", type=int, default=5, help="timings per cell (the median is reported)")
    parser.add_argument("--requests", type=int, default=200, help="HTTP requests per latency row")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import onnxruntime as ort
    import torch

    torch.set_num_threads(args.threads)
    from advgen_export.onnx_export import _ExportAdapter, export
    from advgen_export.runtime import load
    from advgen_export.serve import make_server

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        run = get_run(args, workdir)
        conditional = run.spec.get("conditions") is not None
        export(run, workdir / "model.onnx")
        model = load(workdir / "model.onnx", threads=args.threads)
        module = _ExportAdapter(run.domain.export_module(run.generator.cpu(), run.spec), conditional).eval()

        results: dict[str, Any] = {
            "date": date.today().isoformat(),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, {platform.system()}",
            "cpu": _cpu_name(),
            "threads": args.threads,
            "domain": run.domain.name,
            "torch": torch.__version__,
            "onnxruntime": ort.__version__,
            "batches": [],
        }
        for batch in BATCH_SIZES:
            z, cond = model.draw_inputs(batch, seed=0)
            feeds = {"z": z, **({"cond": cond} if conditional else {})}
            tz = torch.from_numpy(z)
            targs = (tz, torch.from_numpy(cond)) if conditional else (tz,)

            def torch_call() -> None:
                with torch.inference_mode():
                    module(*targs)

            def ort_call() -> None:
                model.session.run(None, feeds)

            t_rate = timed(torch_call, batch, args.min_seconds, args.repeats)
            o_rate = timed(ort_call, batch, args.min_seconds, args.repeats)
            results["batches"].append({"batch": batch, "torch_rows_per_s": t_rate, "ort_rows_per_s": o_rate,
                                       "ort_ms_per_row": 1000 / o_rate})

        server = make_server(model, port=0, quiet=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            results["http"] = []
            for n in (1, 64):
                med, p95 = http_latency(server.url, {"n": n, "seed": 0}, args.requests)
                results["http"].append({"n": n, "median_ms": med, "p95_ms": p95})
        finally:
            server.shutdown()
            server.server_close()

    print(render(results))
    floors = check_floors(results)
    for line in floors:
        print(line)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 1 if any(line.startswith("FAIL") for line in floors) else 0


def render(r: dict[str, Any]) -> str:
    lines = [
        f"{r['domain']} generator, {r['date']}, {r['cpu']} ({r['machine']}), {r['threads']} thread(s), "
        f"torch {r['torch']}, onnxruntime {r['onnxruntime']}",
        "",
        "| batch | torch eager rows/s | onnxruntime rows/s | speed-up | onnxruntime ms/row |",
        "|---:|---:|---:|---:|---:|",
    ]
    for b in r["batches"]:
        lines.append(
            f"| {b['batch']:,} | {b['torch_rows_per_s']:,.0f} | {b['ort_rows_per_s']:,.0f} | "
            f"{b['ort_rows_per_s'] / b['torch_rows_per_s']:.2f}x | {b['ort_ms_per_row']:.4f} |"
        )
    lines += ["", "| HTTP POST /sample | median ms | p95 ms |", "|---:|---:|---:|"]
    for h in r["http"]:
        lines.append(f"| n = {h['n']} | {h['median_ms']:.2f} | {h['p95_ms']:.2f} |")
    return "\n".join(lines)


def check_floors(r: dict[str, Any]) -> list[str]:
    out = []
    for b in r["batches"]:
        ok = b["ort_rows_per_s"] >= b["torch_rows_per_s"]
        out.append(f"{'ok  ' if ok else 'FAIL'} batch {b['batch']}: onnxruntime >= torch eager")
    one = next(b for b in r["batches"] if b["batch"] == 1)
    ok = one["ort_ms_per_row"] < 1.0
    out.append(f"{'ok  ' if ok else 'FAIL'} batch 1: {one['ort_ms_per_row']:.4f} ms per row < 1 ms")
    return out


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
