"""What a data root holds: `lfwbench data check` (is it whole) and `lfwbench data stats` (the notebook's analysis)."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lfwbench.config import VAL_FRACTION
from lfwbench.errors import ImageError
from lfwbench.images import UnusableImage, find_variant, image_path, read_header, read_image_file
from lfwbench.pairs import DIFFERENT, SAME, VIEW1_LISTS, VIEW2_LIST, Pair, load_pairs, people_of, split_by_person


@dataclass
class ListCheck:
    """How many of a list's pairs resolve to usable image files; which files are missing or unusable (with their
    lines, `missing` holds both), and how many usable files are odd (PNG content, grayscale: converted when read)."""

    name: str
    total: int
    resolved: int
    distinct_images: int
    missing: list[str] = field(default_factory=list)
    odd: dict[str, int] = field(default_factory=dict)


@dataclass
class DataCheck:
    variant: str
    image_dir: Path
    people: int
    images: int
    lists: list[ListCheck]

    @property
    def ok(self) -> bool:
        return all(item.resolved == item.total for item in self.lists)


def count_images(image_dir: Path) -> dict[str, int]:
    """Images per person, read from the folders (one scandir each, no decoding)."""
    counts = {}
    for entry in os.scandir(image_dir):
        try:
            if entry.is_dir():
                counts[entry.name] = sum(1 for name in os.listdir(entry.path) if name.lower().endswith(".jpg"))
        except OSError:  # a folder that cannot be listed (a symlink loop, no permission) holds no usable images
            continue
    return counts


def default_lists(root: Path) -> list[Path]:
    """The View 1 lists in the data root, in protocol order (train first)."""
    found = [root / name for name in VIEW1_LISTS if (root / name).is_file()]
    if not found:
        raise ImageError(f"{root}: no pair list found (looked for {', '.join(VIEW1_LISTS)}); pass --pairs FILE")
    return found


def check_data(root: Path, pair_files: list[Path] | None = None) -> DataCheck:
    """Find the variant, count people and images, and resolve every pair of every list to an existing file."""
    variant, image_dir = find_variant(root)
    counts = count_images(image_dir)
    results = []
    for path in pair_files or default_lists(root):
        pair_list = load_pairs(path)
        problems: dict[Path, str] = {}
        odd: Counter[str] = Counter()
        missing = []
        resolved = 0
        for pair in pair_list.pairs:
            ends = [image_path(image_dir, pair.name1, pair.index1), image_path(image_dir, pair.name2, pair.index2)]
            ok = True
            for end in ends:
                if end not in problems:
                    problems[end] = inspect_image(end, odd)
                if problems[end]:
                    ok = False
                    missing.append(f"{path.name}:{pair.line}: {problems[end]} {end}")
            resolved += ok
        results.append(ListCheck(path.name, len(pair_list), resolved, len(problems), missing, dict(odd)))
    return DataCheck(variant, image_dir, len(counts), sum(counts.values()), results)


def inspect_image(path: Path, odd: Counter[str]) -> str:
    """Why the image cannot be used ("" when it can), counting how a usable one is odd in `odd`."""
    if not path.exists():
        return "missing"
    try:
        header = read_header(read_image_file(path))
    except UnusableImage as problem:
        return str(problem)
    if header.odd:
        odd[header.odd] += 1
    return ""


def _split_stats(pairs: list[Pair]) -> dict[str, int]:
    return {
        "pairs": len(pairs),
        "same": sum(pair.label == SAME for pair in pairs),
        "different": sum(pair.label == DIFFERENT for pair in pairs),
        "people": len(people_of(pairs)),
    }


def data_stats(root: Path, val_fraction: float = VAL_FRACTION, seed: int = 0) -> dict:
    """People, images, images per person, and per split (train / validation / test) pairs and people.

    The validation split is taken from the training list by person, as `lfwbench train` takes it; the test
    people must not overlap the training people.
    """
    variant, image_dir = find_variant(root)
    per_person = np.array(list(count_images(image_dir).values()))
    stats: dict = {
        "variant": variant,
        "people": int(per_person.size),
        "images": int(per_person.sum()),
        "images_per_person": {
            "mean": float(per_person.mean()),
            "std": float(per_person.std()),
            "max": int(per_person.max()),
            "people_with_2_or_more": int((per_person >= 2).sum()),
        },
        "splits": {},
    }
    train_people: set[str] = set()
    for name in VIEW1_LISTS:
        if not (root / name).is_file():
            continue
        pairs = list(load_pairs(root / name).pairs)
        if name == VIEW1_LISTS[0]:
            train, val = split_by_person(pairs, val_fraction, seed)
            train_people = people_of(pairs)
            stats["splits"]["train"] = {"list": name, **_split_stats(train)}
            stats["splits"]["validation"] = {"list": name, **_split_stats(val)}
        else:
            stats["splits"]["test"] = {"list": name, **_split_stats(pairs)}
            stats["test_train_overlap_people"] = len(people_of(pairs) & train_people)
    if (root / VIEW2_LIST).is_file():
        view2 = load_pairs(root / VIEW2_LIST)
        stats["splits"]["view2"] = {"list": VIEW2_LIST, "folds": view2.folds, **_split_stats(list(view2.pairs))}
    return stats
