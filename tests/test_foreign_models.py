"""Models that are not lfwbench's, built tiny by the tests: Keras embedding and Siamese models (with and without a
Lambda, which must never run), ONNX and TFLite embedding models; each checked against its framework's own outputs
on the same inputs, and bad models refused in one line."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import onnx
import onnxruntime
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from lfwbench.cli import main
from lfwbench.evaluation import evaluate
from lfwbench.foreign_models import ModelOptions
from lfwbench.images import ImageSpec, decode_image, find_variant, image_path
from lfwbench.pairs import load_pairs
from lfwbench.scoring import open_input

SIDE = 32


def invoke(*args) -> object:
    return CliRunner().invoke(main, [str(arg) for arg in args])


def tower(seed: int = 0, side: int = SIDE) -> keras.Model:
    keras.utils.set_random_seed(seed)
    image = keras.Input((side, side, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(image)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(image, keras.layers.Dense(8)(x), name="tower")


def model_inputs(tree: Path, pairs, normalise) -> tuple[np.ndarray, np.ndarray]:
    """Both images of every pair, decoded as lfwbench decodes them and normalised as the test says."""
    image_dir = find_variant(tree)[1]

    def load(name: str, index: int) -> np.ndarray:
        return normalise(decode_image(image_path(image_dir, name, index), ImageSpec(SIDE, 3)).astype(np.float32))

    return (np.stack([load(p.name1, p.index1) for p in pairs]), np.stack([load(p.name2, p.index2) for p in pairs]))


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def scored(path: Path, tree: Path, **options) -> tuple[list[float], object]:
    scorer = open_input("model", path, tree, model_options=ModelOptions(**options))
    pairs = list(load_pairs(tree / "pairsDevTest.txt").pairs)
    return list(scorer.score(pairs, "pairsDevTest.txt", False, False).scores), scorer


def test_a_keras_embedding_model_scores_as_keras_embeds(lfw_tree: Path, tmp_path: Path) -> None:
    model = tower()
    model.save(tmp_path / "tower.keras")
    scores, scorer = scored(tmp_path / "tower.keras", lfw_tree, normalization="0-1")
    a, b = model_inputs(lfw_tree, load_pairs(lfw_tree / "pairsDevTest.txt").pairs, lambda x: x / 255)
    expected = cosine(model.predict(a, verbose=0), model.predict(b, verbose=0))
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert scorer.facts.kind == "Keras embedding model" and "(x - 0) / 255 (0-1), NHWC" in scorer.facts.preprocessing


MARK = "lambda-ran.txt"


def siamese_with_lambda(folder: Path, head: str = "dense", suffix: str = ".keras") -> tuple[Path, dict]:
    """Koch's tutorial shape: tower(a), tower(b), a Lambda |a - b|, Dense(1, sigmoid); the Lambda leaves a mark if
    it ever runs. Also the custom objects Keras itself needs to load it (the function the file names)."""
    mark = str(folder / MARK)

    def joined(tensors, mark=mark):
        open(mark, "w").close()
        return keras.ops.abs(tensors[0] - tensors[1])

    shared = tower()
    a, b = keras.Input((SIDE, SIDE, 3)), keras.Input((SIDE, SIDE, 3))
    distance = keras.layers.Lambda(joined, name="distance")([shared(a), shared(b)])
    output = keras.layers.Dense(1, activation="sigmoid")(distance) if head == "dense" else distance
    path = folder / f"siamese{suffix}"
    keras.Model([a, b], output).save(path)
    (folder / MARK).unlink(missing_ok=True)  # building it ran the Lambda; only loading matters from here
    return path, {"joined": joined}


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_lambda_siamese_loads_without_running_its_lambda(lfw_tree: Path, tmp_path: Path, suffix: str) -> None:
    path, code = siamese_with_lambda(tmp_path, suffix=suffix)
    scores, scorer = scored(path, lfw_tree)
    assert not (tmp_path / MARK).exists(), "the file's Lambda ran"
    assert scorer.facts.kind == "Keras Siamese model" and scorer.facts.score_kind == "probability"
    assert any("Lambda 'distance' taken as abs-diff" in note for note in scorer.notes)
    assert "each distinct image embedded once by the shared tower" in scorer.facts.engine
    reference = keras.saving.load_model(path, safe_mode=False, custom_objects=code)  # Keras' own, code and all
    a, b = model_inputs(lfw_tree, load_pairs(lfw_tree / "pairsDevTest.txt").pairs, lambda x: x / 255)
    np.testing.assert_allclose(scores, reference.predict([a, b], verbose=0).ravel(), atol=1e-5)


def test_a_lambda_whose_role_the_graph_leaves_open_needs_the_option(lfw_tree: Path, tmp_path: Path) -> None:
    shared = tower()
    a, b = keras.Input((SIDE, SIDE, 3)), keras.Input((SIDE, SIDE, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(shared(a))  # one input: no Siamese join
    distance = keras.layers.Subtract()([x, shared(b)])
    keras.Model([a, b], keras.layers.Dense(1, activation="sigmoid")(distance)).save(tmp_path / "odd.keras")
    result = invoke("evaluate", "--model", tmp_path / "odd.keras", "--data", lfw_tree, "--out", tmp_path / "o.json")
    assert (
        result.exit_code == 1 and "Lambda 'double' is code" in result.output and "--lambda double=OP" in result.output
    )
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "o.json").exists()
    unfit = invoke("evaluate", "--model", tmp_path / "odd.keras", "--data", lfw_tree, "--lambda", "double=l2")
    assert unfit.exit_code == 1 and "cannot load" in unfit.output and len(unfit.output) < 600, unfit.output


def test_a_distance_lambda_as_output_is_taken_as_l2_and_scored_as_a_distance(lfw_tree: Path, tmp_path: Path) -> None:
    path, code = siamese_with_lambda(tmp_path, head="none")  # mnist_siamese's shape: the distance is the output
    scores, scorer = scored(path, lfw_tree)
    assert scorer.facts.score_kind == "distance" and any("taken as l2" in n for n in scorer.notes)
    shared = keras.saving.load_model(path, safe_mode=False, custom_objects=code).get_layer("tower")
    a, b = model_inputs(lfw_tree, load_pairs(lfw_tree / "pairsDevTest.txt").pairs, lambda x: x / 255)
    expected = np.linalg.norm(shared.predict(a, verbose=0) - shared.predict(b, verbose=0), axis=1)
    np.testing.assert_allclose(scores, expected, atol=1e-4)
    results = evaluate(scorer, lfw_tree)
    assert results.model.score_kind == "distance" and results.metrics.threshold_source.kind == "protocol"


def test_a_siamese_without_lambda_scores_as_keras_predicts(lfw_tree: Path, tmp_path: Path) -> None:
    shared = tower()
    a, b = keras.Input((SIDE, SIDE, 3)), keras.Input((SIDE, SIDE, 3))
    difference = keras.layers.Subtract()([shared(a), shared(b)])
    squared = keras.layers.Multiply()([difference, difference])
    model = keras.Model([a, b], keras.layers.Dense(1, activation="sigmoid")(squared))
    model.save(tmp_path / "plain.keras")
    scores, scorer = scored(tmp_path / "plain.keras", lfw_tree, normalization="-1-1")
    x, y = model_inputs(lfw_tree, load_pairs(lfw_tree / "pairsDevTest.txt").pairs, lambda v: v / 127.5 - 1)
    np.testing.assert_allclose(scores, model.predict([x, y], verbose=0).ravel(), atol=1e-5)
    assert scorer.notes == [] and "(x - 127.5) / 127.5 (-1-1)" in scorer.facts.preprocessing


def test_a_two_input_model_without_a_shared_tower_scores_pair_by_pair(lfw_tree: Path, tmp_path: Path) -> None:
    keras.utils.set_random_seed(1)
    a, b = keras.Input((SIDE, SIDE, 3)), keras.Input((SIDE, SIDE, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(keras.layers.Concatenate()([a, b]))
    model = keras.Model([a, b], keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(x)))
    model.save(tmp_path / "stacked.keras")
    scores, scorer = scored(tmp_path / "stacked.keras", lfw_tree)
    x, y = model_inputs(lfw_tree, load_pairs(lfw_tree / "pairsDevTest.txt").pairs, lambda v: v / 255)
    np.testing.assert_allclose(scores, model.predict([x, y], verbose=0).ravel(), atol=1e-5)
    assert "embedded once" not in scorer.facts.engine


def onnx_tower(path: Path, inputs: int = 1, output_rank: int = 2) -> Path:
    """A tiny NCHW embedding model written with onnx.helper: Conv 3x3 (4 filters), Relu, global pooling, Gemm."""
    rng = np.random.default_rng(0)
    weights = {
        "w": rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32),
        "c": rng.normal(0, 0.1, 4).astype(np.float32),
        "g": rng.normal(0, 0.5, (4, 8)).astype(np.float32),
        "h": rng.normal(0, 0.1, 8).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["image", "w", "c"], ["conv"]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
    ]
    if output_rank == 2:
        nodes += [helper.make_node("Flatten", ["pool"], ["flat"]), helper.make_node("Gemm", ["flat", "g", "h"], ["e"])]
        output = helper.make_tensor_value_info("e", TensorProto.FLOAT, ["N", 8])
    else:
        output = helper.make_tensor_value_info("pool", TensorProto.FLOAT, ["N", 4, 1, 1])
    graph_inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, SIDE, SIDE])]
    graph_inputs += [helper.make_tensor_value_info(f"extra{k}", TensorProto.FLOAT, ["N", 3]) for k in range(inputs - 1)]
    graph = helper.make_graph(nodes, "tower", graph_inputs, [output],
                              [numpy_helper.from_array(v, k) for k, v in weights.items()])  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path


def test_an_onnx_embedding_model_scores_as_onnxruntime_embeds(lfw_tree: Path, tmp_path: Path) -> None:
    path = onnx_tower(tmp_path / "tower.onnx")
    scores, scorer = scored(path, lfw_tree, normalization="-1-1")
    normalise = lambda x: (x / 127.5 - 1).transpose(2, 0, 1)  # noqa: E731
    a, b = model_inputs(lfw_tree, load_pairs(lfw_tree / "pairsDevTest.txt").pairs, normalise)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = cosine(session.run(None, {"image": a})[0], session.run(None, {"image": b})[0])
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert scorer.facts.kind == "ONNX embedding model" and scorer.facts.preprocessing.endswith("NCHW")


def test_a_tflite_embedding_model_scores_as_keras_embeds(lfw_tree: Path, tmp_path: Path) -> None:
    import tensorflow as tf

    model = tower(seed=2)
    (tmp_path / "tower.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    scores, scorer = scored(tmp_path / "tower.tflite", lfw_tree, metric="euclidean")
    a, b = model_inputs(lfw_tree, load_pairs(lfw_tree / "pairsDevTest.txt").pairs, lambda x: x / 255)
    expected = np.linalg.norm(model.predict(a, verbose=0) - model.predict(b, verbose=0), axis=1)
    np.testing.assert_allclose(scores, expected, atol=1e-4)
    assert scorer.facts.kind == "TFLite embedding model" and scorer.facts.score_kind == "distance"


def written(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda folder: onnx_tower(folder / "two.onnx", inputs=2), "the model has 2 inputs"),
        (lambda folder: onnx_tower(folder / "map.onnx", output_rank=4), "not one vector per image"),
        (lambda folder: written(folder / "junk.onnx", b"\x08\x01junk"), "not a loadable ONNX model"),
        (lambda folder: written(folder / "notes.txt", b"hello"), "not a model lfwbench reads"),
    ],
)  # fmt: skip
def test_a_model_lfwbench_cannot_score_is_one_line(lfw_tree: Path, tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path)
    result = invoke("evaluate", "--model", path, "--data", lfw_tree, "--out", tmp_path / "o.json")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and message in lines[0], result.output
    assert len(lines[0]) < 500 and not (tmp_path / "o.json").exists()


def test_a_model_whose_input_is_no_image_and_an_unknown_layer_are_one_line(lfw_tree: Path, tmp_path: Path) -> None:
    vector = keras.Input((10,))
    keras.Model(vector, keras.layers.Dense(4)(vector)).save(tmp_path / "table.keras")
    result = invoke("evaluate", "--model", tmp_path / "table.keras", "--data", lfw_tree)
    assert result.exit_code == 1 and "not an image batch" in result.output, result.output

    @keras.saving.register_keras_serializable(package="elsewhere")
    class Mystery(keras.layers.Layer):
        def call(self, x):
            return x

    image = keras.Input((SIDE, SIDE, 3))
    keras.Model(image, keras.layers.Flatten()(Mystery()(image))).save(tmp_path / "mystery.keras")
    keras.saving.get_custom_objects().pop("elsewhere>Mystery")
    result = invoke("evaluate", "--model", tmp_path / "mystery.keras", "--data", lfw_tree)
    assert result.exit_code == 1 and "cannot load" in result.output and "Traceback" not in result.output


def test_preprocessing_options_are_checked_against_the_model(lfw_tree: Path, tmp_path: Path) -> None:
    tower().save(tmp_path / "tower.keras")
    model = ["evaluate", "--model", tmp_path / "tower.keras", "--data", lfw_tree]
    assert "takes 32x32 images; --size 64" in invoke(*model, "--size", "64").output
    assert "takes 3 channel(s)" in invoke(*model, "--channels", "1").output
    assert "one value or one per channel" in invoke(*model, "--mean", "1", "--mean", "2", "--std", "1").output
    ok = invoke(*model, "--normalize", "imagenet", "--crop", "150", "--bgr", "--flip")
    assert ok.exit_code == 0, ok.output


KERAS2_CONTRASTIVE = """
import sys
import numpy as np
import tensorflow as tf
import tf_keras as k

folder = sys.argv[1]


def euclidean(tensors, mark=folder + "/lambda-ran.txt"):
    open(mark, "w").close()
    a, b = tensors
    return tf.sqrt(tf.maximum(tf.reduce_sum(tf.square(a - b), axis=1, keepdims=True), 1e-12))


k.utils.set_random_seed(0)
image = k.Input((32, 32, 3))
x = k.layers.GlobalAveragePooling2D()(k.layers.Conv2D(4, 3, activation="relu")(image))
base = k.Model(image, k.layers.Dense(8)(x), name="base")
a, b = k.Input((32, 32, 3)), k.Input((32, 32, 3))
model = k.Model([a, b], k.layers.Lambda(euclidean, name="distance")([base(a), base(b)]))
model.save(folder + "/contrastive.h5")
left, right = np.load(folder + "/a.npy"), np.load(folder + "/b.npy")
np.save(folder + "/expected.npy", model.predict([left, right], verbose=0).ravel())
"""


def test_a_keras2_contrastive_model_loads_as_a_distance_without_running_its_lambda(
    lfw_tree: Path, tmp_path: Path
) -> None:
    """Keras' mnist_siamese pattern saved by Keras 2 (tf_keras): a shared functional base, a Euclidean Lambda as the
    output; the file's marshalled Lambda never runs."""
    import subprocess
    import sys

    pytest.importorskip("tf_keras")
    a, b = model_inputs(lfw_tree, load_pairs(lfw_tree / "pairsDevTest.txt").pairs, lambda x: x / 255)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    made = subprocess.run([sys.executable, "-c", KERAS2_CONTRASTIVE, str(tmp_path)], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr[-2000:]
    (tmp_path / MARK).unlink(missing_ok=True)  # predicting ran it in Keras 2; lfwbench must not
    scores, scorer = scored(tmp_path / "contrastive.h5", lfw_tree)
    assert not (tmp_path / MARK).exists(), "the file's Lambda ran"
    np.testing.assert_allclose(scores, np.load(tmp_path / "expected.npy"), atol=1e-5)
    assert scorer.facts.score_kind == "distance" and any("taken as l2" in note for note in scorer.notes)
    assert "each distinct image embedded once" in scorer.facts.engine
