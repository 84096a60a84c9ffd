"""View 2 cross-validation: fold planning (real and synthetic lists), the crossval command, resume, Ray."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from lfwbench.config import TrainConfig
from lfwbench.errors import LfwbenchError
from lfwbench.jobs import fold_config
from lfwbench.pairs import load_people, people_of
from lfwbench.plan import plan_lists

TINY = TrainConfig(preset="tiny", epochs=1, batch_size=2, val_fraction=0.3, seed=1)


@pytest.mark.realdata
def test_every_real_fold_trains_on_5400_pairs_and_holds_out_600_people_disjoint(real_lfw: Path) -> None:
    people = load_people(real_lfw / "people.txt")
    for fold in range(1, 11):
        config = fold_config(TrainConfig(preset="cpu"), fold).resolved()
        lists = plan_lists(real_lfw, config)
        assert len(lists.train) + len(lists.val) == 5400
        assert lists.seen_people.isdisjoint(lists.eval_people)
        assert {name for name, _ in people[fold - 1]} <= lists.eval_people
        assert people_of(lists.train).isdisjoint(people_of(lists.val))


def test_a_pairs_txt_that_breaks_the_view2_split_is_refused(fresh_tree: Path) -> None:
    pairs = fresh_tree / "pairs.txt"
    pairs.write_text(pairs.read_text().replace("Train_Person00", "Train_Person07", 1))  # fold 2's person in fold 1
    with pytest.raises(LfwbenchError, match="fold 1 names 1 people outside fold 1 of people.txt"):
        plan_lists(fresh_tree, fold_config(TINY, 1).resolved())
    with pytest.raises(LfwbenchError, match="has 2 folds"):
        plan_lists(fresh_tree, fold_config(TINY, 3).resolved())


def crossval_command(tree: Path, runs: Path, *extra: str):
    args = ["crossval", "--data", tree, "--preset", "tiny", "--epochs", "1", "--batch-size", "2",
            "--val-fraction", "0.3", "--seed", "1", "--runs", runs, *extra]  # fmt: skip
    return CliRunner().invoke(main_command(), [str(arg) for arg in args])


def main_command():
    from lfwbench.cli import main

    return main


def test_crossval_scores_each_fold_with_a_model_that_never_saw_its_people(lfw_tree: Path, tmp_path: Path) -> None:
    result = crossval_command(lfw_tree, tmp_path / "cv", "--folds", "1")
    assert result.exit_code == 0, result.output
    stamp = (tmp_path / "cv" / "fold01" / "best.keras").stat().st_mtime_ns
    result = crossval_command(lfw_tree, tmp_path / "cv", "--folds", "1-2")  # fold 1 read back, fold 2 trained
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cv" / "fold01" / "best.keras").stat().st_mtime_ns == stamp
    stored = json.loads((tmp_path / "cv" / "crossval.json").read_text())
    assert [row["fold"] for row in stored["folds"]] == [1, 2] and all(row["pairs"] == 6 for row in stored["folds"])
    assert all(row["people_in_training"] == 0 for row in stored["folds"])
    config = json.loads((tmp_path / "cv" / "fold02" / "config.json").read_text())
    assert config["split"]["eval_people_in_training_or_validation"] == 0 and config["config"]["fold"] == 2
    assert len(stored["averaged_roc"]["fpr"]) == len(stored["averaged_roc"]["tpr"]) > 2
    mean = sum(row["accuracy"] for row in stored["folds"]) / 2
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"View 2, restricted, no outside data: {mean:.4f} ± ") and "(û ± SE over 2 folds)" in last
    assert (tmp_path / "cv" / "crossval.csv").read_text().startswith("fold,pairs,accuracy,threshold")


def test_crossval_with_other_options_in_the_same_folder_is_refused(lfw_tree: Path, tmp_path: Path) -> None:
    assert crossval_command(lfw_tree, tmp_path / "cv", "--folds", "1").exit_code == 0
    result = crossval_command(lfw_tree, tmp_path / "cv", "--folds", "1", "--dropout", "0.5")
    assert result.exit_code == 1 and "holds a run with other options" in result.output, result.output
    (tmp_path / "cv" / "fold01" / "summary.json").unlink()  # as if interrupted after training
    result = crossval_command(lfw_tree, tmp_path / "cv", "--folds", "1", "--dropout", "0.5")
    assert result.exit_code == 1 and "holds a run with other options" in result.output, result.output


def test_crossval_on_a_local_ray_cluster_equals_the_sequential_run(lfw_tree: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray has no wheel for this interpreter")
    from lfwbench.jobs import Runner, crossval

    sequential = crossval(TINY, lfw_tree, tmp_path / "here", [1, 2])
    on_ray = crossval(TINY, lfw_tree, tmp_path / "ray", [1, 2], Runner(ray="", cpus=1))
    keys = ("fold", "pairs", "accuracy", "threshold", "tpr", "tnr", "auc", "people_in_training")
    assert [[getattr(row, k) for k in keys] for row in on_ray.folds] == [
        [getattr(row, k) for k in keys] for row in sequential.folds
    ]
    assert on_ray.summary == sequential.summary


def test_a_task_whose_folder_the_driver_cannot_see_fails_clearly(lfw_tree: Path, tmp_path: Path, monkeypatch) -> None:
    from lfwbench import jobs

    def elsewhere(job: jobs.Job) -> jobs.JobResult:  # a task that wrote on its own machine's disk
        return jobs.JobResult(tmp_path / "on-another-machine" / job.folder.name, {})

    monkeypatch.setattr(jobs, "run_job", elsewhere)
    runner = jobs.Runner(ray=None)
    monkeypatch.setattr(runner, "ray", "")
    pytest.importorskip("ray", reason="Ray has no wheel for this interpreter")
    with pytest.raises(LfwbenchError, match="not visible here; on a cluster the runs folder must be a filesystem"):
        runner.run([jobs.Job(replace(TINY, fold=1), lfw_tree, tmp_path / "fold01")], lambda message: None)
    assert os.environ.get("RAY_ADDRESS") is None


def test_report_of_a_crossval_has_its_per_fold_table(lfw_tree: Path, tmp_path: Path) -> None:
    assert crossval_command(lfw_tree, tmp_path / "cv", "--folds", "1-2").exit_code == 0
    page = tmp_path / "cv.html"
    args = ["report", "--crossval", tmp_path / "cv", "--out", page, "--plotlyjs", "cdn"]
    result = CliRunner().invoke(main_command(), [str(arg) for arg in args])
    assert result.exit_code == 0, result.output
    html = page.read_text()
    assert html.count("<tr><td>") == 2 and "View 2, restricted, no outside data" in html and "fig-crossval-roc" in html
    assert "Unfinished" not in html  # the synthetic pairs.txt has two folds, both run
    args = ["report", "--crossval", tmp_path / "cv", "--out", tmp_path / "cv" / "crossval.json"]
    result = CliRunner().invoke(main_command(), [str(arg) for arg in args])
    assert result.exit_code == 1 and "is also an input" in result.output


def test_report_of_an_unfinished_crossval_says_how_far_it_got_and_how_to_summarise_it(
    lfw_tree: Path, tmp_path: Path
) -> None:
    assert crossval_command(lfw_tree, tmp_path / "cv", "--folds", "1-2").exit_code == 0
    (tmp_path / "cv" / "crossval.json").unlink()  # as while the crossval is still running
    trained = (tmp_path / "cv" / "fold02" / "history.json").stat().st_mtime_ns
    args = ["report", "--crossval", tmp_path / "cv", "--out", tmp_path / "cv.html"]
    result = CliRunner().invoke(main_command(), [str(arg) for arg in args])
    assert result.exit_code == 1 and "an unfinished crossval (scored so far: folds 1,2)" in result.output, result.output
    assert not (tmp_path / "cv.html").exists()
    assert crossval_command(lfw_tree, tmp_path / "cv", "--folds", "1,2").exit_code == 0  # the command it suggests
    assert (tmp_path / "cv" / "crossval.json").is_file()
    assert (tmp_path / "cv" / "fold02" / "history.json").stat().st_mtime_ns == trained  # read back, not retrained
    args = ["report", "--crossval", tmp_path / "cv" / "fold01", "--out", tmp_path / "none.html"]  # a fold's run
    result = CliRunner().invoke(main_command(), [str(arg) for arg in args])
    assert result.exit_code == 1 and "no crossval.json and no scored fold" in result.output, result.output


def test_search_on_a_local_ray_cluster_equals_the_sequential_search(lfw_tree: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray has no wheel for this interpreter")
    from lfwbench.jobs import Runner, grid, search

    combinations = grid(lr=[1e-3, 1e-2])
    here = search(TINY, lfw_tree, tmp_path / "here", combinations)
    on_ray = search(TINY, lfw_tree, tmp_path / "ray", combinations, Runner(ray=""))
    keys = ("run", "best_val_loss", "best_val_accuracy", "epochs_run")
    assert [[row[k] for k in keys] for row in on_ray] == [[row[k] for k in keys] for row in here]


@pytest.mark.parametrize("fitted_cosine", [True, False], ids=["cosine heads", "l1 heads"])
def test_an_ensemble_preset_trains_its_members_per_fold_merges_them_and_scores_each_fold_once(
    lfw_tree: Path, tmp_path: Path, monkeypatch, fitted_cosine: bool
) -> None:
    from lfwbench import presets
    from lfwbench.checkpoints import load_model
    from lfwbench.jobs import crossval, training_minutes
    from lfwbench.results import read_results

    monkeypatch.setitem(presets.PRESETS, "tiny", replace(presets.TINY, fitted_cosine=fitted_cosine, members=2))
    result = crossval(TINY, lfw_tree, tmp_path / "cv", [1])
    members = [tmp_path / "cv" / f"fold01-seed{seed}" for seed in (1, 2)]
    assert not any((member / "results.json").exists() for member in members)  # only the merged model scores the fold
    configs = [json.loads((member / "config.json").read_text())["config"] for member in members]
    assert [c["seed"] for c in configs] == [1, 2] and {c["split_seed"] for c in configs} == {1}
    head = "cosine" if fitted_cosine else "l1_distance"  # a cosine head fitted on its validation pairs, or as trained
    for member in members:
        assert head in [layer.name for layer in load_model(member / "best.keras").get_layer("head").layers]
    assert head in [
        layer.name for layer in load_model(tmp_path / "cv" / "fold01" / "best.keras").get_layer("head").layers
    ]
    fold = read_results(tmp_path / "cv" / "fold01" / "results.json")
    assert fold.model.path.endswith("fold01/best.keras") and fold.data.fold == 1
    ensemble = json.loads((tmp_path / "cv" / "fold01" / "config.json").read_text())["ensemble"]
    assert [m["seed"] for m in ensemble] == [1, 2]
    assert result.folds[0].minutes == pytest.approx(sum(training_minutes(member) for member in members))
    assert result.folds[0].minutes > 0
    scored = (tmp_path / "cv" / "fold01" / "results.json").stat().st_mtime_ns
    again = crossval(TINY, lfw_tree, tmp_path / "cv", [1])  # read back: nothing trained, merged or scored again
    assert (tmp_path / "cv" / "fold01" / "results.json").stat().st_mtime_ns == scored
    assert again.folds == result.folds


def test_an_ensemble_fold_never_reads_back_a_run_that_is_not_the_merge_of_its_members(
    lfw_tree: Path, tmp_path: Path, monkeypatch
) -> None:
    from lfwbench import presets
    from lfwbench.jobs import crossval

    crossval(TINY, lfw_tree, tmp_path / "cv", [1])  # one model in fold01
    monkeypatch.setitem(presets.PRESETS, "tiny", replace(presets.TINY, fitted_cosine=True, members=2))
    before = (tmp_path / "cv" / "fold01" / "results.json").read_bytes()
    with pytest.raises(LfwbenchError, match="fold01: holds a run other than the merge of fold01-seed1, fold01-seed2"):
        crossval(TINY, lfw_tree, tmp_path / "cv", [1])
    assert (tmp_path / "cv" / "fold01" / "results.json").read_bytes() == before
