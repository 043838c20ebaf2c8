"""Writing runtime samples to files chunk by chunk: CSV, Parquet, ``.npz``/``.npy`` and PNG folders.

The writers are :class:`advgen.writers.SampleWriter` s that take :class:`~advgen_export.runtime.Generated`
chunks; like ``advgen.io``, that module imports no torch (tests/test_export.py proves the runtime
works with torch absent). Each output appears only once complete. PNG files are encoded with zlib so
that images need no imaging library.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from advgen.io import write_error
from advgen.writers import ArrayWriter, SampleWriter, TableWriter
from advgen_export.manifest import ModelError


class GeneratedTableWriter(TableWriter):
    """Tables: each chunk assembled into a DataFrame by ``to_table``, then appended to CSV or Parquet
    (``integer_columns``, text in the DataFrame, as integers: see :class:`~advgen.writers.TableWriter`)."""

    def __init__(self, path: Path, n: int, to_table: Callable[[Any], Any], integer_columns: Sequence[str] = ()):
        super().__init__(path, n, integer_columns=integer_columns)
        self.to_table = to_table

    def _write(self, chunk: Any) -> int:
        return super()._write(self.to_table(chunk))


class GeneratedArrayWriter(ArrayWriter):
    """``.npz`` holds every output plus ``labels``; ``.npy`` the primary output; ``.csv`` the primary
    output, one sample a row, with a ``label`` column for conditional models."""

    def __init__(self, path: Path, n: int, primary: str, classes: Sequence[str] | None):
        dtypes = {"labels": np.asarray([str(c) for c in classes], dtype=str).dtype} if classes else None
        super().__init__(path, n, primary=primary, label="labels", dtypes=dtypes)

    def _arrays(self, chunk: Any) -> dict[str, np.ndarray]:
        arrays = dict(chunk.outputs)
        if chunk.labels is not None:
            arrays["labels"] = np.asarray(chunk.labels, dtype=str)
        return super()._arrays(arrays)


class PngFolderWriter(SampleWriter):
    """One PNG per image, ``000000.png`` (``000000_<label>.png`` for conditional models), numbered
    across chunks. Files are written into a temporary folder beside ``folder`` and moved in at
    ``close``, so a failure leaves the folder as it was."""

    def __init__(self, folder: Path, n: int, primary: str, layout: str, value_range: Sequence[float]):
        super().__init__(folder, n)
        self.primary, self.layout, self.value_range = primary, layout, value_range
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
        except OSError as exc:
            raise write_error(exc, folder) from None

    def _write(self, chunk: Any) -> int:
        pixels = to_uint8_hwc(chunk.outputs[self.primary], self.layout, self.value_range)
        for i, img in enumerate(pixels):
            label = chunk.labels[i] if chunk.labels is not None else None
            (self.tmp / png_name(self.written + i, label)).write_bytes(encode_png(img))
        return len(pixels)

    def _finish(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        with os.scandir(self.tmp) as entries:
            for entry in entries:
                os.replace(entry.path, self.path / entry.name)
        self.tmp.rmdir()

    def _discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def png_name(index: int, label: str | None) -> str:
    """``000042.png``, or ``000042_<label>.png`` for a conditional model's sample."""
    return f"{index:06d}_{_safe(label)}.png" if label is not None else f"{index:06d}.png"


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
