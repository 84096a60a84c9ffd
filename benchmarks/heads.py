"""Heads fitted after training, on validation pairs only (issue 24): how a trained twin's embeddings are best
compared. Each run's held-out pairs of training people (split by person, as training split them), never a test list.

Per run: the trained L1 head; the twin's cosine, raw and after a projection fitted on the training people's images
(centred, PCA-whitened, within-class whitened (WCCN), LDA); and the L1 head's logit and the cosine stacked (z-scored
and summed, and a logistic regression cross-fitted over 10 folds of the validation pairs). Accuracy at the threshold
best on those pairs (the one evaluate would apply to a test list) and AUC.

Usage: python benchmarks/heads.py DATA_ROOT runs/levers/cpu-base runs/levers/cpu-seed1 ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from levers import cell
from scipy.special import logit
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict

from lfwbench import runs
from lfwbench.checkpoints import load_model
from lfwbench.inference import embed_images, score_embeddings
from lfwbench.training import prepare_data


def cosine(vectors: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.sum(unit[left] * unit[right], axis=1)


def inverse_root(covariance: np.ndarray, ridge: float) -> np.ndarray:
    """covariance^(-1/2), its diagonal raised by `ridge` times the mean variance."""
    size = len(covariance)
    values, vectors = np.linalg.eigh(covariance + ridge * np.trace(covariance) / size * np.eye(size))
    return vectors @ np.diag(values**-0.5) @ vectors.T


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("runs", type=Path, nargs="+")
    args = parser.parse_args()
    columns = ["run", "val. pairs", "L1 head", "cosine", "centred", "PCA-whitened", "WCCN", "LDA 128",
               "L1 logit + cosine (z-sum)", "L1 logit + cosine (logistic, cross-fitted)"]  # fmt: skip
    print("accuracy at val. threshold / AUC, on validation pairs")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for folder in args.runs:
        config = runs.RunFolder(folder).read_config().config.resolved()
        data = prepare_data(config, args.data, progress=False)
        model = load_model(folder / runs.BEST_KERAS)
        embeddings = embed_images(model, data.images, verbose=0).astype(np.float64)
        left, right, labels = data.val
        rows, classes = data.identities  # the training people with two or more images
        train = embeddings[rows]
        mean = train.mean(axis=0)
        centred = embeddings - mean
        means = np.stack([train[classes == k].mean(axis=0) for k in range(classes.max() + 1)])
        within = (train - means[classes]).T @ (train - means[classes]) / len(train)
        lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage=0.5).fit(train, classes)
        head = np.clip(score_embeddings(model, embeddings, left, right), 1e-7, 1 - 1e-7)
        plain = cosine(embeddings, left, right)
        stacked = np.stack([logit(head), plain], axis=1)
        stacked = (stacked - stacked.mean(axis=0)) / stacked.std(axis=0)
        fitted = cross_val_predict(LogisticRegression(), stacked, labels, cv=10, method="decision_function")
        cells = [
            cell(labels, head),
            cell(labels, plain),
            cell(labels, cosine(centred, left, right)),
            cell(labels, cosine(centred @ inverse_root(np.cov(centred[rows].T), 0.1), left, right)),
            cell(labels, cosine(centred @ inverse_root(within, 1.0), left, right)),
            cell(labels, cosine(centred @ lda.scalings_[:, :128], left, right)),
            cell(labels, stacked.sum(axis=1)),
            cell(labels, fitted),
        ]
        print(f"| {folder.name} | {len(labels)} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
