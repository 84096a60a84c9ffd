"""Which pairs and people a run trains, validates and is scored on, and which pairs each epoch sees.

NumPy only, so the protocol is testable without TensorFlow: View 1 (train on pairsDevTrain's people, score
pairsDevTest), or View 2 with fold k held out (train on the other nine folds' pairs and people, score fold k).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lfwbench.config import TrainConfig
from lfwbench.errors import LfwbenchError
from lfwbench.pairs import DIFFERENT, SAME, Pair, load_pairs, load_people, people_of, split_by_person


@dataclass
class ListPlan:
    """The pairs and people of one run by role; `pool` is the unrestricted regime's (name, images) people, the
    validation people left out."""

    train: list[Pair]
    val: list[Pair]
    pool: list[tuple[str, int]]
    eval_people: set[str]

    @property
    def seen_people(self) -> set[str]:
        """Everyone the run trains or validates on."""
        return people_of(self.train) | people_of(self.val) | {name for name, _ in self.pool}


def fold_pairs(
    root: Path, config: TrainConfig, folds: list[list[tuple[str, int]]] | None = None
) -> tuple[list[Pair], list[Pair]]:
    """View 2 with fold `config.fold` held out: (the other folds' pairs, the held-out fold's pairs).

    The lists must follow the official split: each fold's pairs name only people of the same fold of the people
    list (`folds`, read from it when not given); anything else is refused, since the held-out people would then
    leak into training.
    """
    listed = load_pairs(root / config.train_list)
    folds = folds if folds is not None else load_people(root / config.people_list)
    if listed.folds != len(folds) or not 1 <= config.fold <= listed.folds:
        raise LfwbenchError(
            f"fold {config.fold}: {config.train_list} has {listed.folds} folds and {config.people_list} "
            f"{len(folds)}; View 2 needs the same folds in both, numbered from 1"
        )
    for number, fold in enumerate(folds):
        names = {name for name, _ in fold}
        outside = sorted(people_of(p for p in listed.pairs if p.fold == number) - names)
        if outside:
            raise LfwbenchError(
                f"{config.train_list}: fold {number + 1} names {len(outside)} people outside fold {number + 1} of "
                f"{config.people_list} (e.g. {', '.join(outside[:3])}); not the View 2 split"
            )
    held_out = config.fold - 1
    return [p for p in listed.pairs if p.fold != held_out], [p for p in listed.pairs if p.fold == held_out]


def plan_lists(root: Path, config: TrainConfig) -> ListPlan:
    """Split the training pairs by person for validation and gather the unrestricted pool and the people the
    evaluation list holds (none of whom may be trained on)."""
    people_file = root / config.people_list
    people_folds = load_people(people_file) if people_file.is_file() else None
    if config.fold:
        people_folds = people_folds or load_people(people_file)  # View 2 needs it: a missing one is one clear line
        pairs, held_out = fold_pairs(root, config, people_folds)
        eval_people = people_of(held_out) | {name for name, _ in people_folds[config.fold - 1]}
    else:
        pairs = list(load_pairs(root / config.train_list).pairs)
        eval_file = root / config.eval_list
        eval_people = load_pairs(eval_file).people if eval_file.is_file() else set()
    train, val = split_by_person(pairs, config.val_fraction, config.split_seed)
    pool: list[tuple[str, int]] = []
    if config.regime == "unrestricted":
        if people_folds is not None:
            pool = [row for number, fold in enumerate(people_folds, start=1) if number != config.fold for row in fold]
        else:
            pool = sorted({(name, 0) for name in people_of(train)})
        val_people = people_of(val)
        pool = [(name, count) for name, count in pool if name not in val_people]
    return ListPlan(train, val, pool, eval_people)


def triples(left: np.ndarray, right: np.ndarray, labels: Sequence[int]) -> tuple[np.ndarray, ...]:
    return left.astype(np.int32), right.astype(np.int32), np.asarray(labels, dtype=np.float32)


def sampled_pairs(people_rows: list[np.ndarray], count: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """`count` balanced pairs: same-person pairs from people with two or more images, different-person pairs."""
    several = [rows for rows in people_rows if len(rows) >= 2]
    same = [rng.choice(several[i], 2, replace=False) for i in rng.integers(0, len(several), count // 2)]
    firsts, seconds = (rng.integers(0, len(people_rows), count - count // 2) for _ in range(2))
    seconds = np.where(seconds == firsts, (seconds + 1) % len(people_rows), seconds)
    different = [(rng.choice(people_rows[a]), rng.choice(people_rows[b])) for a, b in zip(firsts, seconds, strict=True)]
    pairs = np.array(same + different, dtype=np.int32).reshape(-1, 2)
    labels = np.array([SAME] * len(same) + [DIFFERENT] * len(different), dtype=np.float32)
    order = rng.permutation(len(labels))
    return pairs[order, 0], pairs[order, 1], labels[order]


def identity_rows(people_rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Image rows and class numbers of the training people with two or more images (the identity classes)."""
    several = [rows for rows in people_rows if len(rows) >= 2]
    if not several:
        raise LfwbenchError("identity epochs need training people with two or more images; there are none")
    labels = np.repeat(np.arange(len(several)), [len(rows) for rows in several])
    return np.concatenate(several).astype(np.int32), labels.astype(np.int32)
