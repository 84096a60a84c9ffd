"""Score pairs with a Siamese checkpoint: run the twin once per distinct image, then the head on embedding pairs.

The twins share their weights, so `head(twin(a), twin(b))` equals the pair model while each image is embedded
once (pairsDevTest: 1,549 images instead of 2,000 passes).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from lfwbench.engine import PAIR_CHUNK, Bundle, BundleFacts, ModelSummary, embed_batches
from lfwbench.model import layer_table


def keras_engine(model: keras.Model) -> Callable[[np.ndarray], np.ndarray]:
    """The twin through one traced function: Keras's `predict` measured up to 40% slower here, erratically.

    A model built under a tf.distribute strategy works too.
    """
    twin = model.get_layer("twin")

    @tf.function(autograph=False)
    def embed(batch):
        return tf.cast(twin(tf.cast(batch, tf.float32), training=False), tf.float32)

    return lambda batch: embed(batch).numpy()


def tflite_twin(model: keras.Model, precision: str = "int8") -> bytes:
    """The twin as TFLite, with int8 weights (dynamic-range quantisation) or float32 as trained, exported through a
    SavedModel: a conversion from a concrete function gave NaN embeddings for this Keras 3 model."""
    with tempfile.TemporaryDirectory() as folder:
        model.get_layer("twin").export(folder, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        if precision == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        return converter.convert()


def model_facts(model: keras.Model, preset: str) -> ModelSummary:
    """What results.json records of a model: preset, parameter counts, layer table, input shape."""
    twin = model.get_layer("twin")
    shape = [int(n) for n in twin.input.shape[1:]]
    return ModelSummary(preset, int(model.count_params()), int(twin.count_params()), layer_table(model), shape)


def export_bundle(model: keras.Model, checkpoint_sha256: Sequence[str], preset: str, precision: str = "int8") -> Bundle:
    """The TFLite twin of this precision and what evaluation needs besides it (head weights, facts), for the given
    checkpoints."""
    facts, head = model_facts(model, preset), model.get_layer("head")
    kernel, bias = head.get_layer("same").get_weights()
    join = "cosine" if any(layer.name == "cosine" for layer in head.layers) else "l1"
    bundle_facts = BundleFacts(
        list(checkpoint_sha256), facts.input_shape, kernel.ravel().astype(float).tolist(), float(bias[0]), facts, join,
        precision,
    )  # fmt: skip
    return Bundle(tflite_twin(model, precision), bundle_facts)


def embed_images(
    model: keras.Model,
    images: np.ndarray,
    batch_size: int = 64,
    flip: bool = False,
    verbose: int | str = "auto",
    engine: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Embeddings of each image by the model's `twin` (or `engine`); with `flip`, the mean with its mirror's."""
    return embed_batches(engine or keras_engine(model), images, batch_size, flip, verbose not in (0, "silent"))


def score_embeddings(model: keras.Model, embeddings: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """P(same) of each pair from the model's `head` on two rows of `embeddings`."""
    head = model.get_layer("head")
    chunks = [
        head.predict(
            [embeddings[left[k : k + PAIR_CHUNK]], embeddings[right[k : k + PAIR_CHUNK]]], batch_size=4096, verbose=0
        ).ravel()
        for k in range(0, len(left), PAIR_CHUNK)
    ]  # memory grows with the images, not with the pairs
    return np.concatenate(chunks).astype(np.float64)


def score_pairs(
    model: keras.Model,
    images: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    batch_size: int = 64,
    flip: bool = False,
    verbose: int | str = "auto",
    engine: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """P(same) for the pairs `(images[left[i]], images[right[i]])`, each distinct image embedded once."""
    return score_embeddings(model, embed_images(model, images, batch_size, flip, verbose, engine), left, right)
