"""Throughput of the twin network next to the machine's arithmetic floor.

Prints the measured float32 matmul rate, then for each preset: GFLOP per image, inference images/s (twin
alone), training pairs/s (one optimizer step on a batch of pairs), the time one epoch of 1,760 pairs would take,
and what fraction of the matmul rate each reaches. The same script runs on a GPU, where it also tries mixed
precision and XLA and larger batches.

Usage: python benchmarks/throughput.py [--presets koch,quick] [--steps 6] [--batch 32]
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np
import tensorflow as tf

from lfwbench.doctor import matmul_gflops
from lfwbench.model import build_siamese
from lfwbench.presets import get_preset


def twin_gflop(model: keras.Model) -> float:
    """Forward GFLOP of the twin on one image, from TensorFlow's own profiler count."""
    twin = model.get_layer("twin")
    function = tf.function(lambda x: twin(x, training=False))
    concrete = function.get_concrete_function(tf.TensorSpec((1, *twin.input.shape[1:]), tf.float32))
    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    graph_info = tf.compat.v1.profiler.profile(concrete.graph, options=options)
    return graph_info.total_float_ops / 1e9


def timed(step, repeats: int) -> float:
    step()  # trace and warm up
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats


def measure(preset: str, batch: int, steps: int, jit: bool) -> dict:
    model = build_siamese(preset)
    if jit:
        model.compile(optimizer=model.optimizer, loss=model.loss, metrics=["accuracy"], jit_compile=True)
    shape = model.get_layer("twin").input.shape[1:]
    images = np.random.default_rng(0).integers(0, 256, (batch, *shape)).astype(np.float32)
    labels = np.random.default_rng(1).integers(0, 2, (batch, 1)).astype(np.float32)
    twin = model.get_layer("twin")
    infer = timed(lambda: twin.predict_on_batch(images), steps)
    train = timed(lambda: model.train_on_batch([images, images[::-1]], labels), steps)
    gflop = twin_gflop(model)
    return {"preset": preset, "gflop": gflop, "images_per_s": batch / infer, "pairs_per_s": batch / train}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--presets", default="koch,quick")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", default="32", help="batch sizes, comma-separated (e.g. 32,64,128,256,512 on a GPU)")
    parser.add_argument("--jit", action="store_true", help="XLA-compile the training step")
    parser.add_argument("--mixed-precision", action="store_true")
    args = parser.parse_args()
    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    devices = tf.config.list_physical_devices("GPU") or tf.config.list_physical_devices("CPU")
    rate = matmul_gflops(dtype=tf.float16 if args.mixed_precision else tf.float32)
    print(f"device: {devices[0].device_type} x{len(devices)}; matmul {rate:.0f} GFLOP/s")
    columns = (("batch", 6), ("GFLOP/img", 10), ("img/s", 9), ("infer %", 9), ("pairs/s", 9), ("train %", 9))
    print(f"{'preset':<8}" + "".join(f"{name:>{width}}" for name, width in columns) + f"{'epoch(1760)':>13}")
    for preset, batch in ((p, int(b)) for p in args.presets.split(",") for b in args.batch.split(",")):
        get_preset(preset)
        row = measure(preset, batch, args.steps, args.jit)
        infer_share = row["images_per_s"] * row["gflop"] / rate
        # a training step: forward and about twice that backward, for both images of a pair
        train_share = row["pairs_per_s"] * 6 * row["gflop"] / rate
        print(
            f"{preset:<8}{batch:>6}{row['gflop']:>10.3f}{row['images_per_s']:>9.1f}{infer_share:>9.0%}"
            f"{row['pairs_per_s']:>9.1f}{train_share:>9.0%}{1760 / row['pairs_per_s']:>12.0f}s"
        )


if __name__ == "__main__":
    main()
