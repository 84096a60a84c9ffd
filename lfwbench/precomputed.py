"""Embeddings and pair scores computed by another program: the owner of both file formats (no TensorFlow here).

An embeddings file maps image paths relative to the variant folder (`Aaron_Peirsol/Aaron_Peirsol_0001.jpg`) to
vectors: an `.npz` holding `keys` (N) and `vectors` (N x D), or a CSV with a `path` column then the vector's
columns. A scores file is a CSV with columns `name1,image1,name2,image2,score` (image numbers as in the pair list;
other columns are ignored, so lfwbench's own `--predictions` CSV reads back as one). Both are parsed whole into
checked records before any pair is scored: a file someone else wrote is data, never trusted as it stands.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lfwbench.errors import LfwbenchError, PairListError, brief
from lfwbench.files import file_digest
from lfwbench.pairs import Pair, check_index, check_name
from lfwbench.results import ModelFacts
from lfwbench.runs import Run
from lfwbench.scoring import EMBEDDING_METRICS, SCORE_KINDS, ScoredPairs, compare, image_key, left_out

EMBEDDING_ARRAYS = ("keys", "vectors")
SCORE_COLUMNS = ("name1", "image1", "name2", "image2", "score")
IMAGE_KEY = re.compile(r"[^/\\\x00]+/[^/\\\x00]+\.(jpg|jpeg|png)", re.IGNORECASE)
KEY_EXAMPLE = "Aaron_Peirsol/Aaron_Peirsol_0001.jpg"


def _csv(path: Path) -> pd.DataFrame:
    """A CSV read as text, every cell kept as written (types are checked column by column after)."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise LfwbenchError(f"{path}: not a readable CSV ({str(error).splitlines()[0][:200]})") from None


def _numbers(path: Path, frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """The columns as float64; a cell that is not a finite number is an error naming its line and column."""
    values = frame[list(columns)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row, column = (int(k) for k in np.argwhere(bad)[0])
        cell = frame.iloc[row][columns[column]]
        raise LfwbenchError(f"{path}:{row + 2}: column {columns[column]!r} is {brief(cell, 40)}, not a finite number")
    return values


@dataclass
class Embeddings:
    """Vectors by image key, checked: unique relative image paths, one length, finite values."""

    path: Path
    keys: dict[str, int]
    vectors: np.ndarray
    ignored: list[str] = field(default_factory=list)  # arrays of an .npz that are not ours

    @classmethod
    def read(cls, path: Path) -> Embeddings:
        if path.suffix.lower() == ".npz":
            keys, vectors, ignored = _read_npz(path)
        elif path.suffix.lower() == ".csv":
            frame = _csv(path)
            if not len(frame.columns) or frame.columns[0] != "path" or len(frame.columns) < 2:
                raise LfwbenchError(f"{path}: expected a header 'path,' then the vector's columns")
            keys, vectors, ignored = frame["path"].tolist(), _numbers(path, frame, list(frame.columns[1:])), []
        else:
            raise LfwbenchError(f"{path}: embeddings must be an .npz (keys, vectors) or a .csv (path, then columns)")
        return cls(path, _key_rows(path, keys), _check_vectors(path, keys, vectors), ignored)


def _read_npz(path: Path) -> tuple[list[str], np.ndarray, list[str]]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [name for name in EMBEDDING_ARRAYS if name not in archive.files]
            if missing:
                raise LfwbenchError(f"{path}: no array {missing[0]!r} (an .npz of embeddings holds keys and vectors)")
            keys, vectors = archive["keys"], archive["vectors"]
            ignored = sorted(set(archive.files) - set(EMBEDDING_ARRAYS))
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        # allow_pickle=False refuses object arrays: no code in the file ever runs
        raise LfwbenchError(
            f"{path}: not a readable .npz of plain arrays ({str(error).splitlines()[0][:200]})"
        ) from None
    if keys.ndim != 1 or keys.dtype.kind not in "US":
        raise LfwbenchError(f"{path}: keys must be one row of strings, got {keys.dtype} of shape {keys.shape}")
    if vectors.ndim != 2 or vectors.dtype.kind not in "fiu" or not vectors.shape[1]:
        raise LfwbenchError(f"{path}: vectors must be numbers, N x D, got {vectors.dtype} of shape {vectors.shape}")
    if len(keys) != len(vectors):
        raise LfwbenchError(f"{path}: {len(keys)} keys but {len(vectors)} vectors")
    text = [key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key) for key in keys.tolist()]
    return text, vectors.astype(np.float64), ignored


def _key_rows(path: Path, keys: list[str]) -> dict[str, int]:
    rows: dict[str, int] = {}
    for row, key in enumerate(keys):
        key = key.removeprefix("./")
        if not IMAGE_KEY.fullmatch(key) or key.split("/")[0] in (".", ".."):
            raise LfwbenchError(
                f"{path}: key {brief(key, 60)} (row {row + 1}) is not an image path relative to the variant folder, "
                f"such as {KEY_EXAMPLE}"
            )
        if key in rows:
            raise LfwbenchError(f"{path}: key {brief(key, 60)} appears twice (rows {rows[key] + 1} and {row + 1})")
        rows[key] = row
    return rows


def _check_vectors(path: Path, keys: list[str], vectors: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        raise LfwbenchError(f"{path}: the vector of {brief(keys[row], 60)} (row {row + 1}) holds NaN or infinity")
    return vectors


@dataclass
class EmbeddingsScorer:
    """Pairs scored by comparing the two images' vectors: cosine similarity, or Euclidean distance."""

    facts: ModelFacts
    inputs: list[Path]
    embeddings: Embeddings
    metric: str
    run: Run | None = None
    notes: list[str] = field(default_factory=list)

    def score(self, pairs: Sequence[Pair], source: str, skip_missing: bool, progress: bool) -> ScoredPairs:
        rows = self.embeddings.keys
        ends = [(image_key(p.name1, p.index1), image_key(p.name2, p.index2)) for p in pairs]
        reasons = {
            i: "no embedding for " + " and ".join(key for key in both if key not in rows)
            for i, both in enumerate(ends)
            if both[0] not in rows or both[1] not in rows
        }
        kept = left_out(pairs, reasons, source, skip_missing, f"add them to {self.embeddings.path.name}")
        left = np.array([rows[ends[i][0]] for i in kept], dtype=np.int64)
        right = np.array([rows[ends[i][1]] for i in kept], dtype=np.int64)
        keys = list(self.embeddings.keys)  # rows in file order
        scores = compare(self.embeddings.vectors, left, right, self.metric, keys.__getitem__, self.embeddings.path)
        distinct = len(np.union1d(left, right))
        return ScoredPairs([pairs[i] for i in kept], scores, [(pairs[i], r) for i, r in reasons.items()], distinct)


def open_embeddings(path: Path, metric: str = "cosine") -> EmbeddingsScorer:
    """An embeddings file as a scorer; `metric` is one of EMBEDDING_METRICS."""
    if metric not in EMBEDDING_METRICS:
        raise LfwbenchError(f"unknown metric {metric!r}; one of {', '.join(EMBEDDING_METRICS)}")
    embeddings = Embeddings.read(path)
    count, width = embeddings.vectors.shape
    facts = ModelFacts(
        name=path.stem, kind="embeddings", path=str(path), sha256=file_digest(path),
        score_kind=EMBEDDING_METRICS[metric], engine=f"NumPy ({metric} of {count:,} vectors of {width})",
        metric=metric,
    )  # fmt: skip
    notes = [f"{path.name}: arrays {', '.join(embeddings.ignored)} are not keys or vectors; ignored"]
    return EmbeddingsScorer(facts, [path], embeddings, metric, notes=notes if embeddings.ignored else [])


PairKey = tuple[str, int, str, int]


@dataclass
class PairScores:
    """Scores by pair, checked: plain names, positive image numbers, finite scores, no pair twice (either way)."""

    path: Path
    scores: dict[PairKey, float]

    @classmethod
    def read(cls, path: Path, kind: str) -> PairScores:
        if kind not in SCORE_KINDS:
            raise LfwbenchError(f"unknown score kind {kind!r}; one of {', '.join(SCORE_KINDS)}")
        frame = _csv(path)
        missing = [column for column in SCORE_COLUMNS if column not in frame.columns]
        if missing:
            raise LfwbenchError(f"{path}: no column {missing[0]!r}; a scores file has {','.join(SCORE_COLUMNS)}")
        values = _numbers(path, frame, ["score"])[:, 0]
        if kind == "probability" and ((values < 0) | (values > 1)).any():
            row = int(np.argmax((values < 0) | (values > 1)))
            raise LfwbenchError(f"{path}:{row + 2}: score {values[row]:g} is not a probability; give --score-kind")
        scores: dict[PairKey, float] = {}
        columns = [frame[column].tolist() for column in SCORE_COLUMNS[:4]]
        for row, (name1, i, name2, j) in enumerate(zip(*columns, strict=True)):
            line = row + 2
            try:
                key = (check_name(path, line, name1), check_index(path, line, i))
                key += (check_name(path, line, name2), check_index(path, line, j))
            except PairListError as error:
                raise LfwbenchError(str(error).replace(path.name, str(path), 1)) from None
            if key in scores or (key[2], key[3], key[0], key[1]) in scores:
                raise LfwbenchError(f"{path}:{line}: the pair {' '.join(map(str, key))} is scored twice")
            scores[key] = float(values[row])
        return cls(path, scores)

    def get(self, pair: Pair) -> float | None:
        """The pair's score, listed in either order."""
        found = self.scores.get((pair.name1, pair.index1, pair.name2, pair.index2))
        return found if found is not None else self.scores.get((pair.name2, pair.index2, pair.name1, pair.index1))


@dataclass
class PairScoresScorer:
    """Pairs scored by another program, matched to the list's pairs by names and image numbers."""

    facts: ModelFacts
    inputs: list[Path]
    table: PairScores
    run: Run | None = None
    notes: list[str] = field(default_factory=list)

    def score(self, pairs: Sequence[Pair], source: str, skip_missing: bool, progress: bool) -> ScoredPairs:
        found = [self.table.get(pair) for pair in pairs]
        reasons = {i: "no score for this pair" for i, value in enumerate(found) if value is None}
        kept = left_out(pairs, reasons, source, skip_missing, f"add them to {self.table.path.name}")
        kept_pairs = [pairs[i] for i in kept]
        images = {key for p in kept_pairs for key in ((p.name1, p.index1), (p.name2, p.index2))}
        scores = np.array([found[i] for i in kept], dtype=np.float64)
        return ScoredPairs(kept_pairs, scores, [(pairs[i], r) for i, r in reasons.items()], len(images))


def open_scores(path: Path, kind: str) -> PairScoresScorer:
    """A scores file as a scorer; `kind` says which way its scores point (one of SCORE_KINDS)."""
    table = PairScores.read(path, kind)
    facts = ModelFacts(
        name=path.stem, kind="scores", path=str(path), sha256=file_digest(path), score_kind=kind,
        engine=f"precomputed ({len(table.scores):,} pair scores)",
    )  # fmt: skip
    return PairScoresScorer(facts, [path], table)
