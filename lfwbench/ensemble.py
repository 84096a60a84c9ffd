"""Merge trained runs into one checkpoint: seeds of a recipe voting together score better than any one of them.

The merged network is an ordinary lfwbench Siamese model (its twin puts the members' embeddings side by side,
its head averages their logits), so `evaluate`, `report` and the int8 engine take it unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np

from lfwbench import runs
from lfwbench.checkpoints import load_model, save_model
from lfwbench.errors import LfwbenchError
from lfwbench.files import file_digest, write_json
from lfwbench.model import build_head
from lfwbench.presets import get_preset
from lfwbench.training import write_inference_bundle

# What members must share: the same images in, and the same people held out for the validation threshold.
SHARED = ("size", "channels", "crop", "regime", "train_list", "eval_list", "people_list", "val_fraction")


def _renamed_twin(twin: keras.Model, name: str) -> keras.Model:
    """A copy of `twin` whose layers carry `name` as a prefix: .h5 files need unique names across members."""

    def renamed(layer: keras.layers.Layer) -> keras.layers.Layer:
        return layer.__class__.from_config({**layer.get_config(), "name": f"{name}_{layer.name}"})

    copy = keras.models.clone_model(twin, clone_function=renamed)
    copy.set_weights(twin.get_weights())
    return keras.Model(copy.input, copy.output, name=name)


def merge_siamese(models: Sequence[keras.Model], preset: str) -> keras.Model:
    """One model scoring sigmoid(mean of the members' logits): twins side by side, head kernels divided by N.

    Cosine heads merge exactly too: each member's unit embedding scaled by sqrt(s_i) makes the cosine of the joined
    embeddings sum(s_i cos_i) / sum(s_i), so one unit of weight sum(s_i) / N gives the mean logit.
    """
    twins = [model.get_layer("twin") for model in models]
    heads = [model.get_layer("head") for model in models]
    weights = [head.get_layer("same").get_weights() for head in heads]
    cosine = [any(layer.name == "cosine" for layer in head.layers) for head in heads]
    if len(set(cosine)) > 1:
        raise LfwbenchError("members with a cosine head and members with an L1 head cannot be merged")
    scales = np.array([kernel.item() for kernel, _ in weights]) if cosine[0] else None
    if scales is not None and not (scales > 0).all():
        raise LfwbenchError("a cosine-head member has a scale s <= 0: its scores fall as faces grow alike")
    shape = tuple(twins[0].input.shape[1:])
    image = keras.Input(shape, name="image")
    members = []
    for number, twin in enumerate(twins, start=1):
        embedding = _renamed_twin(twin, f"member{number}")(image)
        if scales is not None:
            embedding = keras.layers.UnitNormalization(name=f"member{number}_unit")(embedding)
            embedding = keras.layers.Rescaling(float(np.sqrt(scales[number - 1])), name=f"member{number}_s")(embedding)
        members.append(embedding)
    twin = keras.Model(image, keras.layers.Concatenate(name="members")(members), name="twin")
    joined = replace(
        get_preset(preset), embedding=int(twin.output.shape[-1]), head="l1" if scales is None else "cosine"
    )
    head = build_head(joined, dropout=0.0)
    kernels, biases = zip(*weights, strict=True)
    kernel = np.array([[scales.sum()]]) if scales is not None else np.concatenate(kernels)
    head.get_layer("same").set_weights([kernel / len(models), np.mean(biases, axis=0)])
    left, right = keras.Input(shape, name="left"), keras.Input(shape, name="right")
    return keras.Model([left, right], head([twin(left), twin(right)]), name=f"siamese_{preset}")


def _member_run(path: Path) -> runs.Run:
    run, warnings = runs.read_run(path, file_digest(path))
    if run is None:
        reason = "; ".join(warnings) or f"no {runs.CONFIG} beside it"
        raise LfwbenchError(f"{path}: {reason}; ensemble members must be lfwbench training runs")
    return run


def write_ensemble(model_paths: Sequence[Path], out_dir: Path, overwrite: bool = False) -> Path:
    """Merge the checkpoints into `out_dir` (best.keras, best.h5, the int8 bundle, config.json); returns best.keras.

    Members must share input, crop, training lists and validation split, so that the merged run's validation
    threshold is chosen on pairs none of them trained on. The folder is written like a training run: refused when
    not empty (unless `overwrite`), locked, and committed in one step.
    """
    if len(model_paths) < 2:
        raise LfwbenchError("an ensemble needs two or more checkpoints")
    paths = [Path(path) for path in model_paths]
    inside = [path for path in paths if path.parent.resolve() == Path(out_dir).resolve()]
    if inside:
        raise LfwbenchError(f"{inside[0]}: a member lies in --out {out_dir}, which the ensemble would replace")
    members = [_member_run(path) for path in paths]
    first = members[0]
    for path, run in zip(paths[1:], members[1:], strict=True):
        for key in (*SHARED, "split_seed"):
            value, expected = getattr(run.config, key), getattr(first.config, key)
            if value != expected:
                raise LfwbenchError(f"{path}: {key}={value}, but {paths[0]} has {key}={expected}; members must match")
    model = merge_siamese([load_model(path) for path in paths], first.config.preset)
    described = [
        runs.EnsembleMember(str(path), file_digest(path), run.config.seed)
        for path, run in zip(paths, members, strict=True)
    ]
    record = replace(first.record, ensemble=described)  # its config: the first member's; every seed in `ensemble`
    with runs.writing(out_dir, "overwrite" if overwrite else "new") as folder:
        files = {
            runs.CONFIG: lambda target: write_json(target, record.to_dict()),
            runs.BEST_KERAS: lambda target: save_model(model, target, first.config.image_spec),
            runs.BEST_H5: lambda target: save_model(model, target, first.config.image_spec),
        }
        folder.commit(0, [], files)
        write_inference_bundle(folder, first.config.preset)
    return folder / runs.BEST_KERAS
