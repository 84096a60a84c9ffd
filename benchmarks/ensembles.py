"""Ensembles of lever runs, on validation pairs only (issue 24): do members that differ in what they see (crop,
zoom, colour) merge better than seeds of one recipe? Each run's held-out pairs of training people, never a test list.

Each member compares its own preprocessed images by the cosine of its twin's embeddings (the head cpu-plus fits);
an ensemble averages its members' cosines (no parameter fitted on the pairs it is scored on). The runs of one
ensemble must share their validation pairs (the same people list and split seed). Accuracy at the threshold best on
those pairs (the one evaluate would apply to a test list) and AUC, as benchmarks/heads.py reports them.

Usage: python benchmarks/ensembles.py DATA_ROOT runs/levers/cpu-base+runs/levers/cpu-seed1 runs/levers/cpu-base ...
"""

from __future__ import annotations

import argparse
from functools import cache
from pathlib import Path

import numpy as np
from heads import cosine, figures

from lfwbench import runs
from lfwbench.checkpoints import load_model
from lfwbench.inference import embed_images
from lfwbench.training import prepare_data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("ensembles", nargs="+", help="run folders joined by '+'")
    args = parser.parse_args()

    @cache
    def validation_cosines(folder: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        config = runs.RunFolder(folder).read_config().config.resolved()
        data = prepare_data(config, args.data, progress=False)
        embeddings = embed_images(load_model(Path(folder) / runs.BEST_KERAS), data.images, verbose=0)
        left, right, labels = data.val
        return left, right, labels, cosine(embeddings.astype(np.float64), left, right)

    print("accuracy at val. threshold / AUC, on validation pairs; an ensemble averages its members' cosines")
    print("| ensemble | members | val. pairs | cosine |")
    print("|---|---|---|---|")
    for ensemble in args.ensembles:
        members = [validation_cosines(folder) for folder in ensemble.split("+")]
        left, right, labels, _ = members[0]
        for other in members[1:]:
            if not all(np.array_equal(a, b) for a, b in zip(other[:3], (left, right, labels), strict=True)):
                raise SystemExit(f"{ensemble}: the members do not share their validation pairs")
        scores = np.mean([member[3] for member in members], axis=0)
        names = " + ".join(Path(folder).name for folder in ensemble.split("+"))
        print(f"| {names} | {len(members)} | {len(labels)} | {figures(labels, scores)} |")


if __name__ == "__main__":
    main()
