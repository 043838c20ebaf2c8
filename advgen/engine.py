"""The trainer: discriminator and generator steps, mixed precision, EMA, progress and checkpoints.

One :class:`Trainer` owns the nets, optimizers, the weight average and the run directory. Real data
lives on the training device as one tensor; batches are drawn by index (by class first for
conditional runs, so rare classes are seen), and the host is synchronised only every ``log_every``
steps. Each step runs eagerly or compiled, or on CUDA as one replayed graph (:mod:`advgen.step_capture`,
``--compile``). Under torchrun the trainer of each process steps DDP wrappers of the nets, on batches of its
own (:mod:`advgen.distributed`); rank 0 alone writes.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import stat
import sys
import time
from array import array
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from advgen.checkpoint import CHECKPOINT_NAME, save_checkpoint
from advgen.config import TrainConfig
from advgen.distributed import World
from advgen.domain import Domain, RealData
from advgen.errors import AdvgenError, CheckpointError
from advgen.io import atomic_path, atomic_write_text, write_error
from advgen.losses import gradient_penalty
from advgen.plugins import PluginManager
from advgen.step_capture import check_compile, train_step_for

METRICS_NAME = "metrics.jsonl"


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda[:N]`` must exist; anything else is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise AdvgenError(f"device {name!r} requested but CUDA is not available; use --device cpu")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise AdvgenError(f"device {name!r} does not exist ({torch.cuda.device_count()} CUDA devices)")
        return device
    raise AdvgenError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")


def amp_supported(device: torch.device) -> bool:
    """Whether bfloat16 autocast pays on ``device``: always on CUDA; on a CPU only with native bf16, and
    there only where a one-time measurement finds it faster (:mod:`advgen.amp_probe`).

    With AVX512-BF16 an AMD EPYC multiplies bf16 matrices 3-4x faster than fp32 (650 vs 180 GFLOP/s at
    512x274x256), but an Intel Xeon with the same flag and no AMX ran a tabular step 1.4x slower under
    autocast; without native bf16 it is emulated and always slower.
    """
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    try:
        native = bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # private probes: absent in other torch builds means "no"
        return False
    if not native:
        return False
    from advgen.amp_probe import bf16_pays

    return bf16_pays()


def _adam(net: nn.Module, lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    """Adam with the fused kernel where torch has one for the net's device (one pass over all
    parameters instead of a dozen small ops each: about 1 ms of a 10 ms tabular step on CPU)."""
    params = list(net.parameters())
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr, betas=betas)


def seed_everything(seed: int) -> None:
    """One seed drives Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def class_probabilities(counts: np.ndarray, mode: str) -> np.ndarray:
    """Training-by-sampling weights per class: empirical, sqrt(count), log(1 + count) or uniform over seen classes."""
    counts = np.asarray(counts, dtype=np.float64)
    if mode == "empirical":
        w = counts
    elif mode == "sqrt":
        w = np.sqrt(counts)
    elif mode == "log":
        w = np.log1p(counts)
    else:
        w = (counts > 0).astype(np.float64)
    return w / w.sum()


class BatchSampler:
    """Draws real batches by index on the device; conditional data is drawn class first.

    Rows in memory go to the device once. Rows in a :class:`~advgen.domain.RowStore` (a table larger
    than memory) stay on disk: indices are drawn on the CPU and each batch is read, then moved.
    """

    def __init__(self, data: RealData, device: torch.device, cond_sampling: str, conditional: bool):
        self.store = None if isinstance(data.x, torch.Tensor) else data.x
        self.device = device
        on = self._on = torch.device("cpu") if self.store is not None else device  # where indices are drawn
        if self.store is None:
            self.x = data.x.to(device=device, dtype=torch.float32)
        self.n = int(data.x.shape[0])
        self.conditional = conditional and data.has_classes
        self.order: torch.Tensor | None = None
        if self.conditional:
            k = len(data.spec["conditions"]["classes"])
            if self.store is None:
                cond = data.cond.to(torch.long)
                counts = torch.bincount(cond, minlength=k)
                self.order = torch.argsort(cond, stable=True).to(on)
                self.cond = cond.to(device)
            else:  # a store keeps each class's rows together, in class order
                counts = torch.as_tensor(list(self.store.class_counts), dtype=torch.long)
            starts = torch.cumsum(counts, 0) - counts
            self.starts = starts.to(on)
            self.counts = counts.to(on)
            probs = class_probabilities(counts.numpy(), cond_sampling)
            self.class_probs = torch.tensor(probs, dtype=torch.float32, device=on)

    def draw_classes(self, b: int) -> torch.Tensor | None:
        if not self.conditional:
            return None
        return torch.multinomial(self.class_probs, b, replacement=True).to(self.device)

    def draw(self, b: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        on = self._on
        if not self.conditional:
            idx = torch.randint(self.n, (b,), device=on)
            return self._rows(idx), None
        c = torch.multinomial(self.class_probs, b, replacement=True)
        offset = (torch.rand(b, device=on) * self.counts[c]).long()
        idx = self.starts[c] + offset
        if self.order is not None:
            idx = self.order[idx]
        return self._rows(idx), c.to(self.device)

    def _rows(self, idx: torch.Tensor) -> torch.Tensor:
        if self.store is None:
            return self.x[idx]
        return self.store.rows(idx.numpy()).to(self.device, non_blocking=True)


def _no_sync(net: nn.Module) -> contextlib.AbstractContextManager:
    """DDP's ``no_sync`` (a backward that leaves gradients unaveraged); nothing for a plain net."""
    return net.no_sync() if hasattr(net, "no_sync") else contextlib.nullcontext()


class Progress:
    """A progress line with step, losses and time left: a live bar on a terminal, sparse lines otherwise.

    Without a terminal (CI, ``nohup``, a pipe) a line is written every tenth of the run and at least
    every ``LINE_EVERY_S`` seconds, so a slow run is never silent for minutes. :meth:`tick` runs every
    step and costs one clock read; losses come from the last :meth:`update` (at logging steps, where
    the host synchronises anyway).
    """

    LINE_EVERY_S = 30.0
    BAR_EVERY_S = 1.0

    def __init__(self, total: int, start: int, enabled: bool, label: str):
        self.total, self.start, self.enabled, self.label = total, start, enabled, label
        self.t0 = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self.next_line = start
        self.last_shown = self.t0
        self.losses = ""
        self.shown = False

    def update(self, step: int, metrics: dict[str, float]) -> None:
        self.losses = " ".join(f"{k}={v:.3f}" for k, v in metrics.items() if k.startswith("loss"))
        self._show(step, force_line=step >= self.next_line or step == self.total)

    def tick(self, step: int) -> None:
        if self.enabled and time.perf_counter() - self.last_shown >= (self.BAR_EVERY_S if self.tty else self.LINE_EVERY_S):
            self._show(step, force_line=True)

    def _show(self, step: int, force_line: bool) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        elapsed = now - self.t0
        done = step - self.start
        if elapsed < 3 and step < self.total:  # short runs stay quiet
            return
        rate = done / elapsed if elapsed > 0 else 0.0
        left = (self.total - step) / rate if rate > 0 else float("inf")
        frac = step / self.total
        text = (
            f"{self.label} {step}/{self.total} [{'#' * int(frac * 24):<24}] {self.losses} "
            f"{rate:.1f} it/s, {_fmt_time(elapsed)} elapsed, {_fmt_time(left)} left"
        )
        if self.tty:
            sys.stderr.write("\r" + text[:200].ljust(120))
            sys.stderr.flush()
            self.shown = True
            self.last_shown = now
        elif force_line:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
            self.last_shown = now
            if step >= self.next_line:
                self.next_line = step + max(1, self.total // 10)

    def close(self) -> None:
        if self.enabled and self.tty and self.shown:
            sys.stderr.write("\n")


def _fmt_time(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


class Trainer:
    """Owns one run: nets, optimizers, EMA, AMP, progress, metrics log and checkpoints."""

    def __init__(
        self,
        cfg: TrainConfig,
        domain: Domain,
        data: RealData,
        manager: PluginManager,
        run_dir: Path,
        plugin_version: str = "?",
        world: World | None = None,
    ):
        self.cfg = cfg
        # several processes (torchrun): each trains on its own batches and DDP averages the gradients
        self.world = world or World()
        self.domain = domain
        self.data = data
        self.manager = manager
        self.run_dir = Path(run_dir)
        self.plugin_version = plugin_version
        self.device = self.world.device if self.world.size > 1 else resolve_device(cfg.device)
        self.spec = dict(data.spec)
        if not cfg.conditional or not data.has_classes:
            self.spec["conditions"] = None
        self.conditional = self.spec.get("conditions") is not None
        losses = manager.losses()
        if cfg.loss not in losses:
            raise AdvgenError(f"unknown loss {cfg.loss!r}; available: {', '.join(sorted(losses))}")
        self.loss = losses[cfg.loss]
        self.generator = domain.build_generator(self.spec, cfg).to(self.device)
        self.discriminator = domain.build_discriminator(self.spec, cfg).to(self.device)
        self.generator_ema = copy.deepcopy(self.generator).eval() if cfg.ema > 0 else None
        if self.generator_ema is not None:
            self.generator_ema.requires_grad_(False)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = _adam(self.generator, cfg.lr_g, betas)
        self.opt_d = _adam(self.discriminator, cfg.lr_d, betas)
        self.amp = cfg.amp and amp_supported(self.device)
        check_compile(cfg.compile, self.device, self.world.size)  # now: before the run folder is written
        self.sampler = BatchSampler(data, self.device, cfg.cond_sampling, self.conditional)
        # what the steps call: the nets themselves, or their DDP wrappers under torchrun; state, EMA
        # and checkpoints use the nets themselves, so a checkpoint is the same in any number of processes
        self._g = self.world.wrap(self.generator)
        self._d = self.world.wrap(self.discriminator)
        # autocast's cache of bf16 weight copies; a step being captured as a CUDA graph turns it off
        self.autocast_cache = True
        self.step = 0
        self.seconds = 0.0  # training time over all sessions of this run

    # --- state -----------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        def cpu(sd: dict[str, Any]) -> dict[str, Any]:
            return {k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in sd.items()}

        return {
            "step": self.step,
            "seconds": self.seconds,
            "config": self.cfg.to_dict(),
            "spec": self.spec,
            "plugin": self.cfg.plugin,
            "domain": self.domain.name,
            "plugin_version": self.plugin_version,
            "generator": cpu(self.generator.state_dict()),
            "discriminator": cpu(self.discriminator.state_dict()),
            "generator_ema": cpu(self.generator_ema.state_dict()) if self.generator_ema else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
        }

    def load_state(self, payload: dict[str, Any]) -> None:
        try:
            self.generator.load_state_dict(payload["generator"])
            self.discriminator.load_state_dict(payload["discriminator"])
            if self.generator_ema is not None:
                self.generator_ema.load_state_dict(payload.get("generator_ema") or payload["generator"])
            self.opt_g.load_state_dict(payload["opt_g"])
            self.opt_d.load_state_dict(payload["opt_d"])
        except (RuntimeError, KeyError, ValueError) as exc:
            text = " ".join(str(exc).split())  # torch's state-dict errors span lines; the useful part is the second
            raise AdvgenError(f"checkpoint does not match this run's nets: {text[:300]}") from None
        self.step = int(payload["step"])
        self.seconds = float(payload.get("seconds", 0.0))
        if payload.get("rng_cpu") is not None:
            torch.set_rng_state(payload["rng_cpu"])
        if payload.get("rng_cuda") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(payload["rng_cuda"], self.device)

    def save(self) -> Path:
        path = self.run_dir / CHECKPOINT_NAME
        save_checkpoint(path, self.state())
        self.manager.hook.advgen_checkpoint_saved(trainer=self, path=str(path))
        return path

    # --- steps -----------------------------------------------------------------------------------

    def _autocast(self):
        return torch.autocast(
            device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp, cache_enabled=self.autocast_cache
        )

    def _noise(self, b: int) -> torch.Tensor:
        return torch.randn(b, self.cfg.z_dim, device=self.device)

    def d_step(self, keep_fake: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Discriminator: score real rows high and generated rows low under the chosen loss.

        With ``keep_fake`` the generated batch keeps its graph and is returned with its classes, so
        that the generator step that follows scores the same batch against the updated discriminator
        (as in DCGAN's loop) instead of running the generator again.
        """
        b = self.cfg.batch_size
        real, c = self.sampler.draw(b)
        with torch.set_grad_enabled(keep_fake), self._autocast():
            fake = self._g(self._noise(b), c)
        detached = fake.detach().float()
        # parametrized weights (spectral norm) are computed once for both passes
        with self._autocast(), torch.nn.utils.parametrize.cached():
            d_real = self._d(real, c).float()
            d_fake = self._d(detached, c).float()
        loss = self.loss.d_loss(d_real, d_fake)
        if self.loss.gradient_penalty and self.cfg.gp_weight > 0:
            loss = loss + self.cfg.gp_weight * gradient_penalty(self._d, real, detached, c)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        return loss.detach(), (fake if keep_fake else None), c

    def g_step(self, fake: torch.Tensor | None = None, c: torch.Tensor | None = None) -> torch.Tensor:
        """Generator: make the discriminator score generated rows as real (a fresh batch unless given)."""
        b = self.cfg.batch_size
        # the discriminator's gradients here are dropped before its next step: not worth averaging
        with _no_sync(self._d):
            with self._autocast():
                if fake is None:
                    c = self.sampler.draw_classes(b)
                    fake = self._g(self._noise(b), c)
                loss = self.loss.g_loss(self._d(fake, c).float())
            self.opt_g.zero_grad(set_to_none=True)
            loss.backward()
        self.opt_g.step()
        return loss.detach()

    def ema_weight(self) -> float:
        """How far the weight average moves towards the generator at this step: ``1 - decay``."""
        decay = min(self.cfg.ema, (1 + self.step) / (10 + self.step))  # warm-up: early weights fade fast
        return 1 - decay

    @torch.no_grad()
    def ema_update(self, weight: torch.Tensor | None = None) -> None:
        """Move the weight average towards the generator by :meth:`ema_weight`, or by ``weight``, a
        0-d tensor on the device that a captured step reads at each replay (same values either way)."""
        if self.generator_ema is None:
            return
        ema_params = list(self.generator_ema.parameters())
        params = [p.detach() for p in self.generator.parameters()]
        if weight is None:
            torch._foreach_lerp_(ema_params, params, self.ema_weight())
        else:
            for p_ema, p in zip(ema_params, params):
                p_ema.lerp_(p, weight)
        for b_ema, b in zip(self.generator_ema.buffers(), self.generator.buffers()):
            b_ema.copy_(b)

    def train_step(self, sum_d: torch.Tensor, sum_g: torch.Tensor, ema_weight: torch.Tensor | None = None) -> None:
        """One training step: ``d_steps`` discriminator steps, a generator step and the EMA update; the
        losses are added to ``sum_d`` and ``sum_g`` on the device (nothing here waits for the device).
        :mod:`advgen.step_capture` runs it as it is, or compiled, or captured once and replayed."""
        cfg = self.cfg
        fake = c = None
        for i in range(cfg.d_steps):
            loss_d, fake, c = self.d_step(keep_fake=cfg.reuse_fake and i == cfg.d_steps - 1)
            sum_d += loss_d
        sum_g += self.g_step(fake, c)
        self.ema_update(ema_weight)

    def train(self, progress: bool = True, note: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Train up to ``cfg.steps``. Under torchrun every process trains and rank 0 alone writes the
        run (metrics, checkpoints) and calls the train hooks. ``note`` takes one line of news (a step
        that could not be compiled, say); by default rank 0 writes it to stderr."""
        cfg = self.cfg
        main = self.world.main
        if main:
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise write_error(exc, self.run_dir) from None
            self.manager.hook.advgen_train_start(trainer=self)
        self.world.seed(cfg.seed, self.step)
        bar = Progress(cfg.steps, self.step, main and progress and cfg.steps > self.step, f"train {self.domain.name}")
        self.generator.train()
        self.discriminator.train()
        run_step = train_step_for(self, note=note or self._note)
        sum_d = torch.zeros((), device=self.device)
        sum_g = torch.zeros((), device=self.device)
        since_log = 0
        t_start = time.perf_counter()
        t_log = t_start
        start_step = self.step
        base_seconds = self.seconds
        with MetricsLog(self.run_dir / METRICS_NAME, self.step) if main else contextlib.nullcontext() as log:
            while self.step < cfg.steps:
                run_step(sum_d, sum_g)
                self.step += 1
                since_log += 1
                bar.tick(self.step)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    # the only host synchronisation: losses become floats here
                    now = time.perf_counter()
                    total_d, total_g = self.world.sum([sum_d.item(), sum_g.item()])  # over the processes
                    metrics = {
                        "loss_d": total_d / (since_log * cfg.d_steps * self.world.size),
                        "loss_g": total_g / (since_log * self.world.size),
                        "step_time": (now - t_log) / since_log,
                    }
                    for name, value in (("loss_d", metrics["loss_d"]), ("loss_g", metrics["loss_g"])):
                        if not math.isfinite(value):
                            raise AdvgenError(
                                f"training diverged at step {self.step}: {name} is {value}; "
                                "try a lower learning rate or another --loss"
                            )
                    if main:
                        log.write({"step": self.step, **metrics, "time": base_seconds + now - t_start})
                        self.manager.hook.advgen_train_log(trainer=self, step=self.step, metrics=metrics)
                        bar.update(self.step, metrics)
                    sum_d.zero_()
                    sum_g.zero_()
                    since_log = 0
                    t_log = now
                if self.step % cfg.ckpt_every == 0 and self.step < cfg.steps:
                    self.seconds = base_seconds + time.perf_counter() - t_start
                    self._checkpoint()
        bar.close()
        elapsed = time.perf_counter() - t_start
        self.seconds = base_seconds + elapsed
        steps_done = self.step - start_step
        rows = steps_done * cfg.batch_size * cfg.d_steps * self.world.size
        self._checkpoint()
        self.world.barrier()  # the run's checkpoint is on disk before any process returns
        summary = {
            "steps": self.step,
            "steps_this_session": steps_done,
            "seconds": round(self.seconds, 3),
            "seconds_this_session": round(elapsed, 3),
            "rows_per_s": round(rows / elapsed, 1) if elapsed > 0 and rows else None,
            "device": str(self.device),
            "amp": self.amp,
            "step_mode": run_step.name,
            "threads": torch.get_num_threads(),
        }
        if self.world.size > 1:
            summary.update(
                processes=self.world.size,
                batch_size_per_process=cfg.batch_size,
                effective_batch_size=cfg.batch_size * self.world.size,
            )
        return summary

    def _note(self, line: str) -> None:
        if self.world.main:
            sys.stderr.write(f"note: {line}\n")

    def _checkpoint(self) -> None:
        """Save the run (rank 0), first making sure every process holds the same weights."""
        nets = [self.generator, self.discriminator] + ([self.generator_ema] if self.generator_ema else [])
        if not self.world.same_everywhere(nets):
            # DDP keeps them equal bit for bit; a kernel that is not deterministic across machines could
            # still let them drift, and rank 0's are the ones saved
            if self.world.main:
                sys.stderr.write(f"note: step {self.step}: the processes' weights had drifted apart; all now hold rank 0's\n")
            self.world.copy_from_main(nets)
        if self.world.main:
            self.save()

    # --- sampling --------------------------------------------------------------------------------

    def sampling_generator(self) -> nn.Module:
        return self.generator_ema if self.generator_ema is not None else self.generator


class MetricsLog:
    """``metrics.jsonl``: one JSON line per logging step, in step order, each line one unbuffered write.

    Opening it for a run at step ``step`` first cuts the file back to that step, so that after a
    kill and ``--resume`` the log holds every step once, as an uninterrupted run would have written it.
    The log must be a regular file of the run folder: a symbolic link (appends would land in its
    target), a device or a pipe is refused with one line (see :func:`truncate_metrics`).
    """

    def __init__(self, path: Path, step: int):
        self.path = Path(path)
        truncate_metrics(self.path, step)
        try:
            # unbuffered: a failed write leaves nothing pending that close() would retry and fail on;
            # O_NOFOLLOW: never append through a link swapped in after the check above
            self._file = open(self.path, "ab", buffering=0, opener=_no_follow_opener)
        except OSError as exc:
            _refuse_special(self.path, exc)
            raise write_error(exc, self.path) from None
        try:
            _check_metrics_file(self.path, os.fstat(self._file.fileno()))
            os.set_blocking(self._file.fileno(), True)  # O_NONBLOCK was for the open only
        except BaseException:
            self._file.close()
            raise

    def write(self, record: dict[str, Any]) -> None:
        data = (json.dumps(record) + "\n").encode()
        try:
            while data:
                data = data[self._file.write(data) :]
        except OSError as exc:
            raise write_error(exc, self.path) from None

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# A metrics log holds a line of some 100 bytes per logging step: 1 GiB is ten million of them. A larger
# file (a 50 GB sparse file, say) is not a log advgen wrote, and is refused before it is read.
MAX_METRICS_BYTES = 1 << 30
# a longer line is not a record: it is skipped (and dropped) without being held in memory
MAX_METRICS_LINE = 1 << 20
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_INT64 = (-(1 << 63), (1 << 63) - 1)


def _no_follow_opener(path: str, flags: int) -> int:
    """``open``'s opener: no symbolic link as the last component, and no wait on a pipe."""
    return os.open(path, flags | _NOFOLLOW | _NONBLOCK, 0o666)


def truncate_metrics(path: Path, step: int) -> bool:
    """Cut ``metrics.jsonl`` back to the records of steps up to ``step``, atomically; True if it changed.

    Records logged after the last checkpoint by a run that was then killed are dropped, and so are
    half-written lines. Logs written by older versions, where a resumed session appended after such
    records, are repaired too: a record whose step is not above the one before it starts a new
    session, which replaces the records of the abandoned one from that step on. (So a record is kept
    when its step is below that of every later record.)

    The file is read twice as a stream, never whole: once for the steps (8 bytes a record in memory),
    once to copy the records kept. A symbolic link, a device, a pipe or a folder in its place, or a
    file over :data:`MAX_METRICS_BYTES`, is refused with one line before anything is read.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return False
    except OSError as exc:
        _refuse_special(path, exc)
        raise AdvgenError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        _check_metrics_file(path, st)  # before fdopen, which refuses a folder with a bare errno
        if st.st_size > MAX_METRICS_BYTES:
            raise CheckpointError(
                f"{path} holds {st.st_size:,} bytes, more than the {MAX_METRICS_BYTES:,} of a metrics log; "
                "it is not one advgen wrote (move it out of the run folder to resume)"
            )
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as fh:
        try:
            steps = array("q")
            total = 0
            for line in _metrics_lines(fh, st.st_size):
                total += 1
                record_step = _record_step(line)
                if record_step is not None:
                    steps.append(record_step)
            keep = bytearray(len(steps))
            later = _INT64[1] + 1
            for i in range(len(steps) - 1, -1, -1):
                s = steps[i]
                keep[i] = s < later and s <= step
                later = min(later, s)
            # a hard link would carry appends into another file: a rewrite makes the log its own
            if sum(keep) == total and st.st_nlink <= 1:
                return False
            fh.seek(0)
            with atomic_path(path) as tmp, open(tmp, "wb") as out:
                i = 0
                for line in _metrics_lines(fh, st.st_size):
                    if _record_step(line) is None:
                        continue
                    if i < len(keep) and keep[i]:
                        out.write(line)  # type: ignore[arg-type]
                    i += 1
        except OSError as exc:  # atomic_path names a full disk or read-only folder; anything else here too
            err = write_error(exc, path)
            raise (err if err is not exc else AdvgenError(f"cannot rewrite {path}: {exc.strerror or exc}")) from None
    return True


def _metrics_lines(fh: Any, size: int) -> Any:
    """The lines of the first ``size`` bytes of ``fh``; None for a line over :data:`MAX_METRICS_LINE`."""
    left = size
    while left > 0:
        line = fh.readline(min(MAX_METRICS_LINE, left))
        if not line:
            return
        left -= len(line)
        if len(line) == MAX_METRICS_LINE and not line.endswith(b"\n"):
            while left > 0:  # the rest of an overlong line, read and dropped
                more = fh.readline(min(MAX_METRICS_LINE, left))
                left -= len(more)
                if not more or more.endswith(b"\n"):
                    break
            yield None
            continue
        yield line


def _record_step(line: bytes | None) -> int | None:
    """The step of a whole metrics record, or None for a line cut short by a kill or not a record."""
    if line is None or not line.endswith(b"\n"):
        return None
    try:
        record_step = json.loads(line)["step"]
    except (ValueError, TypeError, KeyError, RecursionError):
        return None
    if not isinstance(record_step, int):
        return None
    return min(max(int(record_step), _INT64[0]), _INT64[1])


def _check_metrics_file(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a device, a pipe or a socket"
        raise CheckpointError(
            f"{path} is not a regular file ({kind}); a run's metrics log must be one (move it out of the run folder)"
        )


def _refuse_special(path: Path, exc: OSError) -> None:
    """One line for a metrics log that could not be opened because it is a symbolic link or special."""
    try:
        st = os.lstat(path)
    except OSError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise CheckpointError(
            f"{path} is a symbolic link; a run's metrics log must be a regular file in the run folder, "
            "so advgen neither reads nor appends through it (replace the link by the file)"
        ) from None
    _check_metrics_file(path, st)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


