"""Keep memory that torch frees in the process, so the next batch reuses it (glibc on Linux).

torch's CPU tensors come straight from ``malloc``. glibc serves a large block (over 128 KiB, a
threshold it raises up to 32 MiB as blocks are freed) with a fresh ``mmap`` and gives it back on
``free``, and it gives the top of the heap back to the system whenever more than twice that threshold
is free there. A generator batch allocates and frees dozens of such blocks (8,192 NSL-KDD rows: 19 MB
each), and glibc's thresholds move with what was freed last, so a batch often faults its memory in
again page by page (1,000-17,000 minor faults per 8,192-row generator call, against 300-500 with the
memory kept). On the 2-core development VM sampling 25,192 NSL-KDD rows took 1.17x as long without
on 1 thread (median of 8 alternating pairs, 0.95-1.26x; 63,000 against 760 minor faults per call) and
1.18x on 2 (1.13-1.62x): benchmarks/heap_bench.py.

:func:`keep_freed_memory` sets glibc's ``mallopt`` so that blocks up to 32 MiB come from the heap and
freed memory stays in it (nothing is trimmed below 1 GiB free). The process keeps its peak memory for
its lifetime instead of giving it back between batches. Sampling turns it on (``Run``'s chunk loop,
which every sampling command and API call goes through); training does not, where it showed no gain
(400 NSL-KDD steps, three pairs: 0.89-1.00x). It does nothing where the C library is not glibc, where
the user has set a ``MALLOC_*_`` variable of their own (their choice stands), or with
``ADVGEN_KEEP_MEMORY=off``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest dynamic threshold: blocks below it come from the heap
TRIM_THRESHOLD = 1 << 30  # free memory at the heap's top kept up to this much
TOP_PAD = 64 << 20  # the heap grows by at least this much at a time
_USER_VARIABLES = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_ARENA_MAX")
_done: bool | None = None


def keep_freed_memory() -> bool:
    """Tune glibc's malloc as the module says, once per process; whether the settings are in force."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("ADVGEN_KEEP_MEMORY", "").strip().lower() in ("off", "0", "false", "no"):
        return False
    if any(os.environ.get(v) for v in _USER_VARIABLES) or platform.system() != "Linux":
        return False
    try:
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return False  # musl (Alpine) has no such knobs
    except (ValueError, OSError):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; a value it refuses leaves glibc's default in place
    _done = all(
        mallopt(param, value) == 1
        for param, value in ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD))
    )
    return _done
