"""Hostile image data: headers that lie, decompression bombs, oversized images, pipes.

Every bomb here is small: the caps of ``advgen_images.data`` are lowered where a real-size bomb would
be needed, and memory is watched with ``tracemalloc`` (which sees numpy's buffers) rather than spent.
"""

from __future__ import annotations

import gzip
import os
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import returns_within
from advgen.cli import cli
from advgen.errors import InvalidDataError
from advgen_images import data as image_data
from advgen_images.data import load_folder, load_npz, load_source, read_idx

Image = pytest.importorskip("PIL.Image", reason="image folders need Pillow (ships with matplotlib)")


def idx_header(dims: tuple[int, ...], code: int = 0x08) -> bytes:
    return bytes([0, 0, code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)


def gray_png(path: Path, width: int, height: int) -> None:
    """A black grayscale PNG written row by row: a 8000x8000 one is a 60 KB file, never 64 MB in memory."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    z = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + pixels
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def peak_bytes(fn, *args, **kwargs):
    """``fn(*args)`` and the peak of traced allocations (Python objects and numpy buffers) while it ran."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = fn(*args, **kwargs)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --- IDX headers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dims", [
    (65536, 65536, 65536, 65536),  # 2**64 bytes: np.prod wrapped to 0 in int64
    (0xFFFFFFFF, 0xFFFFFFFF, 0x80000001),  # np.prod wrapped to a negative number
    (1 << 20, 1 << 10, 1 << 10),  # plain huge: 1 TiB
])
def test_an_idx_header_declaring_too_much_data_is_one_line(tmp_path, dims):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_header(dims) + b"\0" * 16)
    with pytest.raises(InvalidDataError, match=r"declares shape .* more than the 1,073,741,824 advgen reads"):
        read_idx(path)


def test_the_overflowing_idx_header_of_the_audit_is_one_error_line_on_the_command_line(tmp_path):
    folder = tmp_path / "idx_overflow"
    folder.mkdir()
    (folder / "train-images-idx3-ubyte").write_bytes(idx_header((65536,) * 4) + b"\0" * 16)
    result = CliRunner().invoke(cli, ["train", "--plugin", "images", "--data", str(folder), "--steps", "5",
                                      "--threads", "1", "--out", str(tmp_path / "run"), "-q"])
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "declares shape (65536, 65536, 65536, 65536)" in errors[0], result.output


def test_an_idx_file_with_more_data_than_its_header_declares_is_refused(tmp_path):
    path = tmp_path / "imgs-idx3-ubyte"
    path.write_bytes(idx_header((2, 4, 4)) + bytes(32) + b"junk")
    with pytest.raises(InvalidDataError, match=r"holds 36 data bytes but its shape \(2, 4, 4\) needs 32"):
        read_idx(path)
    path.write_bytes(idx_header((2, 4, 4)) + bytes(32))
    assert read_idx(path).shape == (2, 4, 4)


def test_a_gzip_idx_is_inflated_no_further_than_its_header_declares(tmp_path):
    """A small header in front of 40 MB of zeros: refused after reading one byte past the header's
    32 bytes, never inflated whole (gzip.decompress held all 40 MB)."""
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(idx_header((2, 4, 4)))
        block = bytes(1 << 20)
        for _ in range(40):
            fh.write(block)
    assert path.stat().st_size < 200_000

    def attempt():
        with pytest.raises(InvalidDataError, match=r"holds more than 32 data bytes but its shape \(2, 4, 4\) needs 32"):
            read_idx(path)

    _, peak = peak_bytes(attempt)
    assert peak < 4 << 20, f"inflating the bomb took {peak / 2**20:.0f} MiB"


def test_a_gzip_idx_bomb_whose_header_tells_the_truth_is_refused_by_the_cap(tmp_path, monkeypatch):
    """The audit's bomb (4 GB of zeros behind a matching header), scaled down with the cap."""
    monkeypatch.setattr(image_data, "MAX_DATA_BYTES", 1 << 20)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(idx_header((64, 256, 256)))  # 4 MiB
        fh.write(bytes(4 << 20))
    with pytest.raises(InvalidDataError, match=r"declares shape \(64, 256, 256\): 4,194,304 data bytes, more than the 1,048,576"):
        read_idx(path)
    # within the cap the same file reads
    monkeypatch.setattr(image_data, "MAX_DATA_BYTES", 8 << 20)
    assert read_idx(path).shape == (64, 256, 256)


def test_a_truncated_gzip_idx_is_one_line(tmp_path):
    path = tmp_path / "t-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_header((4, 8, 8)) + bytes(256))[:-12])
    with pytest.raises(InvalidDataError, match="cannot read IDX file|truncated"):
        read_idx(path)


def test_a_pipe_or_device_is_refused_instead_of_read(tmp_path):
    fifo = tmp_path / "data-images-idx3-ubyte"
    os.mkfifo(fifo)

    def release():  # a writer that goes away unblocks a reader stuck in open() or read()
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)

    finished, value = returns_within(lambda: load_source(fifo), 5, release)
    assert finished, "loading a FIFO hung"
    assert isinstance(value, InvalidDataError) and "not a regular file" in str(value), repr(value)
    zero = tmp_path / "zero-images-idx3-ubyte"
    zero.symlink_to("/dev/zero")  # four zero bytes look like an IDX header, then endless data
    with pytest.raises(InvalidDataError, match="not a regular file"):
        read_idx(zero)


# --- .npz members ---------------------------------------------------------------------------------


def test_an_npz_member_declaring_more_than_the_cap_is_refused_before_inflating(tmp_path, monkeypatch):
    monkeypatch.setattr(image_data, "MAX_DATA_BYTES", 1 << 20)
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, x=np.zeros((4, 512, 1024), np.uint8), y=np.zeros(4, np.int64))
    assert path.stat().st_size < 20_000
    with pytest.raises(InvalidDataError, match=r"array 'x' declares shape \(4, 512, 1024\) of uint8, 2,097,152 bytes"):
        load_npz(path)
    # the labels are checked too
    np.savez_compressed(path, x=np.zeros((4, 8, 8), np.uint8), y=np.zeros(1 << 18, np.int64))
    with pytest.raises(InvalidDataError, match=r"array 'y' declares shape \(262144,\)"):
        load_npz(path)


def test_npz_files_that_are_not_zips_or_hold_objects_are_one_line(tmp_path):
    npy = tmp_path / "plain.npz"
    np.save(tmp_path / "plain.npy", np.zeros((3, 8, 8), np.uint8))
    (tmp_path / "plain.npy").rename(npy)  # a .npy named .npz: np.load returned an array, not a zip
    with pytest.raises(InvalidDataError, match="cannot read .* as .npz"):
        load_npz(npy)
    objs = tmp_path / "objs.npz"
    np.savez(objs, x=np.array([[1], [2]], dtype=object))
    with pytest.raises(InvalidDataError, match="Python objects|cannot read"):
        load_npz(objs)
    ok = tmp_path / "ok.npz"
    np.savez(ok, x=np.zeros((3, 8, 8), np.uint8), y=np.array(["a", "b", "a"]))
    data = load_npz(ok)
    assert data.images.shape == (3, 1, 8, 8) and data.classes == ["a", "b"]


# --- class folders --------------------------------------------------------------------------------


def test_the_png_bomb_of_the_audit_is_skipped_without_being_decoded(tmp_path):
    """An 8000x8000 black PNG is a 60 KB file and 192 MB decoded as RGB: its header is enough to
    pass it over. Before, every such image was decoded and kept at full size before resizing."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(2):
            gray_png(tmp_path / name / f"small{i}.png", 16, 16)
    gray_png(tmp_path / "a" / "bomb.png", 8000, 8000)
    assert (tmp_path / "a" / "bomb.png").stat().st_size < 100_000
    data, peak = peak_bytes(load_folder, tmp_path)
    assert data.images.shape == (4, 1, 16, 16)
    assert data.skipped == 1
    assert any("skipped 1 images larger than 4096x4096 pixels" in n and "a/bomb.png (8000x8000)" in n
               for n in data.notes), data.notes
    assert peak < 16 << 20, f"the bomb took {peak / 2**20:.0f} MiB"


def test_a_folder_of_only_oversized_images_is_one_line_that_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(image_data, "MAX_IMAGE_PIXELS", 32 * 32)
    (tmp_path / "a").mkdir()
    for i in range(3):
        gray_png(tmp_path / "a" / f"{i}.png", 64, 64)
    with pytest.raises(InvalidDataError, match="no readable images in 1 class folders; 3 images larger than 32x32 pixels"):
        load_folder(tmp_path)


def test_images_are_resized_as_they_are_decoded(tmp_path):
    """Memory holds one full-size image at a time: six 1000x1000 RGB images (3 MB each) loaded at
    8x8 never have their full-size pixels in numpy arrays together."""
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(3):
            rgb = np.zeros((1000, 1000, 3), np.uint8)
            rgb[:, :, i] = rng.integers(0, 255)
            Image.fromarray(rgb).save(tmp_path / name / f"{i}.png")
    data, peak = peak_bytes(load_folder, tmp_path, size=8)
    assert data.images.shape == (6, 3, 8, 8)
    assert peak < 2 << 20, f"loading took {peak / 2**20:.1f} MiB of numpy buffers"


def test_the_default_size_and_labels_are_those_of_the_images_that_decode(tmp_path):
    """The most common size counts only images that decode: two broken 12x12 PNGs (whose headers are
    fine) do not outvote three good 8x8 ones."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for i in range(3):
        gray_png(tmp_path / "b" / f"{i}.png", 8, 8)
    for i in range(2):
        gray_png(tmp_path / "a" / f"{i}.png", 12, 12)
        raw = (tmp_path / "a" / f"{i}.png").read_bytes()
        (tmp_path / "a" / f"{i}.png").write_bytes(raw[:40])  # header intact, pixels gone
    data = load_folder(tmp_path)
    assert data.images.shape == (3, 1, 8, 8)
    assert data.classes == ["b"] and data.labels.tolist() == [0, 0, 0]
    assert data.skipped == 2


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_instead_of_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(image_data, "MAX_IMAGE_PIXELS", 100 * 100)
    (tmp_path / "a").mkdir()
    Image.fromarray(np.full((400, 400, 3), 200, np.uint8)).save(tmp_path / "a" / "big.jpg", quality=90)
    gray_png(tmp_path / "a" / "too_big.png", 400, 400)
    data = load_folder(tmp_path, size=16)
    assert data.images.shape == (1, 3, 16, 16) or data.images.shape == (1, 1, 16, 16)
    assert abs(float(data.images.mean()) - 200 / 255) < 0.02
    assert data.skipped == 1


def test_an_absurd_size_is_refused_before_pixels_are_allocated(tmp_path):
    (tmp_path / "a").mkdir()
    gray_png(tmp_path / "a" / "0.png", 8, 8)
    # size=100_000 allocated 120 GB per image before it was checked (in conform, afterwards); 300 shows it safely
    with pytest.raises(InvalidDataError, match="size must be an integer between 4 and 256, got 300"):
        load_folder(tmp_path, size=300)
