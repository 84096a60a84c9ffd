"""Score pairs with a Siamese checkpoint: run the twin once per distinct image, then the head on embedding pairs.

The twins share their weights, so `head(twin(a), twin(b))` equals the pair model while each image is embedded
once (pairsDevTest: 1,549 images instead of 2,000 passes).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def embed_images(
    model: keras.Model, images: np.ndarray, batch_size: int = 64, flip: bool = False, verbose: int | str = "auto"
) -> np.ndarray:
    """Embeddings of each image by the model's `twin`; with `flip`, the mean of the image's and its mirror's.

    Batches have one fixed shape (the last is padded) and go through one traced function: Keras's `predict`
    measured up to 40% slower here, erratically. A model built under a tf.distribute strategy works too.
    """
    twin = model.get_layer("twin")

    @tf.function(autograph=False)
    def embed(batch):
        pixels = tf.cast(batch, tf.float32)
        embedding = twin(pixels, training=False)
        if flip:
            embedding = (embedding + twin(tf.image.flip_left_right(pixels), training=False)) / 2
        return tf.cast(embedding, tf.float32)

    count = len(images)
    padded = np.concatenate([images, np.zeros(((-count) % batch_size, *images.shape[1:]), images.dtype)])
    progress = keras.utils.Progbar(count, unit_name="image") if verbose not in (0, "silent") else None
    rows = []
    for start in range(0, len(padded), batch_size):
        rows.append(embed(padded[start : start + batch_size]).numpy())
        if progress is not None:
            progress.update(min(start + batch_size, count))
    return np.concatenate(rows)[:count]


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
