"""Save and load Siamese checkpoints: lfwbench's `.keras` and `.h5`, and the original notebook's Keras 2 `.h5`.

A Keras 2 file is never deserialised by Keras (its Lambda holds marshalled bytecode): the Koch-family topology
is read from the stored JSON config, rebuilt with lfwbench's layers, and the weights are read with h5py.

Every checkpoint lfwbench writes carries its own preprocessing (`ImageSpec`: side, channels, crop) and preset: an
entry `lfwbench.json` in the `.keras` zip, an attribute of the `.h5` file. `read_stamp` reads it without TensorFlow,
so a checkpoint copied out of its run folder is still fed the images it was trained on.
"""

from __future__ import annotations

import contextlib
import json
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from lfwbench.errors import CheckpointError, brief
from lfwbench.files import replacing
from lfwbench.images import ImageSpec
from lfwbench.presets import ConvBlock, Preset

if TYPE_CHECKING:  # Keras is imported where a model is built or loaded, so `image_spec` needs no TensorFlow
    import keras

SPEC_ENTRY = "lfwbench.json"  # the .keras zip entry / .h5 attribute holding the checkpoint's ImageSpec

WEIGHT_ORDER = {
    "Conv2D": ("kernel", "bias"),
    "Dense": ("kernel", "bias"),
    "BatchNormalization": ("gamma", "beta", "moving_mean", "moving_variance"),
}


def every_layer(model: keras.Model) -> Iterator[keras.layers.Layer]:
    """The model and every layer in it, nested models' too, through Keras's public `layers` (one level each)."""
    yield model
    for layer in model.layers:
        yield from every_layer(layer) if hasattr(layer, "layers") else (layer,)


def _inference_copy(model: keras.Model) -> keras.Model:
    """A float32 copy with the same weights and no optimizer: Keras 3's .keras keeps Adam state of a compiled model,
    and a model trained in mixed precision would otherwise score in half precision wherever it is loaded."""
    import keras

    copy = keras.Model.from_config(model.get_config())
    for layer in every_layer(copy):
        layer.dtype_policy = "float32"
    copy.set_weights(model.get_weights())
    return copy


@contextlib.contextmanager
def quiet_absl() -> Iterator[None]:
    """absl's warnings off for the block: Keras logs one for every .h5 it writes, lfwbench writes one per epoch."""
    from absl import logging as absl_logging

    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        yield
    finally:
        absl_logging.set_verbosity(verbosity)


def save_model(
    model: keras.Model, path: str | Path, spec: ImageSpec | None = None, include_optimizer: bool = False
) -> None:
    """Write `.keras` or `.h5`, stamped with `spec` (default: the twin's input, no crop), to a temporary name in the
    same folder, then rename: never a half-written file."""
    target = model if include_optimizer else _inference_copy(model)
    if spec is None:
        size, _, channels = model.get_layer("twin").input.shape[1:]
        spec = ImageSpec(int(size), int(channels))
    stamp = json.dumps({**asdict(spec), "preset": model.name.removeprefix("siamese_")}, sort_keys=True)
    with replacing(path) as temporary, warnings.catch_warnings(), quiet_absl():
        warnings.simplefilter("ignore")  # Keras calls .h5 "legacy" (through absl too); users ask for it by name
        target.save(temporary)
        if zipfile.is_zipfile(temporary):
            with zipfile.ZipFile(temporary, "a") as archive:
                archive.writestr(SPEC_ENTRY, stamp)
        else:
            with h5py.File(temporary, "a") as file:
                file.attrs[SPEC_ENTRY] = stamp


@dataclass(frozen=True)
class Stamp:
    """What an lfwbench checkpoint says of itself, readable without TensorFlow."""

    spec: ImageSpec
    preset: str | None


def read_stamp(path: str | Path) -> Stamp | None:
    """The preprocessing and preset stamped into an lfwbench checkpoint; None for a checkpoint without a stamp (the
    notebook's, or one written before stamps)."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                stamp = archive.read(SPEC_ENTRY) if SPEC_ENTRY in archive.namelist() else None
        elif h5py.is_hdf5(path):
            with h5py.File(path, "r") as file:
                stamp = file.attrs.get(SPEC_ENTRY)
        else:
            raise CheckpointError(f"{path}: not a Keras checkpoint (neither a .keras zip nor HDF5)")
        if stamp is None:
            return None
        fields = json.loads(_text(stamp))
        preset = fields.pop("preset", None)
        spec = ImageSpec(**fields).checked()
        if preset is not None and not isinstance(preset, str):
            raise ValueError(f"stamp preset {brief(preset)}")
        return Stamp(spec, preset)
    except (OSError, ValueError, TypeError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"{path}: unreadable checkpoint ({error})") from None


def is_keras_file(path: str | Path) -> bool:
    """A `.keras` zip or an HDF5 file: what Keras saves."""
    return zipfile.is_zipfile(path) or h5py.is_hdf5(path)


def is_lfwbench_checkpoint(path: str | Path) -> bool:
    """Whether lfwbench made this file: stamped, or holding its `twin` and `head` (before stamps), or the original
    notebook's Koch-family Keras 2 `.h5`. Anything else is a model from elsewhere."""
    path = Path(path)
    try:
        if read_stamp(path) is not None:
            return True
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                config = json.loads(archive.read("config.json"))
            version = "3"
        else:
            with h5py.File(path, "r") as file:
                version = _text(file.attrs.get("keras_version", ""))
                config = json.loads(_text(file.attrs["model_config"]))
        names = {layer.get("config", {}).get("name") for layer in config.get("config", {}).get("layers", [])}
        if {"twin", "head"} <= names:
            return True
        if version.startswith("3"):
            return False
        _koch_family(path, config)
        return True
    except (CheckpointError, OSError, KeyError, ValueError, TypeError, AttributeError, zipfile.BadZipFile):
        return False


def load_model(path: str | Path, compile: bool = False) -> keras.Model:
    """The two-input model `[left, right] -> P(same)` from any checkpoint lfwbench knows.

    `.keras` (safe mode on) and lfwbench `.h5` load through Keras; Keras 2 `.h5` files from the original
    notebook are rebuilt from their config, with no code from the file executed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if zipfile.is_zipfile(path):
        return _keras_load(path, compile)
    if not h5py.is_hdf5(path):
        raise CheckpointError(f"{path}: not a Keras checkpoint (neither a .keras zip nor HDF5)")
    try:
        with h5py.File(path, "r") as file:
            version = _text(file.attrs.get("keras_version", ""))
            config = json.loads(_text(file.attrs["model_config"])) if "model_config" in file.attrs else None
    except (OSError, KeyError, ValueError) as error:
        raise CheckpointError(f"{path}: unreadable HDF5 checkpoint ({error})") from None
    if config is None:
        raise CheckpointError(f"{path}: HDF5 file holds no model config (weights-only files need their code)")
    if version.startswith("3."):
        return _keras_load(path, compile)
    try:
        return load_keras2_h5(path, config)
    except (KeyError, AttributeError, TypeError, IndexError) as error:  # a config that is JSON but not a model's
        raise CheckpointError(f"{path}: malformed model config ({type(error).__name__}: {error})") from None


def _keras_load(path: Path, compile: bool) -> keras.Model:
    import keras

    from lfwbench import model  # noqa: F401  registers L1Distance, which the stored config names

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as error:  # Keras raises many types for a damaged or foreign file
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"{path}: cannot load ({message})") from None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _koch_family(path: Path, config: dict) -> tuple[Preset, tuple[int, int, int], float, list[dict], dict]:
    """Recognise `Input x2 -> shared conv tower -> Lambda -> [Dropout] -> Dense(1)` and describe it as a preset."""
    top = config.get("config", {}).get("layers", [])
    towers = [layer for layer in top if layer.get("class_name") in ("Sequential", "Functional", "Model")]
    denses = [layer for layer in top if layer.get("class_name") == "Dense"]
    if len(towers) != 1 or len(denses) != 1 or not any(layer.get("class_name") == "Lambda" for layer in top):
        raise CheckpointError(f"{path}: unknown architecture (expected a Siamese twin joined by a distance layer)")
    tower, head = towers[0], denses[0]
    inner = tower["config"]["layers"]
    shapes = [layer["config"].get("batch_input_shape") or layer["config"].get("batch_shape") for layer in inner]
    shapes += [layer["config"].get("batch_input_shape") for layer in top if layer.get("class_name") == "InputLayer"]
    shape = next((tuple(s[1:]) for s in shapes if s), None)
    blocks, weighted, embedding = [], [], None
    for layer in inner:
        kind, settings = layer["class_name"], layer["config"]
        if kind == "Conv2D":
            blocks.append(ConvBlock(settings["filters"], settings["kernel_size"][0], pool=False))
        elif kind == "MaxPooling2D" and blocks:
            blocks[-1] = ConvBlock(blocks[-1].filters, blocks[-1].kernel, pool=True)
        elif kind == "Dense":
            embedding = settings
        elif kind not in ("InputLayer", "BatchNormalization", "Flatten"):
            raise CheckpointError(f"{path}: unknown architecture (layer {kind} in the twin)")
        if kind in WEIGHT_ORDER:
            weighted.append(layer)
    if not blocks or embedding is None or shape is None or head["config"]["units"] != 1:
        raise CheckpointError(f"{path}: unknown architecture (expected Conv2D blocks, Flatten and Dense in the twin)")
    preset = Preset(
        "koch-legacy",
        tuple(blocks),
        embedding["units"],
        batchnorm=any(layer["class_name"] == "BatchNormalization" for layer in inner),
        padding=inner[[layer["class_name"] for layer in inner].index("Conv2D")]["config"].get("padding", "valid"),
        embedding_activation=embedding.get("activation", "sigmoid"),
    )
    dropout = next((layer["config"]["rate"] for layer in top if layer.get("class_name") == "Dropout"), 0.0)
    return preset, shape, dropout, weighted, {"tower": tower, "head": head}


def _stored_weights(group: h5py.Group) -> dict[str, dict[str, np.ndarray]]:
    """`{layer: {kind: array}}` from a Keras 2 layer group, by the stored weight names (`conv2d/kernel:0`)."""
    result: dict[str, dict[str, np.ndarray]] = {}
    for name in group.attrs.get("weight_names", []):
        name = _text(name)
        layer, kind = name.split("/")[-2], name.split("/")[-1].split(":")[0]
        result.setdefault(layer, {})[kind] = np.asarray(group[name])
    return result


def load_keras2_h5(path: Path, config: dict) -> keras.Model:
    """Rebuild a notebook-era (Keras 2) Koch-family Siamese model and read its weights with h5py."""
    from lfwbench.model import build_siamese

    preset, shape, dropout, weighted, named = _koch_family(path, config)
    model = build_siamese(preset, shape, dropout=dropout, compile=False)
    ours = [layer for layer in model.get_layer("twin").layers if layer.weights]
    try:
        with h5py.File(path, "r") as file:
            weights = file["model_weights"]
            tower = _stored_weights(weights[named["tower"]["config"]["name"]])
            head = _stored_weights(weights[named["head"]["config"]["name"]])
            for theirs, layer in zip(weighted, ours, strict=True):
                stored = tower[theirs["config"]["name"]]
                layer.set_weights([stored[kind] for kind in WEIGHT_ORDER[theirs["class_name"]]])
            (head_weights,) = head.values()
            model.get_layer("head").get_layer("same").set_weights([head_weights["kernel"], head_weights["bias"]])
    except (KeyError, ValueError) as error:
        raise CheckpointError(f"{path}: weights do not match the stored architecture ({error})") from None
    return model
