"""The adversarial figures of docs/adversarial.md: every ``advgen evade`` / ``advgen harden`` run, then
the medians over seeds, each next to the command that produced it.

    python benchmarks/adversarial_floors.py --runs runs/adv                 # every experiment, seeds 0 1 2
    python benchmarks/adversarial_floors.py --runs runs/adv --only dos,probe --seeds 0
    python benchmarks/adversarial_floors.py --runs runs/adv --summary       # medians of the runs present

Runs are plain CLI commands (printed before each starts); a run whose report.json exists is skipped, so
the script resumes after an interruption. Everything runs on one thread; on a 2-core machine the whole
set takes a few hours (DoS about 5 minutes a run, harden about 15). The MalGAN data is read from
``$ADVGEN_DATA/malgan-trial`` (or ``--malgan DIR``).

Floors (issue 11) are printed beside the medians; a missed floor is shown as missed, never adjusted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

BUILTINS = ("random-forest", "gradient-boosting", "logistic-regression", "mlp", "svm", "knn", "naive-bayes")
KDD = ["--data", "nsl-kdd:train20", "--attacks", "nsl-kdd:test"]
MALGAN_DETECTORS = ("random-forest", "logistic-regression", "mlp", "decision-tree")


def experiments(malgan: str) -> dict[str, Callable[[int, Path], list[list[str]]]]:
    """name -> (seed, run folder) -> the commands of one run (the last one writes report.json)."""

    def evade(*args: str) -> Callable[[int, Path], list[list[str]]]:
        return lambda s, out: [["evade", *args, "--seed", str(s), "--out", str(out), "--overwrite", "--threads", "1"]]

    def generalise(s: int, out: Path) -> list[list[str]]:
        trained = out.parent / f"{out.name}-trained"
        return [
            ["evade", "--data", "nsl-kdd:train20", "--attacks", "nsl-kdd:train20", "--category", "dos", "--preset",
             "idsgan", "--baselines", "none", "--transfer", "none", "--no-realism", "--seed", str(s), "--out", str(trained),
             "--overwrite", "--threads", "1"],
            ["evade", *KDD, "--category", "dos", "--preset", "idsgan", "--generator", str(trained), "--baselines", "none",
             "--seed", str(s), "--out", str(out), "--overwrite", "--threads", "1"],
        ]

    out: dict[str, Callable[[int, Path], list[list[str]]]] = {
        "dos": evade(*KDD, "--category", "dos", "--preset", "idsgan"),
        "probe": evade(*KDD, "--category", "probe", "--preset", "idsgan", "--query-budget", str(64 * 2421),
                       "--baseline-k", "64", "--baselines", "mimicry", "--transfer", "random-forest@seed1", "--no-realism"),
        "dos-realistic": evade(*KDD, "--category", "dos", "--preset", "realistic"),
        "dos-generalise": generalise,
        "harden": lambda s, out: [["harden", *KDD, "--category", "dos", "--preset", "idsgan", "--harden-rounds", "2",
                                   "--seed", str(s), "--out", str(out), "--overwrite", "--threads", "1"]],
    }
    for det in BUILTINS[1:]:
        out[f"matrix-{det}"] = evade(*KDD, "--category", "dos", "--preset", "idsgan", "--detector", det,
                                     "--baselines", "none", "--no-realism")
    for det in MALGAN_DETECTORS:
        out[f"malgan-{det}"] = evade("--data", malgan, "--preset", "malgan", "--detector", det, "--baselines", "mimicry",
                                     "--transfer", ",".join(MALGAN_DETECTORS), "--no-realism")
    return out


def run_all(names: list[str], seeds: list[int], runs: Path, malgan: str) -> None:
    exps = experiments(malgan)
    for name in names:
        for s in (seeds if not name.startswith("matrix-") else seeds[:1]):
            out = runs / f"{name}-s{s}"
            if (out / "report.json").is_file():
                print(f"skip {out} (report.json exists)", flush=True)
                continue
            for cmd in exps[name](s, out):
                print("$ advgen " + " ".join(shlex.quote(c) for c in cmd), flush=True)
                res = subprocess.run([sys.executable, "-m", "advgen", *cmd], env={**os.environ, "OMP_NUM_THREADS": "1"})
                if res.returncode != 0:
                    print(f"failed: {name} seed {s}", flush=True)
                    break


def _load(runs: Path, name: str) -> list[dict[str, Any]]:
    """The reports of ``NAME-s<seed>`` (not ``NAME-s<seed>-trained`` and the like)."""
    pattern = re.compile(re.escape(name) + r"-s\d+")
    return [json.loads((d / "report.json").read_text()) for d in sorted(runs.iterdir())
            if pattern.fullmatch(d.name) and (d / "report.json").is_file()]


def _med(values: list[Any]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _f(v: float | None, d: int = 3) -> str:
    return "-" if v is None else f"{v:.{d}f}"


def summary(runs: Path) -> str:
    """Markdown: medians over seeds of every experiment present, floors beside them."""
    lines: list[str] = []
    dos = _load(runs, "dos")
    if dos:
        g = [r["attacks"]["gan"] for r in dos]
        eirs = [m["eir"] for m in g]
        tr = [m["transfer"]["random-forest@seed1"]["eir"] for m in g]
        lines += [
            f"### DoS, idsgan preset, random forest, labels only ({len(dos)} seeds)",
            "| metric | median | per seed | floor |", "|---|---|---|---|",
            f"| EIR | {_f(_med(eirs))} | {', '.join(_f(e) for e in eirs)} | >= 0.95 |",
            f"| DR before / after | {_f(_med([m['detection_rate']['before'] for m in g]))} / {_f(_med([m['detection_rate']['after'] for m in g]))} | | |",
            f"| functional changes (cells, all rows) | {max(m['functional_changes']['cells'] for m in g)} (max) | | 0 |",
            f"| validator pass rate | {_f(_med([m['validity']['adversarial'] for m in g]), 4)} | | >= 0.99 |",
            f"| queries | {_med([m['queries'] for m in g]):,.0f} | {', '.join(str(m['queries']) for m in g)} | <= 50,000 |",
            f"| transfer EIR, forest seed 1 | {_f(_med(tr))} | {', '.join(_f(e) for e in tr)} | >= 0.9 |",
            f"| L0 / L2 | {_f(_med([m['l0_mean'] for m in g]), 1)} / {_f(_med([m['l2_mean'] for m in g]), 2)} | | |",
            f"| realism AUC vs real DoS rows | {_f(_med([(m.get('realism_auc') or {}).get('vs_attacks', {}).get('mean') for m in g]))} | | |",
            "",
            "| attack | EIR (median) | queries (median) |", "|---|---|---|",
        ]
        for a in dos[0]["attacks"]:
            ms = [r["attacks"][a] for r in dos]
            k = f" (best of {ms[0]['k']})" if "k" in ms[0] else ""
            lines.append(f"| {a}{k} | {_f(_med([m['eir'] for m in ms]))} | {_med([m['queries'] for m in ms]):,.0f} |")
        lines.append("")
        judges = list(g[0]["transfer"])
        lines += ["| judged by | " + " | ".join(dos[0]["attacks"]) + " |", "|---" * (1 + len(dos[0]["attacks"])) + "|"]
        for j in judges:
            lines.append(f"| {j} | " + " | ".join(_f(_med([r["attacks"][a]["transfer"][j]["eir"] for r in dos]))
                                                  for a in dos[0]["attacks"]) + " |")
        lines.append("")
    probe = _load(runs, "probe")
    if probe:
        g = [r["attacks"]["gan"] for r in probe]
        mm = [r["attacks"]["mimicry"] for r in probe]
        lines += [
            f"### Probe, idsgan preset ({len(probe)} seeds)",
            "| attack | EIR median | per seed | queries median |", "|---|---|---|---|",
            f"| gan | {_f(_med([m['eir'] for m in g]))} | {', '.join(_f(m['eir']) for m in g)} | {_med([m['queries'] for m in g]):,.0f} |",
            f"| mimicry (best of 64) | {_f(_med([m['eir'] for m in mm]))} | {', '.join(_f(m['eir']) for m in mm)} | {_med([m['queries'] for m in mm]):,.0f} |",
            "",
        ]
    for name, title in (("dos-realistic", "DoS, realistic preset"), ("dos-generalise", "DoS, generator trained on KDDTrain+_20Percent DoS rows, applied to KDDTest+ DoS rows without queries")):
        rs = _load(runs, name)
        if rs:
            g = [r["attacks"]["gan"] for r in rs]
            tr = [m.get("transfer", {}).get("random-forest@seed1", {}).get("eir") for m in g]
            lines += [
                f"### {title} ({len(rs)} seeds)",
                "| EIR median | per seed | transfer EIR (forest seed 1) | functional changes | validity | queries |",
                "|---|---|---|---|---|---|",
                f"| {_f(_med([m['eir'] for m in g]))} | {', '.join(_f(m['eir']) for m in g)} | {_f(_med(tr))} | "
                f"{max(m['functional_changes']['cells'] for m in g)} | {_f(_med([m['validity']['adversarial'] for m in g]), 4)} | "
                f"{_med([m['queries'] for m in g]):,.0f} |",
                "",
            ]
    matrix = {"random-forest": dos[:1]} if dos else {}
    for det in BUILTINS[1:]:
        rs = _load(runs, f"matrix-{det}")
        if rs:
            matrix[det] = rs[:1]
    if len(matrix) > 1:
        judges = list(next(iter(matrix.values()))[0]["attacks"]["gan"]["transfer"])
        lines += ["### Transfer matrix: DoS rows made against the row's detector, EIR under each column's detector (seed 0)",
                  "| made against | " + " | ".join(judges) + " |", "|---" * (1 + len(judges)) + "|"]
        for det, rs in matrix.items():
            t = rs[0]["attacks"]["gan"]["transfer"]
            lines.append(f"| {det} | " + " | ".join(_f(t.get(j, {}).get("eir")) for j in judges) + " |")
        lines.append("")
    hard = _load(runs, "harden")
    if hard:
        first = [r["rounds"][0] for r in hard]
        last = [r["rounds"][-1] for r in hard]
        lines += [
            f"### harden, DoS, {len(hard[0]['rounds']) - 1} rounds ({len(hard)} seeds)",
            "| | before | after | floor |", "|---|---|---|---|",
            f"| DR on fresh disguised rows | {_f(_med([r['dr_adversarial'] for r in first]))} | {_f(_med([r['dr_adversarial'] for r in last]))} | >= 0.90 |",
            f"| DR on clean test attacks | {_f(_med([r['dr_clean'] for r in first]))} | {_f(_med([r['dr_clean'] for r in last]))} | not lower |",
            f"| FPR on normal test rows | {_f(_med([r['fpr_normal'] for r in first]), 4)} | {_f(_med([r['fpr_normal'] for r in last]), 4)} | up <= 0.01 |",
            f"| DR on fresh disguised rows, attack types the training data holds | {_f(_med([r['dr_adversarial_known_types'] for r in first]))} | {_f(_med([r['dr_adversarial_known_types'] for r in last]))} | |",
            f"| DR on clean test attacks, attack types the training data holds | {_f(_med([r['dr_clean_known_types'] for r in first]))} | {_f(_med([r['dr_clean_known_types'] for r in last]))} | |",
            "",
            "| seed | cover rows | DR on fresh disguised rows, round 0, 1, ... | clean DR after | known types: fresh disguised / clean after |",
            "|---|---|---|---|---|",
            *[f"| {r.get('seed', '?')} | {r['rounds'][-1].get('cover_rows', 0):,} | {', '.join(_f(x['dr_adversarial']) for x in r['rounds'])} | "
              f"{_f(r['rounds'][-1]['dr_clean'])} | {_f(r['rounds'][-1]['dr_adversarial_known_types'])} / {_f(r['rounds'][-1]['dr_clean_known_types'])} |"
              for r in hard],
            "",
        ]
    mal = {det: _load(runs, f"malgan-{det}") for det in MALGAN_DETECTORS}
    if any(mal.values()):
        lines += ["### MalGAN preset (add only), malgan-trial, detector trained on half, the other half attacked",
                  "| detector | DR before | DR after (median) | per seed | mean features added | queries | floor |",
                  "|---|---|---|---|---|---|---|"]
        for det, rs in mal.items():
            if not rs:
                continue
            g = [r["attacks"]["gan"] for r in rs]
            lines.append(
                f"| {det} | {_f(_med([m['detection_rate']['before'] for m in g]))} | {_f(_med([m['detection_rate']['after'] for m in g]))} | "
                f"{', '.join(_f(m['detection_rate']['after']) for m in g)} | {_f(_med([m['l0_mean'] for m in g]), 1)} | "
                f"{_med([m['queries'] for m in g]):,.0f} | <= 0.05 |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, default=Path("runs/adversarial"), help="Folder of the run folders.")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--only", help="Experiments to run, comma separated (default: all).")
    ap.add_argument("--malgan", help="Folder of trial_mal.npy and trial_ben.npy (default: $ADVGEN_DATA/malgan-trial).")
    ap.add_argument("--summary", action="store_true", help="Only print the medians of the runs present.")
    ap.add_argument("--markdown", type=Path, help="Also write the summary to FILE.")
    args = ap.parse_args()
    malgan = args.malgan or str(Path(os.environ.get("ADVGEN_DATA", "data")) / "malgan-trial")
    names = list(experiments(malgan))
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            ap.error(f"unknown experiments {unknown}; known: {', '.join(names)}")
        names = wanted
    if not args.summary:
        run_all(names, args.seeds, args.runs, malgan)
    text = summary(args.runs)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
