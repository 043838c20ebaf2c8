"""How samples are drawn at any size: fixed chunks, one seed per chunk, and limits checked up front.

Rows are drawn in chunks of :data:`CHUNK_ROWS`. Chunk ``k`` (rows ``k*C`` to ``k*C + C - 1``) has its
own random generators, seeded with :func:`chunk_seed(seed, k, stream) <chunk_seed>`:

* the core (torch): one generator (stream 0) gives the latent vectors of all ``C`` rows, then, for
  conditional runs, ``C`` class indices; the rows past ``n`` in the last chunk are drawn and dropped
  (torch's normal sampler fills blocks, so a shorter draw would not be a prefix of a longer one);
* the exported runtime (numpy): stream 0 gives the latents and stream 1 the classes of the chunk's
  rows, each drawn element by element, so only the rows asked for are drawn.

So a row depends only on the seed and its index:

* the first ``m`` rows of a sample of ``n > m`` rows are a sample of ``m`` rows with the same seed;
* chunks can be drawn in any order or by several processes and still give one process's rows;
* whatever ``n``, memory holds one chunk at a time when samples go to a file.

The core (torch) and the exported runtime (numpy) follow the same plan with their own generators,
so each is reproducible on its own; the two do not give the same rows for a seed.

This module imports numpy only: the torch-free runtime uses it too.
"""

from __future__ import annotations

import os
import secrets
from typing import Any, Iterator

import numpy as np

from advgen.errors import AdvgenError

#: rows per chunk; the seed of each chunk depends on this, so changing it changes the rows
CHUNK_ROWS = 65_536
MAX_SEED = 2**63 - 1


def check_seed(seed: Any, what: str = "seed") -> int:
    """``seed`` as an int in [0, 2**63), else one clear :class:`AdvgenError`."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise AdvgenError(f"{what} must be an integer in [0, 2**63), got {seed!r}")
    return int(seed)


def random_seed() -> int:
    """A fresh seed for unseeded sampling (drawn once, then used like a given seed)."""
    return secrets.randbits(63)


def chunk_seed(seed: int, index: int, stream: int = 0) -> int:
    """The seed of chunk ``index`` (and of its ``stream``, where a sampler draws latents and classes
    from separate generators): numpy's SeedSequence with ``(index, stream)`` as spawn key, so that
    neighbouring chunks and neighbouring seeds give unrelated streams."""
    state = np.random.SeedSequence(int(seed), spawn_key=(int(index), int(stream))).generate_state(1, np.uint64)
    return int(state[0]) >> 1  # 63 bits: torch.Generator.manual_seed and numpy both take it


def chunk_rows() -> int:
    """The current chunk size (read at call time, so that tests can make chunks small)."""
    rows = int(CHUNK_ROWS)
    if rows < 1:
        raise AdvgenError(f"CHUNK_ROWS must be positive, got {rows}")
    return rows


def chunk_spans(n: int, rows: int | None = None) -> Iterator[tuple[int, int, int]]:
    """``(chunk index, first row, end row)`` for ``n`` rows; ``n == 0`` gives one empty chunk so that
    writers still see the samples' columns and shape."""
    rows = rows or chunk_rows()
    if n == 0:
        yield 0, 0, 0
        return
    for index, start in enumerate(range(0, n, rows)):
        yield index, start, min(start + rows, n)


def available_memory() -> int | None:
    """Bytes of memory the kernel can give without swapping (Linux ``MemAvailable``); None elsewhere."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(needed: int, what: str, hint: str) -> None:
    """Refuse, with one line, work that would hold more in memory than the machine has available."""
    free = available_memory()
    if free is not None and needed > free:
        raise AdvgenError(
            f"{what} needs about {format_bytes(needed)} of memory but only {format_bytes(free)} is available; {hint}"
        )


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover
