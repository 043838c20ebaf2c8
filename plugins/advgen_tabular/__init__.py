"""advgen's tabular domain plugin: rows of network-traffic feature tables (NSL-KDD by default).

Registered under the ``advgen`` entry-point group like any third-party plugin. The pieces:
:mod:`~advgen_tabular.transform` (reversible mixed-type encoding and its tensor-math decoder),
:mod:`~advgen_tabular.nets` (conditional generator and discriminator),
:mod:`~advgen_tabular.validators` (schema and cross-column rules fitted from the training rows) and
:mod:`~advgen_tabular.domain` (the :class:`~advgen.domain.Domain` that ties them together).
"""

from __future__ import annotations

from typing import Callable

from advgen.hookspecs import hookimpl
from advgen_tabular.domain import TabularDomain

__version__ = TabularDomain.version

__all__ = ["TabularDomain", "__version__"]


@hookimpl
def advgen_register_domains(register: Callable[[type], None]) -> None:
    register(TabularDomain)
