"""Keras models that are not lfwbench's: embedding models (one image in, a vector out) and Siamese models of any
architecture (two images in, a score out), Keras 2 `.h5` or Keras 3 `.keras`/`.h5`.

Each loads through Keras' own layer classes with safe mode on. A `Lambda` is code, so it never loads: a copy of
the file's stored config names a safe operation instead (`PairOperation`, one of SAFE_OPS), chosen with
`--lambda OP` (or `NAME=OP`), or assumed where the graph leaves no doubt (said so in a note).
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import keras
import numpy as np
import tensorflow as tf

from lfwbench import model as _lfwbench_layers  # noqa: F401  registers lfwbench's layers, which a twin handed over names
from lfwbench.engine import PAIR_CHUNK
from lfwbench.errors import CheckpointError, LfwbenchError
from lfwbench.files import file_digest
from lfwbench.foreign_models import (
    ModelOptions,
    embedded,
    embedding_scorer,
    fitted_preprocessing,
    image_input,
    vector_output,
)
from lfwbench.images import cached_pair_images, find_variant
from lfwbench.pairs import Pair
from lfwbench.preprocessing import Preprocessing
from lfwbench.results import ModelFacts
from lfwbench.runs import Run
from lfwbench.scoring import SAFE_OPS, SCORE_KINDS, ScoredPairs


@keras.saving.register_keras_serializable(package="lfwbench")
class PairOperation(keras.layers.Layer):
    """A named operation on two tensors, in place of a model's Lambda: |a - b| element-wise (`abs-diff`), the sum
    of it (`l1`), Euclidean distance (`l2`), its square, or cosine similarity; the last four give one number."""

    def __init__(self, op: str = "abs-diff", **kwargs):
        super().__init__(**kwargs)
        if op not in SAFE_OPS:
            raise ValueError(f"unknown operation {op!r}; one of {', '.join(SAFE_OPS)}")
        self.op = op

    def call(self, inputs):
        if not isinstance(inputs, list | tuple) or len(inputs) != 2:
            raise ValueError(
                f"{self.op} joins two tensors, got {len(inputs) if isinstance(inputs, list | tuple) else 1}"
            )
        a, b = inputs
        if self.op == "abs-diff":
            return keras.ops.abs(a - b)
        if self.op == "l1":
            return keras.ops.sum(keras.ops.abs(a - b), axis=-1, keepdims=True)
        if self.op == "cosine":
            norms = keras.ops.norm(a, axis=-1, keepdims=True) * keras.ops.norm(b, axis=-1, keepdims=True)
            return keras.ops.sum(a * b, axis=-1, keepdims=True) / keras.ops.maximum(norms, 1e-12)
        squared = keras.ops.sum(keras.ops.square(a - b), axis=-1, keepdims=True)
        return squared if self.op == "squared-l2" else keras.ops.sqrt(keras.ops.maximum(squared, 1e-12))

    def compute_output_shape(self, shapes):
        first, second = shapes
        if tuple(first[1:]) != tuple(second[1:]):
            raise ValueError(f"{self.op} needs two tensors of one shape, got {tuple(first)} and {tuple(second)}")
        return tuple(first) if self.op == "abs-diff" else (*first[:-1], 1)

    def get_config(self):
        return {**super().get_config(), "op": self.op}


def _layers(config: dict) -> Iterator[dict]:
    """Every layer record of a stored model config, nested models' too."""
    for layer in config.get("config", {}).get("layers", []) if isinstance(config.get("config"), dict) else []:
        yield layer
        if isinstance(layer, dict) and layer.get("class_name") in ("Functional", "Sequential", "Model"):
            yield from _layers(layer)


def _sources(nodes: object) -> list[str]:
    """The layers whose outputs a layer's inbound nodes name (Keras 3 `keras_history`, Keras 2 `[name, i, j]`)."""
    found: list[str] = []
    if isinstance(nodes, dict):
        history = (
            nodes.get("config", {}).get("keras_history") if nodes.get("class_name") == "__keras_tensor__" else None
        )
        if history:
            return [history[0]]
        for value in nodes.values():
            found += _sources(value)
    elif isinstance(nodes, list):
        if len(nodes) >= 3 and isinstance(nodes[0], str) and isinstance(nodes[1], int):
            return [nodes[0]]
        for value in nodes:
            found += _sources(value)
    return found


def _outputs(config: dict) -> list[str]:
    return _sources(config.get("config", {}).get("output_layers", []))


@dataclass
class Replacement:
    """A Lambda of the file and the safe operation that stands for it, `assumed` where the graph chose it."""

    name: str
    op: str
    assumed: bool


def _choose_ops(path: Path, config: dict, given: Sequence[str]) -> list[Replacement]:
    """Which operation stands for each Lambda: `NAME=OP`, a bare `OP` for every Lambda, or the graph's own
    evidence (two inputs into Dense(1): abs-diff; two inputs into the model's output: l2); else one line."""
    lambdas = [layer for layer in _layers(config) if layer.get("class_name") == "Lambda"]
    named = dict(item.split("=", 1) for item in given if "=" in item)
    bare = [item for item in given if "=" not in item]
    for op in [*named.values(), *bare]:
        if op not in SAFE_OPS:
            raise LfwbenchError(f"--lambda {op}: not an operation lfwbench knows; one of {', '.join(SAFE_OPS)}")
    names = {layer["config"]["name"] for layer in lambdas}
    for name in set(named) - names:
        raise LfwbenchError(
            f"{path}: --lambda {name}=...: the model has no Lambda {name!r} ({', '.join(names) or 'none'})"
        )
    consumers: dict[str, list[dict]] = {}
    for layer in _layers(config):
        for source in _sources(layer.get("inbound_nodes", [])):
            consumers.setdefault(source, []).append(layer)
    outputs = set(_outputs(config))
    chosen = []
    for layer in lambdas:
        name = layer["config"]["name"]
        if name in named or bare:
            chosen.append(Replacement(name, named.get(name) or bare[0], False))
            continue
        joins_two = len(_sources(layer.get("inbound_nodes", []))) == 2
        after = consumers.get(name, [])
        if (
            joins_two
            and len(after) == 1
            and after[0].get("class_name") == "Dense"
            and after[0]["config"].get("units") == 1
        ):
            chosen.append(Replacement(name, "abs-diff", True))
        elif joins_two and not after and name in outputs:
            chosen.append(Replacement(name, "l2", True))
        else:
            raise LfwbenchError(
                f"{path}: Lambda {name!r} is code, which lfwbench never runs, and the graph does not say what it "
                f"computes: give --lambda {name}=OP with OP one of {', '.join(SAFE_OPS)}"
            )
    return chosen


def _replaced(config: object, ops: dict[str, str]) -> object:
    """The config with each named Lambda's record replaced by a PairOperation of the same name and nodes."""
    if isinstance(config, list):
        return [_replaced(value, ops) for value in config]
    if not isinstance(config, dict):
        return config
    name = config.get("config", {}).get("name") if isinstance(config.get("config"), dict) else None
    if config.get("class_name") == "Lambda" and name in ops:
        return {**{key: value for key, value in config.items() if key not in ("config", "module", "registered_name")},
                "class_name": "lfwbench>PairOperation", "registered_name": "lfwbench>PairOperation",
                "config": {"name": name, "op": ops[name], "trainable": False}}  # fmt: skip
    return {key: _replaced(value, ops) for key, value in config.items()}


def _keras2_calls(config: dict) -> dict:
    """A Keras 2 config with the calls of nested models renumbered as Keras 3 counts them: Keras 2 gives a model
    built from its inputs a node of its own (0), so the first call is node 1; Keras 3 reads that as a loop."""
    layers = config.get("config", {}).get("layers", [])
    nested = {layer["config"]["name"] for layer in layers if layer.get("class_name") in ("Functional", "Model",
              "Sequential")}  # fmt: skip

    def renumber(nodes):
        if isinstance(nodes, list):
            if len(nodes) >= 3 and nodes[0] in nested and isinstance(nodes[1], int) and nodes[1] >= 1:
                return [nodes[0], nodes[1] - 1, *nodes[2:]]
            return [renumber(value) for value in nodes]
        return nodes

    renumbered = [{**layer, "inbound_nodes": renumber(layer.get("inbound_nodes", []))} for layer in layers]
    renumbered = [_keras2_calls(layer) if layer.get("class_name") in ("Functional", "Model") else layer
                  for layer in renumbered]  # fmt: skip
    return {**config, "config": {**config["config"], "layers": renumbered}} if layers else config


def _stored_config(path: Path) -> tuple[dict, str]:
    """The model config a Keras file stores (a Keras 2 one renumbered for Keras 3), and its format: "keras" (a
    .keras zip) or "h5"."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return json.loads(archive.read("config.json")), "keras"
        with h5py.File(path, "r") as file:
            stored, version = file.attrs.get("model_config"), file.attrs.get("keras_version", b"")
            if stored is None:
                raise CheckpointError(f"{path}: HDF5 file holds no model config (weights-only files need their code)")
            config = json.loads(stored.decode() if isinstance(stored, bytes) else stored)
            keras2 = (version.decode() if isinstance(version, bytes) else str(version)).startswith("2")
            return _keras2_calls(config) if keras2 else config, "h5"
    except (OSError, KeyError, ValueError, RecursionError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"{path}: unreadable Keras file ({str(error)[:200]})") from None


def _rewritten(path: Path, config: dict, kind: str, folder: Path) -> Path:
    """A copy of the file whose stored config is `config` (weights unchanged), for Keras to load in safe mode."""
    copy = folder / path.name
    if kind == "keras":
        with zipfile.ZipFile(path) as source, zipfile.ZipFile(copy, "w") as target:
            for item in source.infolist():
                content = json.dumps(config).encode() if item.filename == "config.json" else source.read(item)
                target.writestr(item, content)
    else:
        copy.write_bytes(path.read_bytes())
        with h5py.File(copy, "a") as file:
            file.attrs["model_config"] = json.dumps(config)
    return copy


def load_foreign(path: Path, lambdas: Sequence[str]) -> tuple[keras.Model, list[str], dict]:
    """A Keras model of any architecture, loaded in safe mode with every Lambda replaced; notes on what was
    assumed; the config it was loaded from. No code from the file runs."""
    config, kind = _stored_config(path)
    chosen = _choose_ops(path, config, lambdas)
    notes = [
        f"{path.name}: Lambda {r.name!r} taken as {r.op} (the graph leaves no doubt; --lambda {r.name}=OP otherwise)"
        for r in chosen
        if r.assumed
    ]
    replaced = _replaced(config, {r.name: r.op for r in chosen})
    try:
        with tempfile.TemporaryDirectory() as folder:
            model = keras.saving.load_model(
                _rewritten(path, replaced, kind, Path(folder)), compile=False, safe_mode=True
            )
    except Exception as error:  # Keras raises many types for a layer it does not know or a graph that does not fit
        raise CheckpointError(f"{path}: cannot load ({_said(error)})") from None
    return model, notes, replaced


def _said(error: Exception) -> str:
    return " ".join(str(error).split())[:300] or type(error).__name__


NESTED = ("Functional", "Model", "Sequential")


def _redirected(value: object, tower: str, embeddings: dict[int, str]) -> object:
    """Node references to the tower's k-th call turned into references to embedding input k (either format)."""
    if isinstance(value, dict):
        history = (
            value.get("config", {}).get("keras_history") if value.get("class_name") == "__keras_tensor__" else None
        )
        if history and history[0] == tower:
            return {**value, "config": {**value["config"], "keras_history": [embeddings[history[1]], 0, 0]}}
        return {key: _redirected(item, tower, embeddings) for key, item in value.items()}
    if isinstance(value, list):
        if len(value) >= 3 and value[0] == tower and isinstance(value[1], int):
            return [embeddings[value[1]], 0, 0, *value[3:]]
        return [_redirected(item, tower, embeddings) for item in value]
    return value


def split_siamese(model: keras.Model, config: dict) -> tuple[keras.Model, keras.Model] | None:
    """tower(a), tower(b), then a head: the shared tower and the head as a model of the two embeddings (weights
    copied), so that each distinct image is embedded once; None for any other graph."""
    inner = config.get("config", {})
    inputs = [ref[0] for ref in inner.get("input_layers", [])]
    if len(inputs) != 2:
        return None
    for layer in inner.get("layers", []):
        calls = [_sources(node) for node in layer.get("inbound_nodes", [])]
        if layer.get("class_name") in NESTED and sorted(calls) == sorted([[inputs[0]], [inputs[1]]]):
            tower = layer["config"]["name"]
            break
    else:
        return None
    names = [f"lfwbench_embedding_{k}" for k in range(2)]
    embeddings = {k: names[inputs.index(call[0])] for k, call in enumerate(calls)}
    width = int(model.get_layer(tower).outputs[0].shape[-1])
    head_inputs = [{"class_name": "InputLayer", "name": name, "inbound_nodes": [],
                    "config": {"batch_shape": [None, width], "dtype": "float32", "sparse": False, "name": name}}
                   for name in names]  # fmt: skip
    rest = [layer for layer in inner["layers"] if layer["config"]["name"] not in (tower, *inputs)]
    head_config = {**inner, "name": "head", "layers": head_inputs + _redirected(rest, tower, embeddings),
                   "input_layers": [[name, 0, 0] for name in names]}  # fmt: skip
    try:
        head = keras.Model.from_config(head_config)
        for layer in head.layers:
            if layer.weights:
                layer.set_weights(model.get_layer(layer.name).get_weights())
    except Exception:  # a graph whose head cannot stand alone: scored as a whole, pair by pair
        return None
    return model.get_layer(tower), head


def _keras_input(path: Path, model: keras.Model, index: int):
    return image_input(path, [None, *model.inputs[index].shape[1:]])


def _traced(model: keras.Model):
    """The model through one traced function, in float32."""
    run = tf.function(lambda *xs: tf.cast(model(list(xs) if len(xs) > 1 else xs[0], training=False), tf.float32))
    return lambda *batches: run(*batches).numpy()


@dataclass
class KerasPairScorer:
    """A two-input Keras model: its shared tower embedding each distinct image once and its head scoring pairs of
    embeddings, or (a graph that does not split) the whole model on pairs of images."""

    facts: ModelFacts
    inputs: list[Path]
    image_dir: Path
    prepare: Preprocessing
    predict: object  # the whole model on two batches of images, or None where `tower` and `head` split it
    batch_size: int
    flip: bool
    tower: object = None
    head: object = None
    run: Run | None = None
    notes: list[str] = field(default_factory=list)

    def score(self, pairs: Sequence[Pair], source: str, skip_missing: bool, progress: bool) -> ScoredPairs:
        loaded = cached_pair_images(pairs, self.image_dir, self.prepare.spec, source, skip_missing, progress)
        if self.predict is None:
            vectors = embedded(loaded, self.prepare, self.tower, self.batch_size, self.flip, progress)
            left, right = loaded.left, loaded.right
            scores = np.concatenate([
                self.head(vectors[left[k : k + PAIR_CHUNK]], vectors[right[k : k + PAIR_CHUNK]]).reshape(-1)
                for k in range(0, len(left), PAIR_CHUNK)
            ]).astype(np.float64)  # fmt: skip
            return ScoredPairs(loaded.pairs, scores, loaded.skipped, len(loaded.paths))
        scores = []
        for start in range(0, len(loaded.left), self.batch_size):
            a = loaded.images[loaded.left[start : start + self.batch_size]]
            b = loaded.images[loaded.right[start : start + self.batch_size]]
            value = self.predict(self.prepare(a), self.prepare(b))
            if self.flip:
                value = (value + self.predict(self.prepare(a[:, :, ::-1]), self.prepare(b[:, :, ::-1]))) / 2
            scores.append(np.asarray(value, dtype=np.float64).reshape(len(a), -1)[:, 0])
        return ScoredPairs(loaded.pairs, np.concatenate(scores), loaded.skipped, len(loaded.paths))


def _output_kind(path: Path, model: keras.Model, given: str | None) -> str:
    """What the pair model's output is: a sigmoid unit a probability, a distance op a distance, or `--score-kind`."""
    last = model.layers[-1]  # a functional model's layers are in graph order: the output's layer comes last
    if given:
        return given
    if isinstance(last, keras.layers.Dense) and last.units == 1 and last.activation is keras.activations.sigmoid:
        return "probability"
    if isinstance(last, PairOperation) and SAFE_OPS[last.op]:
        return SAFE_OPS[last.op]
    kinds = "|".join(SCORE_KINDS)
    raise LfwbenchError(
        f"{path}: the model's output is neither a sigmoid unit nor a distance: give --score-kind {kinds}"
    )


def open_keras(path: Path, root: Path, batch_size: int, flip: bool, options: ModelOptions):
    """A Keras model that is not lfwbench's: one image input -> an embedding scorer, two -> a pair scorer (a tower
    and a head where the graph splits so)."""
    model, notes, config = load_foreign(path, options.lambdas)
    version = f"Keras {keras.__version__} on the CPU, float32"
    parameters = int(model.count_params())
    if len(model.inputs) == 1:
        found = _keras_input(path, model, 0)
        vector_output(path, list(model.outputs[0].shape))
        traced = _traced(model)
        scorer = embedding_scorer(path, "Keras embedding model", version, found, traced, root, batch_size, flip,
                                  options, parameters)  # fmt: skip
        scorer.notes = notes
        return scorer
    if len(model.inputs) != 2:
        raise CheckpointError(f"{path}: the model has {len(model.inputs)} inputs; lfwbench scores one or two images")
    found = _keras_input(path, model, 0)
    if _keras_input(path, model, 1) != found:
        raise CheckpointError(f"{path}: its two inputs differ; a Siamese model takes two images of one kind")
    prepare = fitted_preprocessing(path, found, options)
    kind = _output_kind(path, model, options.score_kind)
    split = split_siamese(model, config)
    engine = f"{version}, each distinct image embedded once by the shared tower" if split else version
    facts = ModelFacts(
        name=path.stem, kind="Keras Siamese model", path=str(path), sha256=file_digest(path), score_kind=kind,
        engine=engine, preprocessing=prepare.describe(), parameters=parameters, input_shape=list(prepare.spec.shape),
    )  # fmt: skip
    image_dir = find_variant(root)[1]
    if split:
        tower, head = (_traced(part) for part in split)
        return KerasPairScorer(facts, [path], image_dir, prepare, None, batch_size, flip, tower, head, notes=notes)
    return KerasPairScorer(facts, [path], image_dir, prepare, _traced(model), batch_size, flip, notes=notes)
