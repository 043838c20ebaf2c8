"""Image samples to files chunk by chunk: ``.npz`` arrays, a folder of PNGs per class, one PNG grid.

Each writer is an :class:`advgen.writers.SampleWriter`: it takes :class:`ImageSamples` chunks and
puts its result in place only once all samples came, so a failure leaves an earlier output as it was.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from advgen.errors import AdvgenError
from advgen.io import write_error
from advgen.writers import ArrayWriter, SampleWriter
from advgen_images.bytes2img import swap_into_place
from advgen_images.png import encode_png, write_png

if TYPE_CHECKING:  # pragma: no cover
    from advgen_images.domain import ImageSamples

SAMPLES_MARKER = ".advgen-images.json"


def _pixels(samples: ImageSamples) -> np.ndarray:
    """uint8 ``[N, H, W, C]``: decoded samples are already; floats in [0, 1] read from a file are scaled."""
    if samples.x.dtype == np.uint8:
        return samples.x
    return np.rint(np.clip(samples.to_float("NHWC"), 0, 1) * 255).astype(np.uint8)


class ImageArrayWriter(ArrayWriter):
    """``.npz`` with ``x`` (uint8 ``[N, H, W, C]``) and, for labelled images, ``y`` (class names);
    ``.npy`` with ``x`` only."""

    def __init__(self, path: str | Path, n: int, classes: list[str] | None):
        dtypes = {"y": np.asarray([str(c) for c in classes], dtype=str).dtype} if classes else None
        super().__init__(path, n, primary="x", dtypes=dtypes)

    def _arrays(self, chunk: Any) -> dict[str, np.ndarray]:
        arrays = {"x": chunk.x} if chunk.y is None else {"x": chunk.x, "y": np.asarray(chunk.y, dtype=str)}
        return super()._arrays(arrays)


class ImageFolderWriter(SampleWriter):
    """``out/<class>/<index>.png`` (``out/unlabelled/`` without classes), built in a folder beside
    ``out`` and swapped in at ``close``. An existing ``out`` is replaced only when it is empty or an
    earlier sample folder of advgen (it holds :data:`SAMPLES_MARKER`)."""

    def __init__(self, out: str | Path, n: int):
        super().__init__(out, n)
        out = self.path
        if out.exists():
            if not out.is_dir():
                raise AdvgenError(f"{out} exists and is not a folder")
            if any(out.iterdir()) and not (out / SAMPLES_MARKER).is_file():
                raise AdvgenError(f"{out} exists and was not written by advgen; choose another output folder")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        except OSError as exc:
            raise write_error(exc, out) from None
        self._folders: set[str] = set()

    def _write(self, chunk: ImageSamples) -> int:
        pixels = _pixels(chunk)
        names = chunk.y if chunk.y is not None else np.full(len(chunk), "unlabelled")
        for i, (img, name) in enumerate(zip(pixels, names), start=self.written):
            folder = _safe(str(name))
            if folder not in self._folders:
                (self.tmp / folder).mkdir(exist_ok=True)
                self._folders.add(folder)
            (self.tmp / folder / f"{i:06d}.png").write_bytes(encode_png(img))
        return len(chunk)

    def _finish(self) -> None:
        (self.tmp / SAMPLES_MARKER).write_text(json.dumps({"images": self.written}) + "\n")
        swap_into_place(self.tmp, self.path)

    def _discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


class ImageGridWriter(SampleWriter):
    """One PNG grid of the first samples (``per_class`` of each class, or ``unlabelled`` in all),
    drawn at ``close`` by ``render``; only those samples are kept in memory."""

    def __init__(self, path: str | Path, n: int, render: Callable[[ImageSamples], np.ndarray],
                 per_class: int = 10, unlabelled: int = 80):
        super().__init__(path, n)
        self.render = render
        self.per_class, self.unlabelled = per_class, unlabelled
        self._kept: list[ImageSamples] = []
        self._counts: dict[str, int] = {}

    def _write(self, chunk: ImageSamples) -> int:
        if chunk.y is None:
            room = self.unlabelled - sum(len(k) for k in self._kept)
            if room > 0:
                self._kept.append(chunk[:room])
            return len(chunk)
        keep = []
        for i, name in enumerate(chunk.y):
            seen = self._counts.get(str(name), 0)
            if seen < self.per_class:
                self._counts[str(name)] = seen + 1
                keep.append(i)
        if keep:
            self._kept.append(chunk[np.asarray(keep)])
        return len(chunk)

    def _finish(self) -> None:
        from advgen_images.domain import ImageSamples

        kept = [k for k in self._kept if len(k)]
        if not kept:
            raise AdvgenError("no samples to draw")
        y = None if kept[0].y is None else np.concatenate([k.y for k in kept])
        write_png(self.render(ImageSamples(np.concatenate([k.x for k in kept]), y)), self.path)

    def _discard(self) -> None:
        self._kept = []


def _safe(name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name).strip(".")
    return cleaned or "_"
