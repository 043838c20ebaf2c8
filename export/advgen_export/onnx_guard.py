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


def _graph_tensors(graph: Any) -> Iterator[tuple[str, Any]]:
    """Every tensor a graph holds, its subgraphs' included, with a name to report (no recursion: a model
    could nest graphs deeply)."""
    stack = [graph]
    while stack:
        g = stack.pop()
        for t in g.initializer:
            yield t.name, t
        for st in g.sparse_initializer:
            yield st.values.name, st.values
            yield st.values.name, st.indices
        for node in g.node:
            yield from _attribute_tensors(node, stack)


def _attribute_tensors(node: Any, graphs: list[Any]) -> Iterator[tuple[str, Any]]:
    """The tensors in a node's attributes; its subgraphs go on ``graphs`` to be walked."""
    label = node.name or node.op_type
    for a in node.attribute:
        if a.HasField("t"):
            yield a.t.name or f"{label}.{a.name}", a.t
        for t in a.tensors:
            yield t.name or f"{label}.{a.name}", t
        sparse = [a.sparse_tensor] if a.HasField("sparse_tensor") else []
        for st in [*sparse, *a.sparse_tensors]:
            yield f"{label}.{a.name}", st.values
            yield f"{label}.{a.name}", st.indices
        if a.HasField("g"):
            graphs.append(a.g)
        graphs.extend(a.graphs)


def external_references(data: bytes) -> list[str]:
    """The names of the tensors of a serialized model that keep their values in another file."""
    import onnx
    from google.protobuf.message import DecodeError

    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelError(f"not an ONNX model: {str(exc).splitlines()[0][:200] if str(exc) else 'cannot be parsed'}") from None
    tensors = list(_graph_tensors(model.graph))
    for fn in model.functions:
        stack: list[Any] = []
        for node in fn.node:
            tensors.extend(_attribute_tensors(node, stack))
        for g in stack:
            tensors.extend(_graph_tensors(g))
    found = [name for name, t in tensors if t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data)]
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
