"""The ``advgen export`` command (torch side); ``advgen/cli.py`` adds it with ``register(cli)``."""

from __future__ import annotations

import json
from pathlib import Path

import click


def register(cli: click.Group) -> None:
    """Add ``export`` to the core command line."""
    cli.add_command(export_command)


@click.command("export")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="ONNX file to write (default RUN_DIR/model.onnx); the manifest goes to OUTPUT.json",
)
@click.option("--opset", type=click.IntRange(17, None), default=17, show_default=True, help="ONNX opset version")
@click.option("--skip-parity", is_flag=True, help="skip onnx.checker and the torch-vs-onnxruntime parity check")
@click.option("--json", "as_json", is_flag=True, help="print the manifest as JSON")
def export_command(run_dir: Path, output: Path | None, opset: int, skip_parity: bool, as_json: bool) -> None:
    """Export RUN_DIR's generator to ONNX for the torch-free `advgen-runtime`.

    The graph includes the domain's decoding and a dynamic batch dimension; it is checked with
    onnx.checker and against torch at batch sizes 1, 3 and 257 before anything is written.
    """
    from advgen.api import load_run
    from advgen.errors import AdvgenError
    from advgen_export.onnx_export import export

    target = output or run_dir / "model.onnx"
    try:
        result = export(load_run(run_dir), target, opset=opset, check=not skip_parity)
    except AdvgenError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(result.manifest, indent=2))
        return
    click.echo(f"wrote {result.model_path} ({result.manifest['model']['bytes']:,} bytes) and {result.manifest_path}")
    if result.parity is not None:
        worst = ", ".join(f"{k} {v:.2g}" for k, v in result.parity.max_abs_diff.items())
        sizes = ", ".join(map(str, result.parity.batch_sizes))
        click.echo(f"parity with torch at batch sizes {sizes}: largest differences {worst}")
