"""Generator and discriminator for encoded table rows.

The generator is an MLP with residual blocks whose last layer is split into the transform's
segments: numeric segments stay linear (quantile and log encodings) or pass through tanh (the
scalar of mode-specific normalisation). One-hot groups are exact one-hots, as in real rows (a soft
one-hot is a give-away to the discriminator), with gradients through the softmax (straight-through).
By default (``sample``) each group's category is drawn from its softmax with a uniform read off z;
``straight-through`` takes the argmax instead, and ``gumbel`` samples Gumbel-softmax (CTGAN's
choice) in training with the argmax of the logits at evaluation.

Both nets take the condition as a learned embedding of the class index, concatenated to the input.
The discriminator is an MLP with LeakyReLU, dropout and spectral normalisation, and optionally packs
``pac`` rows into one decision (PacGAN), which penalises a generator that collapses to few modes.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from advgen_tabular.transform import Segment


CATEGORICAL_MODES = ("sample", "straight-through", "gumbel")
# one-hot groups up to this wide are drawn together, padded to the widest of them, in one batch of
# kernels (point-mass groups are 2 to 17 wide, and a table has dozens); wider ones one by one
BATCH_WIDTH = 32
# added to a padded slot's logit, a copy of its group's first one: a padded slot is at most e^-30 as
# likely as that slot and never drawn (the draw is capped at the group's last slot); not lower, since
# exp() of numbers below -88 (denormal results) takes a slow path on CPUs
PAD_LOGIT = -30.0


def _one_hot(idx: torch.Tensor, k: int, dtype: torch.dtype) -> torch.Tensor:
    """Float one-hot rows by scatter: ``F.one_hot`` builds an int64 matrix first, 8x slower here."""
    return torch.zeros(idx.shape[0], k, dtype=dtype, device=idx.device).scatter_(1, idx.unsqueeze(1), 1.0)


class _Residual(nn.Module):
    """Linear, layer norm, ReLU, added back onto the input (same width)."""

    def __init__(self, width: int):
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + F.relu(self.norm(self.fc(h)))


class TabularGenerator(nn.Module):
    """``(z [N, z_dim], cond [N] int64 | None) -> encoded rows [N, D]``."""

    def __init__(
        self,
        z_dim: int,
        segments: Sequence[Segment],
        n_classes: int = 0,
        hidden: int = 256,
        depth: int = 2,
        embed_dim: int = 32,
        categorical: str = "sample",
        tau: float = 0.5,
    ):
        super().__init__()
        if categorical not in CATEGORICAL_MODES:
            raise ValueError(f"unknown categorical output {categorical!r}")
        self.z_dim = z_dim
        self.n_classes = n_classes
        self.categorical = categorical
        self.tau = tau
        self.embed = nn.Embedding(n_classes, embed_dim) if n_classes else None
        in_dim = z_dim + (embed_dim if n_classes else 0)
        self.stem = nn.Sequential(nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.ReLU())
        self.blocks = nn.Sequential(*[_Residual(hidden) for _ in range(depth)])
        self.dim = max(s.end for s in segments)
        self.head = nn.Linear(hidden, self.dim)
        self.softmax_groups = [(s.start, s.end) for s in segments if s.activation == "softmax"]
        tanh = [s.start for s in segments if s.activation == "tanh"]
        # numeric positions keep their raw value, except those marked tanh
        self.register_buffer("tanh_mask", torch.zeros(self.dim, dtype=torch.bool))
        self.tanh_mask[tanh] = True
        self.has_tanh = bool(tanh)
        # "sample": one uniform per one-hot group, read off z by fixed orthonormal directions, picks
        # the category by inverse-CDF sampling of the head's softmax (see _sample)
        n_groups = len(self.softmax_groups)
        gen = torch.Generator().manual_seed(0)
        proj = torch.randn(z_dim, max(n_groups, 1), generator=gen)
        if n_groups <= z_dim:
            proj = torch.linalg.qr(proj).Q
        self.register_buffer("u_proj", proj / proj.norm(dim=0, keepdim=True))
        self._batch_layout()

    def _batch_layout(self) -> None:
        """Index tables of the narrow groups' joint draw (``sample`` only) and of the output's assembly:
        the output is ``[raw values, narrow groups' one-hots, wide groups' one-hots]`` gathered by
        ``out_take``. Not persistent: they follow from the segments, so checkpoints do not change."""
        batched = [g for g, (s, e) in enumerate(self.softmax_groups)
                   if self.categorical == "sample" and e - s <= BATCH_WIDTH]
        self.wide_groups = [g for g in range(len(self.softmax_groups)) if g not in set(batched)]
        width = max((self.softmax_groups[g][1] - self.softmax_groups[g][0] for g in batched), default=1)
        # a multiple of 16: torch's CPU softmax over a last dimension under 16 wide takes a scalar path
        # (512 x 36 groups: 5.9 ms at width 15, 0.52 ms at 16)
        width = -(-width // 16) * 16
        src = torch.zeros(len(batched), width, dtype=torch.long)
        pad = torch.zeros(len(batched), width)
        last = torch.zeros(len(batched), dtype=torch.long)
        valid: list[int] = []
        take = list(range(self.dim))  # positions not in any group keep the raw value
        for i, g in enumerate(batched):
            s, e = self.softmax_groups[g]
            src[i, : e - s] = torch.arange(s, e)
            src[i, e - s :] = s
            pad[i, e - s :] = PAD_LOGIT
            last[i] = e - s - 1
            for k in range(e - s):
                take[s + k] = self.dim + len(valid)
                valid.append(i * width + k)
        offset = self.dim + len(valid)
        for g in self.wide_groups:
            s, e = self.softmax_groups[g]
            take[s:e] = range(offset, offset + e - s)
            offset += e - s
        self.batch_width = width
        self.n_batched = len(batched)
        self.register_buffer("batch_src", src.reshape(-1), persistent=False)
        self.register_buffer("batch_pad", pad, persistent=False)
        self.register_buffer("batch_last", last, persistent=False)
        self.register_buffer("batch_u", torch.tensor(batched, dtype=torch.long), persistent=False)
        self.register_buffer("batch_valid", torch.tensor(valid, dtype=torch.long), persistent=False)
        self.register_buffer("out_take", torch.tensor(take, dtype=torch.long), persistent=False)

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = z
        if self.embed is not None:
            if cond is None:
                raise ValueError("this generator is conditional: pass cond")
            h = torch.cat([z, self.embed(cond)], dim=1)
        raw = self.head(self.blocks(self.stem(h)))
        out = torch.where(self.tanh_mask, torch.tanh(raw), raw) if self.has_tanh else raw
        if not self.softmax_groups:
            return out
        with torch.autocast(z.device.type, enabled=False):  # u in float32: bf16 has 256 steps in [0.5, 1]
            u = 0.5 * (1.0 + torch.erf((z.float() @ self.u_proj) * (1.0 / math.sqrt(2.0))))
        parts = [out]
        if self.n_batched:
            parts.append(self._sample_batched(raw, u))
        for g in self.wide_groups:
            s, e = self.softmax_groups[g]
            if self.categorical == "sample":
                parts.append(self._sample(raw[:, s:e], u[:, g : g + 1]))
            else:
                parts.append(self._onehot(raw[:, s:e]))
        return torch.cat(parts, dim=1).index_select(1, self.out_take)

    def _sample_batched(self, raw: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """:meth:`_sample` for all narrow groups at once: their logits gathered into ``[N, groups, width]``
        (padding slots at ``PAD_LOGIT``, probability 0), the draws made side by side; returns the
        groups' one-hots back to back ``[N, their total width]``."""
        logits = raw.index_select(1, self.batch_src).float().reshape(-1, self.n_batched, self.batch_width)
        p = torch.softmax(logits + self.batch_pad, dim=2)
        below = torch.sum(torch.cumsum(p, dim=2) < u.index_select(1, self.batch_u).unsqueeze(2), dim=2,
                          dtype=torch.int32).long()
        idx = torch.minimum(below, self.batch_last)
        hard = torch.zeros_like(p).scatter_(2, idx.unsqueeze(2), 1.0)
        if self.training:
            hard = hard + p - p.detach()
        return hard.reshape(hard.shape[0], -1).index_select(1, self.batch_valid)

    def _sample(self, logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Category ``k`` with probability ``softmax(logits)[k]``, chosen by a uniform ``u`` from z.

        An argmax head must learn every category's share through the discriminator alone and
        collapses onto the frequent ones (NSL-KDD's neptune rows spread over 54 services; an argmax
        generator produced 8). Sampling gives the softmax's shares directly, and since ``u`` is a
        function of z, the rest of the row can still depend on the category drawn. The gradient is
        the softmax's (straight-through); at evaluation the same ``u`` makes sampling deterministic
        given z, so the exported graph needs no random op.
        """
        # float32 even under bf16 autocast: a bf16 running sum has steps of 1/256 near 1, which would
        # skip the rare categories at the end of a 234-way vocabulary
        p = torch.softmax(logits.float(), dim=1)
        below = torch.sum(torch.cumsum(p, dim=1) < u, dim=1, dtype=torch.int32).long()  # int32: 2x faster
        idx = torch.clamp(below, max=logits.shape[1] - 1)
        hard = _one_hot(idx, logits.shape[1], p.dtype)
        if not self.training:
            return hard
        return hard + p - p.detach()

    def _onehot(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.training:
            # the decoder takes the argmax; a hard one-hot keeps the output in the real rows' format
            return _one_hot(logits.argmax(dim=1), logits.shape[1], logits.dtype)
        if self.categorical == "gumbel":
            return F.gumbel_softmax(logits, tau=self.tau, hard=False)
        soft = torch.softmax(logits / self.tau, dim=1)
        hard = _one_hot(soft.argmax(dim=1), logits.shape[1], soft.dtype)
        return hard + soft - soft.detach()


class TabularDiscriminator(nn.Module):
    """``(x [N, D], cond [N] | None) -> logits [N]``; with ``pac > 1`` each group of ``pac`` rows
    shares one logit (repeated so that the output still has one entry per row).

    With ``projection`` (conditional nets), the class also enters at the end as the inner product of
    a class embedding with the last hidden features (Miyato and Koyama's projection discriminator,
    2018). A label only concatenated to the input lets the net judge rows mostly by what all classes
    share; the projection makes it ask, per class, whether the row looks like that class's rows. On
    NSL-KDD the class-conditional marginals were off (KS up to 0.44 for ipsweep's src_bytes) with
    concatenation alone.
    """

    def __init__(
        self,
        dim: int,
        n_classes: int = 0,
        hidden: int = 256,
        depth: int = 2,
        embed_dim: int = 32,
        dropout: float = 0.0,
        spectral: bool = True,
        pac: int = 1,
        projection: bool = False,
    ):
        super().__init__()
        self.pac = pac
        self.embed = nn.Embedding(n_classes, embed_dim) if n_classes else None
        row = dim + (embed_dim if n_classes else 0)
        norm = nn.utils.parametrizations.spectral_norm if spectral else (lambda m: m)
        layers: list[nn.Module] = []
        width = row * pac
        for _ in range(depth):
            layers += [norm(nn.Linear(width, hidden)), nn.LeakyReLU(0.2), nn.Dropout(dropout)]
            width = hidden
        layers.append(norm(nn.Linear(width, 1)))
        self.net = nn.Sequential(*layers)
        self.project = norm(nn.Embedding(n_classes, width)) if projection and n_classes else None

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = x.flatten(1)
        if self.embed is not None:
            if cond is None:
                raise ValueError("this discriminator is conditional: pass cond")
            h = torch.cat([h, self.embed(cond)], dim=1)
        n = h.shape[0]
        pad = (self.pac - n % self.pac) % self.pac
        if pad:
            # pad by cycling through the rows so any batch size works; the extra logits are dropped
            keep = torch.arange(n + pad, device=h.device) % n
            h = h[keep]
            cond = cond[keep] if cond is not None else None
        h = h.reshape(-1, self.pac * h.shape[1])
        *body, head = self.net  # the last hidden features feed the projection term
        for layer in body:
            h = layer(h)
        logits = head(h).reshape(-1)
        if self.project is not None:
            # a packed group's class vector is the mean over its rows' classes
            w = self.project(cond).reshape(-1, self.pac, h.shape[1]).mean(dim=1)
            logits = logits + (w.to(h.dtype) * h).sum(dim=1)
        if self.pac > 1:
            return logits.repeat_interleave(self.pac)[:n]
        return logits
