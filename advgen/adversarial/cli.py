"""``advgen evade`` and ``advgen harden``: thin click commands over :mod:`advgen.adversarial.api`.
:func:`register` attaches them to the ``advgen`` group."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click



def register(cli: click.Group) -> None:
    cli.add_command(evade_cmd)
    cli.add_command(harden_cmd)


def _say(quiet: bool) -> Any:
    if quiet:
        return None
    return lambda m: click.echo(m, err=True)


def _gan_options(rounds: int | None, query_batch: int | None, final_tries: int | None, realism_weight: float | None,
                 options: tuple[str, ...]) -> dict[str, Any]:
    from advgen.adversarial.gan_attack import GanConfig

    out: dict[str, Any] = {}
    defaults = GanConfig()
    for item in options:
        key, eq, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or not hasattr(defaults, key):
            known = ", ".join(sorted(defaults.__dict__))
            raise click.BadParameter(f"write KEY=VALUE with KEY one of {known}; got {item!r}", param_hint="--gan-option")
        kind = type(getattr(defaults, key))
        try:
            out[key] = kind(value)
        except ValueError:
            raise click.BadParameter(f"{key} needs a {kind.__name__}, got {value!r}", param_hint="--gan-option") from None
    for key, value in (("rounds", rounds), ("query_batch", query_batch), ("final_tries", final_tries), ("realism", realism_weight)):
        if value is not None:
            out[key] = value
    return out


def _transfer(value: str) -> list[str] | None:
    if value == "all":
        return None
    if value == "none":
        return []
    return [v.strip() for v in value.split(",") if v.strip()]


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    for r in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)


def format_evade(report: dict[str, Any]) -> str:
    """The terminal table: one row per attack, then the transfer matrix."""
    attacks = report["attacks"]
    header = ["attack", "DR before", "DR after", "EIR", "functional changes", "valid", "atypical", "L0", "L2", "queries",
              "realism AUC"]
    rows = []
    for name, m in attacks.items():
        shown = f"{name} (best of {m['k']})" if "k" in m else name
        real = (m.get("realism_auc") or {}).get("vs_attacks")
        odd = (m.get("atypical") or {}).get("share")
        rows.append([
            shown, _fmt(m["detection_rate"]["before"]), _fmt(m["detection_rate"]["after"]), _fmt(m["eir"]),
            _fmt(m["functional_changes"]["cells"]), f"{m['validity']['adversarial']:.1%}",
            f"{odd:.1%}" if odd is not None else "-", _fmt(m["l0_mean"], 1),
            _fmt(m["l2_mean"], 2), _fmt(m["queries"]), _fmt(real["mean"]) if real else "-",
        ])
    out = [f"{report['inputs']['rows']:,} attack rows, detector {report['detector']['name']} "
           f"({report['detector']['answers']}), threat model {report['threat']['name']}", _table(header, rows)]
    judges = next((m["transfer"] for m in attacks.values() if m.get("transfer")), None)
    if judges:
        out.append("\ntransfer: EIR of the same rows under detectors trained on the same data")
        t_rows = [[j] + [_fmt(attacks[a]["transfer"][j]["eir"]) for a in attacks] for j in judges]
        out.append(_table(["detector"] + list(attacks), t_rows))
    split = report.get("queries", {}).get("split")
    if split:
        out.append("\n" + format_query_split(split))
    stopped = report.get("generator", {}).get("stopped")
    if stopped:
        out.append(f"\nnote: {stopped}")
    tails = atypical_note(attacks)
    if tails:
        out.append(f"\nnote: {tails}")
    return "\n".join(out)


ATYPICAL_NOTE = 0.2  # a disguise with more of its changed cells in the tails of real traffic gets a note


def atypical_note(attacks: dict[str, Any]) -> str | None:
    """A note when an attack put at least ``ATYPICAL_NOTE`` of its changed cells in the tails of real
    traffic (metric ``atypical``), naming the columns; None otherwise."""
    heavy = [(name, m["atypical"]) for name, m in attacks.items()
             if (m.get("atypical") or {}).get("share") is not None and m["atypical"]["share"] >= ATYPICAL_NOTE]
    if not heavy:
        return None
    name, odd = heavy[0]
    cols = ", ".join(list(odd["columns"])[:3])
    others = f" (also {', '.join(n for n, _ in heavy[1:])})" if len(heavy) > 1 else ""
    return (f"{odd['share']:.0%} of the cells {name}{others} changed now hold values beyond the 0.5th or 99.5th "
            f"percentile of real traffic in their column (most in {cols}): such rows may evade by being unusual "
            "rather than by looking normal; freeze or bound those columns (--frozen, --mask) or add --realism-weight")


def format_query_split(split: dict[str, Any]) -> str:
    """``queries: 3,000 warm-up (at most 25,000, 50% of the budget) + 31,586 attack (24,000 training, 7,586
    final check) = 34,586 of 50,000``."""
    used = split["warmup"] + split["attack"] + split.get("earlier_run_unsplit", 0)
    cap = (f" (at most {split['warmup_cap']:,}, {split['warmup_share']:.0%} of the budget)"
           if split.get("warmup_cap") is not None else "")
    budget = f"{split['budget']:,}" if split.get("budget") is not None else "an unlimited budget"
    earlier = (f" + {split['earlier_run_unsplit']:,} of an earlier run, unsplit" if split.get("earlier_run_unsplit") else "")
    return (f"queries: {split['warmup']:,} warm-up{cap} + {split['attack']:,} attack ({split['training']:,} training, "
            f"{split['final']:,} final check){earlier} = {used:,} of {budget}")


def _rose(rec: dict[str, Any], rounds: list[dict[str, Any]]) -> str:
    """'  ! rose' beside a round's FPR that rose markedly over round 0 (blank of the same width beside the
    others, so that the right-aligned numbers stay in line)."""
    if not any(r.get("fpr_rose") for r in rounds):
        return ""
    return "  ! rose" if rec.get("fpr_rose") else " " * len("  ! rose")


def format_harden(report: dict[str, Any]) -> str:
    missing = report["inputs"].get("types_missing_from_training") or []
    # the known-types columns differ from the others only when the attack table holds types the training
    # data lacks (with no category map, or every type known, they repeat the two columns beside them)
    known = bool(missing)
    header = ["round", "DR fresh disguised", "DR clean",
              *(["(known types:", "disguised", "clean)"] if known else []), "FPR normal", "disguised rows trained on"]
    rows = [[str(r["round"]), _fmt(r["dr_adversarial"]), _fmt(r["dr_clean"]),
             *(["", _fmt(r.get("dr_adversarial_known_types")), _fmt(r.get("dr_clean_known_types"))] if known else []),
             _fmt(r["fpr_normal"], 4) + _rose(r, report["rounds"]), _fmt(r["disguised_training_rows"])]
            for r in report["rounds"]]
    note = (f"\nknown types: the attack labels the training data holds; {', '.join(missing)} occur only in the "
            "attack table" if missing else "")
    warnings = "".join(f"\nwarning: {w}" for w in report.get("warnings") or [])
    return _table(header, rows) + note + warnings


def _common(f: Any) -> Any:
    opts = [
        click.option("--data", "data", required=True, help="The detector's training data: DATASET:SPLIT (e.g. nsl-kdd:train20), a CSV/Parquet file (with --label), or a folder of *_mal.npy and *_ben.npy."),
        click.option("--attacks", "attacks", help="The table the attack rows come from (e.g. nsl-kdd:test). Default: a held-out part (--holdout) of --data."),
        click.option("--label", help="Label column of a table file without a manifest."),
        click.option("--schema", "schema_file", type=click.Path(exists=True, dir_okay=False), help="Schema TOML for a CSV/Parquet file (kinds, label, [categories], [feature_groups])."),
        click.option("--category", help="Attack categories to disguise, comma separated (e.g. dos). Default: every attack row."),
        click.option("--label-value", "label_value", help="Attack labels to disguise, comma separated (e.g. neptune,smurf)."),
        click.option("--normal", help="The benign class, case aside (default: normal, else benign: UNSW-NB15's Normal, CIC-IDS2017's BENIGN, malware folders' benign)."),
        click.option("--detector", default="random-forest", show_default=True, help="The detector: random-forest, gradient-boosting, logistic-regression, mlp, svm, knn, naive-bayes, decision-tree, one a plugin registers, or a FILE.onnx."),
        click.option("--detector-seed", type=int, default=0, show_default=True, help="Seed of the detector advgen trains."),
        click.option("--preset", "preset_name", type=click.Choice(["idsgan", "realistic", "malgan"]), help="What may change: idsgan (NSL-KDD feature groups per category), realistic (stricter), malgan (binary features, add only)."),
        click.option("--frozen", help="Columns or feature groups that may never change, comma separated (alone, or on top of --preset/--mask)."),
        click.option("--mask", "mask_file", type=click.Path(exists=True, dir_okay=False), help="Mask TOML: [default] and [classes.NAME] with frozen or modifiable lists (docs/adversarial.md)."),
        click.option("--query-budget", type=click.IntRange(min=0), default=50_000, show_default=True, help="Most rows the attack may ask the detector about, in all (per attack run)."),
        click.option("--allow-proba", is_flag=True, help="Let the attack see the detector's attack probability (default: labels only)."),
        click.option("--rounds", type=click.IntRange(min=1), help="GAN training rounds (default 120)."),
        click.option("--query-batch", type=click.IntRange(min=1), help="Generated rows asked about a round (default 200)."),
        click.option("--gan-option", "gan_options", multiple=True, metavar="KEY=VALUE", help="Any other GAN setting (docs/adversarial.md), e.g. margin=3."),
        click.option("--holdout", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.5, show_default=True, help="Without --attacks: the share of --data held out for the attack."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of the attack (and of the hold-out split)."),
        click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Run folder."),
        click.option("--overwrite", is_flag=True, help="Start again in a run folder that holds an earlier run."),
        click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="CPU threads (torch, BLAS, detectors)."),
        click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


@click.command("evade")
@_common
@click.option("--unsafe-load-detector", "unsafe_detector", type=click.Path(exists=True, dir_okay=False),
              help="Use the scikit-learn estimator pickled in FILE (trained on --data like a built-in). UNSAFE: unpickling executes any code the file holds.")
@click.option("--final-tries", type=click.IntRange(min=0), help="Re-draws for rows the detector still flags at the end (default 3; 0: no final queries).")
@click.option("--realism-weight", type=click.FloatRange(min=0), help="Weight of the realism term (default 0: off).")
@click.option("--generator", type=click.Path(exists=True, file_okay=False), help="Disguise with the generator of this earlier run, asking the detector nothing (no training).")
@click.option("--baselines", default="mimicry,random", show_default=True, help="Baselines in the same report: mimicry, random, or none.")
@click.option("--baseline-k", type=click.IntRange(min=1), help="Candidates a row for the baselines (default: the GAN's queries a row).")
@click.option("--transfer", default="all", show_default=True, help="Detectors that judge the rows too: all (7 built-ins and a random forest with another seed), none, or names (NAME or NAME@seedN).")
@click.option("--no-realism", is_flag=True, help="Skip the realism AUCs (the slowest metric).")
@click.option("--format", "output_format", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True, help="Format of adversarial.*.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint (same options).")
def evade_cmd(data: str, attacks: str | None, label: str | None, schema_file: str | None, category: str | None,
              label_value: str | None, normal: str | None, detector: str, detector_seed: int, preset_name: str | None,
              frozen: str | None, mask_file: str | None, query_budget: int, allow_proba: bool, rounds: int | None,
              query_batch: int | None, gan_options: tuple[str, ...], holdout: float, seed: int, out: str, overwrite: bool,
              threads: int, quiet: bool, unsafe_detector: str | None, final_tries: int | None, realism_weight: float | None,
              generator: str | None, baselines: str, baseline_k: int | None, transfer: str, no_realism: bool,
              output_format: str, resume: bool) -> None:
    """Disguise attack rows so that a black-box detector misses them, and measure it.

    A generator rewrites each attack row's modifiable features (its functional
    ones are copied bit for bit) and learns from the detector's answers through
    a substitute; every row is repaired to the types, ranges and relations of
    real traffic. The run folder gets adversarial.csv (the disguised rows and
    their source_row), report.json, evasion.png (detection before and after,
    with matplotlib) and the trained generator (attack.pt).

    \b
    Examples:
      advgen evade --data nsl-kdd:train20 --attacks nsl-kdd:test --category dos \\
          --detector random-forest --preset idsgan --out runs/evade-dos
      advgen evade --data path/to/malgan-trial --preset malgan --out runs/malgan
    """
    from advgen.adversarial.api import evade

    if category and label_value:
        raise click.UsageError("choose one of --category and --label-value")
    if detector.lower().endswith(".onnx") and not Path(detector).is_file():
        raise click.BadParameter(f"{detector} not found", param_hint="--detector")
    base = [] if baselines.strip() == "none" else [b.strip() for b in baselines.split(",") if b.strip()]
    t = time.perf_counter()
    result = evade(
        data, attacks, label=label, schema_file=schema_file, category=category, label_value=label_value, normal=normal,
        detector=detector, detector_seed=detector_seed, unsafe_pickle=unsafe_detector, preset_name=preset_name,
        frozen=frozen, mask_file=mask_file, query_budget=query_budget, allow_proba=allow_proba,
        config=_gan_options(rounds, query_batch, final_tries, realism_weight, gan_options), generator=generator,
        baselines=base, baseline_k=baseline_k, transfer=_transfer(transfer), realism=not no_realism, holdout=holdout,
        seed=seed, out=out, output_format=output_format, resume=resume, overwrite=overwrite, threads=threads,
        progress=_say(quiet),
    )
    click.echo(format_evade(result.report))
    plot = ", evasion.png" if result.report.get("plot") else ""
    click.echo(f"\nwrote {len(result.adversarial):,} disguised rows to {Path(out) / ('adversarial.' + output_format)}, "
               f"report.json{plot} and attack.pt in {out} ({time.perf_counter() - t:.0f} s)")


@click.command("harden")
@_common
@click.option("--harden-rounds", "harden_rounds", type=click.IntRange(min=1), default=2, show_default=True,
              help="Hardening rounds: disguise the training attacks, retrain, attack again.")
@click.option("--cover", type=click.IntRange(min=0), default=1, show_default=True,
              help="Cover rows per training attack row added in round 1: its modifiable features from a random normal row (0: none).")
def harden_cmd(data: str, attacks: str | None, label: str | None, schema_file: str | None, category: str | None,
               label_value: str | None, normal: str | None, detector: str, detector_seed: int, preset_name: str | None,
               frozen: str | None, mask_file: str | None, query_budget: int, allow_proba: bool, rounds: int | None,
               query_batch: int | None, gan_options: tuple[str, ...], holdout: float, seed: int, out: str, overwrite: bool,
               threads: int, quiet: bool, harden_rounds: int, cover: int) -> None:
    """Harden a detector: retrain it on disguised attack rows, attack it again, repeat.

    Each round disguises the attack rows of --data against the current
    detector, retrains it with them labelled as attacks, and judges it on the
    --attacks table: detection rate on fresh disguised rows (a new attack with
    the same budget), on clean attack rows, and false positives on its normal
    rows. Writes hardened.onnx (with skl2onnx), hardening_rows.csv, report.json
    and hardening.png (the rates round by round, with matplotlib).

    \b
    Example:
      advgen harden --data nsl-kdd:train20 --attacks nsl-kdd:test --category dos \\
          --preset idsgan --harden-rounds 2 --out runs/harden-dos
    """
    from advgen.adversarial.api import harden

    if category and label_value:
        raise click.UsageError("choose one of --category and --label-value")
    report = harden(
        data, attacks, label=label, schema_file=schema_file, category=category, label_value=label_value, normal=normal,
        detector=detector, detector_seed=detector_seed, preset_name=preset_name, frozen=frozen, mask_file=mask_file,
        rounds=harden_rounds, cover=cover, query_budget=query_budget, allow_proba=allow_proba,
        config=_gan_options(rounds, query_batch, None, None, gan_options), holdout=holdout, seed=seed, out=out,
        overwrite=overwrite, threads=threads, progress=_say(quiet),
    )
    click.echo(format_harden(report))
    onnx = report.get("onnx", {})
    if "path" in onnx:
        click.echo(f"\nwrote {onnx['path']} (labels agree with scikit-learn on {onnx['label_agreement']:.2%} of {onnx['rows_checked']:,} rows)")
    elif onnx:
        click.echo(f"\nno ONNX file: {onnx.get('error')}")
    if report.get("plot"):
        click.echo(f"plot: {report['plot']}")


