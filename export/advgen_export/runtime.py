"""Sample from an exported generator with onnxruntime and numpy only (pandas for tables); never torch.

>>> from advgen_export.runtime import load
>>> model = load("model.onnx")                       # refuses a model and manifest that do not belong together
>>> df = model.sample(1000, condition="category=r2l", seed=0)   # a DataFrame for tables
>>> imgs = model.sample(16, seed=0)                               # an array for images and curves

Sampling draws the latent from a seeded numpy Generator, then the condition of each sample among
the classes the condition selects, in proportion to how often each class occurred in training. The
latent is drawn first, so one seed gives the same latents whatever the condition. The graph already
decodes (inverse scaling, argmax, rounding); the runtime only maps category indices to their
vocabularies and assembles the columns the manifest lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from advgen_export.manifest import (
    ModelError,
    check_binding,
    check_graph,
    class_probabilities,
    manifest_path,
    read_manifest,
    select_classes,
    verified_model_bytes,
)
from advgen_export.writers import write_arrays, write_png_folder, write_table

INT_KINDS = ("count", "flag")
MAX_SEED = 2**63 - 1


@dataclass
class Generated:
    """Raw graph outputs for ``n`` samples and the class index (and name) each was conditioned on."""

    outputs: dict[str, np.ndarray]
    cond: np.ndarray | None
    labels: list[str] | None

    @property
    def n(self) -> int:
        return len(next(iter(self.outputs.values())))


class GeneratorModel:
    """An exported generator with its manifest, ready to sample from (thread-safe)."""

    def __init__(
        self,
        model_path: str | Path,
        manifest: str | Path | None = None,
        *,
        threads: int = 0,
        chunk_rows: int = 4096,
        expect_sha256: str | None = None,
    ) -> None:
        """Load ``model_path`` and its manifest, refusing any pair that does not belong together.

        The manifest must pass its schema, the model's sha256 must be the one it records (and
        ``expect_sha256``, a hash you got from the model's publisher, when given), the manifest must
        hash to the digest the model records, and the graph's inputs and outputs must be the ones
        the manifest describes (see :mod:`advgen_export.manifest`).
        """
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError("the advgen runtime needs onnxruntime: pip install onnxruntime") from None
        self.path = Path(model_path)
        if not self.path.is_file():
            raise ModelError(f"model not found: {self.path}")
        self.manifest_path = Path(manifest) if manifest is not None else manifest_path(self.path)
        self.manifest = read_manifest(self.manifest_path)
        data = verified_model_bytes(self.path, self.manifest, expect_sha256)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unloadable graphs
            raise ModelError(f"onnxruntime cannot load {self.path}: {str(exc).splitlines()[0]}") from None
        check_binding(self.manifest, self.session.get_modelmeta().custom_metadata_map, self.path)
        check_graph(self.manifest, self.session, self.path)
        self.chunk_rows = max(1, int(chunk_rows))
        self.output_names = [o["name"] for o in self.manifest["outputs"]]

    # --- what the model is -----------------------------------------------------------------------

    @property
    def kind(self) -> str:
        return str(self.manifest["sample"]["kind"])

    @property
    def z_dim(self) -> int:
        return int(self.manifest["latent"]["size"])

    @property
    def conditions(self) -> dict[str, Any] | None:
        return self.manifest.get("conditions")

    def info(self) -> dict[str, Any]:
        """A JSON-ready description: plugin, sample kind, latent, conditions a user may pass, outputs."""
        m = self.manifest
        cond = self.conditions
        info: dict[str, Any] = {
            "model": str(self.path),
            "sha256": m["model"]["sha256"],
            "opset": m["model"].get("opset"),
            "created": m.get("created"),
            "plugin": m.get("plugin"),
            "kind": self.kind,
            "z_dim": self.z_dim,
            "conditional": cond is not None,
            "outputs": m["outputs"],
        }
        if cond is not None:
            info["conditions"] = {
                "name": cond["name"],
                "classes": dict(zip(cond["classes"], cond["counts"])),
                "accepted": {key: sorted(values) for key, values in (cond.get("selectors") or {}).items()},
            }
        if self.kind == "table":
            info["columns"] = m["sample"]["columns"]
        return info

    # --- sampling --------------------------------------------------------------------------------

    def draw_inputs(
        self, n: int, condition: str | Mapping[str, Any] | None = None, seed: int | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The latent ``z [n, z_dim]`` and condition indices ``[n]`` (None when unconditional)."""
        n = _check_n(n)
        classes = select_classes(self.conditions, condition)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED):
            raise ModelError(f"seed must be an integer in [0, 2**63), got {seed!r}")
        rng = np.random.default_rng(seed)
        z = rng.standard_normal((n, self.z_dim), dtype=np.float32)
        if classes is None:
            return z, None
        p = class_probabilities(self.conditions, classes)
        cond = rng.choice(classes, size=n, p=p).astype(np.int64)
        return z, cond

    def run(self, z: np.ndarray, cond: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The graph on given inputs, in chunks of ``chunk_rows`` so memory stays bounded."""
        z = np.ascontiguousarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ModelError(f"z must have shape [n, {self.z_dim}], got {list(z.shape)}")
        if (cond is None) != (self.conditions is None):
            raise ModelError("cond must be given exactly when the model is conditional")
        parts: dict[str, list[np.ndarray]] = {name: [] for name in self.output_names}
        for start in range(0, len(z), self.chunk_rows):
            feeds = {"z": z[start : start + self.chunk_rows]}
            if cond is not None:
                feeds["cond"] = np.ascontiguousarray(cond[start : start + self.chunk_rows], dtype=np.int64)
            for name, value in zip(self.output_names, self.session.run(self.output_names, feeds)):
                parts[name].append(value)
        return {name: np.concatenate(chunks) if len(chunks) > 1 else chunks[0] for name, chunks in parts.items()}

    def generate(
        self, n: int, condition: str | Mapping[str, Any] | None = None, seed: int | None = None
    ) -> Generated:
        z, cond = self.draw_inputs(n, condition, seed)
        labels = None
        if cond is not None:
            names = np.asarray(self.conditions["classes"], dtype=object)
            labels = [str(v) for v in names[cond]]
        return Generated(self.run(z, cond), cond, labels)

    def sample(self, n: int, condition: str | Mapping[str, Any] | None = None, seed: int | None = None) -> Any:
        """``n`` final samples: a DataFrame for tables, the primary output array otherwise."""
        return self.to_samples(self.generate(n, condition, seed))

    def to_samples(self, generated: Generated) -> Any:
        if self.kind == "table":
            return self.to_table(generated)
        return generated.outputs[self.manifest["sample"]["output"]]

    def to_table(self, generated: Generated) -> Any:
        """Assemble the DataFrame: generated columns, the condition column, derived columns, constants."""
        try:
            import pandas as pd
        except ImportError:
            raise ModelError("tables need pandas: pip install pandas") from None
        section = self.manifest["sample"]
        n = generated.n
        columns: dict[str, Any] = {}
        for desc in self.manifest["outputs"]:
            names = desc.get("columns")
            if not names:
                continue
            values = generated.outputs[desc["name"]].reshape(n, len(names))
            kinds = desc.get("kinds") or [None] * len(names)
            vocabs = desc.get("vocabularies") or [None] * len(names)
            dtypes = desc.get("dtypes") or [None] * len(names)
            decimals = desc.get("decimals") or [None] * len(names)
            for j, name in enumerate(names):
                columns[name] = _column(name, values[:, j], kinds[j], vocabs[j], dtypes[j], decimals[j])
        if section.get("condition_column"):
            if generated.labels is None:
                raise ModelError("this table model is conditional but no conditions were generated")
            columns[section["condition_column"]] = np.asarray(generated.labels, dtype=object)
        for name, rule in (section.get("derived_columns") or {}).items():
            # values the map lacks are kept as they are unless the rule names a default
            mapping, source = rule["map"], columns[rule["from"]]
            if "default" in rule:
                columns[name] = np.asarray([mapping.get(str(v), rule["default"]) for v in source], dtype=object)
            else:
                columns[name] = np.asarray([mapping.get(str(v), str(v)) for v in source], dtype=object)
        for name, value in (section.get("constants") or {}).items():
            columns[name] = np.full(n, value)
        return pd.DataFrame({name: columns[name] for name in section["columns"]})

    # --- files -----------------------------------------------------------------------------------

    def save(self, generated: Generated, path: str | Path) -> list[Path]:
        """Write samples: tables to .csv/.parquet, arrays to .npz/.csv, images also to a PNG folder."""
        out = Path(path)
        if self.kind == "table":
            write_table(self.to_table(generated), out)
            return [out]
        primary = self.manifest["sample"]["output"]
        if out.suffix == "" or out.is_dir():
            if self.kind != "image":
                raise ModelError(f"only image models write PNG folders; write {self.kind} samples to .npz or .csv")
            desc = next(o for o in self.manifest["outputs"] if o["name"] == primary)
            layout = self.manifest["sample"].get("layout", desc.get("layout", "CHW"))
            value_range = self.manifest["sample"].get("range", desc.get("range", [0.0, 1.0]))
            return write_png_folder(generated.outputs[primary], out, layout, value_range, generated.labels)
        write_arrays(generated.outputs, generated.labels, out, primary)
        return [out]


def load(model_path: str | Path, manifest: str | Path | None = None, **kwargs: Any) -> GeneratorModel:
    """Load ``model.onnx`` with its manifest (``model.onnx.json`` unless ``manifest`` is given);
    ``expect_sha256=HEX`` also pins the model to a hash you got from its publisher."""
    return GeneratorModel(model_path, manifest, **kwargs)


def _check_n(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ModelError(f"n must be a positive integer, got {n!r}")
    return int(n)


def _column(
    name: str, values: np.ndarray, kind: str | None, vocab: list[str] | None, dtype: str | None, decimals: int | None
) -> np.ndarray:
    """One table column: category strings from a vocabulary, integers, or float64 rounded to ``decimals``."""
    if vocab is not None:
        idx = values.astype(np.int64)
        outside = idx[(idx < 0) | (idx >= len(vocab))]
        if outside.size:
            raise ModelError(
                f"column {name!r} holds category index {int(outside[0])} outside its {len(vocab)}-value vocabulary"
            )
        return np.asarray([str(v) for v in vocab], dtype=object)[idx]
    integral = dtype.startswith("int") if dtype else (kind in INT_KINDS or np.issubdtype(values.dtype, np.integer))
    if integral:
        return np.rint(values).astype(np.int64) if np.issubdtype(values.dtype, np.floating) else values.astype(np.int64)
    v = values.astype(np.float64)
    return np.round(v, int(decimals)) if decimals is not None else v
