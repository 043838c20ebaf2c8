"""How much do cover rows alone harden the forest, and where is the ceiling? (docs/adversarial.md, harden)

Retrains the NSL-KDD DoS random forest (KDDTrain+_20Percent, 100 trees, seed 0) on its training data
plus cover rows of several kinds (no GAN rows, no queries) and prints, for each: the DR on KDDTest+'s
clean DoS rows, split into attack types the training data holds and types it does not, the FPR on
KDDTest+'s normal rows, and the DR on one mimicry draw of every test DoS row (modifiable features from
random normal training rows: a cheap stand-in for an adaptive attacker). With ``--adversarial FILE``
(an ``advgen evade`` run's adversarial.csv against the original forest) also the DR on those rows.

    python benchmarks/harden_cover.py [--adversarial runs/adv/dos-s0/adversarial.csv]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from advgen.adversarial.api import load_inputs, make_detector, threat_model
from advgen.adversarial.blackbox import Featurizer
from advgen.adversarial.cover import cover_rows
from advgen.adversarial.data import select_attacks
from advgen.adversarial.mimicry import borrow
from advgen.adversarial.random_attack import uniform_draw
from advgen.adversarial.space import AttackSpace


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--adversarial", help="adversarial.csv of an evade run against the original forest")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    inputs, normal = load_inputs("nsl-kdd:train20", "nsl-kdd:test", category="dos")
    threat = threat_model(inputs, preset_name="idsgan")
    featurize = Featurizer(inputs.train.df, inputs.train.features, inputs.train.label)
    space = AttackSpace.fit(pd.concat([inputs.train.df, inputs.pool.df], ignore_index=True), inputs.train.features,
                            inputs.train.label, seed=0)
    classes_of = inputs.classes_of()
    train_attacks = inputs.train.df.iloc[select_attacks(inputs.train, category=["dos"], label_value=None, normal=normal)]
    train_attacks = train_attacks.reset_index(drop=True)
    label = inputs.train.label
    known = inputs.rows[label].astype(str).isin(set(train_attacks[label].astype(str))).to_numpy()
    test_normal, normal_rows = inputs.normal_pool(normal), inputs.normal_train(normal)
    mask_t, up_t = threat.mask(classes_of(train_attacks)), threat.up_mask(classes_of(train_attacks))
    mask, up = threat.mask(classes_of(inputs.rows)), threat.up_mask(classes_of(inputs.rows))
    mimic_test = borrow(space, inputs.rows, mask, up, normal_rows, np.random.default_rng(99))
    adversarial = pd.read_csv(args.adversarial)[inputs.rows.columns] if args.adversarial else None

    def mimicry(k: int, seed: int) -> pd.DataFrame:
        return cover_rows(train_attacks, normal_rows, space, threat, classes_of, draws=k, seed=seed)

    def uniform(k: int, seed: int) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        return pd.concat([uniform_draw(space, train_attacks, mask_t, up_t, rng) for _ in range(k)], ignore_index=True)

    variants = {
        "none": None,
        "mimicry x1 (advgen harden's default)": mimicry(1, 1),
        "mimicry x4": mimicry(4, 1),
        "random x1": uniform(1, 1),
        "random x4": uniform(4, 1),
        "mimicry x2 + random x2": pd.concat([mimicry(2, 1), uniform(2, 2)], ignore_index=True),
    }
    print(f"{len(inputs.rows):,} KDDTest+ DoS rows, {int(known.sum()):,} of types in the training data, "
          f"{int((~known).sum()):,} of types it lacks")
    head = f"{'cover rows':38s} {'clean DR':>8s} {'known':>7s} {'unseen':>7s} {'FPR':>7s} {'mimicry':>8s}"
    print(head + (f" {'adversarial':>11s}" if adversarial is not None else "") + "  seconds")
    for name, extra in variants.items():
        t = time.perf_counter()
        det = make_detector("random-forest", inputs.train, featurize, normal, seed=0, threads=args.threads, extra_rows=extra)
        clean = det.predict(inputs.rows)
        line = (f"{name:38s} {clean.mean():8.3f} {clean[known].mean():7.4f} {clean[~known].mean():7.3f} "
                f"{det.predict(test_normal).mean():7.4f} {det.predict(mimic_test).mean():8.3f}")
        if adversarial is not None:
            line += f" {det.predict(adversarial).mean():11.3f}"
        print(line + f"  {time.perf_counter() - t:7.1f}", flush=True)


if __name__ == "__main__":
    main()
