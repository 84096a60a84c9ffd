"""The cosine head, P(same) = sigmoid(s cos(a, b) + c), and the CosFace loss trained beside the pair loss."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import keras  # noqa: E402

from lfwbench.checkpoints import load_model  # noqa: E402
from lfwbench.engine import BundleFacts, ModelSummary, head_scores  # noqa: E402
from lfwbench.errors import LfwbenchError  # noqa: E402
from lfwbench.inference import export_bundle  # noqa: E402
from lfwbench.model import build_siamese  # noqa: E402
from lfwbench.person_batches import MARGIN_SCALE, CosFaceLoss  # noqa: E402
from lfwbench.training import TrainConfig, train  # noqa: E402

MARGIN = TrainConfig(preset="tiny-cosine", epochs=3, val_fraction=0.3, seed=2)


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_cosine_head_is_a_sigmoid_of_the_scaled_cosine_in_keras_and_in_the_bundle_engine() -> None:
    model = build_siamese("tiny-cosine", compile=False)
    head = model.get_layer("head")
    head.get_layer("same").set_weights([np.array([[7.5]], np.float32), np.array([-2.0], np.float32)])
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(6, 8)).astype(np.float32)
    left, right = np.array([0, 1, 2, 3]), np.array([5, 4, 2, 0])
    expected = 1 / (1 + np.exp(-(7.5 * (unit(embeddings[left]) * unit(embeddings[right])).sum(1) - 2.0)))
    keras_scores = head.predict([embeddings[left], embeddings[right]], verbose=0).ravel()
    np.testing.assert_allclose(keras_scores, expected, rtol=1e-5)
    facts = BundleFacts([], [32, 32, 3], [7.5], -2.0, ModelSummary("tiny-cosine", 1, 1, [], [32, 32, 3]), "cosine")
    np.testing.assert_allclose(head_scores(facts, embeddings, left, right), expected, rtol=1e-6)
    assert expected[2] == pytest.approx(1 / (1 + np.exp(-5.5)))  # a pair of one image: cos 1


def test_cosface_loss_is_softmax_cross_entropy_of_scaled_cosines_less_the_margin_at_the_true_identity() -> None:
    model = build_siamese("tiny-cosine", compile=False, identities=3)
    cosine = model.get_layer("head").get_layer("cosine")
    rng = np.random.default_rng(1)
    proxies = rng.normal(size=(8, 3)).astype(np.float32)
    cosine.proxies.assign(proxies)
    embeddings, persons = rng.normal(size=(4, 8)).astype(np.float32), np.array([0, 2, 1, 2])
    layer = CosFaceLoss(cosine, 0.25)
    passed = layer([embeddings, persons])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(passed), embeddings)
    logits = MARGIN_SCALE * (unit(embeddings) @ unit(proxies.T).T - 0.25 * np.eye(3)[persons])
    logits -= logits.max(axis=1, keepdims=True)
    expected = np.mean(np.log(np.exp(logits).sum(1)) - logits[np.arange(4), persons])
    assert float(keras.ops.convert_to_numpy(layer.losses[0])) == pytest.approx(expected, rel=1e-5)


def test_margin_run_keeps_its_proxies_resumes_as_the_uninterrupted_run_and_bundles_a_cosine_head(
    lfw_tree: Path, tmp_path: Path
) -> None:
    whole = train(MARGIN, lfw_tree, tmp_path / "whole", verbose=0)
    train(replace(MARGIN, epochs=2), lfw_tree, tmp_path / "parts", verbose=0)
    resumed = train(TrainConfig(preset="tiny-cosine", epochs=3), lfw_tree, tmp_path / "parts", mode="resume", verbose=0)
    assert [row["loss"] for row in resumed.history] == pytest.approx([row["loss"] for row in whole.history])
    first, second = (load_model(tmp_path / run / "last.keras") for run in ("whole", "parts"))
    proxies = first.get_layer("head").get_layer("cosine").proxies
    assert proxies.shape[-1] >= 2  # one per training person with two or more images
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    bundle = export_bundle(load_model(tmp_path / "whole" / "best.keras"), ["0" * 64], "tiny-cosine")
    assert bundle.facts.head == "cosine" and len(bundle.facts.head_kernel) == 1
    assert BundleFacts.parse(asdict(bundle.facts)) == bundle.facts


def test_a_cosine_bundle_with_more_than_one_weight_or_an_unknown_head_is_unfit() -> None:
    model = {"preset": "tiny", "parameters": 1, "twin_parameters": 1, "layers": [], "input_shape": [32, 32, 3]}
    facts = {"checkpoint_sha256": [], "input_shape": [32, 32, 3], "head_kernel": [1.0, 2.0], "head_bias": 0.0,
             "model": model}  # fmt: skip
    with pytest.raises(ValueError, match="a cosine head 1"):
        BundleFacts.parse({**facts, "head": "cosine"})
    with pytest.raises(ValueError, match="none of l1, cosine"):
        BundleFacts.parse({**facts, "head": "l2"})
    assert BundleFacts.parse(facts).head == "l1"  # bundles before the cosine head: the L1 head


@pytest.mark.parametrize("options", [{"preset": "tiny"}, {"preset": "tiny-cosine", "people_per_batch": 0}])
def test_a_margin_needs_person_batches_and_a_cosine_head(options: dict) -> None:
    with pytest.raises(LfwbenchError, match="margin loss needs person batches"):
        TrainConfig(**{"regime": "unrestricted", "margin": 0.2, **options}).resolved()


def test_a_fitted_cosine_head_is_the_logistic_regression_of_the_validation_cosines(
    lfw_tree: Path, tmp_path: Path, monkeypatch
) -> None:
    from sklearn.linear_model import LogisticRegression

    from lfwbench import presets, training

    monkeypatch.setitem(presets.PRESETS, "tiny", replace(presets.TINY, fitted_cosine=True))
    config = TrainConfig(preset="tiny", epochs=2, batch_size=4, val_fraction=0.3, seed=3)
    train(config, lfw_tree, tmp_path / "run", verbose=0)
    model = load_model(tmp_path / "run" / "best.keras")
    left, right, labels = training.prepare_data(config.resolved(), lfw_tree, progress=False).val
    images = training.prepare_data(config.resolved(), lfw_tree, progress=False).images
    embeddings = model.get_layer("twin").predict(images, verbose=0)
    cosines = (unit(embeddings[left]) * unit(embeddings[right])).sum(axis=1, keepdims=True)
    expected = LogisticRegression(C=1e4).fit(cosines, labels)
    scale, bias = model.get_layer("head").get_layer("same").get_weights()
    assert scale.item() == pytest.approx(max(expected.coef_.item(), training.MIN_COSINE_SCALE), rel=1e-3, abs=1e-4)
    if expected.coef_.item() >= training.MIN_COSINE_SCALE:
        assert bias.item() == pytest.approx(expected.intercept_.item(), rel=1e-3, abs=1e-4)
    twin = load_model(tmp_path / "run" / "last.keras").get_layer("twin")  # the trained twin, unchanged
    for a, b in zip(twin.get_weights(), model.get_layer("twin").get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
