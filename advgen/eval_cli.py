"""``advgen evaluate`` and ``advgen augment``: thin click commands over :mod:`advgen.evaluate` and
:mod:`advgen.augment`. :func:`register` attaches them to the ``advgen`` group."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from advgen.errors import AdvgenError, InvalidDataError


def _classes(value: str | None) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise click.BadParameter("name at least one class, e.g. r2l,u2r")
    return items


def _threads_option(what: str) -> Any:
    return click.option(
        "--threads", type=click.IntRange(min=1), default=None,
        help=f"CPU threads for {what} (torch, OpenMP, BLAS, detectors' n_jobs). Default: min(2, cores), so that "
        "a shared machine stays usable; raise it on a machine of your own.",
    )


def _say(quiet: bool) -> Any:
    """Progress lines on stderr, each with the seconds since the command started."""
    if quiet:
        return lambda _m: None
    start = time.perf_counter()
    return lambda m: click.echo(f"[{time.perf_counter() - start:7.1f} s] {m}", err=True)


def _capped(detector: Any, threads: int, manager: Any = None) -> Any:
    """The detector factory (a registry name or a factory) with its estimators' n_jobs capped at ``threads``."""
    from advgen.metrics.detectors import resolve_detector
    from advgen.threads import cap_n_jobs

    name, factory = resolve_detector(detector, manager)

    def capped(seed: int) -> Any:
        return cap_n_jobs(factory(seed), threads)

    capped.__name__ = name
    return capped


def _is_run(path: Path) -> bool:
    return path.is_dir() or path.suffix == ".pt"


@dataclass
class TableSource:
    """A real table read from a file or a registered dataset split (``nsl-kdd:train20``)."""

    table: Any  # advgen_datasets.Table
    dataset: str | None


def load_real_table(ref: str, *, label: str | None = None, schema: list[Any] | None = None, dataset: str | None = None) -> TableSource:
    """``ref`` is a file path, or ``DATASET:SPLIT`` / ``DATASET`` for a registered dataset.

    With ``schema`` (a training table's columns) the file is read exactly like the training table; with
    ``dataset`` a plain file is read with that dataset's layout (e.g. a header-less NSL-KDD file).
    """
    try:
        from advgen_datasets import load_table, registry
    except ImportError:
        raise AdvgenError("reading tables needs the advgen_datasets package (installed with advgen)") from None
    path = Path(ref)
    if path.exists():
        if path.is_file() and path.stat().st_size == 0:
            raise InvalidDataError(f"{path} is empty")
        return TableSource(load_table(dataset, path=path, label=label, schema=schema), dataset)
    name, _, split = ref.partition(":")
    known = registry()
    if name in known:
        return TableSource(load_table(name, split or None, schema=schema), name)
    raise click.BadParameter(
        f"{ref} is neither a file nor a registered dataset ({', '.join(sorted(known))}); "
        "give a path or DATASET:SPLIT such as nsl-kdd:test"
    )


def register(cli: click.Group) -> None:
    """Add ``evaluate`` and ``augment`` to the ``advgen`` command group."""
    cli.add_command(evaluate_cmd)
    cli.add_command(augment_cmd)


@click.command("evaluate")
@click.argument("target", metavar="RUN_DIR|SAMPLES", type=click.Path(exists=True))
@click.option("--real", "real_ref", help="Real training data: a file or DATASET:SPLIT (e.g. nsl-kdd:train20). Default: the run's own training data.")
@click.option("--test", "test_ref", help="Real test data: a file or DATASET:SPLIT (e.g. nsl-kdd:test), read with the training table's schema.")
@click.option("--run", "run_ref", type=click.Path(exists=True), help="Run directory whose domain reads a SAMPLES file (for images, curves).")
@click.option("--label", help="Label column of a table file without a manifest.")
@click.option("--dataset", help="Read --real/--test files with this registered dataset's layout (e.g. nsl-kdd for a copy of KDDTest+.txt).")
@click.option("--target", "target_kind", type=click.Choice(["auto", "category", "label"]), default="auto", show_default=True,
              help="Classes the detectors learn: the label, or its category where the data maps labels to categories (auto: category when available).")
@click.option("--detector", default="random-forest", show_default=True,
              help="Detector for label fidelity, TSTR and augmentation: random-forest, gradient-boosting, logistic-regression, mlp or one a plugin registers.")
@click.option("--unsafe-load-detector", "unsafe_detector", type=click.Path(exists=True, dir_okay=False),
              help="Use the scikit-learn estimator pickled in FILE as the detector. UNSAFE: unpickling executes any code the file holds; use only files you made or trust.")
@click.option("--realism", "realism", default="gradient-boosting,logistic-regression", show_default=True,
              help="Detectors told to separate real from synthetic samples, comma separated.")
@click.option("-n", "n", type=int, help="Synthetic samples drawn from a run (default: as many as real training samples, at most 50,000).")
@click.option("--seeds", type=int, default=5, show_default=True, help="Detector seeds (augmentation reports mean and spread over them).")
@click.option("--utility-seeds", type=int, help="Detector seeds for TSTR/TRTR (default: --seeds).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for sampling and subsampling.")
@click.option("--rare", help="Classes to augment, comma separated (default: classes under 5% of the training rows).")
@click.option("--normal", default="normal", show_default=True, help="The benign class whose false-positive rate is reported (case aside; the default also finds a benign class).")
@click.option("--aug-per-class", type=int, default=1000, show_default=True, help="Synthetic rows per rare class added for the augmentation uplift.")
@click.option("--folds", type=int, default=5, show_default=True, help="Cross-validation folds of the realism AUC.")
@click.option("--max-rows", type=int, default=10000, show_default=True, help="Rows per side for realism AUC and memorisation (subsampled above it).")
@click.option("--json", "json_out", type=click.Path(), metavar="FILE", help="Write the report as JSON to FILE.")
@click.option("--html", "html_out", type=click.Path(), metavar="FILE", help="Write one self-contained HTML report (plots embedded) to FILE.")
@click.option("--plots/--no-plots", default=True, show_default=True, help="Write plots (into the run directory, or beside --html).")
@_threads_option("the detectors and sampling")
@click.option("--quiet", "-q", is_flag=True,
              help="No progress lines (by default each phase, fold and seed is shown on stderr with its seconds).")
def evaluate_cmd(
    target: str,
    real_ref: str | None,
    test_ref: str | None,
    run_ref: str | None,
    label: str | None,
    dataset: str | None,
    target_kind: str,
    detector: str,
    unsafe_detector: str | None,
    realism: str,
    n: int | None,
    seeds: int,
    utility_seeds: int | None,
    seed: int,
    rare: str | None,
    normal: str,
    aug_per_class: int,
    folds: int,
    max_rows: int,
    json_out: str | None,
    html_out: str | None,
    plots: bool,
    threads: int | None,
    quiet: bool,
) -> None:
    """Judge generated samples with scikit-learn detectors, against real training and test data.

    Reports realism (real-vs-synthetic AUC with gradient boosting and logistic
    regression, correlation difference, cross-column validity), per-column
    fidelity (tables), label fidelity, utility (TSTR vs TRTR), augmentation
    uplift of the rare classes (recall, precision, macro-F1, false positives on
    the normal class, over --seeds detector seeds), memorisation (distance to
    the closest training row) and validity. docs/metrics.md defines each.

    \b
    Examples:
      advgen evaluate runs/tabular --real nsl-kdd:train20 --test nsl-kdd:test --html report.html
      advgen evaluate samples.csv --real nsl-kdd:train20 --test nsl-kdd:test --rare r2l,u2r --json r.json
    """
    from advgen.evaluate import evaluate
    from advgen.metrics.detectors import load_pickled_detector
    from advgen.metrics.html_report import write_html
    from advgen.metrics.plots import write_plots
    from advgen.metrics.report import format_report, write_json
    from advgen.writers import distinct_outputs, output_to_replace, say_replaced

    for name, value in (("--seeds", seeds), ("--folds", folds), ("--max-rows", max_rows), ("--aug-per-class", aug_per_class)):
        if value < 1:
            raise click.BadParameter(f"must be >= 1, got {value}", param_hint=name)
    if folds < 2:
        raise click.BadParameter(f"must be >= 2, got {folds}", param_hint="--folds")
    if n is not None and n < 1:
        raise click.BadParameter(f"must be >= 1, got {n}", param_hint="-n")
    # before the long work: a report that cannot be written is refused now, not after minutes
    distinct_outputs({"--json": json_out, "--html": html_out}, {"TARGET": target, "--real": real_ref, "--test": test_ref})
    json_replaced = output_to_replace(json_out, "--json") if json_out else None
    html_replaced = output_to_replace(html_out, "--html") if html_out else None
    from advgen.threads import default_threads, limit_threads

    say = _say(quiet)
    rare_classes = _classes(rare)
    n_threads = threads or default_threads()
    say(f"using {n_threads} thread(s) (--threads)")
    # held until the command ends: sampling, detectors and plots all run under the limit
    click.get_current_context().with_resource(limit_threads(n_threads))
    det: Any = load_pickled_detector(unsafe_detector) if unsafe_detector else detector
    det = _capped(det, n_threads)
    realism_dets = [_capped(d, n_threads) for d in _classes(realism) or []]

    loaded = _load_for_evaluation(
        Path(target), real_ref, test_ref, run_ref, label, dataset, target_kind, n, seed, rare_classes, aug_per_class, say
    )
    report = evaluate(
        loaded.synthetic,
        loaded.real,
        loaded.test,
        subject=loaded.subject,
        detector=det,
        seeds=seeds,
        utility_seeds=utility_seeds,
        seed=seed,
        rare=rare_classes,
        normal=normal,
        augment_with=loaded.augment_with,
        augment_per_class=aug_per_class,
        realism_detectors=realism_dets,
        folds=folds,
        max_rows=max_rows,
        progress=say,
    )
    report["notes"] = loaded.notes + report["notes"]
    report["inputs"] = {"target": str(target), "real": real_ref or "run training data", "test": test_ref}
    click.echo(format_report(report))

    images: list[Path] = []
    plot_dir = loaded.run_dir or (Path(html_out).parent if html_out else None)
    tmp_dir = None
    if plots and plot_dir is None and html_out:
        tmp_dir = tempfile.TemporaryDirectory()
        plot_dir = Path(tmp_dir.name)
    if plots and plot_dir is not None:
        say("plots ...")
        try:
            images = write_plots(report, loaded.subject, loaded.real, loaded.synthetic, plot_dir)
        except AdvgenError as exc:  # matplotlib missing: the numbers still count
            click.echo(f"warning: {exc}", err=True)
        for img in images:
            click.echo(f"plot: {img}")
    if json_out:
        write_json(report, json_out)
        say_replaced(json_replaced, json_out)
        click.echo(f"json: {json_out}")
    if html_out:
        write_html(report, images, html_out)
        say_replaced(html_replaced, html_out)
        click.echo(f"html: {html_out}")
    if tmp_dir is not None:
        tmp_dir.cleanup()


@dataclass
class _Loaded:
    subject: Any
    synthetic: Any
    real: Any
    test: Any
    augment_with: Any
    run_dir: Path | None
    notes: list[str]


def _load_for_evaluation(
    target: Path,
    real_ref: str | None,
    test_ref: str | None,
    run_ref: str | None,
    label: str | None,
    dataset: str | None,
    target_kind: str,
    n: int | None,
    seed: int,
    rare: list[str] | None,
    aug_per_class: int,
    say: Any,
) -> _Loaded:
    """Read the synthetic, real and test samples and decide how they are featurized."""
    from advgen.augment import read_table
    from advgen.evaluate import Subject
    from advgen.metrics.fidelity import check_columns

    notes: list[str] = []
    run = None
    if _is_run(target):
        from advgen.api import load_run

        run = load_run(target)
    elif run_ref is not None:
        from advgen.api import load_run

        run = load_run(run_ref)

    table_run = run is not None and bool(run.spec.get("columns"))
    from_run = run is not None and _is_run(target)
    if run is None or table_run:
        # tables: the real table (schema, label, category map) comes from --real or the run's data; with a
        # run, every table is read with the run's schema, so its validators find the columns they know
        if real_ref is None and run is None:
            raise click.UsageError("evaluating a samples file needs --real TRAIN (a file or DATASET:SPLIT)")
        schema = _schema_of(run.spec["columns"]) if run is not None else None
        layout = dataset or (_registered(run.spec.get("dataset")) if run is not None else None)
        if real_ref is None:
            real_src = _run_table(run, schema)
        else:
            real_src = load_real_table(real_ref, label=label, dataset=layout, schema=schema)
        table = real_src.table
        constants = dict(run.spec.get("constants") or {}) if run is not None else {}
        real_notes = _table_notes(table.notes, constants)
        if table.label is None:
            raise InvalidDataError("the real table has no label column; pass --label COLUMN")
        columns = [c.to_dict() for c in table.columns]
        label_map = _label_map(table, target_kind, run.spec.get("category_map") if run is not None else None)
        validators = run.validators() if run is not None else []
        no_run_note = run is None
        subject = Subject.for_table(
            columns, table.df, label=table.label, label_map=label_map, validators=validators, name=table.name
        )
        test = None
        if test_ref is not None:
            test_src = load_real_table(test_ref, schema=table.columns, dataset=layout or real_src.dataset)
            test = test_src.table.df
            if len(test) == 0:
                raise InvalidDataError(f"the test data {test_ref} has no rows")
            notes.extend(_side_notes(real_notes, _table_notes(test_src.table.notes, constants)))
        else:
            notes.extend(_side_notes(real_notes, []))
        if no_run_note:
            notes.append("no run given: validators not applied (pass --run RUN_DIR to apply the domain's rules)")
        augment_with = None
        if from_run:
            count = n or min(len(table.df), 50_000)
            say(f"sampling {count} rows from {run.run_dir} ...")
            t = time.perf_counter()
            synthetic = run.sample(count, seed=seed)
            say(f"sampling: done in {time.perf_counter() - t:.1f} s")
            augment_with = _sample_rare(run, table, subject, rare, aug_per_class, seed, notes, say)
        else:
            synthetic = read_table(target)
            check_columns(table.df, synthetic, columns)
        return _Loaded(subject, synthetic, table.df, test, augment_with, run.run_dir if from_run else None, notes)

    # any other domain: the run's domain reads and featurizes everything
    subject = Subject.from_domain(run.domain, run.spec, validators=run.validators(), label_map=None)
    real = run.domain.read_samples(Path(real_ref), run.spec) if real_ref else run.load_real().samples
    if real is None:
        raise InvalidDataError(f"the {run.domain.name} domain gave no real samples; pass --real FILE")
    test = run.domain.read_samples(Path(test_ref), run.spec) if test_ref else None
    if _is_run(target):
        count = n or min(run.domain.num_samples(real), 50_000)
        say(f"sampling {count} samples from {run.run_dir} ...")
        t = time.perf_counter()
        synthetic = run.sample(count, seed=seed)
        say(f"sampling: done in {time.perf_counter() - t:.1f} s")
    else:
        synthetic = run.domain.read_samples(target, run.spec)
    return _Loaded(subject, synthetic, real, test, None, run.run_dir if _is_run(target) else None, notes)


# the loader's words for columns a table read with a run's schema has and the schema lacks
_NOT_KEPT = "dropped columns the schema does not keep: "


def _table_notes(notes: list[str], constants: dict[str, Any]) -> list[str]:
    """The loader's notes on a table read with a run's schema, with the run's constant columns said as
    such: the loader, told to keep only the schema's columns, calls every other column one 'the schema
    does not keep', but a column constant in the training data left the schema because it is constant."""
    out: list[str] = []
    for note in notes:
        if not note.startswith(_NOT_KEPT) or not constants:
            out.append(note)
            continue
        names = [c.strip() for c in note[len(_NOT_KEPT):].split(",") if c.strip()]
        const = [c for c in names if c in constants]
        other = [c for c in names if c not in constants]
        if const:
            shown = ", ".join(f"{c}={constants[c]!r}" for c in const)
            out.append(f"dropped columns constant in the run's training data (not judged: the samples "
                       f"hold the same value): {shown}")
        if other:
            out.append(f"dropped columns the run does not model: {', '.join(other)}")
    return out


def _side_notes(real: list[str], test: list[str]) -> list[str]:
    """Notes on the real training table (``real:``) and on the --test table (``test:``); one said of both
    is given once, as ``real and test:``."""
    both = [n for n in real if n in test]
    return (
        [f"real: {n}" for n in real if n not in both]
        + [f"real and test: {n}" for n in both]
        + [f"test: {n}" for n in test if n not in both]
    )


def _schema_of(spec_columns: list[dict[str, Any]]) -> list[Any]:
    from advgen_datasets import ColumnSchema

    return [ColumnSchema(c["name"], c["kind"], c.get("role", "feature")) for c in spec_columns]


def _registered(name: str | None) -> str | None:
    """``name`` when it is a registered dataset (a run on a plain file records the file's stem instead)."""
    if not name:
        return None
    from advgen_datasets import registry

    return name if name in registry() else None


def _run_table(run: Any, schema: list[Any] | None = None) -> TableSource:
    """The run's own training table, read again with the dataset registry."""
    cfg = run.config
    if cfg.data:
        return load_real_table(cfg.data, label=cfg.label, dataset=cfg.dataset, schema=schema)
    dataset = cfg.dataset or run.spec.get("dataset")
    split = cfg.split or run.spec.get("split")
    if not dataset:
        raise click.UsageError("cannot tell which data the run trained on; pass --real TRAIN")
    ref = f"{dataset}:{split}" if split else str(dataset)
    return load_real_table(ref, schema=schema)


def _label_map(table: Any, target_kind: str, fallback: dict[str, str] | None = None) -> dict[str, str] | None:
    if target_kind == "label":
        return None
    if table.category_map or fallback:
        return dict(table.category_map or fallback)
    if target_kind == "category":
        raise InvalidDataError(f"{table.name} maps no label to a category; use --target label")
    return None


def _sample_rare(
    run: Any, table: Any, subject: Any, rare: list[str] | None, per_class: int, seed: int, notes: list[str], say: Any
) -> Any:
    """Rows of each rare class sampled from a conditional run, for the augmentation uplift."""
    from advgen.augment import condition_key
    from advgen.metrics.augmentation import default_rare_classes

    if not run.spec.get("conditions"):
        notes.append("unconditional run: augmentation uses the rare-class rows among the synthetic samples")
        return None
    classes = rare or default_rare_classes(subject.y(table.df))
    if not classes:
        return None
    key = condition_key(run, classes)
    say(f"sampling {per_class} rows of each of {', '.join(classes)} for the augmentation ...")
    t = time.perf_counter()
    parts = [run.sample(per_class, condition={key: c}, seed=seed + 1 + i) for i, c in enumerate(classes)]
    say(f"sampling for the augmentation: done in {time.perf_counter() - t:.1f} s")
    import pandas as pd

    return pd.concat(parts, ignore_index=True)


@click.command("augment")
@click.argument("run_dir", type=click.Path(exists=True))
@click.option("--data", "data_ref", help="Real training data: a file or DATASET:SPLIT (default: the run's own training data).")
@click.option("--label", help="Label column of a table file without a manifest.")
@click.option("--dataset", help="Read a --data file with this registered dataset's layout (default: the run's dataset).")
@click.option("--classes", required=True, help="Classes to add synthetic rows of, comma separated (e.g. r2l,u2r).")
@click.option("--per-class", type=int, help="Synthetic rows added per class.")
@click.option("--balance", is_flag=True, help="Add to each class as many rows as it lacks to match the largest class.")
@click.option("--output", "-o", required=True, type=click.Path(), metavar="FILE",
              help="Output table: .csv or .parquet (an existing file is replaced once the new one is complete).")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling seed.")
@_threads_option("sampling")
def augment_cmd(
    run_dir: str, data_ref: str | None, label: str | None, dataset: str | None, classes: str, per_class: int | None,
    balance: bool, output: str, seed: int, threads: int | None,
) -> None:
    """Write an augmented training set: the real rows plus synthetic rows of chosen classes.

    A column `synthetic` (0 real, 1 generated) marks the generated rows, so a
    detector pipeline can train on both or filter them out. The other columns
    are those `advgen sample` writes, in its order (constant columns included).

    \b
    Examples:
      advgen augment runs/tabular --data nsl-kdd:train20 --classes r2l,u2r --per-class 2000 -o aug.csv
      advgen augment runs/tabular --classes u2r --balance -o aug.parquet
    """
    from advgen.api import load_run
    from advgen.augment import TABLE_SUFFIXES, augment, write_table
    from advgen.threads import default_threads, limit_threads
    from advgen.writers import distinct_outputs, output_to_replace, say_replaced

    if (per_class is None) == (not balance):
        raise click.UsageError("choose one of --per-class N and --balance")
    if per_class is not None and per_class < 1:
        raise click.BadParameter(f"must be >= 1, got {per_class}", param_hint="--per-class")
    distinct_outputs({"-o": output}, {"--data": data_ref})
    replaced = output_to_replace(output, "-o")  # before the suffix check: /dev/full has no suffix
    if Path(output).suffix.lower() not in TABLE_SUFFIXES:
        raise click.BadParameter("use a .csv or .parquet file", param_hint="--output")
    wanted = _classes(classes) or []
    click.get_current_context().with_resource(limit_threads(threads or default_threads()))
    run = load_run(run_dir)
    if not run.spec.get("columns"):
        raise click.ClickException(f"{run_dir} is a {run.domain.name} run; augment works on table runs")
    schema = _schema_of(run.spec["columns"])
    layout = dataset or _registered(run.spec.get("dataset"))
    src = load_real_table(data_ref, label=label, dataset=layout, schema=schema) if data_ref else _run_table(run, schema)
    df = augment(
        run, src.table.df, wanted, per_class=per_class, balance=balance, seed=seed,
        category_map=src.table.category_map, constants=src.table.constants,
    )
    write_table(df, output)
    say_replaced(replaced, output)
    added = ", ".join(f"{c}: {k:,}" for c, k in df.attrs.get("added", {}).items())
    click.echo(f"wrote {len(df):,} rows ({int(df['synthetic'].sum()):,} synthetic; {added}) to {output}")
