"""The core's own hook implementations: built-in losses and detectors, registered like any plugin's."""

from __future__ import annotations

from typing import Any, Callable

from advgen.hookspecs import hookimpl


@hookimpl
def advgen_register_losses(register: Callable[[str, Any], None]) -> None:
    from advgen.losses import BUILTIN_LOSSES  # torch: imported when losses are asked for, not at load

    for name, cls in BUILTIN_LOSSES.items():
        register(name, cls)


@hookimpl
def advgen_register_detectors(register: Callable[[str, Callable[[int], Any]], None]) -> None:
    from advgen.detectors import BUILTIN_DETECTORS

    for name, factory in BUILTIN_DETECTORS.items():
        register(name, factory)
