"""Writing runtime samples to files: CSV, Parquet, ``.npz`` and PNG, each written atomically.

The atomic-write helper comes from ``advgen.io``, which imports no torch (tests/test_export.py proves
the runtime works with torch absent); PNG files are encoded with zlib so that images need no imaging
library.
"""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from advgen.errors import AdvgenError
from advgen.io import atomic_path
from advgen.io import write_table as io_write_table
from advgen_export.manifest import ModelError

TABLE_SUFFIXES = (".csv", ".parquet")
ARRAY_SUFFIXES = (".npz", ".csv")


def write_table(df: Any, path: Path) -> None:
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise ModelError(f"cannot write a table as {path.suffix or 'a folder'}; use {' or '.join(TABLE_SUFFIXES)}")
    try:
        io_write_table(df, path)
    except AdvgenError as exc:  # the runtime reports its own error type
        raise ModelError(str(exc)) from None


def write_arrays(arrays: Mapping[str, np.ndarray], labels: Sequence[str] | None, path: Path, primary: str) -> None:
    """``.npz`` holds every output plus ``labels``; ``.csv`` holds the primary output, one sample a row."""
    suffix = path.suffix.lower()
    if suffix not in ARRAY_SUFFIXES:
        raise ModelError(f"cannot write arrays as {suffix or 'a folder'}; use .npz or .csv (or a folder for PNG images)")
    with atomic_path(path) as tmp:
        if suffix == ".npz":
            extra = {"labels": np.asarray(labels, dtype=str)} if labels is not None else {}
            with tmp.open("wb") as fh:
                np.savez_compressed(fh, **dict(arrays), **extra)
        else:
            flat = np.asarray(arrays[primary]).reshape(len(arrays[primary]), -1)
            header = ",".join(f"x{i}" for i in range(flat.shape[1]))
            fmt = "%d" if np.issubdtype(flat.dtype, np.integer) else "%.6g"
            if labels is not None:
                lines = [header + ",label"]
                lines += [",".join(fmt % v for v in row) + f",{lab}" for row, lab in zip(flat, labels)]
                tmp.write_text("\n".join(lines) + "\n")
            else:
                np.savetxt(tmp, flat, delimiter=",", header=header, comments="", fmt=fmt)


def write_png_folder(
    images: np.ndarray, folder: Path, layout: str, value_range: Sequence[float], labels: Sequence[str] | None
) -> list[Path]:
    """One PNG per image, ``000000.png`` (``000000_<label>.png`` for conditional models)."""
    pixels = to_uint8_hwc(images, layout, value_range)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, img in enumerate(pixels):
        tag = f"_{_safe(labels[i])}" if labels is not None else ""
        path = folder / f"{i:06d}{tag}.png"
        with atomic_path(path) as tmp:
            tmp.write_bytes(encode_png(img))
        written.append(path)
    return written


def to_uint8_hwc(images: np.ndarray, layout: str, value_range: Sequence[float]) -> np.ndarray:
    """Images in ``layout`` (CHW, HWC or HW) to ``[N, H, W, C]`` uint8."""
    arr = np.asarray(images)
    if layout == "CHW":
        arr = arr.transpose(0, 2, 3, 1)
    elif layout == "HW":
        arr = arr[..., None]
    elif layout != "HWC":
        raise ModelError(f"unknown image layout {layout!r}; expected CHW, HWC or HW")
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3, 4):
        raise ModelError(f"cannot write images of shape {list(np.shape(images))} as PNG")
    if arr.dtype != np.uint8:
        lo, hi = float(value_range[0]), float(value_range[1])
        arr = np.rint((np.clip(arr.astype(np.float64), lo, hi) - lo) / (hi - lo) * 255).astype(np.uint8)
    return arr


def encode_png(img: np.ndarray) -> bytes:
    """A minimal PNG encoder: 8-bit grey, RGB or RGBA, no interlacing, filter 0 on every row."""
    h, w, c = img.shape
    colour = {1: 0, 3: 2, 4: 6}[c]
    raw = b"".join(b"\x00" + img[row].tobytes() for row in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text))[:40] or "x"
