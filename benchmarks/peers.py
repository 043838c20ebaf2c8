"""advgen's tabular generator beside its peers (CTGAN, SDV's CTGAN, TVAE and Gaussian copula), side by side.

    pip install torch==2.13.0 ".[bench]"
    python benchmarks/peers.py --markdown docs/benchmark-peers.md --json peers.json   # full run (2-3 h, 2 cores)
    python benchmarks/peers.py --quick --seeds 1                                      # smoke run (minutes)

Same data, same budget, same rows, same judge, for every generator:

1. Data. NSL-KDD ``KDDTrain+_20Percent`` (``--rows-limit N`` / ``--quick``: N random rows plus every row
   of the rare categories, for every generator alike), judged against ``KDDTest+``.
2. Generators, each over ``--seeds`` training seeds (default 3):
   - ``advgen``: the tabular plugin's defaults, bf16 autocast where the device has native bf16 (as it
     ships); ``advgen-fp32``: the same in float32 (``amp = false``, the CLI's ``--no-amp``);
   - ``ctgan``: the ``ctgan`` package's ``CTGAN``, defaults, ``--epochs`` (50): the reference budget;
   - ``sdv-ctgan``, ``sdv-tvae``, ``sdv-copula``: SDV 2's ``CTGANSynthesizer``, ``TVAESynthesizer`` and
     ``GaussianCopulaSynthesizer``, defaults except the epochs.
   The peers run in a virtual environment of their own (``--peer-venv``; made on first use with
   ``pip install torch==<advgen's torch> "sdv>=2,<3" pyarrow``): SDV, rdt and copulas pin ``pandas<3``,
   and advgen is developed and measured on pandas 3. Tables go back and forth as Parquet files;
   ``benchmarks/peer_runner.py`` is what runs there. Every generator runs on CUDA when torch sees it
   (advgen's ``device = "auto"``, the peers' ``enable_gpu=True`` default); the device is reported.
3. Budget: CTGAN's whole-fit wall clock (mean over seeds). advgen gets as many steps, SDV's CTGAN and
   TVAE as many epochs, as fit in it: a short calibration fit (seed 0) measures each one's fixed cost
   (whole fit minus loop) and its time per step or epoch, and the real fits take
   ``0.95 * (budget - fixed) / per_step`` (``--advgen-steps`` and ``--sdv-epochs`` override). The
   Gaussian copula has no training budget to set: its fit is reported as it comes.
4. Timing, the same split for everyone: the whole fit (reading the table, transform fitting, encoding,
   sampler set-up, training) and the training loop alone (advgen: the engine's loop; CTGAN and TVAE: their
   epoch loop; the copula: its model fit). Precision: advgen bf16 or fp32 as said, the peers float32
   (the copula float64, NumPy).
5. Samples: each generator samples as many rows as the training table has, plus ``--aug-per-class``
   rows of each rare category through its own conditional sampling (advgen:
   ``condition={"category": ...}``; CTGAN: its conditional vector on the attack names of the category,
   in proportion to their training counts, which may return rows of another label; SDV: rejection
   sampling on the same names, which may return fewer rows or none). Rows asked, returned in the
   category, and actually added to the detector's training rows are reported.
6. Two treatments. SDV post-processes its output by default (``enforce_min_max_values``,
   ``enforce_rounding``: numeric values clipped to the real min/max, rounded to the decimals the real
   values carry). Generators that do not do it themselves (advgen, the ``ctgan`` package) are judged raw
   and with the same post-processing applied here (:func:`sdv_postprocess`); the post-processed rows are
   the headline. SDV's own output has no raw form to judge (its reverse transform rounds integer columns
   even with ``enforce_rounding=False``), so SDV peers appear in the headline table only.
7. Judge: :func:`advgen.evaluate.evaluate` against KDDTest+, the same for everyone: realism AUC (gradient
   boosting, logistic regression), fidelity, TSTR macro-F1, augmentation uplift, validity (advgen's
   validators, fitted on the training table, applied to every generator's rows), memorisation.
   Figures are mean +- std over the seeds. A floor counts as met only when the whole band
   mean +- std clears it.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import peer_report

RARE = ["r2l", "u2r"]
ADVGEN = ("advgen", "advgen-fp32")
SDV = ("sdv-ctgan", "sdv-tvae", "sdv-copula")
GENERATORS = (*ADVGEN, "ctgan", *SDV)
PEER_REQUIREMENTS = ["sdv>=2.0,<3", "pyarrow>=14"]  # sdv brings the ctgan package


# --- helpers shared by the workers ----------------------------------------------------------------


def _peak_rss_mib() -> float:
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def matmul_rate(
    threads: int, shapes: list[tuple[int, int, int]], min_seconds: float = 1.0, dtype: str = "float32"
) -> dict[str, Any]:
    """GFLOP/s torch reaches on ``a[m,k] @ b[k,n]`` in ``dtype`` on the CPU for each shape (best of timed repeats)."""
    import torch

    torch.set_num_threads(threads)
    out = {}
    for m, k, n in shapes:
        a, b = torch.randn(m, k).to(getattr(torch, dtype)), torch.randn(k, n).to(getattr(torch, dtype))
        for _ in range(3):
            a @ b
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < min_seconds:
            a @ b
            reps += 1
        out[f"{m}x{k}x{n}"] = 2.0 * m * k * n * reps / (time.perf_counter() - t0) / 1e9
    return {"dtype": dtype, "gflops": out, "best_gflops": max(out.values())}


def timed(fn: Any, repeats: int = 5) -> tuple[Any, float]:
    """``fn()``'s first result and the median of ``repeats`` timings (single runs of a few hundred
    milliseconds vary by 2x on a shared VM)."""
    result, times = None, []
    for i in range(max(repeats, 1)):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
        if i == 0:
            result = out
    return result, statistics.median(times)


def training_table(train_file: str | None) -> Any:
    """The table every generator trains on: the dataset's split, or the ``--rows-limit`` subset file
    (raw lines of the same file, read with the dataset's layout)."""
    from advgen_datasets import load_table

    if train_file:
        return load_table("nsl-kdd", path=train_file)
    return load_table("nsl-kdd", "train20")


def write_subset(path: Path, rows: int, rare: list[str]) -> None:
    """``rows`` random lines of KDDTrain+_20Percent plus every line of the ``rare`` categories (a random
    subset of 5,000 rows holds 2 u2r rows on average, too few to ask a generator for)."""
    import numpy as np
    from advgen_datasets import load_table
    from advgen_datasets.table import resolve_table

    source = resolve_table("nsl-kdd", "train20").files[0]
    lines = source.read_text().splitlines()
    table = load_table("nsl-kdd", "train20")
    if len(table.df) != len(lines):
        raise SystemExit(f"benchmark: {source} has {len(lines)} lines but {len(table.df)} rows; cannot subset it")
    category = table.df[table.label].astype(str).map(lambda v: table.category_map.get(v, v)).to_numpy()
    keep = np.isin(category, rare)
    others = np.flatnonzero(~keep)
    pick = np.random.default_rng(0).choice(others, size=min(rows, len(others)), replace=False)
    chosen = np.sort(np.concatenate([np.flatnonzero(keep), pick]))
    path.write_text("\n".join(lines[i] for i in chosen) + "\n")


# --- advgen worker (runs in advgen's own environment) ---------------------------------------------


def worker_advgen(args: argparse.Namespace) -> None:
    import numpy as np
    import pandas as pd
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from advgen.api import train

    out = Path(args.out)
    config: dict[str, Any] = {
        "plugin": "tabular", "dataset": "nsl-kdd", "steps": args.steps, "threads": args.threads,
        "n_samples": 0, "out": str(out / "run"), "seed": args.seed, "ckpt_every": max(args.steps, 1),
        "device": "auto", "amp": not args.no_amp,
    }
    if args.train_file:
        config["data"] = args.train_file
    else:
        config["split"] = "train20"
    t_all = time.perf_counter()
    run = train(config, progress=False, overwrite=True)
    fit_seconds = time.perf_counter() - t_all
    summary = run.summary
    result: dict[str, Any] = {
        "generator": "advgen-fp32" if args.no_amp else "advgen",
        "seed": args.seed,
        "steps": args.steps,
        "rows": summary.get("data_rows"),
        "fit_seconds": fit_seconds,
        "load_seconds": summary.get("load_seconds"),
        "loop_seconds": summary["seconds"],
        "train_rows_per_s": summary["rows_per_s"],
        "device": summary.get("device", str(run.device)),
        "precision": "bfloat16 autocast" if summary.get("amp") else "float32",
        "run_dir": str(out / "run"),
    }
    if args.calibrate:
        (out / "info.json").write_text(json.dumps(result, indent=2))
        return

    run.sample(min(args.n, 1000), seed=1)  # warm-up
    samples, sample_seconds = timed(lambda: run.sample(args.n, seed=args.seed), args.sample_repeats)
    samples.to_parquet(out / "samples.parquet", index=False)
    result["sample_rows_per_s"] = args.n / sample_seconds
    result["n"] = args.n

    parts, asked = [], {}
    cmap = run.spec.get("category_map") or {}
    label = run.spec["label"]
    for i, cat in enumerate(args.rare):
        rows = run.sample(args.aug_per_class, condition={"category": cat}, seed=10 + i)
        in_cat = int(rows[label].astype(str).map(lambda v: cmap.get(v, v)).eq(cat).sum())
        asked[cat] = {"asked": args.aug_per_class, "returned": len(rows), "returned_in_category": in_cat}
        parts.append(rows)
    pd.concat(parts, ignore_index=True).to_parquet(out / "aug.parquet", index=False)
    result["augmentation_rows"] = asked

    if args.speed_detail and run.device.type == "cpu":
        _, encoded_seconds = timed(lambda: run.sample_encoded(args.n, seed=0), args.sample_repeats)
        # the same in float32, for machines without native bf16 (the shipped path above uses bf16 where
        # the CPU has it, as training does)
        shipped_amp = run.amp
        sample_dtype = "bfloat16" if run.amp else "float32"
        run.amp = False
        run.sample(1000, seed=1)
        _, fp32_seconds = timed(lambda: run.sample(args.n, seed=0), args.sample_repeats)
        _, fp32_encoded_seconds = timed(lambda: run.sample_encoded(args.n, seed=0), args.sample_repeats)
        run.amp = shipped_amp
        # generator FLOPs per row (matmuls and convolutions, as torch's flop counter counts them)
        batch = 4096
        _, cond = run.sample_encoded(8, seed=0)
        z = torch.randn(batch, run.config.z_dim)
        c = torch.as_tensor(np.resize(cond, batch)) if cond is not None else None
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            run.generator(z, c)
        flops_per_row = counter.get_total_flops() / batch
        linear = [m for m in run.generator.modules() if isinstance(m, torch.nn.Linear)]
        widest = max(linear, key=lambda m: m.in_features * m.out_features) if linear else None
        shapes = [(2048, 2048, 2048)]
        if widest is not None:
            shapes.append((16384, widest.in_features, widest.out_features))
        seconds = 0.2 if args.sample_repeats == 1 else 1.0
        result["speed"] = {
            "flops_per_row": flops_per_row,
            "matmul": matmul_rate(args.threads, shapes, seconds),
            "matmul_bf16": matmul_rate(args.threads, shapes, seconds, dtype="bfloat16"),
            "sample_dtype": sample_dtype,
            "sampling_gflops": flops_per_row * args.n / sample_seconds / 1e9,
            "generator_gflops": flops_per_row * args.n / encoded_seconds / 1e9,
            "fp32_sample_rows_per_s": args.n / fp32_seconds,
            "fp32_sampling_gflops": flops_per_row * args.n / fp32_seconds / 1e9,
            "fp32_generator_gflops": flops_per_row * args.n / fp32_encoded_seconds / 1e9,
        }
    result["peak_rss_mib"] = _peak_rss_mib()
    (out / "info.json").write_text(json.dumps(result, indent=2))


# --- running the generators -----------------------------------------------------------------------


def _run(cmd: list[str], args: argparse.Namespace, what: str, out: Path) -> dict[str, Any]:
    """Run one fit in its own process; a fit already done with the same command in ``--work`` is reused
    (a long run that stopped goes on where it stopped)."""
    done_file = out / "command.json"
    if (out / "info.json").exists() and done_file.exists() and json.loads(done_file.read_text()) == cmd[1:]:
        print(f"[bench] {what}: reusing {out}", file=sys.stderr, flush=True)
        return json.loads((out / "info.json").read_text())
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    print(f"[bench] {what}", file=sys.stderr, flush=True)
    done = subprocess.run(cmd, env=env)
    if done.returncode != 0:
        raise SystemExit(f"benchmark: {what} failed (exit status {done.returncode}); its output is above")
    done_file.write_text(json.dumps(cmd[1:]))
    return json.loads((out / "info.json").read_text())


def run_advgen(args: argparse.Namespace, name: str, seed: int, steps: int, calibrate: bool = False) -> dict[str, Any]:
    out = Path(args.work) / ("calibration" if calibrate else "runs") / f"{name}-s{seed}"
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, __file__, "--worker", "advgen", "--out", str(out), "--seed", str(seed),
           "--steps", str(steps), "--threads", str(args.threads), "-n", str(args.n),
           "--aug-per-class", str(args.aug_per_class), "--rare", ",".join(args.rare),
           "--sample-repeats", str(args.sample_repeats)]
    if args.train_file:
        cmd += ["--train-file", args.train_file]
    if name == "advgen-fp32":
        cmd.append("--no-amp")
    if calibrate:
        cmd.append("--calibrate")
    elif name == "advgen" and seed == 0:
        cmd.append("--speed-detail")
    return _run(cmd, args, f"{name} seed {seed}: {steps} steps{' (calibration)' if calibrate else ''}", out)


def run_peer(
    args: argparse.Namespace, python: str, name: str, seed: int, epochs: int, calibrate: bool = False
) -> dict[str, Any]:
    out = Path(args.work) / ("calibration" if calibrate else "runs") / f"{name}-s{seed}"
    cmd = [python, str(Path(__file__).with_name("peer_runner.py")), "--generator", name,
           "--train", str(Path(args.work) / "train.parquet"), "--spec", str(Path(args.work) / "spec.json"),
           "--out", str(out), "--epochs", str(epochs), "--seed", str(seed), "--threads", str(args.threads),
           "-n", str(args.n), "--aug-per-class", str(args.aug_per_class), "--rare", ",".join(args.rare),
           "--sample-repeats", str(args.sample_repeats), "--max-tries", str(args.max_tries)]
    if calibrate:
        cmd.append("--calibrate")
    budget = "" if name == "sdv-copula" else f": {epochs} epochs"
    out.mkdir(parents=True, exist_ok=True)
    return _run(cmd, args, f"{name} seed {seed}{budget}{' (calibration)' if calibrate else ''}", out)


def peer_python(args: argparse.Namespace) -> str:
    """The interpreter of the peers' virtual environment, made (or completed) on first use."""
    if args.peer_python:
        return args.peer_python
    import torch

    venv = Path(args.peer_venv).expanduser()
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import sdv, ctgan, pyarrow, torch"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return str(python)
    if not python.exists():
        print(f"[bench] making the peers' virtual environment {venv}", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # the same torch release as advgen's (pip takes the CPU build where one is at hand, CUDA's elsewhere)
    wanted = [f"torch=={torch.__version__.split('+')[0]}", *PEER_REQUIREMENTS]
    print(f"[bench] installing {' '.join(wanted)} into {venv}", file=sys.stderr, flush=True)
    if subprocess.run([str(python), "-m", "pip", "install", "-q", *wanted]).returncode != 0:
        raise SystemExit(f"benchmark: could not install {' '.join(wanted)} into {venv}; see pip's output above")
    if subprocess.run(probe).returncode != 0:
        raise SystemExit(f"benchmark: {venv} still cannot import sdv, ctgan, pyarrow and torch")
    return str(python)


def budgeted(budget: float, calibration: dict[str, Any], units: int, least: int) -> tuple[int, dict[str, Any]]:
    """Steps or epochs that fit in ``budget`` seconds of whole fit, from a calibration fit of ``units``."""
    per_unit = calibration["loop_seconds"] / units
    fixed = calibration["fit_seconds"] - calibration["loop_seconds"]
    count = max(least, int(0.95 * (budget - fixed) / per_unit)) if per_unit > 0 else least
    return count, {"budget_seconds": budget, "fixed_seconds": fixed, "seconds_per_unit": per_unit,
                   "calibration_units": units, "units": count}


# --- the two treatments ---------------------------------------------------------------------------


def _decimals(values: Any) -> int | None:
    """Decimals the real values carry (0 to 15), as SDV's ``enforce_rounding`` learns them; None: more."""
    import numpy as np

    v = values[np.isfinite(values)]
    for digits in range(16):
        if np.array_equal(np.round(v, digits), v):
            return digits
    return None


def sdv_postprocess(synthetic: Any, real: Any, numeric: list[str]) -> Any:
    """SDV's default post-processing, for generators that do not do it themselves.

    Each numeric column is clipped to the real column's [min, max] (SDV's ``enforce_min_max_values``)
    and rounded to the decimals its real values carry, 0 for counts (``enforce_rounding``); integer
    columns keep their integer type. Other columns are left as they are.
    """
    import numpy as np
    import pandas as pd

    out = synthetic.copy()
    for name in numeric:
        if name not in out.columns:
            continue
        real_values = pd.to_numeric(real[name], errors="coerce").to_numpy(dtype=float)
        values = pd.to_numeric(out[name], errors="coerce").to_numpy(dtype=float)
        values = np.clip(values, np.nanmin(real_values), np.nanmax(real_values))
        digits = _decimals(real_values)
        if digits is not None:
            values = np.round(values, digits)
        if pd.api.types.is_integer_dtype(real[name]) and not np.isnan(values).any():
            out[name] = values.astype(real[name].dtype)
        else:
            out[name] = values
    return out


def changed_share(raw: Any, post: Any, numeric: list[str]) -> float:
    """Share of the numeric values that post-processing changed (0: the rows were already clipped and rounded)."""
    import numpy as np

    cols = [c for c in numeric if c in raw.columns]
    if not cols or len(raw) == 0:
        return 0.0
    a, b = raw[cols].to_numpy(dtype=float), post[cols].to_numpy(dtype=float)
    return float(np.mean(~((a == b) | (np.isnan(a) & np.isnan(b)))))


def treatments(name: str, folder: Path, real: Any, numeric: list[str]) -> dict[str, tuple[Any, Any]]:
    """``{"raw" | "post": (samples, augmentation rows)}`` of one fit."""
    import pandas as pd

    samples, aug = pd.read_parquet(folder / "samples.parquet"), pd.read_parquet(folder / "aug.parquet")
    if name in SDV:
        return {"post": (samples, aug)}
    return {
        "raw": (samples, aug),
        "post": (sdv_postprocess(samples, real, numeric), sdv_postprocess(aug, real, numeric)),
    }


# --- the judge ------------------------------------------------------------------------------------


def judge(args: argparse.Namespace, infos: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, list]]:
    """Every fit's reports, ``{generator: {treatment: [report per seed]}}``."""
    from advgen_datasets import load_table

    from advgen import evaluate as ev
    from advgen.api import load_run
    from advgen.io import atomic_write_text
    from advgen.threads import limit_threads

    train = training_table(args.train_file)
    test = load_table("nsl-kdd", "test", schema=train.columns)
    numeric = [c.name for c in train.columns if c.kind in ev.NUMERIC_KINDS or c.kind == "flag"]
    run = load_run(infos["advgen"][0]["run_dir"])  # its validators, fitted on the training table
    subject = ev.Subject.for_table(
        [c.to_dict() for c in train.columns], train.df, label=train.label, label_map=train.category_map,
        validators=run.validators(), name="nsl-kdd",
    )
    judge_key = [args.detector, args.detector_seeds, args.utility_seeds, args.rare, args.aug_per_class, args.folds,
                 args.max_rows, args.train_file or ""]
    reports: dict[str, dict[str, list]] = {}
    for name, fits in infos.items():
        reports[name] = {}
        for info in fits:
            folder = Path(args.work) / "runs" / f"{name}-s{info['seed']}"
            previous = None
            treated = treatments(name, folder, train.df, numeric)
            # the judge's settings and the very rows judged: a fit made again invalidates its old reports
            key = [*judge_key, *(_digest(folder / f) for f in ("samples.parquet", "aug.parquet"))]
            if "raw" in treated:
                info["post_processing_changed"] = changed_share(treated["raw"][0], treated["post"][0], numeric)
            for treatment, (samples, aug) in treated.items():
                if previous is not None and samples.equals(previous[0]) and aug.equals(previous[1]):
                    report = previous[2]  # post-processing changed nothing: the same rows, the same report
                elif (cached := _cached_report(folder / f"report-{treatment}.json", key)) is not None:
                    print(f"[bench] {name} seed {info['seed']} {treatment}: reusing its report", file=sys.stderr, flush=True)
                    report = cached
                else:
                    tag = f"{name} seed {info['seed']} {treatment}"
                    print(f"[bench] judging {tag}", file=sys.stderr, flush=True)
                    with limit_threads(args.threads):
                        report = ev.evaluate(
                            samples, train.df, test.df, subject=subject, detector=args.detector,
                            seeds=args.detector_seeds, utility_seeds=args.utility_seeds, rare=args.rare,
                            augment_with=aug, augment_per_class=args.aug_per_class, folds=args.folds,
                            max_rows=args.max_rows,
                            progress=lambda m, tag=tag: print(f"[bench]   {tag}: {m}", file=sys.stderr, flush=True),
                        )
                    report = json.loads(json.dumps(report, default=_plain))
                    atomic_write_text(folder / f"report-{treatment}.json", json.dumps({"judge": key, "report": report}))
                reports[name].setdefault(treatment, []).append(report)
                previous = (samples, aug, report)
    return reports


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cached_report(path: Path, key: list[Any]) -> dict[str, Any] | None:
    """The report cached at ``path`` when it was made with ``key`` (same judge, same rows), else None."""
    if not path.exists():
        return None
    cached = json.loads(path.read_text())
    return cached["report"] if cached.get("judge") == key else None


def _plain(o: Any) -> Any:
    """NumPy scalars and arrays as JSON (reports are cached in --work between runs)."""
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    return str(o)


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import sklearn
    import torch

    gpu = f"; GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (f"{cpu}, {os.cpu_count()} logical CPUs{gpu}; Python {platform.python_version()}, torch {torch.__version__}, "
            f"scikit-learn {sklearn.__version__}")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peers", default=",".join(g for g in GENERATORS if g not in ("advgen", "ctgan")),
                   help="Generators beside advgen and CTGAN (which always run: the subject and the budget).")
    p.add_argument("--seeds", type=int, help="Training seeds per generator (default 3; --quick: 1).")
    p.add_argument("--epochs", type=int, default=50, help="CTGAN epochs (its wall clock is every generator's budget).")
    p.add_argument("--advgen-steps", type=int, help="advgen steps (default: as many as fit in CTGAN's wall clock).")
    p.add_argument("--sdv-epochs", type=int, help="SDV CTGAN and TVAE epochs (default: as many as fit in the budget).")
    p.add_argument("--threads", type=int, default=2, help="torch threads for every generator and the judge.")
    p.add_argument("-n", type=int, default=0, help="Rows each generator samples (default: the training rows).")
    p.add_argument("--aug-per-class", type=int, default=1000, help="Synthetic rows per rare class for augmentation.")
    p.add_argument("--rare", default=",".join(RARE), help="Rare categories to augment.")
    p.add_argument("--detector-seeds", type=int, default=5, help="Detector seeds for the augmentation uplift.")
    p.add_argument("--utility-seeds", type=int, default=3, help="Detector seeds for TSTR/TRTR.")
    p.add_argument("--detector", default="random-forest")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--max-rows", type=int, default=10000, help="Rows per side for the realism AUC.")
    p.add_argument("--calibration-steps", type=int, default=300, help="advgen steps of the calibration fit.")
    p.add_argument("--calibration-epochs", type=int, default=2, help="SDV CTGAN/TVAE epochs of the calibration fit.")
    p.add_argument("--max-tries", type=int, default=100, help="SDV's max_tries_per_batch for conditional sampling.")
    p.add_argument("--sample-repeats", type=int, default=5, help="Timed sampling runs (the median is reported).")
    p.add_argument("--rows-limit", type=int, default=0,
                   help="Train on this many random rows plus every rare-category row (every generator alike).")
    p.add_argument("--quick", action="store_true",
                   help="Smoke-test the script: 3,000 rows, 1 CTGAN epoch, small calibration, judge and seeds.")
    p.add_argument("--peer-venv", default=os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "advgen", "bench-peers"),
                   help="Virtual environment for the peers (made on first use).")
    p.add_argument("--peer-python", help="Use this interpreter for the peers instead (it must import sdv and pyarrow).")
    p.add_argument("--work", help="Working directory (default: a temporary one).")
    p.add_argument("--markdown", help="Write the tables, date and machine to this Markdown file.")
    p.add_argument("--json", help="Write every number to this JSON file.")
    # worker mode (internal)
    p.add_argument("--worker", choices=["advgen"], help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--train-file", help=argparse.SUPPRESS)
    p.add_argument("--no-amp", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--calibrate", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--speed-detail", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.rare = [r for r in args.rare.split(",") if r]
    args.peers = [g for g in args.peers.split(",") if g]
    unknown = sorted(set(args.peers) - set(GENERATORS))
    if unknown:
        p.error(f"unknown peer(s) {', '.join(unknown)}; known: {', '.join(GENERATORS)}")
    if args.quick:
        args.epochs, args.detector_seeds, args.utility_seeds, args.folds = 1, 1, 1, 2
        args.calibration_steps, args.calibration_epochs, args.max_rows, args.aug_per_class = 30, 1, 1000, 100
        args.sample_repeats, args.max_tries = 1, 10
        args.rows_limit = args.rows_limit or 3000
    if args.seeds is None:
        args.seeds = 1 if args.quick else 3
    for name in ("seeds", "epochs", "threads", "detector_seeds", "utility_seeds", "folds", "calibration_steps",
                 "calibration_epochs", "max_tries", "sample_repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("n", "rows_limit", "aug_per_class", "max_rows", "advgen_steps", "sdv_epochs"):
        if (getattr(args, name) or 0) < 0:
            p.error(f"{'-n' if name == 'n' else '--' + name.replace('_', '-')} must not be negative")
    return args


def main() -> None:
    args = parse_args()
    if args.worker:
        worker_advgen(args)
        return

    tmp = None
    if args.work is None:
        tmp = tempfile.TemporaryDirectory(prefix="advgen-bench-")
        args.work = tmp.name
    work = Path(args.work).resolve()
    args.work = str(work)
    work.mkdir(parents=True, exist_ok=True)
    started = _dt.datetime.now(_dt.timezone.utc)

    if args.rows_limit:
        args.train_file = str(work / "train-subset.txt")
        write_subset(Path(args.train_file), args.rows_limit, args.rare)
    train = training_table(args.train_file)
    args.n = args.n or len(train.df)
    discrete = [c.name for c in train.columns if c.kind in ("categorical", "flag")]
    train.df.to_parquet(work / "train.parquet", index=False)
    spec = {"discrete": discrete, "numeric": [c for c in train.df.columns if c not in discrete],
            "label": train.label, "category_map": dict(train.category_map or {})}
    (work / "spec.json").write_text(json.dumps(spec, indent=2))
    python = peer_python(args)

    seeds = list(range(args.seeds))
    infos: dict[str, list[dict[str, Any]]] = {}
    budgets: dict[str, Any] = {}
    infos["ctgan"] = [run_peer(args, python, "ctgan", s, args.epochs) for s in seeds]
    budget = statistics.mean(i["fit_seconds"] for i in infos["ctgan"])
    budgets["ctgan"] = {"budget_seconds": budget, "units": args.epochs, "unit": "epochs (reference)"}

    for name in ["advgen", *[g for g in ADVGEN if g in args.peers and g != "advgen"]]:
        steps = args.advgen_steps
        if steps:
            budgets[name] = {"units": steps, "unit": "steps (given)"}
        else:
            calibration = run_advgen(args, name, 0, args.calibration_steps, calibrate=True)
            steps, budgets[name] = budgeted(budget, calibration, args.calibration_steps, args.calibration_steps)
            budgets[name]["unit"] = "steps"
        infos[name] = [run_advgen(args, name, s, steps) for s in seeds]

    for name in [g for g in SDV if g in args.peers]:
        epochs = args.sdv_epochs or 0
        if name == "sdv-copula":
            budgets[name] = {"unit": "none (closed-form fit)"}
        elif epochs:
            budgets[name] = {"units": epochs, "unit": "epochs (given)"}
        else:
            calibration = run_peer(args, python, name, 0, args.calibration_epochs, calibrate=True)
            epochs, budgets[name] = budgeted(budget, calibration, args.calibration_epochs, 1)
            budgets[name]["unit"] = "epochs"
        infos[name] = [run_peer(args, python, name, s, epochs) for s in seeds]
    for name, b in budgets.items():
        print(f"[bench] budget {name}: {json.dumps(b)}", file=sys.stderr, flush=True)

    reports = judge(args, infos)
    summary = peer_report.summarise(reports, infos)
    command = "python benchmarks/peers.py " + " ".join(sys.argv[1:])
    versions = next((i[0]["versions"] for n, i in infos.items() if "versions" in i[0]), {})
    note = (
        f"{started:%Y-%m-%d %H:%M} UTC; {machine()}; {args.threads} torch threads for every generator and "
        f"the judge. Peers in their own environment: {', '.join(f'{k} {v}' for k, v in versions.items())}.\n"
        f"Training rows {len(train.df):,}{' (subset)' if args.train_file else ''}, sampled rows {args.n:,} per "
        f"generator, KDDTest+ as the test set; {args.seeds} training seed(s) per generator (figures are mean "
        f"+- std over them); detector {args.detector}, TSTR over {args.utility_seeds} detector seeds, "
        f"augmentation over {args.detector_seeds} with {args.aug_per_class} rows asked per rare class.\n"
        f"Budget: CTGAN {args.epochs} epochs, {budget:.0f} s of whole fit (mean); "
        + "; ".join(peer_report.budget_text(n, b) for n, b in budgets.items() if n != "ctgan")
        + f".\nCommand: `{command}`"
    )
    text = peer_report.render(summary, infos, note)
    print(text)
    if args.markdown:
        from advgen.io import atomic_write_text

        atomic_write_text(args.markdown, text + "\n")
    if args.json:
        from advgen.io import atomic_write_text

        payload = {"summary": summary, "infos": infos, "budgets": budgets, "reports": reports, "command": command,
                   "note": note}
        atomic_write_text(args.json, json.dumps(payload, indent=2, default=str) + "\n")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
