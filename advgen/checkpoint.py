"""Checkpoints: written atomically, loaded without unpickling arbitrary objects.

A checkpoint is a dict of tensors, state dicts and plain values (config and spec as JSON text), saved
with ``torch.save`` and read back with ``torch.load(weights_only=True)``, which refuses anything but
tensors and primitive containers. A truncated or tampered file gives one clear error line.
"""

from __future__ import annotations

import json
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import torch

from advgen.errors import CheckpointError
from advgen.io import atomic_path

FORMAT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
REQUIRED_KEYS = ("format", "step", "config", "spec", "plugin", "generator", "discriminator")


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` through a temporary file and an atomic rename.

    A kill at any moment leaves the previous checkpoint whole; a full disk or read-only folder raises
    :class:`advgen.io.WriteError` and a failure inside torch a :class:`CheckpointError`, each one line.
    """
    payload = dict(payload, format=FORMAT_VERSION)
    for key in ("config", "spec"):
        if not isinstance(payload[key], str):
            payload[key] = json.dumps(payload[key])
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        writer = _WriteErrorKeeper(fh)
        try:
            torch.save(payload, writer)
        except RuntimeError as exc:
            if writer.error is not None:
                # torch reports a failed write as "unexpected pos ..."; the OSError says what happened
                # (a full disk), and atomic_path turns it into one line
                raise writer.error from None
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"cannot write checkpoint {path}: {first[:200]}") from None


class _WriteErrorKeeper:
    """A file for ``torch.save`` that remembers the OSError of a failed write, which torch swallows."""

    def __init__(self, fh: BinaryIO):
        self.fh = fh
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.fh.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.fh.flush()


def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory or a checkpoint file to the checkpoint file, with a clear error if absent."""
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT_NAME
    if not p.is_file():
        raise CheckpointError(f"no checkpoint at {p} (expected a run directory holding {CHECKPOINT_NAME})")
    return p


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely; config and spec come back as dicts."""
    p = resolve_checkpoint(path)
    try:
        with warnings.catch_warnings():
            # torch warns about the pickle protocol of a file it then refuses: the one error line says it all
            warnings.simplefilter("ignore")
            payload = torch.load(p, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError, OSError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        if isinstance(exc, pickle.UnpicklingError) and lines and lines[0].lower().startswith("weights only load failed"):
            # not torch's text: it advises loading with weights_only=False, which would run the file's code
            why = next((line for line in lines[1:] if not line.startswith(("Please file", "Check the doc"))), "")
            if "global" in why.lower():
                raise CheckpointError(
                    f"checkpoint {p} is unsafe: it names code that unpickling would run ({why[:160]}), "
                    "so advgen does not load it"
                ) from None
            raise CheckpointError(
                f"checkpoint {p} is corrupted or not a checkpoint: {why[:160] or 'not a torch file'}"
            ) from None
        first = lines[0] if lines else type(exc).__name__
        raise CheckpointError(f"checkpoint {p} is corrupted, truncated or unsafe: {first[:200]}") from None
    if not isinstance(payload, dict) or any(k not in payload for k in REQUIRED_KEYS):
        raise CheckpointError(f"checkpoint {p} is not an advgen checkpoint (missing fields)")
    if payload["format"] != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {p} has format {payload['format']}, expected {FORMAT_VERSION}")
    try:
        payload["config"] = json.loads(payload["config"])
        payload["spec"] = json.loads(payload["spec"])
    except (TypeError, json.JSONDecodeError):
        raise CheckpointError(f"checkpoint {p} holds an unreadable config or spec") from None
    return payload
