"""Hook markers and every hookspec of advgen.

advgen's core knows nothing about tables, images or curves: everything domain-specific arrives through
the hooks below, from plugins registered under the ``advgen`` entry-point group (the built-in ones go
through the very same group), from a local file or module given with ``--plugin path/to/file.py``, or
from ``ADVGEN_PLUGINS`` (a comma-separated list of such paths).

Plugins contribute through register callbacks, as in llm and tox: the core owns the registries, the
plugin calls ``register(...)``. Hooks are grouped by stage of a run's lifecycle:

1. discovery: :func:`advgen_register_domains`, :func:`advgen_register_commands`;
2. building a run: :func:`advgen_register_losses`, :func:`advgen_register_validators`;
3. training: :func:`advgen_train_start`, :func:`advgen_train_log`, :func:`advgen_checkpoint_saved`,
   :func:`advgen_train_end`;
4. judging samples: :func:`advgen_register_detectors`.

A **domain plugin** registers a :class:`advgen.domain.Domain` subclass. Its methods are the domain's
side of the contract: name and description, default training config, the real-data sampler
(``load_data``), the generator and discriminator nets, decoding and writing samples, validators,
detector featurization and the in-graph decoder used by ONNX export. See :mod:`advgen.domain`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    import click

    from advgen.domain import Domain, Validator
    from advgen.engine import Trainer
    from advgen.losses import GANLoss

@dataclass(frozen=True)
class DomainRef:
    """A domain registered by reference: its name, and the module and class that implement it.

    ``register(DomainRef("mydomain", "my_package.domain", "MyDomain"))`` lets the core list the domain
    without importing its module (and torch); the module is imported when the domain is first used.
    Registering the class itself (``register(MyDomain)``) works just as well.
    """

    name: str
    module: str
    attr: str


PROJECT = "advgen"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- 1. discovery -----------------------------------------------------------------------------


@hookspec
def advgen_register_domains(register: Callable[[type[Domain]], None]) -> None:
    """Register one or more domains.

    Call ``register(DomainSubclass)`` for each domain this plugin provides, or
    ``register(DomainRef(name, module, class_name))`` to have it imported on first use. The class is
    instantiated by the core; its ``name`` must be unique across all loaded plugins (a clash is a
    load-time error).
    """


@hookspec
def advgen_register_commands(cli: click.Group) -> None:
    """Add sub-commands to the ``advgen`` command line.

    ``cli`` is the top-level click group; add commands with ``cli.add_command`` or
    ``@cli.command()``. The ``datasets`` sub-group is available as ``cli.commands["datasets"]``.
    """


# --- 2. building a run ------------------------------------------------------------------------


@hookspec
def advgen_register_losses(register: Callable[[str, type[GANLoss]], None]) -> None:
    """Register adversarial losses by name: ``register("name", GANLossSubclass)``.

    The built-ins (``minimax``, ``non-saturating``, ``wgan-gp``, ``hinge``) are registered the same way.
    A run picks one with ``--loss NAME``.
    """


@hookspec
def advgen_register_validators(
    domain: str, spec: dict[str, Any], register: Callable[[Validator], None]
) -> None:
    """Add validators (domain rules on decoded samples) to any domain.

    Called once per run or evaluation after the domain's own validators are built. ``domain`` is the
    domain name and ``spec`` its JSON schema of the data; call ``register(Validator(...))`` for each
    rule that applies, and do nothing for domains the plugin does not know.
    """


# --- 3. training callbacks --------------------------------------------------------------------


@hookspec
def advgen_train_start(trainer: Trainer) -> None:
    """Called once before the first step of a run (or of a resumed run)."""


@hookspec
def advgen_train_log(trainer: Trainer, step: int, metrics: dict[str, float]) -> None:
    """Called at every logging step with plain floats (losses, step time); the only host sync point."""


@hookspec
def advgen_checkpoint_saved(trainer: Trainer, path: str) -> None:
    """Called after a checkpoint has been written atomically to ``path``."""


@hookspec
def advgen_train_end(trainer: Trainer, summary: dict[str, Any]) -> None:
    """Called once after the last step, with the run summary (steps, seconds, rows/s, validity)."""


# --- 4. judging samples -----------------------------------------------------------------------


@hookspec
def advgen_register_detectors(register: Callable[[str, Callable[[int], Any]], None]) -> None:
    """Register scikit-learn detectors by name: ``register("name", factory)``.

    ``factory(seed)`` returns an unfitted scikit-learn estimator with ``fit`` and ``predict_proba``.
    The built-ins (``random-forest``, ``gradient-boosting``, ``logistic-regression``, ``mlp``) are
    registered the same way.
    """


HOOK_NAMES = [
    name for name, value in list(globals().items()) if name.startswith("advgen_") and callable(value)
]
