"""Image sources: the embedded digits, MNIST-style IDX files, ``.npz`` arrays and class folders.

Every loader returns an :class:`ImageSet`: float images in ``[0, 1]`` laid out ``[N, C, H, W]`` (the
layout the nets read), an optional class index per image and the class names. Resizing and channel
conversion happen afterwards, in one place (:func:`conform`), so that each loader only has to read
its format faithfully. Bad input raises :class:`~advgen.errors.InvalidDataError` with one line;
unreadable images inside a folder are skipped and counted instead, because one corrupt JPEG in a
scraped folder should not stop a run.

Hostile files are bounded before they are read: an IDX header or an ``.npz`` array header that
declares more than :data:`MAX_DATA_BYTES` is refused before any data is read or inflated (a
gzip or zip bomb inflates only as far as its header promised, one byte more), and a folder image
larger than :data:`MAX_IMAGE_PIXELS` by its header is skipped without being decoded. Devices and pipes
are refused (``/dev/zero`` would be read for ever, a FIFO would hang).
"""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import re
import stat
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from advgen.errors import InvalidDataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
PILLOW_HINT = "reading image folders needs Pillow: pip install pillow (or pip install 'advgen[plot]')"
MIN_SIDE, MAX_SIDE = 4, 256
# The most bytes one IDX file or one .npz array may hold (after decompression): 1 GiB, twice
# EMNIST-byclass (547 MB), the largest MNIST-style set in common use. Headers that declare more are
# refused before anything is read, so a 4 MB .gz that inflates to 4 GB costs nothing.
MAX_DATA_BYTES = 1 << 30
# The largest image of a class folder, in pixels by its header (4096 x 4096, 48 MiB decoded as RGB);
# larger images are skipped without being decoded. A JPEG above it is decoded at a reduced DCT scale
# (1/2 to 1/8) when that brings it under the limit, so camera photos load.
MAX_IMAGE_PIXELS = 4096 * 4096


def _open_regular(path: Path, what: str) -> BinaryIO:
    """``path`` opened for reading, refused with one line unless it is a regular file (after symlinks).

    Opened non-blocking, so a FIFO swapped in after a check cannot hang the open; the type is checked
    on the open descriptor.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise InvalidDataError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise InvalidDataError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:  # pragma: no cover - fstat of an open descriptor
        os.close(fd)
        raise InvalidDataError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a folder" if stat.S_ISDIR(mode) else "a device or a pipe"
        raise InvalidDataError(f"{path} is not a regular file ({kind}); {what} must be a file")
    os.set_blocking(fd, True)  # O_NONBLOCK was for the open only
    return os.fdopen(fd, "rb")


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
    big-endian uint32; the data follows in C order. The header is read first and sizes the read: the
    data must be exactly the bytes it declares (at most :data:`MAX_DATA_BYTES`); a gzip file is
    inflated no further than one byte past that.
    """
    p = Path(path)
    with _open_regular(p, "IDX file") as fh:
        try:
            gz = fh.read(2) == b"\x1f\x8b"
            fh.seek(0)
            stream: BinaryIO = gzip.GzipFile(fileobj=fh, mode="rb") if gz else fh  # type: ignore[assignment]
            magic = stream.read(4)
            if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_TYPES:
                raise InvalidDataError(f"{p} is not an IDX file (bad magic number {magic.hex() or 'empty'})")
            ndim = magic[3]
            raw_dims = stream.read(4 * ndim)
            if ndim == 0 or len(raw_dims) < 4 * ndim:
                raise InvalidDataError(f"IDX file {p} is truncated in its header")
            dims = [int.from_bytes(raw_dims[4 * i : 4 + 4 * i], "big") for i in range(ndim)]
            dtype = np.dtype(_IDX_TYPES[magic[2]])
            count = math.prod(dims)  # Python ints: no wrap-around however large the header claims
            expected = count * dtype.itemsize
            if expected > MAX_DATA_BYTES:
                raise InvalidDataError(
                    f"IDX file {p} declares shape {tuple(dims)}: {expected:,} data bytes, more than the "
                    f"{MAX_DATA_BYTES:,} advgen reads from one IDX file"
                )
            if not gz:  # the size on disk says it all before any data is read
                found = os.fstat(fh.fileno()).st_size - 4 - 4 * ndim
                if found != expected:
                    raise _idx_size_error(p, dims, expected, found, exact=True)
            data = stream.read(expected + 1)  # one byte past the declared size tells "more" from "exact"
            if len(data) != expected:
                raise _idx_size_error(p, dims, expected, len(data), exact=not gz)
        except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
            raise InvalidDataError(f"cannot read IDX file {p}: {exc}") from None
    return np.frombuffer(data, dtype=dtype, count=count).reshape(dims)


def _idx_size_error(p: Path, dims: list[int], expected: int, found: int, exact: bool) -> InvalidDataError:
    if found < expected:
        return InvalidDataError(
            f"IDX file {p} is truncated: shape {tuple(dims)} needs {expected} data bytes, found {found}"
        )
    more = f"{found}" if exact else f"more than {expected}"
    return InvalidDataError(
        f"IDX file {p} holds {more} data bytes but its shape {tuple(dims)} needs {expected}: "
        "a damaged header, or not an IDX file"
    )


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
    arrays = read_npz_arrays(p, [x_key, y_key], required=x_key)
    x, y = arrays[x_key], arrays.get(y_key)
    if y is not None and (y.ndim != 1 or y.shape[0] != x.shape[0]):
        raise InvalidDataError(f"{p}: x holds {x.shape[0]} images but y has shape {y.shape}; they must match")
    images = _to_unit(to_channels_first(x, str(p)), str(p))
    labels, classes = _index_labels(y) if y is not None else (None, [])
    notes = [] if y is not None else [f"{p.name} has no {y_key!r} array; training unconditionally"]
    return ImageSet(images, labels, classes, str(p), "npz", notes)


def read_npz_arrays(path: str | Path, keys: list[str], required: str | None = None) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of an ``.npz`` file (those present), each read only after its ``.npy``
    header has been checked: at most :data:`MAX_DATA_BYTES`, no Python objects. A compressed member
    that inflates past its header's size is therefore never inflated beyond it (no zip bombs)."""
    p = Path(path)
    out: dict[str, np.ndarray] = {}
    with _open_regular(p, ".npz file") as fh:
        try:
            with zipfile.ZipFile(fh) as zf:
                names = zf.namelist()
                members = {}
                for key in keys:
                    member = next((n for n in (f"{key}.npy", key) if n in names), None)
                    if member is not None:
                        members[key] = member
                if required is not None and required not in members:
                    present = ", ".join(n.removesuffix(".npy") for n in names) or "none"
                    raise InvalidDataError(f"{p} has no array {required!r} (arrays: {present})")
                for key, member in members.items():
                    _check_npy_header(zf, member, p, key)
                    with zf.open(member) as mfh:
                        out[key] = np.lib.format.read_array(mfh, allow_pickle=False)
        except InvalidDataError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error,
                NotImplementedError, RuntimeError) as exc:  # RuntimeError: an encrypted member
            raise InvalidDataError(f"cannot read {p} as .npz: {exc}") from None
    return out


def _check_npy_header(zf: zipfile.ZipFile, member: str, p: Path, key: str) -> None:
    with zf.open(member) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):  # 3.0 differs only in a UTF-8 header: sizes read the same
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise InvalidDataError(f"{p}: array {key!r} has an unsupported .npy format version {version}")
    if dtype.hasobject:
        raise InvalidDataError(f"{p}: array {key!r} holds Python objects, which advgen does not load")
    size = math.prod(shape) * max(dtype.itemsize, 1)
    if size > MAX_DATA_BYTES:
        raise InvalidDataError(
            f"{p}: array {key!r} declares shape {tuple(shape)} of {dtype}, {size:,} bytes, more than the "
            f"{MAX_DATA_BYTES:,} advgen reads"
        )


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


@dataclass
class _Entry:
    """One image file of a class folder, as its header describes it."""

    klass: int  # index into the class folders
    path: Path
    hw: tuple[int, int]  # height, width by the header


def load_folder(root: str | Path, size: int | None = None, max_per_class: int | None = None) -> ImageSet:
    """``root/<class>/<image>``: every sub-folder is a class, every readable image in it a sample.

    Images are read as RGB and resized to ``size`` x ``size`` (default: the most common size when it
    is square and between 4 and 256 pixels, else 32); a set whose channels are all equal is kept as
    grayscale. Files that are not images or cannot be decoded are skipped and counted, and so are
    images larger than :data:`MAX_IMAGE_PIXELS` by their header, which are never decoded.

    Headers are read first (they give the default size); each image is then decoded and resized at
    once, so that memory holds one full-size image at a time and ``N x size x size`` pixels in all.
    """
    Image = _pillow()
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or not MIN_SIDE <= size <= MAX_SIDE):
        # checked before N x size x size pixels are allocated
        raise InvalidDataError(f"size must be an integer between {MIN_SIDE} and {MAX_SIDE}, got {size!r}")
    root = Path(root)
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise InvalidDataError(f"{root} has no class sub-folders (expected {root}/<class>/<image>.png)")
    entries: list[_Entry] = []
    skipped: list[str] = []
    too_large: list[str] = []
    for k, d in enumerate(class_dirs):
        files = sorted(f for f in d.rglob("*") if f.is_file() and not f.name.startswith("."))
        if max_per_class:
            files = files[:max_per_class]
        for f in files:
            rel = str(f.relative_to(root))
            try:
                with _quiet_bombs(Image), Image.open(f) as im:  # the header only: nothing decoded yet
                    w, h = im.size
                    jpeg = im.format == "JPEG"
            except Image.DecompressionBombError:  # past Pillow's own limit (2 x 89 Mpx)
                too_large.append(rel)
                continue
            except Exception:  # PIL raises many types (UnidentifiedImageError, OSError, SyntaxError, ...)
                skipped.append(rel)
                continue
            # a JPEG can be decoded at 1/8 scale: it is refused only when even that is too large
            if w * h > MAX_IMAGE_PIXELS and not (jpeg and -(-w // 8) * -(-h // 8) <= MAX_IMAGE_PIXELS):
                too_large.append(f"{rel} ({w}x{h})")
                continue
            entries.append(_Entry(k, f, (h, w)))
    target = size if size is not None else _common_size([e.hw for e in entries])
    while True:
        pixels, ok = _decode_resized(Image, entries, target, root, skipped, too_large)
        if size is not None or not ok:
            break
        # the default size counts the images that decoded; redo in the rare case that failures change it
        settled = _common_size([entries[i].hw for i in ok])
        if settled == target:
            break
        entries, target = [entries[i] for i in ok], settled
    if not ok:
        why = f"; {len(too_large)} images larger than {_pixel_limit()} were skipped" if too_large else ""
        raise InvalidDataError(f"{root}: no readable images in {len(class_dirs)} class folders{why}")
    out = np.empty((len(ok), 3, target, target), dtype=np.float32)
    for i in range(len(ok)):
        out[i] = pixels[i].transpose(2, 0, 1) / 255.0
    del pixels
    if np.array_equal(out[:, 0], out[:, 1]) and np.array_equal(out[:, 0], out[:, 2]):
        out = np.ascontiguousarray(out[:, :1])
    used = sorted({entries[i].klass for i in ok})
    index = {klass: j for j, klass in enumerate(used)}
    classes = [class_dirs[klass].name for klass in used]
    labels = np.array([index[entries[i].klass] for i in ok], dtype=np.int64)
    notes = []
    if skipped:
        shown = ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        notes.append(f"skipped {len(skipped)} unreadable or non-image files in {root}: {shown}")
    if too_large:
        shown = ", ".join(too_large[:5]) + (" ..." if len(too_large) > 5 else "")
        notes.append(f"skipped {len(too_large)} images larger than {_pixel_limit()} in {root}: {shown}")
    empty = [d.name for d in class_dirs if d.name not in classes]
    if empty:
        notes.append(f"ignored {len(empty)} class folders without readable images: {', '.join(empty[:10])}")
    return ImageSet(out, labels, classes, str(root), "folder", notes, skipped=len(skipped) + len(too_large))


def _pixel_limit() -> str:
    side = math.isqrt(MAX_IMAGE_PIXELS)
    return f"{side}x{side} pixels" if side * side == MAX_IMAGE_PIXELS else f"{MAX_IMAGE_PIXELS:,} pixels"


def _common_size(sizes: list[tuple[int, int]]) -> int:
    """The most common size when it is square and between 4 and 256 pixels, else 32."""
    if not sizes:
        return 32
    common = max(sorted(set(sizes)), key=sizes.count)  # ties: the smallest size, deterministically
    return common[0] if common[0] == common[1] and MIN_SIDE <= common[0] <= MAX_SIDE else 32


@contextlib.contextmanager
def _quiet_bombs(Image) -> Iterator[None]:
    """Pillow warns about images above its own limit when it opens them; advgen judges them itself."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def _decode_resized(Image, entries: list[_Entry], size: int, root: Path, skipped: list[str],
                    too_large: list[str]) -> tuple[np.ndarray, list[int]]:
    """Each entry decoded and resized to ``size`` x ``size`` RGB uint8 at once; the indices that decoded."""
    pixels = np.empty((len(entries), size, size, 3), dtype=np.uint8)
    ok: list[int] = []
    for i, e in enumerate(entries):
        try:
            with _quiet_bombs(Image), Image.open(e.path) as im:
                w, h = im.size
                if w * h > MAX_IMAGE_PIXELS and im.format == "JPEG":
                    im.draft("RGB", (size, size))  # decode at 1/2 .. 1/8 scale
                    w, h = im.size
                if w * h > MAX_IMAGE_PIXELS:
                    too_large.append(f"{e.path.relative_to(root)} ({e.hw[1]}x{e.hw[0]})")
                    continue
                im.load()
                rgb = im.convert("RGB")
                if rgb.size != (size, size):
                    resample = Image.Resampling.LANCZOS if max(rgb.size) > size else Image.Resampling.BICUBIC
                    rgb = rgb.resize((size, size), resample)
                pixels[len(ok)] = np.asarray(rgb, dtype=np.uint8)
        except Exception:  # PIL raises many types (UnidentifiedImageError, OSError, SyntaxError, ...)
            skipped.append(str(e.path.relative_to(root)))
            continue
        ok.append(i)
    return pixels, ok


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
    with _open_regular(p, "image data") as fh:  # a device or a pipe is refused, not read
        head = fh.read(4)
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
