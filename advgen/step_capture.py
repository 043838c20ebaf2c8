"""How the trainer runs its steps: eagerly, compiled, or captured once as a CUDA graph and replayed.

A training step (:meth:`Trainer.train_step <advgen.engine.Trainer.train_step>`: the discriminator
steps, the generator step, the weight average, the loss sums) is a fixed sequence of small kernels
with static shapes. On a GPU, eager PyTorch spends more time launching them from Python than the GPU
spends running them (13 ms a step at batch 512 or 4096 alike, measured on an H200), so ``--compile``
(the default on CUDA) records the whole step once and replays it:

* :class:`CudaGraphStep` (CUDA): a manual :class:`torch.cuda.CUDAGraph` capture of the whole step, so
  one replay is one launch. The step draws its own batches and noise on the device from tensors that
  never move (the real rows, the class probabilities), adds its losses to two device tensors, and
  reads the EMA weight of the step from a 0-d tensor filled before each replay: it has no inputs to
  copy and no host synchronisation. Before capturing, three steps run on a side stream (so that
  Adam's state, cuBLAS handles and workspaces exist), then everything they changed (weights, buffers,
  optimizer state, random generators) is put back, so the captured run takes the same steps as an
  eager one: CUDA's random numbers in a replay are the ones the same kernels draw eagerly (a graph
  advances the generator's offset as its kernels would), checkpoints are the same, and a resumed run
  captures again from the loaded state.
  ``torch.compile(mode="reduce-overhead")`` was not used: ``loss.backward()`` and
  ``optimizer.step()`` split dynamo's graph, so a step would still be several graphs with Python in
  between, and AOTAutograd has no double backward (the gradient penalty of ``wgan-gp``).
* :class:`CompiledStep` (CPU): the nets' forward and backward passes compiled by ``torch.compile``'s
  inductor backend (C++ kernels; it needs a C++ compiler), the rest of the step eager. Off by default:
  on a 2-core Xeon a compiled tabular step took 20.5-21.3 ms against 15.8 ms eager, after 7-17 s of
  compiling (docs/gpu.md).
* :class:`EagerStep`: the step as written (``--no-compile``; the default on the CPU), for debugging
  and wherever the others do not apply: under torchrun (DDP), for rows read from disk each step, or
  with a ``wgan-gp`` discriminator in :class:`CompiledStep` (kept eager there: no double backward).

A compiled or captured step that fails to build leaves a ``note:`` line, puts back what it changed and
trains eagerly. Capture-safety of the step itself: batches, classes (``torch.multinomial`` with
replacement, which a batch of one row cannot capture) and noise are drawn on the device, spectral norm
updates its vectors in place, Adam is the fused kernel with its step count on the device, and losses
only become floats at logging steps. A plugin's nets are captured too: an op of theirs that waits for
the GPU makes the capture fail (and the run train eagerly), but work they do on the host (NumPy, CPU
tensors) is not replayed, so nets that need it must train with ``--no-compile``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import TYPE_CHECKING, Callable, Iterator, Protocol

import torch

from advgen.errors import AdvgenError

if TYPE_CHECKING:  # pragma: no cover
    from advgen.engine import Trainer

#: eager steps taken (and then undone) before a capture, so that lazy state exists outside the graph
WARMUP_STEPS = 3

Note = Callable[[str], None]
#: ``record(warmup, restore, step)`` runs ``warmup`` a few times, calls ``restore``, captures ``step``
#: and returns what replays it
Recorder = Callable[[Callable[[], None], Callable[[], None], Callable[[], None]], Callable[[], None]]


class TrainStep(Protocol):
    """One training step: adds its losses to ``sum_d`` and ``sum_g`` (device tensors that the
    trainer zeroes in place at logging steps, so their storage never changes)."""

    name: str

    def __call__(self, sum_d: torch.Tensor, sum_g: torch.Tensor) -> None: ...


def compile_wanted(setting: bool | None, device: torch.device) -> bool:
    """``--compile``/``--no-compile``, or by default: on for CUDA, off elsewhere."""
    return device.type == "cuda" if setting is None else bool(setting)


def check_compile(setting: bool | None, device: torch.device, processes: int = 1) -> None:
    """Refuse a ``--compile`` that cannot work here (the CPU without a C++ compiler) with one clear line."""
    if device.type == "cpu" and processes == 1 and compile_wanted(setting, device):
        require_cpp_compiler()


def train_step_for(trainer: Trainer, note: Note = lambda _line: None) -> TrainStep:
    """The step strategy for ``trainer``'s config and device (see the module docstring)."""
    if not compile_wanted(trainer.cfg.compile, trainer.device):
        return EagerStep(trainer)
    if trainer.world.size > 1:
        note("--compile does not apply under torchrun (DDP steps run eagerly)")
        return EagerStep(trainer)
    if getattr(trainer.sampler, "store", None) is not None:
        note("--compile does not apply to rows read from disk at each step; training eagerly")
        return EagerStep(trainer)
    if trainer.device.type == "cuda":
        return CudaGraphStep(trainer, note)
    if trainer.device.type == "cpu":
        require_cpp_compiler()
        return CompiledStep(trainer, note)
    return EagerStep(trainer)


class EagerStep:
    """The step as written: every op launched from Python."""

    name = "eager"

    def __init__(self, trainer: Trainer):
        self.trainer = trainer

    def __call__(self, sum_d: torch.Tensor, sum_g: torch.Tensor) -> None:
        self.trainer.train_step(sum_d, sum_g)


class CompiledStep:
    """The nets compiled by ``torch.compile`` (inductor), the losses, optimizers and EMA eager.

    The first step compiles (several graphs: the generator, and the discriminator on real and on
    generated rows); if it fails, the nets and everything the step changed are put back and the run
    trains eagerly after a note.
    """

    name = "inductor"

    def __init__(self, trainer: Trainer, note: Note = lambda _line: None):
        self.trainer = trainer
        self.note = note
        self._ready = False

    def __call__(self, sum_d: torch.Tensor, sum_g: torch.Tensor) -> None:
        trainer = self.trainer
        if self._ready:
            trainer.train_step(sum_d, sum_g)
            return
        saved = Snapshot(trainer, extra=(sum_d, sum_g))
        restore_nets = compile_nets(trainer)
        try:
            trainer.train_step(sum_d, sum_g)
        except Exception as exc:  # noqa: BLE001 - any compiler failure: the eager step still works
            restore_nets()
            saved.restore()
            self.note(f"torch.compile failed ({_first_line(exc)}); training eagerly")
            self.name = "eager"
            trainer.train_step(sum_d, sum_g)
        self._ready = True


class CudaGraphStep:
    """The whole step captured once as a CUDA graph, then one replay a step.

    ``fuse`` also compiles the nets with inductor before capturing (fewer, fused kernels; measured by
    ``benchmarks/gpu_bench.py``, not the default: compiling takes longer than a short run).
    ``record`` captures and replays; the default is :func:`record_cuda_graph`, and tests on a CPU pass
    :func:`record_eagerly`, which runs the same warm-up and restore and then replays by running the
    step eagerly.
    """

    name = "cuda-graph"

    def __init__(self, trainer: Trainer, note: Note = lambda _line: None, fuse: bool = False,
                 record: Recorder | None = None):
        self.trainer = trainer
        self.note = note
        self.fuse = fuse
        self.record = record or (lambda warmup, restore, step: record_cuda_graph(trainer.device, warmup, restore, step))
        # the EMA weight of the step being replayed: a captured graph reads it, Python fills it
        self.ema_weight = torch.zeros((), device=trainer.device)
        self._replay: Callable[[], None] | None = None
        self._sums: tuple[torch.Tensor, torch.Tensor] | None = None
        self._eager = not _fused_adam(trainer)
        if self._eager:
            note("CUDA graphs need the fused Adam kernel, which this torch lacks here; training eagerly")
            self.name = "eager"

    def __call__(self, sum_d: torch.Tensor, sum_g: torch.Tensor) -> None:
        trainer = self.trainer
        if not self._eager and (self._sums is None or self._sums[0] is not sum_d or self._sums[1] is not sum_g):
            self._capture(sum_d, sum_g)
        if self._eager:
            trainer.train_step(sum_d, sum_g)
            return
        self.ema_weight.fill_(trainer.ema_weight())
        self._replay()

    def _capture(self, sum_d: torch.Tensor, sum_g: torch.Tensor) -> None:
        trainer = self.trainer
        saved = Snapshot(trainer)
        scratch = (torch.zeros_like(sum_d), torch.zeros_like(sum_g))
        restore_nets = compile_nets(trainer) if self.fuse else (lambda: None)
        self.ema_weight.fill_(trainer.ema_weight())
        try:
            with _capture_settings(trainer):
                self._replay = self.record(
                    lambda: trainer.train_step(*scratch, ema_weight=self.ema_weight),
                    saved.restore,
                    lambda: trainer.train_step(sum_d, sum_g, ema_weight=self.ema_weight),
                )
            self._sums = (sum_d, sum_g)
        except Exception as exc:  # noqa: BLE001 - an op that cannot be captured: train eagerly instead
            if trainer.device.type == "cuda":
                torch.cuda.synchronize(trainer.device)
            restore_nets()
            for net in (trainer.generator, trainer.discriminator):
                net.zero_grad(set_to_none=True)  # gradients may live in the failed graph's memory
            saved.restore()
            self._replay = None
            self._eager = True
            self.name = "eager"
            self.note(f"CUDA graph capture failed ({_first_line(exc)}); training eagerly")


def record_cuda_graph(
    device: torch.device, warmup: Callable[[], None], restore: Callable[[], None], step: Callable[[], None]
) -> Callable[[], None]:
    """Warm up on a side stream, restore, capture ``step`` on the same stream; returns the replay."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(WARMUP_STEPS):
            warmup()
    torch.cuda.current_stream(device).wait_stream(stream)
    torch.cuda.synchronize(device)
    restore()
    torch.cuda.synchronize(device)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.device(device), torch.cuda.graph(graph, stream=stream):
        step()
    return graph.replay


def record_eagerly(
    warmup: Callable[[], None], restore: Callable[[], None], step: Callable[[], None]
) -> Callable[[], None]:
    """:func:`record_cuda_graph` without a GPU: the same warm-up and restore, then each replay runs
    ``step`` eagerly. Lets a CPU test check that warming up and restoring leaves no trace."""
    for _ in range(WARMUP_STEPS):
        warmup()
    restore()
    return step


class Snapshot:
    """A copy of everything a training step changes, to undo steps taken to warm up or to try a compiler.

    Weights and buffers of the nets and of the weight average, the optimizers' states, the CPU and CUDA
    random generators, and ``extra`` tensors. Adam creates its state at its first step; state that did
    not exist when the snapshot was taken is zeroed on restore (Adam's initial state is zeros), keeping
    the tensors, whose addresses a captured graph holds.
    """

    def __init__(self, trainer: Trainer, extra: tuple[torch.Tensor, ...] = ()):
        self.trainer = trainer
        seen: set[int] = set()
        self.tensors: list[tuple[torch.Tensor, torch.Tensor]] = []
        for t in (*_state_tensors(trainer), *extra):
            if id(t) not in seen:
                seen.add(id(t))
                self.tensors.append((t, t.detach().clone()))
        self.fresh = [(opt, p) for opt in (trainer.opt_g, trainer.opt_d) for p in _params(opt) if not opt.state.get(p)]
        self.rng_cpu = torch.get_rng_state()
        self.rng_cuda = torch.cuda.get_rng_state(trainer.device) if trainer.device.type == "cuda" else None

    @torch.no_grad()
    def restore(self) -> None:
        for t, saved in self.tensors:
            t.copy_(saved)
        for opt, p in self.fresh:
            for value in opt.state.get(p, {}).values():
                if torch.is_tensor(value):
                    value.zero_()
        torch.set_rng_state(self.rng_cpu)
        if self.rng_cuda is not None:
            torch.cuda.set_rng_state(self.rng_cuda, self.trainer.device)


def compile_nets(trainer: Trainer) -> Callable[[], None]:
    """Swap the nets the steps call for ``torch.compile``'d ones; returns what swaps them back.

    The discriminator of a loss with a gradient penalty stays eager: AOTAutograd has no double backward.
    The nets themselves (state, EMA, checkpoints, sampling) are untouched.
    """
    g, d = trainer._g, trainer._d
    trainer._g = torch.compile(g, dynamic=False)
    if not (trainer.loss.gradient_penalty and trainer.cfg.gp_weight > 0):
        trainer._d = torch.compile(d, dynamic=False)

    def restore() -> None:
        trainer._g, trainer._d = g, d

    return restore


def require_cpp_compiler() -> str:
    """The C++ compiler inductor will use on the CPU, else one clear :class:`AdvgenError`."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return name
    raise AdvgenError(
        "--compile on the CPU needs a C++ compiler for torch.compile (none of g++, c++, clang++ or $CXX "
        "found); install one or train with --no-compile"
    )


@contextlib.contextmanager
def _capture_settings(trainer: Trainer) -> Iterator[None]:
    """While warming up and capturing: autocast without its weight cache (cached bf16 copies would be
    made in the capture's memory and kept across graphs), and Adam marked capturable (its
    graph-capture check; the fused kernel computes the same either way). Both are put back after."""
    opts = (trainer.opt_g, trainer.opt_d)
    flags = [[g.get("capturable", False) for g in opt.param_groups] for opt in opts]
    cuda = trainer.device.type == "cuda"
    trainer.autocast_cache = False
    if cuda:
        for opt in opts:
            for group in opt.param_groups:
                group["capturable"] = True
    try:
        yield
    finally:
        trainer.autocast_cache = True
        for opt, saved in zip(opts, flags):
            for group, flag in zip(opt.param_groups, saved):
                group["capturable"] = flag


def _fused_adam(trainer: Trainer) -> bool:
    return all(g.get("fused") for opt in (trainer.opt_g, trainer.opt_d) for g in opt.param_groups)


def _params(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in opt.param_groups for p in group["params"]]


def _state_tensors(trainer: Trainer) -> list[torch.Tensor]:
    nets = [trainer.generator, trainer.discriminator] + ([trainer.generator_ema] if trainer.generator_ema else [])
    tensors = [t for net in nets for t in (*net.parameters(), *net.buffers())]
    for opt in (trainer.opt_g, trainer.opt_d):
        for state in opt.state.values():
            tensors += [v for v in state.values() if torch.is_tensor(v)]
    return tensors


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
