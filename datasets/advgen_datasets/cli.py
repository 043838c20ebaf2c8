"""``advgen datasets list | info | fetch``: a thin click layer over :mod:`advgen_datasets.info` and
:mod:`advgen_datasets.fetch`. ``register(group)`` adds the commands to the ``datasets`` group."""

from __future__ import annotations

import json
from typing import Any

import click

from advgen.errors import AdvgenError


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _fail(exc: AdvgenError) -> click.ClickException:
    return click.ClickException(str(exc))


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON.")
def list_command(as_json: bool) -> None:
    """List the registered datasets and how many of their files are in the data dir."""
    from advgen_datasets.fetch import data_dir
    from advgen_datasets.info import summary

    try:
        rows = summary()
    except AdvgenError as exc:
        raise _fail(exc) from None
    if as_json:
        click.echo(json.dumps({"data_dir": str(data_dir()), "datasets": rows}, indent=2))
        return
    width = max([len(r["name"]) for r in rows] + [4])
    click.echo(f"data dir: {data_dir()}")
    for r in rows:
        files = f"{r['files_present']}/{r['files']} files"
        click.echo(f"{r['name']:<{width}}  {files:<11}  {r['description']}")
        click.echo(f"{'':<{width}}  splits: {', '.join(r['splits'])} (default {r['default_split']})")


@click.command("info")
@click.argument("name")
@click.option("--split", "split", default=None, help="Split whose schema and class balance to show (default: the dataset's default split).")
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
def info_command(name: str, split: str | None, as_json: bool) -> None:
    """Show a dataset's files (present? checksum?), schema and class balance."""
    from advgen_datasets.info import describe

    try:
        d = describe(name, split)
    except AdvgenError as exc:
        raise _fail(exc) from None
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    click.echo(f"{d['name']}: {d['description']}")
    for key in ("homepage", "license", "citation", "manifest"):
        if d[key]:
            click.echo(f"  {key}: {d[key]}")
    click.echo(f"  data dir: {d['data_dir']}")
    click.echo("files:")
    for f in d["files"]:
        state = f["checksum"] if f["present"] else "MISSING"
        click.echo(f"  {f['name']:<50} {_size(f['size']):>9}  {state:<9} splits: {', '.join(f['splits'])}")
    missing = [f for f in d["files"] if not f["present"]]
    if any(f["url"] for f in missing):
        click.echo(f"  `advgen datasets fetch {d['name']}` downloads the missing files")
    if any(not f["url"] for f in missing):
        hint = f"{d['download_hint']}; " if d["download_hint"] else ""
        click.echo(f"  files without a download URL: {hint}put them in {d['data_dir']}")
    click.echo("splits:")
    for s, sd in d["splits"].items():
        mark = " (default)" if s == d["default_split"] else ""
        click.echo(f"  {s}{mark}: {', '.join(sd['files'])}" + (f" - {sd['description']}" if sd["description"] else ""))
    sch = d["schema"]
    kinds = ", ".join(f"{n} {k}" for k, n in sch["kinds"].items())
    click.echo(f"schema ({d['split']}): {sch['features']} features ({kinds}); label {sch['label']!r}")
    if sch["ignored"]:
        click.echo(f"  ignored: {', '.join(sch['ignored'])}")
    for g, members in sch["feature_groups"].items():
        click.echo(f"  group {g}: {len(members)} columns")
    if sch["categories"]:
        click.echo(f"  categories: {', '.join(f'{c} ({len(v)} labels)' for c, v in sch['categories'].items())}")
    balance = d["class_balance"]
    if balance is None:
        click.echo(f"class balance ({d['split']}): files not present")
        return
    total = sum(balance.values())
    click.echo(f"class balance ({d['split']}, {total:,} rows):")
    if d["categories_balance"]:
        click.echo("  " + ", ".join(f"{k} {v:,}" for k, v in d["categories_balance"].items()))
    click.echo("  " + ", ".join(f"{k} {v:,}" for k, v in balance.items()))


@click.command("fetch")
@click.argument("name")
@click.option("--split", "split", default=None, help="Fetch only this split's files (default: every file of the dataset).")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar while downloading.")
def fetch_command(name: str, split: str | None, progress: bool) -> None:
    """Download a dataset's missing files into the data dir and verify every file's checksum."""
    from advgen_datasets.fetch import ensure_file, file_path
    from advgen_datasets.manifest import get_manifest

    try:
        m = get_manifest(name)
        fnames: list[Any] = list(m.split(split).files) if split else list(m.files)
    except AdvgenError as exc:
        raise _fail(exc) from None
    failed: list[str] = []
    for f in fnames:
        had = file_path(m, f).is_file()
        try:
            p = ensure_file(m, f, download=True, progress=progress)
        except AdvgenError as exc:
            click.echo(f"error: {exc}", err=True)
            failed.append(f)
            continue
        entry = m.files[f]
        check = "sha256 ok" if entry.sha256 else ("git blob id ok" if entry.git_sha1 else ("row count ok" if entry.rows else "no checksum known"))
        click.echo(f"{'present' if had else 'downloaded'}: {p} ({check})")
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(fnames)} {name} files are not available: {', '.join(failed)}")


def register(group: click.Group) -> None:
    """Add ``list``, ``info`` and ``fetch`` to the ``advgen datasets`` group."""
    for cmd in (list_command, info_command, fetch_command):
        group.add_command(cmd)
