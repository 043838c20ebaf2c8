"""advgen's images domain: a conditional DCGAN on small images, and byte plots of binaries.

Registered under the ``advgen`` entry-point group as ``images``, exactly like a third-party plugin:

* the ``images`` domain (:class:`~advgen_images.domain.ImagesDomain`): embedded scikit-learn digits
  by default, MNIST IDX files, ``.npz`` arrays and class folders of PNG/JPEG through ``--data``;
* ``advgen datasets bytes2img``: binaries to byte-plot images (the Malimg approach);
* a sample grid PNG in the run directory at every checkpoint of an images run.
"""

from __future__ import annotations

from typing import Any, Callable

from advgen.hookspecs import DomainRef, hookimpl

__version__ = "0.1.0"
__all__ = ["ImageSamples", "ImagesDomain"]


@hookimpl
def advgen_register_domains(register: Callable[[Any], None]) -> None:
    # by reference: listing plugins and `advgen --help` do not import torch
    register(DomainRef("images", "advgen_images.domain", "ImagesDomain"))


def __getattr__(name: str) -> Any:  # the domain's classes, imported on first use
    if name in __all__:
        from advgen_images import domain

        return getattr(domain, name)
    raise AttributeError(f"module 'advgen_images' has no attribute {name!r}")


@hookimpl
def advgen_register_commands(cli: Any) -> None:
    from advgen_images.bytes2img import register_command

    register_command(cli)


@hookimpl
def advgen_checkpoint_saved(trainer: Any, path: str) -> None:
    # only our own runs: the hook fires for every domain's checkpoints
    from advgen_images.domain import ImagesDomain

    if isinstance(trainer.domain, ImagesDomain):
        trainer.domain.checkpoint_grid(trainer)
