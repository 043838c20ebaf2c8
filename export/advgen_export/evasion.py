"""Disguise attack rows with a generator exported from an ``advgen evade`` run, without torch.

>>> from advgen_export.runtime import load
>>> model = load("evade.onnx")                    # an EvasionModel: the manifest has an evasion section
>>> adv = model.disguise(rows, seed=0)            # the rows' columns, disguised, plus source_row
>>> model.write_disguised("rows.csv", "adv.csv", seed=0)

Each row goes through what ``advgen evade --generator RUN`` does to it with one draw of noise and no
detector: its class (label, then category) says whether the model disguises it (a row of a class the
run was not trained on, the benign class included, is written unchanged, with a note counting such rows;
rows without a label column are all taken as the one class the run trained on, with a note) and gives
its mask under the run's threat model; it is encoded;
the graph (generator and tabular decoder) writes its modifiable columns; the decoded cells go on top of
the row, which is repaired to the rules of real traffic; functional cells are copied from the row bit
for bit (:mod:`advgen_export.evasion_space`).

Rows go in chunks of ``advgen.sampling.CHUNK_ROWS``: the noise of chunk ``k`` comes from a numpy
generator seeded with ``chunk_seed(seed, k, 0)``, as ``advgen-runtime sample`` draws latents, so a row's
disguise depends only on the seed, its position in the file and its own values, and a file of any
length is written one chunk at a time (the input table is read whole).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from advgen.adversarial.rows import merge_rows
from advgen.errors import AdvgenError
from advgen.sampling import chunk_seed, chunk_spans, random_seed
from advgen.writers import TableWriter, check_output_size
from advgen_export.evasion_space import EvasionSpace
from advgen_export.manifest import ModelError
from advgen_export.onnx_guard import RUN_SECONDS, run_bounded

SOURCE_COLUMN = "source_row"  # as in advgen evade's adversarial.csv
MAX_SEED = 2**63 - 1


class EvasionModel:
    """An exported evasion model with its manifest, ready to disguise rows."""

    kind = "evasion"

    def __init__(
        self,
        model_path: str | Path,
        manifest: str | Path | None = None,
        *,
        threads: int = 0,
        chunk_rows: int = 4096,
        expect_sha256: str | None = None,
    ) -> None:
        """Load ``model_path`` and its manifest, refusing any pair that does not belong together (the
        same checks as :class:`advgen_export.runtime.GeneratorModel`), or a model that samples."""
        from advgen_export.runtime import open_manifest, open_session

        path = Path(model_path)
        manifest_file, parsed = open_manifest(path, manifest)
        if "evasion" not in parsed:
            raise ModelError(
                f"{path} is a generator that samples, not an evasion model (export an `advgen evade` run for that); "
                f"use `advgen-runtime sample {path.name} -n N -o OUT`"
            )
        session = open_session(path, parsed, threads=threads, expect_sha256=expect_sha256)
        self._setup(path, parsed, session, chunk_rows)
        self.manifest_path = manifest_file

    @classmethod
    def from_session(cls, manifest: dict[str, Any], session: Any, name: str | Path, chunk_rows: int = 4096) -> EvasionModel:
        """A model around an onnxruntime ``session`` whose manifest was checked by the caller (the exporter
        checks an export this way before writing it)."""
        model = cls.__new__(cls)
        model._setup(Path(name), manifest, session, chunk_rows)
        model.manifest_path = None
        return model

    def _setup(self, path: Path, manifest: dict[str, Any], session: Any, chunk_rows: int) -> None:
        self.path = path
        self.manifest = manifest
        self.session = session
        self.chunk_rows = max(1, int(chunk_rows))
        self.output_names = [o["name"] for o in manifest["outputs"]]
        self.space = EvasionSpace(manifest["evasion"], manifest["outputs"])

    # --- what the model is -----------------------------------------------------------------------

    @property
    def z_dim(self) -> int:
        return int(self.manifest["latent"]["size"])

    @property
    def feature_columns(self) -> list[str]:
        return list(self.space.names)

    def info(self) -> dict[str, Any]:
        """A JSON-ready description: plugin, noise size, the columns rows need, the threat model."""
        m, threat = self.manifest, self.manifest["evasion"]["threat"]
        covered = {
            cls: {"modifiable": sorted(cols), "increase_only": sorted(threat["directions"].get(cls, {}))}
            for cls, cols in threat["modifiable"].items()
        }
        if threat["default"] is not None:
            covered["(any other class)"] = {"modifiable": sorted(threat["default"]),
                                            "increase_only": sorted(threat["default_directions"])}
        return {
            # what the model does to the rows it disguises: only rows of the trained classes are disguised
            "disguised": self._disguised_masks(),
            "model": str(self.path),
            "sha256": m["model"]["sha256"],
            "opset": m["model"].get("opset"),
            "created": m.get("created"),
            "plugin": m.get("plugin"),
            "kind": self.kind,
            "z_dim": self.z_dim,
            "columns": self.feature_columns,
            "label": self.space.label,
            "category_map": bool(self.space.category_map),
            "trained_classes": self.space.trained,
            "threat": {"name": threat["name"], "classes": covered},
            "rules": len(m["evasion"]["rules"]),
            "outputs": m["outputs"],
        }

    def _disguised_masks(self) -> list[dict[str, Any]] | None:
        """Per group of trained classes that share a mask: the classes, the columns they may change, those
        that may only grow, and whether the mask is the class's own or the threat model's default (for
        classes it does not name). None when the export did not record its classes (every row is
        disguised, each with its class's mask)."""
        trained = self.space.trained
        if not trained:
            return None
        threat = self.manifest["evasion"]["threat"]
        groups: list[dict[str, Any]] = []
        default: list[str] = []
        unknown: list[str] = []
        for cls in map(str, trained):
            if cls in threat["modifiable"]:
                groups.append({"classes": [cls], "mask": "own", "modifiable": sorted(threat["modifiable"][cls]),
                               "increase_only": sorted(threat["directions"].get(cls, threat["default_directions"]))})
            elif threat["default"] is not None:
                default.append(cls)
            else:
                unknown.append(cls)
        if default:
            groups.append({"classes": default, "mask": "default", "modifiable": sorted(threat["default"]),
                           "increase_only": sorted(threat["default_directions"])})
        if unknown:
            groups.append({"classes": unknown, "mask": None, "modifiable": [], "increase_only": []})
        return groups

    # --- disguising --------------------------------------------------------------------------------

    def run(self, rows: np.ndarray, mask: np.ndarray, z: np.ndarray) -> dict[str, np.ndarray]:
        """The graph on encoded rows ``[n, dim]``, masks ``[n, columns]`` and noise ``[n, z_dim]``, in
        batches of ``chunk_rows``; raw outputs by name."""
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        mask = np.ascontiguousarray(mask, dtype=np.float32)
        z = np.ascontiguousarray(z, dtype=np.float32)
        n = len(rows)
        if n == 0:
            return {o["name"]: np.zeros((0, *o["shape"]), dtype=o["dtype"]) for o in self.manifest["outputs"]}
        for name, arr, width in (("rows", rows, self.space.dim), ("mask", mask, len(self.space.names)), ("z", z, self.z_dim)):
            if arr.ndim != 2 or arr.shape != (n, width):
                raise ModelError(f"{name} must have shape [{n}, {width}], got {list(arr.shape)}")
        parts: dict[str, list[np.ndarray]] = {name: [] for name in self.output_names}
        for start in range(0, n, self.chunk_rows):
            end = start + self.chunk_rows
            feeds = {"rows": rows[start:end], "mask": mask[start:end], "z": z[start:end]}
            produced = run_bounded(self.session, self.output_names, feeds, RUN_SECONDS,
                                   f"{Path(self.path).name} on {len(feeds['rows']):,} rows")
            for name, value in zip(self.output_names, produced):
                parts[name].append(value)
        return {name: np.concatenate(chunks) if len(chunks) > 1 else chunks[0] for name, chunks in parts.items()}

    def disguise_with_noise(self, rows: Any, z: np.ndarray, source: str = "the rows") -> Any:
        """``rows`` (a DataFrame with the training columns) disguised with the given noise ``z``
        ``[len(rows), z_dim]``: one draw a row, no detector asked. Columns and their order are kept; rows
        of classes the model was not trained on come back unchanged."""
        classes, take, _ = self.space.split(rows)
        self.space.check_rows(rows, source, take)
        return self._disguised(rows, classes, take, z)

    def _disguised(self, rows: Any, classes: np.ndarray, take: np.ndarray, z: np.ndarray) -> Any:
        """The rows where ``take`` disguised with their rows of ``z``, the others as they are."""
        z = np.asarray(z)
        if z.ndim != 2 or z.shape != (len(rows), self.z_dim):
            raise ModelError(f"z must have shape [{len(rows)}, {self.z_dim}], got {list(z.shape)}")
        if take.all():
            mask, up = self.space.masks(classes)
            produced = self.run(self.space.encode(rows), mask, z)
            return self.space.realise(self.space.decoded(produced), rows, mask, up)
        sub = rows[take].reset_index(drop=True)
        if len(sub) == 0:
            return rows.reset_index(drop=True).copy()
        mask, up = self.space.masks(classes[take])
        produced = self.run(self.space.encode(sub), mask, z[take])
        return merge_rows(rows, take, self.space.realise(self.space.decoded(produced), sub, mask, up))

    def noise(self, seed: int, index: int, rows: int) -> np.ndarray:
        """The noise of chunk ``index`` (``rows`` rows) for ``seed``."""
        rng = np.random.default_rng(chunk_seed(seed, index, 0))
        return rng.standard_normal((rows, self.z_dim), dtype=np.float32)

    def disguise(self, rows: Any, seed: int | None = None, source: str = "the rows",
                 note: Callable[[str], None] | None = None) -> Any:
        """``rows`` disguised, in their columns (a ``source_row`` column they hold is replaced), plus
        ``source_row``: each row's position in ``rows``. Rows of classes the model was not trained on are
        kept as they are; ``note`` gets the line that counts them."""
        import pandas as pd

        seed = _check_seed(seed)
        table, classes, take = self._prepare(rows, source, note)
        parts = [self._chunk(table, classes, take, seed, index, start, stop) for index, start, stop in chunk_spans(len(table))]
        return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]

    def write_disguised(
        self, attacks: str | Path | Any, path: str | Path, seed: int | None = None,
        progress: Callable[[int], None] | None = None, source: str | None = None,
        note: Callable[[str], None] | None = None,
    ) -> Path:
        """Disguise the rows of ``attacks`` (a .csv/.parquet file or a DataFrame) and write them to ``path``
        (.csv or .parquet) one chunk at a time. Every row is checked before anything is written; the file
        appears only once complete, and a failure leaves an earlier file untouched. ``source`` names the
        rows in error messages; rows of classes the model was not trained on are written unchanged, and
        ``note`` gets the line that counts them."""
        seed = _check_seed(seed)
        source = source or (str(attacks) if isinstance(attacks, (str, Path)) else "the rows")
        table, classes, take = self._prepare(read_rows(attacks), source, note)
        out = Path(path)
        n = len(table)
        try:
            check_output_size(out, n * 12 * (len(table.columns) + 1), n)
            with TableWriter(out, n) as writer:
                for index, start, stop in chunk_spans(n):
                    writer.write(self._chunk(table, classes, take, seed, index, start, stop))
                    if progress is not None:
                        progress(stop - start)
        except AdvgenError as exc:  # the runtime reports its own error type
            raise ModelError(str(exc)) from None
        return out

    def _prepare(self, rows: Any, source: str, note: Callable[[str], None] | None) -> tuple[Any, np.ndarray, np.ndarray]:
        """(the rows without a ``source_row`` column, index reset; each row's class; which rows to
        disguise), every row to disguise checked (columns, values, classes) before the first chunk is."""
        import pandas as pd

        if not isinstance(rows, pd.DataFrame):
            raise ModelError(f"rows must be a pandas DataFrame, not {type(rows).__name__}")
        table = rows.drop(columns=[SOURCE_COLUMN], errors="ignore").reset_index(drop=True)
        classes, take, notes = self.space.split(table)
        self.space.check_rows(table, source, take)
        self.space.masks(classes[take])
        for line in notes:
            if note is not None:
                note(line)
        return table, classes, take

    def _chunk(self, table: Any, classes: np.ndarray, take: np.ndarray, seed: int, index: int, start: int, stop: int) -> Any:
        rows = table.iloc[start:stop].reset_index(drop=True)
        adv = self._disguised(rows, classes[start:stop], take[start:stop], self.noise(seed, index, stop - start))
        adv[SOURCE_COLUMN] = np.arange(start, stop, dtype=np.int64)
        return adv


def _check_seed(seed: Any) -> int:
    if seed is None:
        return random_seed()
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise ModelError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    return int(seed)


def read_rows(attacks: Any) -> Any:
    """A DataFrame as it is, or a .csv/.parquet file read with ``advgen.io.read_table``."""
    if not isinstance(attacks, (str, Path)):
        return attacks
    from advgen.io import read_table

    try:
        return read_table(attacks)
    except AdvgenError as exc:
        raise ModelError(str(exc)) from None
