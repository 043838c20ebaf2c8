"""Harden a detector: retrain it on disguised attack rows, attack it again, repeat.

Round r (1..R) disguises the attack rows of the detector's *training* data against the current
detector (a GAN attack with the full query budget), adds them to the training data labelled as attacks,
together with every row that attack made while training and the detector missed (its blind spots), and
retrains. Round 1 also adds ``cover`` draws of cover rows per training attack row
(:mod:`~advgen.adversarial.cover`: the attack rows with the modifiable features of normal rows, no
queries), so that the detector learns early not to trust what an attacker controls. Every round, the
current detector is judged on the held-out attack table: detection rate on clean attack rows, false-positive rate on its clean normal rows, and detection rate on **fresh**
disguised rows, made by a new attack run (same budget) against that very detector. The test rows are
never used for training, so the figures are what a new attacker would meet.

The hardened detector is written as ONNX (``hardened.onnx``: one float input ``features``, advgen's
detector features; ``advgen evade --detector hardened.onnx`` attacks it again) when skl2onnx is
installed (``pip install 'advgen[adversarial]'``); without it, the run writes the recipe instead: the
disguised rows it trained on (``hardening_rows.csv``) and, in the report, the detector and the data,
which retrain the same detector without unpickling anything.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from advgen.adversarial.blackbox import BlackBox, Featurizer, FittedDetector
from advgen.adversarial.cover import cover_rows
from advgen.adversarial.gan_attack import GanAttack, GanConfig, check_query_budget
from advgen.errors import AdvgenError, InvalidDataError

ONNX_NAME = "hardened.onnx"
ROWS_NAME = "hardening_rows.csv"

# the false-positive rate on normal rows counts as risen "markedly" when it more than doubles and grows by
# at least two points: 0.027 -> 0.028 is noise, 0.040 -> 0.10 is 6 more normal rows in a hundred flagged
FPR_RISE_FACTOR = 2.0
FPR_RISE_MIN = 0.02


def fpr_rose(before: float, after: float) -> bool:
    """Whether the false-positive rate rose markedly: more than ``FPR_RISE_FACTOR`` times and by at least
    ``FPR_RISE_MIN``."""
    return after > FPR_RISE_FACTOR * before and after - before >= FPR_RISE_MIN


def fpr_warning(history: Sequence[dict[str, Any]], cover: int) -> str | None:
    """A warning when the hardened detector's false-positive rate on normal rows rose markedly over round 0
    (:func:`fpr_rose`), with what to try; None otherwise."""
    before, last = history[0]["fpr_normal"], history[-1]
    if len(history) < 2 or not fpr_rose(before, last["fpr_normal"]):
        return None
    after = last["fpr_normal"]
    ratio = f"{after / before:.1f} times" if before > 0 else "up from none"
    why = ("cover rows (each training attack wearing a normal row's modifiable features) can teach it that "
           "normal values of those features mean attack, the more so the more features are modifiable: try "
           "--cover 0, or freeze more features (--frozen, --preset, --mask)"
           if cover and last.get("cover_rows") else
           "the disguised rows it trained on look like normal rows where most features are modifiable: "
           "freeze more features (--frozen, --preset, --mask) or run fewer --harden-rounds")
    return (f"FPR on normal rows rose from {before:.4f} to {after:.4f} after round {last['round']} "
            f"({ratio}): the hardened detector flags many more normal rows; {why}")


def export_onnx(detector: FittedDetector, featurize: Featurizer, path: Path, check_rows: pd.DataFrame) -> dict[str, Any]:
    """Write ``detector`` as ONNX (one float input ``features`` [N, W]) and check it against scikit-learn
    on ``check_rows``; returns how many labels agree. Raises AdvgenError when skl2onnx is missing."""
    try:
        from skl2onnx import to_onnx
        from skl2onnx.common.data_types import FloatTensorType
    except ImportError:
        raise AdvgenError("writing the hardened detector as ONNX needs skl2onnx: pip install 'advgen[adversarial]'") from None
    import onnxruntime as ort

    from advgen.io import atomic_path

    est = detector.estimator
    final = est.steps[-1][1] if hasattr(est, "steps") else est
    try:
        model = to_onnx(est, initial_types=[("features", FloatTensorType([None, featurize.width]))],
                        options={id(final): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    except Exception as exc:  # skl2onnx raises many types for estimators it cannot convert
        raise AdvgenError(f"skl2onnx cannot convert {detector.name}: {str(exc).splitlines()[0][:200]}") from None
    entry = model.metadata_props.add()
    entry.key, entry.value = "advgen.featurization", featurize.signature()
    entry = model.metadata_props.add()
    entry.key, entry.value = "advgen.detector", detector.name
    data = model.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    X = featurize(check_rows).astype(np.float32)
    onnx_labels = np.asarray(session.run(None, {"features": X})[0]).reshape(-1)
    ref = detector.predict(check_rows)
    agree = float(np.mean((onnx_labels != 0).astype(np.int64) == ref))
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return {"path": str(path), "bytes": len(data), "label_agreement": agree, "rows_checked": int(len(check_rows))}


def harden(
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
    preset_name: str | None = None,
    frozen: str | Sequence[str] | None = None,
    mask_file: str | None = None,
    rounds: int = 2,
    cover: int = 1,
    query_budget: int | None = 50_000,
    allow_proba: bool = False,
    config: GanConfig | dict[str, Any] | None = None,
    holdout: float = 0.5,
    seed: int = 0,
    out: str | Path | None = None,
    overwrite: bool = False,
    threads: int = 1,
    progress: Callable[[str], None] | None = None,
    manager: Any | None = None,
) -> dict[str, Any]:
    """Adversarial retraining for ``rounds`` rounds; returns the report (also written to ``out``)."""
    from advgen.adversarial.api import (
        REPORT_NAME,
        _prepare_dir,
        _say,
        load_inputs,
        make_detector,
        threat_model,
        write_json,
    )
    from advgen.adversarial.space import AttackSpace
    from advgen.threads import limit_threads

    say = _say(progress)
    if rounds < 1:
        raise InvalidDataError(f"--rounds must be >= 1, got {rounds}")
    if cover < 0:
        raise InvalidDataError(f"--cover must be >= 0, got {cover}")
    if str(detector).lower().endswith(".onnx"):
        raise InvalidDataError("harden retrains the detector: name a built-in or plugin detector, not an ONNX file")
    cfg = config if isinstance(config, GanConfig) else GanConfig.from_dict(dict(config or {}))
    check_query_budget(query_budget, cfg)
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        _prepare_dir(out_dir, False, overwrite)
    with limit_threads(threads):
        inputs, normal = load_inputs(data, attacks, label=label, schema_file=schema_file, category=category,
                                     label_value=label_value, normal=normal, holdout=holdout, seed=seed)
        from advgen.adversarial.data import select_attacks

        try:
            train_idx = select_attacks(inputs.train, category=_listed(category), label_value=_listed(label_value), normal=normal)
        except InvalidDataError as exc:
            raise InvalidDataError(f"hardening disguises attack rows of the training data, and: {exc}") from None
        train_attacks = inputs.train.df.iloc[train_idx].reset_index(drop=True)
        test_normal = inputs.normal_pool(normal)
        if len(test_normal) == 0:
            raise InvalidDataError(f"the attack table has no {normal!r} rows to measure false positives on")
        threat = threat_model(inputs, preset_name=preset_name, frozen=frozen, mask_file=mask_file)
        classes_of = inputs.classes_of()
        threat.check(classes_of(inputs.rows))
        threat.check(classes_of(train_attacks))
        featurize = Featurizer(inputs.train.df, inputs.train.features, inputs.train.label)
        space = AttackSpace.fit(pd.concat([inputs.train.df, inputs.pool.df], ignore_index=True),
                                inputs.train.features, inputs.train.label, seed=seed)
        normal_rows = inputs.normal_train(normal)

        def attack(det: Any, rows: pd.DataFrame, attack_seed: int, what: str) -> tuple[pd.DataFrame, int, list[pd.DataFrame]]:
            bb = BlackBox(det, budget=query_budget, allow_proba=allow_proba)
            gan = GanAttack(bb, space, threat, classes_of, seed=attack_seed, normal_rows=normal_rows, config=cfg,
                            progress=lambda m: say(f"{what}: {m}"))
            gan.keep_missed = True
            return gan.generate(rows), bb.queries, gan.missed

        label = inputs.train.label
        known = inputs.rows[label].astype(str).isin(set(train_attacks[label].astype(str))).to_numpy()
        extra: list[pd.DataFrame] = []
        covered = 0
        history = []
        det = make_detector(detector, inputs.train, featurize, normal, seed=detector_seed, threads=threads, manager=manager)
        for r in range(rounds + 1):
            start = time.perf_counter()
            if r > 0:
                say(f"round {r}/{rounds}: disguising the {len(train_attacks):,} training attack rows against the current detector ...")
                adv_train, q_train, missed = attack(det, train_attacks, seed + 1000 * r + 1, f"round {r} hardening attack")
                # the disguised rows, and every row the attack made while training that the detector missed:
                # more of its blind spots than the final rows alone show
                extra += [adv_train, *missed]
                if r == 1 and cover:
                    extra.append(cover_rows(train_attacks, normal_rows, space, threat, classes_of, draws=cover, seed=seed + 7))
                    covered = len(extra[-1])
                    say(f"round 1/{rounds}: {covered:,} cover rows (training attacks with the modifiable features of "
                        "normal rows)")
                say(f"round {r}/{rounds}: retraining on {len(inputs.train.df):,} rows + {sum(len(e) for e in extra):,} disguised rows ...")
                det = make_detector(detector, inputs.train, featurize, normal, seed=detector_seed, threads=threads,
                                    manager=manager, extra_rows=pd.concat(extra, ignore_index=True))
            say(f"round {r}/{rounds}: a fresh attack against the {'hardened' if r else 'original'} detector ...")
            adv_eval, q_eval, _ = attack(det, inputs.rows, seed + 1000 * r + 2, f"round {r} fresh attack")
            caught_adv, caught_clean = det.predict(adv_eval), det.predict(inputs.rows)
            rec = {
                "round": r,
                "dr_adversarial": float(np.mean(caught_adv)),
                "dr_clean": float(np.mean(caught_clean)),
                # attack types the training data holds: what hardening on the training attacks can teach
                "dr_adversarial_known_types": float(np.mean(caught_adv[known])) if known.any() else None,
                "dr_clean_known_types": float(np.mean(caught_clean[known])) if known.any() else None,
                "fpr_normal": float(np.mean(det.predict(test_normal))),
                "fresh_attack_queries": q_eval,
                "hardening_queries": q_train if r > 0 else 0,
                "disguised_training_rows": int(sum(len(e) for e in extra)),
                "cover_rows": int(covered),
                "seconds": time.perf_counter() - start,
            }
            rec["fpr_rose"] = bool(r > 0 and fpr_rose(history[0]["fpr_normal"], rec["fpr_normal"]))
            history.append(rec)
            say(f"round {r}/{rounds}: DR on fresh disguised rows {rec['dr_adversarial']:.3f}, clean DR {rec['dr_clean']:.3f}, "
                f"FPR {rec['fpr_normal']:.4f}")
        report: dict[str, Any] = {
            "command": "harden",
            "inputs": {"data": data, "attacks": attacks, "category": _listed(category), "label_value": _listed(label_value),
                       "normal": normal, "test_attack_rows": int(len(inputs.rows)), "test_normal_rows": int(len(test_normal)),
                       "training_attack_rows": int(len(train_attacks)),
                       "test_rows_of_known_types": int(known.sum()),
                       "types_missing_from_training": sorted(set(inputs.rows[label].astype(str)) - set(train_attacks[label].astype(str)))},
            "detector": {"name": detector, "seed": detector_seed, "answers": "probabilities" if allow_proba else "labels"},
            "threat": threat.name,
            "query_budget": query_budget,
            "cover_draws": cover,
            "rounds": history,
            "change": {
                "dr_adversarial": history[-1]["dr_adversarial"] - history[0]["dr_adversarial"],
                "dr_clean": history[-1]["dr_clean"] - history[0]["dr_clean"],
                "fpr_normal": history[-1]["fpr_normal"] - history[0]["fpr_normal"],
            },
            "warnings": [w for w in [fpr_warning(history, cover)] if w],
            "recipe": {"detector": detector, "seed": detector_seed, "data": data,
                       "plus": f"{ROWS_NAME} (labelled attacks)"},
            "notes": inputs.notes,
            "seed": seed,
        }
        if out_dir is not None:
            from advgen.io import write_table

            out_dir.mkdir(parents=True, exist_ok=True)
            # rows made from training attack rows: the training data's constant columns, in its column order
            write_table(inputs.train.complete(pd.concat(extra, ignore_index=True)), out_dir / ROWS_NAME)
            check = pd.concat([inputs.rows, test_normal, adv_eval], ignore_index=True)
            try:
                report["onnx"] = export_onnx(det, featurize, out_dir / ONNX_NAME, check)
                say(f"wrote {out_dir / ONNX_NAME} (labels agree with scikit-learn on {report['onnx']['label_agreement']:.2%} of "
                    f"{len(check):,} rows)")
            except AdvgenError as exc:
                report["onnx"] = {"error": str(exc)}
                say(f"no ONNX file: {exc}; the recipe in the report and {ROWS_NAME} retrain the same detector")
            from advgen.adversarial.plots import HARDENING_PLOT, plot_hardening, write_figure

            plot = write_figure(lambda p: plot_hardening(report, p), out_dir / HARDENING_PLOT, say)
            if plot:
                report["plot"] = plot
            write_json(report, out_dir / REPORT_NAME)
        return report


def _listed(value: str | Sequence[str] | None) -> list[str] | None:
    from advgen.adversarial.api import _split_list

    return _split_list(value)
