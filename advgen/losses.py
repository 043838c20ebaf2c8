"""Adversarial losses: pure functions of discriminator logits.

Each loss is a :class:`GANLoss` subclass with a ``d_loss`` (what the discriminator minimises) and a
``g_loss`` (what the generator minimises). ``gradient_penalty`` tells the trainer to add a WGAN-GP
penalty to the discriminator loss. More losses come from plugins through ``advgen_register_losses``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class GANLoss:
    name = ""
    gradient_penalty = False

    @staticmethod
    def d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def g_loss(fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class MinimaxLoss(GANLoss):
    """Goodfellow et al. 2014: D maximises log D(x) + log(1 - D(G(z))); G minimises log(1 - D(G(z)))."""

    name = "minimax"

    @staticmethod
    def d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return F.softplus(-real).mean() + F.softplus(fake).mean()

    @staticmethod
    def g_loss(fake: torch.Tensor) -> torch.Tensor:
        # log(1 - sigmoid(f)) = -softplus(f); G minimises it
        return -F.softplus(fake).mean()


class NonSaturatingLoss(MinimaxLoss):
    """The same discriminator; G maximises log D(G(z)) instead, which keeps gradients alive early."""

    name = "non-saturating"

    @staticmethod
    def g_loss(fake: torch.Tensor) -> torch.Tensor:
        return F.softplus(-fake).mean()


class WGANGPLoss(GANLoss):
    """Wasserstein loss (Arjovsky et al. 2017) with gradient penalty (Gulrajani et al. 2017)."""

    name = "wgan-gp"
    gradient_penalty = True

    @staticmethod
    def d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return fake.mean() - real.mean()

    @staticmethod
    def g_loss(fake: torch.Tensor) -> torch.Tensor:
        return -fake.mean()


class HingeLoss(GANLoss):
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018)."""

    name = "hinge"

    @staticmethod
    def d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()

    @staticmethod
    def g_loss(fake: torch.Tensor) -> torch.Tensor:
        return -fake.mean()


BUILTIN_LOSSES: dict[str, type[GANLoss]] = {
    cls.name: cls for cls in (MinimaxLoss, NonSaturatingLoss, WGANGPLoss, HingeLoss)
}


def gradient_penalty(discriminator, real: torch.Tensor, fake: torch.Tensor, cond) -> torch.Tensor:
    """E[(||grad_x D(x_hat)||_2 - 1)^2] on random interpolates of real and fake rows."""
    shape = [real.shape[0]] + [1] * (real.ndim - 1)
    alpha = torch.rand(shape, device=real.device, dtype=real.dtype)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    out = discriminator(mixed, cond)
    (grad,) = torch.autograd.grad(out.sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()
