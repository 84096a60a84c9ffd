"""`lfwbench doctor`: what this machine is, how fast it multiplies, and how long each preset trains here.

A preset's training time is its arithmetic over this machine's measured matmul rate, at the share of that rate
lfwbench's training step reached where it was measured (benchmarks/training.py, docs/performance.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from lfwbench.config import TrainConfig
from lfwbench.machine import Environment, environment
from lfwbench.presets import PRESETS, TEST_PRESETS
from lfwbench.training import compute_policy, native_mixed_precision

DEVTRAIN_PAIRS = 2200  # pairsDevTrain.txt: the restricted regime's pairs, less the validation share

# Share of the float32 matmul rate a training step reached, by preset and compute precision: benchmarks/training.py
# on 2 AMD EPYC vCPUs with AVX-512 and AVX512-BF16 (docs/performance.md). A GPU has not been measured.
MEASURED_SHARE = {
    "float32": {"koch": 0.85, "quick": 0.56, "cpu": 0.50},
    "mixed_bfloat16": {"koch": 1.35, "quick": 0.84, "cpu": 0.73},
}


def training_step(preset: str) -> tuple:
    """What sets a training step's share of the matmul rate: the twin and its batch. Seeds, splits and heads do not,
    and colour moved it by under 4%, so a preset takes the share measured for a preset it equals here."""
    twin, config = PRESETS[preset], TrainConfig(preset=preset).resolved()
    return (
        twin.blocks,
        twin.embedding,
        twin.global_pool,
        twin.padding,
        twin.size,
        config.person_batch,
        config.images_per_step,
    )


def measured_share(preset: str, policy: str) -> float | None:
    """The share measured for `preset`'s training step in `policy`, or None where no such step was measured."""
    step = training_step(preset)
    return next((share for name, share in MEASURED_SHARE.get(policy, {}).items() if training_step(name) == step), None)


@dataclass
class PresetEstimate:
    preset: str
    epochs: int
    gflop_per_epoch: float
    share: float | None  # None: not measured for this precision
    minutes: float | None


@dataclass
class Diagnosis:
    environment: Environment
    tensorflow: str
    onednn: bool | None  # None: this TensorFlow does not say
    policy: str  # what `lfwbench train` computes in here by default
    matmul_gflops: float
    half_matmul_gflops: float | None  # bfloat16 (CPU) or float16 (GPU) products, where native
    estimates: list[PresetEstimate]


def matmul_gflops(dtype: tf.DType = tf.float32, size: int = 4096, seconds: float = 2.0) -> float:
    """Measured rate of square matrix products for about `seconds` (after one warm-up product)."""
    a = tf.cast(np.random.default_rng(0).standard_normal((size, size), np.float32), dtype)
    (a @ a).numpy()
    products, start = 0, time.perf_counter()
    while products < 2 or time.perf_counter() - start < seconds:
        (a @ a).numpy()
        products += 1
    return 2 * size**3 * products / (time.perf_counter() - start) / 1e9


def images_per_epoch(config: TrainConfig) -> int:
    """Twin passes of one training epoch: person batches, drawn pairs (two images each) or the listed pairs."""
    pairs = (
        config.pairs_per_epoch if config.regime == "unrestricted" else int(DEVTRAIN_PAIRS * (1 - config.val_fraction))
    )
    return config.steps_per_epoch(pairs) * config.images_per_step


def estimate(preset: str, policy: str, rate: float) -> PresetEstimate:
    """Minutes of a preset's training steps (every member's) at `rate` float32 GFLOP/s and its measured share for
    `policy`."""
    config = TrainConfig(preset=preset).resolved()
    gflop = (
        3 * PRESETS[preset].forward_gflop(config.image_spec.shape) * images_per_epoch(config) * PRESETS[preset].members
    )
    share = measured_share(preset, policy)
    minutes = config.epochs * gflop / (rate * share) / 60 if share else None
    return PresetEstimate(preset, config.epochs, gflop, share, minutes)


def diagnose(seconds: float = 2.0) -> Diagnosis:
    """Describe this machine and time its matrix products for about `seconds` per precision."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        onednn = bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):  # a private API: a later TensorFlow may not have it
        onednn = None
    build = tf.sysconfig.get_build_info()
    cuda = f"CUDA {build['cuda_version']} build" if build.get("is_cuda_build") else "CPU build"
    policy = compute_policy(native_mixed_precision())
    rate = matmul_gflops(tf.float32, seconds=seconds)
    half = None
    if policy != "float32":
        half = matmul_gflops(tf.float16 if policy == "mixed_float16" else tf.bfloat16, seconds=seconds)
    estimates = [estimate(name, policy, rate) for name in PRESETS if name not in TEST_PRESETS]
    return Diagnosis(environment(), f"{tf.__version__} ({cuda})", onednn, policy, rate, half, estimates)
