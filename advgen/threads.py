"""How many CPU threads evaluation and sampling may use.

On a machine shared with other jobs, libraries that each start one thread per core (OpenMP in
scikit-learn's gradient boosting, BLAS, torch, joblib's ``n_jobs=-1``) spin against each other and
the other jobs: an evaluation that takes 22 s on one thread was seen to take over 15 minutes that
way. :func:`limit_threads` caps all of them for the duration of a block.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# read by OpenMP, BLAS and torch when they start inside the block (onnxruntime and libraries loaded late)
_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the system has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def other_runnable_processes(samples: int = 3, gap_s: float = 0.02) -> int:
    """How many other processes are running or waiting for a CPU right now (Linux: ``procs_running``
    in /proc/stat, the least of a few readings, less this process); 0 where the system does not say."""
    import time

    seen = []
    for i in range(samples):
        try:
            with open("/proc/stat", "rb") as fh:
                for line in fh:
                    if line.startswith(b"procs_running"):
                        seen.append(int(line.split()[1]))
                        break
        except (OSError, ValueError, IndexError):
            return 0
        if i + 1 < samples:
            time.sleep(gap_s)
    return max(0, min(seen) - 1) if seen else 0


def training_threads(requested: int) -> tuple[int, str | None]:
    """The torch threads a training run uses, and a note when they were chosen for the user.

    ``requested`` > 0 is kept. With 0 (the default), a run takes the cores that other running
    processes leave free (at least one): beside one busy process on 2 cores, 2 spinning threads ran a
    tabular step 2.5-5x slower than 1 thread did, and 40x slower when the run was niced
    (benchmarks/threads_contention.py).
    """
    if requested > 0:
        return requested, None
    cores = available_cores()
    busy = other_runnable_processes()
    n = max(1, min(cores, cores - busy))
    if n < cores:
        return n, (
            f"using {n} of {cores} CPU threads: {busy} other process{'es are' if busy != 1 else ' is'} running "
            f"(choose with --threads N)"
        )
    return n, None


def choose_wait_policy() -> str | None:
    """Choose how OpenMP threads wait, once at start, unless the user set ``OMP_WAIT_POLICY``.

    On a quiet machine threads that spin (``ACTIVE``) train fastest; beside a busy process they take
    its cores and a 2-thread step ran 2.5-40x slower than with sleeping (``PASSIVE``) threads (the
    GNU runtime's own default was the slowest when idle). So: ACTIVE when nothing else runs at start,
    PASSIVE otherwise (where the thread count also drops, :func:`training_threads`). Figures:
    benchmarks/threads_contention.py, README "Threads". Must run before torch loads OpenMP; returns
    the policy set, or None when the user's is kept.
    """
    if os.environ.get("OMP_WAIT_POLICY"):
        return None
    policy = "ACTIVE" if other_runnable_processes() == 0 else "PASSIVE"
    os.environ["OMP_WAIT_POLICY"] = policy
    return policy


def default_threads() -> int:
    """``min(2, cores)``: evaluation's detectors are small, and two threads stay polite on a shared machine."""
    return min(2, available_cores())


@contextmanager
def limit_threads(n: int) -> Iterator[None]:
    """Run the block with at most ``n`` threads in torch, OpenMP and BLAS; restore the previous limits after.

    scikit-learn's OpenMP runtime is loaded first so that the limit reaches it (threadpoolctl only
    reaches libraries already loaded). Estimators' ``n_jobs`` is a parameter, not a thread pool: set
    it with :func:`cap_n_jobs`.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be a positive integer, got {n!r}")
    import numpy  # noqa: F401 - loads BLAS, so that the limit reaches it

    try:
        import sklearn.ensemble  # noqa: F401 - loads scikit-learn's OpenMP runtime
    except ImportError:
        pass
    from threadpoolctl import threadpool_limits

    torch: Any = None
    try:
        import torch
    except ImportError:
        pass
    saved_torch = torch.get_num_threads() if torch is not None else None
    saved_env = {k: os.environ.get(k) for k in _ENV}
    os.environ.update({k: str(n) for k in _ENV})
    try:
        if torch is not None:
            torch.set_num_threads(n)
        with threadpool_limits(limits=n):
            yield
    finally:
        if torch is not None and saved_torch is not None:
            torch.set_num_threads(saved_torch)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def cap_n_jobs(estimator: Any, n: int) -> Any:
    """``estimator`` with every ``n_jobs`` parameter (pipelines' ``step__n_jobs`` too) that asks for more
    than ``n`` workers (``-1``: all cores) set to ``n``. ``None`` (one worker) is left alone: some
    estimators warn when ``n_jobs`` is set at all."""
    get = getattr(estimator, "get_params", None)
    if not callable(get):
        return estimator
    jobs = {
        k: n
        for k, v in get(deep=True).items()
        if (k == "n_jobs" or k.endswith("__n_jobs")) and isinstance(v, int) and (v < 0 or v > n)
    }
    if jobs:
        estimator.set_params(**jobs)
    return estimator
