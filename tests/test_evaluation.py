from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.metrics import accuracy_score, confusion_matrix, roc_auc_score

pytest.importorskip("tensorflow")

from lfwbench.checkpoints import save_model  # noqa: E402
from lfwbench.cli import main  # noqa: E402
from lfwbench.evaluation import evaluate  # noqa: E402
from lfwbench.inference import score_pairs  # noqa: E402
from lfwbench.model import build_siamese  # noqa: E402
from lfwbench.results import PREDICTION_COLUMNS, read_results, write_results  # noqa: E402
from lfwbench.training import TrainConfig, train  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(lfw_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "tiny"
    train(TrainConfig(preset="tiny", epochs=2, batch_size=4, val_fraction=0.3, seed=2), lfw_tree, out, verbose=0)
    return out


def test_embed_once_equals_the_pair_model() -> None:
    model = build_siamese("tiny", seed=4)
    images = np.random.default_rng(1).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    left, right = np.array([0, 1, 2, 3, 4, 0, 5]), np.array([6, 7, 8, 9, 10, 11, 0])
    expected = model.predict([images[left], images[right]], verbose=0).ravel()
    np.testing.assert_allclose(score_pairs(model, images, left, right, batch_size=5, verbose=0), expected, atol=1e-5)
    twin, head = model.get_layer("twin"), model.get_layer("head")
    mean = (twin.predict(images, verbose=0) + twin.predict(images[:, :, ::-1], verbose=0)) / 2
    flip_expected = head.predict([mean[left], mean[right]], verbose=0).ravel()
    np.testing.assert_allclose(score_pairs(model, images, left, right, flip=True, verbose=0), flip_expected, atol=1e-5)


def test_evaluate_scores_every_pair_and_round_trips(run_dir: Path, lfw_tree: Path, tmp_path: Path) -> None:
    results = evaluate(run_dir / "best.h5", lfw_tree, progress=False)
    labels = np.array([p.label for p in results.pairs])
    scores = np.array([p.score for p in results.pairs])
    assert len(results.pairs) == 8 and results.data.distinct_images == len(
        {(p.name1, p.image1) for p in results.pairs} | {(p.name2, p.image2) for p in results.pairs}
    )
    m = results.metrics
    assert m.at_half.accuracy == pytest.approx(accuracy_score(labels, scores >= 0.5), abs=1e-9)
    assert m.at_half.confusion == confusion_matrix(labels, scores >= 0.5, labels=[0, 1]).tolist()
    assert m.auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-9)
    assert "pairsDevTrain.txt (validation people" in m.threshold_source.description
    assert m.at_threshold is not None
    assert results.leakage == {"checked": True, "people_in_training_and_evaluation": 0, "examples": []}
    assert results.training["history"][-1]["epoch"] == 2 and results.model.preset == "tiny"
    write_results(tmp_path / "r.json", results)
    assert read_results(tmp_path / "r.json") == results


def test_evaluating_training_people_is_reported_as_leakage(run_dir: Path, lfw_tree: Path) -> None:
    results = evaluate(run_dir / "best.keras", lfw_tree, lfw_tree / "pairsDevTrain.txt", progress=False)
    assert results.leakage["people_in_training_and_evaluation"] == 8
    assert any(w.startswith("leakage: 8 people") for w in results.metrics.warnings)


def test_view2_reports_folds(run_dir: Path, lfw_tree: Path) -> None:
    results = evaluate(run_dir / "best.h5", lfw_tree, lfw_tree / "pairs.txt", progress=False)
    view2 = results.metrics.view2
    assert len(view2.fold_accuracies) == 2 and {p.fold for p in results.pairs} == {1, 2}
    assert view2.mean == pytest.approx(np.mean(view2.fold_accuracies))


def test_evaluate_command_writes_json_and_csv(run_dir: Path, lfw_tree: Path, tmp_path: Path) -> None:
    out, csv = tmp_path / "results.json", tmp_path / "predictions.csv"
    result = CliRunner().invoke(
        main, ["evaluate", "--model", str(run_dir / "best.h5"), "--data", str(lfw_tree), "--out", str(out),
               "--predictions", str(csv), "--flip"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for fragment in ("loss", "accuracy", "TPR same", "TNR different", "AUC", "EER", "95% CI"):
        assert fragment in result.output
    table = pd.read_csv(csv)
    assert tuple(table.columns) == PREDICTION_COLUMNS and len(table) == 8
    assert set(table["label"]) == {0, 1} and table["predicted"].isin([0, 1]).all()
    stored = json.loads(out.read_text())
    assert stored["schema_version"] == 3 and stored["settings"]["flip_tta"] is True


def test_bad_checkpoint_is_one_line_error(lfw_tree: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"0" * 100)
    result = CliRunner().invoke(main, ["evaluate", "--model", str(tmp_path / "bad.h5"), "--data", str(lfw_tree)])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1


@pytest.mark.realdata
def test_real_devtest_scored_and_metrics_match_scikit_learn(real_lfw: Path, tmp_path: Path) -> None:
    model = build_siamese("tiny", (32, 32, 3), seed=0)
    save_model(model, tmp_path / "random.keras")
    results = evaluate(tmp_path / "random.keras", real_lfw, progress=False)
    labels = np.array([p.label for p in results.pairs])
    scores = np.array([p.score for p in results.pairs])
    assert len(results.pairs) == 1000 and results.data.distinct_images == 1549
    assert results.metrics.auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-9)
    assert results.metrics.at_half.accuracy == pytest.approx(accuracy_score(labels, scores >= 0.5), abs=1e-9)


def view2_like_list(real_lfw: Path, path: Path) -> Path:
    """A pairs.txt in the official View 2 layout (10 folds of 300 same + 300 different) drawn from people.txt."""
    from lfwbench.pairs import load_people

    rng = np.random.default_rng(0)
    lines = ["10\t300"]
    for fold in load_people(real_lfw / "people.txt"):
        several = [(name, n) for name, n in fold if n >= 2]
        for _ in range(300):
            name, n = several[rng.integers(len(several))]
            i, j = rng.choice(np.arange(1, n + 1), 2, replace=False)
            lines.append(f"{name}\t{i}\t{j}")
        for _ in range(300):
            (a, na), (b, nb) = (fold[x] for x in rng.choice(len(fold), 2, replace=False))
            lines.append(f"{a}\t{rng.integers(1, na + 1)}\t{b}\t{rng.integers(1, nb + 1)}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.realdata
def test_view2_protocol_on_ten_folds_of_real_faces(real_lfw: Path, tmp_path: Path) -> None:
    save_model(build_siamese("tiny", (32, 32, 3), seed=0), tmp_path / "random.keras")
    pairs = view2_like_list(real_lfw, tmp_path / "pairs.txt")
    result = CliRunner().invoke(
        main, ["evaluate", "--model", str(tmp_path / "random.keras"), "--data", str(real_lfw), "--view2", str(pairs),
               "--out", str(tmp_path / "r.json")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "View 2" in result.output and "(û ± SE over 10 folds" in result.output
    assert "the other 9 folds of pairs.txt" in result.output  # no run folder: the protocol chooses each threshold
    stored = json.loads((tmp_path / "r.json").read_text())
    assert len(stored["pairs"]) == 6000 and len(stored["metrics"]["view2"]["fold_accuracies"]) == 10


def test_tflite_bundles_equal_keras_in_float32_are_close_in_int8_and_need_no_tensorflow(
    run_dir: Path, lfw_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lfwbench import checkpoint_scorer

    float32 = evaluate(run_dir / "best.h5", lfw_tree, engine="float32", progress=False)
    int8 = evaluate(run_dir / "best.h5", lfw_tree, engine="int8", progress=False)
    monkeypatch.setattr(checkpoint_scorer.shutil, "which", lambda name: "/usr/bin/nvidia-smi")  # Keras's path
    keras_results = evaluate(run_dir / "best.h5", lfw_tree, engine="float32", progress=False)
    monkeypatch.undo()
    assert float32.model.engine == "float32 (TFLite, XNNPACK on the CPU)" and int8.model.engine.startswith(
        "int8 (TFLite"
    )
    assert keras_results.model.engine == "float32 (Keras on the GPU)"
    scores = {name: np.array([p.score for p in r.pairs]) for name, r in
              (("keras", keras_results), ("float32", float32), ("int8", int8))}  # fmt: skip
    np.testing.assert_allclose(scores["float32"], scores["keras"], atol=1e-5)
    assert np.abs(scores["int8"] - scores["keras"]).max() < 0.02
    assert int8.model.layers == keras_results.model.layers == float32.model.layers
    for precision in ("int8", "float32"):
        assert (run_dir / f"best.{precision}.tflite").is_file() and (run_dir / f"best.{precision}.json").is_file()
        code = (
            "import sys; from pathlib import Path; from lfwbench.evaluation import evaluate; "
            f"r = evaluate(Path({str(run_dir / 'best.keras')!r}), Path({str(lfw_tree)!r}), engine={precision!r}, "
            "progress=False); print(r.model.engine, 'tensorflow' in sys.modules)"
        )
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert run.stdout.startswith(f"{precision} (TFLite") and run.stdout.split()[-1] == "False", run.stderr[-2000:]


def test_foreign_checkpoint_bundle_goes_to_the_cache_and_a_damaged_one_is_rebuilt(
    lfw_tree: Path, tmp_path: Path
) -> None:
    from lfwbench.engine import bundle_files
    from lfwbench.images import default_cache_dir

    save_model(build_siamese("tiny", seed=6), tmp_path / "foreign.keras")
    first = evaluate(tmp_path / "foreign.keras", lfw_tree, engine="int8", progress=False)
    tflite, facts = bundle_files(default_cache_dir() / f"twin-{first.model.sha256[:24]}")
    assert tflite.is_file() and facts.is_file() and not (tmp_path / "foreign.int8.tflite").exists()
    tflite.write_bytes(b"damaged")
    again = evaluate(tmp_path / "foreign.keras", lfw_tree, engine="int8", progress=False)
    assert [p.score for p in again.pairs] == pytest.approx([p.score for p in first.pairs], abs=1e-6)
    assert tflite.stat().st_size > 1000


def test_auto_scores_in_float32_a_preset_whose_int8_verdicts_were_not_shown_to_agree(
    run_dir: Path, lfw_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace

    from lfwbench import presets

    assert presets.PRESETS["cpu"].int8_agrees is False and presets.PRESETS["koch"].int8_agrees is True
    assert evaluate(run_dir / "best.keras", lfw_tree, progress=False).model.engine.startswith("int8")
    monkeypatch.setitem(presets.PRESETS, "tiny", replace(presets.PRESETS["tiny"], int8_agrees=False))
    assert evaluate(run_dir / "best.keras", lfw_tree, progress=False).model.engine.startswith("float32 (TFLite")


@pytest.mark.realdata
def test_int8_agreement_on_a_trained_cpu_model_decides_what_auto_scores_with(real_lfw: Path) -> None:
    """On a fully trained `cpu` model (LFWBENCH_CPU_MODEL, or fold 1 of `lfwbench crossval --preset cpu`): int8
    and float32 verdicts, each at its validation threshold, agree on >= 99.5% of DevTest pairs, or `auto` scores
    the preset in float32."""
    from lfwbench.presets import get_preset

    checkpoint = Path(os.environ.get("LFWBENCH_CPU_MODEL", "runs/crossval-cpu-seed0/fold01/best.keras"))
    if not checkpoint.is_file():
        pytest.skip(f"no trained cpu model at {checkpoint}")
    scored = {engine: evaluate(checkpoint, real_lfw, engine=engine, progress=False) for engine in ("float32", "int8")}
    verdicts = [
        np.array([p.score for p in results.pairs]) >= results.operating_point.threshold for results in scored.values()
    ]
    agreement = float(np.mean(verdicts[0] == verdicts[1]))
    assert len(verdicts[0]) == 1000
    assert get_preset("cpu").int8_agrees == (agreement >= 0.995), agreement
    auto = evaluate(checkpoint, real_lfw, progress=False)
    assert auto.model.engine.startswith("int8" if agreement >= 0.995 else "float32")
