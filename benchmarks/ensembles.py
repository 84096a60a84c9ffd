"""Ensembles of lever runs, on validation pairs only (issue 24): do members that differ in what they see (crop,
zoom, colour) merge better than seeds of one recipe? Each run's held-out pairs of training people, never a test list.

Each member scores its own preprocessed images, by its trained head and by the cosine of its twin's embeddings;
an ensemble averages its members' head logits (as `lfwbench ensemble` merges them) and their cosines (no parameter
fitted on the pairs it is scored on), on the listed validation pairs and on pairs drawn among the same people
(benchmarks/levers.py). The runs of one ensemble must share their validation pairs (the same people list and split
seed). Accuracy at the threshold best on those pairs (the one evaluate would apply to a test list) and AUC; with
--flip, of every image averaged with its mirror; with --val-fraction, on the people held out at that fraction
(benchmarks/levers.py).

Usage: python benchmarks/ensembles.py DATA_ROOT runs/levers/cpu-base+runs/levers/cpu-seed1 runs/levers/cpu-base ...
       [--flip] [--val-fraction F]
"""

from __future__ import annotations

import argparse
from functools import cache
from pathlib import Path

import numpy as np
from levers import PairScores, cell, validation_scores
from scipy.special import logit


def merged(members: list[PairScores], name: str) -> PairScores:
    """The members' mean head logit (as `lfwbench ensemble` merges) and mean cosine, on pairs they all share."""
    first = members[0]
    if not all(np.array_equal(member.labels, first.labels) for member in members):
        raise SystemExit(f"{name}: the members do not share their validation pairs")
    head = np.mean([logit(np.clip(member.head, 1e-7, 1 - 1e-7)) for member in members], axis=0)
    return PairScores(first.labels, head, np.mean([member.cosine for member in members], axis=0))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("ensembles", nargs="+", help="run folders joined by '+'")
    parser.add_argument("--many", type=int, default=4000, help="pairs drawn among the validation people")
    parser.add_argument("--flip", action="store_true", help="test-time flip averaging")
    parser.add_argument("--val-fraction", type=float, help="score on the people held out at this fraction")
    args = parser.parse_args()
    scores = cache(lambda folder: validation_scores(Path(folder), args.data, args.many, args.flip, args.val_fraction))
    print("accuracy at val. threshold / AUC, on validation pairs only")
    print("| ensemble | members | listed val. pairs: head | cosine | drawn val. pairs | head | cosine |")
    print("|---|---|---|---|---|---|---|")
    for ensemble in args.ensembles:
        folders = ensemble.split("+")
        listed = merged([scores(folder)[0] for folder in folders], ensemble)
        drawn = merged([scores(folder)[1] for folder in folders], ensemble)
        names = " + ".join(Path(folder).name for folder in folders)
        print(f"| {names} | {len(folders)} | {cell(listed.labels, listed.head)} | "
              f"{cell(listed.labels, listed.cosine)} | {len(drawn.labels)} | {cell(drawn.labels, drawn.head)} | "
              f"{cell(drawn.labels, drawn.cosine)} |")  # fmt: skip


if __name__ == "__main__":
    main()
