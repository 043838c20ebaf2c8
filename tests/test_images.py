"""The images domain: loaders on real files made here, bad files, nets, validators, byte plots, learning."""

from __future__ import annotations

import gzip
import io
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from advgen.api import train
from advgen.cli import cli
from advgen.config import TrainConfig
from advgen.errors import AdvgenError, InvalidDataError
from advgen_images import ImageSamples, ImagesDomain
from advgen_images.bytes2img import MARKER, byteplot, bytes_to_images
from advgen_images.data import load_folder, read_idx
from advgen_images.nets import ImageDiscriminator, ImageGenerator, plan
from advgen_images.png import encode_png

Image = pytest.importorskip("PIL.Image", reason="image folders need Pillow (ships with matplotlib)")

DOMAIN = ImagesDomain()


def cfg(**values) -> TrainConfig:
    return TrainConfig(plugin="images").updated(DOMAIN.default_config()).updated(values)


def write_idx(path: Path, arr: np.ndarray, compress: bool = False) -> None:
    """An IDX file as MNIST ships them: magic (0, 0, type 0x08, ndim), big-endian dims, bytes."""
    payload = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    payload += arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)


def stripes(n: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two visibly different classes: horizontal (0) and vertical (1) stripes, with noise."""
    y = np.arange(n) % 2
    base = (np.arange(size) // 2 % 2) * 200
    x = np.where(y[:, None, None] == 0, base[None, :, None], base[None, None, :]).astype(np.float64)
    x = x + rng.integers(0, 40, (n, size, size))
    return x.clip(0, 255).astype(np.uint8), y


# --- loaders -------------------------------------------------------------------------------------


def test_digits_default_is_encoded_in_tanh_range_with_a_good_judge():
    data = DOMAIN.load_data(cfg())
    assert tuple(data.x.shape) == (1797, 1, 8, 8)
    assert data.x.min() == -1.0 and data.x.max() == 1.0
    spec = data.spec
    assert spec["shape"] == [1, 8, 8]
    assert spec["conditions"]["classes"] == [str(d) for d in range(10)]
    assert sum(spec["conditions"]["counts"]) == 1797
    assert len(spec["levels"]) == 17  # 0..16 grey levels scaled to bytes
    assert spec["classifier"]["holdout_accuracy"] > 0.9
    assert data.samples.x.shape == (1797, 8, 8, 1) and data.samples.x.dtype == np.uint8


def test_digits_upscaled_by_option():
    data = DOMAIN.load_data(cfg(options={"size": 16}))
    assert data.spec["shape"] == [1, 16, 16]
    assert data.spec["levels"] is None  # interpolation makes many grey levels
    assert data.samples.x.shape == (1797, 16, 16, 1)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_files_with_mnist_names(tmp_path, compress):
    x, y = stripes(40, 28, np.random.default_rng(0))
    suffix = ".gz" if compress else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", x, compress)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", y, compress)
    data = DOMAIN.load_data(cfg(data=str(tmp_path / f"train-images-idx3-ubyte{suffix}")))
    assert data.spec["shape"] == [1, 28, 28]
    assert data.spec["format"] == "idx"
    assert data.spec["conditions"]["classes"] == ["0", "1"]
    np.testing.assert_array_equal(data.samples.x[..., 0], x)
    np.testing.assert_array_equal(data.cond.numpy(), y)


def test_idx_folder_picks_the_split(tmp_path):
    x, y = stripes(20, 28, np.random.default_rng(1))
    write_idx(tmp_path / "train-images-idx3-ubyte", x)
    write_idx(tmp_path / "train-labels-idx1-ubyte", y)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", x[:6])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", y[:6])
    assert DOMAIN.load_data(cfg(data=str(tmp_path))).x.shape[0] == 20
    assert DOMAIN.load_data(cfg(data=str(tmp_path), split="test")).x.shape[0] == 6
    resized = DOMAIN.load_data(cfg(data=str(tmp_path), options={"size": 14}))
    assert resized.spec["shape"] == [1, 14, 14]


def test_truncated_idx_is_a_clear_error(tmp_path):
    x, _ = stripes(10, 28, np.random.default_rng(2))
    write_idx(tmp_path / "imgs-idx3-ubyte", x)
    raw = (tmp_path / "imgs-idx3-ubyte").read_bytes()
    (tmp_path / "imgs-idx3-ubyte").write_bytes(raw[:-100])
    with pytest.raises(InvalidDataError, match=r"truncated: shape \(10, 28, 28\) needs 7840 data bytes, found 7740"):
        read_idx(tmp_path / "imgs-idx3-ubyte")
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(InvalidDataError, match="truncated in its header"):
        read_idx(tmp_path / "short")
    (tmp_path / "notidx").write_bytes(b"PK\x03\x04hello")
    with pytest.raises(InvalidDataError, match="not an IDX file"):
        read_idx(tmp_path / "notidx")


def test_idx_label_count_must_match(tmp_path):
    x, y = stripes(10, 28, np.random.default_rng(3))
    write_idx(tmp_path / "train-images-idx3-ubyte", x)
    write_idx(tmp_path / "train-labels-idx1-ubyte", y[:7])
    with pytest.raises(InvalidDataError, match="holds 10 images but .* holds 7 labels"):
        DOMAIN.load_data(cfg(data=str(tmp_path / "train-images-idx3-ubyte")))


def test_npz_channels_last_with_string_labels(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    y = np.array(["cat", "dog", "eel"] * 4)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    data = DOMAIN.load_data(cfg(data=str(tmp_path / "d.npz")))
    assert data.spec["shape"] == [3, 16, 16]
    assert data.spec["conditions"]["classes"] == ["cat", "dog", "eel"]
    np.testing.assert_array_equal(data.samples.x, x)
    gray = DOMAIN.load_data(cfg(data=str(tmp_path / "d.npz"), options={"channels": 1}))
    assert gray.spec["shape"] == [1, 16, 16]


def test_npz_channels_first_floats_without_labels(tmp_path):
    x = np.random.default_rng(5).random((9, 1, 12, 12)).astype(np.float32)
    np.savez(tmp_path / "f.npz", x=x)
    data = DOMAIN.load_data(cfg(data=str(tmp_path / "f.npz")))
    assert data.spec["shape"] == [1, 12, 12]
    assert data.spec["conditions"] is None and data.cond is None
    assert any("unconditionally" in n for n in data.notes)


def test_npz_bad_files(tmp_path):
    np.savez(tmp_path / "m.npz", x=np.zeros((5, 8, 8), np.uint8), y=np.arange(4))
    with pytest.raises(InvalidDataError, match="x holds 5 images but y has shape"):
        DOMAIN.load_data(cfg(data=str(tmp_path / "m.npz")))
    np.savez(tmp_path / "nox.npz", images=np.zeros((5, 8, 8)))
    with pytest.raises(InvalidDataError, match="has no array 'x'"):
        DOMAIN.load_data(cfg(data=str(tmp_path / "nox.npz")))
    np.savez(tmp_path / "range.npz", x=np.full((5, 8, 8), 300.0))
    with pytest.raises(InvalidDataError, match=r"expected \[0, 1\] or \[0, 255\]"):
        DOMAIN.load_data(cfg(data=str(tmp_path / "range.npz")))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InvalidDataError, match="cannot read"):
        DOMAIN.load_data(cfg(data=str(tmp_path / "junk.npz")))


def test_many_classes_with_few_images_each_load_without_a_judge_holdout(tmp_path):
    """Fifteen classes of two images: a fifth of 30 images cannot hold every class, so the judge is
    fitted without the held-out estimate instead of failing inside scikit-learn."""
    x = np.random.default_rng(7).integers(0, 256, (30, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "few.npz", x=x, y=np.repeat(np.arange(15), 2))
    data = DOMAIN.load_data(cfg(data=str(tmp_path / "few.npz")))
    assert data.spec["conditions"]["counts"] == [2] * 15
    assert data.spec["classifier"] is not None and data.spec["classifier"]["holdout_accuracy"] is None


def make_png_folder(root: Path) -> None:
    """Two classes of RGB PNG and JPEG images of two sizes, plus a text file and a broken PNG."""
    rng = np.random.default_rng(6)
    for k, name in enumerate(["benign", "malware"]):
        (root / name).mkdir(parents=True)
        for i in range(4):
            side = 20 if i == 1 else 16
            arr = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
            arr[..., k] = 255  # the classes differ in colour
            fmt = "PNG" if i < 3 else "JPEG"
            Image.fromarray(arr).save(root / name / f"{i}.{fmt.lower()}", fmt)
    (root / "benign" / "notes.txt").write_text("not an image")
    (root / "malware" / "broken.png").write_bytes(encode_png(np.zeros((4, 4), np.uint8))[:30])


def test_png_folder_skips_and_counts_bad_files(tmp_path):
    make_png_folder(tmp_path / "set")
    data = DOMAIN.load_data(cfg(data=str(tmp_path / "set"), options={"size": 16}))
    assert data.spec["shape"] == [3, 16, 16]
    assert data.spec["conditions"]["classes"] == ["benign", "malware"]
    assert data.spec["conditions"]["counts"] == [4, 4]
    notes = " ".join(data.notes)
    assert "skipped 2 unreadable or non-image files" in notes
    assert "notes.txt" in notes and "broken.png" in notes
    images = load_folder(tmp_path / "set")
    assert images.skipped == 2
    assert images.images.shape == (8, 3, 16, 16)  # the most common size wins by default


def test_grayscale_png_folder_stays_one_channel(tmp_path):
    for k in range(2):
        (tmp_path / f"c{k}").mkdir()
        for i in range(3):
            Image.fromarray(np.full((10, 10), 60 * k + i, np.uint8), "L").save(tmp_path / f"c{k}" / f"{i}.png")
    data = DOMAIN.load_data(cfg(data=str(tmp_path)))
    assert data.spec["shape"] == [1, 10, 10]


def test_folder_errors(tmp_path):
    (tmp_path / "flat").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(InvalidDataError, match="no class sub-folders"):
        DOMAIN.load_data(cfg(data=str(tmp_path / "flat")))
    (tmp_path / "junk" / "a").mkdir(parents=True)
    (tmp_path / "junk" / "a" / "x.png").write_bytes(b"garbage")
    with pytest.raises(InvalidDataError, match="no readable images in 1 class folders"):
        DOMAIN.load_data(cfg(data=str(tmp_path / "junk")))
    with pytest.raises(InvalidDataError, match="image data not found"):
        DOMAIN.load_data(cfg(data=str(tmp_path / "missing")))
    with pytest.raises(AdvgenError, match="unknown images option"):
        DOMAIN.load_data(cfg(options={"sise": 16}))


# --- byte plots ----------------------------------------------------------------------------------


def test_byteplot_layout():
    data = bytes([255] * 64 + [0] * 64)  # 16 rows of 8: the top half white, the bottom half black
    img = byteplot(data, width=8, size=4)
    np.testing.assert_array_equal(img, np.array([[255] * 4] * 2 + [[0] * 4] * 2, dtype=np.uint8))
    assert byteplot(b"\x10", width=64, size=8).shape == (8, 8)


SYSTEM_BINARIES = [Path(p) for p in ("/bin/ls", "/bin/cat", "/usr/bin/env", "/bin/sh")]


def test_bytes2img_on_system_binaries_feeds_the_folder_loader(tmp_path):
    found = [p for p in SYSTEM_BINARIES if p.is_file()]
    assert len(found) >= 3, "expected /bin/ls, /bin/cat and /usr/bin/env on a Linux machine"
    src = tmp_path / "src"
    (src / "tools").mkdir(parents=True)
    (src / "shell").mkdir()
    for p in found[:2]:
        shutil.copy(p, src / "tools" / p.name)
    for p in found[2:]:
        shutil.copy(p, src / "shell" / p.name)
    (src / "shell" / "empty.bin").write_bytes(b"")
    report = bytes_to_images(src, tmp_path / "out", width=64, size=16)
    assert report.per_class == {"shell": len(found) - 2, "tools": 2}
    assert report.skipped == [f"{src / 'shell' / 'empty.bin'} (empty)"]
    assert (tmp_path / "out" / MARKER).is_file()
    first = np.asarray(Image.open(tmp_path / "out" / "tools" / f"{found[0].name}.png"))
    assert first.shape == (16, 16) and first.dtype == np.uint8
    # an ELF file starts with 0x7f 'E' 'L' 'F': the top-left pixel averages its first bytes, not zero
    assert first[0, 0] > 0
    data = DOMAIN.load_data(cfg(data=str(tmp_path / "out")))
    assert data.spec["shape"] == [1, 16, 16]
    assert data.spec["conditions"]["classes"] == ["shell", "tools"]
    # no silent clobbering: a second run needs --overwrite, and a foreign folder is refused
    with pytest.raises(AdvgenError, match="pass --overwrite"):
        bytes_to_images(src, tmp_path / "out", size=16)
    bytes_to_images(src, tmp_path / "out", size=8, overwrite=True)
    assert np.asarray(Image.open(tmp_path / "out" / "tools" / f"{found[0].name}.png")).shape == (8, 8)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(AdvgenError, match="was not written by advgen"):
        bytes_to_images(src, tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_bytes2img_command(tmp_path):
    src = tmp_path / "src" / "fam"
    src.mkdir(parents=True)
    (src / "a.bin").write_bytes(bytes(range(256)) * 8)
    result = CliRunner().invoke(cli, ["datasets", "bytes2img", str(tmp_path / "src"), "-o", str(tmp_path / "o"),
                                      "--width", "32", "--size", "8"])
    assert result.exit_code == 0, result.output
    assert "wrote 1 byte plots of 8x8" in result.output
    assert (tmp_path / "o" / "fam" / "a.bin.png").is_file()
    (tmp_path / "flat").mkdir()
    result = CliRunner().invoke(cli, ["datasets", "bytes2img", str(tmp_path / "flat"), "-o", str(tmp_path / "p")])
    assert result.exit_code != 0 and "has no sub-folders" in result.output
    assert "Traceback" not in result.output


# --- nets ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [[1, 8, 8], [1, 28, 28], [3, 64, 64]])
@pytest.mark.parametrize("cond_mode", ["projection", "embedding"])
def test_net_shapes(shape, cond_mode):
    g = ImageGenerator(shape, z_dim=16, n_classes=3, width=8)
    d = ImageDiscriminator(shape, n_classes=3, width=8, cond_mode=cond_mode)
    z, c = torch.randn(4, 16), torch.tensor([0, 1, 2, 1])
    x = g(z, c)
    assert tuple(x.shape) == (4, *shape)
    assert x.min() >= -1 and x.max() <= 1
    assert tuple(d(x, c).shape) == (4,)
    bh, bw, n_up = plan(*shape[1:])
    assert bh * 2**n_up == shape[1] and bh >= 4


def test_generator_snaps_to_grey_levels_and_still_learns():
    levels = [0, 16, 128, 255]
    g = ImageGenerator([1, 8, 8], z_dim=8, n_classes=2, width=8, levels=levels)
    x = g(torch.randn(16, 8), torch.randint(0, 2, (16,)))
    pixel_values = set(((x.detach() + 1) * 127.5).round().int().unique().tolist())
    assert pixel_values <= set(levels)
    x.sum().backward()  # straight-through: rounding does not cut the gradient
    assert g.to_image.weight.grad.abs().sum() > 0


def test_unconditional_nets_and_plan():
    g = ImageGenerator([3, 32, 32], z_dim=8, n_classes=0, width=8)
    d = ImageDiscriminator([3, 32, 32], n_classes=0, width=8, spectral_norm=False)
    assert tuple(d(g(torch.randn(2, 8)), None).shape) == (2,)
    assert plan(8, 8) == (4, 4, 1) and plan(28, 28) == (7, 7, 2) and plan(64, 64) == (4, 4, 4)
    with pytest.raises(ValueError, match="conditional"):
        ImageGenerator([1, 8, 8], 8, n_classes=2)(torch.randn(2, 8), None)


# --- validators, samples files -------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return DOMAIN.load_data(cfg())


def test_validators_pass_real_digits_and_catch_wrong_ones(digits):
    spec, real = digits.spec, digits.samples
    rules = {v.name: v for v in DOMAIN.validators(spec)}
    assert set(rules) == {"shape", "pixel-range", "not-blank", "class-consistency"}
    floats = real.to_float()[:5]
    assert rules["pixel-range"].check(ImageSamples(floats, real.y[:5])).all()
    assert (floats.reshape(5, -1).max(axis=1) > 0.5).all()  # so doubling puts each of the five out of range
    assert not rules["pixel-range"].check(ImageSamples(floats * 2.0, real.y[:5])).any()
    one_bad = floats.copy()
    one_bad[2, 3, 4, 0] = 1.01  # a single pixel of a single image
    assert rules["pixel-range"].check(ImageSamples(one_bad, real.y[:5])).tolist() == [True, True, False, True, True]
    assert not rules["shape"].check(ImageSamples(np.zeros((3, 9, 9, 1), np.uint8), real.y[:3])).any()
    assert not rules["not-blank"].check(ImageSamples(np.zeros((2, 8, 8, 1), np.uint8), real.y[:2])).any()


def test_class_consistency_judge_on_images_it_was_not_fitted_on(digits):
    """Fit the judge as load_data does, on four fifths of the digits; score it on the other fifth."""
    from sklearn.model_selection import train_test_split

    from advgen_images import classifier

    images, labels = digits.samples.to_float("NCHW"), digits.cond.numpy()
    fit, held = train_test_split(np.arange(len(labels)), test_size=0.2, random_state=0, stratify=labels)
    judge = classifier.fit_classifier(images[fit], labels[fit], 10, seed=0)
    rules = {v.name: v for v in DOMAIN.validators({**digits.spec, "classifier": judge})}
    held_out = digits.samples[held]
    assert rules["class-consistency"].check(held_out).mean() > 0.93  # 0.967 at this split
    shuffled = ImageSamples(held_out.x, np.roll(held_out.y, 1))  # each image now claims another digit
    assert rules["class-consistency"].check(shuffled).mean() < 0.2


def test_samples_round_trip_npz_folder_and_grid(tmp_path, digits):
    spec, real = digits.spec, digits.samples[:30]
    DOMAIN.write_samples(real, tmp_path / "s.npz", spec)
    back = DOMAIN.read_samples(tmp_path / "s.npz", spec)
    np.testing.assert_array_equal(back.x, real.x)
    np.testing.assert_array_equal(back.y, real.y)
    DOMAIN.write_samples(real, tmp_path / "folder", spec)
    DOMAIN.write_samples(real, tmp_path / "folder", spec)  # its own earlier output may be replaced
    again = DOMAIN.read_samples(tmp_path / "folder", spec)
    assert again.x.shape == real.x.shape
    assert sorted(again.y) == sorted(real.y)
    DOMAIN.write_samples(real, tmp_path / "grid.png", spec)
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    assert grid.shape[0] == 4 * (10 * 9 + 1)  # 10 rows of 8 px cells + 1 px pads, scaled 4x
    with pytest.raises(AdvgenError, match="use .npz"):
        DOMAIN.write_samples(real, tmp_path / "s.csv", spec)


def test_featurize_and_labels(digits):
    feats = DOMAIN.featurize(digits.samples[:5], digits.spec)
    assert feats.shape == (5, 64) and 0 <= feats.min() and feats.max() <= 1
    assert list(DOMAIN.labels(digits.samples[:3], digits.spec)) == list(digits.samples.y[:3])


def test_decode_snaps_to_grey_levels_and_export_matches(digits):
    spec = digits.spec
    g = ImageGenerator(spec["shape"], 8, 10, width=8).eval()
    z, c = torch.randn(6, 8), torch.arange(6)
    decoded = DOMAIN.decode(g(z, c).detach(), c.numpy(), spec)
    assert set(np.unique(decoded.x)) <= set(spec["levels"])
    assert list(decoded.y) == [str(i) for i in range(6)]
    images, pixels = DOMAIN.export_module(g, spec)(z, c)
    np.testing.assert_array_equal(images.numpy(), decoded.x)
    assert [o["name"] for o in DOMAIN.export_outputs(spec)] == ["images", "pixels"]
    np.testing.assert_allclose(pixels.numpy().transpose(0, 2, 3, 1) * 255, decoded.x, atol=1e-3)


# --- learning ------------------------------------------------------------------------------------


def test_short_run_beats_the_untrained_generator(tmp_path):
    run = train({"plugin": "images", "steps": 300, "ckpt_every": 150, "out": str(tmp_path / "run"),
                 "n_samples": 200, "seed": 0})
    cond = np.repeat(np.arange(10), 30)
    x, _ = run.sample_encoded(300, cond, seed=1)
    trained = run.validate(run.domain.decode(x, cond, run.spec)).rule_rates()["class-consistency"]
    untrained_run = train({"plugin": "images", "steps": 1, "ema": 0, "out": str(tmp_path / "u"), "n_samples": 0})
    x, _ = untrained_run.sample_encoded(300, cond, seed=1)
    untrained = untrained_run.validate(untrained_run.domain.decode(x, cond, run.spec)).rule_rates()[
        "class-consistency"
    ]
    assert untrained < 0.3
    assert trained > 0.8 and trained > untrained + 0.5
    # a grid per checkpoint and the final comparison grid
    assert (tmp_path / "run" / "grid-step000150.png").is_file()
    assert (tmp_path / "run" / "grid-step000300.png").is_file()
    assert (tmp_path / "run" / "samples.png").is_file()
    result = CliRunner().invoke(cli, ["sample", str(tmp_path / "run"), "-n", "20", "-o", str(tmp_path / "s3.npz"),
                                      "--condition", "label=3", "--seed", "2"])
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "s3.npz") as f:
        assert f["x"].shape == (20, 8, 8, 1) and set(f["y"]) == {"3"}
