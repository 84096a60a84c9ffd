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


def with_pair_targets(dataset: tf.data.Dataset, batch: int) -> tf.data.Dataset:
    """`(images, person labels)` batches -> `(images, same-person flag of every pair, balancing weights)`."""
    left, right = (tf.constant(side, dtype=tf.int32) for side in pair_indices(batch))

    def targets(images, persons):
        same = tf.cast(tf.gather(persons, left) == tf.gather(persons, right), tf.float32)
        count, positives = tf.cast(tf.size(same), tf.float32), tf.reduce_sum(same)
        weights = tf.where(same > 0, count / (2 * positives), count / (2 * (count - positives)))
        return images, same, weights

    return dataset.map(targets, num_parallel_calls=tf.data.AUTOTUNE)


def all_pairs_model(siamese: keras.Model, batch: int) -> keras.Model:
    """Images -> P(same) of every pair among them, through the Siamese model's own twin and head."""
    twin, head = siamese.get_layer("twin"), siamese.get_layer("head")
    images = keras.Input(tuple(twin.input.shape[1:]), batch_size=batch, name="images")
    embeddings = twin(images)
    sides = [keras.ops.take(embeddings, side, axis=0) for side in pair_indices(batch)]
    return keras.Model(images, head(sides), name="all_pairs")


class PairValidation(keras.callbacks.Callback):
    """Scores the validation pairs with the Siamese model after each epoch, as `fit` would with pair batches."""

    def __init__(self, siamese: keras.Model, pairs: tf.data.Dataset):
        super().__init__()
        self.siamese, self.pairs = siamese, pairs

    def on_epoch_end(self, epoch, logs=None):
        scores = self.siamese.evaluate(self.pairs, verbose=0, return_dict=True)
        logs.update({f"val_{name}": value for name, value in scores.items()})
