"""Load check for ``advgen-runtime serve``: a burst of concurrent clients on loopback.

    python benchmarks/serve_load.py                                # trains a 20-step curves run, exports it
    python benchmarks/serve_load.py --model kdd.onnx --clients 1000 --n 100
    python benchmarks/serve_load.py --slow-clients 8               # plus clients that drip a byte a second

The server runs as a subprocess (``python -m advgen_export.cli serve``, the ``advgen-runtime serve``
command) on 127.0.0.1. ``--clients`` connections open at once from one asyncio loop; each sends
``POST /sample {"n": N, "seed": i % 4}`` and reads the answer to the end. Reported: status counts
(200 / 503 / 429 / other), connection errors (reset, refused, timed out, closed without an answer), latency
percentiles from connect to last byte, wall time, and the server's peak resident memory (VmHWM from
/proc). A 200 counts as correct only if its JSON equals the answer to the same request sent alone
before the burst; a 503 or 429 only with a JSON error and a Retry-After header.

Exit status 1 on any connection error, wrong 200, bad 503 or other status. Bounded: at most 5,000
clients, the burst is abandoned after ``--time-limit`` seconds, and the server is stopped at the end.
Latencies depend on the machine and on whatever else runs on it; the pass/fail criteria do not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MAX_CLIENTS = 5_000
SEEDS = 4


def export_model(plugin: str, steps: int, workdir: Path) -> Path:
    """Train a short run of ``plugin`` and export it; the server only needs some real generator."""
    from advgen.api import load_run, train
    from advgen_export.onnx_export import export

    print(f"training a {steps}-step {plugin} run and exporting it ...", file=sys.stderr)
    config: dict[str, Any] = {"plugin": plugin, "steps": steps, "n_samples": 0, "seed": 0,
                              "out": str(workdir / "run"), "threads": 1}
    if plugin == "tabular":
        config["dataset"] = "nsl-kdd"
    train(config)
    path = workdir / "model.onnx"
    export(load_run(workdir / "run"), path)
    return path


def start_server(model: Path, args: argparse.Namespace) -> tuple[subprocess.Popen[str], str, int]:
    command = [sys.executable, "-m", "advgen_export.cli", "serve", str(model), "--port", "0", "--quiet",
               "--threads", str(args.threads), "--queue", str(args.queue),
               "--request-timeout", str(args.request_timeout), "--max-per-client", str(args.max_per_client)]
    if args.workers:
        command += ["--workers", str(args.workers)]
    path = os.pathsep.join([str(REPO), str(REPO / "export"), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    if "serving" not in line:
        proc.kill()
        raise SystemExit(f"the server did not start: {line.strip()} {proc.stderr.read()[-2000:]}")
    print(line.strip(), file=sys.stderr)
    host, port = line.split(" on http://")[1].split()[0].rsplit(":", 1)
    return proc, host, int(port)


def stop_server(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return -9


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def request_bytes(body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    return (f"POST /sample HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode() + data


def parse(raw: bytes) -> tuple[int, dict[str, str], Any]:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("closed without a complete answer")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body)


async def exchange(host: str, port: int, request: bytes) -> tuple[int, dict[str, str], Any]:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        return parse(await reader.read())
    finally:
        writer.close()


async def client(host: str, port: int, i: int, n: int, expected: dict[int, Any], out: dict[str, Any]) -> None:
    started = time.perf_counter()
    try:
        status, headers, body = await exchange(host, port, request_bytes({"n": n, "seed": i % SEEDS}))
    except (OSError, ValueError) as exc:  # resets, refusals, truncated answers
        out["errors"][type(exc).__name__] += 1
        return
    elapsed = time.perf_counter() - started
    out["status"][status] += 1
    out["latency"].setdefault(status, []).append(elapsed)
    if status == 200 and body != expected[i % SEEDS]:
        out["wrong"] += 1
    if status in (429, 503) and ("retry-after" not in headers or "error" not in body):
        out["wrong"] += 1


async def slow_client(host: str, port: int, out: dict[str, Any]) -> None:
    """Sends a request line, then one header byte a second until the server answers or closes."""
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /sample HTTP/1.0\r\nX-Slow: ")
        read = asyncio.ensure_future(reader.read())
        while not read.done():
            await asyncio.wait([read], timeout=1.0)
            if not read.done():
                writer.write(b"a")
        status, _, _ = parse(read.result())
        writer.close()
        out["slow"].append((status, time.perf_counter() - started))
    except (OSError, ValueError) as exc:
        out["slow"].append((type(exc).__name__, time.perf_counter() - started))


async def burst(host: str, port: int, args: argparse.Namespace, expected: dict[int, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"status": Counter(), "errors": Counter(), "latency": {}, "wrong": 0, "slow": []}
    slow = [asyncio.ensure_future(slow_client(host, port, out)) for _ in range(args.slow_clients)]
    if slow:
        await asyncio.sleep(0.5)  # let them take workers first
    started = time.perf_counter()
    tasks = [asyncio.ensure_future(client(host, port, i, args.n, expected, out)) for i in range(args.clients)]
    done, pending = await asyncio.wait(tasks + slow, timeout=args.time_limit)
    for task in pending:
        task.cancel()
    unanswered = set(tasks)
    out["unfinished"] = sum(1 for t in pending if t in unanswered)
    out["wall_s"] = time.perf_counter() - started
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="an exported .onnx (default: train and export a short run)")
    parser.add_argument("--plugin", default="curves", help="domain to train when --model is not given")
    parser.add_argument("--steps", type=int, default=20, help="training steps of that run")
    parser.add_argument("--clients", type=int, default=1000, help=f"concurrent clients (at most {MAX_CLIENTS})")
    parser.add_argument("-n", "--n", type=int, default=100, help="samples each client asks for")
    parser.add_argument("--workers", type=int, help="server --workers (default: the server's default)")
    parser.add_argument("--queue", type=int, default=64, help="server --queue")
    parser.add_argument("--request-timeout", type=float, default=10.0, help="server --request-timeout")
    parser.add_argument("--threads", type=int, default=1, help="server onnxruntime threads")
    parser.add_argument("--max-per-client", type=int, default=64,
                        help="server --max-per-client (every client here comes from 127.0.0.1; 0: no limit)")
    parser.add_argument("--slow-clients", type=int, default=0, help="clients that drip a header byte a second")
    parser.add_argument("--time-limit", type=float, default=100.0, help="seconds before the burst is abandoned")
    args = parser.parse_args()
    if not 1 <= args.clients <= MAX_CLIENTS or args.slow_clients < 0 or args.slow_clients > MAX_CLIENTS:
        parser.error(f"--clients must be in 1..{MAX_CLIENTS}")
    # each client holds a socket, and the server one more per connection
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * (args.clients + args.slow_clients) + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or export_model(args.plugin, args.steps, Path(tmp))
        proc, host, port = start_server(model, args)
        try:
            idle_kib = memory_kib(proc.pid, "VmRSS")
            expected = {s: asyncio.run(exchange(host, port, request_bytes({"n": args.n, "seed": s})))[2]
                        for s in range(SEEDS)}
            out = asyncio.run(burst(host, port, args, expected))
            peak_kib = memory_kib(proc.pid, "VmHWM")
        finally:
            code = stop_server(proc)

    ok = out["status"][200]
    lat = out["latency"]
    print(f"{args.clients} concurrent clients, n={args.n}, model {model.name}, wall {out['wall_s']:.1f} s"
          f"{'' if not args.slow_clients else f', plus {args.slow_clients} slow clients'}")
    refused = out["status"][429] + out["status"][503]
    print(f"status: 200 {ok}, 503 {out['status'][503]}, 429 {out['status'][429]}, "
          f"other {sum(out['status'].values()) - ok - refused}"
          f" {dict((k, v) for k, v in out['status'].items() if k not in (200, 429, 503))}")
    print(f"connection errors: {sum(out['errors'].values())} {dict(out['errors'])}; unfinished: {out['unfinished']}; "
          f"wrong answers: {out['wrong']}")
    for status in sorted(lat):
        values = lat[status]
        print(f"latency {status}: p50 {1000 * statistics.median(values):.0f} ms, "
              f"p99 {1000 * percentile(values, 0.99):.0f} ms, max {1000 * max(values):.0f} ms")
    if out["slow"]:
        worst = max(t for _, t in out["slow"])
        print(f"slow clients: {Counter(s for s, _ in out['slow'])}, the longest held {worst:.1f} s")
    print(f"server memory: {idle_kib / 1024:.0f} MiB before the burst, peak (VmHWM) {peak_kib / 1024:.0f} MiB; "
          f"exit status {code}")
    other = sum(out["status"].values()) - ok - out["status"][503] - out["status"][429]
    failed = sum(out["errors"].values()) or out["unfinished"] or out["wrong"] or other or code != 0
    print("FAIL" if failed else "ok: every client got a correct answer or a 503/429 with Retry-After")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
