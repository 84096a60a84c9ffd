from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, roc_auc_score, roc_curve

from lfwbench.metrics import (
    best_threshold,
    binary_cross_entropy,
    degenerate_warning,
    equal_error_rate,
    mcnemar_exact,
    rates_at,
    summarise,
    tar_at_far,
    view2_folds,
    wilson_interval,
)


@pytest.fixture(params=[0, 1, 2])
def scored(request) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(request.param)
    labels = rng.integers(0, 2, 1000)
    scores = np.clip(0.5 + 0.25 * (labels - 0.5) + rng.normal(0, 0.2, 1000), 0, 1)
    return labels, scores


def test_rates_agree_with_scikit_learn(scored) -> None:
    labels, scores = scored
    rates = rates_at(labels, scores, 0.5)
    predicted = (scores >= 0.5).astype(int)
    assert rates.accuracy == pytest.approx(accuracy_score(labels, predicted), abs=1e-9)
    assert rates.confusion == confusion_matrix(labels, predicted, labels=[0, 1]).tolist()
    assert rates.precision == pytest.approx(precision_score(labels, predicted), abs=1e-9)
    assert rates.f1 == pytest.approx(f1_score(labels, predicted), abs=1e-9)
    (tn, fp), (fn, tp) = rates.confusion
    assert rates.tpr == pytest.approx(tp / (tp + fn)) and rates.tnr == pytest.approx(tn / (tn + fp))


def test_summary_auc_and_loss(scored) -> None:
    labels, scores = scored
    figures = summarise(labels, scores, threshold=0.4)
    assert figures.auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-9)
    clipped = np.clip(scores, 1e-7, 1 - 1e-7)
    expected_loss = -np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped))
    assert figures.loss == pytest.approx(expected_loss, abs=1e-9)
    assert figures.at_threshold.threshold == 0.4
    assert figures.oracle_best_on_test.accuracy >= figures.at_half.accuracy


def test_best_threshold_is_optimal(scored) -> None:
    labels, scores = scored
    threshold = best_threshold(labels, scores)
    best = max(rates_at(labels, scores, t).accuracy for t in np.unique(scores))
    assert rates_at(labels, scores, threshold).accuracy == pytest.approx(best)
    assert best_threshold(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == pytest.approx(0.25)


def test_eer_and_tar(scored) -> None:
    labels, scores = scored
    eer = equal_error_rate(labels, scores)
    fpr, tpr, _ = roc_curve(labels, scores)
    closest = np.argmin(np.abs(fpr - (1 - tpr)))
    assert abs(eer - fpr[closest]) < 0.02
    assert tar_at_far(labels, scores, 1e-2) <= tar_at_far(labels, scores, 1e-1)
    perfect = np.array([0, 0, 1, 1])
    assert equal_error_rate(perfect, np.array([0.1, 0.2, 0.8, 0.9])) == 0.0


def test_wilson_interval_at_1000_pairs_is_about_2_8_points() -> None:
    interval = wilson_interval(708, 1000)
    assert interval.high - interval.low == pytest.approx(0.0563, abs=0.001)
    assert interval.low < 0.708 < interval.high
    assert wilson_interval(0, 10).low == 0.0


def test_mcnemar_exact() -> None:
    a = np.array([1] * 10 + [0] * 2 + [1] * 50, bool)
    b = np.array([0] * 10 + [1] * 2 + [1] * 50, bool)
    result = mcnemar_exact(a, b)
    assert (result["only_first_correct"], result["only_second_correct"]) == (10, 2)
    assert result["p_value"] == pytest.approx(0.0386, abs=1e-3)  # 2 * P(X <= 2), X ~ Bin(12, 0.5)
    assert mcnemar_exact(a, a)["p_value"] == 1.0


def test_view2_thresholds_never_see_their_fold() -> None:
    rng = np.random.default_rng(0)
    folds = np.repeat(np.arange(10), 600)
    labels = np.tile(np.repeat([1, 0], 300), 10)
    scores = np.clip(0.5 + 0.3 * (labels - 0.5) + rng.normal(0, 0.2, 6000), 0, 1)
    result = view2_folds(labels, scores, folds)
    assert len(result.fold_accuracies) == 10
    assert result.mean == pytest.approx(np.mean(result.fold_accuracies))
    assert result.standard_error == pytest.approx(result.std / np.sqrt(10))
    rest = folds != 3
    assert result.fold_thresholds[3] == best_threshold(labels[rest], scores[rest])


def test_degenerate_predictor_warned() -> None:
    labels = np.array([1] * 50 + [0] * 50)
    assert "degenerate" in degenerate_warning(rates_at(labels, np.full(100, 0.9)))
    assert degenerate_warning(rates_at(labels, np.r_[np.full(50, 0.9), np.full(50, 0.1)])) is None


def test_binary_cross_entropy_clips() -> None:
    assert binary_cross_entropy(np.array([1, 0]), np.array([1.0, 0.0])) == pytest.approx(1e-7, abs=1e-9)


def test_metrics_and_report_import_no_tensorflow() -> None:
    code = "import sys, lfwbench.metrics, lfwbench.report, lfwbench.cli; print('tensorflow' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"


def test_bootstrap_intervals_hold_the_estimate_and_tar_only_where_the_pairs_allow() -> None:
    from lfwbench.metrics import TarAtFar, equal_error_rate, operating_curves, tar_at_far

    rng = np.random.default_rng(1)
    labels = np.array([1, 0] * 500)
    scores = np.clip(0.5 + 0.3 * (labels - 0.5) + rng.normal(0, 0.2, 1000), 0, 1)
    curves = operating_curves(labels, scores)
    assert curves.auc_ci.low < roc_auc_score(labels, scores) < curves.auc_ci.high
    assert curves.eer_ci.low < equal_error_rate(labels, scores) < curves.eer_ci.high
    tar = curves.tar_at_far
    assert tar["0.01"].value == tar_at_far(labels, scores, 0.01)
    assert tar["0.01"].ci.low <= tar["0.01"].value <= tar["0.01"].ci.high
    assert tar["0.001"] == TarAtFar(None, needs_different_pairs=1000)  # 500 different pairs rest on 0 or 1
    assert sum(curves.calibration["pairs_per_bin"]) == 1000 and len(curves.det["fpr_probit"]) > 10
    assert operating_curves(labels, scores).auc_ci == curves.auc_ci  # seeded: the same page twice


def test_threshold_at_far_accepts_at_most_that_share_of_different_pairs() -> None:
    from lfwbench.metrics import threshold_at_far

    rng = np.random.default_rng(2)
    labels = np.array([1, 0] * 500)
    scores = np.clip(0.5 + 0.3 * (labels - 0.5) + rng.normal(0, 0.2, 1000), 0, 1)
    for far in (0.01, 0.1, 0.5):
        threshold = threshold_at_far(labels, scores, far)
        accepted = scores[labels == 0] >= threshold
        assert accepted.mean() <= far and (scores[labels == 0] >= np.nextafter(threshold, -1)).mean() > far - 0.003


def test_the_bootstrap_of_the_list_itself_is_its_own_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every resample drawn as the list itself: each interval collapses onto scikit-learn's figure of the list."""
    from lfwbench import metrics

    rng = np.random.default_rng(4)
    labels = np.array([1, 0] * 1500)
    scores = np.round(0.5 + 0.3 * (labels - 0.5) + rng.normal(0, 0.2, 3000), 2)  # rounded: many tied scores
    monkeypatch.setattr(metrics, "_resampled_counts", lambda rng, count, resamples: np.ones((resamples, count)))
    intervals = metrics.bootstrap_intervals(labels, scores)
    exact = {
        "auc": roc_auc_score(labels, scores),
        "eer": metrics.equal_error_rate(labels, scores),
        "0.01": metrics.tar_at_far(labels, scores, 0.01),
        "0.001": metrics.tar_at_far(labels, scores, 0.001),
    }
    for key, value in exact.items():
        assert intervals[key].low == pytest.approx(value, abs=1e-12) == intervals[key].high, key


def test_a_list_too_small_for_the_bootstrap_has_no_intervals() -> None:
    figures = summarise(np.array([1, 0]), np.array([0.8, 0.3]), 0.5)
    assert figures.curves.auc_ci is None and figures.curves.eer_ci is None and figures.auc == 1.0
