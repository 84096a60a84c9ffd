"""Score pairs with a Siamese checkpoint: run the twin once per distinct image, then the head on embedding pairs.

The twins share their weights, so `head(twin(a), twin(b))` equals the pair model while each image is embedded
once (pairsDevTest: 1,549 images instead of 2,000 passes).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def _to_float(batch: tf.Tensor) -> tf.Tensor:
    return tf.cast(batch, tf.float32)


def _to_float_mirrored(batch: tf.Tensor) -> tf.Tensor:
    return tf.image.flip_left_right(tf.cast(batch, tf.float32))


def _batches(images: np.ndarray, batch_size: int, flip: bool = False) -> tf.data.Dataset:
    """uint8 rows cast to float32 batch by batch (the twin scales them), optionally mirrored."""
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(batch_size)
    cast = _to_float_mirrored if flip else _to_float
    return dataset.map(cast, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def embed_images(
    model: keras.Model, images: np.ndarray, batch_size: int = 64, flip: bool = False, verbose: int | str = "auto"
) -> np.ndarray:
    """Embeddings of each image by the model's `twin`; with `flip`, the mean of the image's and its mirror's."""
    twin = model.get_layer("twin")
    embeddings = twin.predict(_batches(images, batch_size), verbose=verbose)
    if flip:
        embeddings = (embeddings + twin.predict(_batches(images, batch_size, flip=True), verbose=verbose)) / 2
    return embeddings.astype(np.float32)


def score_embeddings(model: keras.Model, embeddings: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """P(same) of each pair from the model's `head` on two rows of `embeddings`."""
    head = model.get_layer("head")
    return head.predict([embeddings[left], embeddings[right]], batch_size=4096, verbose=0).ravel().astype(np.float64)


def score_pairs(
    model: keras.Model,
    images: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    batch_size: int = 64,
    flip: bool = False,
    verbose: int | str = "auto",
) -> np.ndarray:
    """P(same) for the pairs `(images[left[i]], images[right[i]])`, each distinct image embedded once."""
    return score_embeddings(model, embed_images(model, images, batch_size, flip, verbose), left, right)
