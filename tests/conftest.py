"""Fixtures: a tiny synthetic LFW-like tree (a dozen people, a few 250x250 JPEGs each) and the real copy."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

REAL_LFW = Path(os.environ.get("LFWBENCH_REAL_DATA", Path(__file__).resolve().parents[2] / "shared" / "lfw"))
TRAIN_PEOPLE = [f"Train_Person{i:02d}" for i in range(8)]
TEST_PEOPLE = [f"Test_Person{i:02d}" for i in range(4)]
IMAGES_PER_PERSON = 4


def face(seed: int, person: int) -> np.ndarray:
    """A 250x250 colour image whose blob placement and colour depend on the person, plus per-image noise."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, (250, 250, 3), dtype=np.uint8)
    colour = [(person * 53) % 256, (person * 97) % 256, (person * 151) % 256]
    centre = (80 + (person % 4) * 30, 80 + (person // 4) * 30)
    cv2.circle(image, centre, 50, colour, -1)
    return image


def write_list(path: Path, header: str, lines: list[str]) -> None:
    path.write_text("\n".join([header, *lines]) + "\n")


def make_lfw_tree(root: Path, folder: str = "lfw-deepfunneled") -> Path:
    people = TRAIN_PEOPLE + TEST_PEOPLE
    for number, name in enumerate(people):
        (root / folder / name).mkdir(parents=True)
        for index in range(1, IMAGES_PER_PERSON + 1):
            cv2.imwrite(str(root / folder / name / f"{name}_{index:04d}.jpg"), face(number * 10 + index, number))

    def same(names: list[str], count: int) -> list[str]:
        return [f"{names[k % len(names)]}\t{1 + k % 3}\t{2 + k % 3}" for k in range(count)]

    def different(names: list[str], count: int) -> list[str]:
        # people paired two by two, so the list splits into several groups of people (for split_by_person)
        n = len(names)
        return [f"{names[2 * k % n]}\t{1 + k % 4}\t{names[(2 * k + 1) % n]}\t{1 + (k + 2) % 4}" for k in range(count)]

    write_list(root / "pairsDevTrain.txt", "12", same(TRAIN_PEOPLE, 12) + different(TRAIN_PEOPLE, 12))
    write_list(root / "pairsDevTest.txt", "4", same(TEST_PEOPLE, 4) + different(TEST_PEOPLE, 4))
    folds = []
    for fold in range(2):
        names = people[fold * 6 : fold * 6 + 6]
        folds += same(names, 3) + different(names, 3)
    write_list(root / "pairs.txt", "2\t3", folds)
    people_folds = [[f"{n}\t{IMAGES_PER_PERSON}" for n in people[k * 6 : k * 6 + 6]] for k in range(2)]
    write_list(root / "people.txt", "2", ["6", *people_folds[0], "6", *people_folds[1]])
    write_list(root / "peopleDevTrain.txt", str(len(TRAIN_PEOPLE)), [f"{n}\t{IMAGES_PER_PERSON}" for n in TRAIN_PEOPLE])
    write_list(root / "peopleDevTest.txt", str(len(TEST_PEOPLE)), [f"{n}\t{IMAGES_PER_PERSON}" for n in TEST_PEOPLE])
    return root


@pytest.fixture(scope="session")
def lfw_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only-by-convention synthetic data root shared by the whole session."""
    return make_lfw_tree(tmp_path_factory.mktemp("lfw"))


@pytest.fixture
def fresh_tree(tmp_path: Path) -> Path:
    """A synthetic data root a test may break."""
    return make_lfw_tree(tmp_path / "lfw")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LFWBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv("LFWBENCH_DATA", raising=False)


@pytest.fixture(scope="session")
def real_lfw() -> Path:
    if not (REAL_LFW / "pairsDevTrain.txt").is_file():
        pytest.skip(f"real LFW copy not found at {REAL_LFW}")
    return REAL_LFW


def write_keras2_h5(path: Path, model, era: str = "tf2.8") -> None:
    """Write `model` (a Koch-family lfwbench model) in the HDF5 layout TensorFlow 2.8 / tf_keras gave the notebook.

    The L1 join is a Lambda whose `function` is marshalled bytecode that would raise if ever run; custom
    initialisers are stored as TF 2.8 did (a bare name) or as tf_keras does (a 'function' record).
    """
    import h5py

    from lfwbench.model import keras_type

    initialiser = (
        "initialize_weights"
        if era == "tf2.8"
        else {
            "module": "builtins",
            "class_name": "function",
            "config": "initialize_weights",
            "registered_name": "function",
        }
    )
    twin, head = model.get_layer("twin"), model.get_layer("head")
    shape = [None, *twin.input.shape[1:]]
    inner = [{"class_name": "InputLayer", "config": {"batch_input_shape": shape, "name": "conv2d_input"}}]
    names = {}
    counters: dict[str, int] = {}
    for layer in twin.layers[2:]:  # skip the input and our Rescaling (the notebook divided by 255 itself)
        kind = keras_type(layer)
        base = {
            "Conv2D": "conv2d",
            "BatchNormalization": "batch_normalization",
            "MaxPooling2D": "max_pooling2d",
            "Flatten": "flatten",
            "Dense": "dense",
            "GlobalAveragePooling2D": "gap",
        }[kind]
        number = counters.get(base, 0)
        counters[base] = number + 1
        names[layer.name] = name = base if number == 0 else f"{base}_{number}"
        config = {"name": name, "trainable": True}
        if kind == "Conv2D":
            config |= {
                "filters": layer.filters,
                "kernel_size": list(layer.kernel_size),
                "activation": "relu",
                "padding": layer.padding,
                "kernel_initializer": initialiser,
            }
        if kind == "Dense":
            config |= {"units": layer.units, "activation": "sigmoid", "kernel_initializer": initialiser}
        inner.append({"class_name": kind, "config": config})
    lambda_bytecode = "4wEAAAAAAAAAAAAAAAEAAAAEAAAAQwAAAHMOAAAAdABkAYMBAQBkAFMAKQJO2gRib29tKQHaClN5c3RlbUV4aXQ="
    top = [
        {"class_name": "InputLayer", "config": {"batch_input_shape": shape, "name": "input_1"}, "name": "input_1"},
        {"class_name": "InputLayer", "config": {"batch_input_shape": shape, "name": "input_2"}, "name": "input_2"},
        {"class_name": "Sequential", "config": {"name": "sequential", "layers": inner}, "name": "sequential"},
        {
            "class_name": "Lambda",
            "config": {
                "name": "lambda",
                "function": [lambda_bytecode, None, None],
                "function_type": "lambda",
                "module": "__main__",
            },
            "name": "lambda",
        },
        {"class_name": "Dropout", "config": {"name": "dropout", "rate": 0.4}, "name": "dropout"},
        {"class_name": "Dense", "config": {"name": "dense_1", "units": 1, "activation": "sigmoid"}, "name": "dense_1"},
    ]
    config = {"class_name": "Functional", "config": {"name": "model", "layers": top}, "keras_version": "2.8.0"}
    with h5py.File(path, "w") as file:
        file.attrs["keras_version"] = b"2.8.0" if era == "tf2.8" else b"2.21.0"
        file.attrs["backend"] = b"tensorflow"
        file.attrs["model_config"] = json.dumps(config).encode()
        weights = file.create_group("model_weights")
        weights.attrs["layer_names"] = [b"input_1", b"input_2", b"sequential", b"lambda", b"dropout", b"dense_1"]
        for name in ("input_1", "input_2", "lambda", "dropout"):
            weights.create_group(name).attrs["weight_names"] = []
        tower = weights.create_group("sequential")
        trainable, frozen = [], []
        for layer in twin.layers[2:]:
            for variable in layer.weights:
                kind = variable.path.split("/")[-1]
                entry = (f"{names[layer.name]}/{kind}:0", variable.numpy())
                (trainable if variable.trainable else frozen).append(entry)
        for name, value in trainable + frozen:  # Keras 2 order: trainable weights first
            tower.create_dataset(name, data=value)
        tower.attrs["weight_names"] = [name.encode() for name, _ in trainable + frozen]
        dense = weights.create_group("dense_1")
        kernel, bias = head.get_layer("same").get_weights()
        dense.create_dataset("dense_1/kernel:0", data=kernel)
        dense.create_dataset("dense_1/bias:0", data=bias)
        dense.attrs["weight_names"] = [b"dense_1/kernel:0", b"dense_1/bias:0"]


@pytest.fixture
def keras2_h5():
    """The writer of notebook-era checkpoints, for tests of the legacy loader."""
    return write_keras2_h5


def hand_made_results(tree: Path, pairs: int = 40, name: str = "model-a", seed: int = 0):
    """A Results object built by hand (no TensorFlow): random scores on the synthetic tree's faces."""
    from lfwbench.machine import Environment
    from lfwbench.metrics import ThresholdSource, summarise
    from lfwbench.results import DataFacts, ModelFacts, PairRecord, Results, Settings

    rng = np.random.default_rng(seed)
    people = TRAIN_PEOPLE + TEST_PEOPLE
    labels = np.array([1, 0] * (pairs // 2))
    scores = np.clip(0.5 + 0.3 * (labels - 0.5) + rng.normal(0, 0.2, pairs), 0.001, 0.999)
    records = []
    for k, (label, score) in enumerate(zip(labels, scores, strict=True)):
        first = people[k % len(people)]
        second = first if label else people[(k + 1) % len(people)]
        records.append(
            PairRecord(first, 1, second, 2, 1, int(label), float(score), int(score >= 0.45), k + 2)
        )  # fmt: skip
    history = [
        {"epoch": e, "loss": 0.7 - 0.05 * e, "accuracy": 0.5 + 0.04 * e, "val_loss": 0.72 - 0.03 * e,
         "val_accuracy": 0.5 + 0.03 * e, "seconds": 10.0}
        for e in range(1, 6)
    ]  # fmt: skip
    return Results(
        model=ModelFacts(
            name=name,
            kind="lfwbench checkpoint",
            path=f"/runs/{name}/best.h5",
            sha256="0" * 64,
            score_kind="probability",
            engine="int8 (TFLite, test)",
            preprocessing="32x32 RGB, the whole image, scaled to [0, 1] by the model",
            preset="tiny",
            parameters=1000,
            twin_parameters=900,
            input_shape=[32, 32, 3],
            layers=[{"layer": "twin/conv1", "type": "Conv2D", "output_shape": "(None, 32, 32, 4)", "parameters": 112}],
        ),
        data=DataFacts(
            root=str(tree),
            variant="lfw-deepfunneled",
            pair_list=str(tree / "pairsDevTest.txt"),
            pair_list_name="pairsDevTest.txt",
            pair_list_md5="abc",
            folds=1,
            distinct_images=pairs,
            skipped_pairs=[],
            stats={
                "variant": "lfw-deepfunneled",
                "people": 12,
                "images": 48,
                "images_per_person": {"mean": 4.0, "std": 0.0, "max": 4, "people_with_2_or_more": 12},
                "splits": {"test": {"list": "pairsDevTest.txt", "pairs": 8, "same": 4, "different": 4, "people": 4}},
                "test_train_overlap_people": 0,
            },
        ),
        metrics=replace(
            summarise(labels, scores, 0.45),
            threshold_source=ThresholdSource("validation", "pairsDevTrain.txt (validation people)", 20),
        ),
        pairs=records,
        settings=Settings(batch_size=64, flip_tta=False, skip_missing=False),
        training={
            "config": {"config": {"seed": 1, "preset": "tiny"}, "split": {"train_pairs": 10}},
            "history": history,
        },
        leakage={"checked": True, "people_in_training_and_evaluation": 0, "examples": []},
        timings={"infer": 1.0, "images_per_second": 100.0},
        versions={"lfwbench": "0", "tensorflow": "x", "keras": "y"},
        environment=Environment(
            cpu="AMD EPYC",
            vector_instructions="avx512f avx2",
            cores=2,
            python="3.11",
            os="Linux",
            gpu="none",
            lfwbench_version="0",
            numpy_version="2",
            tensorflow_version="x",
            keras_version="y",
            opencv_version="5",
            git_commit="abc1234",
            command="lfwbench report --model m.keras",
        ),  # fmt: skip
        created="2026-01-01T00:00:00+00:00",
    )


@pytest.fixture
def make_results():
    return hand_made_results


@pytest.fixture
def chromium():
    """Debian's headless Chromium through Playwright, offline-minded; the browser tests skip without them."""
    playwright = pytest.importorskip("playwright.sync_api")
    executable = Path("/usr/bin/chromium")
    if not executable.exists():
        pytest.skip("Debian's chromium is not installed")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(executable),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        yield browser
        browser.close()
