"""The ``advgen export`` command (torch side); ``advgen/cli.py`` adds it with ``register(cli)``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click


def register(cli: click.Group) -> None:
    """Add ``export`` to the core command line."""
    cli.add_command(export_command)


@click.command("export")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), metavar="FILE", default=None,
    help="ONNX file to write (default RUN_DIR/model.onnx); the manifest goes to OUTPUT.json (existing files "
    "are replaced once the new ones are complete)",
)
@click.option("--opset", type=click.IntRange(17, None), default=17, show_default=True, help="ONNX opset version")
@click.option("--skip-parity", is_flag=True, help="skip onnx.checker and the torch-vs-onnxruntime parity check")
@click.option("--json", "as_json", is_flag=True, help="print the manifest as JSON")
def export_command(run_dir: Path, output: Path | None, opset: int, skip_parity: bool, as_json: bool) -> None:
    """Export RUN_DIR's generator to ONNX for the torch-free `advgen-runtime`.

    The graph includes the domain's decoding and a dynamic batch dimension; it is checked with
    onnx.checker and against torch at batch sizes 1, 3 and 257 before anything is written.
    An `advgen evade` run (a folder holding attack.pt) exports its generator for
    `advgen-runtime disguise`: attack rows and noise in, disguised rows out.
    """
    from advgen.errors import AdvgenError
    from advgen.writers import output_to_replace, say_replaced
    from advgen_export.evasion_export import is_evasion_run
    from advgen_export.manifest import manifest_path

    target = output or run_dir / "model.onnx"
    # before the suffix check (/dev/full has none) and the export: neither file may replace a folder or a device
    replaced = {path: output_to_replace(path, option) for path, option in (
        (target, "-o" if output is not None else ""), (manifest_path(target), "the manifest"))}
    if target.suffix.lower() != ".onnx":
        # the model is written over whatever file -o names: `-o RUN/checkpoint.pt` destroyed the run
        raise click.UsageError(f"the model file must end in .onnx (its manifest goes beside it), got {str(target)!r}")
    try:
        if is_evasion_run(run_dir):
            from advgen_export.evasion_export import export_evasion

            result = export_evasion(run_dir, target, opset=opset, check=not skip_parity)
        else:
            from advgen.api import load_run
            from advgen_export.onnx_export import export

            result = export(load_run(run_dir), target, opset=opset, check=not skip_parity)
    except AdvgenError as exc:
        raise click.ClickException(str(exc)) from None
    for path, what in replaced.items():
        say_replaced(what, path)
    if as_json:
        click.echo(json.dumps(result.manifest, indent=2))
        return
    click.echo(f"wrote {result.model_path} ({result.manifest['model']['bytes']:,} bytes) and {result.manifest_path}")
    if result.parity is not None:
        click.echo(parity_summary({**result.parity.to_dict(), "worst": result.parity.worst},
                                  result.manifest.get("outputs") or []))
    end_to_end = getattr(result, "end_to_end", None)
    if end_to_end is not None:
        click.echo(
            f"end to end on {end_to_end.rows} rows of {end_to_end.source}: the runtime disguises "
            f"{end_to_end.identical_rows} exactly as torch does ({end_to_end.differing_rows} differ at float32 "
            "boundaries); functional cells bit-identical in both"
        )
    elif "evasion" in result.manifest and not skip_parity:
        click.echo("end-to-end check skipped: the run folder holds no adversarial.csv or .parquet to disguise")


def _located(where: Any, diff: float, atol: Any, rtol: Any) -> str:
    """' in column web_traffic (torch 7.2e+06, allowed there 7.2e+02)': where an output's largest
    difference is, so that a difference of 7 reads as 7 on a value in the millions; '' when unknown."""
    if not isinstance(where, Mapping) or not diff:
        return ""
    try:
        value = float(where["torch"])
    except (KeyError, TypeError, ValueError):
        return ""
    column = where.get("column")
    place = f"column {column}" if column is not None else f"index {list(where.get('index') or [])}"
    there = ""
    if isinstance(atol, (int, float)) and isinstance(rtol, (int, float)) and rtol:
        there = f", allowed there {atol + rtol * abs(value):.3g}"
    return f" in {place} (torch value {value:.6g}{there})"


def parity_summary(parity: Mapping[str, Any], outputs: Sequence[Mapping[str, Any]]) -> str:
    """What the parity check compared, against which tolerance, and that it passed, in words.

    ``parity`` is ``ParityReport.to_dict()``; only ``batch_sizes``, ``atol``, ``rtol``,
    ``max_abs_diff`` and, when given, ``worst`` (``ParityReport.worst``: where each output's largest
    difference is) are read (the report may hold more). ``outputs`` are the manifest's output
    descriptions (dtype, vocabularies, rounding), which say how each output was compared.
    """
    sizes = ", ".join(str(b) for b in parity.get("batch_sizes") or [])
    atol, rtol = parity.get("atol"), parity.get("rtol")
    worst = dict(parity.get("max_abs_diff") or {})
    located = parity.get("worst") or {}
    lines = [f"parity with torch at batch sizes {sizes}: passed (onnxruntime and torch ran on the same inputs)"]
    by_name = {str(o.get("name")): o for o in outputs}
    for name, diff in worst.items():
        desc = by_name.get(name, {})
        dtype = str(desc.get("dtype", "float32"))
        if dtype.startswith("float"):
            allowed = f"{atol:g} + {rtol:g} x |torch value|" if rtol else f"{atol:g}"
            rounded = " (one rounding step more in rounded columns)" if desc.get("decimals") or desc.get("dtypes") else ""
            lines.append(f"  {name} ({dtype}): largest difference {diff:.2g}{_located(located.get(name), diff, atol, rtol)}, "
                         f"within the allowed {allowed}{rounded}")
        elif desc.get("exact", bool(desc.get("vocabularies"))):
            lines.append(f"  {name} ({dtype} category indices): identical" if diff == 0 else
                         f"  {name} ({dtype} category indices): equal except a few rows where two categories' "
                         "scores tie within float32 noise (at most 1% of values may differ there)")
        else:
            lines.append(f"  {name} ({dtype}): identical" if diff == 0 else
                         f"  {name} ({dtype}): largest difference {diff:g} (one rounding step allowed)")
    return "\n".join(lines)
