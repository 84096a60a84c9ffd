"""Inputs from any library, without TensorFlow: embeddings (.npz, .csv), pair scores (.csv), every kind of score, the
protocol for inputs that bring no validation split, comparisons, and the refusal of bad files and of outputs that
would replace inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score
from sklearn.metrics.pairwise import cosine_similarity

from lfwbench.cli import main
from lfwbench.evaluation import evaluate
from lfwbench.pairs import load_pairs
from lfwbench.precomputed import open_embeddings, open_scores
from lfwbench.scoring import image_key

FOLDS = 10


def invoke(*args) -> object:
    return CliRunner().invoke(main, [str(arg) for arg in args])


def people_of(tree: Path) -> dict[str, int]:
    """The tree's people and how many images each has, read from its folders."""
    folders = sorted((tree / "lfw-deepfunneled").iterdir())
    return {folder.name: len(list(folder.glob("*.jpg"))) for folder in folders}


def vectors_of(tree: Path, seed: int = 0, width: int = 16, noise: float = 0.9) -> dict[str, np.ndarray]:
    """Every image of the synthetic tree: a direction per person plus noise, so that 'same' pairs are closer."""
    rng = np.random.default_rng(seed)
    people = people_of(tree)
    centres = rng.normal(size=(len(people), width))
    return {
        image_key(name, index): centres[k] + noise * rng.normal(size=width)
        for k, (name, count) in enumerate(people.items())
        for index in range(1, count + 1)
    }


def write_npz(path: Path, vectors: dict[str, np.ndarray], **extra) -> Path:
    np.savez(path, keys=np.array(list(vectors)), vectors=np.stack(list(vectors.values())), **extra)
    return path


def write_embeddings_csv(path: Path, vectors: dict[str, np.ndarray]) -> Path:
    frame = pd.DataFrame(np.stack(list(vectors.values())), columns=[f"v{i}" for i in range(16)])
    frame.insert(0, "path", list(vectors))
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def view2_list(lfw_tree: Path, tmp_path: Path) -> Path:
    """A ten-fold View 2 list over the synthetic people: per fold 3 same and 3 different pairs."""
    rng = np.random.default_rng(7)
    people = list(people_of(lfw_tree))
    lines = []
    for _ in range(FOLDS):
        for _ in range(3):
            name = people[rng.integers(len(people))]
            i, j = rng.choice(np.arange(1, people_of(lfw_tree)[name] + 1), 2, replace=False)
            lines.append(f"{name}\t{i}\t{j}")
        for _ in range(3):
            a, b = rng.choice(len(people), 2, replace=False)
            lines.append(f"{people[a]}\t{rng.integers(1, 5)}\t{people[b]}\t{rng.integers(1, 5)}")
    (tmp_path / "pairs.txt").write_text("\n".join([f"{FOLDS}\t3", *lines]) + "\n")
    return tmp_path / "pairs.txt"


def independent_view2(pair_path: Path, vectors: dict[str, np.ndarray]) -> tuple[list[float], list[int]]:
    """LFW View 2 written out here without lfwbench's metrics: cosine by scikit-learn, each fold's threshold by
    trying every midpoint between neighbouring scores of the other folds (accept at or above it; of equal
    accuracies the lowest, as lfwbench documents), accuracies and every pair's verdict."""
    pairs = load_pairs(pair_path).pairs
    a = np.stack([vectors[image_key(p.name1, p.index1)] for p in pairs])
    b = np.stack([vectors[image_key(p.name2, p.index2)] for p in pairs])
    scores = np.array([cosine_similarity(a[k : k + 1], b[k : k + 1])[0, 0] for k in range(len(pairs))])
    labels = np.array([p.label for p in pairs])
    folds = np.array([p.fold for p in pairs])
    accuracies, verdicts = [], np.zeros(len(pairs), int)
    for fold in range(FOLDS):
        train, test = folds != fold, folds == fold
        distinct = np.unique(scores[train])
        candidates = np.concatenate([[distinct[0] - 1], (distinct[1:] + distinct[:-1]) / 2, [distinct[-1] + 1]])
        correct = [np.mean((scores[train] >= t) == (labels[train] == 1)) for t in candidates]
        threshold = candidates[int(np.argmax(correct))]
        verdicts[test] = scores[test] >= threshold
        accuracies.append(float(np.mean(verdicts[test] == labels[test])))
    return accuracies, verdicts.tolist()


def test_view2_on_embeddings_matches_an_independent_computation(
    view2_list: Path, lfw_tree: Path, tmp_path: Path
) -> None:
    vectors = vectors_of(lfw_tree)
    results = evaluate(open_embeddings(write_npz(tmp_path / "e.npz", vectors)), None, view2_list, view2=True)
    accuracies, verdicts = independent_view2(view2_list, vectors)
    view2 = results.metrics.view2
    assert view2.fold_accuracies == pytest.approx(accuracies)
    assert view2.mean == pytest.approx(np.mean(accuracies))
    assert view2.standard_error == pytest.approx(np.std(accuracies, ddof=1) / np.sqrt(FOLDS))
    assert [p.predicted for p in results.pairs] == verdicts  # each pair judged at its own fold's threshold
    assert results.operating_point.accuracy == pytest.approx(np.mean(accuracies))  # folds of equal size
    assert results.operating_point.threshold is None and len(results.metrics.fold_thresholds) == FOLDS
    assert "the other 9 folds of pairs.txt" in results.operating_label
    assert (
        results.metrics.loss is None and results.metrics.at_half is None and results.metrics.curves.calibration is None
    )
    labels = [p.label for p in results.pairs]
    assert results.metrics.auc == pytest.approx(roc_auc_score(labels, [p.score for p in results.pairs]))


def test_npz_and_csv_embeddings_give_the_same_figures(lfw_tree: Path, tmp_path: Path) -> None:
    vectors = vectors_of(lfw_tree)
    npz = evaluate(open_embeddings(write_npz(tmp_path / "e.npz", vectors)), lfw_tree)
    csv = evaluate(open_embeddings(write_embeddings_csv(tmp_path / "e.csv", vectors)), lfw_tree)
    assert [p.score for p in npz.pairs] == pytest.approx([p.score for p in csv.pairs], abs=1e-9)
    assert npz.model.kind == "embeddings" and npz.model.metric == "cosine" and npz.model.score_kind == "similarity"
    # no validation split: the threshold comes from pairsDevTrain.txt, scored the same way
    assert npz.metrics.threshold_source.kind == "protocol" and "pairsDevTrain.txt" in npz.operating_label
    assert npz.model.preprocessing is None and npz.leakage["checked"] is False


def test_euclidean_is_a_distance_judged_below_its_threshold(lfw_tree: Path, tmp_path: Path) -> None:
    path = write_npz(tmp_path / "e.npz", vectors_of(lfw_tree))
    results = evaluate(open_embeddings(path, "euclidean"), lfw_tree)
    threshold = results.operating_point.threshold
    assert results.model.score_kind == "distance"
    assert [p.predicted for p in results.pairs] == [int(p.score <= threshold) for p in results.pairs]
    assert results.metrics.auc > 0.5 and results.metrics.roc["threshold"][-1] >= results.metrics.roc["threshold"][1]


def scores_file(path: Path, pairs, scores) -> Path:
    """A scores CSV with a row per distinct pair (the synthetic lists repeat some pairs; a scores file may not)."""
    rows = {(p.name1, p.index1, p.name2, p.index2): s for p, s in zip(pairs, scores, strict=True)}
    columns = ["name1", "image1", "name2", "image2"]
    frame = pd.DataFrame([(*key, score) for key, score in rows.items()], columns=[*columns, "score"])
    frame.to_csv(path, index=False)
    return path


def test_every_kind_of_score_gives_the_same_verdicts_in_its_own_units(lfw_tree: Path, tmp_path: Path) -> None:
    pairs = [*load_pairs(lfw_tree / "pairsDevTrain.txt").pairs, *load_pairs(lfw_tree / "pairsDevTest.txt").pairs]
    rng = np.random.default_rng(3)
    similarity = np.array([0.6 if p.label else 0.4 for p in pairs]) + rng.normal(0, 0.15, len(pairs))
    probability = 1 / (1 + np.exp(-8 * (similarity - 0.5)))
    kinds = {"similarity": similarity, "distance": -similarity, "probability": probability}
    scored = {
        kind: evaluate(open_scores(scores_file(tmp_path / f"{kind}.csv", pairs, values), kind), lfw_tree)
        for kind, values in kinds.items()
    }
    verdicts = {kind: [p.predicted for p in r.pairs] for kind, r in scored.items()}
    assert verdicts["similarity"] == verdicts["distance"] == verdicts["probability"]
    assert scored["distance"].operating_point.threshold == pytest.approx(
        -scored["similarity"].operating_point.threshold
    )
    aucs = {kind: r.metrics.auc for kind, r in scored.items()}
    assert aucs["distance"] == pytest.approx(aucs["similarity"]) == pytest.approx(aucs["probability"])
    assert scored["probability"].metrics.loss is not None and scored["similarity"].metrics.loss is None
    assert scored["probability"].metrics.curves.calibration is not None


def test_predictions_read_back_as_scores_give_the_same_figures(lfw_tree: Path, tmp_path: Path) -> None:
    npz = write_npz(tmp_path / "e.npz", vectors_of(lfw_tree))
    first = invoke("evaluate", "--embeddings", npz, "--data", lfw_tree, "--out", tmp_path / "a.json",
                   "--predictions", tmp_path / "p.csv")  # fmt: skip
    assert first.exit_code == 0, first.output
    again = invoke("evaluate", "--scores", tmp_path / "p.csv", "--score-kind", "similarity", "--data", lfw_tree,
                   "--out", tmp_path / "b.json")  # fmt: skip
    # the predictions hold only the scored list: pairsDevTrain.txt, where the threshold comes from, has no scores
    assert again.exit_code == 1 and "pairsDevTrain.txt:" in again.output and "no score for this pair" in again.output
    view2 = invoke("evaluate", "--embeddings", npz, "--view2", lfw_tree / "pairs.txt",
                   "--predictions", tmp_path / "v.csv", "--out", tmp_path / "v.json")  # fmt: skip
    assert view2.exit_code == 0, view2.output
    back = invoke("evaluate", "--scores", tmp_path / "v.csv", "--score-kind", "similarity",
                  "--view2", lfw_tree / "pairs.txt", "--out", tmp_path / "w.json")  # fmt: skip
    assert back.exit_code == 0, back.output
    a, b = (json.loads((tmp_path / name).read_text()) for name in ("v.json", "w.json"))
    assert a["metrics"]["view2"] == b["metrics"]["view2"] and a["metrics"]["auc"] == b["metrics"]["auc"]
    assert [p["predicted"] for p in a["pairs"]] == [p["predicted"] for p in b["pairs"]]
    assert b["model"]["kind"] == "scores" and a["model"]["kind"] == "embeddings"


WITHOUT_TENSORFLOW = """
import sys
from lfwbench.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exit:
    print("exit", exit.code, "tensorflow" in sys.modules, "keras" in sys.modules)
"""


def test_embeddings_and_scores_import_no_tensorflow(lfw_tree: Path, tmp_path: Path) -> None:
    npz = write_npz(tmp_path / "e.npz", vectors_of(lfw_tree))
    pairs = load_pairs(lfw_tree / "pairs.txt").pairs
    scores = scores_file(tmp_path / "s.csv", pairs, np.linspace(0, 1, len(pairs)))
    for args in (
        ["evaluate", "--embeddings", str(npz), "--view2", str(lfw_tree / "pairs.txt")],
        ["report", "--scores", str(scores), "--score-kind", "similarity", "--view2", str(lfw_tree / "pairs.txt"),
         "--out", str(tmp_path / "r.html"), "--plotlyjs", "cdn"],
    ):  # fmt: skip
        run = subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW, *args], capture_output=True, text=True)
        assert run.stdout.strip().endswith("exit 0 False False"), run.stdout + run.stderr
    assert (tmp_path / "r.html").is_file() and (tmp_path / "r.json").is_file()


def test_a_missing_threshold_source_is_one_line_naming_the_ways(lfw_tree: Path, tmp_path: Path) -> None:
    npz = write_npz(tmp_path / "e.npz", vectors_of(lfw_tree))
    result = invoke(
        "evaluate", "--embeddings", npz, "--pairs", lfw_tree / "pairsDevTest.txt", "--out", tmp_path / "o.json"
    )
    assert result.exit_code == 1 and "--threshold-from" in result.output and "--view2" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "o.json").exists()
    chosen = invoke("evaluate", "--embeddings", npz, "--pairs", lfw_tree / "pairsDevTest.txt",
                    "--threshold-from", lfw_tree / "pairsDevTest.txt")  # fmt: skip
    assert chosen.exit_code == 0 and "shares 4 people with pairsDevTest.txt" in chosen.output
    assert "chosen on pairsDevTest.txt" in chosen.output


def test_far_without_pairs_to_choose_it_on_is_refused(lfw_tree: Path, tmp_path: Path) -> None:
    npz = write_npz(tmp_path / "e.npz", vectors_of(lfw_tree))
    result = invoke("evaluate", "--embeddings", npz, "--pairs", lfw_tree / "pairsDevTest.txt", "--far", "0.1")
    assert result.exit_code == 1 and "no pairs to choose a threshold on" in result.output


def bad_npz(tree: Path, path: Path, case: str) -> Path:
    vectors = vectors_of(tree)
    keys, values = list(vectors), np.stack(list(vectors.values()))
    if case == "nan":
        values[3, 2] = np.nan
    elif case == "infinite":
        values[5, 0] = np.inf
    elif case == "absolute":
        keys[0] = "/etc/Train_Person00_0001.jpg"
    elif case == "dotdot":
        keys[0] = "../Train_Person00/Train_Person00_0001.jpg"
    elif case == "no-folder":
        keys[0] = "Train_Person00_0001.jpg"
    elif case == "twice":
        keys[1] = keys[0]
    elif case == "lengths":
        np.savez(path, keys=np.array(keys), vectors=values[:-1])
        return path
    elif case == "no-vectors":
        np.savez(path, keys=np.array(keys))
        return path
    elif case == "objects":
        np.savez(path, keys=np.array(keys, dtype=object), vectors=values)
        return path
    elif case == "not-npz":
        path.write_text("hello")
        return path
    np.savez(path, keys=np.array(keys), vectors=values)
    return path


@pytest.mark.parametrize(
    "case, message",
    [
        ("nan", "(row 4) holds NaN or infinity"),
        ("infinite", "(row 6) holds NaN or infinity"),
        ("absolute", "is not an image path relative to the variant folder"),
        ("dotdot", "is not an image path relative to the variant folder"),
        ("no-folder", "is not an image path relative to the variant folder"),
        ("twice", "appears twice (rows 1 and 2)"),
        ("lengths", "48 keys but 47 vectors"),
        ("no-vectors", "no array 'vectors'"),
        ("objects", "not a readable .npz of plain arrays"),
        ("not-npz", "not a readable .npz of plain arrays"),
    ],
)
def test_a_bad_embeddings_file_is_one_line_and_writes_nothing(
    lfw_tree: Path, tmp_path: Path, case: str, message: str
) -> None:
    path = bad_npz(lfw_tree, tmp_path / "e.npz", case)
    result = invoke("evaluate", "--embeddings", path, "--data", lfw_tree, "--out", tmp_path / "o.json")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and message in lines[0], result.output
    assert lines[0].startswith(f"Error: {path}") and len(lines[0]) < 500 and "Traceback" not in result.output
    assert not (tmp_path / "o.json").exists()


def test_a_csv_with_a_short_row_names_its_line(lfw_tree: Path, tmp_path: Path) -> None:
    path = write_embeddings_csv(tmp_path / "e.csv", vectors_of(lfw_tree))
    lines = path.read_text().splitlines()
    lines[3] = ",".join(lines[3].split(",")[:-1])  # one value fewer: vectors of different lengths
    path.write_text("\n".join(lines) + "\n")
    result = invoke("evaluate", "--embeddings", path, "--data", lfw_tree)
    assert result.exit_code == 1 and f"{path}:4: column 'v15'" in result.output, result.output


def test_missing_embeddings_name_the_image_and_line_or_are_skipped_and_counted(lfw_tree: Path, tmp_path: Path) -> None:
    vectors = vectors_of(lfw_tree)
    person = load_pairs(lfw_tree / "pairsDevTest.txt").pairs[0].name1
    del vectors[image_key(person, 1)]
    path = write_npz(tmp_path / "e.npz", vectors)
    result = invoke("evaluate", "--embeddings", path, "--data", lfw_tree)
    assert result.exit_code == 1 and f"pairsDevTest.txt:2: no embedding for {person}/" in result.output
    skipped = evaluate(open_embeddings(path), lfw_tree, skip_missing=True)
    assert len(skipped.data.skipped_pairs) > 0
    assert len(skipped.pairs) + len(skipped.data.skipped_pairs) == len(load_pairs(lfw_tree / "pairsDevTest.txt"))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda rows: rows[:-1], "no score for this pair"),
        (lambda rows: rows + rows[:1], "is scored twice"),
        (lambda rows: rows + [{**rows[0], "name1": rows[0]["name2"], "image1": rows[0]["image2"],
                               "name2": rows[0]["name1"], "image2": rows[0]["image1"]}], "is scored twice"),
        (lambda rows: [{**rows[0], "score": "NaN"}] + rows[1:], ":2: column 'score' is 'NaN', not a finite number"),
        (lambda rows: [{**rows[0], "image1": "0"}] + rows[1:], ":2: expected a positive image number"),
        (lambda rows: [{**rows[0], "name1": "../x"}] + rows[1:], ":2: expected a person's folder name"),
        (lambda rows: [{k: v for k, v in row.items() if k != "score"} for row in rows], "no column 'score'"),
    ],
)  # fmt: skip
def test_a_bad_scores_file_is_one_line_and_writes_nothing(lfw_tree: Path, tmp_path: Path, edit, message) -> None:
    pairs = load_pairs(lfw_tree / "pairs.txt").pairs
    rows = [{"name1": p.name1, "image1": p.index1, "name2": p.name2, "image2": p.index2, "score": 0.5 + k / 100}
            for k, p in enumerate(pairs)]  # fmt: skip
    path = tmp_path / "s.csv"
    pd.DataFrame(edit(rows)).to_csv(path, index=False)
    result = invoke("evaluate", "--scores", path, "--score-kind", "similarity", "--view2", lfw_tree / "pairs.txt",
                    "--out", tmp_path / "o.json")  # fmt: skip
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and message in lines[0], result.output
    assert len(lines[0]) < 500 and not (tmp_path / "o.json").exists()


def test_score_kind_is_needed_and_checked(lfw_tree: Path, tmp_path: Path) -> None:
    pairs = load_pairs(lfw_tree / "pairs.txt").pairs
    path = scores_file(tmp_path / "s.csv", pairs, np.linspace(-3, 3, len(pairs)))
    view2 = ["--view2", lfw_tree / "pairs.txt"]
    assert invoke("evaluate", "--scores", path, *view2).exit_code == 1
    assert invoke("evaluate", "--scores", path, "--score-kind", "odds", *view2).exit_code == 2
    result = invoke("evaluate", "--scores", path, "--score-kind", "probability", *view2)
    assert result.exit_code == 1 and ":2: score -3 is not a probability" in result.output
    assert invoke("evaluate", "--scores", path, "--score-kind", "similarity", *view2, "--flip").exit_code == 1


def test_no_output_replaces_an_input_or_another_output(make_results, lfw_tree: Path, tmp_path: Path) -> None:
    npz = write_npz(tmp_path / "e.npz", vectors_of(lfw_tree))
    pair_list = tmp_path / "pairs.txt"
    pair_list.write_bytes((lfw_tree / "pairs.txt").read_bytes())
    before = {path: path.read_bytes() for path in (npz, pair_list)}
    scored = ("--embeddings", npz, "--view2", pair_list)
    attempts = [
        ("evaluate", *scored, "--out", npz),
        ("evaluate", *scored, "--predictions", pair_list),
        ("evaluate", *scored, "--out", tmp_path / "x", "--predictions", tmp_path / "x"),
        ("report", *scored, "--out", tmp_path / "r.html", "--summary", tmp_path / "r.html"),
        ("report", *scored, "--out", tmp_path / "e.html"),  # e.json beside it is no input: fine
        ("report", *scored, "--out", tmp_path / "p.html", "--latex", pair_list),
    ]
    for args in attempts[:4] + attempts[5:]:
        result = invoke(*args)
        assert result.exit_code == 1, (args, result.output)
        assert "is also an input" in result.output or "named for two outputs" in result.output, result.output
    assert invoke(*attempts[4]).exit_code == 0
    assert {path: path.read_bytes() for path in (npz, pair_list)} == before
    assert not (tmp_path / "x").exists() and not (tmp_path / "r.html").exists() and not (tmp_path / "p.html").exists()
    stats = invoke("data", "stats", "--data", lfw_tree, "--json", lfw_tree / "pairsDevTest.txt")
    assert stats.exit_code == 1 and "is also an input" in stats.output


def test_two_results_compare_through_the_command_line(make_results, lfw_tree: Path, tmp_path: Path) -> None:
    from lfwbench.results import write_results

    write_results(tmp_path / "a.json", make_results(lfw_tree, name="model-a"))
    write_results(tmp_path / "b.json", make_results(lfw_tree, name="model-b", seed=4))
    result = invoke("report", "--results", tmp_path / "a.json", "--results", tmp_path / "b.json",
                    "--out", tmp_path / "cmp.html", "--plotlyjs", "cdn")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) < 500
    html = (tmp_path / "cmp.html").read_text()
    assert "model-a vs model-b" in html and "McNemar" in html
    assert json.loads((tmp_path / "cmp.2.json").read_text())["model"]["name"] == "model-b"
    default = CliRunner().invoke(main, ["report", "--results", str(tmp_path / "a.json"), "--results",
                                        str(tmp_path / "b.json"), "--plotlyjs", "cdn"])  # fmt: skip
    assert default.exit_code == 0 and "reports/comparison-pairsDevTest.html" in default.output


def three_kinds(make_results, lfw_tree: Path, tmp_path: Path) -> list[str]:
    """Arguments comparing a saved lfwbench result, an embeddings file and a scores file on pairsDevTest."""
    from lfwbench.results import write_results

    write_results(tmp_path / "saved.json", make_results(lfw_tree, pairs=8))
    npz = write_npz(tmp_path / "facenet.npz", vectors_of(lfw_tree))
    pairs = [*load_pairs(lfw_tree / "pairsDevTrain.txt").pairs, *load_pairs(lfw_tree / "pairsDevTest.txt").pairs]
    distances = np.array([0.4 if p.label else 0.9 for p in pairs]) + np.random.default_rng(1).normal(0, 0.3, len(pairs))
    csv = scores_file(tmp_path / "arcface.csv", pairs, distances)
    return ["report", "--results", tmp_path / "saved.json", "--embeddings", npz, "--scores", csv,
            "--score-kind", "distance", "--data", lfw_tree, "--out", tmp_path / "three.html"]  # fmt: skip


def test_a_report_compares_three_kinds_of_input(make_results, lfw_tree: Path, tmp_path: Path) -> None:
    result = invoke(*three_kinds(make_results, lfw_tree, tmp_path), "--plotlyjs", "cdn")
    assert result.exit_code == 0, result.output
    html = (tmp_path / "three.html").read_text()
    for name in ("model-a", "facenet", "arcface"):
        assert f">{name}</th>" in html
    assert "model-a vs facenet" in html and "facenet vs arcface" in html and "McNemar" in html
    assert "n/a: distance scores are no probabilities" in html and "computed by another program" in html
    assert "lower means same" in html and html.count("data:image/jpeg;base64,") > 4
    assert [json.loads((tmp_path / f"three.{k}.json").read_text())["model"]["kind"] for k in (1, 2, 3)] == [
        "lfwbench checkpoint", "embeddings", "scores"
    ]  # fmt: skip


@pytest.mark.browser
def test_a_three_kind_comparison_draws_in_chromium(chromium, make_results, lfw_tree: Path, tmp_path: Path) -> None:
    result = invoke(*three_kinds(make_results, lfw_tree, tmp_path))
    assert result.exit_code == 0, result.output
    errors: list[str] = []
    page = chromium.new_context(offline=True, viewport={"width": 1280, "height": 900}).new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto((tmp_path / "three.html").as_uri())
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length > 0")
    drawn = page.evaluate(
        "['fig-roc', 'fig-det', 'fig-distribution-3'].map(id => !!document.querySelector(`#${id} svg`))"
    )
    legend = page.inner_text("#fig-roc")
    columns = page.eval_on_selector_all("#headline thead th", "cells => cells.map(c => c.textContent)")
    assert errors == [] and drawn == [True, True, True]
    assert columns == ["Figure", "model-a", "facenet", "arcface"] and "arcface (AUC" in legend


def test_messages_escape_control_characters_and_stay_short(lfw_tree: Path, tmp_path: Path) -> None:
    vectors = vectors_of(lfw_tree)
    path = write_npz(tmp_path / "\x1b[31mred.npz", vectors, **{"x" * 3000: np.zeros(1)})
    result = invoke("evaluate", "--embeddings", path, "--data", lfw_tree)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\\x1b[31mred" in result.output
    assert max(len(line) for line in result.output.splitlines()) < 500 and "more characters" in result.output
