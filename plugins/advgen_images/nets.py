"""Conditional DCGAN nets (Radford et al. 2016), sized from the image shape.

The generator starts from a small ``base`` grid (4 to 7 pixels a side) and doubles it with
transposed convolutions until the image size is reached, so 8x8 needs one up-sampling, 28x28 two
(from 7x7) and 64x64 four. The discriminator mirrors it with strided convolutions. Class
conditioning enters the generator twice, as an embedding concatenated to ``z`` and as class-wise
batch-norm gains and biases, because on small data a class signal only at the input tends to get
washed out; the discriminator uses a projection (Miyato & Koyama 2018) or an extra input channel.
"""

from __future__ import annotations

from torch import nn
import torch

MAX_CHANNELS = 512


def plan(height: int, width: int) -> tuple[int, int, int]:
    """``(base_h, base_w, n_up)`` with ``base * 2**n_up == size`` and the smaller base side >= 4."""
    n = 0
    while (
        height % 2 ** (n + 1) == 0
        and width % 2 ** (n + 1) == 0
        and min(height, width) // 2 ** (n + 1) >= 4
    ):
        n += 1
    return height // 2**n, width // 2**n, n


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm whose gain and bias are looked up per class (plain batch norm without classes)."""

    def __init__(self, channels: int, n_classes: int):
        super().__init__()
        self.n_classes = n_classes
        self.bn = nn.BatchNorm2d(channels, affine=n_classes == 0)
        if n_classes:
            self.gain = nn.Embedding(n_classes, channels)
            self.bias = nn.Embedding(n_classes, channels)
            nn.init.ones_(self.gain.weight)
            nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        h = self.bn(x)
        if self.n_classes and cond is not None:
            h = h * self.gain(cond)[:, :, None, None] + self.bias(cond)[:, :, None, None]
        return h


class ImageGenerator(nn.Module):
    """``forward(z [N, z_dim], cond [N] or None) -> images [N, C, H, W]`` in ``[-1, 1]`` (tanh)."""

    def __init__(self, shape: list[int], z_dim: int, n_classes: int = 0, width: int = 64, embed_dim: int = 32,
                 levels: list[float] | None = None):
        super().__init__()
        c, h, w = shape
        self.bh, self.bw, n_up = plan(h, w)
        self.n_classes = n_classes
        chans = [min(width * 2 ** (n_up - i), MAX_CHANNELS) for i in range(n_up + 1)]
        self.c0 = chans[0]
        self.embed = nn.Embedding(n_classes, embed_dim) if n_classes else None
        in_dim = z_dim + (embed_dim if n_classes else 0)
        self.fc = nn.Linear(in_dim, chans[0] * self.bh * self.bw, bias=False)
        self.bn0 = ConditionalBatchNorm2d(chans[0], n_classes)
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(chans[i], chans[i + 1], 4, stride=2, padding=1, bias=False) for i in range(n_up)
        )
        self.bns = nn.ModuleList(ConditionalBatchNorm2d(chans[i + 1], n_classes) for i in range(n_up))
        self.to_image = nn.Conv2d(chans[-1], c, 3, padding=1)
        self.apply(_dcgan_init)
        # not saved in checkpoints: the table is rebuilt from spec["levels"]
        self.register_buffer("snap", snap_table(levels) if levels else None, persistent=False)

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            if cond is None:
                raise ValueError("this generator is conditional: pass one class index per sample")
            z = torch.cat([z, self.embed(cond)], dim=1)
        h = self.fc(z).unflatten(1, (self.c0, self.bh, self.bw))  # keeps C static for ONNX batch_norm
        h = torch.relu(self.bn0(h, cond))
        for up, bn in zip(self.ups, self.bns):
            h = torch.relu(bn(up(h), cond))
        x = torch.tanh(self.to_image(h))
        if self.snap is not None:
            # Straight-through snapping to the data's grey levels: the discriminator sees the same
            # pixel alphabet as in real images, the gradient flows as if no rounding happened.
            index = ((x.detach() + 1.0) * 127.5).round().clamp(0, 255).long()
            x = x + (self.snap[index] - x).detach()
        return x


def snap_table(levels: list[float]) -> torch.Tensor:
    """256 values in [-1, 1]: for each 8-bit pixel value, the nearest of ``levels`` (given in 0..255)."""
    lv = torch.tensor(sorted(float(v) for v in levels))
    values = torch.arange(256, dtype=torch.float32)
    nearest = lv[(values[:, None] - lv[None, :]).abs().argmin(dim=1)]
    return nearest / 127.5 - 1.0


class ImageDiscriminator(nn.Module):
    """``forward(x [N, C, H, W], cond [N] or None) -> logits [N]``.

    ``cond_mode="projection"`` adds ``<embed(class), features>`` to the logit; ``"embedding"`` feeds a
    learned per-class image as an extra input channel. Spectral norm bounds each layer's Lipschitz
    constant, which keeps the small-data discriminator from winning too early.
    """

    def __init__(self, shape: list[int], n_classes: int = 0, width: int = 64, spectral_norm: bool = True,
                 cond_mode: str = "projection", dropout: float = 0.0):
        super().__init__()
        if cond_mode not in ("projection", "embedding"):
            raise ValueError(f"cond_mode must be projection or embedding, got {cond_mode!r}")
        c, h, w = shape
        bh, bw, n_down = plan(h, w)
        sn = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda m: m)
        self.n_classes = n_classes
        self.cond_mode = cond_mode if n_classes else None
        self.hw = (h, w)
        chans = [min(width * 2**i, MAX_CHANNELS) for i in range(n_down + 1)]
        in_c = c + (1 if self.cond_mode == "embedding" else 0)
        layers: list[nn.Module] = [sn(nn.Conv2d(in_c, chans[0], 3, padding=1)), nn.LeakyReLU(0.2)]
        for i in range(n_down):
            layers += [sn(nn.Conv2d(chans[i], chans[i + 1], 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.features = nn.Sequential(*layers)
        feat = chans[-1] * bh * bw
        self.fc = sn(nn.Linear(feat, 1))
        self.class_map = nn.Embedding(n_classes, h * w) if self.cond_mode == "embedding" else None
        self.proj = sn(nn.Embedding(n_classes, feat)) if self.cond_mode == "projection" else None
        self.apply(_dcgan_init)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if self.cond_mode is not None and cond is None:
            raise ValueError("this discriminator is conditional: pass one class index per sample")
        if self.class_map is not None:
            x = torch.cat([x, self.class_map(cond).view(-1, 1, *self.hw)], dim=1)
        h = self.features(x).flatten(1)
        out = self.fc(h).squeeze(1)
        if self.proj is not None:
            out = out + (self.proj(cond) * h).sum(dim=1)
        return out


def _dcgan_init(m: nn.Module) -> None:
    """DCGAN's N(0, 0.02) weights; applied before spectral norm reparametrises them."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        weight = getattr(m, "parametrizations", None)
        target = m.parametrizations.weight.original if weight is not None else m.weight
        nn.init.normal_(target, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
