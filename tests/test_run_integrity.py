"""Run folders that can be trusted, with real (tiny) training: kills at every write, refusals, stamped checkpoints,
bundles that must belong to their checkpoint. Rows of docs/reliability.md."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("tensorflow")

from lfwbench import runs  # noqa: E402
from lfwbench.checkpoints import Stamp, read_stamp  # noqa: E402
from lfwbench.cli import main  # noqa: E402
from lfwbench.config import TrainConfig  # noqa: E402
from lfwbench.errors import LfwbenchError, RunFolderError  # noqa: E402
from lfwbench.evaluation import evaluate  # noqa: E402
from lfwbench.images import ImageSpec  # noqa: E402
from lfwbench.training import train  # noqa: E402

TINY = TrainConfig(preset="tiny", epochs=2, batch_size=4, val_fraction=0.3, seed=1)
KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")

# Trains TINY, with augmentation and dropout, into argv[2], counting the renames that make a file visible in the
# run folder, and SIGKILLs itself just before rename number argv[3] (0: never): every write goes through os.replace.
KILLED_AT_WRITE = """
import os, signal, sys
from pathlib import Path
folder, target = Path(sys.argv[2]).resolve(), int(sys.argv[3])
real_replace, count = os.replace, 0
def replace(source, destination, *args, **kwargs):
    global count
    if Path(destination).resolve().parent == folder:
        count += 1
        if count == target:
            os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(source, destination, *args, **kwargs)
os.replace = replace
from lfwbench.config import TrainConfig
from lfwbench.training import train
train(TrainConfig(preset="tiny", epochs=2, batch_size=4, val_fraction=0.3, seed=1, augment=True), Path(sys.argv[1]),
      folder, verbose=0)
print("writes", count)
"""


def killed_at(tree: Path, folder: Path, write: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", KILLED_AT_WRITE, str(tree), str(folder), str(write)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip


def rows(history: list[dict]) -> list[list[float]]:
    return [[row["epoch"], *(row[key] for key in KEYS)] for row in history]


@pytest.mark.slow
def test_a_kill_at_every_write_resumes_to_the_same_history_or_is_refused_in_one_line(
    lfw_tree: Path, tmp_path: Path
) -> None:
    reference = killed_at(lfw_tree, tmp_path / "reference", 0)
    assert reference.returncode == 0, reference.stderr[-3000:]
    writes = int(reference.stdout.split()[-1])
    expected = rows(json.loads((tmp_path / "reference" / runs.HISTORY_JSON).read_text()))
    assert writes >= 2 * 6 + 1  # per epoch five staged files, a manifest, then the renames into place
    with ThreadPoolExecutor(2) as pool:
        killed = list(pool.map(lambda k: killed_at(lfw_tree, tmp_path / f"killed{k}", k), range(1, writes + 1)))
    outcomes = []
    for write, process in enumerate(killed, start=1):
        assert process.returncode == -9, (write, process.stderr[-2000:])
        folder = tmp_path / f"killed{write}"
        committed = runs.RunFolder(folder).manifest()
        before = rows(committed.history) if committed else []
        assert before == expected[: len(before)]  # what a kill left committed is what the whole run wrote
        try:
            resumed = train(TrainConfig(), lfw_tree, folder, mode="resume", verbose=0)
        except RunFolderError as error:
            assert "nothing to resume" in str(error) and "\n" not in str(error)
            outcomes.append("refused")
            continue
        assert rows(resumed.history) == expected, write  # never an epoch trained twice, never one lost
        assert not [name for name in os.listdir(folder) if name.startswith((".staged-", ".lfwbench-tmp-"))]
        outcomes.append("resumed")
    assert outcomes.count("refused") == 1 and outcomes[0] == "refused"  # only before config.json is written


@pytest.fixture(scope="module")
def cropped_run(lfw_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cropped") / "run"
    train(replace(TINY, epochs=1, crop=128), lfw_tree, out, verbose=0)
    return out


def test_train_refuses_a_finished_run_then_resumes_or_overwrites_it(cropped_run: Path, lfw_tree: Path) -> None:
    args = ["train", "--data", lfw_tree, "--preset", "tiny", "--epochs", "1", "--batch-size", "4",
            "--val-fraction", "0.3", "--seed", "5", "--out", cropped_run]  # fmt: skip
    before = (cropped_run / runs.CONFIG).read_bytes()
    result = CliRunner().invoke(main, [str(arg) for arg in args])
    assert result.exit_code == 1 and "not empty" in result.output and "--resume" in result.output, result.output
    assert (cropped_run / runs.CONFIG).read_bytes() == before  # nothing rewritten before refusing
    result = CliRunner().invoke(main, [str(arg) for arg in [*args, "--resume", "--overwrite"]])
    assert result.exit_code == 2 and "not both" in result.output
    result = CliRunner().invoke(main, [str(arg) for arg in [*args, "--resume"]])
    assert result.exit_code == 0 and "best.* hold epoch 1/1" in result.output, result.output
    assert (cropped_run / runs.CONFIG).read_bytes() == before  # resume keeps the run's own options (seed 1)


def test_a_checkpoint_carries_its_crop_and_scores_with_it_out_of_its_folder(
    cropped_run: Path, lfw_tree: Path, tmp_path: Path
) -> None:
    stamps = [read_stamp(cropped_run / name) for name in (runs.BEST_KERAS, runs.BEST_H5)]
    assert stamps[0] == stamps[1] == Stamp(ImageSpec(32, 3, 128), "tiny")
    moved = tmp_path / "moved.keras"
    shutil.copyfile(cropped_run / runs.BEST_KERAS, moved)
    at_home, away = evaluate(cropped_run / runs.BEST_KERAS, lfw_tree), evaluate(moved, lfw_tree)
    assert "centre crop 128" in at_home.model.preprocessing and at_home.model.preprocessing == away.model.preprocessing
    assert [p.score for p in away.pairs] == pytest.approx([p.score for p in at_home.pairs], abs=1e-6)


def test_another_runs_checkpoint_or_bundle_in_the_folder_is_not_trusted(
    cropped_run: Path, lfw_tree: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    train(replace(TINY, epochs=1, seed=9), lfw_tree, other, verbose=0)
    folder = tmp_path / "mixed"
    shutil.copytree(cropped_run, folder)
    shutil.copyfile(other / "best.int8.tflite", folder / "best.int8.tflite")  # the other run's int8 twin
    own = evaluate(cropped_run / runs.BEST_KERAS, lfw_tree)
    mixed = evaluate(folder / runs.BEST_KERAS, lfw_tree)
    assert any("best.int8.tflite: not a bundle the run beside it committed" in w for w in mixed.metrics.warnings)
    assert [p.score for p in mixed.pairs] == pytest.approx([p.score for p in own.pairs], abs=1e-6)
    shutil.copyfile(other / runs.BEST_KERAS, folder / runs.BEST_KERAS)  # the other run's checkpoint, this config
    foreign = evaluate(folder / runs.BEST_KERAS, lfw_tree)
    assert foreign.training == {} and foreign.leakage["checked"] is False
    assert "the whole image" in foreign.model.preprocessing
    assert any("is not a checkpoint the run in" in w for w in foreign.metrics.warnings)


def test_a_bundle_beside_its_checkpoint_cannot_vouch_for_itself(cropped_run: Path, lfw_tree: Path, tmp_path: Path):
    folder = tmp_path / "run"
    shutil.copytree(cropped_run, folder)
    facts = json.loads((folder / "best.int8.json").read_text())
    facts["head_bias"] += 5.0  # both sha256 fields intact: only the manifest can tell
    (folder / "best.int8.json").write_text(json.dumps(facts))
    own, tampered = evaluate(cropped_run / runs.BEST_KERAS, lfw_tree), evaluate(folder / runs.BEST_KERAS, lfw_tree)
    assert any("best.int8.tflite: not a bundle the run beside it committed" in w for w in tampered.metrics.warnings)
    assert [p.score for p in tampered.pairs] == pytest.approx([p.score for p in own.pairs], abs=1e-6)
    assert runs.RunFolder(cropped_run).manifest().files["best.int8.json"]  # training committed the bundle


def test_a_damaged_cached_bundle_is_rebuilt(cropped_run: Path, lfw_tree: Path, tmp_path: Path) -> None:
    moved = tmp_path / "alone.keras"  # no bundle beside it: converted once, into the cache
    shutil.copyfile(cropped_run / runs.BEST_KERAS, moved)
    first = evaluate(moved, lfw_tree)
    (cached,) = Path(os.environ["LFWBENCH_CACHE"]).glob(f"twin-{first.model.sha256[:24]}.int8.tflite")
    cached.write_bytes(cached.read_bytes()[:-100] + b"\0" * 100)
    again = evaluate(moved, lfw_tree)
    assert any("not the TFLite file" in w for w in again.metrics.warnings)
    assert [p.score for p in again.pairs] == pytest.approx([p.score for p in first.pairs], abs=1e-6)
    assert evaluate(moved, lfw_tree).metrics.warnings == first.metrics.warnings  # repaired for good


@pytest.mark.parametrize(
    "field, value",
    [("head_kernel", "not numbers"), ("head_kernel", [0.5] * 5_000_000), ("head_bias", float("nan")),
     ("input_shape", [10**9, 2, 3]), ("model", []), ("model", {"preset": 3}), ("head", "l2"), ("head_kernel", [1.0]),
     ("checkpoint_sha256", "abc"), ("surprise", 1)],
)  # fmt: skip
def test_a_bundle_with_unfit_facts_is_passed_over_and_rebuilt(
    cropped_run: Path, lfw_tree: Path, tmp_path: Path, field: str, value
) -> None:
    moved = tmp_path / "alone.keras"
    shutil.copyfile(cropped_run / runs.BEST_KERAS, moved)
    first = evaluate(moved, lfw_tree)
    (facts_path,) = Path(os.environ["LFWBENCH_CACHE"]).glob(f"twin-{first.model.sha256[:24]}.int8.json")
    facts = json.loads(facts_path.read_text())
    facts[field] = value  # both sha256 fields left intact
    facts_path.write_text(json.dumps(facts))
    again = evaluate(moved, lfw_tree)
    assert any(field in w and "converted again" in w and len(w) < 500 for w in again.metrics.warnings), again.metrics
    assert [p.score for p in again.pairs] == pytest.approx([p.score for p in first.pairs], abs=1e-6)


def test_ensemble_refuses_a_non_empty_out_and_commits_its_config_with_its_checkpoints(
    cropped_run: Path, lfw_tree: Path, tmp_path: Path
) -> None:
    second = tmp_path / "second"
    train(replace(TINY, epochs=1, crop=128, seed=2, split_seed=1), lfw_tree, second, verbose=0)
    out = tmp_path / "ensemble"
    out.mkdir()
    (out / runs.CONFIG).write_text("{}")
    members = ["--model", cropped_run / runs.BEST_KERAS, "--model", second / runs.BEST_KERAS]
    result = CliRunner().invoke(main, [str(arg) for arg in ["ensemble", *members, "--out", out]])
    assert result.exit_code == 1 and "not empty" in result.output and (out / runs.CONFIG).read_text() == "{}"
    result = CliRunner().invoke(main, [str(arg) for arg in ["ensemble", *members, "--out", out, "--overwrite"]])
    assert result.exit_code == 0, result.output
    manifest = runs.RunFolder(out).manifest()
    assert {runs.CONFIG, runs.BEST_KERAS, runs.BEST_H5} <= set(manifest.files)
    assert [m["seed"] for m in json.loads((out / runs.CONFIG).read_text())["ensemble"]] == [1, 2]
    assert "centre crop 128" in evaluate(out / runs.BEST_KERAS, lfw_tree).model.preprocessing


def test_skip_missing_that_leaves_one_class_is_one_line(cropped_run: Path, fresh_tree: Path) -> None:
    for name in ("Test_Person00_0003", "Test_Person01_0003", "Test_Person03_0004", "Test_Person03_0002"):
        (fresh_tree / "lfw-deepfunneled" / name[:-5] / f"{name}.jpg").unlink()  # every different-person pair
    with pytest.raises(LfwbenchError, match="only same-person pairs are left to score"):
        evaluate(cropped_run / runs.BEST_KERAS, fresh_tree, skip_missing=True)


@pytest.mark.parametrize("batches", ["pairs", "people"])
def test_a_resumed_run_draws_the_same_dropout_and_augmentation_as_an_uninterrupted_one(
    lfw_tree: Path, tmp_path: Path, batches: str
) -> None:
    config = replace(TINY, epochs=3, augment=True, zoom=0.1, dropout=0.5, twin_dropout=0.3)
    if batches == "people":
        config = replace(config, regime="unrestricted", pairs_per_epoch=16, people_per_batch=2, images_per_person=2)
    whole = train(config, lfw_tree, tmp_path / "whole", verbose=0)
    train(replace(config, epochs=1), lfw_tree, tmp_path / "parts", verbose=0)
    train(TrainConfig(epochs=2), lfw_tree, tmp_path / "parts", mode="resume", verbose=0)
    parts = train(TrainConfig(epochs=3), lfw_tree, tmp_path / "parts", mode="resume", verbose=0)
    assert rows(parts.history) == rows(whole.history)


def test_training_logs_no_legacy_hdf5_warning_per_epoch(lfw_tree: Path, tmp_path: Path, capfd) -> None:
    train(replace(TINY, epochs=2), lfw_tree, tmp_path / "run", verbose=0, progress=print)
    captured = capfd.readouterr()
    assert "HDF5" not in captured.err and "legacy" not in captured.err
    assert captured.out.count("run: epoch ") == 2  # one progress line per committed epoch


def test_verdicts_gallery_and_confusion_follow_the_validation_threshold(cropped_run: Path, lfw_tree: Path) -> None:
    results = evaluate(cropped_run / runs.BEST_KERAS, lfw_tree)
    threshold = results.metrics.at_threshold.threshold
    assert [p.predicted for p in results.pairs] == [int(p.score >= threshold) for p in results.pairs]
    assert sum(p.correct for p in results.pairs) == round(results.operating_point.accuracy * len(results.pairs))
    (tn, fp), (fn, tp) = results.operating_point.confusion
    assert tp + tn == sum(p.correct for p in results.pairs)
    environment = results.environment
    assert environment.cores >= 1 and environment.vector_instructions and environment.tensorflow_version


def test_view2_refuses_a_view1_list_and_out_dash_prints_only_json(cropped_run: Path, lfw_tree: Path) -> None:
    args = ["evaluate", "--model", str(cropped_run / runs.BEST_KERAS), "--data", str(lfw_tree)]
    result = CliRunner().invoke(main, [*args, "--view2", str(lfw_tree / "pairsDevTest.txt")])
    assert result.exit_code == 1 and "pairsDevTest.txt: not a View 2 list" in result.output, result.output
    result = CliRunner().invoke(main, [*args, "--out", "-"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["data"]["pair_list_name"] == "pairsDevTest.txt"
    assert "accuracy" in result.stderr and not Path("-").exists()


def test_train_prints_results_on_stdout_and_epochs_on_stderr(lfw_tree: Path, tmp_path: Path) -> None:
    args = ["train", "--data", lfw_tree, "--preset", "tiny", "--epochs", "2", "--batch-size", "4",
            "--val-fraction", "0.3", "--out", tmp_path / "run"]  # fmt: skip
    result = CliRunner().invoke(main, [str(arg) for arg in args])
    assert result.exit_code == 0, result.output
    assert result.stderr.count("run: epoch ") == 2 and "━" not in result.stdout and "run: epoch" not in result.stdout
    assert result.stdout.startswith("best.* hold epoch")


def test_far_sets_the_operating_point_on_the_validation_pairs(cropped_run: Path, lfw_tree: Path) -> None:
    at_far = evaluate(cropped_run / runs.BEST_KERAS, lfw_tree, far=0.25)
    assert at_far.metrics.threshold_source.far == 0.25 and "for FAR 25%" in at_far.operating_label
    args = ["evaluate", "--model", str(cropped_run / runs.BEST_KERAS), "--data", str(lfw_tree), "--far", "0.25"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0 and "at the threshold for FAR 25%" in result.stdout, result.output
    assert CliRunner().invoke(main, [*args[:-1], "1.5"]).exit_code == 2


def test_stdout_holds_results_and_stderr_no_native_tensorflow_logs_unless_verbose(
    lfw_tree: Path, tmp_path: Path
) -> None:
    def lfwbench(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lfwbench", *args], capture_output=True, text=True, timeout=300)

    train_args = ["train", "--data", str(lfw_tree), "--preset", "tiny", "--epochs", "1", "--batch-size", "4",
                  "--val-fraction", "0.3", "--out", str(tmp_path / "run")]  # fmt: skip
    quiet = lfwbench(*train_args)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert quiet.stdout.startswith("best.* hold epoch 1/1") and "run: epoch 1/1" in quiet.stderr
    assert "I0000" not in quiet.stderr and "absl::InitializeLog" not in quiet.stderr, quiet.stderr
    verbose = lfwbench("-v", *train_args[:-1], str(tmp_path / "again"))
    assert verbose.returncode == 0 and "oneDNN" in verbose.stderr  # TensorFlow's start-up line, shown on request
    silent = lfwbench("-q", "evaluate", "--model", str(tmp_path / "run" / "best.keras"), "--data", str(lfw_tree))
    assert silent.returncode == 0, silent.stderr
    assert silent.stdout.startswith("run/best (lfwbench checkpoint, probability) on pairsDevTest.txt")
    assert "Embedding" not in silent.stderr and "XNNPACK delegate" not in silent.stderr, silent.stderr


def test_fold_scores_one_view2_fold(cropped_run: Path, lfw_tree: Path) -> None:
    args = ["evaluate", "--model", str(cropped_run / runs.BEST_KERAS), "--data", str(lfw_tree),
            "--view2", str(lfw_tree / "pairs.txt"), "--fold", "2"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0 and "on pairs.txt fold 2 (6 pairs" in result.stdout, result.output
    result = CliRunner().invoke(main, [*args[:-1], "3"])
    assert result.exit_code == 1 and "pairs.txt: no fold 3 (it has 2)" in result.output
