"""advgen's tabular domain plugin: rows of network-traffic feature tables (NSL-KDD by default).

Registered under the ``advgen`` entry-point group like any third-party plugin. The pieces:
:mod:`~advgen_tabular.transform` (reversible mixed-type encoding and its tensor-math decoder),
:mod:`~advgen_tabular.nets` (conditional generator and discriminator),
:mod:`~advgen_tabular.validators` (schema and cross-column rules fitted from the training rows) and
:mod:`~advgen_tabular.domain` (the :class:`~advgen.domain.Domain` that ties them together). Tables
larger than memory take :mod:`~advgen_tabular.streamed` (batches read by :mod:`~advgen_tabular.source`,
a sample and exact counts from :mod:`~advgen_tabular.census`, rows encoded once into
:mod:`~advgen_tabular.rowstore`). The domain is registered by reference, so listing plugins imports
neither torch nor pandas.
"""

from __future__ import annotations

from typing import Any, Callable

__version__ = "0.1.0"  # TabularDomain.version

__all__ = ["TabularDomain", "__version__"]

try:
    from advgen.hookspecs import DomainRef, hookimpl
except ModuleNotFoundError as exc:
    # the torch-free runtime installs no pluggy (nor torch) and imports only the NumPy modules
    # advgen_tabular.rules and advgen_tabular.quantile; with no plugin manager, nothing registers
    if exc.name != "pluggy":
        raise
else:

    @hookimpl
    def advgen_register_domains(register: Callable[[Any], None]) -> None:
        register(DomainRef("tabular", "advgen_tabular.domain", "TabularDomain"))


def __getattr__(name: str) -> Any:  # the domain class, imported on first use
    if name == "TabularDomain":
        from advgen_tabular.domain import TabularDomain

        return TabularDomain
    raise AttributeError(f"module 'advgen_tabular' has no attribute {name!r}")
