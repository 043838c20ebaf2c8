"""Whether bfloat16 autocast pays on this CPU: measured once per CPU, torch build and thread count.

A CPU flag is not enough. With AVX512-BF16 an AMD EPYC multiplied advgen's bf16 matrices 3-4x faster
than fp32, but an Intel Xeon with the same flag and no AMX trained a tabular step 1.4x *slower* under
autocast (22.7k against 16.5k rows/s, 2 threads, `--no-amp` against the default, side by side). So on a
CPU that has native bf16, advgen times a small forward and backward pass of a tabular-sized MLP both
ways (about half a second) and keeps autocast only if it is clearly faster. The answer is remembered in
``$XDG_CACHE_HOME/advgen/amp-probe.json`` (else ``~/.cache/advgen``), so later runs on the machine take
the same decision without measuring (and a seed keeps giving the same run); delete the file to measure
again. ``ADVGEN_CPU_AMP=on|off`` decides without measuring. An unreadable or unwritable cache only
means measuring again.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

PAYS_AT = 1.15  # bf16 kept when the fp32 pass takes at least this many times as long
_decided: dict[str, bool] = {}


def cache_file() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache"
    return base / "advgen" / "amp-probe.json"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _key() -> str:
    return f"{_cpu_name()}|torch {torch.__version__}|{torch.get_num_threads()} threads"


def measure(reps: int = 15) -> dict[str, float]:
    """Median seconds of one forward+backward pass of a 512-row tabular-sized MLP, fp32 and bf16."""
    with torch.random.fork_rng(devices=[]):  # the nets' init must not move the run's seeded generator
        return _measure(reps)


def _measure(reps: int) -> dict[str, float]:
    gen = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Linear(274, 256), nn.LeakyReLU(0.2), nn.Linear(256, 256), nn.LeakyReLU(0.2), nn.Linear(256, 274))
    x = torch.randn(512, 274, generator=gen)

    def once(bf16: bool) -> float:
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = net(x).float().square().mean()
        loss.backward()
        return time.perf_counter() - t

    for bf16 in (False, True, False, True):  # warm-up: oneDNN picks and caches its kernels
        once(bf16)
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(reps):  # alternate, so a neighbour's burst hits both sides alike
        for bf16 in (False, True):
            times[bf16].append(once(bf16))
    return {"fp32_s": statistics.median(times[False]), "bf16_s": statistics.median(times[True])}


def _read() -> dict:
    try:
        data = json.loads(cache_file().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write(data: dict) -> None:
    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass


def bf16_pays() -> bool:
    """Whether bf16 autocast is clearly faster than fp32 on this CPU (measured once, then remembered)."""
    forced = os.environ.get("ADVGEN_CPU_AMP", "").strip().lower()
    if forced in ("on", "1", "true", "yes"):
        return True
    if forced in ("off", "0", "false", "no"):
        return False
    key = _key()
    if key in _decided:
        return _decided[key]
    entry = _read().get(key)
    if isinstance(entry, dict) and isinstance(entry.get("bf16"), bool):
        _decided[key] = entry["bf16"]
        return entry["bf16"]
    m = measure()
    pays = m["fp32_s"] >= PAYS_AT * m["bf16_s"]
    data = _read()
    data[key] = {"bf16": pays, **{k: round(v, 6) for k, v in m.items()}}
    _write(data)
    _decided[key] = pays
    return pays
