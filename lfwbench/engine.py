"""The twin exported for fast CPU inference, usable without TensorFlow.

A bundle is an int8-weight TFLite twin run by LiteRT (XNNPACK) plus a JSON file with the head's weights and the
model's facts. On 2 CPU cores it embedded Koch faces 2.4x faster than float32 Keras with the same DevTest
accuracy (benchmarks/engines.py), and evaluating from it skips importing TensorFlow and loading the checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lfwbench.console import progress_bar
from lfwbench.errors import brief
from lfwbench.files import typed_record, write_bytes, write_json
from lfwbench.presets import HEADS

ENGINES = ("auto", "float32", "int8")  # auto: float32 on a GPU, int8 on a CPU
PRECISIONS = ("int8", "float32")  # the TFLite twins a run ships: int8 weights, or float32 as trained
BUNDLE_FORMAT = 2  # 2: the JSON vouches for the TFLite bytes by their sha256


@dataclass(frozen=True)
class ModelSummary:
    """What results.json records of an lfwbench model: preset, parameter counts, layer table, input shape."""

    preset: str | None
    parameters: int
    twin_parameters: int
    layers: list[dict]
    input_shape: list[int]


@dataclass(frozen=True)
class BundleFacts:
    """A bundle's JSON besides its format and the TFLite file's sha256: what scoring needs besides the twin."""

    checkpoint_sha256: list[str]  # the checkpoints (.keras, .h5) this twin was converted from
    input_shape: list[int]
    head_kernel: list[float]
    head_bias: float
    model: ModelSummary
    head: str = "l1"  # one of HEADS; bundles written before the cosine head have none: the L1 head
    precision: str = "int8"  # one of PRECISIONS; bundles written before float32 ones were int8

    @classmethod
    def parse(cls, stored: dict) -> BundleFacts:
        """Raises ValueError naming the first field that fails (types, ranges, finite numbers)."""
        facts = typed_record(cls, stored)
        problem = _unfit(facts)
        if problem:
            raise ValueError(problem)
        return facts


@dataclass
class Bundle:
    """`tflite`: the converted twin; `facts`: head weights, input shape, model facts, the checkpoints it matches."""

    tflite: bytes
    facts: BundleFacts


def bundle_files(stem: Path, precision: str = "int8") -> tuple[Path, Path]:
    return stem.with_name(f"{stem.name}.{precision}.tflite"), stem.with_name(f"{stem.name}.{precision}.json")


def bundle_writers(stem: Path, bundle: Bundle) -> dict[str, Callable[[Path], None]]:
    """The bundle's two files by name, each with the function writing it at a path: the TFLite file, then the JSON
    that vouches for it by its sha256."""
    tflite, facts = bundle_files(stem, bundle.facts.precision)
    stored = {**asdict(bundle.facts), "format": BUNDLE_FORMAT, "tflite_sha256": _sha256(bundle.tflite)}
    return {
        tflite.name: lambda path: write_bytes(path, bundle.tflite),
        facts.name: lambda path: write_json(path, stored),
    }


def write_bundle(stem: Path, bundle: Bundle) -> None:
    """Write the TFLite file, then the JSON that vouches for it (so a half-written pair is never trusted)."""
    for name, write in bundle_writers(stem, bundle).items():
        write(stem.with_name(name))


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def read_bundle(stem: Path, checkpoint_sha256: str, precision: str = "int8") -> tuple[Bundle | None, str]:
    """The bundle of this precision at `stem` when it was made from the checkpoint with this sha256, else None and
    why not ("" when there is none). A TFLite file that is not the one its JSON vouches for is never used."""
    tflite, facts_path = bundle_files(stem, precision)
    if not tflite.exists() and not facts_path.exists():
        return None, ""
    try:
        facts = json.loads(facts_path.read_text())
        content = tflite.read_bytes()
    except (OSError, ValueError) as error:
        return None, f"{tflite.name}: unreadable bundle ({error})"
    if not isinstance(facts, dict) or facts.pop("format", None) != BUNDLE_FORMAT:
        return None, f"{facts_path.name}: bundle of another format"
    if facts.pop("tflite_sha256", None) != _sha256(content):
        return None, f"{tflite.name}: not the TFLite file its {facts_path.name} vouches for (replaced or damaged)"
    try:
        parsed = BundleFacts.parse(facts)
    except ValueError as error:
        return None, f"{facts_path.name}: {error}"
    if checkpoint_sha256 not in parsed.checkpoint_sha256:
        return None, f"{facts_path.name}: made from another checkpoint"
    if parsed.precision != precision:
        return None, f"{facts_path.name}: a {brief(parsed.precision)} twin, not {precision}"
    return Bundle(content, parsed), ""


PAIR_CHUNK = 8192  # pairs through the head at once, so a long list costs no more memory than a short one
MAX_EMBEDDING = 1 << 16  # a head kernel longer than this is no lfwbench model's


def _unfit(facts: BundleFacts) -> str:
    """What is wrong with a bundle's typed facts ("" when nothing): the input an image's, the head's weights finite
    numbers of one width (one for a cosine head)."""
    shape, kernel, bias = facts.input_shape, facts.head_kernel, facts.head_bias
    if not (len(shape) == 3 and all(0 < n <= 4096 for n in shape)):
        return f"input_shape {brief(shape)} is no image shape"
    if facts.precision not in PRECISIONS:
        return f"precision {brief(facts.precision)} is none of {', '.join(PRECISIONS)}"
    if facts.head not in HEADS:
        return f"head {brief(facts.head)} is none of {', '.join(HEADS)}"
    if not 0 < len(kernel) <= (1 if facts.head == "cosine" else MAX_EMBEDDING):
        return (
            f"head_kernel of {len(kernel):,} weights: a {facts.head} head has 1 to {MAX_EMBEDDING:,}, a cosine head 1"
        )
    if not all(math.isfinite(w) and not isinstance(w, bool) for w in [*kernel, bias]):
        return "head_kernel or head_bias holds something other than finite numbers"
    return ""


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # TensorFlow still ships the same interpreter, deprecated
        from tensorflow.lite import Interpreter
    return Interpreter


def lite_interpreter(content: bytes):
    """A LiteRT interpreter of a TFLite model on every core (XNNPACK)."""
    return _interpreter_class()(model_content=content, num_threads=os.cpu_count())


class LiteTwin:
    """Runs a TFLite twin on batches of one fixed shape (`images` in 0-255, the model scales them)."""

    def __init__(self, content: bytes, batch_shape: tuple[int, ...]):
        self.interpreter = lite_interpreter(content)
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]
        self.interpreter.resize_tensor_input(self.input, batch_shape)
        self.interpreter.allocate_tensors()
        self.width = int(self.interpreter.get_output_details()[0]["shape"][-1])  # the embedding's

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.input, batch.astype(np.float32))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output).copy()


def embed_batches(
    engine: Callable[[np.ndarray], np.ndarray], images: np.ndarray, batch_size: int, flip: bool, progress: bool
) -> np.ndarray:
    """Run `engine` over `images` in batches of one fixed shape (the last padded); with `flip`, average each
    embedding with its mirror image's."""
    count = len(images)
    padded = np.concatenate([images, np.zeros(((-count) % batch_size, *images.shape[1:]), images.dtype)])
    starts: Iterable[int] = range(0, len(padded), batch_size)
    rows = []
    with progress_bar(starts, "Embedding images", progress) as bar:
        for start in bar:
            batch = padded[start : start + batch_size]
            embedding = engine(batch)
            if flip:
                embedding = (embedding + engine(batch[:, :, ::-1])) / 2
            rows.append(embedding)
    return np.concatenate(rows)[:count].astype(np.float32)


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def head_scores(facts: BundleFacts, embeddings: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """P(same) = sigmoid(|a - b| . w + b), or for a cosine head sigmoid(w cos(a, b) + b): the heads of lfwbench
    models (dropout is off at inference)."""
    kernel, cosine = np.asarray(facts.head_kernel, dtype=np.float64), facts.head == "cosine"
    logits = np.empty(len(left))
    for start in range(0, len(left), PAIR_CHUNK):  # memory grows with the images, not with the pairs
        a, b = (embeddings[side[start : start + PAIR_CHUNK]].astype(np.float64) for side in (left, right))
        joined = (_unit(a) * _unit(b)).sum(axis=1, keepdims=True) if cosine else np.abs(a - b)
        logits[start : start + len(a)] = joined @ kernel
    return 1 / (1 + np.exp(-(logits + facts.head_bias)))
