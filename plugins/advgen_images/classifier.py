"""The class-consistency judge: a logistic regression on real images, small enough to live in ``spec``.

The validator has to work wherever the spec goes (a checkpoint reloaded elsewhere, an ONNX manifest)
without re-reading the training data, so the classifier is fitted once in ``load_data`` and stored as
plain numbers. To keep that small, images are average-pooled to at most 16x16 per channel first:
at most 768 features for RGB, so a 10-class model is about 8k numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

POOL_SIDE = 16
MAX_FIT_IMAGES = 10_000


def pooled_features(images: np.ndarray, pool: list[int]) -> np.ndarray:
    """Float images ``[N, C, H, W]`` in [0, 1] to pooled, flattened features ``[N, C*ph*pw]``."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    if tuple(x.shape[2:]) != tuple(pool):
        x = F.adaptive_avg_pool2d(x, tuple(pool))
    return x.flatten(1).numpy().astype(np.float64)


def fit_classifier(images: np.ndarray, labels: np.ndarray, n_classes: int, seed: int = 0) -> dict[str, Any]:
    """Fit a standardised multinomial logistic regression; report its accuracy on a held-out fifth.

    Returns the JSON-serialisable model: pooling size, feature mean and scale, weights, biases and
    ``holdout_accuracy`` (how far the judge itself can be trusted).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    h, w = images.shape[2:]
    pool = [min(h, POOL_SIDE), min(w, POOL_SIDE)]
    rng = np.random.default_rng(seed)
    if images.shape[0] > MAX_FIT_IMAGES:
        keep = rng.choice(images.shape[0], MAX_FIT_IMAGES, replace=False)
        images, labels = images[keep], labels[keep]
    feats = pooled_features(images, pool)
    mean = feats.mean(axis=0)
    scale = feats.std(axis=0)
    scale[scale < 1e-6] = 1.0
    z = (feats - mean) / scale
    counts = np.bincount(labels, minlength=n_classes)
    holdout = None
    present = counts[counts > 0]
    if present.size >= 2 and present.min() >= 2 and labels.shape[0] >= max(20, 5 * present.size):
        tr, te = train_test_split(np.arange(labels.shape[0]), test_size=0.2, random_state=seed, stratify=labels)
        probe = LogisticRegression(C=0.1, max_iter=1000).fit(z[tr], labels[tr])
        holdout = float((probe.predict(z[te]) == labels[te]).mean())
    model = LogisticRegression(C=0.1, max_iter=1000).fit(z, labels)
    coef = np.zeros((n_classes, z.shape[1]))
    intercept = np.full(n_classes, -1e4)  # a class absent from training is never predicted
    seen = model.classes_
    if len(seen) == 2:  # scikit-learn stores one row for two classes
        coef[seen[1]], intercept[seen[1]] = model.coef_[0], model.intercept_[0]
        coef[seen[0]], intercept[seen[0]] = 0.0, 0.0
    else:
        coef[seen], intercept[seen] = model.coef_, model.intercept_
    return {
        "kind": "logistic-regression",
        "pool": pool,
        "mean": _rounded(mean),
        "scale": _rounded(scale),
        "coef": _rounded(coef),
        "intercept": _rounded(intercept),
        "holdout_accuracy": holdout,
        "fit_images": int(labels.shape[0]),
    }


def predict(model: dict[str, Any], images: np.ndarray) -> np.ndarray:
    """Class index per float image ``[N, C, H, W]`` under a model from :func:`fit_classifier`."""
    feats = pooled_features(images, model["pool"])
    z = (feats - np.asarray(model["mean"])) / np.asarray(model["scale"])
    logits = z @ np.asarray(model["coef"]).T + np.asarray(model["intercept"])
    return logits.argmax(axis=1)


def _rounded(a: np.ndarray) -> list:
    """Six significant digits: plenty for a linear judge and half the JSON of full doubles."""
    return np.asarray([float(f"{v:.6g}") for v in np.asarray(a, dtype=np.float64).ravel()]).reshape(
        np.shape(a)
    ).tolist()
