"""Fixtures: a tiny synthetic LFW-like tree (a dozen people, a few 250x250 JPEGs each) and the real copy."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

REAL_LFW = Path(os.environ.get("LFWBENCH_REAL_DATA", Path(__file__).resolve().parents[2] / "shared" / "lfw"))
TRAIN_PEOPLE = [f"Train_Person{i:02d}" for i in range(8)]
TEST_PEOPLE = [f"Test_Person{i:02d}" for i in range(4)]
IMAGES_PER_PERSON = 4


def face(seed: int, person: int) -> np.ndarray:
    """A 250x250 colour image whose blob placement and colour depend on the person, plus per-image noise."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, (250, 250, 3), dtype=np.uint8)
    colour = [(person * 53) % 256, (person * 97) % 256, (person * 151) % 256]
    centre = (80 + (person % 4) * 30, 80 + (person // 4) * 30)
    cv2.circle(image, centre, 50, colour, -1)
    return image


def write_list(path: Path, header: str, lines: list[str]) -> None:
    path.write_text("\n".join([header, *lines]) + "\n")


def make_lfw_tree(root: Path, folder: str = "lfw-deepfunneled") -> Path:
    people = TRAIN_PEOPLE + TEST_PEOPLE
    for number, name in enumerate(people):
        (root / folder / name).mkdir(parents=True)
        for index in range(1, IMAGES_PER_PERSON + 1):
            cv2.imwrite(str(root / folder / name / f"{name}_{index:04d}.jpg"), face(number * 10 + index, number))

    def same(names: list[str], count: int) -> list[str]:
        return [f"{names[k % len(names)]}\t{1 + k % 3}\t{2 + k % 3}" for k in range(count)]

    def different(names: list[str], count: int) -> list[str]:
        return [
            f"{names[k % len(names)]}\t{1 + k % 4}\t{names[(k + 1) % len(names)]}\t{1 + (k + 2) % 4}"
            for k in range(count)
        ]

    write_list(root / "pairsDevTrain.txt", "12", same(TRAIN_PEOPLE, 12) + different(TRAIN_PEOPLE, 12))
    write_list(root / "pairsDevTest.txt", "4", same(TEST_PEOPLE, 4) + different(TEST_PEOPLE, 4))
    folds = []
    for fold in range(2):
        names = people[fold * 6 : fold * 6 + 6]
        folds += same(names, 3) + different(names, 3)
    write_list(root / "pairs.txt", "2\t3", folds)
    write_list(root / "peopleDevTrain.txt", str(len(TRAIN_PEOPLE)), [f"{n}\t{IMAGES_PER_PERSON}" for n in TRAIN_PEOPLE])
    write_list(root / "peopleDevTest.txt", str(len(TEST_PEOPLE)), [f"{n}\t{IMAGES_PER_PERSON}" for n in TEST_PEOPLE])
    return root


@pytest.fixture(scope="session")
def lfw_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only-by-convention synthetic data root shared by the whole session."""
    return make_lfw_tree(tmp_path_factory.mktemp("lfw"))


@pytest.fixture
def fresh_tree(tmp_path: Path) -> Path:
    """A synthetic data root a test may break."""
    return make_lfw_tree(tmp_path / "lfw")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LFWBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv("LFWBENCH_DATA", raising=False)


@pytest.fixture(scope="session")
def real_lfw() -> Path:
    if not (REAL_LFW / "pairsDevTrain.txt").is_file():
        pytest.skip(f"real LFW copy not found at {REAL_LFW}")
    return REAL_LFW
