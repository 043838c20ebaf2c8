"""Writing PNG files and sample grids with the standard library only.

Writing needs no Pillow: an 8-bit grayscale or RGB PNG is a signature, an IHDR chunk, zlib-compressed
scanlines each prefixed with filter byte 0, and an IEND chunk. So the sample grids drawn at every
checkpoint, the byte plots of ``bytes2img`` and ``advgen sample -o DIR`` work on a bare install.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from advgen.io import atomic_path


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of a uint8 image ``[H, W]``, ``[H, W, 1]`` or ``[H, W, 3]``."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ValueError(f"PNG pixels must be uint8, got {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        color_type, channels = 0, 1
    elif img.ndim == 3 and img.shape[2] == 3:
        color_type, channels = 2, 3
    else:
        raise ValueError(f"PNG image must be [H, W], [H, W, 1] or [H, W, 3], got {img.shape}")
    h, w = img.shape[:2]
    rows = np.ascontiguousarray(img).reshape(h, w * channels)
    scanlines = np.concatenate([np.zeros((h, 1), dtype=np.uint8), rows], axis=1).tobytes()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(scanlines, 6))
        + chunk(b"IEND", b"")
    )


def write_png(image: np.ndarray, path: str | Path) -> None:
    """Write ``image`` (see :func:`encode_png`) to ``path`` atomically."""
    data = encode_png(image)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def grid(rows: list[list[np.ndarray]], pad: int = 1, scale: int = 1, gap_after: int | None = None,
         background: int = 128) -> np.ndarray:
    """Tile uint8 ``[H, W, C]`` images into one image: ``rows[i][j]`` at row i, column j.

    Missing cells stay background; ``gap_after`` leaves a wider gap after that column (to separate
    real images from generated ones); ``scale`` repeats pixels so that 8x8 images stay visible.
    """
    cells = [im for row in rows for im in row]
    if not cells:
        raise ValueError("grid needs at least one image")
    h, w, c = cells[0].shape
    n_cols = max(len(r) for r in rows)
    extra = 3 * pad + 2 if gap_after is not None else 0
    height = len(rows) * (h + pad) + pad
    width = n_cols * (w + pad) + pad + extra
    out = np.full((height, width, c), background, dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, im in enumerate(row):
            y = pad + i * (h + pad)
            x = pad + j * (w + pad) + (extra if gap_after is not None and j >= gap_after else 0)
            out[y : y + h, x : x + w] = im
    if scale > 1:
        out = out.repeat(scale, axis=0).repeat(scale, axis=1)
    return out
