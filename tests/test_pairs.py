from __future__ import annotations

from pathlib import Path

import pytest

from lfwbench.errors import PairListError
from lfwbench.pairs import DIFFERENT, SAME, load_pairs, load_people, split_by_person


def write(tmp_path: Path, text: str, name: str = "pairsDevTest.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_view1_parses_labels_folds_and_lines(lfw_tree: Path) -> None:
    pair_list = load_pairs(lfw_tree / "pairsDevTrain.txt")
    assert (pair_list.folds, pair_list.per_fold, len(pair_list)) == (1, 12, 24)
    first, last = pair_list.pairs[0], pair_list.pairs[-1]
    assert (first.name1, first.index1, first.name2, first.index2, first.label, first.line) == (
        "Train_Person00",
        1,
        "Train_Person00",
        2,
        SAME,
        2,
    )
    assert last.label == DIFFERENT and last.line == 25 and last.name1 != last.name2


def test_view2_keeps_folds(lfw_tree: Path) -> None:
    pair_list = load_pairs(lfw_tree / "pairs.txt")
    assert (pair_list.folds, pair_list.per_fold) == (2, 3)
    assert [pair.fold for pair in pair_list.pairs] == [0] * 6 + [1] * 6
    assert [pair.label for pair in pair_list.pairs[6:]] == [SAME] * 3 + [DIFFERENT] * 3


def test_any_run_of_blanks_separates_fields(tmp_path: Path) -> None:
    pair_list = load_pairs(write(tmp_path, "1\nA_B  1 \t 2\nA_B 1   C_D\t\t3\n\n"))
    assert pair_list.pairs[1].name2 == "C_D" and pair_list.pairs[1].index2 == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2\nA 1 2\nA 1\n", "pairsDevTest.txt:3: expected 'name i j' or 'name1 i name2 j', got 2 fields"),
        ("1\nA 1 0\nA 1 B 2\n", "pairsDevTest.txt:2: expected a positive image number, got '0'"),
        ("1\nA x 2\nA 1 B 2\n", "pairsDevTest.txt:2: expected a positive image number, got 'x'"),
        ("1\n.. 1 2\nA 1 B 2\n", "pairsDevTest.txt:2: expected a person's folder name, got '..'"),
        ("1\nA/B 1 2\nA 1 B 2\n", "pairsDevTest.txt:2: expected a person's folder name, got 'A/B'"),
        ("1\nA 1 B 2\nA 1 2\n", "pairsDevTest.txt:2: expected a same-person 'name i j' line in fold 1, got 4 fields"),
        ("2\nA 1 2\nA 2 3\nA 1 B 2\n", "pairsDevTest.txt:5: expected 4 pair lines after the header"),
        ("1\nA 1 2\nA 1 B 2\nA 1 B 3\n", "pairsDevTest.txt:4: expected 2 pair lines after the header"),
        ("one\n", "pairsDevTest.txt:1: expected a header 'N' (View 1) or 'folds N' (View 2), got 'one'"),
        ("", "pairsDevTest.txt:1: expected a header line, the file is empty"),
    ],
)
def test_errors_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(PairListError) as caught:
        load_pairs(write(tmp_path, text))
    assert str(caught.value).startswith(message)


def test_people_lists_both_layouts(lfw_tree: Path, tmp_path: Path) -> None:
    assert len(load_people(lfw_tree / "peopleDevTrain.txt")) == 1
    assert load_people(lfw_tree / "peopleDevTest.txt")[0][0] == ("Test_Person00", 4)
    folds = load_people(write(tmp_path, "2\n1\nA\t3\n2\nB\t1\nC\t2\n", "people.txt"))
    assert folds == [[("A", 3)], [("B", 1), ("C", 2)]]
    with pytest.raises(PairListError, match=r"people.txt:3: expected 'name n_images', got 1 fields"):
        load_people(write(tmp_path, "2\nA\t3\nB\n", "people.txt"))


def test_split_by_person_is_disjoint_and_seeded(real_lfw: Path) -> None:
    pairs = list(load_pairs(real_lfw / "pairsDevTrain.txt").pairs)
    train, val = split_by_person(pairs, 0.2, seed=3)
    train_people = {n for p in train for n in p.people}
    val_people = {n for p in val for n in p.people}
    assert not train_people & val_people
    assert len(train) + len(val) == len(pairs)
    assert 0.19 < len(val) / len(pairs) < 0.21
    assert split_by_person(pairs, 0.2, seed=3) == (train, val)
    assert split_by_person(pairs, 0.2, seed=4)[1] != val
