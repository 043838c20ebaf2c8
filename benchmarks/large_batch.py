"""Which batch size, learning rate and weight average keep the tabular generator's quality.

A GPU trains fast only at large batches (issue 12: >= 5M rows/s needs tens of thousands of rows a
step), and a GAN tuned at 512 rows a step does not keep its quality by itself when the batch grows.
This script trains the tabular default (NSL-KDD KDDTrain+_20Percent) at several settings, judges every
run with ``advgen evaluate`` against KDDTest+ (the README's evaluation command), and prints one table:
rows seen, training seconds and rows/s, KS and TV complements, realism AUCs, cross-column validity,
TSTR macro-F1, r2l and u2r recall after augmentation (u2r precision beside).

    ADVGEN_DATA=../shared/datasets python benchmarks/large_batch.py --work /tmp/lb
    python benchmarks/large_batch.py --work /tmp/lb --device cuda --parallel 1 --threads 0
    python benchmarks/large_batch.py --work /tmp/lb --setting 16384:1250:8e-4:0.99

A setting is ``BATCH:STEPS:LR:EMA`` (the learning rate is both nets'; EMA the decay of the generator's
weight average). The defaults hold the rows seen equal to the default run (20,000 steps of 512 rows:
10.24M rows) and try the learning rate as it is and scaled by the square root of the batch ratio, with
the weight average's decay scaled so that it averages over the same number of rows
(``0.9995 ** (batch / 512)``). ``--work`` keeps every run and report; a second call reuses those whose
config matches, so settings can be added one at a time. Quality does not depend on the machine (up to
float rounding), so a 2-core CPU can answer the question for a GPU; the seconds are the machine's.
``--parallel 2 --threads 1`` runs two settings at once, one thread each (for quality, not for timing).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_report import headline  # noqa: E402 - the figures of an evaluate report, as the peers table reads them

DEFAULT_SETTINGS = (
    "512:20000:2e-4:0.9995",     # the default run
    "4096:2500:2e-4:0.996",      # 8x the batch, same rows seen, same learning rate
    "4096:2500:5.7e-4:0.996",    # ... learning rate x sqrt(8)
    "16384:625:2e-4:0.984",      # 32x the batch
    "16384:625:1.1e-3:0.984",    # ... learning rate x sqrt(32)
)


def parse_setting(text: str) -> dict[str, Any]:
    try:
        batch, steps, lr, ema = text.split(":")
        setting = {"batch_size": int(batch), "steps": int(steps), "lr": float(lr), "ema": float(ema)}
    except ValueError:
        raise SystemExit(f"error: a setting is BATCH:STEPS:LR:EMA, e.g. 4096:2500:5.7e-4:0.996; got {text!r}") from None
    if min(setting["batch_size"], setting["steps"]) < 1 or not 0 < setting["lr"] < 1 or not 0 <= setting["ema"] < 1:
        raise SystemExit(f"error: setting {text!r} is out of range")
    return setting


def name_of(s: dict[str, Any], seed: int = 0) -> str:
    """The run's folder in ``--work``: one per setting and training seed."""
    return f"b{s['batch_size']}-s{s['steps']}-lr{s['lr']:g}-ema{s['ema']:g}" + (f"-seed{seed}" if seed else "")


def advgen_cmd() -> list[str]:
    return [sys.executable, "-m", "advgen"]


def matches(run: Path, s: dict[str, Any], seed: int) -> bool:
    """A finished run in ``--work`` trained with this setting and seed (so it is reused)."""
    try:
        cfg = json.loads((run / "config.json").read_text())
        summary = json.loads((run / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    return (cfg.get("batch_size") == s["batch_size"] and cfg.get("lr_g") == s["lr"] and cfg.get("lr_d") == s["lr"]
            and cfg.get("ema") == s["ema"] and cfg.get("seed") == seed and summary.get("steps") == s["steps"])


def run_one(s: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    name = name_of(s, args.seed)
    run = args.work / name
    log = args.work / f"{name}.log"
    with log.open("a") as out:
        if not matches(run, s, args.seed):
            if run.exists():
                shutil.rmtree(run)
            cmd = advgen_cmd() + [
                "train", "--plugin", "tabular", "--seed", str(args.seed), "--threads", str(args.threads),
                "--device", args.device, "--batch-size", str(s["batch_size"]), "--steps", str(s["steps"]),
                "--lr-g", str(s["lr"]), "--lr-d", str(s["lr"]), "--ema", str(s["ema"]),
                "--log-every", str(max(1, s["steps"] // 20)), "--out", str(run),
            ]
            print(f"training {name}", flush=True)
            subprocess.run(cmd, check=True, stdout=out, stderr=subprocess.STDOUT)
        report = run / "report.json"
        if not report.exists():
            print(f"judging {name}", flush=True)
            cmd = advgen_cmd() + [
                "evaluate", str(run), "--real", "nsl-kdd:train20", "--test", "nsl-kdd:test", "--rare", "r2l,u2r",
                "--threads", str(args.threads or os.cpu_count() or 1), "--seeds", str(args.seeds), "--json", str(report),
            ]
            subprocess.run(cmd, check=True, stdout=out, stderr=subprocess.STDOUT)
    summary = json.loads((run / "summary.json").read_text())
    return {"setting": s, "run": str(run), "summary": summary, "report": json.loads(report.read_text())}


def figures(result: dict[str, Any]) -> dict[str, Any]:
    s, seconds, head = result["setting"], result["summary"]["seconds"], headline(result["report"])
    rows = s["batch_size"] * s["steps"]
    return {
        "batch": s["batch_size"], "steps": s["steps"], "lr": s["lr"], "ema": s["ema"],
        "rows_seen_m": rows / 1e6, "seconds": seconds, "rows_per_s": rows / seconds,
        "ks": head["ks_complement"], "tv": head["tv_complement"],
        "auc_logistic": head["auc_logistic-regression"], "auc_boosting": head["auc_gradient-boosting"],
        "cross_column": head["validity_cross-column"], "tstr": head["tstr_macro_f1"], "trtr": head["trtr_macro_f1"],
        "r2l": head["r2l_recall_aug"], "u2r": head["u2r_recall_aug"], "r2l_base": head["r2l_recall_base"],
        "u2r_base": head["u2r_recall_base"], "u2r_precision": head["u2r_precision_aug"],
        "u2r_precision_base": head["u2r_precision_base"], "macro_f1_aug": head["macro_f1_aug"],
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = ("batch", "steps", "lr", "EMA", "rows seen", "train s", "rows/s", "KS", "TV", "AUC LR", "AUC GB",
            "cross-col", "TSTR", "r2l rec", "u2r rec", "u2r prec", "macro-F1 aug")
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = (f"{r['batch']:,}", f"{r['steps']:,}", f"{r['lr']:g}", f"{r['ema']:g}", f"{r['rows_seen_m']:.2f}M",
                 f"{r['seconds']:.0f}", f"{r['rows_per_s']:,.0f}", f"{r['ks']:.3f}", f"{r['tv']:.3f}",
                 f"{r['auc_logistic']:.3f}", f"{r['auc_boosting']:.3f}", f"{r['cross_column']:.3f}", f"{r['tstr']:.3f}",
                 f"{r['r2l']:.3f}", f"{r['u2r']:.3f}", f"{r['u2r_precision']:.3f}", f"{r['macro_f1_aug']:.3f}")
        out.append("| " + " | ".join(cells) + " |")
    if rows:
        r = rows[0]
        out.append(f"\nTRTR macro-F1 {r['trtr']:.3f}; recall on real rows only: r2l {r['r2l_base']:.3f}, "
                   f"u2r {r['u2r_base']:.3f} (precision {r['u2r_precision_base']:.3f}). Train seconds are this machine's (--parallel runs share its cores).")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, required=True, help="folder for the runs and reports (reused)")
    p.add_argument("--setting", action="append", help="BATCH:STEPS:LR:EMA (repeatable; default: five settings)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per run (0: torch's default for training, every core for judging)")
    p.add_argument("--parallel", type=int, default=2, help="settings trained at once")
    p.add_argument("--seeds", type=int, default=5, help="detector seeds of the evaluation")
    p.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = p.parse_args(argv)
    settings = [parse_setting(t) for t in (args.setting or DEFAULT_SETTINGS)]
    if args.parallel < 1:
        raise SystemExit("error: --parallel must be at least 1")
    args.work.mkdir(parents=True, exist_ok=True)
    with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
        futures = [pool.submit(run_one, s, args) for s in settings]
        try:
            results = [f.result() for f in futures]
        except subprocess.CalledProcessError as exc:
            raise SystemExit(f"error: {' '.join(map(str, exc.cmd[2:4]))} failed (exit {exc.returncode}); see the logs in {args.work}")
    rows = [figures(r) for r in results]
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
