"""Models from elsewhere on the real data: the `cpu` twin of an lfwbench checkpoint handed over as a plain Keras
embedding model, as ONNX (the graph written with onnx.helper from its weights) and as float32 TFLite; and a Keras 3
Siamese network with a Lambda (|a - b|, then Dense(1, sigmoid)), trained briefly here as the Keras tutorial does;
and Keras' mnist_siamese pattern (a Euclidean-distance Lambda as the output, contrastive loss) trained and saved by
Keras 2 (tf_keras) in its own process.
Each is scored on pairsDevTest by `lfwbench evaluate`, alone in a subprocess, with its time and peak memory.

Usage: python benchmarks/foreign_models.py [DATA_ROOT] --checkpoint runs/levers/cpu-base/best.keras [--work DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import keras
import numpy as np
import onnx
import onnxruntime
import tensorflow as tf
from onnx import TensorProto, helper, numpy_helper
from scoring_inputs import run  # the same timed subprocess as the other inputs' benchmark

from lfwbench.checkpoints import load_model, read_stamp
from lfwbench.images import default_cache_dir, find_variant, load_pair_images
from lfwbench.pairs import load_pairs


def twin_onnx(twin: keras.Model, path: Path) -> None:
    """lfwbench's twin (Rescaling, Conv+ReLU, BatchNorm, MaxPool blocks, Flatten, Dense) as an NHWC ONNX graph."""
    nodes, weights = [], []
    current = "image"

    def add(op: str, inputs: list[str], **attributes) -> str:
        nonlocal current
        name = f"t{len(nodes)}"
        nodes.append(helper.make_node(op, inputs, [name], **attributes))
        current = name
        return name

    def constant(name: str, value: np.ndarray) -> str:
        weights.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    add("Mul", [current, constant("scale", np.array(1 / 255))])
    add("Transpose", [current], perm=[0, 3, 1, 2])
    for layer in twin.layers[1:]:
        kind, name = type(layer).__name__, layer.name
        if kind == "Rescaling":
            continue
        if "Conv2D" in kind:
            kernel, bias = layer.get_weights()
            pads = [kernel.shape[0] // 2] * 4 if layer.padding == "same" else [0] * 4
            conv = [constant(f"{name}_w", kernel.transpose(3, 2, 0, 1)), constant(f"{name}_b", bias)]
            add("Conv", [current, *conv], pads=pads)
            add("Relu", [current])
        elif "BatchNormalization" in kind:
            gamma, beta, mean, variance = layer.get_weights()
            stats = [constant(f"{name}_{k}", v) for k, v in zip("gbmv", (gamma, beta, mean, variance), strict=True)]
            add("BatchNormalization", [current, *stats], epsilon=layer.epsilon)
        elif kind == "MaxPooling2D":
            add("MaxPool", [current], kernel_shape=[2, 2], strides=[2, 2])
        elif kind == "Flatten":
            add("Transpose", [current], perm=[0, 2, 3, 1])  # Keras flattens NHWC
            add("Flatten", [current])
        elif kind == "Dense":
            kernel, bias = layer.get_weights()
            add("Gemm", [current, constant(f"{name}_w", kernel), constant(f"{name}_b", bias)])
            add(layer.activation.__name__.capitalize(), [current])
        else:
            raise SystemExit(f"twin layer {kind} has no ONNX counterpart here")
    side, _, channels = twin.input.shape[1:]
    graph = helper.make_graph(
        nodes, "twin", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", side, side, channels])],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, ["N", twin.output.shape[-1]])], weights,
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)


def tutorial_siamese(root: Path, spec, path: Path, epochs: int) -> None:
    """A Keras 3 Siamese network as the tutorials write it, trained on pairsDevTrain for a few epochs."""
    keras.utils.set_random_seed(0)
    pairs = load_pairs(root / "pairsDevTrain.txt").pairs
    loaded = load_pair_images(pairs, find_variant(root)[1], spec, "pairsDevTrain.txt", cache_dir=default_cache_dir())
    image = keras.Input(spec.shape)
    x = keras.layers.Rescaling(1 / 255)(image)
    for filters in (32, 64, 128):
        x = keras.layers.MaxPooling2D()(keras.layers.Conv2D(filters, 3, activation="relu", padding="same")(x))
    tower = keras.Model(image, keras.layers.Dense(128, activation="sigmoid")(keras.layers.Flatten()(x)))
    a, b = keras.Input(spec.shape), keras.Input(spec.shape)
    joined = keras.layers.Lambda(lambda z: keras.ops.abs(z[0] - z[1]))([tower(a), tower(b)])
    model = keras.Model([a, b], keras.layers.Dense(1, activation="sigmoid")(joined))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    inputs = [loaded.images[loaded.left], loaded.images[loaded.right]]
    model.fit(inputs, loaded.labels.astype(np.float32), epochs=epochs, batch_size=64, verbose=0)
    model.save(path)


KERAS2_CONTRASTIVE = """
import sys
import numpy as np
import tensorflow as tf
import tf_keras as k

folder, epochs = sys.argv[1], int(sys.argv[2])
left, right, labels = (np.load(f"{folder}/{name}.npy") for name in ("left", "right", "labels"))


def euclidean(tensors):
    a, b = tensors
    return tf.sqrt(tf.maximum(tf.reduce_sum(tf.square(a - b), axis=1, keepdims=True), 1e-7))


def contrastive(same, distance, margin=1.0):  # Hadsell et al.: pull same pairs together, push others past margin
    same = tf.cast(same, distance.dtype)
    return tf.reduce_mean(same * tf.square(distance) + (1 - same) * tf.square(tf.maximum(margin - distance, 0)))


k.utils.set_random_seed(0)
image = k.Input(left.shape[1:])
x = k.layers.Rescaling(1 / 255)(image)
for filters in (32, 64, 128):
    x = k.layers.MaxPooling2D()(k.layers.Conv2D(filters, 3, activation="relu", padding="same")(x))
x = k.layers.GlobalAveragePooling2D()(x)
base = k.Model(image, k.layers.Dense(64)(x), name="base")
a, b = k.Input(left.shape[1:]), k.Input(left.shape[1:])
model = k.Model([a, b], k.layers.Lambda(euclidean, name="distance")([base(a), base(b)]))
model.compile(optimizer=k.optimizers.Adam(1e-3), loss=contrastive)
model.fit([left, right], labels.astype("float32"), epochs=epochs, batch_size=64, verbose=0)
model.save(f"{folder}/contrastive.h5")
"""


def keras2_contrastive(root: Path, spec, folder: Path, epochs: int) -> None:
    """Keras' mnist_siamese pattern on faces, trained and saved by Keras 2 (tf_keras) in its own process."""
    import subprocess
    import sys

    pairs = load_pairs(root / "pairsDevTrain.txt").pairs
    loaded = load_pair_images(pairs, find_variant(root)[1], spec, "pairsDevTrain.txt", cache_dir=default_cache_dir())
    for name, value in (("left", loaded.images[loaded.left]), ("right", loaded.images[loaded.right]),
                        ("labels", loaded.labels)):  # fmt: skip
        np.save(folder / f"{name}.npy", value)
    done = subprocess.run([sys.executable, "-c", KERAS2_CONTRASTIVE, str(folder), str(epochs)], capture_output=True,
                          text=True)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", nargs="?", type=Path, default=Path("../shared/lfw"))
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("runs/foreign-models"))
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    root, work = args.data, args.work
    work.mkdir(parents=True, exist_ok=True)
    spec = read_stamp(args.checkpoint).spec
    twin = load_model(args.checkpoint).get_layer("twin")
    twin.save(work / "twin.keras")
    twin_onnx(twin, work / "twin.onnx")
    with tempfile.TemporaryDirectory() as folder:
        twin.export(folder, format="tf_saved_model", verbose=False)
        (work / "twin.tflite").write_bytes(tf.lite.TFLiteConverter.from_saved_model(folder).convert())
    pairs = load_pairs(root / "pairsDevTest.txt").pairs
    images = load_pair_images(pairs, find_variant(root)[1], spec, "pairsDevTest.txt", cache_dir=default_cache_dir())
    sample = images.images[:256].astype(np.float32)
    session = onnxruntime.InferenceSession(str(work / "twin.onnx"), providers=["CPUExecutionProvider"])
    difference = np.abs(session.run(None, {"image": sample})[0] - twin.predict(sample, verbose=0)).max()
    print(f"ONNX twin against Keras on 256 DevTest images: largest difference {difference:.2e}")
    tutorial_siamese(root, spec, work / "tutorial.keras", args.epochs)
    keras2_contrastive(root, spec, work, args.epochs)
    data = ["--data", str(root)]
    fed = ["--crop", str(spec.crop), "--normalize", "0-255"]  # the twin scales pixels itself
    rows = [
        run("the cpu twin as a Keras embedding model", ["evaluate", "--model", str(work / "twin.keras"), *data, *fed,
            "--out", str(work / "keras.json")]),
        run("the cpu twin as ONNX", ["evaluate", "--model", str(work / "twin.onnx"), *data, *fed,
            "--out", str(work / "onnx.json")]),
        run("the cpu twin as float32 TFLite", ["evaluate", "--model", str(work / "twin.tflite"), *data, *fed,
            "--out", str(work / "tflite.json")]),
        run(f"Keras 3 Lambda Siamese, {args.epochs} epochs on pairsDevTrain", ["evaluate", "--model",
            str(work / "tutorial.keras"), *data, "--crop", str(spec.crop), "--normalize", "0-255",
            "--out", str(work / "tutorial.json")]),
        run(f"Keras 2 contrastive Siamese, {args.epochs} epochs on pairsDevTrain", ["evaluate", "--model",
            str(work / "contrastive.h5"), *data, "--crop", str(spec.crop), "--normalize", "0-255",
            "--out", str(work / "contrastive.json")]),
    ]  # fmt: skip
    columns = ["input", "pairs", "accuracy", "auc", "threshold from", "seconds", "peak_mb"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        cells = [f"{row[c]:.4f}" if c in ("accuracy", "auc") else f"{row[c]:.1f}" if c == "seconds"
                 else f"{row[c]:.0f}" if c == "peak_mb" else str(row[c]) for c in columns]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    for row in rows:
        print(f"  {row['input']}: lfwbench {row['command']}")


if __name__ == "__main__":
    main()
