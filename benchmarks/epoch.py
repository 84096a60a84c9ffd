"""One real training epoch of a preset on the 1,760 training pairs of pairsDevTrain (restricted regime), twice:
fed by lfwbench's tf.data pipeline from the uint8 cache, and by the same batches held in memory as float32.

Prints seconds per epoch, pairs/s, and the arithmetic floor: 6 x the twin's forward GFLOP per pair (two images,
forward and backward) over the measured matmul rate.

Usage: python benchmarks/epoch.py [DATA_ROOT] [--preset koch] [--batch 32]
Target (issue 6): the two step times agree within 10% (the pipeline is never the bottleneck).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from throughput import twin_gflop

from lfwbench.doctor import matmul_gflops
from lfwbench.model import build_siamese
from lfwbench.training import TrainConfig, make_dataset, prepare_data


class EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = time.perf_counter() - self.start


def timed_epoch(model: keras.Model, data, steps: int) -> float:
    timer = EpochTimer()
    model.fit(data, epochs=2, steps_per_epoch=steps, callbacks=[timer], verbose=0)  # epoch 1 traces
    return timer.seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", nargs="?", type=Path, default=Path("../shared/lfw"))
    parser.add_argument("--preset", default="koch")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    config = TrainConfig(preset=args.preset, batch_size=args.batch, regime="restricted").resolved()
    prepared = prepare_data(config, args.data, progress=False)
    left, right, labels = prepared.epoch_pairs(0)
    steps = len(labels) // args.batch
    triples = tuple(np.concatenate([column[: steps * args.batch]] * 2) for column in (left, right, labels))
    pipeline = make_dataset(prepared.images, triples, args.batch)
    in_memory = [(tuple(tf.constant(side) for side in pair), label) for pair, label in pipeline.take(steps)]
    held = tf.data.Dataset.from_generator(
        lambda: iter(in_memory * 2), output_signature=pipeline.element_spec
    )  # batches already decoded, cast and in memory: only the model step remains
    model = build_siamese(config.preset, config.image_spec.shape, lr=config.lr, seed=0)
    seconds_pipeline = timed_epoch(model, pipeline, steps)
    seconds_memory = timed_epoch(model, held, steps)
    pairs = steps * args.batch
    rate = matmul_gflops()
    floor = pairs * 6 * twin_gflop(model) / rate
    print(f"{config.preset}: {pairs} pairs per epoch, batch {args.batch}, matmul {rate:.0f} GFLOP/s")
    print(f"{'feed':<22}{'s/epoch':>9}{'pairs/s':>9}{'ms/step':>9}")
    for name, seconds in (("tf.data (uint8 cache)", seconds_pipeline), ("batches in memory", seconds_memory)):
        print(f"{name:<22}{seconds:>9.1f}{pairs / seconds:>9.1f}{1000 * seconds / steps:>9.1f}")
    ratio = seconds_pipeline / seconds_memory
    print(f"arithmetic floor {floor:.1f} s per epoch; pipeline/in-memory step time {ratio:.2f}")


if __name__ == "__main__":
    main()
