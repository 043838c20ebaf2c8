"""Checkpoints: written atomically, loaded without unpickling arbitrary objects.

A checkpoint is a dict of tensors, state dicts and plain values (config and spec as JSON text), saved
with ``torch.save`` and read back with ``torch.load(weights_only=True)``, which refuses anything but
tensors and primitive containers. A truncated or tampered file gives one clear error line.

Every checkpoint carries a SHA-256 ``digest`` of its contents (:func:`payload_digest`): each tensor's
name, dtype, shape and raw bytes, and every plain value (the config and spec JSON text, step, names,
optimizer settings), walked in a fixed order. :func:`load_checkpoint` recomputes it and refuses a file
whose bytes changed after it was written (a flipped bit on disk, a bad copy), which would otherwise
load and make a generator that silently produces garbage. It is a check of integrity, not of origin:
whoever can write the file can also write a matching digest, which is why loading never runs code.

The format stays 1: the digest is an extra key, which advgen versions before it ignore. A checkpoint
written by those versions has no digest and loads as before, unchecked.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import struct
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
DIGEST_KEY = "digest"
_DIGEST_TAG = b"advgen checkpoint digest 1"
# values whose repr is their whole content, the same in every process
_PLAIN = (str, bytes, bool, int, float, complex, type(None), torch.dtype, torch.device)


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` through a temporary file and an atomic rename.

    A kill at any moment leaves the previous checkpoint whole; a full disk or read-only folder raises
    :class:`advgen.io.WriteError` and a failure inside torch a :class:`CheckpointError`, each one line.
    """
    payload = dict(payload, format=FORMAT_VERSION)
    payload.pop(DIGEST_KEY, None)
    for key in ("config", "spec"):
        if not isinstance(payload[key], str):
            payload[key] = json.dumps(payload[key])
    payload[DIGEST_KEY] = payload_digest(payload)
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


def payload_digest(payload: dict[str, Any]) -> str:
    """SHA-256 (hex) of a checkpoint payload, its ``digest`` key left out.

    Tensors count by their path in the payload (``opt_g/'state'/0/'exp_avg'``), dtype, shape and raw
    bytes, wherever they sit in dicts, lists and tuples; plain values by path, type and repr. Dict
    items are taken in the order of their keys' reprs, so the digest does not depend on insertion
    order. It costs about 10 ms for the 7 MB of tensors of a tabular checkpoint on a CPU core.
    """
    h = hashlib.sha256(_DIGEST_TAG)
    _feed(h, "", {k: v for k, v in payload.items() if k != DIGEST_KEY})
    return h.hexdigest()


def _feed(h: Any, path: str, value: Any) -> None:
    def field(text: str) -> None:  # length-prefixed, so that no two walks give the same bytes
        data = text.encode("utf-8", "surrogatepass")
        h.update(struct.pack("<Q", len(data)) + data)

    if torch.is_tensor(value):
        t = value.detach()
        if t.layout != torch.strided:
            t = t.to_dense()
        t = t.cpu().resolve_conj().resolve_neg().contiguous()
        field(f"tensor {path} {t.dtype} {tuple(t.shape)}")
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, dict):
        field(f"dict {path} {len(value)}")
        for key in sorted(value, key=repr):
            _feed(h, f"{path}/{key!r}", value[key])
    elif isinstance(value, (list, tuple)):  # torch.Size too
        field(f"seq {path} {len(value)}")
        for i, item in enumerate(value):
            _feed(h, f"{path}/{i}", item)
    elif isinstance(value, _PLAIN):
        field(f"{type(value).__name__} {path} {value!r}")
    else:  # nothing else passes weights_only; a repr could hold a memory address, so only the type counts
        field(f"{type(value).__module__}.{type(value).__qualname__} {path}")


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
    if isinstance(payload, dict) and DIGEST_KEY in payload:  # absent in checkpoints of earlier versions
        digest = payload.pop(DIGEST_KEY)
        if not isinstance(digest, str) or payload_digest(payload) != digest:
            raise CheckpointError(
                f"checkpoint {p} is corrupted or was tampered with (its contents do not match their digest)"
            )
    if not isinstance(payload, dict) or any(k not in payload for k in REQUIRED_KEYS):
        raise CheckpointError(f"checkpoint {p} is not an advgen checkpoint (missing fields)")
    if payload["format"] != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {p} has format {payload['format']}, expected {FORMAT_VERSION}")
    try:
        payload["config"] = json.loads(payload["config"])
        payload["spec"] = json.loads(payload["spec"])
    except (TypeError, json.JSONDecodeError):
        raise CheckpointError(f"checkpoint {p} holds an unreadable config or spec") from None
    if not isinstance(payload["config"], dict) or not isinstance(payload["spec"], dict):
        raise CheckpointError(f"checkpoint {p} holds a config or spec that is not a JSON object")
    step = payload["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"checkpoint {p} holds an invalid step {str(step)[:40]!r}; expected a whole number >= 0")
    return payload
