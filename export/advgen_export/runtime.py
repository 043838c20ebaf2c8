"""Sample from an exported generator with onnxruntime and numpy only (pandas for tables); never torch.

>>> from advgen_export.runtime import load
>>> model = load("model.onnx")                       # refuses a model and manifest that do not belong together
>>> df = model.sample(1000, condition="category=r2l", seed=0)   # a DataFrame for tables
>>> imgs = model.sample(16, seed=0)                               # an array for images and curves

Sampling goes in chunks of ``advgen.sampling.CHUNK_ROWS`` rows: each chunk draws its latents and
its classes (among those the condition selects, in proportion to how often each occurred in
training) from two numpy generators seeded from ``(seed, chunk index)``. So one seed gives the same
latents whatever the condition, a sample of m rows is the first m rows of a larger one, and
``write_samples`` writes any number of rows holding one chunk in memory. The graph already
decodes (inverse scaling, argmax, rounding); the runtime only maps category indices to their
vocabularies and assembles the columns the manifest lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from advgen.errors import AdvgenError
from advgen.sampling import check_memory, chunk_seed, chunk_spans, random_seed
from advgen.threads import available_cores
from advgen.writers import SampleWriter, check_output_size
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
from advgen_export.onnx_guard import RUN_SECONDS, run_bounded, session_from_bytes
from advgen_export.writers import GeneratedArrayWriter, GeneratedTableWriter, PngFolderWriter, png_name

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
        self.path = Path(model_path)
        self.manifest_path, self.manifest = open_manifest(self.path, manifest)
        if "evasion" in self.manifest:
            raise ModelError(
                f"{self.path} is an evasion model (it disguises attack rows, it does not sample): "
                f"use `advgen-runtime disguise {self.path.name} --attacks ROWS.csv -o OUT.csv`"
            )
        self.session = open_session(self.path, self.manifest, threads=threads, expect_sha256=expect_sha256)
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
        """The latent ``z [n, z_dim]`` and condition indices ``[n]`` (None when unconditional), drawn
        chunk by chunk as :meth:`iter_generated` draws them."""
        n = _check_n(n)
        plan = self._plan(condition, seed)
        self._check_in_memory(n)
        zs, conds = zip(*(self._draw_chunk(plan, index, stop - start) for index, start, stop in chunk_spans(n)))
        return np.concatenate(zs), (np.concatenate(conds) if conds[0] is not None else None)

    def _plan(self, condition: str | Mapping[str, Any] | None, seed: int | None) -> _Plan:
        classes = select_classes(self.conditions, condition)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED):
            raise ModelError(f"seed must be an integer in [0, 2**63), got {seed!r}")
        probs = class_probabilities(self.conditions, classes) if classes is not None else None
        return _Plan(int(seed) if seed is not None else random_seed(), classes, probs)

    def _draw_chunk(self, plan: _Plan, index: int, rows: int) -> tuple[np.ndarray, np.ndarray | None]:
        # latents and classes from separate streams of the chunk, each drawn element by element: the
        # first rows of a chunk are the same whatever its length (see advgen.sampling)
        z_rng = np.random.default_rng(chunk_seed(plan.seed, index, 0))
        z = z_rng.standard_normal((rows, self.z_dim), dtype=np.float32)
        if plan.classes is None:
            return z, None
        c_rng = np.random.default_rng(chunk_seed(plan.seed, index, 1))
        return z, c_rng.choice(plan.classes, size=rows, p=plan.probs).astype(np.int64)

    def run(self, z: np.ndarray, cond: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The graph on given inputs, in batches of ``chunk_rows`` so that onnxruntime's memory stays bounded."""
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
            try:
                produced = run_bounded(self.session, self.output_names, feeds, RUN_SECONDS,
                                       f"{self.path.name} on {len(feeds['z']):,} rows")
            except ModelError as exc:  # stopped at its deadline: the model's fault, not the request's
                raise ModelOutputError(str(exc)) from None
            for name, value in zip(self.output_names, produced):
                if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
                    raise ModelOutputError(
                        f"the model produced NaN or infinite values in its output {name!r}: it is broken (an export "
                        "of a run whose training diverged, or an edited graph)"
                    )
                parts[name].append(value)
        return {name: np.concatenate(chunks) if len(chunks) > 1 else chunks[0] for name, chunks in parts.items()}

    def iter_generated(
        self, n: int, condition: str | Mapping[str, Any] | None = None, seed: int | None = None
    ) -> Iterator[Generated]:
        """``n`` samples' graph outputs, one chunk of :data:`advgen.sampling.CHUNK_ROWS` at a time:
        chunk ``k`` depends only on ``(seed, k)``, so a sample of ``m`` rows is the first ``m`` rows
        of a larger one. Arguments are checked before the first chunk is asked for."""
        n = _check_n(n)
        plan = self._plan(condition, seed)
        return self._chunks(n, plan)

    def _chunks(self, n: int, plan: _Plan) -> Iterator[Generated]:
        for index, start, stop in chunk_spans(n):
            z, cond = self._draw_chunk(plan, index, stop - start)
            yield Generated(self.run(z, cond), cond, self._labels(cond))

    def _labels(self, cond: np.ndarray | None) -> list[str] | None:
        if cond is None:
            return None
        names = np.asarray(self.conditions["classes"], dtype=object)
        return [str(v) for v in names[cond]]

    def generate(
        self, n: int, condition: str | Mapping[str, Any] | None = None, seed: int | None = None
    ) -> Generated:
        """All of :meth:`iter_generated` in memory (refused when it would not fit)."""
        chunks = self.iter_generated(n, condition, seed)
        self._check_in_memory(n)
        parts = list(chunks)
        if len(parts) == 1:
            return parts[0]
        outputs = {name: np.concatenate([p.outputs[name] for p in parts]) for name in self.output_names}
        cond = np.concatenate([p.cond for p in parts]) if parts[0].cond is not None else None
        labels = [label for p in parts for label in p.labels] if parts[0].labels is not None else None
        return Generated(outputs, cond, labels)

    def _check_in_memory(self, n: int) -> None:
        # latents plus every output, and the table assembled from them
        per_sample = 4 * self.z_dim + sum(_nbytes(o) for o in self.manifest["outputs"])
        if self.kind == "table":
            per_sample += 8 * len(self.manifest["sample"]["columns"])
        try:
            check_memory(
                n * per_sample, f"{n:,} samples in memory",
                "write them to a file instead (advgen-runtime sample -o FILE, or write_samples), which streams",
            )
        except AdvgenError as exc:
            raise ModelError(str(exc)) from None

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

    def open_writer(self, path: str | Path, n: int) -> SampleWriter:
        """A writer of ``n`` samples that takes :class:`Generated` chunks: tables to .csv/.parquet, arrays
        to .npz (every output, plus ``labels``)/.npy/.csv (the primary output, plus a label column),
        images also to a folder of PNGs. The file appears only once all ``n`` came."""
        out = Path(path)
        try:
            if self.kind == "table":
                integers = self.manifest["sample"].get("integer_columns") or ()
                return GeneratedTableWriter(out, n, self.to_table, integer_columns=integers)
            primary = self.manifest["sample"]["output"]
            if out.suffix == "" or out.is_dir():
                if self.kind != "image":
                    raise ModelError(f"only image models write PNG folders; write {self.kind} samples to .npz or .csv")
                desc = next(o for o in self.manifest["outputs"] if o["name"] == primary)
                layout = self.manifest["sample"].get("layout", desc.get("layout", "CHW"))
                value_range = self.manifest["sample"].get("range", desc.get("range", [0.0, 1.0]))
                return PngFolderWriter(out, n, primary, layout, value_range)
            classes = self.conditions["classes"] if self.conditions else None
            return GeneratedArrayWriter(out, n, primary, classes)
        except AdvgenError as exc:  # the runtime reports its own error type
            raise ModelError(str(exc)) from None

    def bytes_per_sample(self, path: str | Path) -> int:
        """About how many bytes one sample takes in the file ``path`` names (its suffix picks the format)."""
        out = Path(path)
        suffix = out.suffix.lower()
        if self.kind == "table":
            return len(self.manifest["sample"]["columns"]) * (12 if suffix == ".csv" else 8)
        primary = next(o for o in self.manifest["outputs"] if o["name"] == self.manifest["sample"]["output"])
        label = max((len(str(c)) for c in self.conditions["classes"]), default=0) if self.conditions else 0
        if suffix == "" or out.is_dir():
            return max(4096, 2 * _nbytes(primary))  # a PNG file each: at least one block of the file system
        if suffix == ".csv":
            return 13 * int(np.prod(primary.get("shape") or [1])) + label + 1
        if suffix == ".npy":
            return _nbytes(primary)
        others = sum(_nbytes(o) for o in self.manifest["outputs"] if o is not primary) + 4 * label
        return _nbytes(primary) + 2 * others  # the arrays after the first are spooled, then copied in

    def write_samples(
        self,
        path: str | Path,
        n: int,
        condition: str | Mapping[str, Any] | None = None,
        seed: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Path:
        """Draw ``n`` samples and write them to ``path`` one chunk at a time, so that memory does not
        grow with ``n``; the rows equal :meth:`sample`'s for the same arguments. A file that would not
        fit on its disk is refused before anything is drawn; a failure leaves an earlier file untouched."""
        out = Path(path)
        chunks = self.iter_generated(n, condition, seed)
        try:
            check_output_size(out, n * self.bytes_per_sample(out), n)
        except AdvgenError as exc:
            raise ModelError(str(exc)) from None
        with self.open_writer(out, n) as writer:
            for generated in chunks:
                _write(writer, generated)
                if progress is not None:
                    progress(generated.n)
        return out

    def save(self, generated: Generated, path: str | Path) -> list[Path]:
        """Write samples held in memory (see :meth:`open_writer` for the formats); returns the files."""
        with self.open_writer(path, generated.n) as writer:
            _write(writer, generated)
        if isinstance(writer, PngFolderWriter):
            labels = generated.labels or [None] * generated.n
            return [writer.path / png_name(i, label) for i, label in enumerate(labels)]
        return [Path(path)]


def load(model_path: str | Path, manifest: str | Path | None = None, **kwargs: Any) -> Any:
    """Load ``model.onnx`` with its manifest (``model.onnx.json`` unless ``manifest`` is given);
    ``expect_sha256=HEX`` also pins the model to a hash you got from its publisher.

    A generator gives a :class:`GeneratorModel`; a model exported from an ``advgen evade`` run an
    :class:`advgen_export.evasion.EvasionModel`, which disguises attack rows."""
    path = Path(model_path)
    _, parsed = open_manifest(path, manifest)
    if "evasion" in parsed:
        from advgen_export.evasion import EvasionModel

        return EvasionModel(model_path, manifest, **kwargs)
    return GeneratorModel(model_path, manifest, **kwargs)


def open_manifest(model_path: Path, manifest: str | Path | None = None) -> tuple[Path, dict[str, Any]]:
    """The manifest of ``model_path`` (``MODEL.json`` unless ``manifest`` names it), schema-checked."""
    if not model_path.is_file():
        raise ModelError(f"model not found: {model_path}")
    where = Path(manifest) if manifest is not None else manifest_path(model_path)
    return where, read_manifest(where)


def open_session(model_path: Path, manifest: Mapping[str, Any], *, threads: int = 0, expect_sha256: str | None = None) -> Any:
    """An onnxruntime session of ``model_path``, built from the very bytes checked against ``manifest``
    (and ``expect_sha256``), refused unless the model records the manifest's digest and its graph has
    the inputs and outputs the manifest describes."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelError("the advgen runtime needs onnxruntime: pip install onnxruntime") from None
    cores = available_cores()
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 0 <= threads <= cores:
        # onnxruntime starts every thread asked for: 9999 of them on 2 cores spin for minutes on 5 rows
        raise ModelError(f"threads must be in 0..{cores} (the CPU cores this process may use; 0: onnxruntime's default), got {threads!r}")
    data = verified_model_bytes(model_path, manifest, expect_sha256)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = int(threads)
    session = session_from_bytes(data, opts, str(model_path))
    check_binding(manifest, session.get_modelmeta().custom_metadata_map, model_path)
    check_graph(manifest, session, model_path)
    return session


class ModelOutputError(ModelError):
    """The model itself produced what no sample may hold (NaN, infinities): a fault of the model, not of
    the request (``serve`` answers 500 with the message, not 400)."""


@dataclass
class _Plan:
    """What every chunk of one request draws from: the seed, and the classes with their probabilities."""

    seed: int
    classes: np.ndarray | None
    probs: np.ndarray | None


def _nbytes(desc: Mapping[str, Any]) -> int:
    """Bytes of one sample of an output the manifest describes."""
    return int(np.prod(desc.get("shape") or [1])) * np.dtype(desc.get("dtype", "float32")).itemsize


def _write(writer: SampleWriter, generated: Generated) -> None:
    try:
        writer.write(generated)
    except AdvgenError as exc:
        raise ModelError(str(exc)) from None


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
