"""Export a trained generator to ONNX, check it, and write it with its manifest.

``export(run, "model.onnx")`` takes the domain's ``export_module`` (the generator followed by its
tensor-math decoding), exports it with a dynamic batch dimension, then refuses to write anything
unless the graph passes ``onnx.checker`` and matches torch on the same latent and condition inputs at
batch sizes other than the one it was traced with (as optimum's ``validate_model_outputs`` does).
The manifest (see :mod:`advgen_export.manifest`) is bound to the model: the model's metadata records
the manifest's digest, the manifest the model's sha256. The exporter checks the pair exactly as the
runtime will load it, then writes the model and its manifest to temporary files and renames both.

The exporter is torch's TorchScript-based one (``dynamo=False``): it needs nothing beyond torch and
onnx, and handles the small MLP/conv generators advgen trains. torch marks it deprecated in favour of
the ``torch.export`` path, which needs ``onnxscript``; switching is one argument once that dependency
is wanted.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import sys
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from advgen.errors import AdvgenError
from advgen.io import atomic_path
from advgen_export import MANIFEST_FORMAT, MANIFEST_VERSION
from advgen_export.manifest import (
    DIGEST_KEY,
    OUTPUT_DTYPES,
    ModelError,
    check_binding,
    check_graph,
    manifest_digest,
    manifest_path,
    sha256_bytes,
    validate_manifest,
)

DEFAULT_OPSET = 17
PARITY_BATCH_SIZES = (1, 3, 257)
TRACE_BATCH_SIZE = 2  # deliberately none of the parity sizes, so parity proves the batch axis is dynamic
DEFAULT_TOLERANCE = 1e-4
# share of a column's values that may land one rounding step apart: in a heavy-tailed count whose
# quantile grid is steep (a 2-step run on 300 rows), float32 noise flipped 0 to 3 of 257 values per
# batch (mean 0.3); a wrong graph (floor for round, a shifted grid) flips a third or more
MAX_ROUNDING_FLIPS = 0.02
UNIT_RANGE_KINDS = ("flag", "rate")  # columns in [0, 1]: a whole unit is their whole range, never a rounding step
SUPPORTED_DTYPES = tuple(OUTPUT_DTYPES)


class ExportError(AdvgenError):
    """The generator could not be exported, or the exported graph disagrees with torch."""


@dataclass
class ParityReport:
    """Largest torch-vs-onnxruntime difference per output over all checked batch sizes."""

    batch_sizes: list[int]
    atol: float
    rtol: float
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    # per output, where its largest difference was (:func:`note_worst`): batch, index, column name (when
    # the output names its columns), torch and onnxruntime values. For the terminal only: not in to_dict,
    # so manifests stay readable by runtimes that do not know the field
    worst: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_sizes": self.batch_sizes,
            "atol": self.atol,
            "rtol": self.rtol,
            "max_abs_diff": self.max_abs_diff,
        }


@dataclass
class ExportResult:
    model_path: Path
    manifest_path: Path
    manifest: dict[str, Any]
    parity: ParityReport | None


# --- the public entry point --------------------------------------------------------------------------


def export(
    run: Any,
    path: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    check: bool = True,
    batch_sizes: Sequence[int] = PARITY_BATCH_SIZES,
    tolerance: float | Mapping[str, float] | None = None,
) -> ExportResult:
    """Export ``run``'s generator to ``path`` (ONNX) and its manifest to ``path + ".json"``.

    ``run`` needs ``domain``, ``spec``, ``generator`` and ``config`` (for ``z_dim``), as returned by
    :func:`advgen.api.load_run` or :func:`advgen.api.train`. With ``check`` (the default) nothing is
    written unless the graph passes ``onnx.checker`` and parity with torch at ``batch_sizes``.
    ``tolerance`` overrides the domain's ``export_tolerance``. Whatever ``check`` says, nothing is
    written unless the model and its manifest pass every check the runtime makes when it loads them.
    """
    import onnx

    if opset < DEFAULT_OPSET:
        raise ExportError(f"opset {opset} is too old; use {DEFAULT_OPSET} or newer")
    domain, spec = run.domain, run.spec
    z_dim = _z_dim(run)
    conditions = spec.get("conditions")
    outputs = _output_descriptions(domain, spec)
    module = _ExportAdapter(domain.export_module(copy.deepcopy(run.generator).cpu(), spec), conditions is not None)
    module.eval()

    model = onnx.load_from_string(_to_onnx(module, z_dim, conditions, outputs, opset))
    stamp(model, {"advgen.domain": domain.name, "advgen.domain_version": str(domain.version), "advgen.z_dim": str(z_dim)},
          f"advgen {domain.name} generator; see the sidecar manifest <model file>.json")
    model_bytes = model.SerializeToString()

    parity = None
    if check:
        check_onnx(model, domain.name)
        atol, rtol = _tolerance(domain, tolerance)
        parity = check_parity(module, model_bytes, outputs, z_dim, conditions, batch_sizes, atol=atol, rtol=rtol)

    target = Path(path)
    manifest, model_bytes = bind_manifest(model, build_manifest(run, target, outputs, opset, parity))
    side = manifest_path(target)
    # both files are written in full before either replaces anything: a full disk while writing the
    # manifest leaves the previous pair as it was, not a new model beside its old manifest
    with atomic_path(target) as model_tmp, atomic_path(side) as side_tmp:
        model_tmp.write_bytes(model_bytes)
        side_tmp.write_text(json.dumps(manifest, indent=2, allow_nan=False) + "\n")
    return ExportResult(target, side, manifest, parity)


# --- tracing -----------------------------------------------------------------------------------------


class _ExportAdapter(nn.Module):
    """Gives every export module the same result type, a tuple of tensors.

    Per the Domain contract an export module takes ``(z, cond)`` when the run is conditional and
    ``(z)`` otherwise.
    """

    def __init__(self, inner: nn.Module, conditional: bool) -> None:
        super().__init__()
        self.inner = inner
        self.conditional = conditional

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        out = self.inner(z, cond) if self.conditional else self.inner(z)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _to_onnx(
    module: nn.Module, z_dim: int, conditions: Mapping[str, Any] | None, outputs: list[dict[str, Any]], opset: int
) -> bytes:
    names = [o["name"] for o in outputs]
    z = torch.randn(TRACE_BATCH_SIZE, z_dim, generator=torch.Generator().manual_seed(0))
    args: tuple[torch.Tensor, ...] = (z,)
    input_names = ["z"]
    if conditions is not None:
        args = (z, torch.zeros(TRACE_BATCH_SIZE, dtype=torch.int64))
        input_names.append("cond")
    with torch.no_grad():
        produced = module(*args)
    if len(produced) != len(outputs):
        raise ExportError(
            f"export_module returns {len(produced)} tensors but export_outputs describes {len(outputs)}"
        )
    for desc, tensor in zip(outputs, produced):
        desc.setdefault("shape", [int(d) for d in tensor.shape[1:]])  # the manifest always states it
    dynamic = {name: {0: "batch"} for name in input_names + names}
    buf = io.BytesIO()
    # the TorchScript exporter announces its deprecation and tracer warnings on every call, and prints
    # its whole IR graph to stdout when an op fails; the one-line error below says what failed
    with warnings.catch_warnings(), _stdout_silenced():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                module,
                args,
                buf,
                dynamo=False,
                opset_version=opset,
                input_names=input_names,
                output_names=names,
                dynamic_axes=dynamic,
                do_constant_folding=True,
            )
        except Exception as exc:  # torch raises many types; the user needs the op that failed
            raise ExportError(f"torch.onnx.export failed: {type(exc).__name__}: {_first_line(exc)}") from None
    return buf.getvalue()


# --- parity ------------------------------------------------------------------------------------------


def check_parity(
    module: nn.Module,
    model_bytes: bytes,
    outputs: list[dict[str, Any]],
    z_dim: int,
    conditions: Mapping[str, Any] | None,
    batch_sizes: Sequence[int] = PARITY_BATCH_SIZES,
    *,
    atol: float = DEFAULT_TOLERANCE,
    rtol: float = DEFAULT_TOLERANCE,
) -> ParityReport:
    """Run torch and onnxruntime on the same inputs; raise :class:`ExportError` on any disagreement.

    Float outputs must agree within ``atol + rtol * |torch|`` (the relative part matters for decoded
    columns such as byte counts in the millions, where float32 itself cannot hold 1e-4); integer and
    category outputs must be identical. Errors name the output, batch size and largest difference.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    names = [o["name"] for o in outputs]
    got_names = [o.name for o in session.get_outputs()]
    if got_names != names:
        raise ExportError(f"ONNX outputs are {got_names}, expected {names}")
    report = ParityReport(list(batch_sizes), atol, rtol, {name: 0.0 for name in names})
    rng = np.random.default_rng(0)
    for n in batch_sizes:
        z = rng.standard_normal((n, z_dim), dtype=np.float32)
        feeds: dict[str, np.ndarray] = {"z": z}
        args = [torch.from_numpy(z)]
        if conditions is not None:
            cond = rng.integers(0, len(conditions["classes"]), size=n, dtype=np.int64)
            feeds["cond"] = cond
            args.append(torch.from_numpy(cond))
        with torch.no_grad():
            expected = [t.detach().cpu().numpy() for t in module(*args)]
        got = session.run(names, feeds)
        for desc, want, have in zip(outputs, expected, got):
            name = desc["name"]
            declared = (n, *desc.get("shape", want.shape[1:]))
            if want.shape != have.shape or tuple(want.shape) != tuple(declared):
                raise ExportError(
                    f"output {name!r} at batch {n}: torch shape {list(want.shape)}, onnxruntime "
                    f"{list(have.shape)}, declared {list(declared)}"
                )
            if np.issubdtype(want.dtype, np.floating):
                diff = _float_mismatch(name, n, want, have, atol, rtol, _rounding_steps(desc))
            else:
                diff = _integer_mismatch(name, n, want, have, exact=_is_exact(desc))
            note_worst(report, desc, n, want, have, diff)
    return report


def note_worst(report: ParityReport, desc: Mapping[str, Any], n: int, want: np.ndarray, have: np.ndarray, diff: float) -> None:
    """Raise ``report.max_abs_diff`` of output ``desc`` to ``diff`` and, when it grew, remember where the
    largest difference is (the column named by ``desc["columns"]`` where there is one), so that a
    difference of 7 can be read as 7 on a value of 10^7 rather than a broken graph."""
    name = desc["name"]
    if diff <= report.max_abs_diff.get(name, 0.0) or want.size == 0:
        return
    report.max_abs_diff[name] = diff
    w, h = want.astype(np.float64), have.astype(np.float64)
    gap = np.abs(np.where(np.isnan(w), 0, w) - np.where(np.isnan(h), 0, h))
    at = np.unravel_index(int(np.argmax(gap)), gap.shape)
    where: dict[str, Any] = {"batch": int(n), "index": [int(i) for i in at],
                             "torch": float(w[at]), "onnxruntime": float(h[at])}
    columns = desc.get("columns")
    if isinstance(columns, list) and gap.ndim == 2 and int(at[1]) < len(columns):
        where["column"] = str(columns[int(at[1])])
    report.worst[name] = where


def _rounding_steps(desc: Mapping[str, Any]) -> np.ndarray | None:
    """Per last-axis column, the rounding step a float column may land one step apart by (0: none).

    A column rounded in the graph (``decimals``, or an integer ``dtypes`` entry) can land one step
    apart in torch and onnxruntime when its unrounded value sits within float32 noise of a .5
    boundary. Flags are picked, never rounded, and a whole unit is the whole range of a rate, so
    neither gets a whole-unit step: they must agree within ``atol``/``rtol`` like unrounded columns.
    """
    decimals = desc.get("decimals")
    dtypes = desc.get("dtypes")
    if not decimals and not dtypes:
        return None
    kinds = desc.get("kinds") or []
    width = len(decimals or dtypes)
    steps = np.zeros(width)
    for j in range(width):
        kind = kinds[j] if j < len(kinds) else None
        if dtypes and str(dtypes[j]).startswith("int"):
            steps[j] = 1.0
        elif decimals and decimals[j] is not None:
            steps[j] = 10.0 ** -int(decimals[j])
        if kind == "flag" or (kind in UNIT_RANGE_KINDS and steps[j] >= 1.0):
            steps[j] = 0.0
    return steps


def _flip_limit(values: int) -> int:
    """How many of ``values`` may land one rounding step apart: noise flips a rare few, a wrong
    graph flips many."""
    return max(1, int(MAX_ROUNDING_FLIPS * values))


def _float_mismatch(
    name: str, n: int, want: np.ndarray, have: np.ndarray, atol: float, rtol: float, steps: np.ndarray | None = None
) -> float:
    """Float outputs agree within ``atol + rtol * |torch|``; a rounded column (``steps``) may also
    differ by exactly one rounding step in at most :func:`_flip_limit` of its values."""
    if not np.issubdtype(have.dtype, np.floating):
        raise ExportError(f"output {name!r}: torch gives {want.dtype}, onnxruntime {have.dtype}")
    nan_w, nan_h = np.isnan(want), np.isnan(have)
    if (nan_w != nan_h).any():
        raise ExportError(f"output {name!r} at batch {n}: NaN in one runtime and not the other")
    w = np.where(nan_w, 0, want).astype(np.float64)
    h = np.where(nan_h, 0, have).astype(np.float64)
    diff = np.abs(w - h)
    allowed = atol + rtol * np.abs(w)
    bad = diff > allowed
    worst = float(diff.max(initial=0.0))
    if steps is not None and diff.ndim == 2 and steps.shape[0] == diff.shape[-1]:
        # one rounding step apart: the difference is that step, up to float32 noise on the rounded value
        flipped = bad & (steps > 0) & (np.abs(diff - steps) <= allowed + steps * 1e-6)
        bad &= ~flipped
        per_column = flipped.sum(axis=0)
        over = np.flatnonzero(per_column > _flip_limit(diff.shape[0]))
        if over.size:
            j = int(over[0])
            raise ExportError(
                f"output {name!r} at batch {n}: column {j} differs by one rounding step ({steps[j]:g}) in "
                f"{int(per_column[j])} of {diff.shape[0]} rows; float32 noise flips at most "
                f"{_flip_limit(diff.shape[0])}, so the graph computes something else"
            )
    if bad.any():
        at = np.unravel_index(int(np.argmax(np.where(bad, diff, -1))), diff.shape)
        raise ExportError(
            f"output {name!r} at batch {n}: {int(bad.sum())} values differ beyond atol={atol:g} rtol={rtol:g}; "
            f"largest such difference {diff[at]:.3g} (torch {w[at]:.6g} vs onnxruntime {h[at]:.6g} at "
            f"{list(map(int, at))}), largest difference overall {worst:.3g}"
        )
    return worst


def _is_exact(desc: Mapping[str, Any]) -> bool:
    """Whether an integer output must match exactly: everything but rounded values.

    Only pixels (``uint8``) and outputs whose columns are all counts are rounded floats, where a
    value within float32 noise of .5 may round either way; category indices (outputs with
    vocabularies), flags and every other integer output must be identical. ``exact`` overrides.
    """
    if "exact" in desc:
        return bool(desc["exact"])
    if desc.get("vocabularies"):
        return True
    kinds = desc.get("kinds")
    if kinds:
        return not all(kind == "count" for kind in kinds)
    return desc.get("dtype") != "uint8"


def _integer_mismatch(name: str, n: int, want: np.ndarray, have: np.ndarray, *, exact: bool) -> float:
    """Integer outputs agree except where float32 noise decides a boundary.

    Rounded outputs (pixels, counts) may differ by one in at most :func:`_flip_limit` of their values,
    where torch and onnxruntime straddle a .5 boundary by an ulp. Category indices come from an argmax:
    where two of a row's scores tie to within float32 noise, the two runtimes may pick different ones,
    so at most 1% of the indices may differ (none in batches under 100 values); a wrong graph changes
    many.
    """
    if have.dtype != want.dtype:
        raise ExportError(f"output {name!r}: torch gives {want.dtype}, onnxruntime {have.dtype}")
    diff = np.abs(want.astype(np.int64) - have.astype(np.int64))
    if exact:
        flipped = diff > 0
        ties = int(MAX_ROUNDING_FLIPS * diff.size)  # no allowance at all in small batches
        if int(flipped.sum()) > ties:
            at = np.unravel_index(int(np.argmax(diff)), diff.shape)
            raise ExportError(
                f"output {name!r} at batch {n}: {int(flipped.sum())} of {diff.size} category indices differ "
                f"(argmax near-ties explain at most {ties}); e.g. torch {want[at]} vs "
                f"onnxruntime {have[at]} at {list(map(int, at))}"
            )
        return float(diff.max(initial=0))
    bad = diff > 1
    if bad.any():
        at = np.unravel_index(int(np.argmax(diff)), diff.shape)
        raise ExportError(
            f"output {name!r} at batch {n}: {int(bad.sum())} integer values differ by more than 1; "
            f"largest difference {int(diff[at])} (torch {want[at]} vs onnxruntime {have[at]} at {list(map(int, at))})"
        )
    flips = int((diff == 1).sum())
    if flips > _flip_limit(diff.size):
        raise ExportError(
            f"output {name!r} at batch {n}: {flips} of {diff.size} integer values differ by 1; float32 noise "
            f"flips at most {_flip_limit(diff.size)}, so the graph computes something else"
        )
    return float(diff.max(initial=0))


# --- the manifest ------------------------------------------------------------------------------------


def build_manifest(
    run: Any,
    model_path: Path,
    outputs: list[dict[str, Any]],
    opset: int,
    parity: ParityReport | None,
) -> dict[str, Any]:
    """Everything the runtime needs that the graph does not hold; :func:`bind_manifest` adds the
    fields that bind it to the model (the model's sha256 and size, the manifest's digest)."""
    domain, spec = run.domain, run.spec
    conditions = spec.get("conditions")
    z_dim = _z_dim(run)
    inputs = [{"name": "z", "dtype": "float32", "shape": ["batch", z_dim]}]
    cond_section = None
    if conditions is not None:
        inputs.append({"name": "cond", "dtype": "int64", "shape": ["batch"]})
        classes = [str(c) for c in conditions["classes"]]
        counts = [int(c) for c in conditions.get("counts") or [1] * len(classes)]
        if len(counts) != len(classes):
            raise ExportError(f"spec conditions hold {len(classes)} classes but {len(counts)} counts")
        cond_section = {
            "input": "cond",
            "name": str(conditions["name"]),
            "classes": classes,
            "counts": counts,
            "selectors": _condition_selectors(domain, spec),
        }
    config = getattr(run, "config", None)
    return {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {
            "file": model_path.name,
            "opset": opset,
            "producer": f"torch {torch.__version__} (TorchScript ONNX exporter)",
        },
        "plugin": _plugin_info(domain),
        "advgen_version": _dist_version("advgen"),
        "latent": {"input": "z", "size": z_dim, "dtype": "float32", "distribution": "standard_normal"},
        "inputs": inputs,
        "conditions": cond_section,
        "outputs": outputs,
        "sample": _sample_section(domain, spec, outputs, cond_section),
        "tolerance": {"atol": parity.atol, "rtol": parity.rtol} if parity else None,
        "parity": parity.to_dict() if parity else None,
        "run": {
            "dir": str(getattr(run, "run_dir", "") or ""),
            "config": config.to_dict() if hasattr(config, "to_dict") else config,
        },
        "spec": spec,
    }


def stamp(model: Any, entries: Mapping[str, str], doc: str) -> None:
    """Write advgen's metadata entries and a doc string into an exported ONNX model."""
    for key, value in entries.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    model.doc_string = doc


def check_onnx(model: Any, what: str) -> None:
    """onnx.checker's full check, its failure as one ExportError line naming ``what`` was exported."""
    import onnx

    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported {what} graph fails onnx.checker: {_first_line(exc)}") from None


def bind_manifest(model: Any, manifest: Mapping[str, Any]) -> tuple[dict[str, Any], bytes]:
    """Bind ``manifest`` and the ONNX ``model`` (a ModelProto) to each other; return both, final.

    The model's metadata records the manifest's digest (:func:`advgen_export.manifest.manifest_digest`),
    then the manifest records the serialised model's sha256 and size. The pair is then loaded exactly
    as the runtime loads it (schema, hashes, graph), so an export never writes what the runtime refuses.
    """
    import onnxruntime as ort

    try:
        # the digest is taken over the JSON the runtime will read back, not over Python objects
        bound = json.loads(json.dumps(manifest, default=_json_default, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ExportError(f"the manifest cannot be written as JSON: {_first_line(exc)}") from None
    digest = manifest_digest(bound)
    for prop in model.metadata_props:
        if prop.key == DIGEST_KEY:
            raise ExportError(f"the model already carries a {DIGEST_KEY} entry")
    prop = model.metadata_props.add()
    prop.key, prop.value = DIGEST_KEY, digest
    model_bytes = model.SerializeToString()
    recorded = bound["model"]
    bound["model"] = {"file": recorded["file"], "sha256": sha256_bytes(model_bytes), "bytes": len(model_bytes),
                      **{k: v for k, v in recorded.items() if k != "file"}}
    bound["manifest_sha256"] = digest
    where = recorded["file"]
    try:
        validate_manifest(bound)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unloadable graphs
            raise ModelError(f"onnxruntime cannot load the graph: {_first_line(exc)}") from None
        check_binding(bound, session.get_modelmeta().custom_metadata_map, where)
        check_graph(bound, session, where)
    except ModelError as exc:
        raise ExportError(f"the runtime would refuse this export: {exc}") from None
    return bound, model_bytes


def _condition_selectors(domain: Any, spec: Mapping[str, Any]) -> dict[str, dict[str, list[int]]]:
    """For every ``key=value`` the domain accepts, the class indices its ``condition_classes`` selects."""
    conditions = spec["conditions"]
    keys: dict[str, list[Any]] = {str(conditions["name"]): list(conditions["classes"])}
    listed = getattr(domain, "condition_values", None)
    if callable(listed):
        for key, values in dict(listed(spec)).items():
            keys.setdefault(str(key), [])
            keys[str(key)] += [v for v in values if v not in keys[str(key)]]
    selectors: dict[str, dict[str, list[int]]] = {}
    for key, values in keys.items():
        table: dict[str, list[int]] = {}
        for value in values:
            try:
                picked = domain.condition_classes(spec, key, str(value))
            except AdvgenError:
                continue  # a value the domain itself refuses stays refused by the runtime
            if picked:  # a value that selects no class would only ever fail at sampling time
                table[str(value)] = sorted({int(i) for i in picked})
        selectors[key] = table
    return selectors


def _sample_section(
    domain: Any, spec: Mapping[str, Any], outputs: list[dict[str, Any]], conditions: Mapping[str, Any] | None
) -> dict[str, Any]:
    """How the runtime turns raw outputs into samples: a table, images, or plain arrays."""
    extra = getattr(domain, "export_manifest", None)
    section: dict[str, Any] = dict(extra(spec)) if callable(extra) else {}
    if "kind" not in section:
        if any(o.get("columns") for o in outputs):
            section["kind"] = "table"
        elif any(o.get("kind") == "image" for o in outputs):
            section["kind"] = "image"
        else:
            section["kind"] = "array"
    if section["kind"] != "table":
        section.setdefault("output", next((o["name"] for o in outputs if o.get("kind") == "image"), outputs[0]["name"]))
        primary = next((o for o in outputs if o["name"] == section["output"]), None)
        if primary is None:
            raise ExportError(f"export_manifest names output {section['output']!r}, which export_outputs lacks")
        section.setdefault("shape", list(primary.get("shape", spec["shape"])))  # e.g. the image shape
        if section["kind"] == "image":
            section.setdefault("layout", primary.get("layout", "CHW"))
        return section
    produced = [c for o in outputs for c in o.get("columns") or []]
    if len(set(produced)) != len(produced):
        raise ExportError("export_outputs lists some table column twice")
    if conditions is not None:
        section.setdefault("condition_column", conditions["name"])
    condition_column = section.get("condition_column")
    if condition_column in produced:
        raise ExportError(f"table column {condition_column!r} is both a generated output and the condition")
    derived = dict(section.get("derived_columns") or {})
    constants = dict(section.get("constants") or {})
    default_order = produced + ([condition_column] if condition_column else [])
    default_order += [c for c in [*derived, *constants] if c not in default_order]
    section.setdefault("columns", default_order)
    known = set(default_order)
    missing = [c for c in section["columns"] if c not in known]
    if missing:
        raise ExportError(f"table columns {missing} come from no output, condition, derived column or constant")
    for name, rule in derived.items():
        if rule.get("from") not in known or not isinstance(rule.get("map"), dict):
            raise ExportError(f"derived column {name!r} needs 'from' (a table column) and 'map'")
    return section


def _output_descriptions(domain: Any, spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    outputs = [dict(o) for o in domain.export_outputs(spec)]
    if not outputs:
        raise ExportError(f"domain {domain.name!r} describes no export outputs")
    names = [o.get("name") for o in outputs]
    if any(not isinstance(n, str) or not n or n in ("z", "cond") for n in names) or len(set(names)) != len(names):
        raise ExportError(f"export output names must be unique, non-empty and not 'z' or 'cond': {names}")
    for o in outputs:
        if o.get("dtype", "float32") not in SUPPORTED_DTYPES:
            raise ExportError(f"output {o['name']!r} has dtype {o.get('dtype')!r}; supported: {SUPPORTED_DTYPES}")
        o.setdefault("dtype", "float32")
        if "shape" in o:
            o["shape"] = [int(d) for d in o["shape"]]
        cols = o.get("columns")
        if cols is not None and o.get("shape") and o["shape"][-1] != len(cols):
            raise ExportError(f"output {o['name']!r} has {len(cols)} columns but shape {o['shape']}")
    return outputs


def _tolerance(domain: Any, override: float | Mapping[str, float] | None) -> tuple[float, float]:
    value = override if override is not None else getattr(domain, "export_tolerance", DEFAULT_TOLERANCE)
    if isinstance(value, Mapping):
        atol = float(value.get("atol", DEFAULT_TOLERANCE))
        return atol, float(value.get("rtol", atol))
    return float(value), float(value)


def _z_dim(run: Any) -> int:
    config = getattr(run, "config", None)
    z_dim = getattr(config, "z_dim", None)
    if z_dim is None and isinstance(config, Mapping):
        z_dim = config.get("z_dim")
    if not isinstance(z_dim, int) or z_dim < 1:
        raise ExportError(f"cannot tell the latent size of this run (config z_dim = {z_dim!r})")
    return z_dim


def _plugin_info(domain: Any) -> dict[str, Any]:
    """Domain name and versions; the plugin version comes from the plugin manager when it knows it."""
    version = "?"
    try:
        from advgen.plugins import get_manager

        manager = get_manager()
        if domain.name in manager.domain_names():
            version = manager.domain_plugin_version(domain.name)
    except AdvgenError:
        pass
    return {
        "name": domain.name,
        "version": version,
        "domain_version": str(domain.version),
        "description": getattr(domain, "description", ""),
    }


def _dist_version(dist: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} in the spec is not JSON-serialisable")


@contextlib.contextmanager
def _stdout_silenced() -> Iterator[None]:
    """Send file descriptor 1 to /dev/null: torch's C++ side prints there, below ``sys.stdout``."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no file descriptor 1 (an embedded interpreter): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
