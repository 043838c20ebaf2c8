"""The Python API; the command line is a thin layer over it.

>>> from advgen.api import train, load_run
>>> run = train({"plugin": "curves", "steps": 500})
>>> curves = run.sample(100, seed=1)
>>> run = load_run(run.run_dir)
>>> rows = load_run("runs/tabular").sample(50, condition="category=r2l", seed=0)
>>> run.write_samples("curves.npz", 20_000_000, seed=1)   # streamed: the memory of one chunk
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from advgen import distributed
from advgen.checkpoint import CHECKPOINT_NAME, load_checkpoint, resolve_checkpoint
from advgen.config import TrainConfig
from advgen.domain import Domain, RealData, ValidationReport, run_validators
from advgen.engine import Trainer, amp_supported, resolve_device, seed_everything, write_json
from advgen.errors import AdvgenError, CheckpointError
from advgen.heap import keep_freed_memory
from advgen.io import temp_target_name, write_error
from advgen.parts import JOINABLE, join_parts, part_path, remove_parts
from advgen.plugins import PluginManager, get_manager
from advgen.threads import training_threads
from advgen.sampling import check_memory, check_seed, chunk_rows, chunk_seed, chunk_spans, random_seed
from advgen.writers import check_output_size

# rows are limited by the bytes they take (memory for Run.sample, disk for Run.write_samples); this
# bound only catches absurd counts before any estimate is made
MAX_SAMPLES = 10**12


def _plugin_ref(plugin: str) -> str:
    """Keep a local plugin file's absolute path so that the run can be reloaded from anywhere."""
    p = Path(plugin)
    if plugin.endswith(".py") and p.is_file():
        return str(p.resolve())
    return plugin


def _data_ref(data: str) -> str:
    """An existing data file or folder as its absolute path; anything else (checked later) as given."""
    try:
        p = Path(data)
        return str(p.resolve()) if p.exists() else data
    except (OSError, ValueError):
        return data


def build_config(
    plugin: str,
    overrides: dict[str, Any] | None = None,
    manager: PluginManager | None = None,
    domain: Domain | None = None,
) -> tuple[TrainConfig, Domain]:
    """Defaults, then the domain's defaults, then ``overrides`` (TOML values and flags, in that order).

    ``plugin`` is what the user named (a registered domain, or a plugin file they chose to load);
    ``domain``, when given, is the already resolved domain (a resumed run's) and nothing is loaded.
    """
    manager = manager or get_manager()
    if domain is None:
        domain = manager.load_domain(plugin)
    cfg = TrainConfig(plugin=_plugin_ref(plugin)).updated(domain.default_config())
    cfg = cfg.updated({k: v for k, v in (overrides or {}).items() if k != "plugin"})
    if isinstance(cfg.data, str) and cfg.data:
        # recorded absolute, so that evaluate/augment (the run's own data) and --resume find it from any folder
        cfg = cfg.updated({"data": _data_ref(cfg.data)})
    cfg.validate()
    return cfg, domain


def train(
    config: TrainConfig | dict[str, Any],
    *,
    progress: bool = False,
    resume: str | Path | None = None,
    manager: PluginManager | None = None,
    log: Any = None,
    overwrite: bool = False,
) -> Run:
    """Train a run from a config (a TrainConfig or a dict with at least ``plugin``) and return it.

    With ``resume``, the run directory's checkpoint is loaded and training continues from its step up
    to ``config["steps"]`` (or the saved config's steps); ``metrics.jsonl`` is cut back to the
    checkpoint's step first. ``log`` is a callable taking one line of text.

    A new run refuses a directory that already holds a run's files unless ``overwrite`` is true; then
    those files are deleted before training starts. A directory that also holds files advgen does not
    write is refused even so, so that ``overwrite`` never deletes anything of the user's.

    Launched by torchrun (``WORLD_SIZE`` > 1), every process trains with DistributedDataParallel on
    batches of its own (the effective batch is ``batch_size`` times the number of processes) and rank 0
    alone writes the run and calls ``log``; see :mod:`advgen.distributed`. The checkpoint is the same as
    one process writes, so a run resumes in any number of processes.
    """
    manager = manager or get_manager()
    with distributed.launched() as world:
        return _train(config, world, progress, resume, manager, log, overwrite)


def _train(
    config: TrainConfig | dict[str, Any],
    world: distributed.World,
    progress: bool,
    resume: str | Path | None,
    manager: PluginManager,
    log: Any,
    overwrite: bool,
) -> Run:
    main = world.main
    say = log if log is not None and main else (lambda _line: None)
    if resume is not None and overwrite:
        raise AdvgenError("--resume continues a run and --overwrite starts one over: pass only one of them")
    if resume is not None:
        payload = load_checkpoint(resume)
        saved = dict(payload["config"])
        extra = config.to_dict() if isinstance(config, TrainConfig) else dict(config or {})
        for key in ("steps", "ckpt_every", "log_every", "device", "amp", "compile", "threads", "n_samples"):
            if key in extra and extra[key] is not None:
                saved[key] = extra[key]
        saved["out"] = str(Path(resume))
        domain = checkpoint_domain(payload, manager, resolve_checkpoint(resume))
        cfg, domain = build_config(str(saved.get("plugin") or domain.name), saved, manager, domain=domain)
        if cfg.steps <= int(payload["step"]):
            raise AdvgenError(
                f"run {resume} is already at step {payload['step']}; pass --steps above it to continue"
            )
        # the data comes from the run's own config: say which, as a run folder from elsewhere names any file
        source = cfg.data or (f"{cfg.dataset}:{cfg.split}" if cfg.dataset else "the domain's default data")
        say(f"resuming {resume} at step {payload['step']}, reading {source}")
    else:
        payload = None
        if isinstance(config, TrainConfig):
            config.validate()
            cfg, domain = config, manager.load_domain(config.plugin)
        else:
            values = dict(config)
            if not values.get("plugin"):
                raise AdvgenError("no plugin given; choose one with --plugin NAME")
            cfg, domain = build_config(values.pop("plugin"), values, manager)
    threads, threads_note = training_threads(cfg.threads)
    torch.set_num_threads(threads)
    if threads_note:
        say(f"note: {threads_note}")
    run_dir = Path(cfg.out or _default_out(domain.name))
    world.join(cfg.device)
    stale = _previous_run_files(run_dir, overwrite) if payload is None and main else []
    cfg.out = str(run_dir)
    seed_everything(cfg.seed)  # the same in every process: nets and data transforms start alike
    t0 = time.perf_counter()
    data = domain.load_data(cfg)
    load_seconds = time.perf_counter() - t0
    for note in data.notes:
        say(f"note: {note}")
    if payload is not None:
        data.spec = payload["spec"]
    elif not world.agree(json.dumps(data.spec, sort_keys=True, default=str) + str(tuple(data.x.shape))):
        raise AdvgenError(
            "the processes read different training data (another file, or another version of it): "
            "every process must see the same --data or dataset"
        )
    if main and cfg.n_samples > 0:
        # the samples written after training are held in memory: too many is refused now, not after the run
        _check_sampling_memory(
            domain, data.spec, cfg.n_samples,
            "lower --n-samples (the samples written at the end of training), and write more after training "
            "with advgen sample -o FILE, which streams",
        )
    version = manager.domain_plugin_version(domain.name)
    if payload is None:
        trainer = Trainer(cfg, domain, data, manager, run_dir, plugin_version=version, world=world)
    else:
        with _checkpoint_nets(resolve_checkpoint(resume), domain):
            trainer = Trainer(cfg, domain, data, manager, run_dir, plugin_version=version, world=world)
            trainer.load_state(payload)
    if main:
        # the previous run goes only now that the new one has its data and nets: a bad flag loses nothing
        # (nor the files the new run's data was just read from or written to: encoded rows on disk)
        in_use = {Path(p).resolve() for p in getattr(data.x, "paths", ())}
        _remove_files([p for p in stale if p.resolve() not in in_use])
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(exc, run_dir) from None
        write_json(run_dir / "config.json", cfg.to_dict())
    batch = (
        f" (batch {cfg.batch_size} per process, {cfg.batch_size * world.size} in all)" if world.size > 1 else ""
    )
    say(
        f"training {domain.name} on {data.x.shape[0]} rows for {cfg.steps - trainer.step} steps "
        f"on {trainer.device}{world.describe()}{batch} -> {run_dir}"
    )
    summary = trainer.train(progress=progress, note=lambda line: say(f"note: {line}"))
    summary["data_rows"] = int(data.x.shape[0])
    summary["load_seconds"] = round(load_seconds, 3)
    run = Run(run_dir, domain, trainer.spec, cfg, trainer.sampling_generator(), trainer.device, manager)
    run._real = data
    if not main:
        run.summary = summary
        return run  # rank 0 writes the samples, plots and summary
    if cfg.n_samples > 0:
        summary.update(run.write_outputs(cfg.n_samples, seed=cfg.seed))
    write_json(run_dir / "summary.json", summary)
    manager.hook.advgen_train_end(trainer=trainer, summary=summary)
    run.summary = summary
    return run


# What advgen writes into a run directory: the run itself, sample files and plots, the grids of the
# images plugin, evaluation plots, the default export, the encoded rows of a table larger than memory, and the
# temporary files of any of them.
_RUN_FILE = re.compile(
    r"(config\.json|metrics\.jsonl|checkpoint\.pt|summary\.json|samples\.[A-Za-z0-9]+|grid-step\d+\.png"
    r"|eval_(histograms|samples|augmentation_recall)\.png|model\.onnx(\.json)?|encoded-rows\.(bin|json|sample\.parquet))"
)


def is_run_file(name: str) -> bool:
    """Whether a file of this name in a run directory is one advgen writes there (or a temp file of one)."""
    return bool(_RUN_FILE.fullmatch(temp_target_name(name) or name))


def _previous_run_files(run_dir: Path, overwrite: bool) -> list[Path]:
    """The files of an earlier run in ``run_dir`` that ``overwrite`` allows deleting; else a clear refusal."""
    if not run_dir.exists():
        return []
    if not run_dir.is_dir():
        raise AdvgenError(f"--out {run_dir} is a file, not a run directory")
    try:
        entries = sorted(run_dir.iterdir())
    except OSError as exc:
        raise AdvgenError(f"cannot read {run_dir}: {exc.strerror or exc}") from None
    ours = [e for e in entries if is_run_file(e.name) and not e.is_dir()]
    if not ours:
        return []  # an empty folder, or one of the user's: a run beside their files overwrites nothing
    shown = ", ".join(e.name for e in ours[:4]) + (", ..." if len(ours) > 4 else "")
    if not overwrite:
        cont = f"continue it with --resume {run_dir}, " if (run_dir / CHECKPOINT_NAME).exists() else ""
        raise AdvgenError(
            f"{run_dir} already holds a run ({shown}); {cont}start over with --overwrite, or choose another --out"
        )
    others = [e.name + ("/" if e.is_dir() else "") for e in entries if e not in ours]
    if others:
        listed = ", ".join(others[:4]) + (", ..." if len(others) > 4 else "")
        raise AdvgenError(
            f"{run_dir} holds files advgen did not write ({listed}); --overwrite only clears a folder that "
            "holds nothing but a run: move them or choose another --out"
        )
    return ours


def _remove_files(paths: list[Path]) -> None:
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise write_error(exc, path) from None


def _default_out(name: str) -> str:
    return str(Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")


class Run:
    """A trained generator with its domain, spec and config: sample, validate, write outputs."""

    def __init__(
        self,
        run_dir: Path,
        domain: Domain,
        spec: dict[str, Any],
        config: TrainConfig,
        generator: nn.Module,
        device: torch.device,
        manager: PluginManager,
        step: int | None = None,
    ):
        self.run_dir = Path(run_dir)
        self.domain = domain
        self.spec = spec
        self.config = config
        self.generator = generator.eval()
        self.device = device
        # sample in bfloat16 where training would use it (CUDA, CPUs with native bf16), as the generator
        # was trained; decoding works in float64
        self.amp = bool(config.amp) and amp_supported(device)
        self.manager = manager
        self.step = step
        self.summary: dict[str, Any] = {}
        self._real: RealData | None = None

    @property
    def conditional(self) -> bool:
        return self.spec.get("conditions") is not None

    # --- conditions ------------------------------------------------------------------------------

    def condition_probs(self, condition: str | dict[str, Any] | None) -> np.ndarray | None:
        """Class probabilities for a condition: the training frequencies among the classes it selects."""
        if not self.conditional:
            if condition:
                raise AdvgenError("this run is not conditional; --condition cannot be used")
            return None
        counts = np.asarray(self.spec["conditions"]["counts"], dtype=np.float64)
        if not condition:
            return counts / counts.sum()
        items = _parse_condition(condition)
        mask = np.ones(len(counts), dtype=bool)
        for key, value in items.items():
            selected = np.zeros(len(counts), dtype=bool)
            selected[self.domain.condition_classes(self.spec, key, value)] = True
            mask &= selected
        weights = np.where(mask, counts, 0.0)
        if weights.sum() <= 0:
            raise AdvgenError(f"no training class matches condition {condition}")
        return weights / weights.sum()

    # --- sampling --------------------------------------------------------------------------------

    def iter_encoded(
        self,
        n: int,
        condition: str | dict[str, Any] | np.ndarray | None = None,
        seed: int | None = None,
    ) -> Iterator[tuple[torch.Tensor, np.ndarray | None]]:
        """Generator output in the encoded space (CPU tensors) and class indices, in pieces of the
        generator's batches (8,192 rows on the CPU; on a GPU a whole chunk where it takes at most 256 MiB).

        Rows are drawn in chunks that follow :mod:`advgen.sampling`: chunk ``k`` depends only on
        ``(seed, k)``, so the rows do not depend on ``n`` (a sample of ``m`` rows is the first ``m``
        rows of a larger one with the same seed; a last, partial chunk goes through the generator in a
        smaller batch, which may round differently in the last bits). ``condition`` may also be an
        array of class indices, one per sample. ``n == 0`` gives one empty piece. Arguments are checked
        before the first piece is asked for.
        """
        plan = self._sampling_plan(n, condition, seed)
        return ((x, cond) for _, x, cond in self._encoded_chunks(n, *plan))

    def _sampling_plan(
        self, n: int, condition: str | dict[str, Any] | np.ndarray | None, seed: int | None
    ) -> tuple[int, torch.Tensor | None, torch.Tensor | None]:
        """The arguments checked: the seed, and the fixed classes or class probabilities of a condition."""
        _check_count(n)
        seed = check_seed(seed) if seed is not None else random_seed()
        fixed: torch.Tensor | None = None
        probs: torch.Tensor | None = None
        if isinstance(condition, np.ndarray):
            if condition.shape != (n,):
                raise AdvgenError(f"expected {n} class indices, got shape {condition.shape}")
            if not self.conditional:
                raise AdvgenError("this run is not conditional; class indices cannot be given")
            fixed = torch.as_tensor(condition, dtype=torch.long)
            n_classes = len(self.spec["conditions"]["classes"])
            if n and (int(fixed.min()) < 0 or int(fixed.max()) >= n_classes):
                raise AdvgenError(f"class indices must be in 0..{n_classes - 1}")
        else:
            p = self.condition_probs(condition)
            probs = torch.as_tensor(p, dtype=torch.float64) if p is not None else None
        return seed, fixed, probs

    @torch.no_grad()
    def _encoded_chunks(
        self,
        n: int,
        seed: int,
        fixed: torch.Tensor | None,
        probs: torch.Tensor | None,
        batch: int | None = None,
        shard: tuple[int, int] = (0, 1),
        host: bool = True,
    ) -> Iterator[tuple[int, torch.Tensor, np.ndarray | None]]:
        """``(chunk index, encoded rows, classes)`` a generator batch at a time, for the chunks
        ``k`` with ``k % shard[1] == shard[0]`` (all of them by default); the rows on the CPU, or with
        ``host=False`` where the generator made them. From the first chunk on, the process keeps the
        memory torch frees (:mod:`advgen.heap`): each generator batch reuses the last one's."""
        keep_freed_memory()
        size = chunk_rows()
        batch = batch or self._generator_batch(size)
        conditional = fixed is not None or probs is not None
        for index, start, stop in chunk_spans(n, size):
            if index % shard[1] != shard[0]:
                continue
            rows = stop - start
            if rows == 0:
                yield index, torch.zeros((0, *self.spec["shape"])), (np.zeros(0, dtype=np.int64) if conditional else None)
                continue
            # a full chunk's latents, then its classes, whatever ``rows``: chunk k's rows never depend on n
            gen = torch.Generator().manual_seed(chunk_seed(seed, index))
            z = torch.randn(size, self.config.z_dim, generator=gen)[:rows]
            if probs is not None:
                cond: torch.Tensor | None = torch.multinomial(probs, size, replacement=True, generator=gen)[:rows]
            else:
                cond = fixed[start:stop] if fixed is not None else None
            # yielded a generator batch at a time: decoding, judging and writing a whole chunk at once
            # would hold several times its encoded size (300 MiB more for NSL-KDD rows)
            for i in range(0, rows, batch):
                zb = z[i : i + batch].to(self.device)
                cb = cond[i : i + batch] if cond is not None else None
                with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                    out = self.generator(zb, cb.to(self.device) if cb is not None else None)
                out = out.float()
                yield index, (out.cpu() if host else out), (cb.numpy() if cb is not None else None)

    def _generator_batch(self, chunk: int) -> int:
        """Rows per generator call: 8,192 on the CPU; on a GPU, where each call costs a few dozen kernel
        launches, a whole chunk unless its encoded rows would take more than 256 MiB."""
        if self.device.type == "cpu":
            return 8192
        per_row = max(1, int(np.prod(self.spec["shape"])))
        return max(8192, min(chunk, (1 << 26) // per_row))

    def _decoded_chunks(
        self, n: int, condition: str | dict[str, Any] | np.ndarray | None, seed: int | None
    ) -> Iterator[tuple[torch.Tensor, np.ndarray | None]]:
        """What :meth:`iter_samples` and :meth:`write_samples` decode: encoded pieces on the CPU, or on
        the generator's device for a domain that decodes there (``Domain.decodes_on_device``), so that
        a GPU's output is decoded on the GPU and only decoded values reach the host."""
        plan = self._sampling_plan(n, condition, seed)
        return ((x, cond) for _, x, cond in self._encoded_chunks(n, *plan, host=not self._decodes_on_device()))

    def _decodes_on_device(self) -> bool:
        return self.device.type != "cpu" and bool(getattr(self.domain, "decodes_on_device", False))

    def iter_samples(
        self, n: int, condition: str | dict[str, Any] | np.ndarray | None = None, seed: int | None = None
    ) -> Iterator[Any]:
        """Decoded samples, a piece at a time (see :meth:`iter_encoded`): what a file writer takes."""
        chunks = self._decoded_chunks(n, condition, seed)
        return (self.domain.decode(x, cond, self.spec) for x, cond in chunks)

    def sample_encoded(
        self,
        n: int,
        condition: str | dict[str, Any] | np.ndarray | None = None,
        seed: int | None = None,
    ) -> tuple[torch.Tensor, np.ndarray | None]:
        """All of :meth:`iter_encoded` in memory: the encoded tensor and each sample's class index."""
        chunks = self.iter_encoded(n, condition, seed)
        self._check_in_memory(n)
        xs, conds = zip(*chunks)
        x = torch.cat(xs)
        return x, (np.concatenate(conds) if conds[0] is not None else None)

    def sample(
        self, n: int, condition: str | dict[str, Any] | np.ndarray | None = None, seed: int | None = None
    ) -> Any:
        """``n`` decoded domain samples (rows, images, curves) in memory, optionally of a condition,
        seeded. The rows are those :meth:`write_samples` writes for the same arguments; for more
        samples than memory holds, write them to a file with :meth:`write_samples`."""
        if not self._decodes_on_device():
            x, cond = self.sample_encoded(n, condition, seed)
            return self.domain.decode(x, cond, self.spec)
        chunks = self._decoded_chunks(n, condition, seed)
        self._check_in_memory(n)
        xs, conds = zip(*chunks)
        return self.domain.decode(torch.cat(xs), np.concatenate(conds) if conds[0] is not None else None, self.spec)

    def _check_in_memory(self, n: int) -> None:
        _check_sampling_memory(
            self.domain, self.spec, n,
            "write them to a file instead (advgen sample -o FILE, or Run.write_samples), which streams",
        )

    def write_samples(
        self,
        path: str | Path,
        n: int,
        condition: str | dict[str, Any] | np.ndarray | None = None,
        seed: int | None = None,
        *,
        validate: bool = False,
        progress: Callable[[int], None] | None = None,
        world: distributed.World | None = None,
    ) -> SamplesWritten:
        """Write ``n`` samples to ``path`` (the suffix picks the format) one chunk at a time, so that
        memory does not grow with ``n``; the rows equal :meth:`sample`'s for the same arguments.

        Before anything is drawn the file's size is estimated (``Domain.bytes_per_sample``) and a file
        that would not fit on its disk is refused. The file appears only when complete: a failure,
        a full disk or Ctrl-C leaves an earlier file at ``path`` untouched and no temporary file.
        ``validate`` also counts how many samples pass the validators; ``progress`` is called with
        the number of samples of each chunk once it is written.

        With a ``world`` of several processes (torchrun) each process draws and writes the chunks
        ``k`` with ``k % processes == rank`` to part files beside ``path``, and rank 0 joins them in
        order into the file one process would write (CSV, Parquet, NPZ and NPY); an unseeded sample
        takes rank 0's random seed, and the validator counts are summed over the processes.
        """
        target = Path(path)
        if world is not None and world.size > 1:
            return self._write_sharded(target, n, condition, seed, validate, progress, world)
        chunks = self._decoded_chunks(n, condition, seed)
        suffix = target.suffix.lower()
        check_output_size(target, n * int(self.domain.bytes_per_sample(self.spec, suffix)), n)
        validators = self.validators() if validate else []
        tally = _Tally(validators) if validate else None
        domain = type(self.domain)
        if domain.open_writer is Domain.open_writer and domain.write_samples is not Domain.write_samples:
            # a domain written before open_writer existed writes its own format, from memory
            self._check_in_memory(n)
            x, cond = self.sample_encoded(n, condition, seed)
            samples = self.domain.decode(x, cond, self.spec)
            self.domain.write_samples(samples, target, self.spec)
            if tally is not None:
                tally.add(samples, self.domain.num_samples(samples))
            if progress is not None:
                progress(n)
            return SamplesWritten(target, n, tally)
        with self.domain.open_writer(target, self.spec, n) as writer:
            for x, cond in chunks:
                samples = self.domain.decode(x, cond, self.spec)
                writer.write(samples)
                count = self.domain.num_samples(samples)
                if tally is not None:
                    tally.add(samples, count)
                if progress is not None:
                    progress(count)
        return SamplesWritten(target, n, tally)

    def _write_sharded(
        self,
        target: Path,
        n: int,
        condition: str | dict[str, Any] | np.ndarray | None,
        seed: int | None,
        validate: bool,
        progress: Callable[[int], None] | None,
        world: distributed.World,
    ) -> SamplesWritten:
        suffix = target.suffix.lower()
        domain = type(self.domain)
        if suffix not in JOINABLE or domain.open_writer is Domain.open_writer and domain.write_samples is not Domain.write_samples:
            raise AdvgenError(
                f"several processes write samples as {', '.join(s for s in JOINABLE if s in self.domain.sample_suffixes())}; "
                f"write {suffix or 'a folder'} in one process (advgen sample without torchrun)"
            )
        _check_count(n)
        # one seed for all: an unseeded sample takes rank 0's
        seed = world.broadcast_int(check_seed(seed) if seed is not None else random_seed())
        seed, fixed, probs = self._sampling_plan(n, condition, seed)
        check_output_size(target, n * int(self.domain.bytes_per_sample(self.spec, suffix)), n)
        token = f"{world.broadcast_int(secrets.randbits(62)):016x}"
        spans = list(chunk_spans(n))
        parts = [part_path(target, token, index) for index, _, _ in spans]
        rows = {index: stop - start for index, start, stop in spans}
        tally = _Tally(self.validators()) if validate else None
        try:
            writer = None
            try:
                pieces = self._encoded_chunks(
                    n, seed, fixed, probs, shard=(world.rank, world.size), host=not self._decodes_on_device()
                )
                for index, x, cond in pieces:
                    if writer is None or writer.path != parts[index]:
                        if writer is not None:
                            writer.close()
                        writer = self.domain.open_writer(parts[index], self.spec, rows[index])
                    samples = self.domain.decode(x, cond, self.spec)
                    writer.write(samples)
                    count = self.domain.num_samples(samples)
                    if tally is not None:
                        tally.add(samples, count)
                    if progress is not None:
                        progress(count)
                if writer is not None:
                    writer.close()
            except BaseException:
                if writer is not None:
                    writer.abort()
                raise
            if tally is not None:
                totals = world.sum([tally.n, tally.passed, *tally.per_rule.values()])
                tally.n, tally.passed = int(totals[0]), int(totals[1])
                tally.per_rule = {k: int(v) for k, v in zip(tally.per_rule, totals[2:])}
            world.barrier()  # every part is written
            if world.main:
                header = self._empty_file(target, token, fixed is not None or probs is not None) if suffix == ".csv" else b""
                join_parts(target, parts, n, header)
        except BaseException:
            remove_parts(parts)
            raise
        return SamplesWritten(target, n, tally)

    def _empty_file(self, target: Path, token: str, conditional: bool) -> bytes:
        """What the domain writes to a file of ``target``'s format for no samples (a CSV's header)."""
        path = target.with_name(f".{target.name}.{token}.header{target.suffix}")
        empty = torch.zeros((0, *self.spec["shape"]))
        samples = self.domain.decode(empty, np.zeros(0, dtype=np.int64) if conditional else None, self.spec)
        try:
            with self.domain.open_writer(path, self.spec, 0) as writer:
                writer.write(samples)
            return path.read_bytes()
        finally:
            remove_parts([path])

    # --- judging ---------------------------------------------------------------------------------

    def validators(self) -> list:
        return self.manager.validators(self.domain, self.spec)

    def validate(self, samples: Any) -> ValidationReport:
        return run_validators(samples, self.validators(), self.domain.num_samples(samples))

    def load_real(self) -> RealData:
        """The training data, read again through the domain (cached)."""
        if self._real is None:
            self._real = self.domain.load_data(self.config)
        return self._real

    def write_outputs(self, n: int, seed: int = 0) -> dict[str, Any]:
        """Samples file, validation of real and synthetic, and the comparison plot in the run dir."""
        t0 = time.perf_counter()
        samples = self.sample(n, seed=seed)
        sample_seconds = time.perf_counter() - t0
        suffix = self.domain.sample_suffixes()[0]
        path = self.run_dir / f"samples{suffix}"
        self.domain.write_samples(samples, path, self.spec)
        out: dict[str, Any] = {
            "samples_file": str(path),
            "sample_rows_per_s": round(n / sample_seconds, 1) if sample_seconds > 0 else None,
        }
        validators = self.validators()
        if validators:
            synth = run_validators(samples, validators, self.domain.num_samples(samples))
            out["validity_synthetic"] = synth.to_dict()
            real = self.load_real().samples
            if real is not None:
                rep = run_validators(real, validators, self.domain.num_samples(real))
                out["validity_real"] = rep.to_dict()
        real = self.load_real().samples
        if real is not None:
            try:
                plotted = self.domain.plot(real, samples, self.run_dir / "samples.png", self.spec)
            except ImportError:
                plotted = False
            except Exception as exc:  # a figure is not worth a finished run: the samples and summary stand
                plotted = False
                out["plot_skipped"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
            if plotted:
                out["plot"] = str(self.run_dir / "samples.png")
        return out


def _parse_condition(condition: str | dict[str, Any]) -> dict[str, str]:
    if isinstance(condition, dict):
        return {str(k): str(v) for k, v in condition.items()}
    items: dict[str, str] = {}
    for part in str(condition).split(","):
        if "=" not in part:
            raise AdvgenError(f"condition {part!r} must look like KEY=VALUE (e.g. category=r2l)")
        key, value = part.split("=", 1)
        key, value = key.strip(), value.strip()
        if key in items and items[key] != value:
            # one class per condition: "category=dos,category=r2l" silently sampled r2l only (audit)
            raise AdvgenError(
                f"condition names {key} twice ({items[key]!r} and {value!r}); a sample is drawn for one value: "
                "sample once per class"
            )
        items[key] = value
    return items


def _check_sampling_memory(domain: Domain, spec: dict[str, Any], n: int, hint: str) -> None:
    """Refuse ``n`` samples in memory that would not fit: the encoded tensor, its float32 copy and the
    decoded samples, about three encoded tensors."""
    per_sample = 3 * 4 * int(np.prod(spec["shape"]))
    check_memory(n * per_sample, f"sampling {n:,} {domain.name} samples in memory", hint)


def _check_count(n: Any) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise AdvgenError(f"sample count must be an integer, got {n!r}")
    if n < 0:
        raise AdvgenError(f"sample count must be >= 0, got {n}")
    if n > MAX_SAMPLES:
        raise AdvgenError(f"sample count {n:,} is above the limit of {MAX_SAMPLES:,}")


class _Tally:
    """Validator results summed chunk by chunk, so that judging a file of any size needs one chunk's memory."""

    def __init__(self, validators: list) -> None:
        self.validators = validators
        self.n = 0
        self.passed = 0
        self.per_rule = {v.name: 0 for v in validators}

    def add(self, samples: Any, count: int) -> None:
        if self.validators and count:
            report = run_validators(samples, self.validators, count)
            self.passed += int(report.passed.sum())
            for name, ok in report.per_rule.items():
                self.per_rule[name] += ok
        self.n += count


@dataclass
class SamplesWritten:
    """What :meth:`Run.write_samples` wrote, and how many samples passed the validators when asked."""

    path: Path
    n: int
    tally: _Tally | None = None

    @property
    def rules(self) -> int:
        return len(self.tally.validators) if self.tally is not None else 0

    @property
    def pass_rate(self) -> float | None:
        """Share of samples that pass every rule (None when not validated, NaN for no samples)."""
        if self.tally is None or not self.rules:
            return None
        return self.tally.passed / self.tally.n if self.tally.n else float("nan")

    def rule_rates(self) -> dict[str, float]:
        if self.tally is None:
            return {}
        return {k: v / self.tally.n if self.tally.n else float("nan") for k, v in self.tally.per_rule.items()}


def checkpoint_domain(payload: dict[str, Any], manager: PluginManager, where: Path) -> Domain:
    """The registered domain a checkpoint was trained with; loading a checkpoint never loads code.

    A checkpoint records the domain's name and the plugin the user trained with (a registered name or a
    plugin file's path). Only domains already registered (entry points, ``ADVGEN_PLUGINS``, ``--plugin``
    given by the user) are looked up: a checkpoint that names a file or module is refused, so a
    tampered ``plugin`` field cannot make advgen import and run it.
    """
    names = [payload.get("domain"), payload.get("plugin")]
    for name in names:
        if isinstance(name, str) and name in manager.domain_names():
            return manager.domain(name)
    shown = next((n for n in names if isinstance(n, str) and n), None)
    if shown is None:
        raise CheckpointError(f"checkpoint {where} names no domain")
    plugin = payload.get("plugin")
    path_hint = plugin if isinstance(plugin, str) and (plugin.endswith(".py") or "/" in plugin) else "PLUGIN.py"
    raise CheckpointError(
        f"checkpoint {where} was made with domain {str(shown)[:200]!r}, which is not loaded; advgen never "
        f"imports code a checkpoint names: if you trust that plugin, load it yourself with "
        f"ADVGEN_PLUGINS={str(path_hint)[:200]} (or --plugin with advgen train --resume)"
    )


@contextlib.contextmanager
def _checkpoint_nets(ckpt: Path, domain: Any) -> Iterator[None]:
    """Nets built from a checkpoint's spec and config and given its weights: what a forged or damaged
    spec makes the domain raise (a missing key, a wrong type, a size mismatch) is one error line."""
    try:
        yield
    except AdvgenError:
        raise
    except (RuntimeError, KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError) as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise CheckpointError(
            f"checkpoint {ckpt} does not match the {domain.name} domain's nets (a damaged or edited spec, config "
            f"or weights): {type(exc).__name__}: {text[:200]}"
        ) from None


def load_run(
    path: str | Path, device: str = "cpu", manager: PluginManager | None = None, ema: bool = True
) -> Run:
    """Load a run directory (or checkpoint file) for sampling; the checkpoint is read safely."""
    manager = manager or get_manager()
    ckpt = resolve_checkpoint(path)
    payload = load_checkpoint(ckpt)
    try:
        cfg = TrainConfig.from_dict(payload["config"])
    except AdvgenError as exc:
        raise CheckpointError(f"checkpoint {ckpt} holds an invalid config: {exc}") from None
    domain = checkpoint_domain(payload, manager, ckpt)
    spec = payload["spec"]
    dev = resolve_device(device)
    with _checkpoint_nets(ckpt, domain):
        generator = domain.build_generator(spec, cfg)
        state = payload.get("generator_ema") if ema and payload.get("generator_ema") else payload["generator"]
        generator.load_state_dict(state)
    run = Run(ckpt.parent, domain, spec, cfg, generator.to(dev), dev, manager, step=int(payload["step"]))
    return run
