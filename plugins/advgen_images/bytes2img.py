"""Byte plots of binaries: the malware-imaging approach of Nataraj et al. (2011, the Malimg data set).

A file's bytes, read as unsigned 8-bit pixels and laid out in rows of a fixed ``width``, form a
grayscale image whose texture reflects the file's sections (code, data, padding, resources). Files
of one family look alike, which makes image nets usable as malware classifiers and a GAN on these
images a generator of family-like textures. Each plot is average-pooled to ``size`` x ``size`` so
that files of any length give a data set of one shape.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from advgen.errors import AdvgenError, InvalidDataError
from advgen_images.png import encode_png

MARKER = ".advgen-images.json"  # marks a folder advgen wrote, so that it may be replaced safely
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


@dataclass
class ByteplotReport:
    out: Path
    per_class: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    truncated: int = 0

    @property
    def images(self) -> int:
        return sum(self.per_class.values())


def byteplot(data: bytes, width: int = 64, size: int = 32) -> np.ndarray:
    """A uint8 ``[size, size]`` byte plot of ``data``: rows of ``width`` bytes, the last one zero-padded."""
    if not data:
        raise ValueError("cannot plot an empty file")
    arr = np.frombuffer(data, dtype=np.uint8)
    rows = -(-arr.size // width)
    padded = np.zeros(rows * width, dtype=np.uint8)
    padded[: arr.size] = arr
    import torch  # here, not at the top: the command is registered without importing torch
    import torch.nn.functional as F

    x = torch.from_numpy(padded.reshape(1, 1, rows, width).astype(np.float32))
    # averaging whole cells keeps each region's mean byte value, which is what a byte plot shows
    pooled = F.adaptive_avg_pool2d(x, (size, size))[0, 0]
    return pooled.round().clamp(0, 255).to(torch.uint8).numpy()


def bytes_to_images(src: str | Path, out: str | Path, width: int = 64, size: int = 32,
                    max_bytes: int = DEFAULT_MAX_BYTES, overwrite: bool = False) -> ByteplotReport:
    """Turn ``src/<class>/<file>`` into the image-folder data set ``out/<class>/<file>.png``.

    The folder is built beside ``out`` and renamed into place at the end, so an interrupted run
    leaves no half-written data set. An existing ``out`` is replaced only when it is empty or was
    written by this command and ``overwrite`` is set. Empty and unreadable files, and symbolic links
    (or files reached through one), are skipped and reported.
    """
    src, out = Path(src), Path(out)
    if width < 1 or not 4 <= size <= 256 or max_bytes < 1:
        raise AdvgenError(f"width must be >= 1, size in 4..256 and max_bytes >= 1 (got {width}, {size}, {max_bytes})")
    if not src.is_dir():
        raise InvalidDataError(f"{src} is not a folder")
    class_dirs = sorted(d for d in src.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise InvalidDataError(f"{src} has no sub-folders; put each family's files in {src}/<family>/")
    _check_target(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    report = ByteplotReport(out=out)
    root = src.resolve()
    try:
        for d in class_dirs:
            used: set[str] = set()
            count = 0
            for f in sorted(p for p in d.rglob("*") if not p.name.startswith(".")):
                if f.is_symlink() or not f.resolve().is_relative_to(root):
                    # a corpus comes from elsewhere: a link in it would make any file readable here (/etc/shadow)
                    # a training image
                    report.skipped.append(f"{f} (a symbolic link: only files inside {src} are read)")
                    continue
                if not f.is_file():
                    continue
                try:
                    with f.open("rb") as fh:
                        data = fh.read(max_bytes + 1)
                except OSError:
                    report.skipped.append(f"{f} (unreadable)")
                    continue
                if not data:
                    report.skipped.append(f"{f} (empty)")
                    continue
                if len(data) > max_bytes:
                    data = data[:max_bytes]
                    report.truncated += 1
                name = _unique(re.sub(r"[^A-Za-z0-9._-]", "_", f.relative_to(d).as_posix()), used)
                (tmp / d.name).mkdir(exist_ok=True)
                (tmp / d.name / f"{name}.png").write_bytes(encode_png(byteplot(data, width, size)))
                count += 1
            if count:
                report.per_class[d.name] = count
        if not report.per_class:
            raise InvalidDataError(f"{src}: no readable non-empty files in {len(class_dirs)} sub-folders")
        meta = {"source": str(src.resolve()), "width": width, "size": size, "max_bytes": max_bytes,
                "classes": report.per_class, "skipped": len(report.skipped)}
        (tmp / MARKER).write_text(json.dumps(meta, indent=2) + "\n")
        swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def _unique(name: str, used: set[str]) -> str:
    base, i = name, 1
    while name in used:
        i += 1
        name = f"{base}-{i}"
    used.add(name)
    return name


def _check_target(out: Path, overwrite: bool) -> None:
    """Refuse to clobber a folder that holds anything but an earlier advgen output."""
    if not out.exists():
        return
    if not out.is_dir():
        raise AdvgenError(f"{out} exists and is not a folder")
    if not any(out.iterdir()):
        return
    if not (out / MARKER).is_file():
        raise AdvgenError(f"{out} exists and was not written by advgen; choose another output folder")
    if not overwrite:
        raise AdvgenError(f"{out} already holds a data set; pass --overwrite to replace it")


def swap_into_place(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` is moved aside first and removed after."""
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


def register_command(cli) -> None:
    """Add ``advgen datasets bytes2img`` to the ``datasets`` group of the command line."""
    import click

    group = cli.commands.get("datasets")
    if group is None:  # the core defines the group; fall back so the command is never lost
        group = click.Group("datasets", help="Data set helpers.")
        cli.add_command(group)

    @group.command("bytes2img")
    @click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
    @click.option("-o", "--out", required=True, type=click.Path(path_type=Path),
                  help="Output folder: one sub-folder of PNG byte plots per family.")
    @click.option("--width", default=64, show_default=True, type=click.IntRange(1, 1 << 20),
                  help="Bytes per row of the byte plot.")
    @click.option("--size", default=32, show_default=True, type=click.IntRange(4, 256),
                  help="Side of the square PNG each byte plot is pooled to.")
    @click.option("--max-bytes", default=DEFAULT_MAX_BYTES, show_default=True, type=click.IntRange(1),
                  help="Read at most this many bytes of each file.")
    @click.option("--overwrite", is_flag=True, help="Replace OUT when it holds an earlier bytes2img output.")
    def bytes2img(src: Path, out: Path, width: int, size: int, max_bytes: int, overwrite: bool) -> None:
        """Turn binaries in SRC/<family>/ into byte-plot images (the Malimg approach).

        Each file's bytes become grayscale pixels in rows of WIDTH bytes, pooled to SIZE x SIZE. The
        result is an image-folder data set: train on it with
        `advgen train --plugin images --data OUT`.
        """
        try:
            report = bytes_to_images(src, out, width=width, size=size, max_bytes=max_bytes, overwrite=overwrite)
        except AdvgenError as exc:
            raise click.ClickException(str(exc)) from None
        per = ", ".join(f"{k}={v}" for k, v in report.per_class.items())
        click.echo(f"wrote {report.images} byte plots of {size}x{size} to {out} ({per})")
        if report.skipped:
            shown = "; ".join(report.skipped[:5]) + (" ..." if len(report.skipped) > 5 else "")
            click.echo(f"skipped {len(report.skipped)} files: {shown}", err=True)
        if report.truncated:
            click.echo(f"read only the first {max_bytes} bytes of {report.truncated} large files", err=True)
