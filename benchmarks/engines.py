"""Inference engines for the twin network, one lever at a time, on the 1,549 distinct pairsDevTest images.

Rows: Keras `predict` at several batch sizes, XLA (`jit_compile`), bfloat16 compute, TFLite with XNNPACK in
float32 and with int8 weights (dynamic range). Each row gives images/s, the share of the measured matmul rate,
and, with a trained `--checkpoint`, DevTest accuracy at 0.5 so a faster engine is kept only if it stays within
0.5 points of float32. Thread settings are measured in child processes (TensorFlow fixes them at start-up).

Usage: python benchmarks/engines.py [DATA_ROOT] [--checkpoint best.h5] [--preset koch]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def load_devtest(root: Path, shape) -> tuple:
    from lfwbench.images import ImageSpec, default_cache_dir, find_variant, load_pair_images
    from lfwbench.pairs import load_pairs

    pairs = load_pairs(root / "pairsDevTest.txt").pairs
    spec = ImageSpec(shape[0], shape[2])
    return load_pair_images(pairs, find_variant(root)[1], spec, "pairsDevTest.txt", cache_dir=default_cache_dir())


def rate(function, images: np.ndarray, repeats: int = 2) -> tuple[float, np.ndarray]:
    function(images[:64])  # trace, compile, allocate
    start = time.perf_counter()
    for _ in range(repeats):
        embeddings = function(images)
    return repeats * len(images) / (time.perf_counter() - start), np.asarray(embeddings)


def tflite_embedder(twin, quantise: bool, threads: int = 2):
    """The twin through TFLite (XNNPACK is its default CPU delegate), exported as a SavedModel first: converting
    a Keras 3 model from a concrete function gave NaN embeddings here."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as folder:
        twin.export(folder, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        if quantise:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]  # int8 weights, dynamic-range activations
        content = converter.convert()
    interpreter = tf.lite.Interpreter(model_content=content, num_threads=threads)
    index_in = interpreter.get_input_details()[0]["index"]
    index_out = interpreter.get_output_details()[0]["index"]

    def embed(images: np.ndarray, batch: int = 64) -> np.ndarray:
        rows = []
        for start in range(0, len(images), batch):
            chunk = images[start : start + batch].astype(np.float32)
            interpreter.resize_tensor_input(index_in, chunk.shape)
            interpreter.allocate_tensors()
            interpreter.set_tensor(index_in, chunk)
            interpreter.invoke()
            rows.append(interpreter.get_tensor(index_out).copy())
        return np.concatenate(rows)

    return embed


def measure(args) -> list[dict]:
    import keras
    import tensorflow as tf

    from lfwbench.checkpoints import load_model
    from lfwbench.inference import score_embeddings
    from lfwbench.metrics import rates_at
    from lfwbench.model import build_siamese

    model = load_model(args.checkpoint) if args.checkpoint else build_siamese(args.preset, seed=0, compile=False)
    twin = model.get_layer("twin")
    loaded = load_devtest(args.data, twin.input.shape[1:])
    images = loaded.images
    rows = []

    def row(name: str, images_per_s: float, embeddings: np.ndarray) -> None:
        scores = score_embeddings(model, embeddings.astype(np.float32), loaded.left, loaded.right)
        accuracy = rates_at(loaded.labels, scores).accuracy
        rows.append({"engine": name, "images_per_s": images_per_s, "accuracy": accuracy})
        print(f"{name:<34}{images_per_s:>9.1f}{accuracy:>10.4f}", file=sys.stderr)

    if args.threads_only:
        per_s, embeddings = rate(lambda x: twin.predict(x, batch_size=64, verbose=0), images)
        row(f"keras batch 64, threads {args.threads_only}", per_s, embeddings)
        return rows
    for batch in (16, 32, 64, 128, 256):
        per_s, embeddings = rate(lambda x, b=batch: twin.predict(x, batch_size=b, verbose=0), images)
        row(f"keras predict, batch {batch}", per_s, embeddings)
    xla = tf.function(lambda x: twin(tf.cast(x, tf.float32), training=False), jit_compile=True)
    per_s, embeddings = rate(lambda x: np.concatenate([xla(x[i : i + 64]) for i in range(0, len(x), 64)]), images)
    row("XLA jit_compile, batch 64", per_s, embeddings)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    bf16 = build_siamese(args.preset, twin.input.shape[1:], compile=False)  # --preset must match --checkpoint
    keras.mixed_precision.set_global_policy("float32")
    bf16.set_weights(model.get_weights())
    bf16_twin = bf16.get_layer("twin")
    per_s, embeddings = rate(lambda x: bf16_twin.predict(x, batch_size=64, verbose=0), images)
    row("keras bfloat16 compute, batch 64", per_s, embeddings)
    for name, quantise in (("TFLite XNNPACK float32", False), ("TFLite XNNPACK int8 weights", True)):
        per_s, embeddings = rate(tflite_embedder(twin, quantise), images)
        row(name, per_s, embeddings)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", nargs="?", type=Path, default=Path("../shared/lfw"))
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--preset", default="koch")
    parser.add_argument("--threads-only", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads_only:
        intra, inter = (int(n) for n in args.threads_only.split(","))
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
        print(json.dumps(measure(args)))
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from throughput import twin_gflop

    from lfwbench.doctor import matmul_gflops

    rows = measure(args)
    for threads in ("1,1", "2,1", "2,2", "4,2"):
        command = [sys.executable, __file__, str(args.data), "--preset", args.preset, "--threads-only", threads]
        if args.checkpoint:
            command += ["--checkpoint", str(args.checkpoint)]
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        rows += json.loads(done.stdout.strip().splitlines()[-1])
    from lfwbench.model import build_siamese

    gflop, peak = twin_gflop(build_siamese(args.preset, compile=False)), matmul_gflops()
    print(f"{args.preset}: {gflop:.3f} GFLOP per image; matmul {peak:.0f} GFLOP/s on {os.cpu_count()} cores")
    print(f"{'engine':<34}{'img/s':>9}{'% matmul':>10}{'DevTest acc':>13}")
    for row in rows:
        share = row["images_per_s"] * gflop / peak
        print(f"{row['engine']:<34}{row['images_per_s']:>9.1f}{share:>10.0%}{row['accuracy']:>13.4f}")


if __name__ == "__main__":
    main()
