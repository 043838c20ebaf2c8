"""ONNX export of advgen generators, and a runtime that samples from them without torch.

Two halves with different dependencies:

- the torch side, :mod:`advgen_export.onnx_export` (``export(run, "model.onnx")``),
  :mod:`advgen_export.evasion_export` (the generator of an ``advgen evade`` run) and
  :mod:`advgen_export.torch_cli` (the ``advgen export`` command), needs advgen and torch;
- the runtime side, :mod:`advgen_export.runtime`, :mod:`advgen_export.evasion` (disguising attack rows),
  :mod:`advgen_export.serve` and :mod:`advgen_export.cli` (the ``advgen-runtime`` command), needs only
  onnxruntime and numpy, plus pandas for tables, so a model can be served from a small container
  without torch.

This module imports neither half, so ``import advgen_export.runtime`` never pulls torch in.
"""

from __future__ import annotations

__all__ = ["MANIFEST_FORMAT", "MANIFEST_VERSION"]

MANIFEST_FORMAT = "advgen-onnx-manifest"
MANIFEST_VERSION = 2
