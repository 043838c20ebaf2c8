"""Python API of the adversarial half: :func:`evade`, :func:`disguise` and :func:`harden`.

::

    from advgen.adversarial import evade
    result = evade("nsl-kdd:train20", "nsl-kdd:test", category=["dos"], detector="random-forest",
                   preset="idsgan", query_budget=50_000, out="runs/evade-dos")
    result.report["attacks"]["gan"]["eir"], result.adversarial.head()

The command line (``advgen evade``, ``advgen harden``) is a thin layer over these functions.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from advgen.adversarial.blackbox import (
    BUILTIN_NAMES,
    BlackBox,
    Featurizer,
    OnnxDetector,
    binary_target,
    detector_factories,
    train_detector,
)
from advgen.adversarial.data import (
    AttackTable, check_normal, load_attack_table, resolve_normal, select_attacks, split_holdout,
)
from advgen.adversarial.gan_attack import (
    CHECKPOINT_NAME, GanAttack, GanConfig, check_query_budget, load_attack_checkpoint,
)
from advgen.adversarial.mimicry import Mimicry
from advgen.adversarial.random_attack import RandomPerturbation
from advgen.adversarial.space import AttackSpace
from advgen.adversarial.threat import ThreatModel, add_frozen, frozen_model, load_mask, preset
from advgen.errors import AdvgenError, CheckpointError, InvalidDataError
from advgen.metrics import evasion as M
from advgen_tabular.follows import label_columns

SOURCE_COLUMN = "source_row"
REPORT_NAME = "report.json"
BASELINES = ("mimicry", "random")
OUTPUT_SUFFIXES = (".csv", ".parquet")


# --- inputs --------------------------------------------------------------------------------------


@dataclass
class Inputs:
    """Everything an attack run reads: the detector's training table and the rows to disguise."""

    train: AttackTable
    pool: AttackTable  # the table the attack rows come from (its normal rows measure false positives)
    rows: pd.DataFrame  # the attack rows, index reset
    source: np.ndarray  # each attack row's index in ``pool``'s file
    pool_source: np.ndarray  # each pool row's index in its file
    notes: list[str] = field(default_factory=list)
    picked: np.ndarray | None = None  # each attack row's position in ``pool.df``

    def complete(self, df: pd.DataFrame) -> pd.DataFrame:
        """Rows made from the attack rows, one each and in order, with every column of the attack
        table in its order: the columns the loader dropped as constant come back with each attack
        row's own value (copied unchanged, as functional cells are)."""
        return self.pool.complete(df, self.picked)

    def classes_of(self) -> Callable[[pd.DataFrame], np.ndarray]:
        label, cmap = self.train.label, self.train.category_map

        def classes(df: pd.DataFrame) -> np.ndarray:
            labels = df[label].astype(str)
            return (labels.map(cmap).fillna(labels) if cmap else labels).astype(str).to_numpy()

        return classes

    def normal_train(self, normal: str) -> pd.DataFrame:
        return self.train.df[self.train.classes() == normal].reset_index(drop=True)

    def normal_pool(self, normal: str) -> pd.DataFrame:
        return self.pool.df[self.pool.classes() == normal].reset_index(drop=True)


def _split_list(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v).strip() for v in value]
    items = [v for v in items if v]
    return items or None


def load_inputs(
    data: str, attacks: str | None = None, *, label: str | None = None, schema_file: str | None = None,
    category: str | Sequence[str] | None = None, label_value: str | Sequence[str] | None = None,
    normal: str | None = None, holdout: float = 0.5, seed: int = 0,
) -> tuple[Inputs, str]:
    """Read the tables and pick the attack rows; returns the inputs and the benign class's name."""
    train = load_attack_table(data, label=label, schema_file=schema_file)
    notes = [f"data: {n}" for n in train.notes]
    normal = resolve_normal(train, normal, notes)
    check_normal(train, normal)
    if attacks is not None:
        pool = load_attack_table(attacks, label=label, schema_file=schema_file, like=train)
        pool_source = np.arange(len(pool.df))
        notes += [f"attacks: {n}" for n in pool.notes]
    else:
        keep, held = split_holdout(train, holdout, seed)
        pool = train.subset(held)
        pool_source = held
        train = train.subset(keep)
        notes.append(f"no --attacks: the detector learns {len(keep):,} rows of the data, the attack uses the other {len(held):,}")
        check_normal(train, normal)
    idx = select_attacks(pool, category=_split_list(category), label_value=_split_list(label_value), normal=normal)
    rows = pool.df.iloc[idx].reset_index(drop=True)
    return Inputs(train, pool, rows, pool_source[idx], pool_source, notes, idx), normal


def detector_features(data: str, *, label: str | None = None, schema_file: str | None = None) -> Featurizer:
    """The features advgen's detectors see for the training data ``data``: call it on a DataFrame to get
    the matrix an ONNX detector with one float input is fed (``.names`` names its columns).

    ::

        feat = detector_features("nsl-kdd:train20")
        model.fit(feat(table), y)   # then skl2onnx.to_onnx(model, feat(table[:1]).astype("float32"))
    """
    table = load_attack_table(data, label=label, schema_file=schema_file)
    return Featurizer(table.df, table.features, table.label)


def threat_model(
    inputs: Inputs, *, preset_name: str | None = None, frozen: str | Sequence[str] | None = None, mask_file: str | None = None,
) -> ThreatModel:
    """The threat model from a preset, a mask file or a frozen list (a preset plus --frozen freezes more)."""
    cols = inputs.train.features
    groups = dict(inputs.train.feature_groups)
    frozen_list = _split_list(frozen)
    if preset_name and mask_file:
        raise InvalidDataError("choose one of --preset and --mask")
    if preset_name:
        model = preset(preset_name, cols, groups)
        return _freeze_label_columns(add_frozen(model, frozen_list, groups) if frozen_list else model, inputs)
    if mask_file:
        model = load_mask(mask_file, cols, groups)
        return _freeze_label_columns(add_frozen(model, frozen_list, groups) if frozen_list else model, inputs)
    if frozen_list:
        return _freeze_label_columns(frozen_model(frozen_list, cols, groups), inputs)
    raise InvalidDataError("say what an attack may change: --preset idsgan|realistic|malgan, --frozen COLS or --mask FILE.toml")


def _freeze_label_columns(model: ThreatModel, inputs: Inputs) -> ThreatModel:
    """``model`` with the features that follow the label frozen too (:func:`label_columns`), with a note."""
    follows = [c for c in label_columns(inputs.train.df, inputs.train.features, inputs.train.label)
               if any(c in mod for mod in model.modifiable.values()) or (model.default is not None and c in model.default)]
    if not follows:
        return model
    note = (f"{', '.join(follows)} follow{'s' if len(follows) == 1 else ''} the label ({inputs.train.label}) in every "
            "training row: frozen, as changing it would relabel a row, not disguise it")
    if note not in inputs.notes:
        inputs.notes.append(note)
    return add_frozen(model, follows, {})


def make_detector(
    name: str, train: AttackTable, featurize: Featurizer, normal: str, *, seed: int = 0, threads: int = 1,
    unsafe_pickle: str | None = None, manager: Any | None = None, extra_rows: pd.DataFrame | None = None,
) -> Any:
    """The detector under attack: a built-in or plugin name trained on ``train`` (plus ``extra_rows``, all
    attacks), a ``.onnx`` file, or (``unsafe_pickle``) a pickled estimator trained like a built-in."""
    if unsafe_pickle is not None:
        from advgen.metrics.detectors import load_pickled_detector

        factory, shown = load_pickled_detector(unsafe_pickle), f"pickled:{Path(unsafe_pickle).name}"
    elif str(name).lower().endswith(".onnx"):
        return OnnxDetector(name, featurize, normal=normal)
    else:
        factories = detector_factories(manager)
        if name not in factories:
            raise InvalidDataError(f"unknown detector {name!r}; available: {', '.join(sorted(factories))}, or a .onnx file")
        factory, shown = factories[name], name
    df = train.df
    y = binary_target(train.classes(), normal)
    if extra_rows is not None and len(extra_rows):
        df = pd.concat([df, extra_rows[df.columns]], ignore_index=True)
        y = np.concatenate([y, np.ones(len(extra_rows), dtype=np.int64)])
    return train_detector(factory, shown, df, y, featurize, seed=seed, threads=threads)


def transfer_judges(
    names: Sequence[str], train: AttackTable, featurize: Featurizer, normal: str, *, seed: int, threads: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Detectors that judge the disguised rows: each built-in name, and ``random-forest@seed1`` style
    names for another seed."""
    judges = {}
    for n in names:
        base, _, s = n.partition("@seed")
        try:
            det_seed = int(s) if s else seed
        except ValueError:
            raise InvalidDataError(f"bad transfer detector {n!r}: write NAME or NAME@seedN") from None
        say(f"training transfer detector {n} ...")
        judges[n] = make_detector(base, train, featurize, normal, seed=det_seed, threads=threads)
    return judges


# --- results -------------------------------------------------------------------------------------


@dataclass
class EvadeResult:
    """The disguised rows (``source_row``: the attack row's index in its file), the report and the attack."""

    adversarial: pd.DataFrame
    report: dict[str, Any]
    run_dir: Path | None
    attack: GanAttack
    original: pd.DataFrame
    baselines: dict[str, pd.DataFrame] = field(default_factory=dict)


def _say(progress: Callable[[str], None] | None) -> Callable[[str], None]:
    if progress is None:
        return lambda _m: None
    start = time.perf_counter()
    return lambda m: progress(f"[{time.perf_counter() - start:7.1f} s] {m}")


def _prepare_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """A fresh run may only go into an empty folder, or (``overwrite``) one holding only files advgen writes."""
    from advgen.adversarial.plots import EVASION_PLOT, HARDENING_PLOT

    ours = {CHECKPOINT_NAME, REPORT_NAME, "adversarial.csv", "adversarial.parquet", "hardened.onnx", "hardening_rows.csv",
            EVASION_PLOT, HARDENING_PLOT}
    if out.exists() and not out.is_dir():
        raise InvalidDataError(f"{out} exists and is not a folder")
    if resume or not out.exists():
        return
    present = [p.name for p in out.iterdir() if not p.name.startswith(".")]
    if not present:
        return
    if not overwrite:
        raise InvalidDataError(f"{out} already holds a run ({', '.join(sorted(present)[:4])}); pass --resume to continue it or --overwrite to start again")
    strangers = [p for p in present if p not in ours]
    if strangers:
        raise InvalidDataError(f"{out} holds files advgen did not write ({', '.join(strangers[:4])}); refusing to overwrite")
    for p in present:
        target = out / p
        if target.is_file():
            target.unlink()


def _write_rows(df: pd.DataFrame, path: Path) -> None:
    from advgen.io import write_table

    write_table(df, path)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, (np.bool_,)):
        return bool(o)
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    if isinstance(o, Path):
        return str(o)
    return str(o)


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN and infinities become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write_json(obj: Any, path: Path) -> None:
    from advgen.io import atomic_write_text

    atomic_write_text(path, json.dumps(_clean(obj), indent=2, default=_json_default) + "\n")


class _NoDetector:
    """Stands in for the detector where an attack must not ask anything (a saved generator at work)."""

    name = "none"

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        raise AdvgenError("this attack may not query any detector")

    def score(self, df: pd.DataFrame) -> None:
        return None


def _report_classes(run_dir: str | Path) -> list[str] | None:
    """The attack classes an older run (its checkpoint does not name them) trained on, from its report."""
    p = Path(run_dir)
    report = (p if p.is_dir() else p.parent) / REPORT_NAME
    try:
        classes = json.loads(report.read_text())["inputs"]["classes"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return sorted(str(c) for c in classes) if isinstance(classes, dict) and classes else None


def load_generator(run_dir: str | Path, *, row_classes: Callable[[pd.DataFrame], np.ndarray] | None = None,
                   normal_rows: pd.DataFrame | None = None, progress: Callable[[str], None] | None = None) -> GanAttack:
    """A trained GAN attack from a run folder, with no black box: it disguises rows without queries, those
    of the classes it was trained on (the others come back unchanged, with a note to ``progress``)."""
    payload = load_attack_checkpoint(run_dir)
    spec = payload["spec"]
    space = AttackSpace.from_dict(spec["space"])
    threat = ThreatModel.from_dict(spec["threat"])
    cfg = GanConfig.from_dict(payload["config"])
    label = space.label
    classes_map = spec.get("category_map")

    def default_classes(df: pd.DataFrame) -> np.ndarray:
        labels = df[label].astype(str)
        return (labels.map(classes_map).fillna(labels) if classes_map else labels).astype(str).to_numpy()

    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in space.names})
    attack = GanAttack(BlackBox(_NoDetector(), budget=0), space, threat, row_classes or default_classes,
                       seed=int(spec.get("seed", 0)), normal_rows=normal_rows if normal_rows is not None else empty.iloc[:0],
                       config=cfg, progress=progress)
    attack.load_state(payload)
    attack.blackbox.queries = 0
    attack.blackbox.log.clear()
    attack.notes = []
    if attack.trained_classes is None:
        attack.trained_classes = _report_classes(run_dir)
    attack.fitted = True
    return attack


def disguise(run_dir: str | Path, rows: pd.DataFrame, progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Disguise new attack rows with the generator a run saved (no detector is asked anything). Rows of
    classes it was not trained on come back unchanged; ``progress`` gets the note that counts them."""
    attack = load_generator(run_dir, progress=progress)
    return attack.disguise(rows, tries=0)


# --- evade ---------------------------------------------------------------------------------------


def evade(
    data: str,
    attacks: str | None = None,
    *,
    label: str | None = None,
    schema_file: str | None = None,
    category: str | Sequence[str] | None = None,
    label_value: str | Sequence[str] | None = None,
    normal: str | None = None,
    detector: str = "random-forest",
    detector_seed: int = 0,
    unsafe_pickle: str | None = None,
    preset_name: str | None = None,
    frozen: str | Sequence[str] | None = None,
    mask_file: str | None = None,
    query_budget: int | None = 50_000,
    allow_proba: bool = False,
    config: GanConfig | dict[str, Any] | None = None,
    generator: str | None = None,
    baselines: Sequence[str] = BASELINES,
    baseline_k: int | None = None,
    transfer: Sequence[str] | None = None,
    realism: bool = True,
    holdout: float = 0.5,
    seed: int = 0,
    out: str | Path | None = None,
    output_format: str = "csv",
    resume: bool = False,
    overwrite: bool = False,
    threads: int = 1,
    progress: Callable[[str], None] | None = None,
    manager: Any | None = None,
) -> EvadeResult:
    """Disguise attack rows so that a black-box detector misses them; measure it.

    ``data``: the detector's training data (``DATASET:SPLIT``, a CSV/Parquet file with ``label``, or a
    folder of ``*_mal.npy``/``*_ben.npy``); ``attacks``: the table the attack rows come from (default: a
    held-out ``holdout`` share of ``data``). ``category``/``label_value`` pick the attack rows.
    ``generator``: a run folder whose trained generator disguises the rows with no query (no training).
    Baselines run on their own black box with the queries the GAN used (``baseline_k`` candidates a row,
    default: the GAN's queries a row). ``transfer``: detectors (built-in names, ``NAME@seedN``) that judge
    the rows too (default: all built-ins and a random forest with another seed).
    """
    from advgen.threads import limit_threads

    say = _say(progress)
    if output_format not in ("csv", "parquet"):
        raise InvalidDataError(f"output format must be csv or parquet, got {output_format!r}")
    if query_budget is not None and query_budget < 0:
        raise InvalidDataError(f"the query budget must be >= 0, got {query_budget}")
    if baseline_k is not None and baseline_k < 1:
        raise InvalidDataError(f"baseline K must be >= 1, got {baseline_k}")
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise InvalidDataError(f"unknown baselines {', '.join(unknown)}; choose from {', '.join(BASELINES)}")
    cfg = config if isinstance(config, GanConfig) else GanConfig.from_dict(dict(config or {}))
    cfg.check()
    if generator is None:
        check_query_budget(query_budget, cfg)
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        _prepare_dir(out_dir, resume, overwrite)
    with limit_threads(threads):
        import torch

        torch.manual_seed(seed)
        inputs, normal = load_inputs(data, attacks, label=label, schema_file=schema_file, category=category,
                                     label_value=label_value, normal=normal, holdout=holdout, seed=seed)
        say(f"{len(inputs.rows):,} attack rows to disguise; detector trained on {len(inputs.train.df):,} rows")
        threat = threat_model(inputs, preset_name=preset_name, frozen=frozen, mask_file=mask_file)
        classes_of = inputs.classes_of()
        attack_classes = classes_of(inputs.rows)
        threat.check(attack_classes)
        featurize = Featurizer(inputs.train.df, inputs.train.features, inputs.train.label)
        loaded = unsafe_pickle is not None or str(detector).lower().endswith(".onnx")
        say(f"{'loading' if loaded else 'training'} the detector under attack "
            f"({detector if unsafe_pickle is None else unsafe_pickle}) ...")
        target = make_detector(detector, inputs.train, featurize, normal, seed=detector_seed, threads=threads,
                               unsafe_pickle=unsafe_pickle, manager=manager)
        bb = BlackBox(target, budget=query_budget, allow_proba=allow_proba)
        say("fitting the encoding and the rules on real traffic ...")
        real = pd.concat([inputs.train.df, inputs.pool.df], ignore_index=True)
        space = AttackSpace.fit(real, inputs.train.features, inputs.train.label, seed=seed)
        normal_rows = inputs.normal_train(normal)
        if generator is not None:
            attack = load_generator(generator, row_classes=classes_of, normal_rows=normal_rows, progress=say)
            _check_generator(attack, space, threat)
            say(f"disguising with the generator of {generator} (no queries) ...")
            adv = attack.disguise(inputs.rows, tries=0)
            gan_queries = 0
            inputs.notes.extend(attack.notes)
        else:
            attack = GanAttack(bb, space, threat, classes_of, seed=seed, normal_rows=normal_rows, config=cfg,
                               progress=say, run_dir=out_dir, category_map=inputs.train.category_map)
            if resume:
                if out_dir is None:
                    raise InvalidDataError("--resume needs the run folder (--out)")
                payload = load_attack_checkpoint(out_dir)
                _check_resume(payload, attack)
                attack.load_state(payload)
                say(f"resumed at round {attack.round} with {bb.queries:,} queries used")
            say(f"training the generator ({cfg.rounds} rounds of {cfg.query_batch} queries, budget "
                f"{query_budget if query_budget is not None else 'unlimited'}) ...")
            adv = attack.generate(inputs.rows)
            gan_queries = bb.queries
            inputs.notes.extend(n for n in attack.notes if n not in inputs.notes)
        base_rows: dict[str, pd.DataFrame] = {}
        base_info: dict[str, dict[str, Any]] = {}
        n = max(1, len(inputs.rows))
        k = baseline_k or max(1, min(1024, gan_queries // n))
        for name in baselines:
            # an explicit K gets its K questions a row; by default a baseline gets the GAN's queries
            cap = k * n if baseline_k is not None or generator is not None else gan_queries
            bbb = BlackBox(target, budget=max(cap, 0), allow_proba=allow_proba)
            cls = Mimicry if name == "mimicry" else RandomPerturbation
            kwargs: dict[str, Any] = {"k": k}
            if name == "mimicry":
                kwargs["normal_rows"] = normal_rows
            say(f"baseline {name}: best of {k} a row, at most {cap:,} queries ...")
            base = cls(bbb, space, threat, classes_of, seed=seed, **kwargs)
            base_rows[name] = base.generate(inputs.rows)
            base_info[name] = {"k": k, "queries": bbb.queries}
        judges = transfer_judges(
            transfer if transfer is not None else default_transfer(detector_seed), inputs.train, featurize, normal,
            seed=detector_seed, threads=threads, say=say,
        )
        mask = threat.mask(attack_classes)
        report_attacks: dict[str, Any] = {}
        for name, rows in [("gan", adv), *base_rows.items()]:
            say(f"measuring {name} ...")
            report_attacks[name] = M.attack_metrics(
                inputs.rows, rows, target=target, mask=mask, names=space.names, check=space.validity,
                encode=space.encode, judges=judges, queries=gan_queries if name == "gan" else base_info[name]["queries"],
                featurize=featurize if realism else None, normal=inputs.normal_pool(normal) if realism else None,
                seed=seed, progress=say, reference=real,
            )
            if name in base_info:
                report_attacks[name]["k"] = base_info[name]["k"]
        report = {
            "command": "evade",
            "inputs": {"data": data, "attacks": attacks, "category": _split_list(category),
                       "label_value": _split_list(label_value), "normal": normal, "rows": int(len(inputs.rows)),
                       "classes": {str(k_): int(v) for k_, v in zip(*np.unique(attack_classes, return_counts=True))}},
            "threat": {"name": threat.name, "modifiable": {c: sorted(threat.modifiable_for(c)) for c in sorted(set(attack_classes))},
                       "increase_only": {c: sorted(k_ for k_, v in threat.directions_for(c).items() if v == "up")
                                         for c in sorted(set(attack_classes))}},
            "detector": {"name": getattr(target, "name", detector), "seed": detector_seed,
                         "answers": "probabilities" if allow_proba else "labels"},
            "queries": {"budget": query_budget, "used": gan_queries, "by_purpose": bb.queries_by_purpose() if generator is None else {},
                        "split": attack.query_split() if generator is None else None},
            "generator": {"from": generator} if generator is not None else {
                "config": cfg.__dict__, "rounds_done": attack.round, "stopped": attack.stopped,
                "last_rounds": attack.history[-5:]},
            "attacks": report_attacks,
            "rules": {"count": len(space.rules), "fitted_on": "the detector's training data and the attack rows' table"},
            "notes": inputs.notes,
            "seed": seed,
        }
        adversarial = inputs.complete(adv)
        adversarial[SOURCE_COLUMN] = inputs.source
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            _write_rows(adversarial, out_dir / f"adversarial.{output_format}")
            from advgen.adversarial.plots import EVASION_PLOT, plot_evasion, write_figure

            curve = attack.history if generator is None else []
            plot = write_figure(lambda p: plot_evasion(report, curve, p), out_dir / EVASION_PLOT, say)
            if plot:
                report["plot"] = plot
            write_json(report, out_dir / REPORT_NAME)
        return EvadeResult(adversarial, report, out_dir, attack, inputs.rows, base_rows)


def default_transfer(seed: int) -> list[str]:
    return [*BUILTIN_NAMES, f"random-forest@seed{seed + 1}"]


def _check_generator(attack: GanAttack, space: AttackSpace, threat: ThreatModel) -> None:
    if attack.space.names != space.names:
        raise InvalidDataError("the saved generator was trained on other feature columns than these rows have")


def _check_resume(payload: dict[str, Any], attack: GanAttack) -> None:
    spec = payload["spec"]
    if spec.get("threat") != json.loads(json.dumps(attack.threat.to_dict())):
        raise CheckpointError("the run was trained under another threat model; resume it with the same options")
    if payload["config"] != json.loads(json.dumps(attack.config.__dict__)):
        raise CheckpointError("the run was trained with other GAN settings; resume it with the same options")
    if spec.get("space", {}).get("columns") != [list(c) for c in attack.space.columns]:
        raise CheckpointError("the run was trained on other feature columns")


def harden(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """See :func:`advgen.adversarial.harden.harden`."""
    from advgen.adversarial.harden import harden as _harden

    return _harden(*args, **kwargs)
