"""Batches of P people x K images, trained on every pair inside them (the batch layout of FaceNet).

A batch of 128 images costs the twin what 64 drawn pairs do, yet the head scores all 8,128 pairs in it. Pairs are
weighted so that 'same' and 'different' count alike, as they do in balanced pair lists.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from lfwbench.errors import LfwbenchError


def person_batches(
    rows: np.ndarray, labels: np.ndarray, people: int, images: int, steps: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Image rows and person labels of `steps` batches, each `people` distinct people x `images` of their rows.

    `labels` are sorted class numbers (as `identity_rows` gives them); a person with fewer than `images` rows has
    some repeated, which augmentation then shows differently.
    """
    groups = np.split(rows, np.flatnonzero(np.diff(labels)) + 1)
    if people > len(groups):
        raise LfwbenchError(f"{people} people per batch, but only {len(groups)} training people have two images")
    persons = np.concatenate([rng.choice(len(groups), people, replace=False) for _ in range(steps)])
    picked = [rng.choice(groups[person], images, replace=len(groups[person]) < images) for person in persons]
    return np.concatenate(picked).astype(np.int32), np.repeat(persons, images).astype(np.int32)


def pair_indices(batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the two sides of every unordered pair in a batch of `batch` images."""
    return np.triu_indices(batch, k=1)


def with_pair_targets(dataset: tf.data.Dataset, batch: int, labelled: bool = False) -> tf.data.Dataset:
    """`(images, person labels)` batches -> `(images, same-person flag of every pair, balancing weights)`; with
    `labelled`, the inputs are `(images, person labels)`, for a margin loss over identities."""
    left, right = (tf.constant(side, dtype=tf.int32) for side in pair_indices(batch))

    def targets(images, persons):
        same = tf.cast(tf.gather(persons, left) == tf.gather(persons, right), tf.float32)
        count, positives = tf.cast(tf.size(same), tf.float32), tf.reduce_sum(same)
        weights = tf.where(same > 0, count / (2 * positives), count / (2 * (count - positives)))
        return ((images, persons) if labelled else images), same, weights

    return dataset.map(targets, num_parallel_calls=tf.data.AUTOTUNE)


MARGIN_SCALE = 30.0  # CosFace's s: the logits' scale on unit vectors (Wang et al. 2018 use 64 for 10,000s of classes)


class CosFaceLoss(keras.layers.Layer):
    """Passes the embeddings through and adds CosFace's loss (Wang et al. 2018): softmax cross-entropy over the
    identities of s * (cos(embedding, proxy) - margin at the true identity), the proxies the cosine head's."""

    def __init__(self, cosine: keras.layers.Layer, margin: float, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.cosine, self.margin = cosine, margin

    def call(self, inputs):
        embeddings, persons = inputs
        proxies = self.cosine.proxies
        cosines = keras.ops.normalize(embeddings, axis=-1) @ keras.ops.normalize(proxies, axis=0)
        logits = MARGIN_SCALE * (cosines - self.margin * keras.ops.one_hot(persons, proxies.shape[-1]))
        self.add_loss(keras.ops.mean(keras.ops.sparse_categorical_crossentropy(persons, logits, from_logits=True)))
        return embeddings


def all_pairs_model(siamese: keras.Model, batch: int, margin: float = 0.0) -> keras.Model:
    """Images -> P(same) of every pair among them, through the Siamese model's own twin and head; with a `margin`,
    it takes `[images, person labels]` and adds the CosFace loss of the twin's embeddings."""
    twin, head = siamese.get_layer("twin"), siamese.get_layer("head")
    images = keras.Input(tuple(twin.input.shape[1:]), batch_size=batch, name="images")
    embeddings, inputs = twin(images), images
    if margin:
        persons = keras.Input((), batch_size=batch, dtype="int32", name="persons")
        embeddings = CosFaceLoss(head.get_layer("cosine"), margin, name="cosface")([embeddings, persons])
        inputs = [images, persons]
    sides = [keras.ops.take(embeddings, side, axis=0) for side in pair_indices(batch)]
    return keras.Model(inputs, head(sides), name="all_pairs")


class PairValidation(keras.callbacks.Callback):
    """Scores the validation pairs with the Siamese model after each epoch, as `fit` would with pair batches."""

    def __init__(self, siamese: keras.Model, pairs: tf.data.Dataset):
        super().__init__()
        self.siamese, self.pairs = siamese, pairs

    def on_epoch_end(self, epoch, logs=None):
        scores = self.siamese.evaluate(self.pairs, verbose=0, return_dict=True)
        logs.update({f"val_{name}": value for name, value in scores.items()})
