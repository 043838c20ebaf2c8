"""The sidecar manifest of an exported model: where it lives, how it is checked, what conditions mean.

The manifest is ``<model file>.json`` (``model.onnx`` -> ``model.onnx.json``): appending to the full
file name keeps the pair together whatever the model is called and never collides with another
model's manifest in the same folder. It holds what the ONNX graph cannot: the plugin that made the
model, the data spec, latent size, output descriptions, the condition vocabulary with training counts
and, for every ``key=value`` condition a user may pass, the class indices it selects (computed by the
domain's own ``condition_classes`` at export time, so the runtime needs no domain code), plus the
model's sha256.

Shared by the exporter and the runtime, so it imports neither torch nor advgen.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from advgen_export import MANIFEST_FORMAT, MANIFEST_VERSION


class ModelError(Exception):
    """A problem with a model, its manifest or a sampling request, reported as one line."""


def manifest_path(model_path: str | Path) -> Path:
    """The manifest that belongs to ``model_path``."""
    p = Path(model_path)
    return p.with_name(p.name + ".json")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read and sanity-check a manifest; every failure is one clear :class:`ModelError` line."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"manifest not found: {p} (it is written next to the model by `advgen export`)")
    try:
        manifest = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"manifest {p} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ModelError(f"{p} is not an advgen ONNX manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > MANIFEST_VERSION:
        raise ModelError(
            f"manifest {p} has format version {version!r}; this runtime reads up to {MANIFEST_VERSION}"
        )
    for key in ("model", "latent", "outputs", "sample"):
        if key not in manifest:
            raise ModelError(f"manifest {p} has no {key!r} section")
    return manifest


def verified_model_bytes(model_path: str | Path, manifest: Mapping[str, Any]) -> bytes:
    """The model file's bytes, refused unless their sha256 is the one the manifest records.

    The runtime builds its session from these very bytes, so the file cannot change between the check
    and the load.
    """
    p = Path(model_path)
    if not p.is_file():
        raise ModelError(f"model not found: {p}")
    data = p.read_bytes()
    expected = str(manifest["model"].get("sha256", ""))
    actual = sha256_bytes(data)
    if actual != expected:
        raise ModelError(
            f"model {p} does not match its manifest: sha256 {actual[:16]}... but the manifest records "
            f"{expected[:16] or 'none'}...; the model or the manifest was modified or belongs to another export"
        )
    return data


# --- conditions -------------------------------------------------------------------------------------


def parse_condition(condition: str | Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """``"key=value"``, ``{"key": "value", ...}`` or None as a list of (key, value) pairs."""
    if condition is None:
        return []
    if isinstance(condition, str):
        text = condition.strip()
        if not text:
            return []
        pairs = []
        for part in text.split(","):
            key, sep, value = part.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise ModelError(f"condition {condition!r} must look like KEY=VALUE (e.g. label=normal)")
            pairs.append((key.strip(), value.strip()))
        return pairs
    if isinstance(condition, Mapping):
        pairs = []
        for key, value in condition.items():
            if not isinstance(key, str) or not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ModelError(f"condition {dict(condition)!r} must map names to values (e.g. {{\"label\": \"normal\"}})")
            pairs.append((key, str(value)))
        return pairs
    raise ModelError(f"condition must be KEY=VALUE, a mapping or None, not {type(condition).__name__}")


def select_classes(conditions: Mapping[str, Any] | None, condition: Any) -> np.ndarray | None:
    """Class indices a condition selects, with the same rules and messages as
    :meth:`advgen.domain.Domain.condition_classes`; None for an unconditional draw.

    Several pairs (``{"category": "r2l", "label": "imap"}``) select the classes all of them allow.
    A conditional model with no condition draws from every class.
    """
    pairs = parse_condition(condition)
    if not conditions:
        if pairs:
            raise ModelError("this model is not conditional; a condition cannot be used")
        return None
    n_classes = len(conditions["classes"])
    if not pairs:
        return np.arange(n_classes)
    selectors: Mapping[str, Mapping[str, list[int]]] = conditions.get("selectors") or {
        conditions["name"]: {str(c): [i] for i, c in enumerate(conditions["classes"])}
    }
    chosen: set[int] | None = None
    for key, value in pairs:
        if key not in selectors:
            others = [k for k in selectors if k != conditions["name"]]
            also = f" (also accepted: {', '.join(others)})" if others else ""
            raise ModelError(
                f"unknown condition {key!r}; this model is conditioned on {conditions['name']!r}{also}"
            )
        values = selectors[key]
        if value not in values:
            known = list(values)
            shown = ", ".join(known[:30]) + (" ..." if len(known) > 30 else "")
            raise ModelError(f"{key}={value} never occurred in training; known values: {shown}")
        picked = {int(i) for i in values[value]}
        chosen = picked if chosen is None else chosen & picked
    if not chosen:
        text = ", ".join(f"{k}={v}" for k, v in pairs)
        raise ModelError(f"no training class satisfies every condition {text}")
    return np.array(sorted(chosen), dtype=np.int64)


def class_probabilities(conditions: Mapping[str, Any], classes: np.ndarray) -> np.ndarray:
    """Training frequencies of ``classes``, renormalised; uniform when they never occurred."""
    counts = np.asarray(conditions.get("counts") or [1] * len(conditions["classes"]), dtype=np.float64)
    weights = counts[classes]
    total = weights.sum()
    if not np.isfinite(total) or total <= 0:
        return np.full(len(classes), 1.0 / len(classes))
    return weights / total
