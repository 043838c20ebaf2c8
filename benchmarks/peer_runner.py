"""Train one peer generator (the ``ctgan`` package or an SDV synthesizer) and sample from it.

Run by ``benchmarks/peers.py`` inside a virtual environment of its own (SDV and the ``ctgan`` package
pin ``pandas<3``, advgen is developed and measured on pandas 3), so this file imports neither advgen
nor anything outside the peers' own dependencies. Data goes in and out through files:

- in: ``--train`` (Parquet, the cleaned training table every generator gets) and ``--spec`` (JSON:
  ``discrete`` and ``numeric`` column names, ``label``, ``category_map`` attack name -> category);
- out, under ``--out``: ``samples.parquet`` (``-n`` rows), ``aug.parquet`` (rows asked per rare
  category, see below) and ``info.json`` (times, budget, precision, device, versions, rows asked and
  returned).

Generators, each with its library's defaults except the epochs (the budget):

- ``ctgan``: ``ctgan.CTGAN``; its output is raw (no clipping, no rounding);
- ``sdv-ctgan``, ``sdv-tvae``, ``sdv-copula``: SDV's ``CTGANSynthesizer``, ``TVAESynthesizer`` and
  ``GaussianCopulaSynthesizer``, whose output SDV post-processes itself (``enforce_min_max_values``
  and ``enforce_rounding``, on by default).

Timing, the same split as advgen's: ``fit_seconds`` runs from reading the Parquet file to the end of
the fit (metadata, transform fitting, encoding, sampler set-up, training); ``loop_seconds`` is the
training loop alone, timed around the epoch loop of CTGAN and TVAE (their ``tqdm`` iterator is wrapped),
and around the model fit (marginals and correlations) for the Gaussian copula, which has no loop.

Rare categories are asked for through each library's conditional sampling, on the attack names that
make up the category, in proportion to their training counts (CTGAN: its conditional vector, which
may return rows of another label; SDV: ``sample_from_conditions``, rejection sampling, which may return
fewer rows than asked or none). ``info.json`` records how many rows were asked and returned per category.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

GENERATORS = ("ctgan", "sdv-ctgan", "sdv-tvae", "sdv-copula")


class LoopTimer:
    """Stands in for ``tqdm`` in a module: times the iteration of the epoch loop it wraps."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self, iterable: Any, *args: Any, **kwargs: Any) -> _TimedLoop:
        return _TimedLoop(self, iterable)


class _TimedLoop:
    def __init__(self, timer: LoopTimer, iterable: Any) -> None:
        self.timer, self.iterable = timer, iterable

    def __iter__(self) -> Any:
        start = time.perf_counter()
        try:
            yield from self.iterable
        finally:
            self.timer.seconds += time.perf_counter() - start

    def __getattr__(self, name: str) -> Any:  # set_description, set_postfix, ... under verbose=True
        return lambda *a, **k: None


def _seed(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _median_time(fn: Any, repeats: int) -> tuple[Any, float]:
    """``fn()``'s first result and the median of ``repeats`` timings."""
    result, times = None, []
    for i in range(max(repeats, 1)):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
        if i == 0:
            result = out
    return result, statistics.median(times)


def _sdv_metadata(df: Any, spec: dict[str, Any]) -> Any:
    """SDV's own detection, with every column's type set as advgen's schema and CTGAN see it."""
    from sdv.metadata import Metadata

    metadata = Metadata.detect_from_dataframes({"table": df})
    for name in df.columns:
        sdtype = "categorical" if name in spec["discrete"] else "numerical"
        metadata.update_column(name, sdtype=sdtype, table_name="table")
    metadata.validate()
    return metadata


def build(generator: str, df: Any, spec: dict[str, Any], epochs: int) -> tuple[Any, LoopTimer]:
    """The model, and the timer patched around its training loop."""
    from ctgan.synthesizers import ctgan as ctgan_module
    from ctgan.synthesizers import tvae as tvae_module

    timer = LoopTimer()
    ctgan_module.tqdm = timer  # SDV's CTGAN and TVAE synthesizers train the ctgan package's models
    tvae_module.tqdm = timer
    if generator == "ctgan":
        return ctgan_module.CTGAN(epochs=epochs, verbose=False), timer
    from sdv.single_table import CTGANSynthesizer, GaussianCopulaSynthesizer, TVAESynthesizer

    metadata = _sdv_metadata(df, spec)
    if generator == "sdv-ctgan":
        return CTGANSynthesizer(metadata, epochs=epochs), timer
    if generator == "sdv-tvae":
        return TVAESynthesizer(metadata, epochs=epochs), timer
    synth = GaussianCopulaSynthesizer(metadata)
    fit_model = synth._fit  # no loop to wrap: the copula's whole model fit is its "training"

    def timed_fit(processed: Any) -> Any:
        start = time.perf_counter()
        try:
            return fit_model(processed)
        finally:
            timer.seconds += time.perf_counter() - start

    synth._fit = timed_fit
    return synth, timer


def _table(result: Any) -> Any:
    """SDV 2 takes and returns ``{table name: DataFrame}`` even for one table."""
    return next(iter(result.values())) if isinstance(result, dict) else result


def fit(generator: str, model: Any, df: Any, spec: dict[str, Any]) -> None:
    if generator == "ctgan":
        model.fit(df, discrete_columns=list(spec["discrete"]))
    else:
        model.fit({"table": df})


def sample(generator: str, model: Any, n: int) -> Any:
    return model.sample(n) if generator == "ctgan" else _table(model.sample(num_rows=n))


def sample_label(generator: str, model: Any, label: str, value: str, k: int, max_tries: int) -> Any:
    """``k`` rows asked for with ``label == value``; SDV may return fewer (rejection sampling)."""
    if generator == "ctgan":
        return model.sample(k, condition_column=label, condition_value=value)
    from sdv.sampling import Condition

    try:
        conditions = [Condition(num_rows=k, column_values={label: value})]
        return _table(model.sample_from_conditions(conditions, max_tries_per_batch=max_tries))
    except Exception as exc:  # SDV raises when rejection sampling finds no row at all
        print(f"[peer] {generator}: no rows for {label}={value}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return None


def describe(generator: str, model: Any, rows: int, epochs: int, loop_seconds: float) -> dict[str, Any]:
    """Device, precision, and real rows fed to the model per second of its training loop."""
    if generator == "sdv-copula":
        return {"device": "cpu", "precision": "float64 (NumPy/SciPy)", "epochs": None, "train_rows_per_s": None}
    inner = model if generator == "ctgan" else model._model
    device = str(getattr(inner, "_device", "cpu"))
    if generator == "sdv-tvae":
        fed = epochs * rows  # one pass over the table per epoch
    else:
        batch, d_steps = inner._batch_size, inner._discriminator_steps
        fed = epochs * max(rows // batch, 1) * batch * d_steps  # as advgen's engine counts them
    return {
        "device": device,
        "precision": "float32",
        "epochs": epochs,
        "train_rows_per_s": fed / loop_seconds if loop_seconds > 0 else None,
    }


def versions() -> dict[str, str]:
    import ctgan
    import numpy
    import pandas
    import torch

    out = {"ctgan": ctgan.__version__, "torch": torch.__version__, "pandas": pandas.__version__,
           "numpy": numpy.__version__, "python": sys.version.split()[0]}
    try:
        import sdv

        out["sdv"] = sdv.__version__
    except ImportError:
        pass
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--generator", choices=GENERATORS, required=True)
    p.add_argument("--train", required=True, help="Parquet file of the training table.")
    p.add_argument("--spec", required=True, help="JSON: discrete, numeric, label, category_map.")
    p.add_argument("--out", required=True, help="Folder for samples.parquet, aug.parquet and info.json.")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("-n", type=int, default=0, help="Rows to sample (default: the training rows).")
    p.add_argument("--aug-per-class", type=int, default=1000)
    p.add_argument("--rare", default="r2l,u2r")
    p.add_argument("--sample-repeats", type=int, default=5, help="Timed sampling runs (median).")
    p.add_argument("--max-tries", type=int, default=100, help="SDV's max_tries_per_batch (its default: 100).")
    p.add_argument("--calibrate", action="store_true", help="Fit only and write info.json (budget calibration).")
    args = p.parse_args()
    warnings.filterwarnings("ignore")  # SDV and rdt warn about metadata and future changes on every fit

    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    _seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = json.loads(Path(args.spec).read_text())

    t_all = time.perf_counter()
    df = pd.read_parquet(args.train)
    model, timer = build(args.generator, df, spec, args.epochs)
    fit(args.generator, model, df, spec)
    fit_seconds = time.perf_counter() - t_all
    info: dict[str, Any] = {
        "generator": args.generator,
        "seed": args.seed,
        "rows": len(df),
        "fit_seconds": fit_seconds,
        "loop_seconds": timer.seconds,
        **describe(args.generator, model, len(df), args.epochs, timer.seconds),
        "versions": versions(),
    }
    if args.calibrate:
        (out / "info.json").write_text(json.dumps(info, indent=2))
        return

    n = args.n or len(df)
    sample(args.generator, model, min(n, 1000))  # warm-up
    samples, seconds = _median_time(lambda: sample(args.generator, model, n), args.sample_repeats)
    samples.to_parquet(out / "samples.parquet", index=False)

    label, cmap = spec["label"], spec["category_map"]
    counts = df[label].astype(str).value_counts()
    parts, asked = [], {}
    for cat in [r for r in args.rare.split(",") if r]:
        names = [name for name in counts.index if cmap.get(name, name) == cat]
        total = sum(int(counts[name]) for name in names)
        asked[cat] = {"asked": 0, "returned": 0, "returned_in_category": 0}
        for name in names:
            k = max(1, round(args.aug_per_class * int(counts[name]) / total))
            rows = sample_label(args.generator, model, label, name, k, args.max_tries)
            asked[cat]["asked"] += k
            if rows is None or len(rows) == 0:
                continue
            asked[cat]["returned"] += len(rows)
            asked[cat]["returned_in_category"] += int(
                rows[label].astype(str).map(lambda v: cmap.get(v, v)).eq(cat).sum()
            )
            parts.append(rows)
    aug = pd.concat(parts, ignore_index=True) if parts else samples.iloc[:0]
    aug.to_parquet(out / "aug.parquet", index=False)
    info.update({
        "n": n,
        "sample_rows_per_s": n / seconds if seconds > 0 else None,
        "augmentation_rows": asked,
        "peak_rss_mib": _peak_rss_mib(),
        "post_processed": args.generator != "ctgan",  # SDV clips and rounds its output itself
    })
    (out / "info.json").write_text(json.dumps(info, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")  # SDV's sampling progress bars
    main()
