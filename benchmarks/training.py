"""Training speed of each preset next to this machine's matmul rate, contenders alternating in one run.

Each contender trains the preset as `lfwbench train` does (its own pipeline from the uint8 cache with augmentation,
person batches for `cpu`, drawn pairs for `quick`, listed pairs for `koch`, deterministic ops), timed over --steps
steps after a warm-up, the contenders taking turns for --rounds rounds (the best round of each is kept). Printed per
preset and contender: seconds per epoch, images/s, GFLOP per step (3 x the twin's forward per image), the share of
the float32 matmul rate measured in the same run, and the speed-up over `before`.

Contenders: before (Keras' own BatchNormalization and Conv2D, float32: lfwbench until the fused kernel), fused-bn
(the fused kernel only, Keras' Conv2D: lfwbench until the split bias gradient), float32, bfloat16 (mixed precision:
native on AVX512-BF16 or AMX CPUs only), float16 (mixed precision, GPUs), no-augment (float32 without augmentation:
what augmentation costs), people-N (float32, person batches of N people: the same epoch in larger or smaller steps),
xla (float32, `jit_compile`; needs --no-deterministic, as XLA has no deterministic max-pool gradient); any of them
ending in -colour trains on colour images (`bfloat16,bfloat16-colour`: what colour costs).

--breakdown times each part of a `cpu` step alone instead (input batch with and without augmentation, twin forward,
twin forward and backward, the head on the batch's 8,128 pairs, the whole step), contenders in turn.

--ops N prints instead the N TensorFlow ops a `cpu` step spends longest in, per contender, from the profiler's trace
of --steps steps (with --threads 2,1 ops do not overlap, so their times add up to the step).

Usage: python benchmarks/training.py [DATA_ROOT] [--presets cpu,quick,koch] [--contenders before,float32,bfloat16]
       [--steps 20] [--rounds 2] [--threads INTRA,INTER] [--no-deterministic] [--breakdown | --ops N]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from unittest import mock

import keras
import numpy as np
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

import lfwbench.model
from lfwbench.config import TrainConfig
from lfwbench.doctor import matmul_gflops
from lfwbench.machine import describe
from lfwbench.model import build_siamese
from lfwbench.person_batches import pair_indices
from lfwbench.presets import get_preset
from lfwbench.training import fitted_model, prepare_data, training_set

COLOUR = "-colour"
POLICIES = {"bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
KERAS_OWN = {  # the Keras layers an earlier lfwbench trained with, in place of lfwbench.model's own
    "before": {"FusedBatchNormalization": keras.layers.BatchNormalization, "SplitBiasConv2D": keras.layers.Conv2D},
    "fused-bn": {"SplitBiasConv2D": keras.layers.Conv2D},
}


def variant(config: TrainConfig, contender: str) -> TrainConfig:
    """The run a contender trains: the preset's, without augmentation, or with other person batches (`people-64`);
    a contender ending in `-colour` trains on colour images (`bfloat16-colour`)."""
    if contender.endswith(COLOUR):
        config, contender = replace(config, channels=3), contender.removesuffix(COLOUR)
    if contender == "no-augment":
        return replace(config, augment=False)
    if contender.startswith("people-"):
        return replace(config, people_per_batch=int(contender.removeprefix("people-")))
    return config


def build(config: TrainConfig, contender: str) -> keras.Model:
    """The model `fit` trains for this contender, built as `lfwbench train` builds it."""
    contender = contender.removesuffix(COLOUR)
    with contextlib.ExitStack() as stack:
        for name, layer in KERAS_OWN.get(contender, {}).items():
            stack.enter_context(mock.patch.object(lfwbench.model, name, layer))
        keras.mixed_precision.set_global_policy(POLICIES.get(contender, "float32"))
        stack.callback(keras.mixed_precision.set_global_policy, "float32")
        model = build_siamese(config.preset, config.image_spec.shape, lr=config.lr, dropout=config.dropout, seed=0)
        fitted = fitted_model(model, config)
    if contender == "xla":
        fitted.compile(optimizer=fitted.optimizer, loss=fitted.loss, jit_compile=True)
    return fitted


def seconds_per_step(model: keras.Model, batches: tf.data.Dataset, steps: int) -> float:
    start = time.perf_counter()
    model.fit(batches, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
    return (time.perf_counter() - start) / steps


def timed(step, repeats: int, rounds: int) -> float:
    """Best mean seconds of `step` over `rounds` rounds of `repeats` calls, after two warm-up calls."""
    step(), step()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            step()
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def breakdown(config: TrainConfig, data, contender: str, repeats: int, rounds: int) -> dict[str, float]:
    """Seconds of each part of one person-batch training step, each timed alone."""
    fitted = build(config, contender)
    twin, head = fitted.get_layer("twin"), fitted.get_layer("head")
    plain = iter(training_set(replace(config, augment=False), data, range(1), 50).repeat())
    augmented = iter(training_set(config, data, range(1), 50).repeat())
    images, same, weights = next(augmented)
    sides = [tf.constant(side) for side in pair_indices(config.person_batch)]

    @tf.function
    def twin_step(images):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.cast(twin(images, training=True), tf.float32))
        return tape.gradient(loss, twin.trainable_variables)

    @tf.function
    def head_step(embeddings):
        with tf.GradientTape() as tape:
            tape.watch(embeddings)
            scores = head([tf.gather(embeddings, side) for side in sides], training=True)
            loss = tf.reduce_sum(keras.losses.binary_crossentropy(same[:, None], scores) * weights)
        return [tf.convert_to_tensor(g) for g in tape.gradient(loss, [embeddings, *head.trainable_variables])]

    embeddings = twin(images)
    parts = {
        "input batch, no augmentation": lambda: next(plain),
        "input batch, augmented": lambda: next(augmented),
        "twin forward": tf.function(lambda: twin(images, training=True)),
        "twin forward+backward": lambda: twin_step(images),
        f"head forward+backward ({len(sides[0]):,} pairs)": lambda: head_step(embeddings),
        "whole step": lambda: fitted.train_on_batch(images, same, sample_weight=weights),
    }
    return {name: timed(lambda step=step: tf.nest.map_structure(np.asarray, step()), repeats, rounds)
            for name, step in parts.items()}  # fmt: skip


def costliest_ops(config: TrainConfig, data, contender: str, steps: int, top: int) -> list[tuple[str, float]]:
    """The ops one person-batch training step spends longest in, as (op, ms per step), from the profiler's trace."""
    fitted = build(config, contender)
    images, same, weights = next(iter(training_set(config, data, range(1), 50)))
    for _ in range(3):
        fitted.train_on_batch(images, same, sample_weight=weights)
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(steps):
            fitted.train_on_batch(images, same, sample_weight=weights)
        tf.profiler.experimental.stop()
        (trace,) = Path(logdir).rglob("*.xplane.pb")
        space = xplane_pb2.XSpace.FromString(trace.read_bytes())
    milliseconds = collections.Counter()
    for plane in space.planes:
        names = {key: metadata.name for key, metadata in plane.event_metadata.items()}
        for line in plane.lines:
            for event in line.events if line.name.startswith("tf_Compute") else ():
                name = names[event.metadata_id]
                if ":" in name and "::" not in name:  # an op is "name:Type"; the executor's own events are "A::B"
                    milliseconds[name] += event.duration_ps / 1e9 / steps
    return milliseconds.most_common(top)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", nargs="?", type=Path, default=Path("../shared/lfw"))
    parser.add_argument("--presets", default="cpu,quick,koch")
    parser.add_argument("--contenders", default="before,float32,bfloat16")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", help="intra-op,inter-op thread counts (default: TensorFlow's)")
    parser.add_argument("--no-deterministic", dest="deterministic", action="store_false")
    parser.add_argument("--breakdown", action="store_true", help="time each part of the cpu preset's step instead")
    parser.add_argument("--ops", type=int, metavar="N", help="list the cpu step's N costliest ops instead")
    args = parser.parse_args()
    if args.threads:
        intra, inter = (int(count) for count in args.threads.split(","))
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()
    machine = describe()
    threads = args.threads or "default"
    print(f"{machine['cpu']}, {machine['cores']} cores, {machine['vector_instructions']}; threads {threads}")
    contenders = args.contenders.split(",")
    if args.ops or args.breakdown:  # both look inside the cpu preset's step
        config = TrainConfig(preset="cpu").resolved()
        data = prepare_data(config, args.data, progress=False)
    if args.ops:
        for contender in contenders:
            print(f"| {contender}: op | ms per step |\n|---|---|")
            for name, milliseconds in costliest_ops(config, data, contender, args.steps, args.ops):
                print(f"| {name} | {milliseconds:.2f} |")
        return
    if args.breakdown:
        parts = {contender: breakdown(config, data, contender, args.steps, args.rounds) for contender in contenders}
        print("| part of a cpu step (ms) | " + " | ".join(contenders) + " |")
        print("|---|" + "---|" * len(contenders))
        for name in parts[contenders[0]]:
            print(f"| {name} | " + " | ".join(f"{1000 * parts[c][name]:.1f}" for c in contenders) + " |")
        return
    rates = [matmul_gflops()]
    rows = []
    for preset in args.presets.split(","):
        config = TrainConfig(preset=preset).resolved()
        keras.utils.set_random_seed(0)
        prepared = {config.image_spec: prepare_data(config, args.data, progress=False)}  # one per image spec
        pairs = len(prepared[config.image_spec].epoch_pairs(0)[2])
        steps = config.steps_per_epoch(pairs)
        trained, datasets, models = {}, {}, {}
        for contender in contenders:  # each fit call reads the same first batches, pipeline and augmentation included
            trained[contender] = variant(config, contender)
            spec = trained[contender].image_spec
            if spec not in prepared:
                prepared[spec] = prepare_data(trained[contender], args.data, progress=False)
            data = prepared[spec]
            datasets[contender] = training_set(trained[contender], data, range(1), steps).take(args.steps)
            models[contender] = build(trained[contender], contender)
            seconds_per_step(models[contender], datasets[contender].take(2), 2)  # trace and warm up
        best = {contender: float("inf") for contender in contenders}
        for _ in range(args.rounds):
            for contender in contenders:
                measured = seconds_per_step(models[contender], datasets[contender], args.steps)
                best[contender] = min(best[contender], measured)
        for contender in contenders:
            images = trained[contender].images_per_step
            gflop = 3 * images * get_preset(preset).forward_gflop(trained[contender].image_spec.shape)
            epoch = best[contender] * trained[contender].steps_per_epoch(pairs)
            rows.append((preset, contender, best[contender], epoch, images, gflop))
    rates.append(matmul_gflops())
    rate = sum(rates) / 2
    print(f"float32 matmul: {rates[0]:.0f} and {rates[1]:.0f} GFLOP/s (before and after); shares of {rate:.0f}")
    print("| preset | contender | s/epoch | images/s | GFLOP/step | share of matmul | speed-up over before |")
    print("|---|---|---|---|---|---|---|")
    epochs = {(preset, contender): epoch for preset, contender, _, epoch, _, _ in rows}
    for preset, contender, seconds, epoch, images, gflop in rows:
        before = epochs.get((preset, "before"))
        speedup = f"{before / epoch:.2f}x" if before else "-"
        print(f"| {preset} | {contender} | {epoch:.1f} | {images / seconds:.0f} | {gflop:.1f} | "
              f"{gflop / seconds / rate:.0%} | {speedup} |")  # fmt: skip


if __name__ == "__main__":
    main()
