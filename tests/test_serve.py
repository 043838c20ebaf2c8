"""`advgen-runtime serve` under load and abuse (issue 10): bounded workers with a 503 beyond the queue,
a total deadline for receiving a request, a response size limit, and parsing that never answers 500.

Requests are written on raw sockets so that a reset connection, a missing header or a slow sender is
seen exactly as a client sees it.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest
import torch
from torch import nn

from advgen.domain import Domain
from advgen_export.onnx_export import export
from advgen_export.runtime import GeneratorModel, load
from advgen_export.serve import make_server

REPO = Path(__file__).resolve().parents[1]
PYTHONPATH = os.pathsep.join([str(REPO), str(REPO / "export"), os.environ.get("PYTHONPATH", "")])
LENGTH = 16


class TinyCurves(Domain):
    name = "tiny-curves"

    def export_module(self, generator: nn.Module, spec: dict[str, Any]) -> nn.Module:
        return generator


class TinyCurveGenerator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, LENGTH))

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    generator = TinyCurveGenerator().eval()
    run = SimpleNamespace(domain=TinyCurves(), spec={"shape": [LENGTH], "conditions": None}, generator=generator,
                          config=SimpleNamespace(z_dim=4, to_dict=lambda: {"z_dim": 4}), run_dir="")
    path = tmp_path_factory.mktemp("serve") / "curves.onnx"
    export(run, path)
    return path


@pytest.fixture(scope="module")
def model(model_path: Path) -> GeneratorModel:
    return load(model_path, threads=1)


@contextlib.contextmanager
def running(model: GeneratorModel, **limits: Any) -> Iterator[Any]:
    server = make_server(model, port=0, quiet=True, **limits)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def post(body: bytes, *, content_length: str | list[str] | None = "auto", path: str = "/sample") -> bytes:
    lengths = [str(len(body))] if content_length == "auto" else (
        [] if content_length is None else [content_length] if isinstance(content_length, str) else content_length)
    head = f"POST {path} HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += "".join(f"Content-Length: {v}\r\n" for v in lengths)
    return head.encode() + b"\r\n" + body


def exchange(server: Any, request: bytes, *, half_close: bool = False, timeout: float = 20) -> dict[str, Any]:
    """Send ``request`` on a fresh connection and read the answer to end of stream; resets raise."""
    with socket.create_connection(server.server_address[:2], timeout=timeout) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return read_response(sock)


def read_response(sock: socket.socket) -> dict[str, Any]:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return parse_response(b"".join(chunks))


def parse_response(raw: bytes) -> dict[str, Any]:
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"no complete response: {raw[:200]!r}"
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert int(headers["content-length"]) == len(body)
    return {"status": int(lines[0].split()[1]), "headers": headers, "json": json.loads(body), "size": len(raw)}


def blocking_generate(model: GeneratorModel, monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Semaphore]:
    """Make ``model.generate`` wait until the returned event is set; the semaphore counts calls begun."""
    release, started = threading.Event(), threading.Semaphore(0)
    real = model.generate

    def slow(*args: Any, **kwargs: Any) -> Any:
        started.release()
        release.wait(20)
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "generate", slow)
    return release, started


# --- overload -------------------------------------------------------------------------------------


@pytest.mark.parametrize("queue_size", [0, 1])
def test_busy_server_answers_503_with_retry_after_then_recovers(
    model: GeneratorModel, queue_size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the worker, then each place in the queue, is held by a whole request whose sampling waits
    release, started = blocking_generate(model, monkeypatch)
    with running(model, workers=1, queue_size=queue_size, request_timeout=20) as server:
        holders = []
        for _ in range(1 + queue_size):
            sock = socket.create_connection(server.server_address[:2], timeout=20)
            sock.sendall(post(b'{"n": 3, "seed": 1}'))
            holders.append(sock)
        assert started.acquire(timeout=10)  # the worker is busy
        time.sleep(0.5)  # and the queue holds the rest

        refused = exchange(server, post(b'{"n": 2, "seed": 0}'))
        assert refused["status"] == 503
        assert refused["headers"]["retry-after"] == "1"
        assert "overloaded" in refused["json"]["error"]

        release.set()
        for sock in holders:  # the held requests complete normally
            answer = read_response(sock)
            sock.close()
            assert answer["status"] == 200 and answer["json"]["shape"] == [3, LENGTH]
        assert exchange(server, post(b'{"n": 2, "seed": 0}'))["status"] == 200


def test_responses_in_flight_are_bounded_in_bytes(model: GeneratorModel, monkeypatch: pytest.MonkeyPatch) -> None:
    # the audit: each request may build about five times its response in memory, and nothing bounded the
    # sum over workers (32 x 64 MiB x 5 is 10 GiB)
    release, started = blocking_generate(model, monkeypatch)
    with running(model, workers=4, request_timeout=20) as server:
        size = server.response_overhead + 50 * server.bytes_per_sample
        server.max_inflight_bytes = size + size // 2  # room for one response of 50 samples, not two
        first = socket.create_connection(server.server_address[:2], timeout=20)
        first.sendall(post(b'{"n": 50, "seed": 0}'))
        assert started.acquire(timeout=10)
        busy = exchange(server, post(b'{"n": 50, "seed": 1}'))
        assert busy["status"] == 503 and busy["headers"]["retry-after"] == "1"
        assert "responses in flight" in busy["json"]["error"]
        release.set()
        assert read_response(first)["status"] == 200
        first.close()
        assert exchange(server, post(b'{"n": 50, "seed": 1}'))["status"] == 200  # released after the answer
        assert server._inflight == 0


def test_connections_still_sending_hold_no_worker(model: GeneratorModel) -> None:
    # the audit: 72 connections that sent nothing (or half a request) kept every worker and queue place
    # busy, and every other client got 503 for as long as they were re-opened
    with running(model, workers=1, queue_size=0, request_timeout=10, max_per_client=0) as server:
        idle = [socket.create_connection(server.server_address[:2], timeout=20) for _ in range(40)]
        for sock in idle[::2]:
            sock.sendall(b"POST /sample HTTP/1.0\r\nContent-Length: 20\r\n")
        time.sleep(0.3)
        began = time.monotonic()
        answer = exchange(server, post(b'{"n": 2, "seed": 0}'))
        assert answer["status"] == 200 and time.monotonic() - began < 5
        for sock in idle:
            sock.close()


def test_one_address_may_have_max_per_client_connections_sending(model: GeneratorModel) -> None:
    with running(model, workers=2, request_timeout=10, max_per_client=3) as server:
        idle = [socket.create_connection(server.server_address[:2], timeout=20) for _ in range(3)]
        time.sleep(0.3)
        refused = exchange(server, post(b'{"n": 2, "seed": 0}'))
        assert refused["status"] == 429 and refused["headers"]["retry-after"] == "1"
        assert "at most 3" in refused["json"]["error"]
        for sock in idle:  # they leave: the address may send again
            sock.close()
        time.sleep(0.3)
        assert exchange(server, post(b'{"n": 2, "seed": 0}'))["status"] == 200


def test_burst_of_clients_gets_answers_or_503_and_no_resets(model: GeneratorModel) -> None:
    """300 connections at once against the default limits: no reset, no 500, every 200 correct."""
    clients = 300
    expected = model.sample(5, seed=7).tolist()
    start = threading.Barrier(clients)
    results: list[Any] = [None] * clients

    def client(i: int) -> None:
        start.wait()
        try:
            results[i] = exchange(server, post(b'{"n": 5, "seed": 7}'), timeout=60)
        except OSError as exc:
            results[i] = exc

    with running(model) as server:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
    errors = [r for r in results if not isinstance(r, dict)]
    assert not errors, f"{len(errors)} connection errors, e.g. {errors[0]!r}"
    statuses = {r["status"] for r in results}
    assert statuses <= {200, 429, 503}, statuses  # 429: more than 64 of them still sending from one address
    assert all(r["json"]["data"] == expected for r in results if r["status"] == 200)
    assert all(r["headers"]["retry-after"] == "1" for r in results if r["status"] in (429, 503))


# --- deadline -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dripping", ["headers", "body"])
def test_slow_client_is_cut_off_at_the_deadline(model: GeneratorModel, dripping: str) -> None:
    deadline, slack = 1.0, 4.0  # generous for a busy machine; a client that is not cut off drips for 10 s
    with running(model, workers=2, request_timeout=deadline) as server:
        began = time.monotonic()
        with socket.create_connection(server.server_address[:2], timeout=10) as sock:
            if dripping == "headers":
                sock.sendall(b"POST /sample HTTP/1.0\r\nX-Slow: ")
            else:
                sock.sendall(b"POST /sample HTTP/1.0\r\nContent-Length: 1000\r\n\r\n")
            # one byte every 0.1 s: each read succeeds long before any per-read timeout
            while time.monotonic() - began < 10:
                readable, _, _ = select.select([sock], [], [], 0.1)
                if readable:
                    break
                sock.sendall(b"a")
            answer = read_response(sock)
        elapsed = time.monotonic() - began
    assert answer["status"] == 408 and "within 1 s" in answer["json"]["error"]
    assert elapsed < deadline + slack, f"connection held {elapsed:.2f} s with a {deadline} s deadline"


# --- request parsing ------------------------------------------------------------------------------


def test_deeply_nested_json_gets_400_but_brackets_inside_strings_do_not_count(model: GeneratorModel) -> None:
    with running(model, max_body=64 * 1024) as server:
        deep = exchange(server, post(b'{"n": 1, "condition": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"))
        quoted = exchange(server, post(json.dumps({"n": 1, "condition": "k=" + "[" * 100 + '"{'}).encode()))
    assert deep["status"] == 400 and "nested deeper than 8 levels" in deep["json"]["error"]
    assert quoted["status"] == 400 and "not conditional" in quoted["json"]["error"]  # parsed, then judged


@pytest.mark.parametrize(
    "body", [b'{"n": 1' + b"0" * 5_000 + b"}", b'{"n": 1, "seed": 1' + b"0" * 5_000 + b"}"], ids=["n", "seed"]
)
def test_5000_digit_integer_gets_400(model: GeneratorModel, body: bytes) -> None:
    with running(model, max_body=64 * 1024) as server:
        answer = exchange(server, post(body))
    assert answer["status"] == 400 and "not valid JSON" in answer["json"]["error"]
    assert len(answer["json"]["error"]) <= 300


@pytest.mark.parametrize(
    ("content_length", "half_close"),
    [("0_19", False), ("+19", False), (["19", "190"], False), ("20", True)],
    ids=["underscore", "plus-sign", "conflicting-duplicates", "longer-than-body"],
)
def test_bad_content_length_gets_4xx(model: GeneratorModel, content_length: Any, half_close: bool) -> None:
    body = b'{"n": 2, "seed": 0}'  # 19 bytes: only a Content-Length of exactly "19" is valid
    with running(model) as server:
        answer = exchange(server, post(body, content_length=content_length), half_close=half_close)
    assert 400 <= answer["status"] < 500 and answer["status"] != 408, answer
    assert "Content-Length" in answer["json"]["error"] or "ended after" in answer["json"]["error"]


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.0\r\n\r\n", 414),
        (b"GET /health HTTP/1.0\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (b"GET /health HTTP/1.0\r\n" + b"X-Many: 1\r\n" * 101 + b"\r\n", 431),
    ],
    ids=["no-version", "long-request-line", "long-header", "too-many-headers"],
)
def test_malformed_requests_get_json_errors(model: GeneratorModel, request_bytes: bytes, status: int) -> None:
    with running(model) as server:
        answer = exchange(server, request_bytes)
    assert answer["status"] == status and answer["json"]["error"]


# --- response size --------------------------------------------------------------------------------


def test_response_size_limit_refuses_before_sampling_and_bounds_what_is_sent(model: GeneratorModel) -> None:
    limit = 40_000
    with running(model, max_body=256, max_response_bytes=limit) as server:
        info = exchange(server, b"GET /info HTTP/1.0\r\n\r\n")["json"]["limits"]
        largest = info["max_n"]
        assert info["max_response_bytes"] == limit and 1 <= largest < 10_000

        refused = exchange(server, post(json.dumps({"n": largest + 1}).encode()))
        assert refused["status"] == 400 and f"ask for at most {largest}" in refused["json"]["error"]

        served = exchange(server, post(json.dumps({"n": largest, "seed": 3}).encode()))
        assert served["status"] == 200 and served["json"]["shape"] == [largest, LENGTH]
        assert served["size"] <= limit


def test_response_limit_too_small_for_one_sample_is_refused_at_start(model: GeneratorModel) -> None:
    from advgen_export.manifest import ModelError

    with pytest.raises(ModelError, match="raise the response size limit"):
        make_server(model, port=0, max_response_bytes=100)


# --- command line ---------------------------------------------------------------------------------


def test_serve_command_options_reach_the_server(model_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "advgen_export.cli", "serve", str(model_path), "--port", "0", "--quiet",
         "--workers", "2", "--queue", "3", "--request-timeout", "1.5", "--max-response-bytes", "500000",
         "--max-per-client", "5", "--max-inflight-bytes", "2000000"],
        env={**os.environ, "PYTHONPATH": PYTHONPATH}, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stderr.readline()
        assert "serving" in line and "2 workers" in line, line
        host, port = line.split(" on http://")[1].split()[0].rsplit(":", 1)
        info = exchange(SimpleNamespace(server_address=(host, int(port))), b"GET /info HTTP/1.0\r\n\r\n")
        limits = info["json"]["limits"]
        assert (limits["workers"], limits["queue"], limits["request_timeout_s"]) == (2, 3, 1.5)
        assert limits["max_response_bytes"] == 500_000
        assert (limits["max_per_client"], limits["max_inflight_bytes"]) == (5, 2_000_000)
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize(
    ("option", "message"),
    [(["--queue", "-1"], "non-negative integer"), (["--workers", "0"], "positive integer"),
     (["--request-timeout", "nan"], "seconds in (0, 3600]"), (["--max-response-bytes", "1e9"], "positive integer"),
     (["--workers", "100000"], "at most 1,024"), (["--max-body", "1000000000000"], "at most 16,777,216"),
     (["--max-response-bytes", "99999999999999999999"], "at most 1,073,741,824"), (["--queue", "10000000"], "at most 65,536")],
)
def test_serve_command_refuses_absurd_limits(option: list[str], message: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from advgen_export.cli import build_parser

    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["serve", "model.onnx", *option])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and option[0] in err and message in err


# --- a broken model -----------------------------------------------------------------------------------


class NanCurveGenerator(TinyCurveGenerator):
    """What a diverged run exports: every output is NaN."""

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z) * float("nan")


def test_a_model_that_outputs_nan_gets_one_error_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the audit: json.dumps(allow_nan=False) raised inside the handler, 500 "internal server error" and a
    # traceback on the server; tables cast NaN counts to -9223372036854775808
    from advgen_export.cli import main
    from advgen_export.runtime import ModelOutputError

    run = SimpleNamespace(domain=TinyCurves(), spec={"shape": [LENGTH], "conditions": None},
                          generator=NanCurveGenerator().eval(),
                          config=SimpleNamespace(z_dim=4, to_dict=lambda: {"z_dim": 4}), run_dir="")
    export(run, tmp_path / "nan.onnx")
    broken = load(tmp_path / "nan.onnx", threads=1)
    with pytest.raises(ModelOutputError, match="NaN or infinite values in its output"):
        broken.sample(3, seed=0)
    assert main(["sample", str(tmp_path / "nan.onnx"), "-n", "3", "-o", str(tmp_path / "rows.npz")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "NaN or infinite" in err[0] and not (tmp_path / "rows.npz").exists()
    with running(broken) as server:
        answer = exchange(server, post(b'{"n": 2}'))
    assert answer["status"] == 500 and "NaN or infinite values" in answer["json"]["error"]
    assert "Traceback" not in capsys.readouterr().err


def test_threads_the_machine_will_not_start_are_one_error(model: GeneratorModel, monkeypatch: pytest.MonkeyPatch) -> None:
    # the audit: --workers 100000 under a memory limit ended in "RuntimeError: can't start new thread" (traceback)
    from advgen_export.manifest import ModelError

    real_start, count = threading.Thread.start, [0]

    def start(self: threading.Thread) -> None:
        count[0] += 1
        if count[0] > 4:
            raise RuntimeError("can't start new thread")
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    with pytest.raises(ModelError, match="cannot start 8 worker threads"):
        make_server(model, port=0, quiet=True, workers=8)
    monkeypatch.setattr(threading.Thread, "start", real_start)
    assert all(not t.name.startswith(("advgen-worker", "advgen-intake")) or not t.is_alive()
               for t in threading.enumerate())


def test_the_intake_knows_a_request_is_whole_byte_by_byte() -> None:
    from advgen_export.intake import _Receiving

    request = post(b'{"n": 2}')
    r = _Receiving(sock=None, address="x", deadline=0.0)  # type: ignore[arg-type]
    whole = [r.add(request[i : i + 1], max_body=64) for i in range(len(request))]
    assert whole[-1] and not any(whole[:-1])  # whole at the body's last byte, not before
    no_length = _Receiving(sock=None, address="x", deadline=0.0)  # type: ignore[arg-type]
    assert no_length.add(b"GET /health HTTP/1.0\r\n\r\n", max_body=64)
    too_long = _Receiving(sock=None, address="x", deadline=0.0)  # type: ignore[arg-type]
    big = post(b"x" * 100)
    head = big[: big.index(b"\r\n\r\n") + 4]
    assert too_long.add(head, max_body=64)  # a body over the limit: whole at its head, the handler answers 413
