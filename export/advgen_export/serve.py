"""A small HTTP server around a :class:`~advgen_export.runtime.GeneratorModel`, built to hold load and abuse.

Endpoints (JSON in, JSON out):

- ``GET /health``: ``{"status": "ok"}``;
- ``GET /info``: the model description (:meth:`GeneratorModel.info`) plus the server's limits;
- ``POST /sample`` with ``{"n": 100, "condition": "category=r2l" | {"category": "r2l"} | null, "seed": 0}``:
  tables as ``{"kind": "table", "columns": [...], "rows": [[...], ...]}``, arrays as
  ``{"kind": ..., "shape": [...], "data": [...], "labels": [...] | null}``.

Every answer other than 200 is ``{"error": "<one line>"}``: 400 for invalid JSON or values (an ``n``
above ``max_n``, a response estimated above ``max_response_bytes``, a body nested deeper than
``MAX_JSON_DEPTH``, a number too long to parse), 404 unknown paths, 405 wrong methods, 408 a request
not received within ``request_timeout`` seconds, 411 no Content-Length, 413 bodies over ``max_body``
bytes, 414/431 request lines or headers over 64 KiB (or over 100 headers), 503 (with ``Retry-After``)
when every worker is busy and the wait queue is full.

How load is held: the kernel keeps up to ``LISTEN_BACKLOG`` connections waiting to be accepted; one
accept thread gives each to the intake (:mod:`advgen_export.intake`), which receives the whole request
on one selector thread, at most ``MAX_RECEIVING`` connections at once and ``max_per_client`` from one
address (429 beyond), within ``request_timeout`` seconds of the accept (408 after), so a client that
sends nothing or drips bytes never holds a worker. A request received in full goes to a fixed pool of
``workers`` threads through a wait queue of ``queue`` places, or, when the queue is full, is answered
503 at once (a few hundred bytes to a fresh socket never blocks). Writing the response is bounded by
the same number of seconds.
Connections are closed gently: the server half-closes, reads what the client still sends and closes
when the client does (at most ``LINGER_SECONDS`` later, on one background thread), because closing
a socket with unread bytes makes the kernel send a reset that can destroy the response in flight.

Why the standard library rather than uvicorn and starlette: the runtime promises "onnxruntime, numpy,
pandas and nothing else", so a framework could only be an optional extra and this server would still
be needed as the fallback: two servers to keep right instead of one. Nor would uvicorn meet the figures
alone: ``--limit-concurrency`` answers a plain-text 503 without ``Retry-After``, and it has no deadline
for receiving a request (``--timeout-keep-alive`` restarts on every byte; encode/uvicorn#157), so the
slow-client defence would be code of ours on top of it anyway. Here the hardening is four small
pieces (an intake, a worker pool, a deadline reader, a lingering close) on a server the runtime already needs.
Put a reverse proxy in front for TLS or authentication. Shutdown on SIGINT/SIGTERM stops accepting
connections, answers those already accepted and returns.
"""

from __future__ import annotations

import io
import json
import os
import queue
import re
import reprlib
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Callable
from urllib.parse import urlsplit

import numpy as np

from advgen_export.intake import Intake
from advgen_export.manifest import ModelError
from advgen_export.runtime import MAX_SEED, GeneratorModel, ModelOutputError

DEFAULT_MAX_N = 10_000
DEFAULT_MAX_BODY = 64 * 1024
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
# responses being built or sent at once, by their size bound: building one takes about five times its
# size (arrays, Python lists, the JSON text, its bytes), so the default keeps that near 1.3 GiB
DEFAULT_MAX_INFLIGHT_BYTES = 256 * 1024 * 1024
DEFAULT_QUEUE = 64
DEFAULT_REQUEST_TIMEOUT = 10.0
MAX_RECEIVING = 1024  # connections still sending their request, all clients together
DEFAULT_MAX_PER_CLIENT = 64  # of those, from one address (0: no limit, e.g. behind a proxy that limits)
LISTEN_BACKLOG = 1024  # the kernel caps it at net.core.somaxconn (4096 on current Linux)
LINGER_SECONDS = 2.0
MAX_LINGERING = 4096  # beyond this many half-closed sockets, close at once rather than hold descriptors
MAX_JSON_DEPTH = 8  # a request needs 2 levels ({"condition": {...}}); deeper bodies are refused unparsed
RETRY_AFTER_SECONDS = 1
MAX_ERROR_CHARS = 300
NUMBER_CHARS = 24  # longest JSON number Python writes: "-2.2250738585072014e-308"
REQUEST_FIELDS = ("n", "condition", "seed")
SERVER_VERSION = "advgen-runtime/1"

_short = reprlib.Repr()
_short.maxstring = _short.maxother = _short.maxlong = 40
_JSON_SPECIAL = re.compile(rb'[\[\]{}"\\]')
_CONTENT_LENGTH = re.compile(r"[0-9]{1,15}")


def default_workers() -> int:
    """``min(32, 4 * CPUs this process may use)``: sampling releases the GIL, JSON encoding does not."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return min(32, 4 * cpus)


class RequestError(Exception):
    """A bad request: HTTP status and one line for the client."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class DeadlineExceeded(Exception):
    """The request was not received in full before its deadline.

    Deliberately not a ``TimeoutError``: the standard handler swallows those silently, and the client
    should be told 408.
    """


class SampleServer(HTTPServer):
    """A fixed pool of worker threads fed from the accept loop through a bounded wait queue."""

    request_queue_size = LISTEN_BACKLOG  # a burst waits in the kernel instead of being reset

    def __init__(
        self,
        address: tuple[str, int],
        model: GeneratorModel,
        *,
        max_n: int = DEFAULT_MAX_N,
        max_body: int = DEFAULT_MAX_BODY,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        workers: int | None = None,
        queue_size: int = DEFAULT_QUEUE,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        max_per_client: int = DEFAULT_MAX_PER_CLIENT,
        max_inflight_bytes: int | None = None,
        quiet: bool = False,
    ) -> None:
        workers = default_workers() if workers is None else workers
        if (workers < 1 or queue_size < 0 or not request_timeout > 0 or max_n < 1 or max_body < 1
                or max_per_client < 0):
            raise ModelError("workers, max_n and max_body must be at least 1, queue_size and max_per_client at "
                             "least 0 and request_timeout above 0")
        self.model = model
        self.max_n = max_n
        self.max_body = max_body
        self.max_response_bytes = max_response_bytes
        self.workers = workers
        self.queue_size = queue_size
        self.request_timeout = float(request_timeout)
        self.max_per_client = max_per_client
        self.max_inflight_bytes = max(DEFAULT_MAX_INFLIGHT_BYTES, max_response_bytes) if max_inflight_bytes is None \
            else max_inflight_bytes
        if self.max_inflight_bytes < max_response_bytes:
            raise ModelError(f"the bytes of responses in flight ({self.max_inflight_bytes}) must be at least the "
                             f"response size limit ({max_response_bytes})")
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        self.quiet = quiet
        self.bytes_per_sample, self.response_overhead = response_size_bounds(model, max_body)
        self.max_n_by_size = (max_response_bytes - self.response_overhead) // self.bytes_per_sample
        if self.max_n_by_size < 1:
            raise ModelError(
                f"a response of one sample may take {self.response_overhead + self.bytes_per_sample} bytes, "
                f"more than the limit of {max_response_bytes}; raise the response size limit"
            )
        # a slot is a worker or a place in the queue; the accept thread takes one or answers 503
        self._slots = threading.BoundedSemaphore(workers + queue_size)
        self._pending: queue.SimpleQueue[tuple[socket.socket, Any, float, bytes] | None] = queue.SimpleQueue()
        self._closer = _GentleCloser()
        self._intake = Intake(max_body=max_body, timeout=self.request_timeout, limit=MAX_RECEIVING,
                              per_client=max_per_client, hand_over=self._hand_over, refuse=self._refuse)
        self._intake_thread = threading.Thread(target=self._intake.run, name="advgen-intake", daemon=True)
        self._workers = [threading.Thread(target=self._work, name=f"advgen-worker-{i}", daemon=True)
                         for i in range(workers)]
        self._closer_thread = threading.Thread(target=self._closer.run, name="advgen-closer", daemon=True)
        self._running = False
        super().__init__(address, _Handler)  # binds and listens; on failure it calls server_close
        started = []
        try:
            for thread in [self._closer_thread, self._intake_thread, *self._workers]:
                thread.start()
                started.append(thread)
        except RuntimeError as exc:  # "can't start new thread": a limit of the machine or the process
            self._stop_threads(started)
            super().server_close()
            raise ModelError(f"cannot start {workers} worker threads ({exc}); ask for fewer with --workers") from None
        self._running = True

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def limits(self) -> dict[str, Any]:
        return {
            "max_n": min(self.max_n, self.max_n_by_size),
            "max_body_bytes": self.max_body,
            "max_response_bytes": self.max_response_bytes,
            "workers": self.workers,
            "queue": self.queue_size,
            "request_timeout_s": self.request_timeout,
            "max_per_client": self.max_per_client,
            "max_inflight_bytes": self.max_inflight_bytes,
        }

    def reserve(self, size: int) -> bool:
        """Count ``size`` bytes of response in flight, or say no when they would pass the limit."""
        with self._inflight_lock:
            if self._inflight + size > self.max_inflight_bytes:
                return False
            self._inflight += size
            return True

    def release(self, size: int) -> None:
        with self._inflight_lock:
            self._inflight -= size

    # --- accept thread ---------------------------------------------------------------------------

    def process_request(self, request: socket.socket, client_address: Any) -> None:  # type: ignore[override]
        status = self._intake.admit(request, client_address)
        if status == 429:
            self._refuse(request, 429, f"too many connections from your address are still sending their request "
                                       f"(at most {self.max_per_client}); retry after {RETRY_AFTER_SECONDS} s")
        elif status is not None:
            self._refuse(request, 503, f"server overloaded: too many connections are sending their request; "
                                       f"retry after {RETRY_AFTER_SECONDS} s")

    def _hand_over(self, sock: socket.socket, client_address: Any, deadline: float, received: bytes) -> None:
        """A request received in full goes to a worker, or to the queue; with both full, 503."""
        if self._slots.acquire(blocking=False):
            self._pending.put((sock, client_address, deadline, received))
        else:
            self._send_overloaded(sock)
            self._closer.close(sock)

    def _refuse(self, sock: socket.socket, status: int, message: str) -> None:
        """Answer a connection no worker reads (``status``: 408, 429 or 503) and close it gently."""
        extra = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status in (429, 503) else None
        self._send_small(sock, HTTPStatus(status), message, extra)
        if not self.quiet:
            sys.stderr.write(f"{_peer(sock)} - {status} {message}\n")
        self._closer.close(sock)

    def _send_overloaded(self, sock: socket.socket) -> None:
        message = (f"server overloaded: all {self.workers} workers are busy and the queue of {self.queue_size} "
                   f"is full; retry after {RETRY_AFTER_SECONDS} s")
        self._send_small(sock, HTTPStatus.SERVICE_UNAVAILABLE, message, {"Retry-After": str(RETRY_AFTER_SECONDS)})

    @staticmethod
    def _send_small(sock: socket.socket, status: HTTPStatus, message: str, extra: dict[str, str] | None) -> None:
        data = json.dumps({"error": message}).encode()
        head = _response_head(status, len(data), extra)
        try:
            sock.setblocking(False)  # a few hundred bytes fit any fresh socket's buffer; never wait
            sock.send(head + data)
        except OSError:
            pass  # the client is gone; closing is all it gets

    # --- workers ---------------------------------------------------------------------------------

    def _work(self) -> None:
        while (item := self._pending.get()) is not None:
            sock, client_address, deadline, received = item
            try:
                if time.monotonic() < deadline:
                    _Handler(sock, client_address, self, deadline, received)
                else:  # it waited its whole deadline in the queue: shed it
                    self._send_overloaded(sock)
            except Exception:
                self.handle_error(sock, client_address)
            finally:
                self._slots.release()  # before the close, so a client that sees end of stream finds it free
                self._closer.close(sock)

    def server_close(self) -> None:
        """Stop listening, answer the connections already accepted, then close them all."""
        super().server_close()
        if not self._running:
            return
        self._stop_threads([self._closer_thread, self._intake_thread, *self._workers])

    def _stop_threads(self, started: list[threading.Thread]) -> None:
        self._running = False
        if self._intake_thread in started:
            self._intake.stop()  # those still sending are answered 503; those received in full reach a worker
            self._intake_thread.join()
        workers = [t for t in self._workers if t in started]
        for _ in workers:
            self._pending.put(None)  # after the connections already queued
        for thread in workers:
            thread.join()
        if self._closer_thread in started:
            self._closer.stop()
            self._closer_thread.join()


class _DeadlineReader(io.RawIOBase):
    """Socket reads that all share one deadline, so the total time to receive a request is bounded; what
    the intake already received (``received``) is read first."""

    def __init__(self, sock: socket.socket, deadline: float, received: bytes = b"") -> None:
        self._sock = sock
        self._deadline = deadline
        self._received = memoryview(received)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._received:
            n = min(len(buffer), len(self._received))
            buffer[:n] = self._received[:n]
            self._received = self._received[n:]
            return n
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded
        self._sock.settimeout(remaining)
        try:
            return self._sock.recv_into(buffer)
        except TimeoutError:
            raise DeadlineExceeded from None


class _GentleCloser:
    """Half-close sockets, drain what the client still sends, close on its EOF or after LINGER_SECONDS."""

    def __init__(self) -> None:
        self._incoming: queue.SimpleQueue[socket.socket | None] = queue.SimpleQueue()
        self._selector = selectors.DefaultSelector()
        self._deadlines: dict[socket.socket, float] = {}

    def close(self, sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_WR)  # the client reads the response, then end of stream
        except OSError:
            _close(sock)
            return
        self._incoming.put(sock)

    def stop(self) -> None:
        self._incoming.put(None)

    def run(self) -> None:
        stopping = False
        while not stopping or self._deadlines:
            # wait for work when nothing lingers; otherwise take what arrived and poll briefly, so a
            # socket handed over meanwhile waits at most one poll
            arrived = [] if self._deadlines or stopping else [self._incoming.get()]
            while not self._incoming.empty():
                arrived.append(self._incoming.get())
            for sock in arrived:
                if sock is None:
                    stopping = True
                elif len(self._deadlines) >= MAX_LINGERING:
                    _close(sock)
                else:
                    sock.setblocking(False)
                    self._selector.register(sock, selectors.EVENT_READ)
                    self._deadlines[sock] = time.monotonic() + LINGER_SECONDS
            if not self._deadlines:
                continue
            for key, _ in self._selector.select(timeout=0.05):
                try:
                    if key.fileobj.recv(65536):
                        continue  # still sending: keep draining
                except BlockingIOError:
                    continue
                except OSError:
                    pass
                self._forget(key.fileobj)  # end of stream (or reset): the client has its answer
            now = time.monotonic()
            for sock in [s for s, deadline in self._deadlines.items() if deadline <= now]:
                self._forget(sock)
        self._selector.close()

    def _forget(self, sock: Any) -> None:
        self._selector.unregister(sock)
        del self._deadlines[sock]
        _close(sock)


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


class _Handler(BaseHTTPRequestHandler):
    server: SampleServer
    server_version = SERVER_VERSION
    protocol_version = "HTTP/1.0"  # one request per connection: no idle keep-alive connections to hold

    def __init__(self, request: socket.socket, client_address: Any, server: SampleServer, deadline: float,
                 received: bytes = b"") -> None:
        self.deadline = deadline
        self.received = received
        self.reserved = 0  # bytes of response in flight this request holds (SampleServer.reserve)
        super().__init__(request, client_address, server)

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the socket only really closes once every file made from it is closed
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self.deadline, self.received))
        # what logging and the 408 answer need when the request line never arrived
        self.request_version, self.requestline, self.command = "HTTP/1.0", "", ""

    def handle(self) -> None:
        try:
            self.handle_one_request()
        except DeadlineExceeded:
            self.close_connection = True
            seconds = f"{self.server.request_timeout:g}"
            self._send(HTTPStatus.REQUEST_TIMEOUT, {"error": f"request not received within {seconds} s"})
        except OSError:
            pass  # the client reset the connection; nobody is left to answer

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        routes: dict[str, dict[str, Callable[[], Any]]] = {
            "/health": {"GET": lambda: {"status": "ok"}},
            "/info": {"GET": self._info},
            "/sample": {"POST": self._sample},
        }
        path = urlsplit(self.path).path.rstrip("/") or "/"
        try:
            if path not in routes:
                raise RequestError(HTTPStatus.NOT_FOUND,
                                   f"no such endpoint {_short.repr(path)}; use /sample, /info or /health")
            handler = routes[path].get(method)
            if handler is None:
                allowed = ", ".join(routes[path])
                raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, f"{path} accepts {allowed}, not {method}")
            try:
                self._send(HTTPStatus.OK, handler())
            finally:
                if self.reserved:
                    self.server.release(self.reserved)
                    self.reserved = 0
        except RequestError as exc:
            self._send(exc.status, {"error": str(exc)})
        except ModelOutputError as exc:  # the model's fault, not the request's
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": str(exc)})
        except ModelError as exc:
            self._send(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        except (DeadlineExceeded, ConnectionError):
            raise  # answered (408) or dropped in handle()
        except Exception:  # the client gets a JSON 500, the operator the traceback
            traceback.print_exc(file=sys.stderr)
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal server error"})

    def _info(self) -> dict[str, Any]:
        info = self.server.model.info()
        info["limits"] = self.server.limits()
        return info

    def _sample(self) -> dict[str, Any]:
        request = self._read_json()
        unknown = sorted(set(request) - set(REQUEST_FIELDS))
        if unknown:
            raise RequestError(HTTPStatus.BAD_REQUEST,
                               f"unknown field(s) {_short.repr(unknown)}; accepted: {list(REQUEST_FIELDS)}")
        n = request.get("n")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"n must be a positive integer, got {_short.repr(n)}")
        server = self.server
        if n > server.max_n:
            raise RequestError(HTTPStatus.BAD_REQUEST,
                               f"n={_short.repr(n)} exceeds this server's limit of {server.max_n}")
        if n > server.max_n_by_size:
            raise RequestError(
                HTTPStatus.BAD_REQUEST,
                f"n={n} samples may take {server.response_overhead + n * server.bytes_per_sample} bytes, over this "
                f"server's response limit of {server.max_response_bytes}; ask for at most {server.max_n_by_size}",
            )
        seed = request.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED):
            raise RequestError(HTTPStatus.BAD_REQUEST,
                               f"seed must be null or an integer in [0, 2**63), got {_short.repr(seed)}")
        condition = request.get("condition")
        if condition is not None and not isinstance(condition, (str, dict)):
            raise RequestError(HTTPStatus.BAD_REQUEST, "condition must be null, \"key=value\" or an object")
        size = server.response_overhead + n * server.bytes_per_sample
        if not server.reserve(size):
            raise RequestError(
                HTTPStatus.SERVICE_UNAVAILABLE,
                f"server busy: responses in flight would pass {server.max_inflight_bytes} bytes; retry after "
                f"{RETRY_AFTER_SECONDS} s or ask for fewer samples",
            )
        self.reserved = size
        model = server.model
        generated = model.generate(n, condition, seed)
        body: dict[str, Any] = {"kind": model.kind, "n": n, "seed": seed, "condition": condition}
        if model.kind == "table":
            df = model.to_table(generated)
            split = json.loads(df.to_json(orient="split", index=False))
            body.update(columns=split["columns"], rows=split["data"])
        else:
            arr = np.asarray(model.to_samples(generated))
            body.update(shape=list(arr.shape), dtype=str(arr.dtype), data=arr.tolist(), labels=generated.labels)
        return body

    def _read_json(self) -> dict[str, Any]:
        if "Transfer-Encoding" in self.headers:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED,
                               "chunked bodies are not accepted; send a Content-Length header")
        lengths = set(self.headers.get_all("Content-Length") or ())
        if not lengths:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "send a JSON body with a Content-Length header")
        length_header = lengths.pop().strip()
        if lengths or not _CONTENT_LENGTH.fullmatch(length_header):
            raise RequestError(HTTPStatus.BAD_REQUEST, f"invalid Content-Length {_short.repr(length_header)}")
        length = int(length_header)
        if length > self.server.max_body:
            raise RequestError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"request body of {length} bytes exceeds the limit of {self.server.max_body}",
            )
        raw = self.rfile.read(length)
        if len(raw) < length:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"request body ended after {len(raw)} of {length} bytes")
        if json_depth_exceeds(raw, MAX_JSON_DEPTH):
            raise RequestError(HTTPStatus.BAD_REQUEST, f"request body is nested deeper than {MAX_JSON_DEPTH} levels")
        try:
            request = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        except (UnicodeDecodeError, ValueError) as exc:  # ValueError: integers longer than Python parses
            raise RequestError(HTTPStatus.BAD_REQUEST, f"request body is not valid JSON: {exc}") from None
        if not isinstance(request, dict):
            raise RequestError(HTTPStatus.BAD_REQUEST, "request body must be a JSON object")
        return request

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed request lines and headers get the same JSON error body as everything else."""
        self.close_connection = True
        self._send(HTTPStatus(code), {"error": message or HTTPStatus(code).phrase})

    def _send(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        if "error" in payload:
            payload["error"] = " ".join(str(payload["error"]).split())[:MAX_ERROR_CHARS]
        data = json.dumps(payload, allow_nan=False).encode("utf-8")
        try:
            # sendall's timeout bounds the whole write, so a client that stops reading frees the worker
            self.connection.settimeout(self.server.request_timeout)
            self.log_request(status.value, len(data))
            extra = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == HTTPStatus.SERVICE_UNAVAILABLE else None
            self.wfile.write(_response_head(status, len(data), extra) + data)
        except OSError:
            pass  # the client went away or stopped reading; nothing to tell it

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")


def json_depth_exceeds(raw: bytes, limit: int) -> bool:
    """Whether brackets outside JSON strings nest deeper than ``limit``, in one linear scan.

    Parsing a body of 30,000 ``[`` would exhaust the parser's recursion; this check runs first.
    """
    depth, in_string, skip_to = 0, False, -1
    for match in _JSON_SPECIAL.finditer(raw):
        i = match.start()
        if i < skip_to:
            continue  # the character after a backslash inside a string
        char = raw[i]
        if in_string:
            if char == 0x5C:  # backslash
                skip_to = i + 2
            elif char == 0x22:  # quote
                in_string = False
        elif char == 0x22:
            in_string = True
        elif char in b"[{":
            depth += 1
            if depth > limit:
                return True
        elif char in b"]}":
            depth -= 1
    return False


def response_size_bounds(model: GeneratorModel, max_body: int) -> tuple[int, int]:
    """Upper bounds on a ``/sample`` response: bytes per sample and bytes for everything else.

    Numbers are counted at their longest JSON form and strings at the longest value the manifest can
    produce, so a request within ``(limit - overhead) // per_sample`` never exceeds the limit.
    """
    manifest = model.manifest
    cond = manifest.get("conditions") or {}
    class_width = max((_json_len(c) for c in cond.get("classes") or []), default=4)
    item = NUMBER_CHARS + 2  # a value and its ", "
    if model.kind == "table":
        section = manifest["sample"]
        widths: dict[str, int] = {}
        for desc in manifest["outputs"]:
            vocabs = desc.get("vocabularies") or [None] * len(desc.get("columns") or [])
            for name, vocab in zip(desc.get("columns") or [], vocabs):
                widths[name] = max((_json_len(v) for v in vocab), default=4) if vocab else NUMBER_CHARS
        if section.get("condition_column"):
            widths[section["condition_column"]] = class_width
        for name, rule in (section.get("derived_columns") or {}).items():
            mapped = [*rule["map"].values(), *([rule["default"]] if "default" in rule else [])]
            source = widths.get(rule["from"], max(NUMBER_CHARS, class_width))
            widths[name] = max([source, *(_json_len(v) for v in mapped)])
        for name, value in (section.get("constants") or {}).items():
            widths[name] = _json_len(value)
        columns = section["columns"]
        per_sample = 4 + sum(widths.get(c, NUMBER_CHARS) + 2 for c in columns)
        overhead = _json_len(columns)
    else:
        desc = next(o for o in manifest["outputs"] if o["name"] == manifest["sample"]["output"])
        shape = [int(s) for s in desc.get("shape") or []]
        lists = 1 + sum(int(np.prod(shape[:k])) for k in range(1, len(shape)))  # nested lists per sample
        per_sample = int(np.prod(shape)) * item + 4 * lists + (class_width + 2 if cond else 0)
        overhead = 64
    # the echoed condition (escaped, at most the body) and the fixed keys
    return per_sample, overhead + 6 * max_body + 512


def _peer(sock: socket.socket) -> str:
    try:
        return str(sock.getpeername()[0])
    except (OSError, IndexError, TypeError):
        return "-"


def _json_len(value: Any) -> int:
    return len(json.dumps(value))


def _response_head(status: HTTPStatus, length: int, extra: dict[str, str] | None = None) -> bytes:
    lines = [f"HTTP/1.0 {status.value} {status.phrase}", f"Server: {SERVER_VERSION}",
             f"Date: {formatdate(usegmt=True)}", "Content-Type: application/json",
             f"Content-Length: {length}", "Connection: close"]
    lines += [f"{key}: {value}" for key, value in (extra or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def make_server(model: GeneratorModel, host: str = "127.0.0.1", port: int = 8000, **limits: Any) -> SampleServer:
    """A bound server (``port=0`` picks a free port; see ``server.url``); call ``serve_forever`` to run it.

    ``limits``: ``max_n``, ``max_body``, ``max_response_bytes``, ``workers``, ``queue_size``,
    ``request_timeout`` (seconds), ``max_per_client``, ``max_inflight_bytes`` and ``quiet``, as the
    ``advgen-runtime serve`` options.
    """
    try:
        return SampleServer((host, port), model, **limits)
    except OSError as exc:
        raise ModelError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def serve(model: GeneratorModel, host: str = "127.0.0.1", port: int = 8000, **limits: Any) -> None:
    """Serve until SIGINT or SIGTERM, then answer the connections already accepted and return."""
    server = make_server(model, host, port, **limits)

    def stop(signum: int, frame: Any) -> None:
        # shutdown() waits for serve_forever to return, so it must run outside the serving thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    print(f"advgen-runtime: serving {model.path.name} on {server.url} with {server.workers} workers "
          f"(Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("advgen-runtime: stopped", file=sys.stderr, flush=True)
