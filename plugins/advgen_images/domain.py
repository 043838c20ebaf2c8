"""The images domain: conditional DCGAN generation of small images, with byte plots of binaries beside.

Encoded space (what the nets see): float ``[N, C, H, W]`` in ``[-1, 1]``.
Decoded samples (what users get): :class:`ImageSamples`, ``x`` uint8 ``[N, H, W, C]`` (channels
last, the layout of Pillow, matplotlib and most image files) and ``y`` the class name of each image.
uint8 is what images are stored as, so real and generated images compare on equal terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from advgen.domain import Domain, RealData, Validator
from advgen.errors import AdvgenError, InvalidDataError
from advgen_images import classifier
from advgen_images.data import ImageSet, conform, load_digits, load_folder, load_source, read_npz_arrays
from advgen_images.nets import ImageDiscriminator, ImageGenerator
from advgen_images.png import grid, write_png
from advgen_images.writers import SAMPLES_MARKER, ImageArrayWriter, ImageFolderWriter, ImageGridWriter  # noqa: F401 (SAMPLES_MARKER re-exported)

if TYPE_CHECKING:  # pragma: no cover
    from advgen.config import TrainConfig
    from advgen.writers import SampleWriter


# domain options (``--option KEY=VALUE``) and their defaults
OPTIONS: dict[str, Any] = {
    "size": None,  # square side to resize to (digits: 8 natively; 16 or 32 upscales)
    "channels": None,  # 1 or 3; default: what the data holds
    "max_images": None,  # random subset of the data, for quick runs on large sets
    "labels": None,  # IDX labels file when it is not named like MNIST's
    "width": 32,  # channels of the nets' full-resolution layer (doubled per halving, max 512)
    "embed_dim": 32,  # class embedding concatenated to z
    "cond_mode": "projection",  # discriminator conditioning: projection or embedding
    "spectral_norm": True,  # spectral norm on the discriminator
    "d_dropout": 0.0,  # dropout before the discriminator's head
    "snap": True,  # the generator snaps its pixels to the data's grey levels (when there are few)
}


@dataclass
class ImageSamples:
    """Decoded images: ``x`` ``[N, H, W, C]`` (uint8, or floats in [0, 1] read from a file) and names ``y``."""

    x: np.ndarray
    y: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, idx: Any) -> ImageSamples:
        return ImageSamples(self.x[idx], None if self.y is None else self.y[idx])

    def to_float(self, layout: str = "NHWC") -> np.ndarray:
        """Pixels as float32 in [0, 1] (uint8 divided by 255) in ``NHWC`` or ``NCHW`` layout."""
        x = self.x.astype(np.float32) / 255.0 if self.x.dtype == np.uint8 else self.x.astype(np.float32)
        return x.transpose(0, 3, 1, 2) if layout == "NCHW" else x


def to_uint8(images01: np.ndarray | torch.Tensor) -> np.ndarray:
    """Float ``[N, C, H, W]`` in [0, 1] to uint8 ``[N, H, W, C]``."""
    t = torch.as_tensor(images01, dtype=torch.float32)
    return (t * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


class ImagesDomain(Domain):
    name = "images"
    description = "Small images (digits, MNIST, image folders, byte plots of binaries) with a conditional DCGAN"
    version = "1"

    # --- configuration -------------------------------------------------------------------------

    def default_config(self) -> dict[str, Any]:
        # Tuned on the embedded digits (benchmarks/images_quality.py): class consistency passes 95%
        # within 2,000 steps, but the real-vs-synthetic detector AUC keeps falling with longer
        # training (random forest: 0.98 at 2k steps, 0.89 at 6k, 0.82 at 12k, 0.76 at 16k), so the
        # default trains 16k steps of a width-32 net: about four and a half minutes on one CPU core.
        return {
            "steps": 16000,
            "batch_size": 64,
            "z_dim": 64,
            "loss": "non-saturating",
            "lr_g": 2e-4,
            "lr_d": 2e-4,
            "beta1": 0.5,
            "ema": 0.999,
            "cond_sampling": "uniform",
            "ckpt_every": 2000,
            "n_samples": 1000,
            # The nets are small: one thread is as fast as two on an idle machine, and on a busy
            # 2-core one two threads spin against each other (measured 160 s vs 3 s for 300 steps).
            "threads": 1,
            "options": dict(OPTIONS),
        }

    @staticmethod
    def options(cfg: TrainConfig) -> dict[str, Any]:
        unknown = sorted(set(cfg.options) - set(OPTIONS))
        if unknown:
            raise AdvgenError(f"unknown images option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}")
        opts = {**OPTIONS, **cfg.options}
        for key in ("size", "channels", "max_images", "width", "embed_dim"):
            v = opts[key]
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise AdvgenError(f"option {key} must be a positive integer, got {v!r}")

        if opts["cond_mode"] not in ("projection", "embedding"):
            raise AdvgenError(f"option cond_mode must be projection or embedding, got {opts['cond_mode']!r}")
        if not isinstance(opts["d_dropout"], (int, float)) or not 0 <= opts["d_dropout"] < 1:
            raise AdvgenError(f"option d_dropout must be in [0, 1), got {opts['d_dropout']!r}")
        return opts

    # --- data ----------------------------------------------------------------------------------

    def read_images(self, cfg: TrainConfig) -> ImageSet:
        """The image set ``cfg`` names, resized and channel-converted but not yet encoded."""
        opts = self.options(cfg)
        if cfg.dataset not in (None, "digits"):
            raise InvalidDataError(
                f"the images domain has one built-in data set, digits; give other images with --data PATH "
                f"(got --dataset {cfg.dataset})"
            )
        if cfg.data:
            data = load_source(cfg.data, split=cfg.split, labels=opts["labels"], label_key=cfg.label,
                               size=opts["size"])
        else:
            data = load_digits()
        if opts["max_images"] and data.images.shape[0] > opts["max_images"]:
            keep = np.sort(np.random.default_rng(cfg.seed).choice(data.images.shape[0], opts["max_images"], replace=False))
            data.images = data.images[keep]
            data.labels = None if data.labels is None else data.labels[keep]
        return conform(data, size=opts["size"], channels=opts["channels"])

    def load_data(self, cfg: TrainConfig) -> RealData:
        data = self.read_images(cfg)
        n, c, h, w = data.images.shape
        notes = list(data.notes)
        conditions = None
        judge = None
        cond = None
        if data.labels is not None:
            counts = np.bincount(data.labels, minlength=len(data.classes))
            conditions = {"name": "label", "classes": data.classes, "counts": counts.tolist()}
            cond = torch.from_numpy(data.labels)
            if len(data.classes) >= 2:
                judge = classifier.fit_classifier(data.images, data.labels, len(data.classes), seed=cfg.seed)
                if judge["holdout_accuracy"] is not None:
                    notes.append(
                        f"class-consistency judge (logistic regression) is {judge['holdout_accuracy']:.1%} "
                        "accurate on held-out real images"
                    )
        spec = {
            "shape": [c, h, w],
            "conditions": conditions,
            "source": data.source,
            "format": data.format,
            "n_images": n,
            "pixel_range": [-1.0, 1.0],
            "classifier": judge,
            "levels": _levels(data.images),
        }
        x = encode_pixels(torch.from_numpy(data.images), spec)
        samples = ImageSamples(to_uint8(data.images), _names(data.labels, data.classes))
        return RealData(x=x, spec=spec, cond=cond, samples=samples, notes=notes)

    # --- nets ----------------------------------------------------------------------------------

    @staticmethod
    def _n_classes(spec: dict[str, Any]) -> int:
        return len(spec["conditions"]["classes"]) if spec.get("conditions") else 0

    def build_generator(self, spec: dict[str, Any], cfg: TrainConfig) -> nn.Module:
        opts = self.options(cfg)
        levels = spec.get("levels") if opts["snap"] else None
        return ImageGenerator(spec["shape"], cfg.z_dim, self._n_classes(spec), width=opts["width"],
                              embed_dim=opts["embed_dim"], levels=levels)

    def build_discriminator(self, spec: dict[str, Any], cfg: TrainConfig) -> nn.Module:
        opts = self.options(cfg)
        return ImageDiscriminator(spec["shape"], self._n_classes(spec), width=opts["width"],
                                  spectral_norm=bool(opts["spectral_norm"]), cond_mode=opts["cond_mode"],
                                  dropout=float(opts["d_dropout"]))

    # --- samples -------------------------------------------------------------------------------

    def decode(self, x: torch.Tensor, cond: np.ndarray | None, spec: dict[str, Any]) -> ImageSamples:
        images = to_uint8(decode_pixels(x.detach().float().cpu(), spec))
        if spec.get("levels"):
            images = level_table(spec["levels"])[images]
        classes = spec["conditions"]["classes"] if spec.get("conditions") else None
        return ImageSamples(images, _names(cond, classes) if classes and cond is not None else None)

    def num_samples(self, samples: ImageSamples) -> int:
        return len(samples)

    def sample_suffixes(self) -> tuple[str, ...]:
        """``.npz`` (arrays x and y), ``.png`` (one grid image) or no suffix: a folder of PNGs per class."""
        return (".npz", ".png", "")

    def open_writer(self, path: Path, spec: dict[str, Any], n: int) -> SampleWriter:
        """``.npz`` (``x`` uint8 ``[N, H, W, C]``, ``y`` class names), ``.png`` (a grid of the first
        samples of each class) or a path without suffix (a folder of PNGs per class), chunk by chunk."""
        path = Path(path)
        suffix = path.suffix.lower()
        classes = [str(c) for c in spec["conditions"]["classes"]] if spec.get("conditions") else None
        if suffix == ".npz":
            return ImageArrayWriter(path, n, classes)
        if suffix == ".png":
            return ImageGridWriter(path, n, lambda kept: sample_grid(None, kept, spec))
        if suffix == "":
            return ImageFolderWriter(path, n)
        raise AdvgenError(f"cannot write images as {suffix}; use .npz, .png (a grid) or a folder name")

    def bytes_per_sample(self, spec: dict[str, Any], suffix: str) -> int:
        c, h, w = spec["shape"]
        if suffix.lower() == ".png":
            return 0  # one grid of a few dozen images, whatever n
        if suffix == "":
            return max(4096, 2 * c * h * w)  # a PNG file each: at least one block of the file system
        longest = max((len(str(k)) for k in spec["conditions"]["classes"]), default=0) if spec.get("conditions") else 0
        return c * h * w + 4 * longest

    def write_samples(self, samples: ImageSamples, path: Path, spec: dict[str, Any]) -> None:
        with self.open_writer(Path(path), spec, len(samples)) as writer:
            writer.write(samples)

    def read_samples(self, path: Path, spec: dict[str, Any]) -> ImageSamples:
        path = Path(path)
        c, h, w = spec["shape"]
        if path.is_dir():
            data = load_folder(path, size=None)
            data = conform(data, channels=c)
            return ImageSamples(to_uint8(data.images), _names(data.labels, data.classes))
        if path.suffix.lower() != ".npz":
            raise InvalidDataError(f"cannot read image samples from {path}: use a .npz file or a folder of class folders")
        if not path.is_file():
            raise InvalidDataError(f"samples file not found: {path}")
        arrays = read_npz_arrays(path, ["x", "y"], required="x")  # headers checked first: no zip bombs
        x, y = arrays["x"], arrays.get("y")
        if x.ndim == 3 and c == 1:
            x = x[..., None]
        if x.ndim == 4 and tuple(x.shape[1:]) == (c, h, w) and tuple(x.shape[1:]) != (h, w, c):
            x = x.transpose(0, 2, 3, 1)  # channels-first input
        if y is not None and y.shape[0] != x.shape[0]:
            raise InvalidDataError(f"{path}: x holds {x.shape[0]} images but y holds {y.shape[0]} labels")
        if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
            raise InvalidDataError(f"{path}: pixels must be uint8 or float in [0, 1], got {x.dtype}")
        return ImageSamples(x, None if y is None else np.asarray(y).astype(str))

    def plot(self, real: ImageSamples, fake: ImageSamples, path: Path, spec: dict[str, Any]) -> bool:
        """Real images beside generated ones, one row per class, labelled (``real`` / ``generated``
        columns, class rows, a title naming the data); without matplotlib, the bare grid."""
        from advgen.io import pyplot

        try:
            plt = pyplot()
        except ImportError:
            write_png(sample_grid(real, fake, spec), path)
            return True
        from advgen.io import save_figure

        rows, names, gap = _grid_rows(real, fake, spec, real_rows=True)
        image = grid(rows, pad=1, scale=_grid_scale(spec), gap_after=gap)
        c, h, w = spec["shape"]
        scale = _grid_scale(spec)
        fig_w, fig_h = image.shape[1] / 45 + 1.6, image.shape[0] / 45 + 1.3
        fig, ax = plt.subplots(figsize=(fig_w, fig_h))
        ax.imshow(image[..., 0] if c == 1 else image, cmap="gray" if c == 1 else None, vmin=0, vmax=255,
                  interpolation="nearest")
        ax.set_yticks([scale * (1 + i * (h + 1) + h / 2) for i in range(len(names))], names, fontsize=10)
        if gap is not None:
            # column headers over the two blocks: the first `gap` columns are real, the rest generated
            n_cols = max(len(r) for r in rows)
            real_end = scale * (1 + gap * (w + 1))
            fake_start = real_end + scale * 5  # grid() leaves 3 * pad + 2 more pixels in the gap
            ax.xaxis.tick_top()
            ax.set_xticks([real_end / 2, (fake_start + scale * (1 + n_cols * (w + 1) + 5)) / 2],
                          ["real", "generated"], fontsize=11)
            ax.tick_params(axis="x", length=0)
            ax.set_ylabel("class", fontsize=10)
        else:
            ax.set_xticks([])
        ax.tick_params(axis="y", length=0)
        for side in ax.spines.values():
            side.set_visible(False)
        ax.set_title(_grid_title(spec, real, fake, gap), fontsize=11, pad=22 if gap is not None else 6)
        fig.tight_layout()
        save_figure(fig, path)
        return True

    # --- judging -------------------------------------------------------------------------------

    def validators(self, spec: dict[str, Any]) -> list[Validator]:
        c, h, w = spec["shape"]
        rules = [
            Validator(
                "shape", f"each image is {h}x{w} with {c} channel(s)",
                lambda s: np.full(len(s), tuple(s.x.shape[1:]) == (h, w, c)), group="shape",
            ),
            Validator("pixel-range", "pixels are uint8, or finite floats in [0, 1]", _in_range, group="shape"),
            Validator("not-blank", "an image holds at least two distinct pixel values", _not_blank, group="quality"),
        ]
        judge = spec.get("classifier")
        if spec.get("conditions") and judge:
            classes = [str(k) for k in spec["conditions"]["classes"]]
            acc = judge.get("holdout_accuracy")
            note = f" ({acc:.0%} accurate on held-out real images)" if acc is not None else ""
            rules.append(
                Validator(
                    "class-consistency",
                    f"a logistic regression fitted on the real images assigns the image to its class{note}",
                    lambda s: _class_consistent(s, judge, classes, (h, w, c)),
                    group="class",
                )
            )
        return rules

    def featurize(self, samples: ImageSamples, spec: dict[str, Any]) -> np.ndarray:
        x = samples.to_float("NHWC")
        return x.reshape(x.shape[0], -1).astype(np.float64)

    def labels(self, samples: ImageSamples, spec: dict[str, Any]) -> np.ndarray | None:
        return samples.y

    # --- export --------------------------------------------------------------------------------

    def export_module(self, generator: nn.Module, spec: dict[str, Any]) -> nn.Module:
        return ImageExport(generator, spec)

    def export_outputs(self, spec: dict[str, Any]) -> list[dict[str, Any]]:
        c, h, w = spec["shape"]
        return [
            {"name": "images", "dtype": "uint8", "shape": [h, w, c], "kind": "image", "layout": "HWC",
             "meaning": "generated images, channels last, 0..255"},
            {"name": "pixels", "dtype": "float32", "shape": [c, h, w],
             "meaning": "the same images as floats in [0, 1], channels first"},
        ]

    # --- checkpoint grids ----------------------------------------------------------------------

    def checkpoint_grid(self, trainer: Any) -> Path:
        """Draw the sample grid of the generator being trained into ``run_dir/grid-stepNNNNNN.png``."""
        spec = trainer.spec
        gen = trainer.sampling_generator()
        was_training = gen.training
        gen.eval()
        try:
            rng = torch.Generator().manual_seed(trainer.cfg.seed)  # the same z at every checkpoint
            k = self._n_classes(spec)
            per_row = 10
            cond = torch.arange(k).repeat_interleave(per_row) if k else None
            n = k * per_row if k else 8 * per_row
            z = torch.randn(n, trainer.cfg.z_dim, generator=rng)
            with torch.no_grad():
                x = gen(z.to(trainer.device), None if cond is None else cond.to(trainer.device)).float().cpu()
        finally:
            gen.train(was_training)
        fake = self.decode(x, None if cond is None else cond.numpy(), spec)
        path = Path(trainer.run_dir) / f"grid-step{trainer.step:06d}.png"
        write_png(sample_grid(trainer.data.samples, fake, spec), path)
        return path


class ImageExport(nn.Module):
    """The generator with decoding in the graph: ``(z, cond) -> (uint8 NHWC, float NCHW in [0, 1])``.

    The same steps as :meth:`ImagesDomain.decode`: undo the encoding, scale to 0..255, round, snap to
    the data's grey levels through a 256-entry table when the spec has them.
    """

    def __init__(self, generator: nn.Module, spec: dict[str, Any]):
        super().__init__()
        self.generator = generator
        self.spec = {"pixel_range": spec.get("pixel_range")}
        levels = spec.get("levels")
        table = level_table(levels) if levels else np.arange(256, dtype=np.uint8)
        self.register_buffer("table", torch.from_numpy(table.astype(np.int64)), persistent=False)

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        scaled = (decode_pixels(self.generator(z, cond), self.spec) * 255.0).round()
        snapped = self.table[scaled.long()]
        images = snapped.to(torch.uint8).permute(0, 2, 3, 1)
        return images, snapped.float() / 255.0


# --- helpers ---------------------------------------------------------------------------------


MAX_LEVELS = 64


def encode_pixels(images01: torch.Tensor, spec: dict[str, Any]) -> torch.Tensor:
    """Pixels in [0, 1] to the nets' space, ``spec["pixel_range"]`` (tanh's [-1, 1])."""
    lo, hi = spec.get("pixel_range") or (-1.0, 1.0)
    return images01 * (hi - lo) + lo


def decode_pixels(x: torch.Tensor, spec: dict[str, Any]) -> torch.Tensor:
    """The nets' space back to pixels in [0, 1], clipped."""
    lo, hi = spec.get("pixel_range") or (-1.0, 1.0)
    return ((x - lo) / (hi - lo)).clamp(0.0, 1.0)


def _levels(images01: np.ndarray) -> list[int] | None:
    """The grey levels of the real images at 8 bits, when there are few of them (digits have 17).

    Generated pixels are snapped to these levels in ``decode``: otherwise a detector tells generated
    images apart just by pixel values that no real image can hold.
    """
    values = np.unique(to_uint8(images01))
    return values.tolist() if values.size <= MAX_LEVELS else None


def level_table(levels: list[int]) -> np.ndarray:
    """A 256-entry uint8 table mapping each byte value to the nearest of ``levels`` (ties: the lower)."""
    lv = np.asarray(sorted(levels), dtype=np.int64)
    values = np.arange(256)
    return lv[np.abs(values[:, None] - lv[None, :]).argmin(axis=1)].astype(np.uint8)


def _names(idx: np.ndarray | torch.Tensor | None, classes: list[str] | None) -> np.ndarray | None:
    if idx is None or not classes:
        return None
    return np.asarray(classes, dtype=str)[np.asarray(idx, dtype=np.int64)]


def _in_range(s: ImageSamples) -> np.ndarray:
    if s.x.dtype == np.uint8:
        return np.ones(len(s), dtype=bool)
    if not np.issubdtype(s.x.dtype, np.floating):
        return np.zeros(len(s), dtype=bool)
    flat = s.x.reshape(len(s), -1)
    return np.isfinite(flat).all(axis=1) & (np.nan_to_num(flat, nan=-1).min(axis=1) >= 0) & (
        np.nan_to_num(flat, nan=2).max(axis=1) <= 1
    )


def _not_blank(s: ImageSamples) -> np.ndarray:
    flat = s.x.reshape(len(s), -1)
    return flat.max(axis=1) > flat.min(axis=1)


def _class_consistent(s: ImageSamples, judge: dict[str, Any], classes: list[str], shape: tuple) -> np.ndarray:
    """True where the judge's predicted class equals the sample's own class name."""
    n = len(s)
    if s.y is None or tuple(s.x.shape[1:]) != shape or n == 0:
        return np.zeros(n, dtype=bool)
    lookup = {name: i for i, name in enumerate(classes)}
    want = np.array([lookup.get(str(v), -1) for v in s.y])
    x = np.clip(np.nan_to_num(s.to_float("NCHW"), nan=0.0), 0.0, 1.0)
    return classifier.predict(judge, x) == want


def sample_grid(real: ImageSamples | None, fake: ImageSamples, spec: dict[str, Any],
                n_real: int = 3, n_fake: int = 10) -> np.ndarray:
    """One row per class: ``n_real`` real images, a gap, then ``n_fake`` generated ones.

    Unconditional samples fill rows of ``n_fake`` without real images. Small images are scaled up so
    that each cell is at least 32 pixels a side.
    """
    rows, _, gap = _grid_rows(real, fake, spec, n_real, n_fake)
    return grid(rows, pad=1, scale=_grid_scale(spec), gap_after=gap)


def _grid_scale(spec: dict[str, Any]) -> int:
    _, h, w = spec["shape"]
    return max(1, 32 // max(h, w))


def _grid_rows(real: ImageSamples | None, fake: ImageSamples, spec: dict[str, Any], n_real: int = 3,
               n_fake: int = 10, real_rows: bool = False) -> tuple[list[list[np.ndarray]], list[str], int | None]:
    """The grid's rows of uint8 images, each row's name, and the column after which generated images start.

    Conditional: one row per class (named by it), ``n_real`` real images then ``n_fake`` generated.
    Unconditional: rows of ``n_fake`` generated images, preceded by two rows of real ones when
    ``real_rows`` is set and real images are given (rows named ``real`` / ``generated``).
    """
    c, h, w = spec["shape"]
    blank = np.full((h, w, c), 128, dtype=np.uint8)
    fx = fake.x if fake.x.dtype == np.uint8 else to_uint8(np.clip(fake.to_float("NCHW"), 0, 1))
    rows: list[list[np.ndarray]] = []
    names: list[str] = []
    classes = spec["conditions"]["classes"] if spec.get("conditions") else None
    if classes and fake.y is not None:
        for name in classes:
            fake_k = [fx[i] for i in np.flatnonzero(fake.y == str(name))[:n_fake]]
            real_k = []
            if real is not None and real.y is not None:
                real_k = [real.x[i] for i in np.flatnonzero(real.y == str(name))[:n_real]]
            if not fake_k:
                continue
            rows.append((real_k + [blank] * (n_real - len(real_k)) if real is not None else []) + fake_k)
            names.append(str(name))
        gap = n_real if real is not None else None
    else:
        if real_rows and real is not None and len(real):
            rx = real.x if real.x.dtype == np.uint8 else to_uint8(np.clip(real.to_float("NCHW"), 0, 1))
            real_part = [list(rx[i : i + n_fake]) for i in range(0, min(len(rx), 2 * n_fake), n_fake)]
            rows += real_part
            names += ["real"] * len(real_part)
        fake_part = [list(fx[i : i + n_fake]) for i in range(0, min(len(fx), 8 * n_fake), n_fake)]
        rows += fake_part
        names += ["generated"] * len(fake_part)
        gap = None
    if not rows or not any(n != "real" for n in names):
        raise AdvgenError("no samples to draw")
    return rows, names, gap


def _grid_title(spec: dict[str, Any], real: ImageSamples | None, fake: ImageSamples, gap: int | None) -> str:
    source = str(spec.get("source") or "images")
    if gap is not None:
        return f"{source}: {gap} real images (left) and generated ones (right) per class"
    return f"{source}: real and generated images" if real is not None and len(real) else f"{source}: generated images"


def write_image_folder(samples: ImageSamples, out: Path) -> None:
    """``out/<class>/<index>.png`` (``out/unlabelled/`` without classes), built aside and renamed in.

    An existing ``out`` is replaced only when it is empty or an earlier sample folder of advgen.
    """
    with ImageFolderWriter(out, len(samples)) as writer:
        writer.write(samples)
