"""Export the generator of an ``advgen evade`` run to ONNX, for ``advgen-runtime disguise``.

``export_evasion("runs/evade-dos", "evade.onnx")`` reads the run's ``attack.pt`` (safely: no code runs)
and writes a graph and its manifest:

- the graph takes ``rows`` ``[N, dim]`` (attack rows in the attack's encoding), ``mask`` ``[N, columns]``
  (1 where a row may change a feature column) and ``z`` ``[N, noise]`` (standard normal), and returns the
  decoded feature columns (``numeric`` float64, ``categorical`` int64 indices): the generator, its
  output made hard as the attack does when it disguises (numerics clamped to the encoding's range, each
  one-hot group to its argmax), written over the modifiable slots of the row, then the tabular decoder;
- the manifest's ``evasion`` section (:mod:`advgen_export.evasion_schema`) holds the rest as data: the
  feature columns and label, the encoding tables, the threat model and the rules of real traffic,
  which the runtime (:mod:`advgen_export.evasion_space`) uses to encode rows, merge the decoded cells,
  repair them and copy the functional cells bit for bit.

Nothing is written unless the graph passes ``onnx.checker``, matches torch on random rows, masks and
noise at batch sizes other than the traced one, and, when the run folder holds its disguised rows
(``adversarial.csv`` or ``.parquet``), the runtime disguises up to :data:`END_TO_END_ROWS` of them as
the torch attack does with the same noise (:func:`check_end_to_end`). The manifest is bound to the model
exactly as for generators (:func:`advgen_export.onnx_export.bind_manifest`).

The runtime disguises with one draw of noise a row: a run trained with ``select`` > 1 picks among
candidates with its substitute discriminators, and ``advgen evade`` re-draws rows the detector still
flags; neither is part of the export (it holds the generator only, and asks no detector).
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from advgen.io import atomic_path
from advgen_export import MANIFEST_FORMAT, MANIFEST_VERSION
from advgen_export.manifest import manifest_path
from advgen_export.onnx_export import (
    DEFAULT_OPSET,
    DEFAULT_TOLERANCE,
    MAX_ROUNDING_FLIPS,
    PARITY_BATCH_SIZES,
    TRACE_BATCH_SIZE,
    ExportError,
    ExportResult,
    ParityReport,
    _dist_version,
    _first_line,
    check_onnx,
    note_worst,
    stamp,
    _float_mismatch,
    _integer_mismatch,
    _is_exact,
    _rounding_steps,
    _stdout_silenced,
    bind_manifest,
)

PLUGIN = "advgen.adversarial.gan"
END_TO_END_ROWS = 512
INPUT_NAMES = ("rows", "mask", "z")
_PLAN_KEYS = {"quantile": ("name", "kind", "encoding", "min", "max", "decimals", "grid"),
              "onehot": ("name", "kind", "encoding", "vocab")}


@dataclass
class EndToEnd:
    """The runtime against the torch attack on the run's own rows with the same noise."""

    rows: int
    identical_rows: int
    differing_rows: int
    functional_changes: int
    source: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EvasionExportResult(ExportResult):
    """What :func:`export_evasion` wrote, its parity figures and its end-to-end check (None when skipped)."""

    end_to_end: EndToEnd | None = None


class EvasionExport(nn.Module):
    """``(rows, mask, z) -> (numeric, categorical)``: the generator, its hard output over the row's
    modifiable slots, the tabular decoder. Gathers and concatenations only, so onnxruntime computes what
    torch computes."""

    def __init__(self, attack: Any) -> None:
        from advgen.adversarial.gan_attack import Y_MAX

        super().__init__()
        space = attack.space
        self.generator = copy.deepcopy(attack.G).cpu().eval()
        self.tau = float(attack.config.tau)
        self.y_max = float(Y_MAX)
        numeric = attack.numeric.to(torch.bool)
        self.register_buffer("num_pos", torch.nonzero(numeric).reshape(-1))
        order = self.num_pos.tolist()
        self.groups: list[tuple[int, int]] = []  # (slots, width) per buffer group{i}
        for i, (w, starts) in enumerate(sorted(attack.onehot_groups.items())):
            idx = starts.unsqueeze(1) + torch.arange(w).unsqueeze(0)  # [slots, w], as GanAttack._relax
            self.register_buffer(f"group{i}", idx.reshape(-1).to(torch.long))
            self.register_buffer(f"levels{i}", torch.arange(w, dtype=torch.long))
            self.groups.append((int(idx.shape[0]), int(w)))
            order += idx.reshape(-1).tolist()
        # the pieces come out numerics first, then group by group; perm puts them back in slot order
        self.register_buffer("perm", torch.as_tensor(np.argsort(np.asarray(order, dtype=np.int64)), dtype=torch.long))
        take = np.arange(space.dim)
        take[attack.mod_idx.numpy()] = space.dim + np.arange(len(attack.mod_idx))
        self.register_buffer("take", torch.as_tensor(take, dtype=torch.long))
        self.decoder = space.transform.decoder().cpu().eval()

    def forward(self, rows: torch.Tensor, mask: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw = self.generator(rows, mask, z)
        parts = [raw.index_select(1, self.num_pos).clamp(-self.y_max, self.y_max)]
        for i, (slots, w) in enumerate(self.groups):
            logits = raw.index_select(1, getattr(self, f"group{i}")).reshape(-1, slots, w)
            choice = torch.softmax(logits / self.tau, dim=2).argmax(dim=2, keepdim=True)
            parts.append((choice == getattr(self, f"levels{i}")).to(raw.dtype).reshape(-1, slots * w))
        hard = torch.cat(parts, dim=1).index_select(1, self.perm)
        full = torch.cat([rows, hard], dim=1).index_select(1, self.take)
        return self.decoder(full)


# --- the public entry point --------------------------------------------------------------------------


def is_evasion_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` is an ``advgen evade`` run folder (it holds ``attack.pt``, no ``checkpoint.pt``)."""
    from advgen.adversarial.gan_attack import CHECKPOINT_NAME
    from advgen.checkpoint import CHECKPOINT_NAME as TRAIN_CHECKPOINT

    p = Path(run_dir)
    return p.is_dir() and (p / CHECKPOINT_NAME).is_file() and not (p / TRAIN_CHECKPOINT).is_file()


def export_evasion(
    run_dir: str | Path,
    path: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    check: bool = True,
    batch_sizes: Sequence[int] = PARITY_BATCH_SIZES,
    tolerance: float = DEFAULT_TOLERANCE,
) -> EvasionExportResult:
    """Export the generator of the ``advgen evade`` run ``run_dir`` to ``path`` and its manifest to
    ``path + ".json"``. With ``check`` (the default) nothing is written unless the graph passes
    ``onnx.checker``, parity with torch at ``batch_sizes`` and, when the run's disguised rows are
    there, the end-to-end check; whatever ``check`` says, nothing is written unless the runtime would
    load the pair."""
    import onnx

    from advgen.adversarial.api import load_generator
    from advgen.adversarial.gan_attack import load_attack_checkpoint

    if opset < DEFAULT_OPSET:
        raise ExportError(f"opset {opset} is too old; use {DEFAULT_OPSET} or newer")
    run_dir = Path(run_dir)
    payload = load_attack_checkpoint(run_dir)
    attack = load_generator(run_dir)
    if not attack.fitted:
        raise ExportError(f"the attack of {run_dir} never finished a round of training; nothing to export")
    for p in attack.space.transform.plans:
        if p["encoding"] not in _PLAN_KEYS:
            raise ExportError(f"column {p['name']!r} has encoding {p['encoding']!r}; the runtime encodes quantile and one-hot only")
    module = EvasionExport(attack).eval()
    outputs = _outputs(attack.space)
    model = onnx.load_from_string(_to_onnx(module, attack.space.dim, len(attack.space.names), attack.config.noise, outputs, opset))
    stamp(model, {"advgen.plugin": PLUGIN, "advgen.z_dim": str(attack.config.noise)},
          "advgen evade generator (attack rows + noise -> disguised columns); see the sidecar manifest <model file>.json")

    parity = None
    if check:
        check_onnx(model, "evasion")
        parity = check_graph_parity(module, model.SerializeToString(), outputs, attack, batch_sizes,
                                    atol=tolerance, rtol=tolerance)
    target = Path(path)
    manifest = build_evasion_manifest(attack, payload, run_dir, target, outputs, opset, parity)
    manifest, model_bytes = bind_manifest(model, manifest)
    end_to_end = check_end_to_end(attack, manifest, model_bytes, run_dir) if check else None
    with atomic_path(target) as tmp:
        tmp.write_bytes(model_bytes)
    side = manifest_path(target)
    with atomic_path(side) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, allow_nan=False) + "\n")
    return EvasionExportResult(target, side, manifest, parity, end_to_end)


def _to_onnx(module: nn.Module, dim: int, n_columns: int, noise: int, outputs: list[dict[str, Any]], opset: int) -> bytes:
    g = torch.Generator().manual_seed(0)
    args = (torch.randn(TRACE_BATCH_SIZE, dim, generator=g), torch.ones(TRACE_BATCH_SIZE, n_columns),
            torch.randn(TRACE_BATCH_SIZE, noise, generator=g))
    names = [o["name"] for o in outputs]
    buf = io.BytesIO()
    # as onnx_export._to_onnx: the TorchScript exporter's warnings and IR dumps say nothing the error line does not
    with warnings.catch_warnings(), _stdout_silenced():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                _Outputs(module, names), args, buf, dynamo=False, opset_version=opset,
                input_names=list(INPUT_NAMES), output_names=names,
                dynamic_axes={name: {0: "batch"} for name in (*INPUT_NAMES, *names)}, do_constant_folding=True,
            )
        except Exception as exc:  # torch raises many types; the user needs the op that failed
            raise ExportError(f"torch.onnx.export failed: {type(exc).__name__}: {_first_line(exc)}") from None
    return buf.getvalue()


class _Outputs(nn.Module):
    """The decoder's (numeric, categorical) without the empty one: a manifest output lists >= 1 column."""

    def __init__(self, inner: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.inner = inner
        self.keep = [i for i, name in enumerate(("numeric", "categorical")) if name in names]

    def forward(self, rows: torch.Tensor, mask: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.inner(rows, mask, z)
        return tuple(out[i] for i in self.keep)


def _outputs(space: Any) -> list[dict[str, Any]]:
    """The graph's outputs as the manifest describes them (as the tabular domain's export does)."""
    info = space.transform.output_info()
    outputs = []
    if info["numeric"]:
        outputs.append({
            "name": "numeric", "dtype": "float64", "shape": [len(info["numeric"])],
            "meaning": "numeric and flag feature columns, decoded, rounded to their resolution (modifiable ones "
                       "are the generator's; the runtime keeps the attack row's functional cells)",
            "columns": [c["name"] for c in info["numeric"]],
            "kinds": [c["kind"] for c in info["numeric"]],
            "dtypes": [c["dtype"] for c in info["numeric"]],
            "decimals": [c["decimals"] for c in info["numeric"]],
        })
    if info["categorical"]:
        outputs.append({
            "name": "categorical", "dtype": "int64", "shape": [len(info["categorical"])],
            "meaning": "index of each categorical feature column's value in its vocabulary",
            "columns": [c["name"] for c in info["categorical"]],
            "kinds": ["categorical"] * len(info["categorical"]),
            "vocabularies": [[str(v) for v in c["vocab"]] for c in info["categorical"]],
        })
    return outputs


# --- checks ------------------------------------------------------------------------------------------


def _random_inputs(attack: Any, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encoded rows (numerics standard normal, one-hots with one random level), masks (each column of
    the generator's columns modifiable with chance 1/2) and noise."""
    space = attack.space
    rows = np.zeros((n, space.dim), dtype=np.float32)
    for s in space.slots.values():
        if s.onehot:
            rows[np.arange(n), s.start + rng.integers(0, s.end - s.start, n)] = 1.0
        else:
            rows[:, s.start] = rng.standard_normal(n)
    may = np.array([c in set(attack.mod_columns) for c in space.names])
    mask = ((rng.random((n, len(space.names))) < 0.5) & may).astype(np.float32)
    return rows, mask, rng.standard_normal((n, attack.config.noise), dtype=np.float32)


def check_graph_parity(
    module: nn.Module, model_bytes: bytes, outputs: list[dict[str, Any]], attack: Any,
    batch_sizes: Sequence[int] = PARITY_BATCH_SIZES, *, atol: float = DEFAULT_TOLERANCE, rtol: float = DEFAULT_TOLERANCE,
) -> ParityReport:
    """Run torch and onnxruntime on the same random rows, masks and noise; raise :class:`ExportError` on
    any disagreement (the rules of :func:`advgen_export.onnx_export.check_parity`)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    names = [o["name"] for o in outputs]
    wrapped = _Outputs(module, names)
    report = ParityReport(list(batch_sizes), atol, rtol, {name: 0.0 for name in names})
    rng = np.random.default_rng(0)
    for n in batch_sizes:
        rows, mask, z = _random_inputs(attack, n, rng)
        with torch.no_grad():
            expected = [t.numpy() for t in wrapped(torch.from_numpy(rows), torch.from_numpy(mask), torch.from_numpy(z))]
        got = session.run(names, {"rows": rows, "mask": mask, "z": z})
        for desc, want, have in zip(outputs, expected, got):
            name = desc["name"]
            if want.shape != have.shape or list(want.shape) != [n, *desc["shape"]]:
                raise ExportError(f"output {name!r} at batch {n}: torch shape {list(want.shape)}, onnxruntime {list(have.shape)}")
            if np.issubdtype(want.dtype, np.floating):
                diff = _float_mismatch(name, n, want, have, atol, rtol, _rounding_steps(desc))
            else:
                diff = _integer_mismatch(name, n, want, have, exact=_is_exact(desc))
            note_worst(report, desc, n, want, have, diff)
    return report


def check_end_to_end(attack: Any, manifest: dict[str, Any], model_bytes: bytes, run_dir: Path) -> EndToEnd | None:
    """The runtime (:class:`advgen_export.evasion.EvasionModel` on the bound model and manifest) against
    the torch attack (``GanAttack.disguise_with_noise``) on up to :data:`END_TO_END_ROWS` of the run's
    disguised rows, with the same noise. Functional cells must be bit-identical to the input in both;
    whole rows may differ in at most 1% of the rows (none in fewer than 100), where float32 noise moves a
    value across a rounding or argmax boundary and the repair then takes another path. None when the run
    folder holds no disguised rows."""
    import onnxruntime as ort

    from advgen.io import read_table
    from advgen_export.evasion import SOURCE_COLUMN, EvasionModel

    source = next((run_dir / f"adversarial.{s}" for s in ("csv", "parquet") if (run_dir / f"adversarial.{s}").is_file()), None)
    if source is None:
        return None
    rows = read_table(source).drop(columns=[SOURCE_COLUMN], errors="ignore").iloc[:END_TO_END_ROWS].reset_index(drop=True)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    runtime = EvasionModel.from_session(manifest, ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"]),
                                        manifest["model"]["file"])
    z = np.random.default_rng(0).standard_normal((len(rows), attack.config.noise), dtype=np.float32)
    try:
        have = runtime.disguise_with_noise(rows, z, source=str(source))
    except Exception as exc:  # ModelError, or a bug the check exists to catch
        raise ExportError(f"the runtime cannot disguise the run's own rows ({source.name}): {_first_line(exc)}") from None
    want = attack.disguise_with_noise(rows, torch.from_numpy(z))
    mask, _ = attack.masks(rows)
    functional = sum(int(differing_cells(rows[c], out[c], ~mask[:, j]).sum())
                     for out in (want, have) for j, c in enumerate(attack.space.names))
    if functional:
        raise ExportError(f"{functional} functional cells of {source.name} changed in the end-to-end check; they must not")
    if list(have.columns) != list(want.columns):
        raise ExportError(f"the runtime writes columns {list(have.columns)[:5]}..., torch {list(want.columns)[:5]}...")
    differ = np.zeros(len(rows), dtype=bool)
    for c in want.columns:
        differ |= differing_cells(want[c], have[c], np.ones(len(rows), dtype=bool))
    allowed = int(MAX_ROUNDING_FLIPS * len(rows))
    if int(differ.sum()) > allowed:
        i = int(np.flatnonzero(differ)[0])
        cols = [c for c in want.columns if differing_cells(want[c].iloc[[i]], have[c].iloc[[i]], np.ones(1, dtype=bool))[0]]
        raise ExportError(
            f"the runtime and torch disguise {int(differ.sum())} of {len(rows)} rows of {source.name} differently "
            f"(at most {allowed} may, at float32 boundaries); e.g. row {i}, columns {', '.join(cols[:4])}: "
            f"torch {[want[c].iloc[i] for c in cols[:2]]} vs runtime {[have[c].iloc[i] for c in cols[:2]]}"
        )
    return EndToEnd(len(rows), int((~differ).sum()), int(differ.sum()), functional, source.name)


def differing_cells(a: Any, b: Any, where: np.ndarray) -> np.ndarray:
    """Per row, whether two columns' cells differ in any bit (floats compared as bytes), where ``where``."""
    x, y = np.asarray(a), np.asarray(b)
    if x.dtype != y.dtype:
        out = np.array([repr(u) != repr(v) for u, v in zip(x.tolist(), y.tolist())], dtype=bool)
    elif x.dtype.kind in "fiub":
        out = (x.view(np.uint8).reshape(len(x), -1) != y.view(np.uint8).reshape(len(y), -1)).any(axis=1)
    else:
        out = np.array([u != v for u, v in zip(x.tolist(), y.tolist())], dtype=bool)
    return out & where


# --- the manifest ------------------------------------------------------------------------------------


def build_evasion_manifest(
    attack: Any, payload: dict[str, Any], run_dir: Path, model_path: Path, outputs: list[dict[str, Any]], opset: int,
    parity: ParityReport | None,
) -> dict[str, Any]:
    """The manifest of an exported evasion model, before :func:`bind_manifest` adds the binding fields."""
    space, threat, spec = attack.space, attack.threat.to_dict(), payload["spec"]
    version = _dist_version("advgen")
    noise = int(attack.config.noise)
    return {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {"file": model_path.name, "opset": opset,
                  "producer": f"torch {torch.__version__} (TorchScript ONNX exporter)"},
        "plugin": {"name": PLUGIN, "version": version, "domain_version": "1",
                   "description": "the generator of an advgen evade run: attack rows + noise -> disguised rows"},
        "advgen_version": version,
        "latent": {"input": "z", "size": noise, "dtype": "float32", "distribution": "standard_normal"},
        "inputs": [{"name": "rows", "dtype": "float32", "shape": ["batch", space.dim]},
                   {"name": "mask", "dtype": "float32", "shape": ["batch", len(space.names)]},
                   {"name": "z", "dtype": "float32", "shape": ["batch", noise]}],
        "conditions": None,
        "outputs": outputs,
        "sample": {"kind": "evasion"},
        "tolerance": {"atol": parity.atol, "rtol": parity.rtol} if parity else None,
        "parity": parity.to_dict() if parity else None,
        "run": {"dir": str(run_dir), "config": asdict(attack.config)},
        "spec": {"detector": spec.get("detector"), "queries": spec.get("queries"), "rounds_done": int(payload["step"]),
                 "seed": spec.get("seed"), "stopped": spec.get("stopped")},
        "evasion": {
            "columns": [list(c) for c in space.columns],
            "label": space.label,
            "category_map": spec.get("category_map") or None,
            "encoding": [{k: p[k] for k in _PLAN_KEYS[p["encoding"]]} for p in space.transform.plans],
            "threat": {k: threat[k] for k in ("name", "modifiable", "default", "directions", "default_directions")},
            "rules": list(space.rules),
            **({"classes": list(attack.trained_classes)} if attack.trained_classes else {}),
        },
    }
