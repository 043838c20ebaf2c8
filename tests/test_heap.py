"""advgen.heap: sampling has glibc keep the memory torch frees, and leaves the user's own settings alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from advgen import heap

# a fresh process: how much of a 20 MiB tensor glibc maps on its own, and how much heap stays free after
PROBE = r"""
import ctypes, json, sys
from advgen.heap import keep_freed_memory
kept = keep_freed_memory()
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
import torch
before = libc.mallinfo2().hblkhd
x = torch.ones(5 << 20)
mapped = libc.mallinfo2().hblkhd - before
del x
print(json.dumps({"kept": kept, "mapped": mapped, "free": libc.mallinfo2().fordblks}))
"""


def _glibc() -> bool:
    try:
        return sys.platform.startswith("linux") and (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError):
        return False


@pytest.fixture
def fresh(monkeypatch):
    for name in ("ADVGEN_KEEP_MEMORY", *heap._USER_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(heap, "_done", None)


def _probe(keep: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["ADVGEN_KEEP_MEMORY"] = keep
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_a_large_block_comes_from_the_heap_and_stays_there_once_freed():
    if not _glibc():
        assert heap.keep_freed_memory() is False  # nothing to tune, and nothing pretends otherwise
        return
    on, off = _probe("on"), _probe("off")
    assert on["kept"] is True and off["kept"] is False
    assert off["mapped"] >= 20 << 20  # glibc's default: a fresh mapping, unmapped again on free
    assert on["mapped"] == 0 and on["free"] >= 20 << 20  # reused by the next batch


def test_the_users_settings_and_the_switch_are_respected(fresh, monkeypatch):
    monkeypatch.setenv("ADVGEN_KEEP_MEMORY", "off")
    assert heap.keep_freed_memory() is False
    monkeypatch.setattr(heap, "_done", None)
    monkeypatch.delenv("ADVGEN_KEEP_MEMORY")
    monkeypatch.setenv("MALLOC_TOP_PAD_", "1048576")
    assert heap.keep_freed_memory() is False
    monkeypatch.setattr(heap, "_done", None)
    monkeypatch.delenv("MALLOC_TOP_PAD_")
    assert heap.keep_freed_memory() is _glibc()
    monkeypatch.setenv("ADVGEN_KEEP_MEMORY", "off")
    assert heap.keep_freed_memory() is _glibc()  # decided once per process


def test_sampling_turns_it_on(curves_run, monkeypatch):
    from advgen import api

    calls = []
    monkeypatch.setattr(api, "keep_freed_memory", lambda: calls.append(1) or True)
    run = api.load_run(curves_run)
    assert calls == []  # loading alone changes nothing
    run.sample(10, seed=0)
    assert calls
