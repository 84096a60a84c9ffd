"""The scoring seam: what evaluation, report and crossval take instead of a checkpoint path (no TensorFlow here).

Every kind of input (an lfwbench checkpoint, an embeddings file, a pair-scores file) is opened into a `Scorer`: it
scores the pairs of a list and describes itself. Evaluation consumes only this interface, so a new kind of model is
one more opener, never a change to the protocol, the metrics or the report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from lfwbench.errors import LfwbenchError, brief
from lfwbench.pairs import Pair

if TYPE_CHECKING:  # light at import: the command line reads the choices below for its --help
    import numpy as np

    from lfwbench.foreign_models import ModelOptions
    from lfwbench.results import ModelFacts
    from lfwbench.runs import Run

SCORE_KINDS = ("probability", "similarity", "distance")  # which way a score points; only a probability has a loss
EMBEDDING_METRICS = {"cosine": "similarity", "euclidean": "distance"}  # how embeddings are compared -> score kind
INPUT_KINDS = ("model", "embeddings", "scores")
# what a Keras Lambda joining two tensors may be replaced by (never run), and the kind of score each gives as an output
SAFE_OPS = {
    "abs-diff": None,
    "l1": "distance",
    "l2": "distance",
    "squared-l2": "distance",
    "cosine": "similarity",
}  # what evaluate and report take: --model, --embeddings, --scores
MISSING_SHOWN = 3  # pair-list lines named in a missing-input error; the rest are counted


@dataclass
class ScoredPairs:
    """A list's pairs as an input scored them: those kept (in list order) with their scores, those left out and
    why (`--skip-missing`), and how many distinct images the kept pairs name."""

    pairs: list[Pair]
    scores: np.ndarray
    skipped: list[tuple[Pair, str]]
    distinct_images: int


class Scorer(Protocol):
    """An opened input: its facts for results.json, the files it reads (never to be written over), the lfwbench
    run it came from (validation pairs, training people and history; None for anything else), and the warnings
    opening it raised."""

    facts: ModelFacts
    inputs: list[Path]
    run: Run | None
    notes: list[str]

    def score(self, pairs: Sequence[Pair], source: str, skip_missing: bool, progress: bool) -> ScoredPairs:
        """Score `pairs` (from the list named `source`); an unscorable pair is an error naming its line, or with
        `skip_missing` left out and listed."""
        ...


def compare(
    vectors: np.ndarray, left: np.ndarray, right: np.ndarray, metric: str, key_of: Callable[[int], str], source: object
) -> np.ndarray:
    """Cosine similarity or Euclidean distance of rows `left[i]` and `right[i]`; a zero vector has no direction,
    so cosine refuses it, named by `key_of(row)` and its `source`."""
    import numpy as np

    from lfwbench.engine import PAIR_CHUNK

    norms = np.linalg.norm(vectors, axis=1)
    if metric != "euclidean":
        used = np.union1d(left, right)
        zero = used[norms[used] == 0]
        if len(zero):
            raise LfwbenchError(
                f"{source}: the vector of {brief(key_of(int(zero[0])), 60)} is all zeros: it has no cosine"
            )
    scores = np.empty(len(left))
    for start in range(0, len(left), PAIR_CHUNK):  # memory grows with the images, not with the pairs
        i, j = left[start : start + PAIR_CHUNK], right[start : start + PAIR_CHUNK]
        a, b = vectors[i], vectors[j]
        chunk = (
            np.linalg.norm(a - b, axis=1)
            if metric == "euclidean"
            else np.einsum("ij,ij->i", a, b) / (norms[i] * norms[j])
        )
        scores[start : start + len(i)] = chunk
    return scores


def image_key(name: str, index: int) -> str:
    """The image a pair names, relative to the variant folder: `Aaron_Peirsol/Aaron_Peirsol_0001.jpg`."""
    return f"{name}/{name}_{index:04d}.jpg"


def left_out(pairs: Sequence[Pair], reasons: dict[int, str], source: str, skip_missing: bool, fix: str) -> list[int]:
    """The positions of the pairs to keep; a pair with a reason is an error naming its line (the first few, the
    rest counted) unless `skip_missing` leaves it out. `fix` says what else the user may do."""
    if reasons and not skip_missing:
        lines = [f"{source}:{pairs[i].line}: {reason}" for i, reason in list(reasons.items())[:MISSING_SHOWN]]
        more = f"; and {len(reasons) - MISSING_SHOWN} more" if len(reasons) > MISSING_SHOWN else ""
        raise LfwbenchError(
            f"{len(reasons)} pair(s) cannot be scored ({fix}, or --skip-missing): {'; '.join(lines)}{more}"
        )
    kept = [i for i in range(len(pairs)) if i not in reasons]
    if pairs and not kept:
        raise LfwbenchError(f"{source}: none of its {len(pairs)} pairs can be scored; nothing to evaluate")
    return kept


def open_input(
    kind: str,
    path: Path,
    root: Path | None,
    *,
    engine: str = "auto",
    batch_size: int = 64,
    flip: bool = False,
    model_options: ModelOptions | None = None,
) -> Scorer:
    """The scorer of an input of one of INPUT_KINDS: a model scores the images under `root`; embeddings and pair
    scores were computed by another program, so neither images nor TensorFlow are needed. `model_options` (default:
    none given) also say how embeddings are compared and which way scores point."""
    from lfwbench.foreign_models import ModelOptions

    options = model_options or ModelOptions()
    if kind == "model":
        if root is None:
            raise LfwbenchError(f"{path}: scoring a model needs the images: pass --data DIR or set LFWBENCH_DATA")
        return open_model(path, root, engine, batch_size, flip, options)
    from lfwbench.precomputed import open_embeddings, open_scores

    if flip:
        raise LfwbenchError(
            f"{path}: --flip averages a model's embeddings of mirrored images; {kind} made elsewhere cannot"
        )
    if kind == "embeddings":
        return open_embeddings(path, options.metric)
    if options.score_kind is None:
        raise LfwbenchError(f"{path}: say which way its scores point: --score-kind {'|'.join(SCORE_KINDS)}")
    return open_scores(path, options.score_kind)


MODEL_KINDS = "an lfwbench checkpoint (.keras, .h5), a Keras model (.keras, .h5), ONNX (.onnx) or TFLite (.tflite)"


def open_model(path: Path, root: Path, engine: str, batch_size: int, flip: bool, options: ModelOptions) -> Scorer:
    """The first opener that claims the file: lfwbench's own checkpoints, then ONNX, TFLite and other Keras
    models; else one line listing what is accepted."""
    from lfwbench.checkpoints import is_keras_file, is_lfwbench_checkpoint
    from lfwbench.foreign_models import is_onnx, is_tflite, open_onnx, open_tflite

    if is_lfwbench_checkpoint(path):
        from lfwbench.checkpoint_scorer import open_checkpoint

        return open_checkpoint(path, root, engine, batch_size, flip)
    if is_onnx(path):
        return open_onnx(path, root, batch_size, flip, options)
    if is_tflite(path):
        return open_tflite(path, root, batch_size, flip, options)
    if is_keras_file(path):
        from lfwbench.foreign_keras import open_keras

        return open_keras(path, root, batch_size, flip, options)
    raise LfwbenchError(f"{path}: not a model lfwbench reads; it takes {MODEL_KINDS}")
