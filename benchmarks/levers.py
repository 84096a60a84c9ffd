"""The accuracy levers, on validation pairs only: each run's held-out pairs of training people (split by person, as
training split them), never a test list.

For each run folder: validation accuracy at the validation threshold (the threshold best on those pairs, the one
evaluate would then apply to a test list), validation AUC, the same two for the twin's embeddings compared by cosine
(the head left out), epochs and the median seconds per epoch.

Usage: python benchmarks/levers.py [DATA_ROOT] runs/levers/cpu-base runs/levers/cpu-e60 ...
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from lfwbench.checkpoint_scorer import open_checkpoint
from lfwbench.checkpoints import load_model
from lfwbench.images import default_cache_dir, load_pair_images
from lfwbench.inference import embed_images
from lfwbench.metrics import best_threshold, rates_at
from lfwbench.runs import BEST_KERAS
from lfwbench.scoring import compare


def figures(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """Accuracy at the threshold best on these pairs, and AUC."""
    return rates_at(labels, scores, best_threshold(labels, scores)).accuracy, float(roc_auc_score(labels, scores))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("runs", type=Path, nargs="+")
    args = parser.parse_args()
    columns = ["run", "epochs", "s/epoch", "val. pairs", "val. accuracy at val. threshold", "val. AUC",
               "twin cosine: accuracy", "twin cosine: AUC"]  # fmt: skip
    print("| " + " | ".join(columns) + " |")
    print("|---|---|---|---|---|---|---|---|")
    for folder in args.runs:
        scorer = open_checkpoint(folder / BEST_KERAS, args.data, engine="float32")
        pairs, _ = scorer.run.validation_pairs(args.data)
        loaded = load_pair_images(pairs, scorer.image_dir, scorer.spec, "validation", cache_dir=default_cache_dir())
        labels = loaded.labels
        head = figures(labels, scorer.score_images(loaded, False))
        embeddings = embed_images(load_model(folder / BEST_KERAS), loaded.images, verbose=0).astype(np.float64)
        cosine = figures(labels, compare(embeddings, loaded.left, loaded.right, "cosine", str, folder))
        history = scorer.run.history
        seconds = statistics.median(row["seconds"] for row in history) if history else float("nan")
        print(f"| {folder.name} | {len(history)} | {seconds:.1f} | {len(labels)} | {head[0]:.4f} | {head[1]:.4f} | "
              f"{cosine[0]:.4f} | {cosine[1]:.4f} |")  # fmt: skip


if __name__ == "__main__":
    main()
