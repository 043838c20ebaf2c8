"""A small HTTP server around a :class:`~advgen_export.runtime.GeneratorModel`.

Endpoints (JSON in, JSON out):

- ``GET /health``: ``{"status": "ok"}``;
- ``GET /info``: the model description (:meth:`GeneratorModel.info`) plus the server's limits;
- ``POST /sample`` with ``{"n": 100, "condition": "category=r2l" | {"category": "r2l"} | null, "seed": 0}``:
  tables as ``{"kind": "table", "columns": [...], "rows": [[...], ...]}``, arrays as
  ``{"kind": ..., "shape": [...], "data": [...], "labels": [...] | null}``.

Bad requests get a 4xx status and ``{"error": "<one line>"}``: 400 for invalid JSON or values (an
``n`` above ``max_n`` included), 404 for unknown paths, 405 for wrong methods, 411 without
Content-Length, 413 for bodies over ``max_body`` bytes.

Built on the standard library's ``ThreadingHTTPServer``: the runtime's promise is "onnxruntime,
numpy, pandas and nothing else", the server needs three endpoints, and a thread per request is enough
because onnxruntime's ``InferenceSession.run`` is thread-safe and releases the GIL while it computes.
Put a reverse proxy in front of it for TLS or authentication. Shutdown on SIGINT/SIGTERM stops
accepting connections and waits for requests in flight.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import urlsplit

import numpy as np

from advgen_export.manifest import ModelError
from advgen_export.runtime import MAX_SEED, GeneratorModel

DEFAULT_MAX_N = 10_000
DEFAULT_MAX_BODY = 64 * 1024
DEFAULT_MAX_VALUES = 20_000_000  # numbers in one response; keeps image responses within memory
REQUEST_FIELDS = ("n", "condition", "seed")


class RequestError(Exception):
    """A bad request: HTTP status and one line for the client."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class SampleServer(ThreadingHTTPServer):
    """One thread per request; non-daemon threads so that closing waits for requests in flight."""

    daemon_threads = False
    block_on_close = True

    def __init__(
        self,
        address: tuple[str, int],
        model: GeneratorModel,
        *,
        max_n: int = DEFAULT_MAX_N,
        max_body: int = DEFAULT_MAX_BODY,
        max_values: int = DEFAULT_MAX_VALUES,
        quiet: bool = False,
    ) -> None:
        self.model = model
        self.max_n = max_n
        self.max_body = max_body
        self.max_values = max_values
        self.quiet = quiet
        self.values_per_sample = max(1, _values_per_sample(model))
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: SampleServer
    server_version = "advgen-runtime/1"
    protocol_version = "HTTP/1.0"  # one request per connection: no idle keep-alive threads at shutdown
    timeout = 30  # seconds a client may stall while sending, so slow clients cannot pin threads

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
                raise RequestError(HTTPStatus.NOT_FOUND, f"no such endpoint {path}; use /sample, /info or /health")
            handler = routes[path].get(method)
            if handler is None:
                allowed = ", ".join(routes[path])
                raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, f"{path} accepts {allowed}, not {method}")
            self._send(HTTPStatus.OK, handler())
        except RequestError as exc:
            self._send(exc.status, {"error": str(exc)})
        except ModelError as exc:
            self._send(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        except Exception:  # the client gets a JSON 500, the operator the traceback
            traceback.print_exc(file=sys.stderr)
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal server error"})

    def _info(self) -> dict[str, Any]:
        info = self.server.model.info()
        info["limits"] = {"max_n": self.server.max_n, "max_body_bytes": self.server.max_body}
        return info

    def _sample(self) -> dict[str, Any]:
        request = self._read_json()
        unknown = sorted(set(request) - set(REQUEST_FIELDS))
        if unknown:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"unknown field(s) {unknown}; accepted: {list(REQUEST_FIELDS)}")
        n = request.get("n")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"n must be a positive integer, got {n!r}")
        if n > self.server.max_n:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"n={n} exceeds this server's limit of {self.server.max_n}")
        if n * self.server.values_per_sample > self.server.max_values:
            limit = self.server.max_values // self.server.values_per_sample
            raise RequestError(HTTPStatus.BAD_REQUEST, f"n={n} samples are too large a response; ask for at most {limit}")
        seed = request.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED):
            raise RequestError(HTTPStatus.BAD_REQUEST, f"seed must be null or an integer in [0, 2**63), got {seed!r}")
        condition = request.get("condition")
        if condition is not None and not isinstance(condition, (str, dict)):
            raise RequestError(HTTPStatus.BAD_REQUEST, "condition must be null, \"key=value\" or an object")
        model = self.server.model
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
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "send a JSON body with a Content-Length header")
        try:
            length = int(length_header)
        except ValueError:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"invalid Content-Length {length_header!r}") from None
        if length < 0:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"invalid Content-Length {length_header!r}")
        if length > self.server.max_body:
            self.close_connection = True  # the unread body must not be parsed as a next request
            raise RequestError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"request body of {length} bytes exceeds the limit of {self.server.max_body}",
            )
        raw = self.rfile.read(length)
        try:
            request = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"request body is not valid JSON: {exc}") from None
        if not isinstance(request, dict):
            raise RequestError(HTTPStatus.BAD_REQUEST, "request body must be a JSON object")
        return request

    def _send(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, allow_nan=False).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away; nothing to tell it

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")


def make_server(model: GeneratorModel, host: str = "127.0.0.1", port: int = 8000, **limits: Any) -> SampleServer:
    """A bound server (``port=0`` picks a free port; see ``server.url``); call ``serve_forever`` to run it."""
    try:
        return SampleServer((host, port), model, **limits)
    except OSError as exc:
        raise ModelError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def serve(model: GeneratorModel, host: str = "127.0.0.1", port: int = 8000, **limits: Any) -> None:
    """Serve until SIGINT or SIGTERM, then finish requests in flight and return."""
    server = make_server(model, host, port, **limits)

    def stop(signum: int, frame: Any) -> None:
        # shutdown() waits for serve_forever to return, so it must run outside the serving thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    print(f"advgen-runtime: serving {model.path.name} on {server.url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("advgen-runtime: stopped", file=sys.stderr, flush=True)


def _values_per_sample(model: GeneratorModel) -> int:
    total = 0
    for desc in model.manifest["outputs"]:
        total += int(np.prod(desc.get("shape") or [1]))
    return total
