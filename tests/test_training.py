from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

pytest.importorskip("tensorflow")

from lfwbench import training  # noqa: E402
from lfwbench.checkpoints import every_layer, load_model  # noqa: E402
from lfwbench.cli import main  # noqa: E402
from lfwbench.errors import LfwbenchError  # noqa: E402
from lfwbench.evaluation import evaluate  # noqa: E402
from lfwbench.jobs import grid, search  # noqa: E402
from lfwbench.person_batches import pair_indices, person_batches, with_pair_targets  # noqa: E402
from lfwbench.plan import identity_rows  # noqa: E402
from lfwbench.presets import get_preset  # noqa: E402
from lfwbench.training import TrainConfig, early_stop_wait, train  # noqa: E402

TINY = TrainConfig(preset="tiny", epochs=2, batch_size=4, val_fraction=0.3, seed=1)


@pytest.fixture(scope="module")
def tiny_run(lfw_tree: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("run") / "tiny"
    return train(TINY, lfw_tree, out, verbose=0)


def test_run_folder_has_history_checkpoints_and_config(tiny_run) -> None:
    out = tiny_run.out_dir
    assert {"best.keras", "best.h5", "last.keras", "config.json", "history.csv", "history.json"} <= {
        p.name for p in out.iterdir()
    }
    history = pd.read_csv(out / "history.csv")
    assert history["epoch"].tolist() == [1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"} <= set(history.columns)
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["preset"] == "tiny" and config["input_shape"] == [32, 32, 3]
    assert set(config["lists_md5"]) == {"pairsDevTrain.txt", "pairsDevTest.txt", "peopleDevTrain.txt"}
    assert config["split"]["eval_people_in_training_or_validation"] == 0
    assert config["versions"]["keras"].startswith("3.")
    assert tiny_run.epochs_run == 2 and tiny_run.best_epoch in (1, 2)
    assert isinstance(config["config"]["mixed_precision"], bool)  # "where native" resolved, so a resume keeps it


def test_mixed_precision_trains_in_bfloat16_and_keeps_float32_checkpoints(lfw_tree: Path, tmp_path: Path) -> None:
    if not training.native_mixed_precision():  # this CPU would emulate bfloat16: refused, and nothing written
        with pytest.raises(LfwbenchError, match="--no-mixed-precision"):
            train(replace(TINY, epochs=1, mixed_precision=True), lfw_tree, tmp_path / "run", verbose=0)
        assert not (tmp_path / "run" / "config.json").exists()
        return
    train(replace(TINY, epochs=1, mixed_precision=True), lfw_tree, tmp_path / "run", verbose=0)
    policies = {layer.dtype_policy.name for layer in every_layer(load_model(tmp_path / "run" / "last.keras"))}
    assert "mixed_bfloat16" in policies  # what resumes: the training model as it was
    for name in ("best.keras", "best.h5"):  # what scores: float32 on any machine
        assert {layer.dtype_policy.name for layer in every_layer(load_model(tmp_path / "run" / name))} == {"float32"}


def test_mixed_precision_is_refused_where_it_would_be_emulated(
    lfw_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(training, "native_mixed_precision", lambda: False)
    with pytest.raises(LfwbenchError, match="needs a GPU or a CPU with AVX512-BF16 or AMX"):
        train(replace(TINY, epochs=1, mixed_precision=True), lfw_tree, tmp_path / "run", verbose=0)
    assert not (tmp_path / "run" / "config.json").exists()
    summary = train(replace(TINY, epochs=1), lfw_tree, tmp_path / "run", verbose=0)  # left to the machine: float32
    assert summary.epochs_run == 1
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["mixed_precision"] is False


def test_twin_dropout_drops_features_in_training_only_and_the_run_evaluates(lfw_tree: Path, tmp_path: Path) -> None:
    run = train(replace(TINY, twin_dropout=0.5), lfw_tree, tmp_path / "run", verbose=0)
    twin = load_model(run.out_dir / "best.keras").get_layer("twin")
    features = twin.get_layer("feature_dropout")
    assert features.rate == 0.5
    images = np.random.default_rng(0).uniform(0, 255, (4, *twin.input_shape[1:])).astype(np.float32)
    np.testing.assert_array_equal(twin(images, training=False), twin(images, training=False))
    assert not np.allclose(twin(images, training=True), twin(images, training=False))
    keras_figure, h5_figure = (evaluate(run.out_dir / name, lfw_tree).metrics.auc for name in ("best.keras", "best.h5"))
    assert 0 <= keras_figure <= 1 and h5_figure == pytest.approx(keras_figure)


def test_same_seed_same_history(lfw_tree: Path, tmp_path: Path, tiny_run) -> None:
    again = train(TINY, lfw_tree, tmp_path / "again", verbose=0)
    keys = ("loss", "accuracy", "val_loss", "val_accuracy")
    assert [[row[k] for k in keys] for row in again.history] == [[row[k] for k in keys] for row in tiny_run.history]


def test_best_checkpoint_is_the_lowest_val_loss_or_with_keep_last_the_last_epoch(
    lfw_tree: Path, tmp_path: Path, tiny_run
) -> None:
    losses = [row["val_loss"] for row in tiny_run.history]
    assert tiny_run.best_epoch == 1 + losses.index(min(losses))
    kept = train(replace(TINY, epochs=3, keep="last"), lfw_tree, tmp_path / "last", verbose=0)
    assert kept.best_epoch == 3 and kept.best_val_loss == kept.history[-1]["val_loss"]
    best, last = (load_model(tmp_path / "last" / name) for name in ("best.keras", "last.keras"))
    for kept_weights, last_weights in zip(best.get_weights(), last.get_weights(), strict=True):
        np.testing.assert_array_equal(kept_weights, last_weights)


def test_resume_continues_from_last_epoch(lfw_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(TrainConfig(preset="tiny", epochs=1, batch_size=4, val_fraction=0.3), lfw_tree, out, verbose=0)
    header = (out / "history.csv").read_text().splitlines()[0]
    resumed = train(TrainConfig(epochs=3), lfw_tree, out, mode="resume", verbose=0)
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]
    assert header.startswith("epoch,") and (out / "history.csv").read_text().splitlines()[0] == header
    assert json.loads((out / "history.json").read_text())[-1]["epoch"] == 3
    with pytest.raises(LfwbenchError, match="nothing to resume"):
        train(TrainConfig(epochs=3), lfw_tree, tmp_path / "empty", mode="resume", verbose=0)


def test_refuses_people_of_the_evaluation_list(fresh_tree: Path, tmp_path: Path) -> None:
    train_list = fresh_tree / "pairsDevTrain.txt"
    train_list.write_text(train_list.read_text().replace("Train_Person07", "Test_Person00"))
    with pytest.raises(LfwbenchError, match=r"1 people of pairsDevTest.txt would be trained on \(e.g. Test_Person00\)"):
        train(TINY, fresh_tree, tmp_path / "run", verbose=0)


def test_unrestricted_draws_pairs_from_training_people(lfw_tree: Path, tmp_path: Path) -> None:
    config = TrainConfig(
        preset="tiny", epochs=1, batch_size=8, regime="unrestricted", pairs_per_epoch=40, val_fraction=0.3
    )
    summary = train(config, lfw_tree, tmp_path / "run", verbose=0)
    split = json.loads((tmp_path / "run" / "config.json").read_text())["split"]
    assert split["pairs_per_epoch"] == 40 and 0 < split["pool_people"] < 8
    assert summary.epochs_run == 1


def test_cpu_preset_is_the_quick_twin_on_grayscale_person_batches_with_cosine_decay_kept_to_the_end() -> None:
    cpu, quick = TrainConfig(preset="cpu").resolved(), TrainConfig(preset="quick").resolved()
    assert (cpu.schedule, cpu.epochs, quick.schedule, quick.epochs) == ("cosine", 30, "constant", 20)
    assert (cpu.people_per_batch, cpu.images_per_person, quick.people_per_batch) == (32, 4, 0)
    assert (cpu.channels, quick.channels) == (1, 3) and cpu.patience >= cpu.epochs and quick.patience == 6
    assert (cpu.keep, quick.keep) == ("last", "best")
    same = {"preset": "quick", "schedule": "constant", "epochs": 20, "patience": 6, "channels": 3, "keep": "best"}
    assert replace(cpu, **same, people_per_batch=0) == quick
    assert TrainConfig(preset="cpu", epochs=5, schedule="constant").resolved().schedule == "constant"
    colour = TrainConfig(preset="cpu-colour3").resolved()
    assert colour.channels == 3 and replace(colour, preset="cpu", channels=1) == cpu
    members = get_preset("cpu-colour3")
    assert (members.members, members.head, members.fitted_cosine) == (3, "l1", False)
    more_people = TrainConfig(preset="cpu-colour3-vf10").resolved()
    assert (colour.val_fraction, more_people.val_fraction) == (0.2, 0.1)
    assert replace(more_people, preset="cpu-colour3", val_fraction=0.2) == colour
    assert TrainConfig(preset="cpu-colour3-vf10", val_fraction=0.3).resolved().val_fraction == 0.3


def test_identity_classes_are_people_with_two_or_more_images() -> None:
    rows, labels = identity_rows([np.array([3, 4]), np.array([5]), np.array([6, 7, 8])])
    assert rows.tolist() == [3, 4, 6, 7, 8] and labels.tolist() == [0, 0, 1, 1, 1]
    with pytest.raises(LfwbenchError, match="two or more images"):
        identity_rows([np.array([1]), np.array([2])])


def test_identity_epochs_then_pairs_with_cosine_decay(lfw_tree: Path, tmp_path: Path) -> None:
    config = TrainConfig(
        preset="tiny", epochs=2, batch_size=4, regime="unrestricted", val_fraction=0.3, identity_epochs=3,
        schedule="cosine",
    )  # fmt: skip
    summary = train(config, lfw_tree, tmp_path / "run", verbose=0)
    identity = json.loads((tmp_path / "run" / "identity_history.json").read_text())
    assert [row["epoch"] for row in identity] == [1, 2, 3] and all("accuracy" in row for row in identity)
    split = json.loads((tmp_path / "run" / "config.json").read_text())["split"]
    assert split["identity_classes"] >= 2 and split["identity_images"] <= split["pool_images"]
    rates = [row["learning_rate"] for row in summary.history]
    assert rates[0] < 1e-3 and rates[-1] == pytest.approx(0.0, abs=1e-9)
    checkpoint = load_model(tmp_path / "run" / "best.keras")
    assert "identity" not in [layer.name for layer in checkpoint.get_layer("twin").layers]


def test_person_batches_hold_distinct_people_with_their_own_images() -> None:
    rows, labels = identity_rows([np.array([10, 11, 12, 13, 14]), np.array([20, 21]), np.array([30, 31, 32])])
    picked, persons = person_batches(rows, labels, 2, 3, 50, np.random.default_rng(0))
    assert picked.shape == persons.shape == (300,)
    assert np.array_equal(picked // 10 - 1, persons)  # every row belongs to its labelled person
    for batch in persons.reshape(50, 2, 3):
        assert len({*batch[:, 0]}) == 2 and (batch == batch[:, :1]).all()
    assert len(np.unique(picked[persons == 0])) == 5  # all of a person's images get drawn
    with pytest.raises(LfwbenchError, match="4 people per batch, but only 3"):
        person_batches(rows, labels, 4, 2, 1, np.random.default_rng(0))


def test_pair_targets_flag_same_person_pairs_and_balance_them() -> None:
    import tensorflow as tf

    persons = np.array([0, 0, 1, 1, 2, 2], dtype=np.int32)
    dataset = with_pair_targets(tf.data.Dataset.from_tensors((np.zeros((6, 2), np.float32), persons)), 6)
    _, same, weights = next(iter(dataset))
    left, right = pair_indices(6)
    assert same.numpy().tolist() == (persons[left] == persons[right]).astype(float).tolist() and len(left) == 15
    assert np.isclose(weights.numpy()[same.numpy() == 1].sum(), weights.numpy()[same.numpy() == 0].sum())
    assert np.isclose(weights.numpy().sum(), 15)


def test_person_batches_train_the_siamese_checkpoint_and_resume(lfw_tree: Path, tmp_path: Path) -> None:
    config = TrainConfig(
        preset="tiny", epochs=2, batch_size=4, regime="unrestricted", pairs_per_epoch=16, val_fraction=0.3,
        people_per_batch=2, images_per_person=2, schedule="cosine",
    )  # fmt: skip
    summary = train(config, lfw_tree, tmp_path / "run", verbose=0)
    assert [row["epoch"] for row in summary.history] == [1, 2]
    assert all({"loss", "accuracy", "val_loss", "val_accuracy"} <= set(row) for row in summary.history)
    model = load_model(tmp_path / "run" / "best.keras")
    assert model.predict([np.zeros((1, 32, 32, 3))] * 2, verbose=0).shape == (1, 1)
    resumed = train(TrainConfig(epochs=3), lfw_tree, tmp_path / "run", mode="resume", verbose=0)
    rates = [row["learning_rate"] for row in resumed.history]
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]
    assert rates[0] > 0 and rates[2] == 0.0  # the optimizer's step count carried over: the decay stays finished


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"identity_epochs": 2}, "unrestricted regime"),
        ({"people_per_batch": 2}, "unrestricted regime"),
        ({"people_per_batch": 2, "regime": "unrestricted", "strategy": "mirrored"}, "one device"),
        ({"schedule": "cosine", "reduce_lr": True}, "one learning-rate"),
        ({"keep": "first"}, "keep must be one of best, last, not 'first'"),
        ({"zoom": 0.1}, "zoom is an augmentation"),
        ({"zoom": 1.0, "augment": True}, "zoom 1.0 is not a number from 0 up to 1"),
    ],
)
def test_rejects_conflicting_options(lfw_tree: Path, tmp_path: Path, changes: dict, message: str) -> None:
    with pytest.raises(LfwbenchError, match=message):
        train(TrainConfig(preset="tiny", **changes), lfw_tree, tmp_path / "run", verbose=0)


def test_early_stopping_counts_like_keras() -> None:
    assert early_stop_wait([0.7, 0.695, 0.692], 0.01) == 2
    assert early_stop_wait([0.7, 0.695, 0.68], 0.01) == 0
    assert early_stop_wait([0.7, 0.6, 0.595, 0.59], 0.01) == 2
    assert early_stop_wait([0.7, 0.6], 0.01) == 0


def test_search_resumes_without_retraining(lfw_tree: Path, tmp_path: Path) -> None:
    combos = grid(lr=[1e-3, 1e-2], epochs=[1])
    messages: list[str] = []
    rows = search(TINY, lfw_tree, tmp_path, combos, report=messages.append)
    assert len(rows) == 2 and len(messages) == 2
    accuracies = [row["best_val_accuracy"] for row in rows]
    assert accuracies == sorted(accuracies, reverse=True)
    stamp = (tmp_path / rows[0]["run"] / "best.keras").stat().st_mtime_ns
    again = search(TINY, lfw_tree, tmp_path, combos)
    assert (tmp_path / again[0]["run"] / "best.keras").stat().st_mtime_ns == stamp  # read back, not retrained
    assert again == rows
    assert pd.read_csv(tmp_path / "results.csv")["run"].tolist() == [row["run"] for row in rows]


def test_train_command(lfw_tree: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["train", "--data", str(lfw_tree), "--preset", "tiny", "--epochs", "2", "--batch-size", "4",
         "--val-fraction", "0.3", "--keep", "last", "--out", str(tmp_path / "run")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "best.* hold epoch 2/2" in result.output
    assert result.output.count("min more at this pace, done by") == 1  # after the first epoch only
    model = load_model(tmp_path / "run" / "best.h5")
    assert model.predict([np.zeros((1, 32, 32, 3)), np.zeros((1, 32, 32, 3))], verbose=0).shape == (1, 1)


def test_run_command_trains_evaluates_with_flip_and_reports(lfw_tree: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    result = CliRunner().invoke(
        main,
        ["run", "--data", str(lfw_tree), "--preset", "tiny", "--epochs", "1", "--batch-size", "4",
         "--val-fraction", "0.3", "--runs", str(tmp_path / "runs"), "--flip", "--out", str(report)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "test-time flip averaging" in result.output and (tmp_path / "runs" / "tiny-seed0" / "best.h5").is_file()
    assert json.loads(report.with_suffix(".json").read_text())["settings"]["flip_tta"] is True
    assert "<html" in report.read_text()[:200].lower()


MIRRORED = """
import sys, numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from pathlib import Path
from lfwbench.training import TrainConfig, train, make_strategy
from lfwbench.model import build_siamese
from lfwbench.inference import score_pairs
strategy = make_strategy("mirrored")
assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
summary = train(TrainConfig(preset="tiny", epochs=1, batch_size=4, val_fraction=0.3, strategy="mirrored",
                            deterministic=False), Path(sys.argv[1]), Path(sys.argv[2]), verbose=0)
with strategy.scope():
    model = build_siamese("tiny", seed=3)
images = np.random.default_rng(0).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
left, right = np.arange(10) % 10, (np.arange(10) + 3) % 10
full = model.predict([images[left], images[right]], verbose=0).ravel()
assert np.allclose(score_pairs(model, images, left, right, batch_size=4, verbose=0), full, atol=1e-5)
print("replicas", strategy.num_replicas_in_sync, "epochs", summary.epochs_run)
"""


def test_mirrored_strategy_on_two_logical_cpus(lfw_tree: Path, tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-c", MIRRORED, str(lfw_tree), str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "replicas 2 epochs 1" in run.stdout


def test_person_batch_and_keep_options_reach_the_config(lfw_tree: Path, tmp_path: Path) -> None:
    args = ["train", "--data", str(lfw_tree), "--preset", "tiny", "--people-per-batch", "2",
            "--images-per-person", "3", "--keep", "last", "--epochs", "1", "--pairs-per-epoch", "12",
            "--val-fraction", "0.3", "--out", str(tmp_path / "run")]  # fmt: skip
    result = CliRunner().invoke(main, [*args, "--regime", "restricted"])
    assert result.exit_code == 1 and "Error: identity epochs and person batches need the unrestricted" in result.output
    result = CliRunner().invoke(main, [*args, "--regime", "unrestricted"])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert (config["people_per_batch"], config["images_per_person"], config["keep"]) == (2, 3, "last")


def test_training_one_member_of_an_ensemble_preset_says_how_to_make_the_rest(
    lfw_tree: Path, tmp_path: Path, monkeypatch
) -> None:
    from lfwbench import presets

    monkeypatch.setitem(presets.PRESETS, "tiny", replace(presets.TINY, members=3))
    args = ["train", "--data", lfw_tree, "--preset", "tiny", "--epochs", "1", "--batch-size", "4", "--seed", "5",
            "--split-seed", "0", "--val-fraction", "0.3", "--out", tmp_path / "run"]  # fmt: skip
    result = CliRunner().invoke(main, [str(arg) for arg in args])
    assert result.exit_code == 0, result.output
    assert "tiny merges 3 seeds; this run is one. Train --seed 6 ... 7 with --split-seed 0" in result.output
