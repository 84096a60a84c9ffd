"""Score the 1,000 pairsDevTest pairs with the `koch` network two ways, in one run: the notebook's way (the pair
model on both images of every pair: 2,000 image passes) and lfwbench's (each of the 1,549 distinct images
embedded once, then the head on pairs of embeddings). Images come from the uint8 cache in both cases.

Usage: python benchmarks/inference.py [DATA_ROOT] [--preset koch] [--batch 64]
Target (issue 4): embed-once at least 1.25x faster; probabilities equal to 1e-5. A third row runs the int8
TFLite engine that `lfwbench evaluate` uses on CPUs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from lfwbench.checkpoints import load_model
from lfwbench.engine import LiteTwin
from lfwbench.images import ImageSpec, default_cache_dir, find_variant, load_pair_images
from lfwbench.inference import score_pairs, tflite_twin
from lfwbench.model import build_siamese
from lfwbench.pairs import load_pairs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", nargs="?", default="../shared/lfw")
    parser.add_argument("--preset", default="koch")
    parser.add_argument("--checkpoint", type=Path, help="trained weights (default: random koch weights)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = Path(args.data)
    model = load_model(args.checkpoint) if args.checkpoint else build_siamese(args.preset, seed=0)
    shape = model.get_layer("twin").input.shape[1:]
    pairs = load_pairs(root / "pairsDevTest.txt").pairs
    loaded = load_pair_images(pairs, find_variant(root)[1], ImageSpec(shape[0], shape[2]), "pairsDevTest.txt",
                              cache_dir=default_cache_dir())  # fmt: skip
    left_images, right_images = loaded.images[loaded.left], loaded.images[loaded.right]
    model.predict([left_images[:8], right_images[:8]], verbose=0)  # trace both paths before timing
    score_pairs(model, loaded.images[:8], np.arange(4), np.arange(4, 8), args.batch, verbose=0)

    int8 = LiteTwin(tflite_twin(model), (args.batch, *shape))
    score_pairs(model, loaded.images[:8], np.arange(4), np.arange(4, 8), args.batch, verbose=0, engine=int8)
    pair_times, once_times, int8_times = [], [], []
    for _ in range(args.rounds):  # alternate the two ways: this shared machine's speed drifts by up to 25%
        start = time.perf_counter()
        pair_model = model.predict([left_images, right_images], batch_size=args.batch, verbose=0).ravel()
        pair_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        embed_once = score_pairs(model, loaded.images, loaded.left, loaded.right, args.batch, verbose=0)
        once_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        int8_scores = score_pairs(model, loaded.images, loaded.left, loaded.right, args.batch, verbose=0, engine=int8)
        int8_times.append(time.perf_counter() - start)
    pair_seconds, once_seconds, int8_seconds = min(pair_times), min(once_times), min(int8_times)

    passes = 2 * len(pairs)
    print(f"{args.preset} on {len(pairs)} pairs, batch {args.batch}, best of {args.rounds} alternated rounds")
    print(f"{'method':<28}{'image passes':>13}{'seconds':>9}{'images/s':>10}")
    print(f"{'pair model (notebook)':<28}{passes:>13}{pair_seconds:>9.1f}{passes / pair_seconds:>10.1f}")
    distinct = len(loaded.paths)
    print(f"{'embed once + head':<28}{distinct:>13}{once_seconds:>9.1f}{distinct / once_seconds:>10.1f}")
    print(f"{'embed once, TFLite int8':<28}{distinct:>13}{int8_seconds:>9.1f}{distinct / int8_seconds:>10.1f}")
    print(f"speed-up {pair_seconds / once_seconds:.2f}x (Keras), {pair_seconds / int8_seconds:.2f}x (int8 engine); ")
    print(f"max |difference| from the pair model: {np.abs(pair_model - embed_once).max():.2e} (Keras), "
          f"{np.abs(pair_model - int8_scores).max():.2e} (int8)")  # fmt: skip


if __name__ == "__main__":
    main()
