"""The ``advgen`` command line: a thin click layer over :mod:`advgen.api`."""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from advgen import __version__
from advgen.errors import AdvgenError


class AdvgenGroup(click.Group):
    """Turns the project's errors into one clear line and a non-zero exit, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            if _launched_rank() > 0:  # the same mistake in every process torchrun started: rank 0 shows it
                raise SystemExit(exc.exit_code) from None
            raise
        except AdvgenError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except OSError as exc:  # the last net: a disk or path problem the command did not name itself
            raise click.ClickException(os_error_line(exc)) from None
        except MemoryError:
            raise click.ClickException("out of memory; ask for fewer rows or a smaller model") from None
        except RuntimeError as exc:
            if "allocate" not in str(exc) and "out of memory" not in str(exc):
                raise
            raise click.ClickException(f"out of memory: {str(exc).splitlines()[0][:200]}") from None

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        _load_plugin_commands(self)
        return super().get_command(ctx, name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        _load_plugin_commands(self)
        return super().list_commands(ctx)


_COMMANDS_LOADED = False


def _launched_rank() -> int:
    """This process's rank when torchrun started several (0 otherwise); read without importing torch."""
    try:
        return int(os.environ.get("RANK") or 0) if int(os.environ.get("WORLD_SIZE") or 1) > 1 else 0
    except ValueError:
        return 0


def os_error_line(exc: OSError) -> str:
    """One line for an OSError: what went wrong, with which path, in words."""
    where = exc.filename if exc.filename is not None else ""
    if exc.errno == errno.ENOSPC:
        return f"disk full while writing {where}".rstrip()
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"cannot write {where}: {exc.strerror or 'permission denied'}".replace(" : ", ": ")
    if exc.errno == errno.ENOTDIR:
        return f"{where}: a path component is a file, not a folder"
    if exc.errno == errno.EEXIST:
        return f"{where} exists and is not a folder"
    if exc.errno == errno.EISDIR:
        return f"{where} is a folder; name a file"
    return f"{exc.strerror or type(exc).__name__}: {where}".rstrip(": ")


def _load_plugin_commands(group: click.Group) -> None:
    """Attach the commands that other packages and plugins contribute, once, on first use."""
    global _COMMANDS_LOADED
    if _COMMANDS_LOADED:
        return
    _COMMANDS_LOADED = True
    from advgen.plugins import get_manager

    for module, attach in (
        ("advgen_datasets.cli", lambda m: m.register(group.commands["datasets"])),
        ("advgen.eval_cli", lambda m: m.register(group)),
        ("advgen.adversarial.cli", lambda m: m.register(group)),
        ("advgen_export.torch_cli", lambda m: m.register(group)),
    ):
        try:
            mod = __import__(module, fromlist=["register"])
        except ImportError:
            continue
        attach(mod)
    try:
        get_manager().hook.advgen_register_commands(cli=group)
    except AdvgenError as exc:
        click.echo(f"warning: plugins not loaded: {exc}", err=True)


@click.group(cls=AdvgenGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="advgen")
def cli() -> None:
    """advgen: train GANs that generate security data (network traffic tables, images, curves),
    judge it with scikit-learn detectors, and export generators to ONNX.

    \b
    Quick start:
      advgen train --plugin curves            # a toy domain, seconds on a CPU
      advgen train --plugin tabular           # NSL-KDD intrusion-detection records
      advgen sample RUN_DIR -n 1000 -o rows.csv --condition category=r2l
    """


@cli.group()
def datasets() -> None:
    """Registered datasets: list, describe, fetch (and domain tools plugins add)."""


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@click.option("--plugin", "local", multiple=True, help="Also load this plugin file or module.")
def plugins_cmd(as_json: bool, local: tuple[str, ...]) -> None:
    """List loaded plugins: name, version, where each comes from, and the hooks it implements."""
    from advgen.plugins import get_manager

    manager = get_manager(list(local))
    infos = manager.infos()
    if as_json:
        click.echo(json.dumps([i.to_dict() for i in infos], indent=2))
        return
    for info in infos:
        domains = f"  domains: {', '.join(info.domains)}" if info.domains else ""
        click.echo(f"{info.name} {info.version}  ({info.source}){domains}")
        click.echo(f"    hooks: {', '.join(info.hooks)}")
    for message in manager.broken.values():
        click.echo(f"warning: {message}", err=True)


def _seed_option(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    """--seed as an integer in [0, 2**63): what torch and numpy generators take."""
    from advgen.sampling import MAX_SEED

    if value is not None and not 0 <= value <= MAX_SEED:
        raise click.BadParameter(f"must be an integer in [0, 2**63), got {value}")
    return value


def _train_options(fn: Any) -> Any:
    options = [
        click.option("--plugin", "-p", help="Domain plugin name (see `advgen plugins`) or a plugin .py file."),
        click.option("--config", "config_file", type=click.Path(dir_okay=False), help="Run config TOML; flags override it."),
        click.option("--data", help="Data file or folder for the domain (e.g. a CSV)."),
        click.option("--dataset", help="A registered dataset name (see `advgen datasets list`)."),
        click.option("--split", help="Split of the registered dataset (e.g. train20, train)."),
        click.option("--label", help="Label column of a table (conditions training)."),
        click.option("--steps", type=int, help="Generator steps to train for."),
        click.option("--batch-size", type=int, help="Rows per batch. Quality follows the number of steps, not the rows "
                     "seen: raise the batch (on a GPU) without cutting --steps (docs/gpu.md)."),
        click.option("--z-dim", type=int, help="Size of the generator's latent input."),
        click.option("--loss", help="minimax, non-saturating (default), wgan-gp, hinge or a plugin's loss."),
        click.option("--d-steps", type=int, help="Discriminator steps per generator step."),
        click.option("--lr-g", type=float, help="Generator learning rate (Adam)."),
        click.option("--lr-d", type=float, help="Discriminator learning rate (Adam)."),
        click.option("--beta1", type=float, help="Adam beta1."),
        click.option("--beta2", type=float, help="Adam beta2."),
        click.option("--gp-weight", type=float, help="Gradient-penalty weight for wgan-gp."),
        click.option("--ema", type=float, help="Decay of the generator weight average (0 disables)."),
        click.option("--conditional/--unconditional", default=None, help="Condition on labels where the domain has them."),
        click.option("--cond-sampling", type=click.Choice(["empirical", "sqrt", "log", "uniform"]), help="Class frequencies of training conditions."),
        click.option("--device", help="auto (default: CUDA when present), cpu, cuda or cuda:N."),
        click.option("--amp/--no-amp", default=None, help="Mixed precision (bfloat16) on CUDA and on CPUs with native bf16."),
        click.option(
            "--compile/--no-compile", default=None,
            help="Capture each training step as one CUDA graph (CUDA), or compile the nets with torch.compile (CPU; "
            "needs a C++ compiler). Default: on for CUDA, off on the CPU.",
        ),
        click.option("--seed", type=int, callback=_seed_option, help="Seed for Python, NumPy and torch, in [0, 2**63)."),
        click.option("--threads", type=int, help="torch CPU threads (0: torch's default)."),
        click.option("--log-every", type=int, help="Steps between metric log lines."),
        click.option("--ckpt-every", type=int, help="Steps between checkpoints."),
        click.option("--n-samples", type=int, help="Samples written into the run directory at the end."),
        click.option("--out", "-o", help="Run directory (default runs/PLUGIN-TIMESTAMP)."),
        click.option("--option", "options", multiple=True, help="Domain option KEY=VALUE (repeatable)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@cli.command()
@_train_options
@click.option(
    "--resume", type=click.Path(file_okay=False),
    help="Continue the run in this directory from its last checkpoint (metrics.jsonl is cut back to it).",
)
@click.option(
    "--overwrite", is_flag=True,
    help="Start over in an --out directory that already holds a run: its files (config, metrics, checkpoint, "
    "samples, plots, exported model) are deleted first. A directory that also holds other files is refused.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or notes.")
def train(
    config_file: str | None, resume: str | None, overwrite: bool, quiet: bool, options: tuple[str, ...], **flags: Any
) -> None:
    """Train a generator for a domain and write a run directory.

    \b
    The run directory holds config.json, metrics.jsonl (one line per logging
    step), checkpoint.pt, samples and plots, and summary.json.
    An --out directory that already holds a run is refused: continue it
    with --resume, or start over with --overwrite, which deletes only
    the files advgen writes and refuses a folder holding anything else.
    Examples:
      advgen train --plugin curves
      advgen train --plugin tabular --dataset nsl-kdd --split train --steps 5000
      advgen train --plugin tabular --data flows.csv --label Label
      advgen train --plugin examples/pattern_plugin.py --steps 300
      advgen train --resume runs/curves-20260101-120000 --steps 4000
    Data-parallel, one process per GPU or CPU share (rank 0 writes the run):
      torchrun --nproc-per-node 2 -m advgen train --plugin tabular --out runs/ddp
    """
    from advgen.api import train as api_train
    from advgen.config import load_toml, parse_option

    values: dict[str, Any] = load_toml(config_file) if config_file else {}
    for key, value in flags.items():
        if value is not None:
            values[key] = value
    if options:
        values.setdefault("options", {})
        values["options"] = dict(values["options"], **dict(parse_option(o) for o in options))
    if resume is None and not values.get("plugin"):
        raise click.UsageError("choose a domain with --plugin NAME (see `advgen plugins`), or --resume RUN_DIR")
    if resume is not None and values.get("plugin"):
        # the user names the plugin of the run to resume: loading it is their choice, never the checkpoint's
        from advgen.plugins import get_manager

        get_manager().load_domain(str(values["plugin"]))
    say = (lambda line: None) if quiet else (lambda line: click.echo(line, err=True))
    run = api_train(values, progress=not quiet, resume=resume, log=say, overwrite=overwrite)
    if _launched_rank() == 0:  # under torchrun, rank 0 reports the run
        _print_summary(run.summary, run.run_dir)


def _print_summary(summary: dict[str, Any], run_dir: Path) -> None:
    click.echo(f"run: {run_dir}")
    processes = summary.get("processes", 1)
    where = (
        f" x {processes} processes (batch {summary['batch_size_per_process']} per process, "
        f"{summary['effective_batch_size']} in all)" if processes > 1 else ""
    )
    mode = summary.get("step_mode")
    resumed = summary.get("steps_this_session") is not None and summary["steps_this_session"] < summary["steps"]
    # a resumed run: the time of every session, beside this session's own (which the rows/s figure is of)
    session = (f" ({summary['steps_this_session']:,} steps in {summary['seconds_this_session']:.1f}s this session)"
               if resumed and summary.get("seconds_this_session") is not None else "")
    click.echo(
        f"steps: {summary['steps']}  time: {summary['seconds']:.1f}s{session}  "
        f"rows/s: {summary.get('rows_per_s') or 0:,.0f}  device: {summary['device']}{where}"
        + (f"  step: {mode}" if mode and mode != "eager" else "")
    )
    for which in ("real", "synthetic"):
        rep = summary.get(f"validity_{which}")
        if rep:
            groups = "  ".join(f"{g}: {r:.1%}" for g, r in rep["per_group"].items())
            click.echo(f"validity {which:<9}: {rep['pass_rate']:.1%} of {rep['n']:,}  ({groups})")
    if "samples_file" in summary:
        click.echo(f"samples: {summary['samples_file']}")
    if "plot" in summary:
        click.echo(f"plot: {summary['plot']}")
    if "plot_skipped" in summary:
        click.echo(f"note: no samples.png ({summary['plot_skipped']}); the samples and summary are written")


# below this many samples the bar would only flash by
PROGRESS_MIN_SAMPLES = 200_000


class _LazyBar:
    """A click progress bar on stderr that appears with the first chunk written, so that a request
    refused up front (too large for the disk, a bad condition) prints only its error."""

    def __init__(self, n: int, label: str) -> None:
        self.n, self.label, self.bar = n, label, None

    def update(self, rows: int) -> None:
        if self.bar is None:
            self.bar = click.progressbar(length=self.n, label=self.label, file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(rows)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("-n", "n", type=int, required=True, help="Number of samples (0 writes an empty file with its header).")
@click.option("--output", "-o", "output", required=True, type=click.Path(), help="Output file (the suffix picks the format), or a folder where the domain writes one (images).")
@click.option("--condition", "-c", multiple=True, help="KEY=VALUE, e.g. category=r2l or label=guess_passwd (repeatable).")
@click.option("--seed", type=int, default=None, callback=_seed_option, help="Seed in [0, 2**63): the same seed gives the same samples.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--validate/--no-validate", default=True, help="Report the validator pass rate of the samples.")
@click.option(
    "--amp/--no-amp", default=None,
    help="bfloat16 autocast (default: as the run trained, where the device has native bf16); --no-amp samples "
    "in float32, as an exported ONNX model does.",
)
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch CPU threads for generating and decoding. Default: as train, the cores other running "
              "processes leave free.")
def sample(
    run_dir: str, n: int, output: str, condition: tuple[str, ...], seed: int | None, device: str, validate: bool,
    amp: bool | None, threads: int | None,
) -> None:
    """Write N samples of a trained run to a file (CSV, Parquet, NPZ ... as the domain allows).

    Samples are drawn, decoded and written one chunk at a time, so memory stays the same whatever N;
    a file that would not fit on its disk is refused before anything is drawn, and the file appears
    only once complete (an existing file is then replaced, with a note on stderr). Row i depends
    only on the seed and i: the first rows of a larger sample equal a smaller sample with the same seed.

    \b
    In several processes, each draws its share of the chunks and rank 0 joins
    the parts into the same file one process writes (CSV, Parquet, NPZ, NPY):
      torchrun --nproc-per-node 4 -m advgen sample RUN -n 100000000 -o rows.parquet --seed 1
    """
    import torch

    from advgen import distributed
    from advgen.threads import training_threads

    if n < 0:
        raise click.BadParameter(f"must be >= 0, got {n}", param_hint="-n")
    torch.set_num_threads(training_threads(threads or 0)[0])
    with distributed.launched() as world:
        _sample(world, run_dir, n, output, condition, seed, device, validate, amp)


def _sample(
    world: Any, run_dir: str, n: int, output: str, condition: tuple[str, ...], seed: int | None, device: str,
    validate: bool, amp: bool | None,
) -> None:
    from advgen.api import load_run
    from advgen.engine import amp_supported
    from advgen.writers import output_to_replace, say_replaced

    run = load_run(run_dir, device=str(world.join(device)))
    if amp is not None:
        run.amp = amp and amp_supported(run.device)
    suffix = Path(output).suffix.lower()
    # before the suffix check: /dev/full has none, and "not a folder" would hide what it is
    replaced = output_to_replace(output, "-o", folder_ok=suffix == "" and "" in run.domain.sample_suffixes())
    if suffix not in run.domain.sample_suffixes():
        raise click.BadParameter(
            f"{run.domain.name} samples can be written as {', '.join(s or 'a folder' for s in run.domain.sample_suffixes())}, "
            f"not {suffix or 'a folder'}",
            param_hint="--output",
        )
    cond = ",".join(condition) if condition else None
    share = _rank0_share(n, world.size)  # under torchrun rank 0 shows its own share of the work
    label = f"sampling {n:,} {run.domain.name}" + (f" (rank 0 of {world.size})" if world.size > 1 else "")
    bar = _LazyBar(share, label) if n >= PROGRESS_MIN_SAMPLES and world.main else None
    try:
        written = run.write_samples(
            Path(output), n, condition=cond, seed=seed, validate=validate, progress=bar.update if bar else None,
            world=world,
        )
    finally:
        if bar is not None:
            bar.close()
    if not world.main:
        return
    say_replaced(replaced, output)
    click.echo(f"wrote {n} samples to {output}")
    if written.pass_rate is not None and n > 0:
        click.echo(f"validity: {written.pass_rate:.1%} pass all {written.rules} rules")


def _rank0_share(n: int, processes: int) -> int:
    """The samples rank 0 draws when chunks ``k`` go to rank ``k % processes``."""
    from advgen.sampling import chunk_rows

    size = chunk_rows()
    chunks = -(-n // size)
    share = -(-chunks // processes) * size
    if chunks and (chunks - 1) % processes == 0:
        share -= chunks * size - n  # the last, partial chunk is rank 0's
    return min(share, n)


def main() -> None:
    from advgen.threads import choose_wait_policy

    choose_wait_policy()  # before anything imports torch
    cli(prog_name="advgen")


if __name__ == "__main__":  # pragma: no cover
    main()
