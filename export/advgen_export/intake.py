"""Receive each request in full before a worker sees it.

A worker that reads its own request is held for as long as the client takes to send it: an audit
kept every worker and queue place of ``advgen-runtime serve`` busy with 72 connections that sent
nothing, re-opened every 9 s, and every other client got 503. Here one thread, with one selector,
reads every connection's request line, headers and body (as far as its ``Content-Length`` says, at
most the body limit) into memory, and only a request received in full (or one the client ended, or
one too long to be valid, which the handler then refuses) goes to the workers. A client that sends
nothing costs a socket and a few bytes, not a worker.

Bounds: at most ``limit`` connections receiving at once, at most ``per_client`` of them from one
address (``429`` beyond, so one client cannot fill the intake either), and the request deadline:
a request not received within ``timeout`` seconds of its accept is answered ``408``.
"""

from __future__ import annotations

import queue
import re
import selectors
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable

MAX_HEAD_BYTES = 65_536 + 100 * 65_538  # request line and up to 100 headers of 64 KiB: the handler's own limits
RECV_BYTES = 65_536

_HEAD_END = b"\r\n\r\n"
_CONTENT_LENGTH = re.compile(rb"^content-length[ \t]*:[ \t]*([0-9]{1,15})[ \t]*$", re.IGNORECASE | re.MULTILINE)


@dataclass
class _Receiving:
    sock: socket.socket
    address: Any
    deadline: float
    data: bytearray = field(default_factory=bytearray)
    need: int | None = None  # bytes of the whole request, once its head has arrived

    def add(self, chunk: bytes, max_body: int) -> bool:
        """Append ``chunk``; whether the request is now whole: its head, and its body as far as one
        ``Content-Length`` (at most ``max_body``) says. A head with no length, several, or one above
        ``max_body`` is whole as it is (the handler answers it); so is anything longer than a valid head
        may be. The head's end is searched for in the new bytes only, so a client sending a byte at a
        time costs linear work, not quadratic."""
        start = max(0, len(self.data) - len(_HEAD_END) + 1)
        self.data += chunk
        if self.need is None:
            end = self.data.find(_HEAD_END, start)
            if end < 0:
                return len(self.data) > MAX_HEAD_BYTES
            head = bytes(self.data[:end]).replace(b"\r\n", b"\n")
            lengths = {m.group(1) for m in _CONTENT_LENGTH.finditer(head)}
            length = int(next(iter(lengths))) if len(lengths) == 1 else 0
            self.need = end + len(_HEAD_END) + (0 if length > max_body else length)
        return len(self.data) >= self.need


class Intake:
    """The receiving thread (:meth:`run`): :meth:`admit` gives it accepted connections; it calls
    ``hand_over(sock, address, deadline, received)`` for each request received in full and
    ``refuse(sock, status, message)`` for one that missed its deadline (status 408)."""

    def __init__(
        self, *, max_body: int, timeout: float, limit: int, per_client: int,
        hand_over: Callable[[socket.socket, Any, float, bytes], None],
        refuse: Callable[[socket.socket, int, str], None],
    ) -> None:
        self.max_body = max_body
        self.timeout = timeout
        self.limit = limit
        self.per_client = per_client
        self._hand_over = hand_over
        self._refuse = refuse
        self._incoming: queue.SimpleQueue[_Receiving | None] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._receiving: dict[socket.socket, _Receiving] = {}
        # counted by the accept thread when admitted, released by this thread: one lock-free owner each
        self._admitted = 0
        self._released = 0
        self._per_address: dict[Any, int] = {}
        self._released_by_address: queue.SimpleQueue[Any] = queue.SimpleQueue()

    # --- the accept thread ---------------------------------------------------------------------------

    def admit(self, sock: socket.socket, address: Any) -> int | None:
        """Take an accepted connection, or say why not: 429 (too many from its address) or 503 (full)."""
        while not self._released_by_address.empty():
            self._forget_address(self._released_by_address.get())
        host = address[0] if isinstance(address, tuple) and address else address
        if self.per_client and self._per_address.get(host, 0) >= self.per_client:
            return 429
        if self._admitted - self._released >= self.limit:
            return 503
        self._admitted += 1
        self._per_address[host] = self._per_address.get(host, 0) + 1
        self._incoming.put(_Receiving(sock, host, time.monotonic() + self.timeout))
        self._wake()
        return None

    def _forget_address(self, host: Any) -> None:
        left = self._per_address.get(host, 0) - 1
        if left > 0:
            self._per_address[host] = left
        else:
            self._per_address.pop(host, None)

    def stop(self) -> None:
        self._incoming.put(None)
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except (BlockingIOError, OSError):
            pass  # a wake-up is already pending

    # --- the receiving thread ------------------------------------------------------------------------

    def run(self) -> None:
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        stopping = False
        while not stopping:
            timeout = None
            if self._receiving:
                timeout = max(0.0, min(r.deadline for r in self._receiving.values()) - time.monotonic())
            for key, _ in self._selector.select(timeout=timeout):
                if key.fileobj is self._wake_r:
                    self._drain_wake()
                    stopping = self._take_incoming() or stopping
                else:
                    self._read(self._receiving[key.fileobj])  # type: ignore[index]
            now = time.monotonic()
            for r in [r for r in self._receiving.values() if r.deadline <= now]:
                self._done(r)
                self._refuse(r.sock, 408, f"request not received within {self.timeout:g} s")
        for r in list(self._receiving.values()):  # shutting down: those still sending get no answer
            self._done(r)
            self._refuse(r.sock, 503, "server shutting down")
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _take_incoming(self) -> bool:
        stopping = False
        while not self._incoming.empty():
            r = self._incoming.get()
            if r is None:
                stopping = True
                continue
            r.sock.setblocking(False)
            self._receiving[r.sock] = r
            self._selector.register(r.sock, selectors.EVENT_READ)
        return stopping

    def _read(self, r: _Receiving) -> None:
        try:
            chunk = r.sock.recv(RECV_BYTES)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk and not r.add(chunk, self.max_body):
            return
        self._done(r)
        if not chunk and not r.data:
            r.sock.close()  # connected and left without a word
            return
        # whole, or ended by the client (the handler answers what there is)
        self._hand_over(r.sock, r.address, r.deadline, bytes(r.data))

    def _done(self, r: _Receiving) -> None:
        self._selector.unregister(r.sock)
        del self._receiving[r.sock]
        r.sock.setblocking(True)
        self._released += 1
        self._released_by_address.put(r.address)
