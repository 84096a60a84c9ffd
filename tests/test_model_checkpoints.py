from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from lfwbench.checkpoints import every_layer, load_model, save_model  # noqa: E402
from lfwbench.errors import CheckpointError  # noqa: E402
from lfwbench.model import (  # noqa: E402
    ConvBlock,
    FusedBatchNormalization,
    Preset,
    SplitBiasConv2D,
    build_siamese,
    layer_table,
)


def images(count: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, *shape), dtype=np.uint8)


def test_koch_twin_has_the_notebooks_parameter_count() -> None:
    model = build_siamese("koch", (105, 105, 3), compile=False)
    assert model.get_layer("twin").count_params() == 38_962_752
    assert model.get_layer("twin").output.shape[-1] == 4096
    rows = layer_table(model)
    assert rows[1]["layer"] == "twin/conv1" and rows[1]["parameters"] == 10 * 10 * 3 * 64 + 64
    kinds = {row["layer"]: row["type"] for row in rows}  # Keras' names for our drop-ins, our own for the join
    assert kinds["twin/conv1"] == "Conv2D" and kinds["twin/bn1"] == "BatchNormalization"
    assert kinds["head/l1_distance"] == "L1Distance"
    assert sum(row["parameters"] for row in rows) == model.count_params()


def test_model_is_head_of_twin_embeddings() -> None:
    model = build_siamese("tiny", seed=1)
    left, right = images(5, (32, 32, 3), 1), images(5, (32, 32, 3), 2)
    twin, head = model.get_layer("twin"), model.get_layer("head")
    direct = head.predict([twin.predict(left, verbose=0), twin.predict(right, verbose=0)], verbose=0)
    np.testing.assert_allclose(model.predict([left, right], verbose=0), direct, atol=1e-6)


def test_fused_batch_normalisation_trains_and_infers_as_keras_own() -> None:
    tf = pytest.importorskip("tensorflow")
    x = tf.constant(np.random.default_rng(0).normal(2, 3, (16, 8, 8, 5)), tf.float32)
    layers = keras.layers.BatchNormalization(), FusedBatchNormalization()
    outcomes = []
    for layer in layers:
        layer.build(x.shape)
        layer.gamma.assign(np.linspace(0.5, 2, 5))
        layer.beta.assign(np.linspace(-1, 1, 5))
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y**3)
        gradients = tape.gradient(loss, [x, layer.gamma, layer.beta])
        outcomes.append([y, *gradients, layer.moving_mean, layer.moving_variance, layer(x, training=False)])
    for keras_own, fused in zip(*outcomes, strict=True):
        np.testing.assert_allclose(fused, keras_own, rtol=1e-4, atol=1e-4)


def test_fused_batch_normalisation_takes_bfloat16_as_keras_own_does() -> None:
    tf = pytest.importorskip("tensorflow")
    x = tf.constant(np.random.default_rng(1).normal(2, 3, (16, 8, 8, 5)), tf.bfloat16)
    outcomes = []
    for kind in keras.layers.BatchNormalization, FusedBatchNormalization:
        layer = kind(dtype="mixed_bfloat16")
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) ** 2)
        assert y.dtype == tf.bfloat16
        outcomes.append([y, tape.gradient(loss, x), layer.moving_mean, layer.moving_variance])
    for keras_own, fused in zip(*outcomes, strict=True):  # bfloat16 keeps 8 bits of mantissa: 2 parts in 256
        np.testing.assert_allclose(tf.cast(fused, tf.float32), tf.cast(keras_own, tf.float32), rtol=2e-2, atol=2e-2)


def test_split_bias_convolution_trains_and_infers_as_keras_own() -> None:
    tf = pytest.importorskip("tensorflow")
    x = tf.constant(np.random.default_rng(2).normal(0, 1, (4, 12, 12, 3)), tf.float32)
    weights = None
    outcomes = []
    for layer in keras.layers.Conv2D(6, 3, activation="relu"), SplitBiasConv2D(6, 3, activation="relu"):
        layer.build(x.shape)
        if weights is None:
            layer.bias.assign(np.linspace(-0.2, 0.2, 6))
            weights = layer.get_weights()
        layer.set_weights(weights)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * tf.range(6, dtype=tf.float32))
        outcomes.append([y, *tape.gradient(loss, [x, layer.kernel, layer.bias]), layer(x, training=False)])
    for keras_own, split in zip(*outcomes, strict=True):
        np.testing.assert_allclose(split, keras_own, rtol=1e-5, atol=1e-5)


def test_head_scores_in_float32_under_mixed_precision() -> None:
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_siamese("tiny", compile=False)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("twin").get_layer("conv1").compute_dtype == "bfloat16"
    assert {layer.compute_dtype for layer in model.get_layer("head").layers[2:]} == {"float32"}


LOAD_AND_PREDICT = """
import sys, numpy as np
from lfwbench.checkpoints import load_model
model = load_model(sys.argv[1])
x = np.load(sys.argv[2])
np.save(sys.argv[3], model.predict([x[0], x[1]], verbose=0))
"""


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_checkpoint_reloads_in_fresh_process_with_same_predictions(tmp_path: Path, suffix: str) -> None:
    model = build_siamese("tiny", seed=2)
    pair = np.stack([images(6, (32, 32, 3), 3), images(6, (32, 32, 3), 4)])
    path = tmp_path / f"best{suffix}"
    save_model(model, path)
    np.save(tmp_path / "x.npy", pair)
    run = subprocess.run(
        [sys.executable, "-c", LOAD_AND_PREDICT, str(path), str(tmp_path / "x.npy"), str(tmp_path / "p.npy")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    expected = model.predict([pair[0], pair[1]], verbose=0)
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), expected, atol=1e-6)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


SMALL_KOCH = Preset("small-koch", (ConvBlock(4, 5), ConvBlock(8, 3), ConvBlock(8, 3, pool=False)), 16, size=40)


@pytest.mark.parametrize("era", ["tf2.8", "tf_keras"])
def test_notebook_h5_loads_without_running_its_code(tmp_path: Path, keras2_h5, era: str) -> None:
    original = build_siamese(SMALL_KOCH, (40, 40, 1), dropout=0.4, seed=5, compile=False)
    for layer in original.get_layer("twin").layers:  # non-trivial batch-norm statistics
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(np.random.default_rng(1).normal(0, 0.1, layer.moving_mean.shape))
            layer.moving_variance.assign(np.random.default_rng(2).uniform(0.5, 2, layer.moving_variance.shape))
    path = tmp_path / "notebook.h5"
    keras2_h5(path, original, era)
    loaded = load_model(path)
    assert loaded.get_layer("head").get_layer("dropout").rate == 0.4
    left, right = images(8, (40, 40, 1), 6), images(8, (40, 40, 1), 7)
    np.testing.assert_allclose(
        loaded.predict([left, right], verbose=0), original.predict([left, right], verbose=0), atol=1e-6
    )


def test_damaged_or_foreign_checkpoints_give_one_line_errors(tmp_path: Path, keras2_h5) -> None:
    model = build_siamese("tiny", seed=2)
    save_model(model, tmp_path / "good.keras")
    (tmp_path / "cut.keras").write_bytes((tmp_path / "good.keras").read_bytes()[:3000])
    (tmp_path / "text.h5").write_text("hello")
    save_model(model, tmp_path / "good.h5")
    (tmp_path / "cut.h5").write_bytes((tmp_path / "good.h5").read_bytes()[:5000])
    import h5py

    with h5py.File(tmp_path / "other.h5", "w") as file:
        file.attrs["keras_version"] = b"2.8.0"
        file.attrs["model_config"] = b'{"class_name": "Sequential", "config": {"layers": []}}'
    expected = {
        "missing.keras": "no such checkpoint file",
        "cut.keras": "not a Keras checkpoint",
        "text.h5": "not a Keras checkpoint",
        "cut.h5": "",
        "other.h5": "unknown architecture",
    }
    for name, fragment in expected.items():
        with pytest.raises(CheckpointError) as caught:
            load_model(tmp_path / name)
        message = str(caught.value)
        assert message.startswith(str(tmp_path / name)) and fragment in message and "\n" not in message


def test_every_layer_reaches_into_the_twin_and_the_head() -> None:
    model = build_siamese("tiny", compile=False)
    names = [layer.name for layer in every_layer(model)]
    assert {"conv1", "conv2", "embedding", "l1_distance", "same", "twin", "head"} <= set(names)
    assert len(names) == len(set(names)) and names[0] == model.name
