"""Embedding models that are not lfwbench's, one image in and a vector out, in ONNX (onnxruntime) or TFLite (LiteRT):
opened as scorers with no TensorFlow, fed exactly the preprocessing the command line states.

Neither runtime executes code from the file: an ONNX or TFLite model is a graph of the runtime's own operators.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lfwbench.engine import embed_batches
from lfwbench.errors import CheckpointError, LfwbenchError
from lfwbench.files import file_digest
from lfwbench.images import ImageSpec, PairImages, cached_pair_images, find_variant
from lfwbench.pairs import Pair
from lfwbench.preprocessing import Preprocessing, preprocessing
from lfwbench.results import ModelFacts
from lfwbench.runs import Run
from lfwbench.scoring import EMBEDDING_METRICS, ScoredPairs, compare

Embed = Callable[[np.ndarray], np.ndarray]  # float32 model input -> (N, D) vectors


@dataclass(frozen=True)
class ImageInput:
    """A model's one image input: layout, side (None where the model takes any), channels, fixed batch or None."""

    layout: str
    side: int | None
    channels: int
    batch: int | None


def image_input(path: Path, shape: Sequence) -> ImageInput:
    """Read NHWC or NCHW, side and channels from an input's shape (symbolic sizes as None); one line otherwise."""
    dims = [d if isinstance(d, int) and d > 0 else None for d in shape]
    if len(dims) != 4:
        raise CheckpointError(
            f"{path}: its input has shape {list(shape)}, not an image batch (N, H, W, C or N, C, H, W)"
        )
    if dims[3] in (1, 3) and dims[1] not in (1, 3):
        layout, side, channels = "NHWC", dims[1] or dims[2], dims[3]
    elif dims[1] in (1, 3):
        layout, side, channels = "NCHW", dims[2] or dims[3], dims[1]
    else:
        raise CheckpointError(f"{path}: its input has shape {list(shape)}, not an image of 1 or 3 channels")
    return ImageInput(layout, side, channels, dims[0])


@dataclass(frozen=True)
class ModelOptions:
    """What the command line says about a model that is not lfwbench's (None: read it from the model)."""

    size: int | None = None
    channels: int | None = None
    crop: int = 0
    normalization: str | None = None
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    order: str = "rgb"
    metric: str = "cosine"
    score_kind: str | None = None
    lambdas: tuple[str, ...] = ()  # Keras Lambda replacements: "OP" or "NAME=OP"


def fitted_preprocessing(path: Path, found: ImageInput, options: ModelOptions) -> Preprocessing:
    """The options checked against the model's input: a side or channel count the model fixes cannot be changed."""
    if found.side and options.size and options.size != found.side:
        raise LfwbenchError(f"{path}: the model takes {found.side}x{found.side} images; --size {options.size} cannot")
    if options.channels and options.channels != found.channels:
        raise LfwbenchError(
            f"{path}: the model takes {found.channels} channel(s); --channels {options.channels} cannot"
        )
    side = found.side or options.size
    if side is None:
        raise LfwbenchError(f"{path}: the model takes images of any side: give --size")
    spec = ImageSpec(side, found.channels, options.crop)
    return preprocessing(spec, options.normalization, options.mean, options.std, options.order, found.layout)


@dataclass
class ImageEmbeddingScorer:
    """Pairs scored by comparing the model's embeddings of their images, each distinct image embedded once."""

    facts: ModelFacts
    inputs: list[Path]
    image_dir: Path
    prepare: Preprocessing
    embed: Embed
    batch_size: int
    flip: bool
    metric: str
    run: Run | None = None
    notes: list[str] = field(default_factory=list)

    def score(self, pairs: Sequence[Pair], source: str, skip_missing: bool, progress: bool) -> ScoredPairs:
        loaded = cached_pair_images(pairs, self.image_dir, self.prepare.spec, source, skip_missing, progress)
        vectors = embedded(loaded, self.prepare, self.embed, self.batch_size, self.flip, progress)
        key_of = lambda row: str(loaded.paths[row])  # noqa: E731
        scores = compare(vectors.astype(np.float64), loaded.left, loaded.right, self.metric, key_of, self.facts.path)
        return ScoredPairs(loaded.pairs, scores, loaded.skipped, len(loaded.paths))


def embedded(
    loaded: PairImages, prepare: Preprocessing, embed: Embed, batch_size: int, flip: bool, progress: bool
) -> np.ndarray:
    """Every distinct image's embedding by a model fed as `prepare` says (with `flip`, averaged with its mirror's)."""
    return embed_batches(lambda batch: embed(prepare(batch)), loaded.images, batch_size, flip, progress)


def vector_output(path: Path, shape: Sequence) -> int | None:
    """The length of a vector output (None where symbolic); an output of another rank is refused."""
    if len(shape) != 2:
        raise CheckpointError(f"{path}: its output has shape {list(shape)}, not one vector per image (N, D)")
    return shape[1] if isinstance(shape[1], int) else None


def embedding_scorer(
    path: Path, kind: str, engine: str, found: ImageInput, embed: Embed, root: Path, batch_size: int, flip: bool,
    options: ModelOptions, parameters: int | None = None,
) -> ImageEmbeddingScorer:  # fmt: skip
    """The scorer of an embedding model whose input is `found`, run by `embed` on preprocessed batches."""
    if options.metric not in EMBEDDING_METRICS:
        raise LfwbenchError(f"unknown metric {options.metric!r}; one of {', '.join(EMBEDDING_METRICS)}")
    prepare = fitted_preprocessing(path, found, options)
    facts = ModelFacts(
        name=path.stem, kind=kind, path=str(path), sha256=file_digest(path),
        score_kind=EMBEDDING_METRICS[options.metric], engine=engine, metric=options.metric,
        preprocessing=prepare.describe(), parameters=parameters, input_shape=list(prepare.spec.shape),
    )  # fmt: skip
    batch = found.batch or batch_size
    return ImageEmbeddingScorer(facts, [path], find_variant(root)[1], prepare, embed, batch, flip, options.metric)


def is_onnx(path: Path) -> bool:
    return path.suffix.lower() == ".onnx"


def open_onnx(path: Path, root: Path, batch_size: int, flip: bool, options: ModelOptions) -> ImageEmbeddingScorer:
    """An ONNX embedding model through onnxruntime's CPU provider, in float32."""
    import onnxruntime

    settings = onnxruntime.SessionOptions()
    settings.log_severity_level = 3  # its warnings about unused initialisers are not the user's
    try:
        session = onnxruntime.InferenceSession(str(path), settings, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own types for a damaged or foreign file
        raise CheckpointError(f"{path}: not a loadable ONNX model ({str(error).splitlines()[0][:200]})") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        raise CheckpointError(f"{path}: the model has {len(inputs)} inputs; an embedding model takes one image")
    found = image_input(path, inputs[0].shape)
    vector_output(path, outputs[0].shape)
    name, output = inputs[0].name, outputs[0].name

    def embed(batch: np.ndarray) -> np.ndarray:
        return session.run([output], {name: batch})[0]

    engine = f"onnxruntime {onnxruntime.__version__} (CPU), float32"
    return embedding_scorer(path, "ONNX embedding model", engine, found, embed, root, batch_size, flip, options)


def is_tflite(path: Path) -> bool:
    """A TFLite flatbuffer: its identifier `TFL3` at bytes 4-8."""
    try:
        with open(path, "rb") as handle:
            return handle.read(8)[4:8] == b"TFL3"
    except OSError:
        return False


def open_tflite(path: Path, root: Path, batch_size: int, flip: bool, options: ModelOptions) -> ImageEmbeddingScorer:
    """A TFLite embedding model through LiteRT (XNNPACK on the CPU), resized to the batch."""
    from lfwbench.engine import lite_interpreter

    try:
        interpreter = lite_interpreter(path.read_bytes())
    except (ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path}: not a loadable TFLite model ({str(error).splitlines()[0][:200]})") from None
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1:
        raise CheckpointError(f"{path}: the model has {len(inputs)} inputs; an embedding model takes one image")
    signature = inputs[0].get("shape_signature", inputs[0]["shape"])
    found = image_input(path, [int(d) for d in signature])
    vector_output(path, [int(d) for d in outputs[0]["shape"]])
    batch = found.batch or batch_size
    shape = [batch, *(int(d) for d in inputs[0]["shape"][1:])]
    interpreter.resize_tensor_input(inputs[0]["index"], shape)
    interpreter.allocate_tensors()

    def embed(images: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(inputs[0]["index"], images.astype(inputs[0]["dtype"]))
        interpreter.invoke()
        return interpreter.get_tensor(outputs[0]["index"]).copy()

    return embedding_scorer(path, "TFLite embedding model", "LiteRT (XNNPACK on the CPU), float32", found, embed,
                            root, batch, flip, options)  # fmt: skip
