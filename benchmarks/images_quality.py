"""Does the images domain learn? Class consistency and real-vs-synthetic detection on the digits default.

Trains the default images run (embedded scikit-learn digits, default config) unless ``--run DIR``
names a finished one, then draws 1,000 conditional samples (100 per class) and prints:

* class consistency: the share of samples that classifiers fitted on the real images assign to the
  requested class (the run's own logistic-regression judge, and an independent RBF SVM);
* real-vs-synthetic detection: ROC AUC of advgen's built-in detectors (random forest, gradient
  boosting, logistic regression) telling real images from as many generated ones, by 5-fold
  cross-validation (0.5 = indistinguishable, 1.0 = every generated image is spotted);
* a memorisation check: distances from samples to their nearest real image, against those between
  real images (a copying generator puts samples much nearer to the training set).

    OMP_NUM_THREADS=2 python benchmarks/images_quality.py            # trains (about 2 min on 2 cores)
    python benchmarks/images_quality.py --run runs/images-digits     # judges an existing run
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="an existing run directory to judge instead of training one")
    parser.add_argument("--out", help="where to train (default: a temporary folder)")
    parser.add_argument("--steps", type=int, help="override the default number of steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-class", type=int, default=100, help="conditional samples per class")
    parser.add_argument("--option", action="append", default=[], help="domain option KEY=VALUE")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    import torch

    from advgen.api import load_run, train
    from advgen.config import parse_option

    t0 = time.perf_counter()
    if args.run:
        run = load_run(args.run)
        train_seconds = None
    else:
        out = args.out or tempfile.mkdtemp(prefix="advgen-images-")
        cfg = {"plugin": "images", "out": out, "seed": args.seed}
        if args.steps:
            cfg["steps"] = args.steps
        if args.option:
            cfg["options"] = dict(parse_option(o) for o in args.option)
        run = train(cfg, progress=True)
        train_seconds = run.summary.get("seconds")
    real = run.load_real().samples
    spec = run.spec
    classes = spec["conditions"]["classes"]
    k = len(classes)
    cond = np.repeat(np.arange(k), args.per_class)
    x, _ = run.sample_encoded(len(cond), cond, seed=args.seed + 1)
    fake = run.domain.decode(x, cond, spec)

    report = run.validate(fake)
    figures: dict[str, object] = {
        "run": str(run.run_dir),
        "threads": torch.get_num_threads(),
        "train_seconds": train_seconds,
        "samples": len(fake),
        "judge_holdout_accuracy": spec["classifier"]["holdout_accuracy"],
        "class_consistency_judge": report.rule_rates()["class-consistency"],
        "validity_pass_rate": report.pass_rate,
    }
    figures.update(independent_consistency(run, real, fake, args.seed))
    figures.update(detection_auc(run, real, fake, args.seed))
    figures.update(memorisation(run, real, fake))
    grid = Path(run.run_dir) / "quality-grid.png"
    run.domain.plot(real, fake, grid, spec)
    figures["grid"] = str(grid)
    figures["total_seconds"] = round(time.perf_counter() - t0, 1)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key:32s} {value:.4f}" if isinstance(value, float) else f"{key:32s} {value}")


def independent_consistency(run, real, fake, seed: int) -> dict[str, float]:
    """An RBF SVM fitted on all real images: the share of samples it puts in their requested class."""
    from sklearn.svm import SVC

    feats_real = run.domain.featurize(real, run.spec)
    svm = SVC(C=10.0, gamma="scale", random_state=seed).fit(feats_real, real.y)
    pred = svm.predict(run.domain.featurize(fake, run.spec))
    return {"class_consistency_svm": float((pred == fake.y).mean())}


def detection_auc(run, real, fake, seed: int) -> dict[str, float]:
    """ROC AUC of the built-in detectors telling real from synthetic images (5-fold, balanced sides)."""
    from advgen.metrics.realism import realism_auc

    detectors = run.manager.detectors()
    r = run.domain.featurize(real, run.spec)
    f = run.domain.featurize(fake, run.spec)
    out = {}
    for name in ("random-forest", "gradient-boosting", "logistic-regression"):
        out[f"detector_auc_{name.replace('-', '_')}"] = realism_auc(r, f, detectors[name], seed=seed)["mean"]
    return out


def memorisation(run, real, fake) -> dict[str, float]:
    """Nearest-real-image distances of samples against those of real images among themselves.

    A generator that copies its training images puts samples much nearer to a real image than real
    images are to each other; ``near_copies`` counts samples within half the median real-to-real
    distance (real images themselves give the reference share).
    """
    from sklearn.neighbors import NearestNeighbors

    r = run.domain.featurize(real, run.spec)
    f = run.domain.featurize(fake, run.spec)
    nn = NearestNeighbors(n_neighbors=2).fit(r)
    real_nn = nn.kneighbors(r)[0][:, 1]
    fake_nn = nn.kneighbors(f, n_neighbors=1)[0][:, 0]
    half = 0.5 * float(np.median(real_nn))
    return {
        "nn_distance_median_real": float(np.median(real_nn)),
        "nn_distance_median_synthetic": float(np.median(fake_nn)),
        "near_copies_real": float((real_nn < half).mean()),
        "near_copies_synthetic": float((fake_nn < half).mean()),
        "exact_copies_synthetic": int((fake_nn == 0).sum()),
    }


if __name__ == "__main__":
    main()
