"""Open an ONNX model from its bytes, and nothing else: no external data.

An ONNX tensor may keep its values in another file (``data_location = EXTERNAL``, with a ``location``,
``offset`` and ``length``). onnxruntime reads such a file relative to the model's folder, or to the
process's working directory for a model loaded from bytes, as the runtime does: a model someone hands
you could name ``.env`` or ``id_rsa`` and serve their bytes as samples, and the sha256 pin would cover
the ``.onnx`` file but not the file it reads. advgen never exports external data, so a model that
references any is refused before onnxruntime sees it (:func:`external_references`), and the session is
built with its external-data folder set to a fresh empty one, so that a reference this walk missed
finds nothing either.

A graph may also loop for ever (a ``Loop`` node with 10**12 steps hung ``advgen-runtime info`` in an
audit): :func:`run_bounded` runs it with onnxruntime's terminate flag set by a timer, so every run of a
model, the load check included, ends within its deadline.
"""

from __future__ import annotations

import tempfile
import threading
from typing import Any, Iterator, Mapping, Sequence

from advgen_export.manifest import ModelError

# onnxruntime's session option naming the folder external initializers are read from
EXTERNAL_FOLDER_KEY = "session.model_external_initializers_file_folder_path"
# the longest one run of a model may take: the load check runs two rows, a chunk of rows takes well under
# a second on any model advgen exports; a crafted graph (a Loop of 10**12 steps) is stopped here
CHECK_SECONDS = 10.0
RUN_SECONDS = 120.0


# The ONNX messages the walk descends into, by protobuf field number (onnx/onnx.proto3): which fields of
# a message hold which message. The runtime reads the wire format itself, as it installs without the
# onnx package (onnxruntime, numpy and pandas only).
_CHILDREN: dict[str, dict[int, str]] = {
    "model": {7: "graph", 25: "function"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "function": {7: "node"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
}
_TENSOR_NAME, _TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 8, 13, 14
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL


class _Malformed(Exception):
    pass


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise _Malformed
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    """``(field number, wire type, value)`` of one protobuf message: an int for varints, a memoryview
    for length-delimited fields, None for fixed-width ones."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Malformed
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise _Malformed
            yield number, wire, buf[pos : pos + size]
            pos += size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            if pos > len(buf):
                raise _Malformed
            yield number, wire, None
        else:  # groups (3, 4) are not used by ONNX; anything else is not protobuf
            raise _Malformed


def external_references(data: bytes) -> list[str]:
    """The names of the tensors of a serialized model, in its graph, subgraphs and functions, that keep
    their values in another file. No recursion: a model could nest graphs deeply."""
    found: list[str] = []
    stack: list[tuple[str, memoryview]] = [("model", memoryview(data))]
    try:
        while stack:
            kind, buf = stack.pop()
            if kind == "tensor":
                name, external = "", False
                for number, wire, value in _fields(buf):
                    if number == _TENSOR_NAME and wire == 2:
                        name = bytes(value).decode("utf-8", "replace")
                    elif number == _TENSOR_EXTERNAL_DATA and wire == 2:
                        external = True
                    elif number == _TENSOR_DATA_LOCATION and wire == 0 and value == _EXTERNAL:
                        external = True
                if external:
                    found.append(name or "(unnamed)")
                continue
            children = _CHILDREN[kind]
            for number, wire, value in _fields(buf):
                if wire == 2 and number in children:
                    stack.append((children[number], value))
    except _Malformed:
        raise ModelError("not an ONNX model: its bytes are not a valid protobuf message") from None
    return list(dict.fromkeys(found))


def session_from_bytes(data: bytes, options: Any, what: str) -> Any:
    """An onnxruntime CPU session of the serialized model ``data`` (``what``: how to name it in errors),
    refused with a :class:`ModelError` when it references external data or onnxruntime cannot load it."""
    import onnxruntime as ort

    refs = external_references(data)
    if refs:
        shown = ", ".join(repr(r[:80]) for r in refs[:3]) + (f" and {len(refs) - 3} more" if len(refs) > 3 else "")
        raise ModelError(
            f"{what} keeps tensor values in other files (external data: {shown}); the runtime loads a model "
            "from its own bytes only, so that it reads no other file"
        )
    with tempfile.TemporaryDirectory(prefix="advgen-onnx-") as empty:
        options.add_session_config_entry(EXTERNAL_FOLDER_KEY, empty)
        try:
            return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unloadable graphs
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"onnxruntime cannot load {what}: {first[:300]}") from None


def run_bounded(session: Any, names: Sequence[str], feeds: Mapping[str, Any], seconds: float, what: str) -> list[Any]:
    """``session.run(names, feeds)``, stopped after ``seconds`` (:class:`ModelError`, naming ``what``)."""
    import onnxruntime as ort

    options = ort.RunOptions()
    options.log_severity_level = 4  # the stop is reported here, not as an onnxruntime error log line
    timer = threading.Timer(seconds, lambda: setattr(options, "terminate", True))
    timer.daemon = True
    timer.start()
    try:
        return session.run(list(names), dict(feeds), options)
    except Exception:
        if options.terminate:
            raise ModelError(f"{what} did not finish within {seconds:g} s; the model is broken or hostile") from None
        raise
    finally:
        timer.cancel()
