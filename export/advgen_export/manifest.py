"""The sidecar manifest of an exported model: where it lives, what it may hold, how it is bound to its model.

The manifest is ``<model file>.json`` (``model.onnx`` -> ``model.onnx.json``): appending to the full
file name keeps the pair together whatever the model is called and never collides with another
model's manifest in the same folder. It holds what the ONNX graph cannot: the plugin that made the
model, the data spec, latent size, output descriptions, the condition vocabulary with training counts
and, for every ``key=value`` condition a user may pass, the class indices it selects (computed by the
domain's own ``condition_classes`` at export time, so the runtime needs no domain code).

An evasion model (the generator of an ``advgen evade`` run) has inputs ``rows``, ``mask`` and ``z``,
``sample.kind`` ``evasion`` and one more section, ``evasion`` (columns, encoding, threat model, rules),
which :mod:`advgen_export.evasion_schema` checks.

Every field is checked against a schema with bounds (:func:`validate_manifest`), so an edited or
malformed manifest is refused with one line naming the field instead of failing somewhere in
sampling. Edits that stay within the schema are caught by the binding between the two files:

- the manifest records the model's sha256 (and size), and the runtime builds its session from the
  very bytes it checked;
- the model records, in its ONNX ``metadata_props`` under :data:`DIGEST_KEY`, the sha256 of the
  manifest's canonical JSON without the fields that depend on the model's bytes
  (:func:`manifest_digest`). Editing a manifest field changes that digest; recomputing it in the
  manifest does not help, because the copy in the model is covered by the model's sha256;
- the runtime also checks the manifest against the graph itself (:func:`check_graph`): input and
  output names, dtypes and shapes, and the latent size against the width of ``z``.

Someone who rewrites both files consistently can still make any model; only a model hash obtained
from the publisher (``advgen-runtime ... --expect-sha256``) or a signature proves where a model came from.

Shared by the exporter and the runtime, so it imports neither torch nor advgen.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from advgen_export import MANIFEST_FORMAT, MANIFEST_VERSION


class ModelError(Exception):
    """A problem with a model, its manifest or a sampling request, reported as one line."""


# --- bounds ------------------------------------------------------------------------------------------

MAX_MANIFEST_BYTES = 64 << 20  # a tabular spec with quantile grids takes a few MB
MAX_MODEL_BYTES = 2**31  # protobuf cannot serialise a larger ONNX model in one file
MAX_LATENT = 65_536
MAX_CLASSES = 65_536
MAX_COLUMNS = 10_000
MAX_OUTPUTS = 64
MAX_VOCABULARY = 100_000
MAX_SELECTOR_KEYS = 64
MAX_NAME = 256  # output, column and condition names
MAX_TEXT = 4_096  # values, descriptions, paths
MAX_RANK = 8
MAX_DIM = 1 << 20
MAX_SAMPLE_VALUES = 1 << 24  # values in one sample of one output
MAX_DECIMALS = 15
MAX_DEPTH = 64  # nesting of the free-form sections (run config, spec)
MAX_COUNT = 2**53  # class counts stay exact as float64 probabilities
MAX_TOLERANCE = 1e6
MAX_PARITY_BATCHES = 16

OUTPUT_DTYPES = {
    "float32": "tensor(float)", "float64": "tensor(double)", "int64": "tensor(int64)", "uint8": "tensor(uint8)",
}
COLUMN_DTYPES = ("int64", "float64")
IMAGE_LAYOUTS = {"CHW": 3, "HWC": 3, "HW": 2}
SAMPLE_KINDS = ("table", "image", "array", "evasion")
INPUT_TYPES = {"float32": "tensor(float)", "int64": "tensor(int64)"}
EVASION_INPUTS = ("rows", "mask")  # an evasion graph's inputs besides z (see advgen_export.evasion_schema)

DIGEST_KEY = "advgen.manifest_sha256"
"""The ONNX ``metadata_props`` entry holding :func:`manifest_digest` of the model's own manifest."""

_HEX64 = re.compile(r"[0-9a-f]{64}")
_TOP_KEYS = (
    "format", "format_version", "created", "model", "plugin", "advgen_version", "latent", "inputs",
    "conditions", "outputs", "sample", "tolerance", "parity", "run", "spec", "manifest_sha256",
)  # fmt: skip
_OUTPUT_KEYS = ("meaning", "columns", "kinds", "vocabularies", "dtypes", "decimals", "kind", "layout", "range", "exact")
_PER_COLUMN_KEYS = ("kinds", "vocabularies", "dtypes", "decimals")


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


# --- reading -----------------------------------------------------------------------------------------


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read a manifest and validate every field; every failure is one clear :class:`ModelError` line.

    A manifest from an older export (``format_version`` below :data:`MANIFEST_VERSION`) is refused:
    it is not bound to its model, so nothing tells an edit from the original.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"manifest not found: {p} (it is written next to the model by `advgen export`)")
    try:
        size = p.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise ModelError(f"manifest {p} is {size:,} bytes; a manifest holds at most {MAX_MANIFEST_BYTES:,}")
        data = p.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read manifest {p}: {exc.strerror or exc}") from None
    try:
        manifest = parse_manifest(data)
    except ModelError as exc:
        raise ModelError(f"manifest {p} {exc}") from None
    check_format(manifest, f"manifest {p}")
    try:
        return validate_manifest(manifest)
    except ModelError as exc:
        raise ModelError(f"manifest {p}: {exc}") from None


def parse_manifest(data: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN or Infinity, no key given twice, bounded nesting."""
    try:
        text = data.decode("utf-8")
        return json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
    except UnicodeDecodeError:
        raise ModelError("is not UTF-8 text") from None
    except RecursionError:
        raise ModelError("is nested too deeply to be a manifest") from None
    except ValueError as exc:  # JSONDecodeError, and integers too long to convert
        raise ModelError(f"is not valid JSON: {_first_line(exc)}") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {_show(key)} appears twice in one object")
        out[key] = value
    return out


def check_format(manifest: Any, source: str) -> None:
    """Refuse anything but a manifest of exactly this format version, with the way forward."""
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ModelError(f"{source} is not an advgen ONNX manifest")
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ModelError(f"{source} has format version {_show(version)}, not an integer")
    if version < MANIFEST_VERSION:
        raise ModelError(
            f"{source} has format version {version}, from an older export that does not bind the manifest "
            f"to its model; export the run again (`advgen export RUN_DIR -o MODEL`) to get version {MANIFEST_VERSION}"
        )
    if version > MANIFEST_VERSION:
        raise ModelError(
            f"{source} has format version {version}; this runtime reads version {MANIFEST_VERSION} "
            "(update advgen-export)"
        )


# --- the schema --------------------------------------------------------------------------------------


def validate_manifest(manifest: Any) -> dict[str, Any]:
    """Check every field of a parsed manifest against the schema and its bounds; return it unchanged.

    Raises :class:`ModelError` naming the first offending field (``outputs[1].vocabularies[0]: ...``).
    The exporter runs the same check before it writes anything, so an export never produces a
    manifest this runtime refuses.
    """
    m = _object(manifest, "", _TOP_KEYS, ("evasion",))
    check_format(m, "the manifest")
    _text(m["created"], "created", max_len=64)
    _check_model_section(m["model"])
    p = _object(m["plugin"], "plugin", ("name", "version", "domain_version", "description"))
    _text(p["name"], "plugin.name", max_len=MAX_NAME, name=True)
    _text(p["version"], "plugin.version", max_len=MAX_NAME)
    _text(p["domain_version"], "plugin.domain_version", max_len=MAX_NAME)
    _text(p["description"], "plugin.description", empty=True)
    _text(m["advgen_version"], "advgen_version", max_len=MAX_NAME)
    z_dim = _check_latent(m["latent"])
    n_classes = _check_conditions(m["conditions"])
    outputs = _check_outputs(m["outputs"])
    evasion = _check_evasion(m, outputs)
    _check_inputs(m["inputs"], z_dim, n_classes is not None, evasion)
    _check_sample(m["sample"], outputs, m["conditions"])
    if m["tolerance"] is not None:
        t = _object(m["tolerance"], "tolerance", ("atol", "rtol"))
        _number(t["atol"], "tolerance.atol", 0.0, MAX_TOLERANCE)
        _number(t["rtol"], "tolerance.rtol", 0.0, MAX_TOLERANCE)
    if m["parity"] is not None:
        _check_parity_section(m["parity"], outputs)
    r = _object(m["run"], "run", ("dir", "config"))
    _text(r["dir"], "run.dir", empty=True)
    _json_tree(r["config"], "run.config")
    _json_tree(m["spec"], "spec")
    _hex64(m["manifest_sha256"], "manifest_sha256")
    return m


def _check_model_section(value: Any) -> None:
    model = _object(value, "model", ("file", "sha256", "bytes", "opset", "producer"))
    _text(model["file"], "model.file", max_len=MAX_NAME)
    _hex64(model["sha256"], "model.sha256")
    _integer(model["bytes"], "model.bytes", 1, MAX_MODEL_BYTES)
    _integer(model["opset"], "model.opset", 1, 1000)
    _text(model["producer"], "model.producer", empty=True)


def _check_latent(value: Any) -> int:
    latent = _object(value, "latent", ("input", "size", "dtype", "distribution"))
    _exactly(latent["input"], "latent.input", "z")
    _exactly(latent["dtype"], "latent.dtype", "float32")
    _exactly(latent["distribution"], "latent.distribution", "standard_normal")
    return _integer(latent["size"], "latent.size", 1, MAX_LATENT)


def _check_conditions(value: Any) -> int | None:
    """The number of classes of a conditional model; None for an unconditional one."""
    if value is None:
        return None
    cond = _object(value, "conditions", ("input", "name", "classes", "counts", "selectors"))
    _exactly(cond["input"], "conditions.input", "cond")
    name = _text(cond["name"], "conditions.name", max_len=MAX_NAME, name=True)
    classes = _array(cond["classes"], "conditions.classes", 1, MAX_CLASSES)
    for i, c in enumerate(classes):
        _text(c, f"conditions.classes[{i}]")
    _unique(classes, "conditions.classes")
    n = len(classes)
    counts = _array(cond["counts"], "conditions.counts", n, n, what=f"one count per class ({n})")
    for i, c in enumerate(counts):
        _number(c, f"conditions.counts[{i}]", 0.0, MAX_COUNT)
    selectors = _mapping(cond["selectors"], "conditions.selectors", MAX_SELECTOR_KEYS)
    if name not in selectors:
        raise ModelError(f"conditions.selectors has no entry for the condition {_show(name)} itself")
    for key, table in selectors.items():
        where = _key(f"conditions.selectors", key)
        _text(key, where, max_len=MAX_NAME, name=True)
        for val, picked in _mapping(table, where, MAX_VOCABULARY).items():
            at = _key(where, val)
            _text(val, at)
            indices = _array(picked, at, 1, n)
            for j, i in enumerate(indices):
                _integer(i, f"{at}[{j}]", 0, n - 1)
            _unique(indices, at)
    return n


def _check_evasion(m: Mapping[str, Any], outputs: Mapping[str, Any]) -> tuple[int, int] | None:
    """An evasion model's (encoded width, feature columns); None for a generator that samples."""
    is_evasion = isinstance(m["sample"], dict) and m["sample"].get("kind") == "evasion"
    if "evasion" not in m:
        if is_evasion:
            raise ModelError("sample.kind is 'evasion', but the manifest has no evasion section")
        return None
    if not is_evasion:
        raise ModelError("the manifest has an evasion section, so sample.kind must be 'evasion'")
    if m["conditions"] is not None:
        raise ModelError("an evasion model takes attack rows, not conditions: conditions must be null")
    clash = [name for name in outputs if name in EVASION_INPUTS]
    if clash:
        raise ModelError(f"output {_show(clash[0])} has the name of an input of an evasion model")
    from advgen_export.evasion_schema import check_evasion

    return check_evasion(m["evasion"], outputs)


def _check_inputs(value: Any, z_dim: int, conditional: bool, evasion: tuple[int, int] | None = None) -> None:
    expected: list[dict[str, Any]] = [{"name": "z", "dtype": "float32", "shape": ["batch", z_dim]}]
    if conditional:
        expected.append({"name": "cond", "dtype": "int64", "shape": ["batch"]})
    if evasion is not None:
        dim, n_columns = evasion
        expected[:0] = [{"name": "rows", "dtype": "float32", "shape": ["batch", dim]},
                        {"name": "mask", "dtype": "float32", "shape": ["batch", n_columns]}]
    if _canonical_or_none(value) != canonical_json(expected):
        raise ModelError(f"inputs must be {_show(expected, 200)} for latent.size {z_dim}, got {_show(value, 200)}")


def _canonical_or_none(value: Any) -> bytes | None:
    try:
        return canonical_json(value)
    except (TypeError, ValueError, RecursionError):
        return None


def _check_outputs(value: Any) -> dict[str, dict[str, Any]]:
    outputs = _array(value, "outputs", 1, MAX_OUTPUTS)
    by_name: dict[str, dict[str, Any]] = {}
    columns: set[str] = set()
    for k, raw in enumerate(outputs):
        where = f"outputs[{k}]"
        o = _object(raw, where, ("name", "dtype", "shape"), _OUTPUT_KEYS)
        name = _text(o["name"], f"{where}.name", max_len=MAX_NAME, name=True)
        if name in ("z", "cond"):
            raise ModelError(f"{where}.name must not be 'z' or 'cond' (they are the inputs)")
        if name in by_name:
            raise ModelError(f"{where}.name {_show(name)} is used by another output")
        by_name[name] = o
        _one_of(o["dtype"], f"{where}.dtype", OUTPUT_DTYPES)
        shape = _shape(o["shape"], f"{where}.shape")
        if "meaning" in o:
            _text(o["meaning"], f"{where}.meaning", empty=True)
        if "kind" in o:
            _text(o["kind"], f"{where}.kind", max_len=MAX_NAME, name=True)
        if "exact" in o and not isinstance(o["exact"], bool):
            raise _bad(f"{where}.exact", "true or false", o["exact"])
        if "layout" in o:
            _layout(o["layout"], f"{where}.layout", shape)
        if "range" in o:
            _value_range(o["range"], f"{where}.range")
        if "columns" not in o:
            extra = [key for key in _PER_COLUMN_KEYS if key in o]
            if extra:
                raise ModelError(f"{where}.{extra[0]} describes columns, but the output lists no columns")
            continue
        names = _array(o["columns"], f"{where}.columns", 0, MAX_COLUMNS)
        if shape != [len(names)]:
            raise ModelError(f"{where}.shape must be [{len(names)}], one value per column, got {_show(shape)}")
        for j, c in enumerate(names):
            _text(c, f"{where}.columns[{j}]", max_len=MAX_NAME, name=True)
            if c in columns:
                raise ModelError(f"{where}.columns[{j}] {_show(c)} is already produced by an output")
            columns.add(c)
        _check_per_column(o, where, len(names))
    return by_name


def _check_per_column(o: Mapping[str, Any], where: str, width: int) -> None:
    what = f"one entry per column ({width})"
    if "kinds" in o:
        for j, kind in enumerate(_array(o["kinds"], f"{where}.kinds", width, width, what=what)):
            _text(kind, f"{where}.kinds[{j}]", max_len=MAX_NAME, name=True)
    if "vocabularies" in o:
        vocabs = _array(o["vocabularies"], f"{where}.vocabularies", width, width, what=what)
        for j, vocab in enumerate(vocabs):
            if vocab is None:
                continue
            at = f"{where}.vocabularies[{j}]"
            for i, v in enumerate(_array(vocab, at, 1, MAX_VOCABULARY, what="a non-empty list of strings")):
                _text(v, f"{at}[{i}]", empty=True)
        if any(v is not None for v in vocabs) and o["dtype"] != "int64":
            raise ModelError(f"{where}.dtype must be int64: its columns with vocabularies hold category indices")
    if "dtypes" in o:
        for j, dtype in enumerate(_array(o["dtypes"], f"{where}.dtypes", width, width, what=what)):
            if dtype is not None:
                _one_of(dtype, f"{where}.dtypes[{j}]", COLUMN_DTYPES, "null or one of")
    if "decimals" in o:
        for j, d in enumerate(_array(o["decimals"], f"{where}.decimals", width, width, what=what)):
            if d is not None:
                _integer(d, f"{where}.decimals[{j}]", 0, MAX_DECIMALS)


def _check_sample(value: Any, outputs: Mapping[str, Mapping[str, Any]], conditions: Any) -> None:
    if not isinstance(value, dict):
        raise _bad("sample", "an object", value)
    kind = _one_of(value.get("kind"), "sample.kind", SAMPLE_KINDS)
    if kind == "evasion":  # the rows come from the user's file (see _check_evasion)
        _object(value, "sample", ("kind",))
        return
    if kind != "table":
        optional = ("layout", "range") if kind == "image" else ()
        s = _object(value, "sample", ("kind", "output", "shape"), optional)
        name = _text(s["output"], "sample.output", max_len=MAX_NAME)
        if name not in outputs:
            raise ModelError(f"sample.output {_show(name)} is none of the outputs ({', '.join(outputs)})")
        shape = _shape(s["shape"], "sample.shape")
        if shape != outputs[name]["shape"]:
            raise ModelError(f"sample.shape {_show(shape)} differs from output {_show(name)}'s shape {_show(outputs[name]['shape'])}")
        if "layout" in s:
            _layout(s["layout"], "sample.layout", shape)
        if "range" in s:
            _value_range(s["range"], "sample.range")
        return
    s = _object(
        value, "sample", ("kind", "columns"), ("condition_column", "derived_columns", "constants", "integer_columns")
    )
    produced = [c for o in outputs.values() for c in o.get("columns") or []]
    if not produced:
        raise ModelError("sample.kind is 'table', but no output lists columns")
    available = set(produced)
    condition_column = s.get("condition_column")
    if condition_column is not None:
        _text(condition_column, "sample.condition_column", max_len=MAX_NAME, name=True)
        if conditions is None:
            raise ModelError("sample.condition_column names a condition column, but the model is not conditional")
        if condition_column in available:
            raise ModelError(f"sample.condition_column {_show(condition_column)} is also a generated column")
        available.add(condition_column)
    # derived columns are computed in order, each from a column that exists by then
    derived = s.get("derived_columns")
    derived = {} if derived is None else _mapping(derived, "sample.derived_columns", MAX_COLUMNS)
    for name, rule in derived.items():
        where = _key("sample.derived_columns", name)
        _text(name, where, max_len=MAX_NAME, name=True)
        if name in available:
            raise ModelError(f"{where} clashes with another column of the same name")
        r = _object(rule, where, ("from", "map"), ("default",))
        if not isinstance(r["from"], str) or r["from"] not in available:
            raise ModelError(f"{where}.from {_show(r['from'])} is not a generated, condition or earlier derived column")
        for key, mapped in _mapping(r["map"], f"{where}.map", MAX_VOCABULARY).items():
            _text(key, _key(f"{where}.map", key), empty=True)
            _scalar(mapped, _key(f"{where}.map", key))
        if "default" in r:
            _scalar(r["default"], f"{where}.default")
        available.add(name)
    constants = s.get("constants")
    constants = {} if constants is None else _mapping(constants, "sample.constants", MAX_COLUMNS)
    for name, constant in constants.items():
        where = _key("sample.constants", name)
        _text(name, where, max_len=MAX_NAME, name=True)
        if name in available:
            raise ModelError(f"{where} clashes with another column of the same name")
        _scalar(constant, where)
        available.add(name)
    columns = _array(s["columns"], "sample.columns", 1, MAX_COLUMNS)
    for j, c in enumerate(columns):
        _text(c, f"sample.columns[{j}]", max_len=MAX_NAME, name=True)
        if c not in available:
            raise ModelError(f"sample.columns[{j}] {_show(c)} comes from no output, condition, derived column or constant")
    _unique(columns, "sample.columns")
    if "integer_columns" in s:  # optional: manifests before it write every category as text
        _check_integer_columns(s["integer_columns"], columns, outputs, condition_column, conditions)


def _check_integer_columns(
    value: Any, columns: Sequence[str], outputs: Mapping[str, Mapping[str, Any]], condition_column: Any, conditions: Any
) -> None:
    """``sample.integer_columns``: categoricals of ``sample.columns`` (a vocabulary's or the condition's)
    that files write as integers, so every value each can take must be an integer as text."""
    from advgen.writers import integer_text

    values: dict[str, list[Any]] = {}
    for o in outputs.values():
        for c, vocab in zip(o.get("columns") or [], o.get("vocabularies") or []):
            if vocab is not None:
                values[c] = vocab
    if condition_column is not None:
        values[condition_column] = conditions["classes"]
    names = _array(value, "sample.integer_columns", 0, MAX_COLUMNS)
    for j, c in enumerate(names):
        where = f"sample.integer_columns[{j}]"
        _text(c, where, max_len=MAX_NAME, name=True)
        if c not in columns:
            raise ModelError(f"{where} {_show(c)} is none of sample.columns")
        if c not in values:
            raise ModelError(f"{where} {_show(c)} is not a categorical column (a vocabulary's or the condition's)")
        bad = next((v for v in values[c] if not integer_text(v)), None)
        if bad is not None:
            raise ModelError(f"{where} {_show(c)} can take the value {_show(bad)}, which is not an integer")
    _unique(names, "sample.integer_columns")


def _check_parity_section(value: Any, outputs: Mapping[str, Any]) -> None:
    parity = _object(value, "parity", ("batch_sizes", "atol", "rtol", "max_abs_diff"))
    for i, n in enumerate(_array(parity["batch_sizes"], "parity.batch_sizes", 1, MAX_PARITY_BATCHES)):
        _integer(n, f"parity.batch_sizes[{i}]", 1, MAX_DIM)
    _number(parity["atol"], "parity.atol", 0.0, MAX_TOLERANCE)
    _number(parity["rtol"], "parity.rtol", 0.0, MAX_TOLERANCE)
    for name, diff in _mapping(parity["max_abs_diff"], "parity.max_abs_diff", MAX_OUTPUTS).items():
        where = _key("parity.max_abs_diff", name)
        if name not in outputs:
            raise ModelError(f"{where} is none of the outputs")
        _number(diff, where, 0.0, math.inf)


# --- schema building blocks ---------------------------------------------------------------------------


def _show(value: Any, limit: int = 60) -> str:
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError, RecursionError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _key(where: str, key: Any) -> str:
    """``where.key`` for plain keys, ``where["odd key"]`` otherwise, bounded in length."""
    if isinstance(key, str) and key.isidentifier() and len(key) <= 60:
        return f"{where}.{key}" if where else key
    return f"{where}[{_show(key)}]"


def _bad(where: str, expected: str, value: Any) -> ModelError:
    return ModelError(f"{where} must be {expected}, got {_show(value)}")


def _object(value: Any, where: str, required: Sequence[str], optional: Sequence[str] = ()) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(where or "the manifest", "an object", value)
    for key in required:
        if key not in value:
            raise ModelError(f"{_key(where, key)} is missing")
    for key in value:
        if key not in required and key not in optional:
            raise ModelError(f"{_key(where, key)} is not a field of this manifest format")
    return value


def _mapping(value: Any, where: str, max_len: int) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(where, "an object", value)
    if len(value) > max_len:
        raise ModelError(f"{where} has {len(value):,} entries; at most {max_len:,} are allowed")
    return value


def _array(value: Any, where: str, min_len: int, max_len: int, *, what: str | None = None) -> list[Any]:
    if not isinstance(value, list) or not min_len <= len(value) <= max_len:
        if what is None:
            what = f"a list of {min_len}..{max_len:,} items" if min_len != max_len else f"a list of {min_len} items"
        got = f"a list of {len(value):,} items" if isinstance(value, list) else _show(value)
        raise ModelError(f"{where} must be {what}, got {got}")
    return value


def _text(value: Any, where: str, *, max_len: int = MAX_TEXT, empty: bool = False, name: bool = False) -> str:
    if not isinstance(value, str):
        raise _bad(where, "a string", value)
    if not value and not empty:
        raise ModelError(f"{where} must not be empty")
    if len(value) > max_len:
        raise ModelError(f"{where} is {len(value):,} characters long; at most {max_len:,} are allowed")
    if name and not value.isprintable():
        raise ModelError(f"{where} {_show(value)} holds control or other non-printable characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ModelError(f"{where} holds an unpaired surrogate, which no file can store") from None
    return value


def _integer(value: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _bad(where, f"an integer in {lo:,}..{hi:,}", value)
    return value


def _number(value: Any, where: str, lo: float, hi: float) -> float:
    # compare before converting: an integer of 400 digits is a valid JSON number but no float
    # (NaN fails every comparison; infinity is beyond 1e308)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi or abs(value) > 1e308:
        raise _bad(where, f"a finite number in {lo:g}..{hi:g}", value)
    return float(value)


def _scalar(value: Any, where: str) -> None:
    """A table cell: a string, a finite number, true/false or null."""
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        _text(value, where, empty=True)
    elif isinstance(value, int):
        _integer(value, where, -(2**63), 2**63 - 1)
    elif isinstance(value, float):
        _number(value, where, -math.inf, math.inf)
    else:
        raise _bad(where, "a string, number, true, false or null", value)


def _exactly(value: Any, where: str, expected: str) -> None:
    if value != expected:
        raise _bad(where, _show(expected), value)


def _one_of(value: Any, where: str, options: Any, lead: str = "one of") -> str:
    if not isinstance(value, str) or value not in options:
        raise _bad(where, f"{lead} {', '.join(options)}", value)
    return value


def _hex64(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise _bad(where, "64 lowercase hex digits (a sha256)", value)
    return value


def _unique(values: list[Any], where: str) -> None:
    seen: set[Any] = set()
    for v in values:
        if v in seen:
            raise ModelError(f"{where} lists {_show(v)} twice")
        seen.add(v)


def _shape(value: Any, where: str) -> list[int]:
    dims = _array(value, where, 0, MAX_RANK)
    for i, d in enumerate(dims):
        _integer(d, f"{where}[{i}]", 0, MAX_DIM)
    if math.prod(dims) > MAX_SAMPLE_VALUES:
        raise ModelError(f"{where} {_show(dims)} holds more than {MAX_SAMPLE_VALUES:,} values per sample")
    return dims


def _layout(value: Any, where: str, shape: list[int]) -> None:
    _one_of(value, where, IMAGE_LAYOUTS)
    if len(shape) != IMAGE_LAYOUTS[value]:
        raise ModelError(f"{where} {value} needs a shape of {IMAGE_LAYOUTS[value]} dimensions, got {_show(shape)}")


def _value_range(value: Any, where: str) -> None:
    lo, hi = _array(value, where, 2, 2, what="[low, high]")
    _number(lo, f"{where}[0]", -math.inf, math.inf)
    _number(hi, f"{where}[1]", -math.inf, math.inf)
    if not lo < hi:
        raise ModelError(f"{where} must have low < high, got {_show(value)}")


def _json_tree(value: Any, where: str) -> None:
    """Free-form JSON (a run's config, the spec): bounded nesting, strings a file can store."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ModelError(f"{where} is nested more than {MAX_DEPTH} levels deep")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
            stack.extend((k, depth + 1) for k in item)
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ModelError(f"{where} holds {item!r}, which JSON cannot store")
        elif item is not None and not isinstance(item, (str, int, float, bool)):
            raise _bad(where, "plain JSON", item)


# --- binding the manifest to its model --------------------------------------------------------------


def canonical_json(value: Any) -> bytes:
    """One byte string per JSON value: sorted keys, no spaces, ASCII, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON, leaving out the fields that depend on the model's bytes
    (``model.sha256``, ``model.bytes``) and the recorded digest itself; the exporter stores it in the
    model's metadata under :data:`DIGEST_KEY`."""
    body = {key: value for key, value in manifest.items() if key != "manifest_sha256"}
    body["model"] = {key: value for key, value in manifest["model"].items() if key not in ("sha256", "bytes")}
    return sha256_bytes(canonical_json(body))


def verified_model_bytes(
    model_path: str | Path, manifest: Mapping[str, Any], expect_sha256: str | None = None
) -> bytes:
    """The model file's bytes, refused unless their sha256 is the one the manifest records (and
    ``expect_sha256``, a hash the user got from the publisher, when given).

    The runtime builds its session from these very bytes, so the file cannot change between the check
    and the load.
    """
    pinned = None
    if expect_sha256 is not None:
        pinned = str(expect_sha256).strip().lower()
        if not _HEX64.fullmatch(pinned):
            raise ModelError(f"the expected sha256 must be 64 hex digits, got {_show(expect_sha256)}")
    p = Path(model_path)
    if not p.is_file():
        raise ModelError(f"model not found: {p}")
    recorded = manifest["model"]
    size = p.stat().st_size
    if size != recorded["bytes"]:
        raise ModelError(
            f"model {p} does not match its manifest: {size:,} bytes but the manifest records {recorded['bytes']:,}; "
            "the model or the manifest was modified or belongs to another export"
        )
    data = p.read_bytes()
    actual = sha256_bytes(data)
    if actual != recorded["sha256"]:
        raise ModelError(
            f"model {p} does not match its manifest: sha256 {actual[:16]}... but the manifest records "
            f"{recorded['sha256'][:16]}...; the model or the manifest was modified or belongs to another export"
        )
    if pinned is not None and actual != pinned:
        raise ModelError(
            f"model {p} has sha256 {actual[:16]}..., not the expected {pinned[:16]}...; "
            "it is not the model you were given (both files may have been replaced)"
        )
    return data


def check_binding(manifest: Mapping[str, Any], metadata: Mapping[str, str], model: str | Path) -> None:
    """Refuse a manifest edited after export, or one paired with another export's model.

    ``metadata`` is the model's ONNX ``metadata_props`` (onnxruntime's ``custom_metadata_map``).
    """
    digest = manifest_digest(manifest)
    if manifest["manifest_sha256"] != digest:
        raise ModelError(
            f"the manifest of {model} was edited after export: its fields hash to {digest[:16]}..., "
            f"but it records {manifest['manifest_sha256'][:16]}...; export the run again"
        )
    recorded = metadata.get(DIGEST_KEY)
    if recorded is None:
        raise ModelError(f"model {model} records no manifest digest ({DIGEST_KEY}); it was not written by this exporter")
    if recorded != digest:
        raise ModelError(
            f"the manifest does not belong to model {model}: the model records manifest digest {str(recorded)[:16]}..., "
            f"the manifest hashes to {digest[:16]}...; the manifest was edited or comes from another export"
        )


def check_graph(manifest: Mapping[str, Any], session: Any, model: str | Path) -> None:
    """Check the manifest against the graph ``session`` (an onnxruntime InferenceSession) holds:
    input and output names, dtypes and static shapes, then one run on two rows for the real shapes."""
    z_dim = manifest["latent"]["size"]
    want_inputs = [(i["name"], INPUT_TYPES[i["dtype"]], list(i["shape"][1:])) for i in manifest["inputs"]]
    want_outputs = [(o["name"], OUTPUT_DTYPES[o["dtype"]], list(o["shape"])) for o in manifest["outputs"]]
    for role, want, got in (("inputs", want_inputs, session.get_inputs()), ("outputs", want_outputs, session.get_outputs())):
        names = [a.name for a in got]
        if names != [w[0] for w in want]:
            raise ModelError(f"{model} has {role} {names}, but its manifest describes {[w[0] for w in want]}")
        for (name, dtype, shape), arg in zip(want, got):
            dims = list(arg.shape or [])
            if arg.type != dtype or len(dims) != 1 + len(shape) or any(
                isinstance(d, int) and d != s for d, s in zip(dims[1:], shape)
            ):
                raise ModelError(
                    f"{model}: {role[:-1]} {name!r} is {arg.type} {dims} in the graph, but the manifest says "
                    f"{dtype} {['batch', *shape]}" + (f" (latent.size {z_dim})" if name == "z" else "")
                )
    feeds = {i["name"]: np.zeros((2, *i["shape"][1:]), dtype=i["dtype"]) for i in manifest["inputs"]}
    from advgen_export.onnx_guard import CHECK_SECONDS, run_bounded

    try:
        produced = run_bounded(session, [w[0] for w in want_outputs], feeds, CHECK_SECONDS,
                               f"{model}, run on two rows to check it,")
    except ModelError:
        raise
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(f"{model} cannot run on its declared inputs: {_first_line(exc)}") from None
    for (name, _, shape), value in zip(want_outputs, produced):
        if list(value.shape) != [2, *shape]:
            raise ModelError(
                f"{model}: output {name!r} has shape {list(value.shape)[1:]} per sample, but the manifest says {shape}"
            )


def _quote(text: str, limit: int = 60) -> str:
    """``repr`` of ``text`` cut to ``limit`` characters: one line whatever the text holds."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _plain(text: str, limit: int = 60) -> str:
    """``text`` as it is when short and printable, else escaped and cut, so a message stays one line."""
    cut = text if len(text) <= limit else text[: limit - 3] + "..."
    return cut if cut.isprintable() else repr(cut)[1:-1]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
                raise ModelError(f"condition {_quote(condition)} must look like KEY=VALUE (e.g. label=normal)")
            pairs.append((key.strip(), value.strip()))
        return pairs
    if isinstance(condition, Mapping):
        pairs = []
        for key, value in condition.items():
            if not isinstance(key, str) or not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ModelError(
                    f"condition {_plain(repr(dict(condition)))} must map names to values (e.g. {{\"label\": \"normal\"}})"
                )
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
                f"unknown condition {_quote(key)}; this model is conditioned on {_quote(conditions['name'])}{also}"
            )
        values = selectors[key]
        if value not in values:
            known = list(values)
            shown = ", ".join(_plain(v) for v in known[:30]) + (" ..." if len(known) > 30 else "")
            raise ModelError(f"{_plain(key)}={_plain(value)} never occurred in training; known values: {shown}")
        picked = {int(i) for i in values[value]}
        chosen = picked if chosen is None else chosen & picked
    if not chosen:
        text = ", ".join(f"{k}={v}" for k, v in pairs)
        raise ModelError(f"no training class satisfies every condition {_plain(text, 200)}")
    return np.array(sorted(chosen), dtype=np.int64)


def class_probabilities(conditions: Mapping[str, Any], classes: np.ndarray) -> np.ndarray:
    """Training frequencies of ``classes``, renormalised; uniform when they never occurred."""
    counts = np.asarray(conditions.get("counts") or [1] * len(conditions["classes"]), dtype=np.float64)
    weights = counts[classes]
    total = weights.sum()
    if not np.isfinite(total) or total <= 0:
        return np.full(len(classes), 1.0 / len(classes))
    return weights / total
