from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("tensorflow")

from lfwbench.checkpoints import load_model  # noqa: E402
from lfwbench.cli import main  # noqa: E402
from lfwbench.ensemble import write_ensemble  # noqa: E402
from lfwbench.errors import LfwbenchError  # noqa: E402
from lfwbench.evaluation import evaluate  # noqa: E402
from lfwbench.training import TrainConfig, train  # noqa: E402


@pytest.fixture(scope="module")
def members(lfw_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two tiny runs with different seeds and one validation split (split_seed 1)."""
    folder = tmp_path_factory.mktemp("members")
    config = TrainConfig(preset="tiny", epochs=1, batch_size=4, val_fraction=0.3, split_seed=1)
    for seed in (1, 2):
        train(replace(config, seed=seed), lfw_tree, folder / f"seed{seed}", verbose=0)
    return [folder / f"seed{seed}" / "best.keras" for seed in (1, 2)]


def test_split_seed_fixes_the_validation_people_whatever_the_seed(members: list[Path]) -> None:
    splits = [json.loads((path.parent / "config.json").read_text())["split"] for path in members]
    configs = [json.loads((path.parent / "config.json").read_text())["config"] for path in members]
    assert splits[0] == splits[1] and [c["split_seed"] for c in configs] == [1, 1]
    assert [c["seed"] for c in configs] == [1, 2]


def test_ensemble_scores_the_mean_logit_of_its_members(members: list[Path], lfw_tree: Path, tmp_path: Path) -> None:
    merged = load_model(write_ensemble(members, tmp_path / "ens"))
    reloaded = load_model(tmp_path / "ens" / "best.h5")
    rng = np.random.default_rng(0)
    left, right = (rng.integers(0, 256, (6, 32, 32, 3)).astype("float32") for _ in range(2))
    logits = [np.log(p / (1 - p)) for p in (load_model(m).predict([left, right], verbose=0).ravel() for m in members)]
    expected = 1 / (1 + np.exp(-np.mean(logits, axis=0)))
    assert np.allclose(merged.predict([left, right], verbose=0).ravel(), expected, atol=1e-5)
    assert np.allclose(reloaded.predict([left, right], verbose=0).ravel(), expected, atol=1e-5)
    config = json.loads((tmp_path / "ens" / "config.json").read_text())
    assert [m["seed"] for m in config["ensemble"]] == [1, 2] and config["config"]["split_seed"] == 1
    results = evaluate(tmp_path / "ens" / "best.keras", lfw_tree, engine="int8", progress=False)
    assert results.leakage == {"checked": True, "people_in_training_and_evaluation": 0, "examples": []}
    assert "seed 1" in results.metrics.threshold_source.description


def test_ensemble_command_and_report(members: list[Path], lfw_tree: Path, tmp_path: Path) -> None:
    args = ["ensemble", "--model", str(members[0]), "--model", str(members[1]), "--out", str(tmp_path / "ens")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "(2 members)" in result.output
    report = tmp_path / "report.html"
    args = ["report", "--model", str(tmp_path / "ens" / "best.keras"), "--data", str(lfw_tree), "--out", str(report)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "logits averaged over 2 runs" in report.read_text()


def test_members_must_share_the_validation_split(members: list[Path], lfw_tree: Path, tmp_path: Path) -> None:
    other = TrainConfig(preset="tiny", epochs=1, batch_size=4, val_fraction=0.3, seed=3)
    train(other, lfw_tree, tmp_path / "seed3", verbose=0)
    with pytest.raises(LfwbenchError, match=r"split_seed=3, but .*seed1/best.keras has split_seed=1"):
        write_ensemble([members[0], tmp_path / "seed3" / "best.keras"], tmp_path / "ens")
    with pytest.raises(LfwbenchError, match="two or more"):
        write_ensemble(members[:1], tmp_path / "ens")
    result = CliRunner().invoke(main, ["ensemble", "--model", str(members[0]), "--out", str(tmp_path / "ens")])
    assert result.exit_code == 1 and "Error: an ensemble needs two or more checkpoints" in result.output


def test_cosine_heads_merge_to_the_mean_logit_and_refuse_a_mix_or_a_negative_scale() -> None:
    from lfwbench.ensemble import merge_siamese
    from lfwbench.model import build_siamese

    models = [build_siamese("tiny-cosine", seed=seed, compile=False) for seed in (1, 2)]
    for model, (scale, bias) in zip(models, [(4.0, -1.0), (9.0, 0.5)], strict=True):
        model.get_layer("head").get_layer("same").set_weights([np.array([[scale]]), np.array([bias])])
    rng = np.random.default_rng(3)
    left, right = (rng.integers(0, 256, (5, 32, 32, 3)).astype("float32") for _ in range(2))
    logits = [np.log(p / (1 - p)) for p in (m.predict([left, right], verbose=0).ravel().astype(float) for m in models)]
    merged = merge_siamese(models, "tiny-cosine").predict([left, right], verbose=0).ravel()
    np.testing.assert_allclose(merged, 1 / (1 + np.exp(-np.mean(logits, axis=0))), atol=1e-5)
    with pytest.raises(LfwbenchError, match="cosine head and members with an L1 head"):
        merge_siamese([models[0], build_siamese("tiny", compile=False)], "tiny-cosine")
    models[1].get_layer("head").get_layer("same").set_weights([np.array([[-1.0]]), np.array([0.0])])
    with pytest.raises(LfwbenchError, match="scale s <= 0"):
        merge_siamese(models, "tiny-cosine")
