"""The ``tabular`` domain: rows of a mixed-type table, network-traffic features first.

Data comes from :func:`advgen_datasets.load_table`: a registered dataset (NSL-KDD's
KDDTrain+_20Percent when nothing is named) or any CSV/Parquet file with a label column. Rows are
encoded by :class:`~advgen_tabular.transform.TableTransform`, the generator is conditioned on the
label (rare attack classes are drawn often enough by the engine's class-first batches), decoding
gives typed rows with the label and its derived category, and the validators are fitted on the
training rows. Everything the other methods need lives in the JSON ``spec``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from advgen.domain import Domain, RealData, Validator
from advgen.errors import AdvgenError, InvalidDataError
from advgen.io import read_table, save_figure
from advgen.writers import TableWriter
from advgen_tabular.nets import TabularDiscriminator, TabularGenerator
from advgen_tabular.options import DEFAULT_OPTIONS, check_options
from advgen_tabular.transform import (
    DISCRETE_KINDS,
    NUMERIC_KINDS,
    TableDecoder,
    TableTransform,
    frame_from_arrays,
)
from advgen_tabular.codes import decoding_pairs
from advgen_tabular.follows import check_follows, fit_follows, follows_module, write_follows
from advgen_tabular.multiples import decoding_order
from advgen_tabular.orders import order_chain
from advgen_tabular.rules import numbers
from advgen_tabular.validators import build_validators, fit_rules

if TYPE_CHECKING:  # pragma: no cover
    from advgen.config import TrainConfig

DEFAULT_DATASET = "nsl-kdd"
#: classes with fewer training rows get a note: a generator cannot learn a distribution from them
FEW_ROWS = 5
# conditioning on a column with more distinct values than this is almost surely a mistake
MAX_CLASSES = 1000
SUFFIXES = (".csv", ".parquet")


def _options(cfg: TrainConfig) -> dict[str, Any]:
    """The run's options, every one checked (:mod:`advgen_tabular.options`): a bad one is one error line."""
    return check_options(cfg.options)


def _json_value(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


class TabularDomain(Domain):
    name = "tabular"
    description = "rows of a mixed-type table (network-traffic features); default data NSL-KDD"
    version = "0.1.0"
    # rows generated on a GPU are decoded there (decode_tensors); the host only assembles and writes
    decodes_on_device = True

    def __init__(self) -> None:
        self._decoders: dict[tuple[int, str], tuple[dict[str, Any], TableDecoder]] = {}

    # --- configuration -------------------------------------------------------------------------

    def default_config(self) -> dict[str, Any]:
        return {
            "steps": 20000,
            "batch_size": 512,
            "z_dim": 64,
            "loss": "non-saturating",
            "lr_g": 2e-4,
            "lr_d": 2e-4,
            "beta1": 0.5,
            "beta2": 0.999,
            "ema": 0.9995,  # boosting AUC 0.9875 against 0.9885 at 0.999; the raw generator scores 0.998
            "cond_sampling": "log",
            "log_every": 100,
            "ckpt_every": 5000,
            "n_samples": 10000,
            "options": dict(DEFAULT_OPTIONS),
        }

    # --- data ----------------------------------------------------------------------------------

    def load_data(self, cfg: TrainConfig) -> RealData:
        """Read and encode the table in memory, or, when it is larger than the memory budget (or
        ``storage = "disk"``), stream it and encode it once into the run folder
        (:mod:`advgen_tabular.streamed`)."""
        from advgen_datasets import load_table

        from advgen_tabular.streamed import streamed_data

        opts = _options(cfg)
        streamed = streamed_data(self, cfg, opts, DEFAULT_DATASET)
        if streamed is not None:
            return streamed
        if cfg.data:
            table = load_table(
                dataset=cfg.dataset, split=cfg.split, path=cfg.data, label=cfg.label, schema_file=opts["schema"]
            )
        else:
            table = load_table(
                dataset=cfg.dataset or DEFAULT_DATASET, split=cfg.split, label=cfg.label, schema_file=opts["schema"]
            )
        return self.encode_table(table, cfg, opts)

    def encode_table(self, table: Any, cfg: TrainConfig, opts: dict[str, Any] | None = None) -> RealData:
        """Fit the transform and the validators on a loaded :class:`advgen_datasets.Table`."""
        opts = opts or _options(cfg)
        df = table.df
        if len(df) == 0:
            raise InvalidDataError(f"{table.name} has no rows")
        features = [(c.name, c.kind) for c in table.columns if c.role == "feature"]
        if not features:
            raise InvalidDataError(f"{table.name} has no feature columns to generate")
        label = table.label
        notes = list(table.notes)
        conditions = None
        cond = None
        encoded = list(features)
        if label is not None:
            labels = df[label].astype(str)
            classes = sorted(labels.unique().tolist())
            if cfg.conditional:
                if len(classes) > MAX_CLASSES:
                    raise InvalidDataError(
                        f"label column {label!r} has {len(classes)} distinct values; conditioning needs at most "
                        f"{MAX_CLASSES} (pick another --label, or train with --unconditional)"
                    )
                counts = labels.value_counts().reindex(classes).to_numpy()
                own = int((counts == 1).sum())  # rows whose label no other row has
                if len(classes) > 1 and 2 * own > len(df):
                    raise InvalidDataError(
                        f"label column {label!r} looks like an identifier, not a class: {own:,} of its {len(df):,} "
                        "rows carry a value no other row has (pick another --label, or train with --unconditional)"
                    )
                if len(classes) == 1:
                    notes.append(f"label {label} has one class ({classes[0]}): the run is in effect unconditional")
                few = [(c, int(k)) for c, k in zip(classes, counts) if k < FEW_ROWS]
                if few:
                    named = ", ".join(f"{c}: {k}" for c, k in few[:5]) + (f" and {len(few) - 5} more" if len(few) > 5 else "")
                    notes.append(
                        f"{len(few)} class(es) of {label} have fewer than {FEW_ROWS} rows ({named}): their samples can "
                        "only repeat or blur those rows (evaluate's memorisation figures show which)"
                    )
                conditions = {"name": label, "classes": classes, "counts": [int(c) for c in counts]}
                codes = pd.Categorical(labels, categories=classes).codes.astype(np.int64)
                cond = torch.from_numpy(codes)
            else:
                encoded.append((label, "categorical"))  # an unconditional run generates the label too
        transform = TableTransform(
            encoding=opts["encoding"],
            n_quantiles=int(opts["n_quantiles"]),
            joint_max=int(opts["joint_max"]),
            snap_fractions=bool(opts["snap_fractions"]),
            point_masses=int(opts["point_masses"]),
            point_share=float(opts["point_share"]),
        ).fit(df, encoded, seed=cfg.seed, groups=df[label] if label is not None else None)
        x = transform.transform(df, rng=np.random.default_rng(cfg.seed))
        decimals = {p["name"]: p.get("decimals") for p in transform.plans if p["kind"] in NUMERIC_KINDS}
        rules = fit_rules(df, features, label, decimals=decimals, seed=cfg.seed)
        derived = [r for r in rules if r["type"] == "derived"]
        if opts["derive"]:
            transform.derived = [{k: v for k, v in r.items() if k != "real_pass"} for r in derived]
        # columns the decoder computes last: snapping or ordering them first would be undone
        computed = [r["target"] for r in transform.derived] + [f["rate"] for f in transform.fractions]
        if opts["align"]:
            divisors = {r["of"] for r in rules if r["type"] == "multiple" and r.get("of") is not None}
            transform.multiples = decoding_order(
                rules, exclude=set(computed), values={c: numbers(df, c) for c in divisors}
            )
        if opts["keep_pairs"]:
            coded = {c for c, k in features if k in NUMERIC_KINDS or k == "flag"}
            # a multiple's column is snapped after the pairs, which would undo a pair's rewrite
            snapped = {r["a"] for r in transform.multiples}
            transform.pairs = decoding_pairs(rules, df, coded, exclude=set(computed) | snapped)
        if opts["keep_order"]:
            transform.orders = order_chain(rules, exclude=computed)
        joint = [p for p in transform.plans if p["kind"] == "joint"]
        n_spiked = sum(1 for p in transform.plans if p.get("spikes"))
        n_spikes = sum(len(p.get("spikes") or []) for p in transform.plans)
        notes.append(
            f"encoded {len(encoded)} columns into {transform.dim} values ({opts['encoding']} numerics"
            + (f", {joint[0]['name'].replace('|', '/')} as {len(joint[0]['vocab'])} joint values" if joint else "")
            + (f", {len(transform.fractions)} rates decoded as fractions of counts" if transform.fractions else "")
            + (f", {n_spikes} point masses in {n_spiked} columns" if n_spiked else "")
            + (f", {len(transform.derived)} columns computed from others" if transform.derived else "")
            + (f", {len(transform.orders)} orderings kept" if transform.orders else "")
            + (f", {len(transform.multiples)} columns decoded as multiples" if transform.multiples else "")
            + (f", {len(transform.pairs)} pairs of codes kept" if transform.pairs else "")
            + f"); fitted {len(rules)} validation rules"
        )
        coarse = _coarse(transform.plans)
        if coarse:
            notes.append(
                "decoding works in float64, too coarse for the spread of "
                + ", ".join(coarse)
                + ": generated values take few distinct values; subtract an offset (or rescale) first"
            )
        follows: list[dict[str, Any]] = []
        if conditions is not None and opts["follow_label"]:
            info = transform.output_info()
            joint_members = {m["name"] for p in joint for m in p["members"]}
            decodable = {c["name"] for c in info["numeric"]} | (
                {c["name"] for c in info["categorical"]} - joint_members
            )
            follows = fit_follows(df, features, label, conditions["classes"], decodable)
            if follows:
                names = ", ".join(repr(f["column"]) for f in follows)
                notes.append(
                    f"feature column{'s' if len(follows) > 1 else ''} {names} hold{'s' if len(follows) == 1 else ''} "
                    f"one value per class of {label!r}: written from the class, not drawn"
                )
        category_map = dict(table.category_map) if table.category_map and label is not None else None
        spec: dict[str, Any] = {
            "shape": [transform.dim],
            "conditions": conditions,
            "dataset": table.name,
            "split": getattr(table, "split", None),
            "columns": [{"name": c.name, "kind": c.kind, "role": c.role} for c in table.columns],
            "label": label,
            "category_map": category_map,
            "category_column": table.category_column if category_map else None,
            "target": (table.category_column if category_map else label),
            "constants": {k: _json_value(v) for k, v in (table.constants or {}).items()},
            "feature_groups": dict(getattr(table, "feature_groups", {}) or {}),
            # the data file's column order, and the categoricals whose values were integers there
            # (a 0/1 label): sample files keep both (runs before these keys: features, constants,
            # label, as text)
            "column_order": list(getattr(table, "source_order", None) or []),
            "integer_columns": _integer_columns(table, conditions),
            "transform": transform.to_dict(),
            "rules": rules,
            "follows_label": follows,
        }
        samples = self._finish_frame(df[[n for n, _ in features] + ([label] if label else [])].copy(), spec)
        return RealData(x=torch.from_numpy(x), spec=spec, cond=cond, samples=samples, notes=notes)

    # --- conditions ----------------------------------------------------------------------------

    def condition_classes(self, spec: dict[str, Any], key: str, value: str) -> list[int]:
        cond = spec.get("conditions")
        if not cond:
            raise AdvgenError("this tabular run is not conditional; --condition cannot be used")
        classes = [str(c) for c in cond["classes"]]
        category_column = spec.get("category_column")
        if key in (cond["name"], "label"):
            if str(value) not in classes:
                shown = ", ".join(classes[:30]) + (" ..." if len(classes) > 30 else "")
                raise AdvgenError(f"{key}={value} never occurred in training; known values: {shown}")
            return [classes.index(str(value))]
        if category_column and key in (category_column, "category") and spec.get("category_map"):
            cmap = spec["category_map"]
            picked = [i for i, c in enumerate(classes) if cmap.get(c, c) == str(value)]
            if not picked:
                known = sorted({cmap.get(c, c) for c in classes})
                raise AdvgenError(f"{key}={value} never occurred in training; known values: {', '.join(known)}")
            return picked
        keys = [cond["name"]] + ([category_column] if category_column and spec.get("category_map") else [])
        raise AdvgenError(f"unknown condition {key!r}; this run is conditioned on {' or '.join(keys)}")

    def condition_values(self, spec: dict[str, Any]) -> dict[str, list[str]]:
        """Every value ``condition_classes`` accepts, per key (for the ONNX manifest)."""
        cond = spec.get("conditions")
        if not cond:
            return {}
        out = {cond["name"]: [str(c) for c in cond["classes"]]}
        if spec.get("category_map") and spec.get("category_column"):
            cmap = spec["category_map"]
            out[spec["category_column"]] = sorted({cmap.get(str(c), str(c)) for c in cond["classes"]})
        return out

    # --- nets ----------------------------------------------------------------------------------

    def build_generator(self, spec: dict[str, Any], cfg: TrainConfig) -> nn.Module:
        opts = _options(cfg)
        cond = spec.get("conditions")
        return TabularGenerator(
            cfg.z_dim,
            TableTransform.from_dict(spec["transform"]).segments(),
            n_classes=len(cond["classes"]) if cond else 0,
            hidden=int(opts["hidden"]),
            depth=int(opts["depth"]),
            embed_dim=int(opts["embed_dim"]),
            categorical=opts["categorical"],
            tau=float(opts["tau"]),
        )

    def build_discriminator(self, spec: dict[str, Any], cfg: TrainConfig) -> nn.Module:
        opts = _options(cfg)
        cond = spec.get("conditions")
        return TabularDiscriminator(
            int(spec["shape"][0]),
            n_classes=len(cond["classes"]) if cond else 0,
            hidden=int(opts["d_hidden"]),
            depth=int(opts["d_depth"]),
            embed_dim=int(opts["embed_dim"]),
            dropout=float(opts["dropout"]),
            spectral=bool(opts["spectral_norm"]),
            pac=int(opts["pac"]),
            projection=bool(opts["projection"]),
        )

    # --- samples -------------------------------------------------------------------------------

    def decoder(self, spec: dict[str, Any], device: torch.device | str = "cpu") -> TableDecoder:
        """The spec's decoder (the one :meth:`export_module` puts after the generator), its lookup
        tables on ``device``; built once per spec and device."""
        device = torch.device(device)
        key = (id(spec["transform"]), str(device))
        cached = self._decoders.get(key)
        if cached is None or cached[0] is not spec["transform"]:
            cached = (spec["transform"], TableDecoder(spec["transform"]).to(device).eval())
            self._decoders[key] = cached
        return cached[1]

    def decode_tensors(self, x: torch.Tensor, spec: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoded rows to ``(numeric float64 [N, n_num], category index int64 [N, n_cat])`` with torch
        ops where ``x`` is: on a GPU the quantile lookups, category argmaxes and joint tables run there,
        and only these outputs (one number a column) travel to the host."""
        if x.ndim != 2 or x.shape[1] != spec["shape"][0]:
            raise AdvgenError(f"expected encoded rows of width {spec['shape'][0]}, got shape {tuple(x.shape)}")
        with torch.no_grad():
            return self.decoder(spec, x.device)(x.detach())

    def decode(self, x: torch.Tensor, cond: np.ndarray | None, spec: dict[str, Any]) -> pd.DataFrame:
        """Encoded rows, on the CPU or on the device that generated them, to typed rows: decoded with
        torch where they are (:meth:`decode_tensors`), assembled into a DataFrame on the host."""
        num, cat = self.decode_tensors(torch.as_tensor(x).detach().to(torch.float32), spec)
        transform = TableTransform.from_dict(spec["transform"])
        frame = frame_from_arrays(num.cpu().numpy(), cat.cpu().numpy(), transform.output_info())
        conditions = spec.get("conditions")
        if conditions is not None:
            if cond is None or len(cond) != len(frame):
                raise AdvgenError("a conditional run's samples need one class index per row")
            classes = np.asarray([str(c) for c in conditions["classes"]], dtype=object)
            frame[conditions["name"]] = classes[np.asarray(cond, dtype=np.int64)]
            follows = spec.get("follows_label") or []
            if follows:
                info = transform.output_info()
                check_follows(
                    follows, len(classes), [c["name"] for c in info["numeric"]],
                    {c["name"]: [str(v) for v in c["vocab"]] for c in info["categorical"]},
                )
                write_follows(frame, follows, cond)
        return self._finish_frame(frame, spec)

    def _finish_frame(self, frame: pd.DataFrame, spec: dict[str, Any]) -> pd.DataFrame:
        """Constants written back, columns in the data file's order (:func:`sample_columns`), then the
        label's category."""
        for name, value in spec.get("constants", {}).items():
            frame[name] = value
        label = spec.get("label")
        if label is not None and spec.get("category_map") and spec.get("category_column"):
            if spec["category_column"] not in frame:
                # one dictionary lookup per distinct label, not per row
                cmap = spec["category_map"]
                codes, uniques = pd.factorize(frame[label].astype(str))
                categories = np.asarray([str(cmap.get(u, u)) for u in uniques], dtype=object)
                frame[spec["category_column"]] = categories[codes]
        return frame[sample_columns(spec)].reset_index(drop=True)

    def sample_suffixes(self) -> tuple[str, ...]:
        return SUFFIXES

    def open_writer(self, path: Path, spec: dict[str, Any], n: int) -> TableWriter:
        """CSV (header once, rows appended chunk by chunk) or Parquet (row groups of 65,536 rows); a
        categorical whose values were integers in the data file (a 0/1 label) is written as integers."""
        return TableWriter(path, n, integer_columns=spec.get("integer_columns") or ())

    def bytes_per_sample(self, spec: dict[str, Any], suffix: str) -> int:
        # every column of a row: features, constants, label and category; a number or a category
        # name takes about 12 characters with its comma in CSV, at most 8 bytes in Parquet
        columns = len(spec["columns"]) + len(spec.get("constants", {})) + 1
        return columns * (12 if suffix.lower() == ".csv" else 8)

    def read_samples(self, path: Path, spec: dict[str, Any]) -> pd.DataFrame:
        p = Path(path)
        frame = read_table(p)
        missing = [c["name"] for c in spec["columns"] if c["name"] not in frame.columns]
        if missing:
            shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise InvalidDataError(f"{p} lacks {len(missing)} columns of this run's table: {shown}")
        for c in spec["columns"]:
            if c["kind"] == "categorical":
                frame[c["name"]] = frame[c["name"]].astype(str)
        for col in (spec.get("category_column"),):
            if col and col in frame.columns:
                frame[col] = frame[col].astype(str)
        return frame

    def plot(self, real: Any, fake: Any, path: Path, spec: dict[str, Any]) -> bool:
        """Real and generated distributions of a dozen columns (every categorical, then the numerics
        that vary most), one panel each, under a title naming the data and one shared legend."""
        from advgen.io import pyplot

        try:
            plt = pyplot()
        except ImportError:
            return False
        columns = _plot_columns(real, spec)
        if not columns:
            return False
        ncols = 4
        nrows = math.ceil(len(columns) / ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3 * nrows + 0.9), squeeze=False)
        for ax, (name, kind) in zip(axes.ravel(), columns):
            if kind in NUMERIC_KINDS:
                a = pd.to_numeric(real[name], errors="coerce").to_numpy(dtype=np.float64)
                b = pd.to_numeric(fake[name], errors="coerce").to_numpy(dtype=np.float64)
                log = kind != "rate" and np.nanmin(a) >= 0 and np.nanmax(a) > 100
                if log:
                    a, b = np.log1p(a), np.log1p(np.maximum(b, 0))
                bins = _bin_edges(np.concatenate([a, b]))
                ax.hist(a, bins=bins, alpha=0.5, density=True, label="real", color="C0")
                ax.hist(b, bins=bins, alpha=0.5, density=True, label="generated", color="C1")
                ax.set_title(f"{name} (log1p scale)" if log else name, fontsize=11)
                ax.set_ylabel("density", fontsize=8)
            else:
                pa = real[name].astype(str).value_counts(normalize=True)
                pb = fake[name].astype(str).value_counts(normalize=True)
                top = pa.index[:12]
                pos = np.arange(len(top))
                ax.bar(pos - 0.2, pa.reindex(top).to_numpy(), width=0.4, label="real", color="C0", alpha=0.6)
                ax.bar(pos + 0.2, pb.reindex(top, fill_value=0).to_numpy(), width=0.4, label="generated", color="C1",
                       alpha=0.6)
                ax.set_xticks(pos, [str(t)[:10] for t in top], rotation=60, fontsize=8)
                ax.set_title(f"{name} (12 most common values)" if len(pa) > 12 else name, fontsize=11)
                ax.set_ylabel("share of rows", fontsize=8)
            ax.tick_params(labelsize=8)
        for ax in axes.ravel()[len(columns) :]:
            ax.axis("off")
        handles, labels = axes.ravel()[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper right", ncol=2, fontsize=11, frameon=False)
        fig.suptitle(_plot_title(spec, len(real), len(fake), len(columns)), x=0.01, ha="left", fontsize=13)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))
        save_figure(fig, path, dpi=80)
        return True

    # --- judging -------------------------------------------------------------------------------

    def validators(self, spec: dict[str, Any]) -> list[Validator]:
        return build_validators(spec.get("rules", []))

    def featurize(self, samples: Any, spec: dict[str, Any]) -> np.ndarray:
        """Numerics (log1p for non-negative counts and continuous values, whose tails span decades),
        flags as 0/1, categoricals one-hot over the training vocabulary (unseen values: all zeros)."""
        frame = pd.DataFrame(samples)
        transform = TableTransform.from_dict(spec["transform"])
        blocks = []
        for c in spec["columns"]:
            if c["role"] != "feature":
                continue
            name, kind = c["name"], c["kind"]
            if name not in frame.columns:
                raise InvalidDataError(f"samples have no column {name!r}")
            if kind in DISCRETE_KINDS and kind == "categorical":
                vocab = np.asarray([str(v) for v in transform.vocabulary(name)], dtype=object)
                values = frame[name].astype(str).to_numpy(dtype=object)
                blocks.append((values[:, None] == vocab[None, :]).astype(np.float64))
                continue
            v = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)
            v = np.where(np.isfinite(v), v, 0.0)
            if kind in ("count", "continuous") and transform.plan(name).get("min", 0.0) >= 0:
                v = np.log1p(np.maximum(v, 0.0))
            blocks.append(v[:, None])
        return np.concatenate(blocks, axis=1) if blocks else np.zeros((len(frame), 0))

    def labels(self, samples: Any, spec: dict[str, Any]) -> np.ndarray | None:
        frame = pd.DataFrame(samples)
        label = spec.get("label")
        if label is None:
            return None
        target = spec.get("target") or label
        if target in frame.columns:
            return frame[target].astype(str).to_numpy(dtype=object)
        if label not in frame.columns:
            raise InvalidDataError(f"samples have no label column {label!r}")
        labels = frame[label].astype(str)
        if target != label and spec.get("category_map"):
            labels = labels.map(spec["category_map"]).fillna(labels)
        return labels.to_numpy(dtype=object)

    # --- export --------------------------------------------------------------------------------

    def export_module(self, generator: nn.Module, spec: dict[str, Any]) -> nn.Module:
        # the decoder's lookup tables live where the generator does (a run trained on CUDA exports too)
        device = next(generator.parameters()).device
        follows = spec.get("follows_label") or []
        info = TableTransform.from_dict(spec["transform"]).output_info()
        return TabularExport(
            generator,
            TableDecoder(spec["transform"]).to(device),
            follows_module(follows, info, len(spec["conditions"]["classes"])).to(device)
            if follows and spec.get("conditions")
            else None,
        )

    def export_outputs(self, spec: dict[str, Any]) -> list[dict[str, Any]]:
        info = TableTransform.from_dict(spec["transform"]).output_info()
        kinds = {c["name"]: c["kind"] for c in spec["columns"]}
        return [
            {
                "name": "numeric",
                "dtype": "float64",
                "shape": [len(info["numeric"])],
                "meaning": "numeric and flag columns, decoded, rounded to their resolution",
                "columns": [c["name"] for c in info["numeric"]],
                "kinds": [c["kind"] for c in info["numeric"]],
                "dtypes": [c["dtype"] for c in info["numeric"]],
                "decimals": [c["decimals"] for c in info["numeric"]],
            },
            {
                "name": "categorical",
                "dtype": "int64",
                "shape": [len(info["categorical"])],
                "meaning": "index of each categorical column's value in its vocabulary",
                "columns": [c["name"] for c in info["categorical"]],
                "kinds": [kinds.get(c["name"], "categorical") for c in info["categorical"]],
                "vocabularies": [[str(v) for v in c["vocab"]] for c in info["categorical"]],
            },
        ]

    def export_manifest(self, spec: dict[str, Any]) -> dict[str, Any]:
        """How the runtime assembles rows: column order, the condition, the category, constants, and the
        columns its files write as integers."""
        constants = dict(spec.get("constants", {}))
        section: dict[str, Any] = {"kind": "table", "constants": constants}
        label = spec.get("label")
        if label is not None and spec.get("category_map") and spec.get("category_column"):
            section["derived_columns"] = {spec["category_column"]: {"from": label, "map": dict(spec["category_map"])}}
        section["columns"] = sample_columns(spec)
        if spec.get("integer_columns"):
            section["integer_columns"] = list(spec["integer_columns"])
        return section


class TabularExport(nn.Module):
    """Generator, then the tensor-math decoder, then the features that follow the label written from
    the class: ``(z, cond) -> (numeric float64, category int64)``."""

    def __init__(self, generator: nn.Module, decoder: TableDecoder, follows: nn.Module | None = None):
        super().__init__()
        self.generator = generator.eval()
        self.decoder = decoder.eval()
        self.follows = follows.eval() if follows is not None else None

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        num, cat = self.decoder(self.generator(z, cond))
        if self.follows is not None and cond is not None:
            num, cat = self.follows(num, cat, cond)
        return num, cat


def sample_columns(spec: dict[str, Any]) -> list[str]:
    """The columns of a sample row: features, constants and label in the data file's order (the
    spec's ``column_order``; a run from before it: features, constants, label), then the label's
    category, which the file lacks."""
    features = [c["name"] for c in spec["columns"] if c["role"] == "feature"]
    order = features + [c for c in spec.get("constants", {}) if c not in features]
    label = spec.get("label")
    if label is not None:
        order.append(label)
    source = spec.get("column_order")
    if source:
        carried = set(order)
        first = [c for c in source if c in carried]
        order = first + [c for c in order if c not in set(first)]
    if label is not None and spec.get("category_map") and spec.get("category_column"):
        order.append(spec["category_column"])
    return order


def _integer_columns(table: Any, conditions: dict[str, Any] | None) -> list[str]:
    """The table's categoricals (label included) whose values were integers in its file; the label of
    a conditional run only when every class it knows is one."""
    from advgen.writers import integer_text

    categorical = {c.name for c in table.columns if c.kind == "categorical"}
    names = [c for c in getattr(table, "integer_columns", None) or [] if c in categorical]
    if conditions is not None and conditions["name"] in names:
        if not all(integer_text(str(c)) for c in conditions["classes"]):
            names.remove(conditions["name"])
    return names


def _plot_title(spec: dict[str, Any], n_real: int, n_fake: int, n_columns: int) -> str:
    """Which data the figure compares: ``nsl-kdd:train20: 25,192 real vs 5,000 generated rows, 12 of 41
    feature columns``."""
    data = str(spec.get("dataset") or "table")
    if spec.get("split"):
        data += f":{spec['split']}"
    features = [c for c in spec["columns"] if c["role"] == "feature"]
    total = len(features) + len([c for c in spec.get("constants", {}) if c not in {f["name"] for f in features}])
    return f"{data}: {n_real:,} real vs {n_fake:,} generated rows, {n_columns} of {total} feature columns"


def _coarse(plans: list[dict[str, Any]], steps: int = 256) -> list[str]:
    """Numeric columns whose range spans fewer than ``steps`` float64 values at their magnitude
    (1e18 + 0..999: multiples of 128), which decode to a few values."""
    out = []
    for p in plans:
        if p["kind"] in NUMERIC_KINDS and p["max"] > p["min"]:
            spacing = float(np.spacing(np.float64(max(abs(p["min"]), abs(p["max"])))))
            if (p["max"] - p["min"]) / spacing < steps:
                out.append(f"{p['name']!r} (near {p['max']:.3g}, spanning {p['max'] - p['min']:g}, float64 spacing {spacing:g})")
    return out


def _bin_edges(values: np.ndarray, bins: int = 40) -> np.ndarray:
    """Histogram edges of the finite ``values``; numpy's raise for a span narrower than float64 can
    split at the values' magnitude (a constant column at -9.2e18 crashed training at its plot)."""
    finite = values[np.isfinite(values)]
    try:
        return np.histogram_bin_edges(finite, bins=bins)
    except ValueError:
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        pad = max(abs(lo), abs(hi), 1.0) * 1e-9
        return np.linspace(lo - pad, hi + pad, bins + 1)


def _plot_columns(real: pd.DataFrame, spec: dict[str, Any], limit: int = 12) -> list[tuple[str, str]]:
    """A handful of columns worth looking at: every categorical, then the numerics that vary most."""
    feats = [(c["name"], c["kind"]) for c in spec["columns"] if c["role"] == "feature" and c["name"] in real]
    cats = [(n, k) for n, k in feats if k == "categorical"][:4]
    nums = [(n, k) for n, k in feats if k in NUMERIC_KINDS]
    nonzero = sorted(nums, key=lambda nk: -float((pd.to_numeric(real[nk[0]], errors="coerce") != 0).mean()))
    return cats + nonzero[: limit - len(cats)]
