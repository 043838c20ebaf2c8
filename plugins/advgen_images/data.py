"""Image sources: the embedded digits, MNIST-style IDX files, ``.npz`` arrays and class folders.

Every loader returns an :class:`ImageSet`: float images in ``[0, 1]`` laid out ``[N, C, H, W]`` (the
layout the nets read), an optional class index per image and the class names. Resizing and channel
conversion happen afterwards, in one place (:func:`conform`), so that each loader only has to read
its format faithfully. Bad input raises :class:`~advgen.errors.InvalidDataError` with one line;
unreadable images inside a folder are skipped and counted instead, because one corrupt JPEG in a
scraped folder should not stop a run.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from advgen.errors import InvalidDataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
PILLOW_HINT = "reading image folders needs Pillow: pip install pillow (or pip install 'advgen[plot]')"
MIN_SIDE, MAX_SIDE = 4, 256


@dataclass
class ImageSet:
    """Images as float32 ``[N, C, H, W]`` in ``[0, 1]``, with optional class indices into ``classes``."""

    images: np.ndarray
    labels: np.ndarray | None
    classes: list[str]
    source: str
    format: str
    notes: list[str] = field(default_factory=list)
    skipped: int = 0  # unreadable files passed over (image folders only)

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise InvalidDataError(f"{self.source}: expected images [N, C, H, W], got shape {self.images.shape}")
        if self.images.shape[0] == 0:
            raise InvalidDataError(f"{self.source}: no images found")
        if self.labels is not None and self.labels.shape[0] != self.images.shape[0]:
            raise InvalidDataError(
                f"{self.source}: {self.images.shape[0]} images but {self.labels.shape[0]} labels"
            )


# --- the embedded default ------------------------------------------------------------------------


def load_digits() -> ImageSet:
    """scikit-learn's bundled handwritten digits: 1,797 images of 8x8 pixels in 17 grey levels."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[:, None]
    return ImageSet(
        images=images,
        labels=bunch.target.astype(np.int64),
        classes=[str(c) for c in bunch.target_names],
        source="digits (scikit-learn, embedded)",
        format="digits",
    )


# --- MNIST-style IDX files -----------------------------------------------------------------------

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (raw or gzip): the format of MNIST and Fashion-MNIST.

    Header: two zero bytes, a type code, the number of dimensions, then each dimension as a
    big-endian uint32; the data follows in C order.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InvalidDataError(f"cannot read IDX file {p}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise InvalidDataError(f"{p} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise InvalidDataError(f"IDX file {p} is truncated in its header")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    found = len(raw) - header
    if found < expected:
        raise InvalidDataError(
            f"IDX file {p} is truncated: shape {tuple(dims)} needs {expected} data bytes, found {found}"
        )
    return np.frombuffer(raw, dtype=dtype, count=int(np.prod(dims)), offset=header).reshape(dims)


def _idx_labels_path(images_path: Path) -> Path | None:
    """MNIST naming: ``train-images-idx3-ubyte[.gz]`` pairs with ``train-labels-idx1-ubyte[.gz]``."""
    name = images_path.name
    if "images" not in name:
        return None
    base = name.replace("images", "labels").replace("idx3", "idx1")
    for candidate in (base, base.removesuffix(".gz"), base + ".gz"):
        q = images_path.with_name(candidate)
        if q.is_file():
            return q
    return None


def _find_idx_images(folder: Path, split: str | None) -> Path | None:
    """The images file of ``split`` (train or test; MNIST calls test ``t10k``) inside a folder."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and re.search(r"images[-.]idx3", p.name))
    if not files:
        return None
    prefix = {"test": "t10k", "t10k": "t10k", None: "train", "train": "train"}.get(split, split)
    chosen = [p for p in files if p.name.startswith(prefix)]
    if not chosen:
        names = ", ".join(p.name for p in files)
        raise InvalidDataError(f"{folder} holds no IDX images for split {split!r}; found: {names}")
    return chosen[0]


def load_idx(images_path: str | Path, labels_path: str | Path | None = None) -> ImageSet:
    """Images ``[N, H, W]`` (or ``[N, H, W, C]``) from an IDX file, labels from its companion file."""
    p = Path(images_path)
    arr = read_idx(p)
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4:
        arr = arr.transpose(0, 3, 1, 2)
    else:
        raise InvalidDataError(f"IDX file {p} holds a {arr.ndim}-d array; images need 3 or 4 dimensions")
    images = _to_unit(arr, str(p))
    lp = Path(labels_path) if labels_path else _idx_labels_path(p)
    labels = classes = None
    notes = []
    if lp is not None:
        raw_labels = read_idx(lp)
        if raw_labels.ndim != 1:
            raise InvalidDataError(f"IDX labels file {lp} must be 1-d, got shape {raw_labels.shape}")
        if raw_labels.shape[0] != images.shape[0]:
            raise InvalidDataError(
                f"{p} holds {images.shape[0]} images but {lp} holds {raw_labels.shape[0]} labels"
            )
        labels, classes = _index_labels(raw_labels)
    else:
        notes.append(f"no labels file found beside {p.name}; training unconditionally")
    return ImageSet(images, labels, classes or [], str(p), "idx", notes)


# --- .npz arrays ---------------------------------------------------------------------------------


def load_npz(path: str | Path, x_key: str = "x", y_key: str = "y") -> ImageSet:
    """Arrays ``x`` (``[N, H, W]``, ``[N, H, W, C]`` or ``[N, C, H, W]``) and optional labels ``y``."""
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as data:
            if x_key not in data:
                raise InvalidDataError(f"{p} has no array {x_key!r} (arrays: {', '.join(data.files) or 'none'})")
            x = data[x_key]
            y = data[y_key] if y_key in data else None
    except InvalidDataError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise InvalidDataError(f"cannot read {p} as .npz: {exc}") from None
    if y is not None and (y.ndim != 1 or y.shape[0] != x.shape[0]):
        raise InvalidDataError(f"{p}: x holds {x.shape[0]} images but y has shape {y.shape}; they must match")
    images = _to_unit(to_channels_first(x, str(p)), str(p))
    labels, classes = _index_labels(y) if y is not None else (None, [])
    notes = [] if y is not None else [f"{p.name} has no {y_key!r} array; training unconditionally"]
    return ImageSet(images, labels, classes, str(p), "npz", notes)


def to_channels_first(x: np.ndarray, source: str) -> np.ndarray:
    """``[N,H,W]`` / ``[N,H,W,C]`` / ``[N,C,H,W]`` to ``[N,C,H,W]``; channels-last wins a tie."""
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        if x.shape[-1] in (1, 3, 4):
            return x.transpose(0, 3, 1, 2)
        if x.shape[1] in (1, 3, 4):
            return x
    raise InvalidDataError(
        f"{source}: images must be [N, H, W], [N, H, W, C] or [N, C, H, W] with 1, 3 or 4 channels, "
        f"got shape {x.shape}"
    )


# --- a folder of class folders -------------------------------------------------------------------


def _pillow():
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow ships with matplotlib
        raise InvalidDataError(PILLOW_HINT) from None
    return Image


def load_folder(root: str | Path, size: int | None = None, max_per_class: int | None = None) -> ImageSet:
    """``root/<class>/<image>``: every sub-folder is a class, every readable image in it a sample.

    Images are read as RGB and resized to ``size`` x ``size`` (default: the most common size when it
    is square and between 4 and 256 pixels, else 32); a set whose channels are all equal is kept as
    grayscale. Files that are not images or cannot be decoded are skipped and counted.
    """
    Image = _pillow()
    root = Path(root)
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise InvalidDataError(f"{root} has no class sub-folders (expected {root}/<class>/<image>.png)")
    loaded: list[tuple[int, np.ndarray]] = []
    skipped: list[str] = []
    classes: list[str] = []
    for d in class_dirs:
        files = sorted(f for f in d.rglob("*") if f.is_file() and not f.name.startswith("."))
        if max_per_class:
            files = files[:max_per_class]
        k = len(classes)
        got = 0
        for f in files:
            try:
                with Image.open(f) as im:
                    im.load()
                    rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
            except Exception:  # PIL raises many types (UnidentifiedImageError, OSError, SyntaxError, ...)
                skipped.append(str(f.relative_to(root)))
                continue
            loaded.append((k, rgb))
            got += 1
        if got:
            classes.append(d.name)
    if not loaded:
        raise InvalidDataError(f"{root}: no readable images in {len(class_dirs)} class folders")
    sizes = [im.shape[:2] for _, im in loaded]
    if size is None:
        common = max(sorted(set(sizes)), key=sizes.count)  # ties: the smallest size, deterministically
        size = common[0] if common[0] == common[1] and MIN_SIDE <= common[0] <= MAX_SIDE else 32
    out = np.empty((len(loaded), 3, size, size), dtype=np.float32)
    for i, (_, rgb) in enumerate(loaded):
        if rgb.shape[:2] != (size, size):
            resample = Image.Resampling.LANCZOS if max(rgb.shape[:2]) > size else Image.Resampling.BICUBIC
            rgb = np.asarray(Image.fromarray(rgb).resize((size, size), resample), dtype=np.uint8)
        out[i] = rgb.transpose(2, 0, 1) / 255.0
    if np.array_equal(out[:, 0], out[:, 1]) and np.array_equal(out[:, 0], out[:, 2]):
        out = out[:, :1]
    labels = np.array([k for k, _ in loaded], dtype=np.int64)
    notes = []
    if skipped:
        shown = ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        notes.append(f"skipped {len(skipped)} unreadable or non-image files in {root}: {shown}")
    empty = [d.name for d in class_dirs if d.name not in classes]
    if empty:
        notes.append(f"ignored {len(empty)} class folders without readable images: {', '.join(empty[:10])}")
    return ImageSet(out, labels, classes, str(root), "folder", notes, skipped=len(skipped))


# --- dispatch and conforming ---------------------------------------------------------------------


def load_source(path: str | Path, split: str | None = None, labels: str | None = None,
                label_key: str | None = None, size: int | None = None) -> ImageSet:
    """Pick the loader from what ``path`` is: a ``.npz``, an IDX file or folder, or a class folder."""
    p = Path(path)
    if not p.exists():
        raise InvalidDataError(f"image data not found: {p}")
    if p.is_dir():
        idx = _find_idx_images(p, split)
        if idx is not None:
            return load_idx(idx, labels)
        return load_folder(p, size=size)
    if p.suffix.lower() == ".npz":
        return load_npz(p, y_key=label_key or "y")
    head = p.open("rb").read(4)
    if head[:2] == b"\x1f\x8b" or (len(head) == 4 and head[:2] == b"\0\0"):
        return load_idx(p, labels)
    raise InvalidDataError(
        f"cannot tell the format of {p}: use a .npz file, an IDX file (MNIST), or a folder of class folders"
    )


def conform(data: ImageSet, size: int | None = None, channels: int | None = None) -> ImageSet:
    """Resize to ``size`` x ``size`` and convert to ``channels`` (1: luma, 3: replicate grey)."""
    x = torch.from_numpy(np.ascontiguousarray(data.images, dtype=np.float32))
    c = x.shape[1]
    if c == 4:  # drop alpha: generation is over visible pixels
        x = x[:, :3]
        c = 3
    if channels is not None:
        if channels not in (1, 3):
            raise InvalidDataError(f"channels must be 1 or 3, got {channels!r}")
        if channels == 1 and c == 3:
            x = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
        elif channels == 3 and c == 1:
            x = x.expand(-1, 3, -1, -1)
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or not MIN_SIDE <= size <= MAX_SIDE:
            raise InvalidDataError(f"size must be an integer between {MIN_SIDE} and {MAX_SIDE}, got {size!r}")
        if tuple(x.shape[2:]) != (size, size):
            upscale = size >= max(x.shape[2:])
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=not upscale)
            x = x.clamp(0.0, 1.0)
    h, w = x.shape[2:]
    if not (MIN_SIDE <= h <= MAX_SIDE and MIN_SIDE <= w <= MAX_SIDE):
        raise InvalidDataError(
            f"{data.source}: images of {h}x{w} pixels are outside {MIN_SIDE}..{MAX_SIDE}; pick --option size=N"
        )
    data.images = x.contiguous().numpy()
    return data


def _to_unit(arr: np.ndarray, source: str) -> np.ndarray:
    """Pixel values to float32 in ``[0, 1]``: uint8 is divided by 255, floats must be in [0, 1] or [0, 255]."""
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if not np.issubdtype(arr.dtype, np.number):
        raise InvalidDataError(f"{source}: pixel values must be numbers, got dtype {arr.dtype}")
    x = arr.astype(np.float32)
    if not np.isfinite(x).all():
        raise InvalidDataError(f"{source}: pixel values hold NaN or inf")
    lo, hi = float(x.min()), float(x.max())
    if lo >= 0 and hi <= 1:
        return x
    if lo >= 0 and hi <= 255:
        return x / 255.0
    raise InvalidDataError(f"{source}: pixel values span [{lo:g}, {hi:g}]; expected [0, 1] or [0, 255]")


def _index_labels(y: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Labels of any type to indices into the sorted list of distinct values (kept as text)."""
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise InvalidDataError("labels must be integers or strings, got non-integer floats")
        y = y.astype(np.int64)
    values, idx = np.unique(y, return_inverse=True)
    return idx.astype(np.int64).reshape(-1), [str(v) for v in values]
