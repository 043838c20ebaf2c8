"""advgen's curves domain plugin: 1D curves of fixed length (see :mod:`advgen_curves.domain`).

Registered under the ``advgen`` entry-point group like any third-party plugin. The domain is
registered by reference, so that listing plugins and ``advgen --help`` do not import torch; the
module is imported the first time the domain is used.
"""

from __future__ import annotations

from typing import Any, Callable

from advgen.hookspecs import DomainRef, hookimpl

__version__ = "0.1.0"
_EXPORTS = ("A_RANGE", "CurvesDomain", "fit_quadratic", "quadratic_family", "read_curves_csv", "roughness")


@hookimpl
def advgen_register_domains(register: Callable[[Any], None]) -> None:
    register(DomainRef("curves", "advgen_curves.domain", "CurvesDomain"))


def __getattr__(name: str) -> Any:  # the domain's names, imported on first use
    if name in _EXPORTS:
        from advgen_curves import domain

        return getattr(domain, name)
    raise AttributeError(f"module 'advgen_curves' has no attribute {name!r}")
