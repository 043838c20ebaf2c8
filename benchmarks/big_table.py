"""Training on a table larger than memory: peak memory and rates of the streamed path.

Writes a Parquet table of ``--rows`` rows (default 20 million): NSL-KDD's KDDTrain+_20Percent rows
(from $ADVGEN_DATA, or downloaded) repeated, with a ``row_id`` column numbering them, plus a few rare
rows (a service in 11 rows, an attack label in 3) spread over the file. It is written a copy of the
25,192 rows at a time, so the table is never held in memory. Then it trains ``--steps`` steps on it in
a child process with ``--option storage=disk --option memory_budget=BUDGET`` and reports:

- the child's peak resident memory (``getrusage`` of the child, i.e. its ``VmHWM``), against the budget;
- the read, fit and encode rates (from ``encoded-rows.json``), the training step rate (``summary.json``);
- whether the rare service and label made it into the fitted transform and the class counts.

    python benchmarks/big_table.py --rows 20000000 --steps 300 --budget 2GB [--work DIR] [--keep] [--json out.json]

The claim checked: peak RSS under 2 GB for 20 million rows. The work folder needs about 3 GB of disk
per 20 million rows (the Parquet file and the encoded rows); it is removed afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RARE_SERVICE, RARE_SERVICE_ROWS = "gopher_rare", 11
RARE_LABEL, RARE_LABEL_ROWS = "rootkit_rare", 3


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def write_table(path: Path, rows: int, seed: int = 0) -> dict:
    """NSL-KDD rows repeated up to ``rows``, with a row id and a few rare rows, one copy at a time."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from advgen_datasets import load_table

    base = load_table(dataset="nsl-kdd").df
    base_arrow = pa.Table.from_pandas(base, preserve_index=False).replace_schema_metadata(None)
    rng = np.random.default_rng(seed)
    rare_service = set(rng.choice(rows, RARE_SERVICE_ROWS, replace=False).tolist())
    rare_label = set(rng.choice(rows, RARE_LABEL_ROWS, replace=False).tolist()) - rare_service
    service_col = base_arrow.schema.get_field_index("service")
    label_col = base_arrow.schema.get_field_index("label")
    t0 = time.perf_counter()
    written = 0
    with pq.ParquetWriter(path, base_arrow.schema.insert(0, pa.field("row_id", pa.int64()))) as writer:
        while written < rows:
            n = min(len(base), rows - written)
            part = base_arrow.slice(0, n)
            hits_s = sorted(r - written for r in rare_service if written <= r < written + n)
            hits_l = sorted(r - written for r in rare_label if written <= r < written + n)
            if hits_s or hits_l:
                service = part.column(service_col).to_pylist()
                label = part.column(label_col).to_pylist()
                for i in hits_s:
                    service[i] = RARE_SERVICE
                for i in hits_l:
                    label[i] = RARE_LABEL
                for col, values in ((service_col, service), (label_col, label)):
                    part = part.set_column(col, part.field(col), pa.array(values, part.field(col).type))
            part = part.add_column(0, "row_id", pa.array(np.arange(written, written + n, dtype=np.int64)))
            writer.write_table(part, row_group_size=1 << 17)
            written += n
    seconds = time.perf_counter() - t0
    return {
        "rows": written,
        "bytes": path.stat().st_size,
        "write_s": round(seconds, 1),
        "writer_peak_rss_mib": round(peak_rss_mib(), 1),
        "rare_label_rows": len(rare_label),
    }


def train_child(data: Path, out: Path, steps: int, budget: str, threads: int) -> dict:
    """Train in a child process; its peak RSS comes from wait4's resource usage."""
    cmd = [
        sys.executable, "-m", "advgen", "train", "--plugin", "tabular", "--data", str(data), "--label", "label",
        "--steps", str(steps), "--out", str(out), "--threads", str(threads), "--n-samples", "1000",
        "--log-every", str(max(1, steps // 10)), "--ckpt-every", str(steps),
        "--option", "storage=disk", "--option", f"memory_budget={budget}",
    ]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    # read the output as it comes (a full pipe would block the child), then reap it with its rusage
    out_lines = []
    for line in proc.stderr:
        sys.stderr.write("  | " + line)
        out_lines.append(line.rstrip("\n"))
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"training failed ({proc.returncode}):\n" + "\n".join(out_lines[-20:]) + stdout)
    return {"peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "wall_s": round(wall, 1), "log": out_lines}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--budget", default="2GB", help="--option memory_budget of the training run")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, default=None, help="folder for the table and the run (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the table and the run folder")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    args = ap.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="advgen-big-table-"))
    work.mkdir(parents=True, exist_ok=True)
    data, out = work / f"nsl-{args.rows}.parquet", work / "run"
    try:
        print(f"writing {args.rows:,} rows to {data} ...", file=sys.stderr)
        table = write_table(data, args.rows)
        if out.exists():
            shutil.rmtree(out)
        print(f"training {args.steps} steps on it with memory_budget={args.budget} ...", file=sys.stderr)
        child = train_child(data, out, args.steps, args.budget, args.threads)
        meta = json.loads((out / "encoded-rows.json").read_text())
        summary = json.loads((out / "summary.json").read_text())
        spec = meta["spec"]
        cond = spec["conditions"]
        counts = dict(zip(cond["classes"], cond["counts"]))
        plans = spec["transform"]["plans"]
        services = next((m["vocab"] for p in plans for m in p.get("members", [p]) if m.get("name") == "service"), [])
        t = meta["timings"]
        figures = {
            "rows": t["rows"],
            "parquet_mib": round(table["bytes"] / 2**20, 1),
            "encoded_mib": round((out / "encoded-rows.bin").stat().st_size / 2**20, 1),
            "budget": args.budget,
            "peak_rss_mib": child["peak_rss_mib"],
            "read_rows_per_s": round(t["rows"] / t["read_s"]),
            "fit_s": round(t["fit_s"], 1),
            "encode_rows_per_s": round(t["rows"] / t["encode_s"]),
            "steps": summary["steps"],
            "steps_per_s": round(summary["steps_this_session"] / summary["seconds_this_session"], 2),
            "train_rows_per_s": summary["rows_per_s"],
            "load_s": summary["load_seconds"],
            "child_wall_s": child["wall_s"],
            "rare_service_kept": RARE_SERVICE in services,
            "rare_label_count": counts.get(RARE_LABEL, 0),
            "rare_label_rows_written": table["rare_label_rows"],
            "writer_peak_rss_mib": table["writer_peak_rss_mib"],
            "write_s": table["write_s"],
        }
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    width = max(len(k) for k in figures)
    for k, v in figures.items():
        shown = f"{v:,}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)
        print(f"{k:<{width}}  {shown}")
    budget_mib = None
    try:
        from advgen_tabular.streamed import parse_budget

        budget_mib = parse_budget(args.budget) / 2**20
    except Exception:
        pass
    if budget_mib:
        verdict = "under" if figures["peak_rss_mib"] < budget_mib else "OVER"
        print(f"peak RSS {figures['peak_rss_mib']:,.0f} MiB is {verdict} the budget of {budget_mib:,.0f} MiB")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
