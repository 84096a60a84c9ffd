"""LFW pair lists (View 1 and View 2) and people lists, parsed in one pass into typed records."""

from __future__ import annotations

import os
import random
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lfwbench.errors import PairListError
from lfwbench.files import file_digest

SAME = 1
DIFFERENT = 0

VIEW1_LISTS = ("pairsDevTrain.txt", "pairsDevTest.txt")
VIEW2_LIST = "pairs.txt"
VIEW2_PEOPLE = "people.txt"
MAX_LIST_BYTES = 64 << 20  # a list is read whole: pairs.txt is 100 KB, 200,000 pairs about 6 MB
PROTOCOL_FILES = (*VIEW1_LISTS, "peopleDevTrain.txt", "peopleDevTest.txt", VIEW2_LIST, VIEW2_PEOPLE, "lfw-names.txt")


def protocol_files(root: Path) -> list[Path]:
    """The lists of a data root that lfwbench reads (which no output may replace)."""
    return [root / name for name in PROTOCOL_FILES if (root / name).is_file()]


@dataclass(frozen=True)
class Pair:
    """Two images named as in the list (`name`, 1-based image number), the label and where it came from."""

    name1: str
    index1: int
    name2: str
    index2: int
    label: int
    fold: int
    line: int

    @property
    def people(self) -> tuple[str, str]:
        return self.name1, self.name2


@dataclass(frozen=True)
class PairList:
    """A parsed pair list: View 1 files have one fold, View 2's `pairs.txt` has ten."""

    path: Path
    pairs: tuple[Pair, ...]
    folds: int
    per_fold: int

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def people(self) -> set[str]:
        return people_of(self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)


def file_md5(path: str | Path) -> str:
    """The md5 the LFW site publishes for each file, so a list can be checked against the official one."""
    return file_digest(path, "md5")


def check_name(path: Path, line: int, name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise PairListError(path, line, f"expected a person's folder name, got {name!r}")
    return name


def _is_number(text: str) -> bool:
    """ASCII digits only: `str.isdigit` also takes '²', which `int` refuses."""
    return text.isascii() and text.isdigit()


def check_index(path: Path, line: int, text: str) -> int:
    if not _is_number(text) or int(text) < 1:
        raise PairListError(path, line, f"expected a positive image number, got {text!r}")
    return int(text)


def _read_lines(path: Path) -> list[str]:
    """The file's lines as UTF-8 (a leading byte order mark is allowed); errors name the line they are on."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise PairListError(path, 1, "not a regular file (a fifo or device would never end)")
        with open(path, "rb") as handle:
            content = handle.read(MAX_LIST_BYTES + 1)
    except OSError as error:
        raise PairListError(path, 1, f"cannot read the file ({error.strerror})") from None
    if len(content) > MAX_LIST_BYTES:
        raise PairListError(path, 1, f"larger than {MAX_LIST_BYTES >> 20} MB: no LFW list is (pairs.txt is 100 KB)")
    try:
        lines = content.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as error:
        line = content[: error.start].count(b"\n") + 1
        raise PairListError(path, line, f"not UTF-8 (byte 0x{content[error.start]:02x}); save it as UTF-8") from None
    for number, text in enumerate(lines, start=1):
        if "\ufeff" in text:
            raise PairListError(path, number, "a byte order mark (U+FEFF) inside the file; save it as plain UTF-8")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise PairListError(path, 1, "expected a header line, the file is empty")
    return lines


def _header(path: Path, text: str) -> tuple[int, int]:
    fields = text.split()
    if len(fields) in (1, 2) and all(_is_number(field) and int(field) > 0 for field in fields):
        numbers = [int(field) for field in fields]
        return (1, numbers[0]) if len(numbers) == 1 else (numbers[0], numbers[1])
    raise PairListError(path, 1, f"expected a header 'N' (View 1) or 'folds N' (View 2), got {text.strip()!r}")


def _parse_pair(path: Path, line: int, text: str, fold: int) -> Pair:
    fields = text.split()
    if len(fields) == 3:
        label, (name1, i, j), name2 = SAME, fields, fields[0]
    elif len(fields) == 4:
        label, (name1, i, name2, j) = DIFFERENT, fields
    else:
        raise PairListError(path, line, f"expected 'name i j' or 'name1 i name2 j', got {len(fields)} fields")
    return Pair(
        check_name(path, line, name1),
        check_index(path, line, i),
        check_name(path, line, name2),
        check_index(path, line, j),
        label,
        fold,
        line,
    )


def load_pairs(path: str | Path) -> PairList:
    """Parse a View 1 (`N`, then N same and N different lines) or View 2 (`folds N`, then folds blocks) list.

    Any run of blanks separates fields. Every error names the file and line.
    """
    path = Path(path)
    lines = _read_lines(path)
    folds, per_fold = _header(path, lines[0])
    pairs = [_parse_pair(path, offset + 2, text, offset // (2 * per_fold)) for offset, text in enumerate(lines[1:])]
    expected = 2 * folds * per_fold
    if len(pairs) != expected:
        raise PairListError(
            path,
            len(lines) if len(pairs) > expected else len(lines) + 1,
            f"expected {expected} pair lines after the header ({folds} fold(s) of {per_fold} same + "
            f"{per_fold} different), found {len(pairs)}",
        )
    for offset, pair in enumerate(pairs):
        if pair.label != (SAME if offset % (2 * per_fold) < per_fold else DIFFERENT):
            expected_line = (
                "same-person 'name i j'" if pair.label == DIFFERENT else "different-person 'name1 i name2 j'"
            )
            raise PairListError(
                path,
                pair.line,
                f"expected a {expected_line} line in fold {pair.fold + 1}, got {3 if pair.label == SAME else 4} fields",
            )
    return PairList(path, tuple(pairs), folds, per_fold)


def load_people(path: str | Path) -> list[list[tuple[str, int]]]:
    """Read `people*.txt`: one fold (View 1: `N`, then `name n` lines) or several (View 2: `folds`, then blocks)."""
    path = Path(path)
    lines = _read_lines(path)
    first = _header(path, lines[0])[1]
    nested = len(lines) > 1 and len(lines[1].split()) == 1
    folds, cursor, result = (first if nested else 1), 1, []
    for _ in range(folds):
        if nested:
            if cursor >= len(lines) or not _is_number(lines[cursor].strip()):
                raise PairListError(path, cursor + 1, "expected the number of people in the next fold")
            count, cursor = int(lines[cursor]), cursor + 1
        else:
            count = first
        block = []
        for line in range(cursor, cursor + count):
            fields = lines[line].split() if line < len(lines) else []
            if len(fields) != 2:
                raise PairListError(path, line + 1, f"expected 'name n_images', got {len(fields)} fields")
            block.append((check_name(path, line + 1, fields[0]), check_index(path, line + 1, fields[1])))
        result.append(block)
        cursor += count
    if cursor != len(lines):
        raise PairListError(path, cursor + 1, f"expected the end of the file, found {len(lines) - cursor} more lines")
    return result


def split_by_person(pairs: Sequence[Pair], fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """Split pairs into (train, validation) so that no person is on both sides.

    Pairs that share a person form a group (LFW's View 1 groups hold at most a few dozen pairs); groups are
    shuffled with `seed` and go to validation until it holds `fraction` of the pairs. No pair is dropped.
    """
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        parent.setdefault(name, name)
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for pair in pairs:
        parent[root(pair.name1)] = root(pair.name2)
    groups: dict[str, list[Pair]] = {}
    for pair in pairs:
        groups.setdefault(root(pair.name1), []).append(pair)
    ordered = list(groups.values())
    random.Random(seed).shuffle(ordered)
    train: list[Pair] = []
    val: list[Pair] = []
    for group in ordered:
        (val if len(val) < fraction * len(pairs) else train).extend(group)
    return _by_line(train), _by_line(val)


def _by_line(pairs: list[Pair]) -> list[Pair]:
    return sorted(pairs, key=lambda pair: pair.line)


def people_of(pairs: Iterable[Pair]) -> set[str]:
    return {name for pair in pairs for name in pair.people}
