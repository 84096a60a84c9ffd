"""The accuracy levers, on validation pairs only: each run's held-out pairs of training people (split by person, as
training split them), never a test list.

For each run folder: validation accuracy at the validation threshold (the threshold best on those pairs, the one
evaluate would then apply to a test list), validation AUC, the same two for the twin's embeddings compared by cosine
(the head left out), epochs and the median seconds per epoch. The listed validation pairs are few (442 on View 1: a
95% interval of about 3 points), so the same figures follow on `--many` balanced pairs drawn among every image of
the same validation people (never trained on: the unrestricted pool leaves them out), the same draw for every run
of one split. With --flip every image is scored as the mean with its mirror's (test-time flip averaging, as
`lfwbench evaluate --flip` scores). With --val-fraction F every run is scored on the people its split seed holds out
at fraction F instead of its own (nested: the groups of people are taken in one shuffled order), so runs that held
out different fractions compare on people none of them trained on.

Usage: python benchmarks/levers.py [DATA_ROOT] runs/levers/cpu-base runs/levers/cpu-e60 ... [--flip]
       [--val-fraction F]
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from lfwbench.checkpoint_scorer import open_checkpoint
from lfwbench.checkpoints import load_model
from lfwbench.images import default_cache_dir, load_pair_images
from lfwbench.inference import embed_images
from lfwbench.metrics import best_threshold, rates_at
from lfwbench.pairs import DIFFERENT, SAME, Pair
from lfwbench.plan import plan_lists
from lfwbench.runs import BEST_KERAS, Run, RunFolder
from lfwbench.scoring import compare


def figures(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """Accuracy at the threshold best on these pairs, and AUC."""
    return rates_at(labels, scores, best_threshold(labels, scores)).accuracy, float(roc_auc_score(labels, scores))


def cell(labels: np.ndarray, scores: np.ndarray) -> str:
    """A table cell: accuracy at the threshold best on these pairs / AUC."""
    return " / ".join(f"{figure:.4f}" for figure in figures(labels, scores))


def drawn_pairs(listed: list[Pair], image_dir: Path, count: int, seed: int = 0) -> list[Pair]:
    """`count` distinct balanced pairs among every image of the listed pairs' people: same-person pairs from a
    person drawn uniformly (of those with two or more images), different-person pairs from two people drawn so."""
    people = sorted({name for pair in listed for name in pair.people})
    images = {name: len(list((image_dir / name).glob("*.jpg"))) for name in people}
    several = [name for name in people if images[name] >= 2]
    if sum(images[name] * (images[name] - 1) // 2 for name in several) < count // 2:
        raise SystemExit(f"the validation people have fewer than {count // 2} same-person pairs: ask for fewer")
    rng, drawn = np.random.default_rng(seed), {}
    while len(drawn) < count:
        same = len(drawn) % 2 == 0
        first, second = rng.choice(several, 2) if same else rng.choice(people, 2, replace=False)
        if same:
            second = first
        one, two = (int(n) + 1 for n in rng.choice(images[first], 2, replace=False)) if same else (
            int(rng.integers(images[first])) + 1, int(rng.integers(images[second])) + 1)  # fmt: skip
        key = tuple(sorted([(first, one), (second, two)]))
        drawn.setdefault(key, Pair(first, one, second, two, SAME if same else DIFFERENT, 0, len(drawn) + 1))
    return list(drawn.values())


@dataclass(frozen=True)
class PairScores:
    """One run's scores on one set of validation pairs: its trained head's P(same) and its twin's cosine."""

    labels: np.ndarray
    head: np.ndarray
    cosine: np.ndarray


def held_out_pairs(folder: Path, root: Path, run: Run, fraction: float | None) -> list[Pair]:
    """The run's listed validation pairs, or those its split seed holds out at a `fraction` no larger than its own."""
    config = run.config
    if fraction is None or fraction == config.val_fraction:
        return run.validation_pairs(root)[0]
    if fraction > config.val_fraction:
        raise SystemExit(f"{folder}: held out {config.val_fraction} of its pairs; at {fraction} it would be scored on "
                         "people it trained on")  # fmt: skip
    return plan_lists(root, replace(config, val_fraction=fraction)).val


def validation_scores(
    folder: Path, root: Path, many: int, flip: bool = False, fraction: float | None = None
) -> tuple[PairScores, PairScores]:
    """The run's scores on its listed validation pairs (or those of `fraction`), then on `many` pairs drawn among
    the same people."""
    scorer = open_checkpoint(folder / BEST_KERAS, root, engine="float32", flip=flip)
    twin = load_model(folder / BEST_KERAS)
    listed = held_out_pairs(folder, root, scorer.run, fraction)
    scores = []
    for pairs, source in ((listed, "validation"), (drawn_pairs(listed, scorer.image_dir, many), "drawn")):
        loaded = load_pair_images(pairs, scorer.image_dir, scorer.spec, source, cache_dir=default_cache_dir())
        vectors = embed_images(twin, loaded.images, flip=flip, verbose=0).astype(np.float64)
        cosine = compare(vectors, loaded.left, loaded.right, "cosine", str, folder)
        scores.append(PairScores(loaded.labels, scorer.score_images(loaded, False), cosine))
    return scores[0], scores[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--many", type=int, default=4000, help="pairs drawn among the validation people")
    parser.add_argument("--flip", action="store_true", help="test-time flip averaging")
    parser.add_argument("--val-fraction", type=float, help="score on the people held out at this fraction")
    args = parser.parse_args()
    columns = ["run", "epochs", "s/epoch", "val. pairs", "val. accuracy at val. threshold", "val. AUC",
               "twin cosine: accuracy", "twin cosine: AUC", "drawn val. pairs", "head: accuracy / AUC",
               "cosine: accuracy / AUC"]  # fmt: skip
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for folder in args.runs:
        listed, drawn = validation_scores(folder, args.data, args.many, args.flip, args.val_fraction)
        head, cosine = figures(listed.labels, listed.head), figures(listed.labels, listed.cosine)
        history = RunFolder(folder).history()
        seconds = statistics.median(row["seconds"] for row in history) if history else float("nan")
        print(f"| {folder.name} | {len(history)} | {seconds:.1f} | {len(listed.labels)} | {head[0]:.4f} | "
              f"{head[1]:.4f} | {cosine[0]:.4f} | {cosine[1]:.4f} | {len(drawn.labels)} | "
              f"{cell(drawn.labels, drawn.head)} | {cell(drawn.labels, drawn.cosine)} |")  # fmt: skip


if __name__ == "__main__":
    main()
