"""Siamese networks in Keras 3: one shared `twin` tower, an L1-distance `head`, and the named presets.

The model takes uint8-range images (0-255) and scales them inside the twin, so data pipelines move bytes, not
float64 copies. `model.get_layer("twin")` embeds one image; `model.get_layer("head")` scores two embeddings.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

from lfwbench.config import DEFAULTS
from lfwbench.presets import ConvBlock, Preset, get_preset

__all__ = [
    "ConvBlock",
    "FusedBatchNormalization",
    "Cosine",
    "L1Distance",
    "Preset",
    "SplitBiasConv2D",
    "build_head",
    "build_siamese",
    "build_twin",
    "keras_type",
    "layer_table",
]


def _initialisers(preset: Preset, seed: int | None) -> tuple[dict, dict]:
    """Koch's N(0, 1e-2) weights and N(0.5, 1e-2) biases, or Keras defaults for the modern presets."""
    if not preset.koch_init:
        return {}, {}
    weights = {"kernel_initializer": keras.initializers.RandomNormal(0.0, 1e-2, seed=seed)}
    biases = {"bias_initializer": keras.initializers.RandomNormal(0.5, 1e-2, seed=seed)}
    return weights, biases


@keras.saving.register_keras_serializable(package="lfwbench")
class FusedBatchNormalization(layers.BatchNormalization):
    """Keras' batch normalisation, trained through TensorFlow's fused kernel: one pass each way instead of Keras'
    chain of element-wise ops, 3x faster on a CPU (docs/performance.md). Same statistics; inference is Keras'."""

    def call(self, inputs, training=None, mask=None):
        if (
            not (training and self.trainable)
            or mask is not None
            or len(inputs.shape) != 4
            or self.axis not in (-1, 3)
            or self.synchronized
        ):
            return super().call(inputs, training=training, mask=mask)
        # bfloat16 and float16 go in as they are: the kernel keeps its statistics in float32 (casting first cost
        # the first block 11 of 24 ms in bfloat16)
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, self.gamma, self.beta, epsilon=self.epsilon, data_format="NHWC", is_training=True
        )
        count = tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], tf.float32)
        variance *= (count - 1) / count  # the kernel returns the unbiased variance; Keras averages the biased one
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1 - self.momentum))
        return tf.cast(outputs, self.compute_dtype)


@tf.custom_gradient
def _add_bias(x, bias):
    """`x + bias` over the last axis, its bias gradient a plain sum that oneDNN cannot fold into the convolution's
    weight gradient."""

    def gradient(upstream):
        return upstream, tf.reduce_sum(upstream, axis=[0, 1, 2])

    return tf.nn.bias_add(x, bias), gradient


@keras.saving.register_keras_serializable(package="lfwbench")
class SplitBiasConv2D(layers.Conv2D):
    """Keras' Conv2D, whose bias gradient is summed apart when it trains in float32: oneDNN otherwise folds it into
    the weight-gradient kernel, which then runs 2-4x slower on the first two blocks (docs/performance.md). Same numbers;
    in bfloat16, and for inference, it is Keras' own."""

    def call(self, inputs, training=None):
        if not (training and self.use_bias and self.compute_dtype == "float32" and self.data_format == "channels_last"):
            return super().call(inputs)
        return self.activation(_add_bias(self.convolution_op(inputs, self.kernel), tf.convert_to_tensor(self.bias)))


def build_twin(
    preset: Preset, input_shape: tuple[int, int, int], seed: int | None = None, dropout: float = 0.0
) -> keras.Model:
    """The shared tower: image (0-255) -> embedding, with `dropout` on the features its embedding layer reads.
    Named `twin` so inference can run it once per image."""
    weights, biases = _initialisers(preset, seed)
    image = keras.Input(input_shape, name="image")
    x = layers.Rescaling(1.0 / 255, name="scale")(image)
    for number, block in enumerate(preset.blocks, start=1):
        x = SplitBiasConv2D(
            block.filters,
            block.kernel,
            activation="relu",
            padding=preset.padding,
            kernel_regularizer=keras.regularizers.L2(preset.conv_l2),
            name=f"conv{number}",
            **weights,
            **(biases if number > 1 else {}),
        )(x)
        if preset.batchnorm:
            x = FusedBatchNormalization(name=f"bn{number}")(x)
        if block.pool:
            x = layers.MaxPooling2D(name=f"pool{number}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x) if preset.global_pool else layers.Flatten(name="flatten")(x)
    if dropout:
        x = layers.Dropout(dropout, seed=seed, name="feature_dropout")(x)
    embedding = layers.Dense(
        preset.embedding,
        activation=preset.embedding_activation,
        kernel_regularizer=keras.regularizers.L2(preset.dense_l2),
        name="embedding",
        **weights,
        **biases,
    )(x)
    return keras.Model(image, embedding, name="twin")


@keras.saving.register_keras_serializable(package="lfwbench")
class L1Distance(layers.Layer):
    """|a - b| of two embeddings: the Siamese join, as a registered layer so checkpoints load in safe mode."""

    def call(self, inputs):
        first, second = inputs
        return keras.ops.abs(first - second)

    def compute_output_shape(self, input_shape):
        return input_shape[0]


COSINE_SCALE = 10.0  # the cosine head's starting s: cos in [-1, 1] spans P(same) 0.00005-0.99995


@keras.saving.register_keras_serializable(package="lfwbench")
class Cosine(layers.Layer):
    """cos(a, b) of two embeddings, one column: the join of the cosine head.

    Trained with a margin loss, it also holds one proxy direction per training identity (CosFace's class weights),
    so that `last.keras` resumes the whole run; scoring never reads them.
    """

    def __init__(self, identities: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.identities = identities

    def build(self, input_shape):
        if self.identities:
            width = input_shape[0][-1]
            self.proxies = self.add_weight(shape=(width, self.identities), initializer="glorot_uniform", name="proxies")

    def call(self, inputs):
        first, second = (keras.ops.normalize(side, axis=-1) for side in inputs)
        return keras.ops.sum(first * second, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return (*input_shape[0][:-1], 1)

    def get_config(self):
        return {**super().get_config(), "identities": self.identities}


def build_head(preset: Preset, dropout: float, seed: int | None = None, identities: int = 0) -> keras.Model:
    """Two embeddings -> probability of 'same', one sigmoid unit kept in float32: on their L1 distance after
    dropout, or (`preset.head == "cosine"`) sigmoid(s * cos(a, b) + c) with s and c learned."""
    first = keras.Input((preset.embedding,), name="embedding_left")
    second = keras.Input((preset.embedding,), name="embedding_right")
    if preset.head == "cosine":
        x = Cosine(identities, dtype="float32", name="cosine")([first, second])
        same = {"kernel_initializer": keras.initializers.Constant(COSINE_SCALE), "bias_initializer": "zeros"}
    else:
        x = L1Distance(dtype="float32", name="l1_distance")([first, second])
        x = layers.Dropout(dropout, seed=seed, dtype="float32", name="dropout")(x)
        same = _initialisers(preset, seed)[1]
    probability = layers.Dense(1, activation="sigmoid", dtype="float32", name="same", **same)(x)
    return keras.Model([first, second], probability, name="head")


def build_siamese(
    preset: str | Preset,
    input_shape: tuple[int, int, int] | None = None,
    *,
    lr: float | keras.optimizers.schedules.LearningRateSchedule | None = None,
    dropout: float = DEFAULTS.dropout,
    twin_dropout: float = DEFAULTS.twin_dropout,
    seed: int | None = None,
    compile: bool = True,
    identities: int = 0,
) -> keras.Model:
    """The two-input model `[left, right] -> P(same)`, compiled with Adam and binary cross-entropy.

    `input_shape` defaults to the preset's (size, size, channels); `identities` proxies are kept for a margin loss.
    """
    preset = get_preset(preset) if isinstance(preset, str) else preset
    input_shape = tuple(input_shape or (preset.size, preset.size, preset.channels))
    twin = build_twin(preset, input_shape, seed, twin_dropout)
    head = build_head(preset, dropout, seed, identities)
    left = keras.Input(input_shape, name="left")
    right = keras.Input(input_shape, name="right")
    model = keras.Model([left, right], head([twin(left), twin(right)]), name=f"siamese_{preset.name}")
    if compile:
        model.compile(
            optimizer=keras.optimizers.Adam(lr if lr is not None else preset.defaults.get("lr", 1e-3)),
            loss="binary_crossentropy",
            metrics=["accuracy"],
        )
    return model


def keras_type(layer: keras.layers.Layer) -> str:
    """The Keras layer that a drop-in of ours computes as (`Conv2D` for `SplitBiasConv2D`), else the layer's own
    class: what reports and Keras 2 files name."""
    nearest = next(kind for kind in type(layer).__mro__ if kind.__module__.startswith("keras"))
    return type(layer).__name__ if nearest is keras.layers.Layer else nearest.__name__


def layer_table(model: keras.Model) -> list[dict]:
    """The notebook's model summary as rows (layer, type, output shape, parameters), twin and head expanded."""
    rows = []
    for part in (model.get_layer("twin"), model.get_layer("head")):
        for layer in part.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            shape = layer.output.shape if hasattr(layer, "output") else None
            rows.append(
                {
                    "layer": f"{part.name}/{layer.name}",
                    "type": keras_type(layer),
                    "output_shape": str(tuple(shape)) if shape is not None else "",
                    "parameters": int(layer.count_params()),
                }
            )
    return rows
