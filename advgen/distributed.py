"""Several processes on one run: torchrun's environment, the process group, and failures.

``torchrun --nproc-per-node 2 -m advgen train ...`` starts one process per GPU (or per share of a
CPU); each reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` from
its environment. :func:`launched` turns them into a :class:`World`: rank, size, the process's device,
and the collectives the trainer and the sampler need. Without those variables (or with
``WORLD_SIZE=1``) the world is one process and nothing here touches ``torch.distributed``.

A failure in one process ends them all with one line, never a hang: the first process to fail writes
its error to the rendezvous store and reports it; every other process, wherever it is blocked, sees
the error within a second and leaves quietly with status 1. A process that dies without a word
(killed, out of memory) breaks its peers' connections; and a peer that stops answering is given up
after ``ADVGEN_DIST_TIMEOUT`` seconds (default 600).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import socket
import sys
import threading
import time
import warnings
from datetime import timedelta
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from advgen.errors import AdvgenError

TIMEOUT_ENV = "ADVGEN_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0
#: the key of the first failure's message in the rendezvous store
FAILURE_KEY = "advgen/failure"
#: how often each process looks for a peer's failure, and how long it lets the failing one report it
POLL_S = 0.25
GRACE_S = 2.0
# spawn key of the per-rank training seeds, apart from the sampling chunks' (advgen.sampling.chunk_seed)
_RANK_STREAM = 0x72616E6B


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise AdvgenError(f"environment variable {name}={value!r} is not an integer") from None


class World:
    """The processes of one run and this process's place among them.

    ``size == 1`` (not launched by torchrun) makes every method a no-op or an identity, so callers need
    no branches of their own. With ``size > 1`` the process group exists between :meth:`join` and
    :meth:`close`.
    """

    def __init__(self, rank: int = 0, size: int = 1, local_rank: int = 0, local_size: int = 1):
        self.rank, self.size, self.local_rank, self.local_size = rank, size, local_rank, local_size
        self.device: torch.device | None = None
        self.joined = False
        self._failed = False
        self._store = None
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None

    @classmethod
    def from_env(cls) -> World:
        size = _env_int("WORLD_SIZE", 1)
        if size <= 1:
            return cls()
        rank = _env_int("RANK", -1)
        local_rank = _env_int("LOCAL_RANK", 0)
        local_size = _env_int("LOCAL_WORLD_SIZE", size)
        if not 0 <= rank < size:
            raise AdvgenError(f"RANK={os.environ.get('RANK')!r} must be in 0..{size - 1} (WORLD_SIZE={size}); launch with torchrun")
        if not 0 <= local_rank < max(local_size, 1):
            raise AdvgenError(f"LOCAL_RANK={local_rank} must be in 0..{local_size - 1} (LOCAL_WORLD_SIZE={local_size})")
        return cls(rank, size, local_rank, local_size)

    @property
    def main(self) -> bool:
        """Whether this process is rank 0: the only one that writes files and prints."""
        return self.rank == 0

    def describe(self) -> str:
        """``" x 2 processes"`` for the start line of a run; empty for one process."""
        return f" x {self.size} processes" if self.size > 1 else ""

    # --- joining and leaving ---------------------------------------------------------------------

    def join(self, device_name: str) -> torch.device:
        """This process's device for ``device_name``; with several processes, also meet the others.

        Each process takes the GPU of its local rank (``auto`` and ``cuda``); the backend follows the
        device: NCCL on CUDA, gloo on CPU.
        """
        from advgen.engine import resolve_device

        if self.size == 1:
            self.device = resolve_device(device_name)
            return self.device
        device = self._process_device(device_name)
        import torch.distributed as dist

        if not dist.is_available():
            raise AdvgenError("this torch was built without torch.distributed; run in one process")
        missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
        if missing:
            raise AdvgenError(f"WORLD_SIZE={self.size} but {' and '.join(missing)} unset; launch with torchrun")
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        try:
            dist.init_process_group(
                backend, rank=self.rank, world_size=self.size, timeout=timedelta(seconds=timeout_seconds()),
                device_id=device if device.type == "cuda" else None,
            )
        except (RuntimeError, ValueError) as exc:  # DistNetworkError, DistStoreError: RuntimeErrors
            raise AdvgenError(
                f"cannot meet the other {self.size - 1} processes through {os.environ['MASTER_ADDR']}:"
                f"{os.environ['MASTER_PORT']} ({backend}): {_first_line(exc)}"
            ) from None
        self.device = device
        self.joined = True
        if not self.main:
            warnings.simplefilter("ignore")  # rank 0 shows them once; the others stay quiet
        self._start_watchdog()
        return device

    def _process_device(self, name: str) -> torch.device:
        from advgen.engine import resolve_device

        if name in ("auto", "cuda") and (name == "cuda" or torch.cuda.is_available()):
            if not torch.cuda.is_available():
                raise AdvgenError("device 'cuda' requested but CUDA is not available; use --device cpu")
            if self.local_size > torch.cuda.device_count():
                raise AdvgenError(
                    f"{self.local_size} processes on this machine but {torch.cuda.device_count()} CUDA devices: "
                    "start one process per GPU (torchrun --nproc-per-node), or train on --device cpu"
                )
            return torch.device("cuda", self.local_rank)
        device = resolve_device(name)
        if device.type == "cuda" and self.local_size > 1:
            raise AdvgenError(
                f"--device {name} names one GPU, but under torchrun each process takes the GPU of its "
                "local rank: pass --device cuda (or auto)"
            )
        return device

    def close(self) -> None:
        """Leave the process group. After a failure the process just exits: tearing down a group whose
        peers are gone can block (NCCL)."""
        self._stop.set()
        if not self.joined or self._failed:
            return
        import torch.distributed as dist

        self.joined = False
        with contextlib.suppress(Exception):
            dist.destroy_process_group()

    # --- failures --------------------------------------------------------------------------------

    def _start_watchdog(self) -> None:
        import torch.distributed as dist

        try:
            self._store = dist.TCPStore(
                os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                timeout=timedelta(seconds=30), wait_for_workers=False,
            )
        except (RuntimeError, ValueError):
            return  # no store to watch: a peer's failure then reaches us through broken connections
        self._watchdog = threading.Thread(target=self._watch, name="advgen-peer-watchdog", daemon=True)
        self._watchdog.start()

    def _watch(self) -> None:
        """Leave quietly, wherever the main thread is blocked, once another process has failed."""
        while not self._stop.wait(POLL_S):
            try:
                if not self._store.check([FAILURE_KEY]):
                    continue
                owner = self._store.get(FAILURE_KEY).decode(errors="replace").split(":", 1)[0]
            except Exception:  # noqa: BLE001 - the store's host has gone: the run is ending either way
                return
            if owner == str(self.rank):
                return
            # the failing process reports its own error: give it time to, then end this one
            if not self._stop.wait(GRACE_S):
                sys.stderr.flush()
                os._exit(1)
            return

    def _claim_failure(self, message: str) -> bool:
        """Record this process's failure as the run's; False when another process failed first."""
        if self._store is None:
            return True
        value = f"{self.rank}:{message}"
        try:
            current = self._store.compare_set(FAILURE_KEY, "", value)
        except Exception:  # noqa: BLE001 - no store: report, as a lone process would
            return True
        return (current.decode(errors="replace") if isinstance(current, bytes) else str(current)) == value

    def failed(self, exc: BaseException) -> BaseException:
        """What to raise for ``exc`` in this process: the error itself (or one line for a broken
        connection) in the process that reports the run's failure, a quiet ``SystemExit`` elsewhere."""
        self._stop.set()
        self._failed = True
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            # Ctrl-C reaches every process: rank 0 alone says so
            return exc if self.main else SystemExit(130 if isinstance(exc, KeyboardInterrupt) else exc.code)
        if not self.joined:
            # before the processes meet, every one fails alike (same flags, same files): the first
            # process of each machine reports it
            if self.local_rank == 0:
                return exc
            time.sleep(1.0)  # so that the reporting process prints before torchrun stops it
            return SystemExit(1)
        where = f"process {self.rank} of {self.size}"
        if self.local_size < self.size:
            where += f" on {socket.gethostname()}"
        if _is_connection_error(exc):
            exc = AdvgenError(
                f"{where} lost the other processes of the run (one died, was killed or stopped answering): "
                f"{_connection_reason(exc)}"
            )
        elif isinstance(exc, AdvgenError) and not isinstance(exc, OSError):
            exc.args = (f"{where}: {exc}", *exc.args[1:])
        if self._claim_failure(_first_line(exc)):
            _tell_torchrun(exc)
            return exc
        time.sleep(0.5)  # the process that failed first is printing: torchrun stops all once one ends
        return SystemExit(1)

    # --- collectives -----------------------------------------------------------------------------

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` in DistributedDataParallel (gradients averaged over the processes in backward);
        ``module`` itself in one process."""
        if self.size == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel

        for buf in module.buffers():
            # DDP broadcasts buffers through a flat view that, for a contiguous tensor, shares its
            # memory; copying back into one with unusual strides (a QR factor's column-major (n, 1))
            # is then refused as overlapping: give each buffer the standard strides
            if buf.stride() != tuple(math.prod(buf.shape[i + 1 :]) for i in range(buf.dim())):
                buf.data = buf.clone(memory_format=torch.contiguous_format)
        ids = [self.device.index] if self.device is not None and self.device.type == "cuda" else None
        # every parameter gets a gradient in every backward, so the unused-parameter search is not
        # needed; buffers (spectral-norm vectors, batch-norm statistics) follow rank 0's at each forward
        return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=False)

    def barrier(self) -> None:
        """Wait until every process is here (an all-reduce on this process's device, whatever the backend)."""
        if self.size > 1:
            self.sum([0.0])

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sums of ``values`` over the processes (float64)."""
        if self.size == 1:
            return [float(v) for v in values]
        import torch.distributed as dist

        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def broadcast_int(self, value: int) -> int:
        """Rank 0's ``value`` (a 63-bit integer) in every process."""
        if self.size == 1:
            return int(value)
        import torch.distributed as dist

        t = torch.tensor([int(value)], dtype=torch.int64, device=self.device)
        dist.broadcast(t, src=0)
        return int(t.item())

    def seed(self, seed: int, step: int) -> None:
        """Give each process its own random stream for training batches from ``step`` on: derived from
        (seed, rank, step), so that a resumed run does not draw its first session's batches again.
        Nets are built before, from the run's seed alone, so they start the same in every process."""
        if self.size == 1:
            return
        state = np.random.SeedSequence(int(seed), spawn_key=(_RANK_STREAM, self.rank, int(step))).generate_state(2, np.uint64)
        from advgen.engine import seed_everything

        seed_everything(int(state[0]) >> 1)

    def agree(self, text: str) -> bool:
        """Whether every process holds the same ``text`` (compared by a 63-bit hash)."""
        if self.size == 1:
            return True
        word = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1
        return self._same_word(word)

    def _same_word(self, word: int) -> bool:
        import torch.distributed as dist

        t = torch.tensor([word, -word], dtype=torch.int64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)  # the largest and the smallest word: equal when all are
        return int(t[0]) == word and int(t[1]) == -word

    def same_everywhere(self, modules: Iterable[nn.Module]) -> bool:
        """Whether the parameters of ``modules`` are bit for bit those of rank 0 in every process."""
        if self.size == 1:
            return True
        digest = hashlib.blake2b(digest_size=8)
        for module in modules:
            for p in module.parameters():
                t = p.detach().cpu().contiguous().reshape(-1)
                digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return self._same_word(int.from_bytes(digest.digest(), "little") >> 1)

    def copy_from_main(self, modules: Iterable[nn.Module]) -> None:
        """Overwrite every process's parameters and buffers of ``modules`` with rank 0's."""
        if self.size == 1:
            return
        import torch.distributed as dist

        for module in modules:
            for t in [*module.parameters(), *module.buffers()]:
                dist.broadcast(t.data, src=0)


def timeout_seconds() -> float:
    """How long a process waits for a peer that stops answering: ``ADVGEN_DIST_TIMEOUT`` seconds (default 600)."""
    value = os.environ.get(TIMEOUT_ENV, "")
    if not value:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not 1 <= seconds <= 7 * 86400:
        raise AdvgenError(f"{TIMEOUT_ENV}={value!r} must be a number of seconds in [1, 604800]")
    return seconds


@contextlib.contextmanager
def launched() -> Iterator[World]:
    """The world this process was launched into; failures inside end every process with one line.

    The caller calls :meth:`World.join` with its device once the config is known. Leaving the block
    leaves the process group.
    """
    world = World.from_env()
    if world.size == 1:
        yield world
        return
    try:
        yield world
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the other processes
        raised = world.failed(exc)
        if raised is exc:
            raise
        raise raised from None
    finally:
        world.close()


def _tell_torchrun(exc: BaseException) -> None:
    """Give torchrun's failure report this error in place of its link to the docs (its error file)."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path or not isinstance(exc, (AdvgenError, OSError)):
        return  # a bug's traceback reaches torchrun as usual
    line = _first_line(exc)
    info = {"message": {"message": line, "extraInfo": {"py_callstack": line, "timestamp": str(int(time.time()))}}}
    with contextlib.suppress(OSError):
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(info, fh)


def _is_connection_error(exc: BaseException) -> bool:
    import torch.distributed as dist

    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        k in text for k in ("Connection closed by peer", "Connection reset", "gloo", "NCCL", "Timed out", "timed out")
    )


def _connection_reason(exc: BaseException) -> str:
    """The gist of a gloo or NCCL error: without the source location and the boilerplate advice."""
    text = re.sub(r"^\[[^\]]*\]\s*", "", _first_line(exc))
    return text.split(". This is typically")[0].strip()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]
