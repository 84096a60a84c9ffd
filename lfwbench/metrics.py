"""Verification metrics on plain arrays (labels: SAME = 1, DIFFERENT = 0); no TensorFlow.

Scores come in three kinds (`SCORE_KINDS`): a probability of 'same' in [0, 1], a similarity (higher: same), a
distance (lower: same). The functions below the kinds work on scores where higher means same; `summarise` turns a
distance around for them and every threshold it returns back, so figures are in the score's own units.
scikit-learn computes the ROC and AUC; the rest is small NumPy that the tests check against scikit-learn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy.stats import binomtest, bootstrap, norm
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_auc_score, roc_curve

from lfwbench.pairs import DIFFERENT, SAME
from lfwbench.scoring import SCORE_KINDS

EPSILON = 1e-7  # Keras's clip for binary cross-entropy


def direction(kind: str) -> int:
    """+1 where a higher score means 'same' (probability, similarity), -1 for a distance."""
    if kind not in SCORE_KINDS:
        raise ValueError(f"unknown score kind {kind!r}; one of {', '.join(SCORE_KINDS)}")
    return -1 if kind == "distance" else 1


@dataclass
class Interval:
    low: float
    high: float


@dataclass
class Rates:
    """Figures at one threshold: the notebook's accuracy, TPR on 'same', TNR on 'different', and the rest."""

    threshold: float | None  # in the score's own units; None where each View 2 fold has its own (View2Folds)
    accuracy: float
    tpr: float
    tnr: float
    precision: float
    f1: float
    confusion: list[list[int]]  # [[TN, FP], [FN, TP]], rows true class DIFFERENT, SAME
    accuracy_ci: Interval
    tpr_ci: Interval
    tnr_ci: Interval


def binary_cross_entropy(labels: np.ndarray, scores: np.ndarray) -> float:
    scores = np.clip(np.asarray(scores, dtype=np.float64), EPSILON, 1 - EPSILON)
    labels = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(labels * np.log(scores) + (1 - labels) * np.log(1 - scores)))


def wilson_interval(successes: int, total: int, z: float = 1.959963984540054) -> Interval:
    """95% Wilson score interval of a proportion: honest at small counts and near 0 or 1."""
    if total == 0:
        return Interval(math.nan, math.nan)
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return Interval(centre - half, centre + half)


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def rates_at(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> Rates:
    """Predict 'same' when score >= threshold, as the notebook did at 0.5, and count."""
    return rates_of(labels, np.asarray(scores) >= threshold, float(threshold))


def rates_of(labels: np.ndarray, predicted: np.ndarray, threshold: float | None) -> Rates:
    """The figures of these verdicts ('same' where `predicted` is true), reached at `threshold`."""
    labels, predicted = np.asarray(labels), np.asarray(predicted, dtype=bool)
    same = labels == SAME
    tp, fn = int(np.sum(predicted & same)), int(np.sum(~predicted & same))
    tn, fp = int(np.sum(~predicted & ~same)), int(np.sum(predicted & ~same))
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return Rates(
        threshold=threshold,
        accuracy=_ratio(tp + tn, len(labels)),
        tpr=recall,
        tnr=_ratio(tn, tn + fp),
        precision=precision,
        f1=_ratio(2 * tp, 2 * tp + fp + fn),
        confusion=[[tn, fp], [fn, tp]],
        accuracy_ci=wilson_interval(tp + tn, len(labels)),
        tpr_ci=wilson_interval(tp, tp + fn),
        tnr_ci=wilson_interval(tn, tn + fp),
    )


def threshold_at_far(labels: np.ndarray, scores: np.ndarray, far: float) -> float:
    """The lowest threshold whose false accept rate on these pairs is at most `far` (pairs at or above it are
    accepted), so that as many same-person pairs as that allows are accepted."""
    different = np.sort(np.asarray(scores, dtype=np.float64)[np.asarray(labels) == DIFFERENT])[::-1]
    if not len(different):
        return 0.0
    allowed = math.floor(far * len(different))  # different-person pairs that may be accepted
    return float(np.nextafter(different[allowed], np.inf)) if allowed < len(different) else float(different[-1])


def best_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold of highest accuracy on these pairs (midpoint between neighbouring scores)."""
    order = np.argsort(scores, kind="stable")
    sorted_scores, sorted_labels = np.asarray(scores)[order], np.asarray(labels)[order]
    # predicting 'same' from position i on: correct = differents before i + sames from i on
    differents_before = np.concatenate([[0], np.cumsum(sorted_labels == DIFFERENT)])
    sames_after = np.concatenate([np.cumsum((sorted_labels == SAME)[::-1])[::-1], [0]])
    correct = differents_before + sames_after
    distinct = np.concatenate([[True], sorted_scores[1:] != sorted_scores[:-1], [True]])
    best = int(np.argmax(np.where(distinct, correct, -1)))
    if best == 0:
        return float(sorted_scores[0] - 1e-6) if len(scores) else 0.5
    if best == len(scores):
        return float(sorted_scores[-1] + 1e-6)
    return float((sorted_scores[best - 1] + sorted_scores[best]) / 2)


def roc_points(labels: np.ndarray, scores: np.ndarray, sign: int = 1) -> dict[str, list[float]]:
    """False and true positive rates at every threshold (scikit-learn's roc_curve), the thresholds in the units of
    `sign * scores` (the first, which accepts nothing, is the highest score: JSON holds no infinity)."""
    fpr, tpr, thresholds = roc_curve(labels, scores, pos_label=SAME, drop_intermediate=True)
    thresholds = np.minimum(thresholds, np.max(scores))
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "threshold": (sign * thresholds).tolist()}


def equal_error_rate(labels: np.ndarray, scores: np.ndarray) -> float:
    """The rate where false accepts equal false rejects, interpolated along the ROC."""
    fpr, tpr, _ = roc_curve(labels, scores, pos_label=SAME)
    fnr = 1 - tpr
    i = int(np.argmax(fnr <= fpr))
    if i == 0:
        return float(fpr[0])
    # between points i-1 and i the sign of fnr - fpr changes: interpolate linearly
    d0, d1 = fnr[i - 1] - fpr[i - 1], fnr[i] - fpr[i]
    t = d0 / (d0 - d1) if d0 != d1 else 0.0
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def tar_at_far(labels: np.ndarray, scores: np.ndarray, far: float) -> float:
    """True accept rate at the largest false accept rate not above `far` (NaN when a class is missing)."""
    if len(np.unique(labels)) < 2:
        return math.nan
    fpr, tpr, _ = roc_curve(labels, scores, pos_label=SAME)
    return float(tpr[fpr <= far].max())


FARS = {"0.01": 1e-2, "0.001": 1e-3}
BOOTSTRAP_RESAMPLES = 1000


BOOTSTRAP_ENTRIES = 4_000_000  # resamples x pairs held at once: bounded memory however long the list


def _resampled_counts(rng: np.random.Generator, count: int, resamples: int) -> np.ndarray:
    """How often each of `count` items is drawn in each of `resamples` draws of `count` with replacement."""
    draws = rng.integers(0, count, (resamples, count)) + count * np.arange(resamples)[:, None]
    return np.bincount(draws.ravel(), minlength=resamples * count).reshape(resamples, count)


def bootstrap_intervals(labels: np.ndarray, scores: np.ndarray, seed: int = 0) -> dict[str, Interval] | None:
    """95% percentile intervals of AUC, EER and TAR at each FAR of FARS (keys "auc", "eer" and the FAR keys),
    resampling the same-person and the different-person pairs each with replacement, so every resample holds both
    classes as many times as the list does; None with fewer than two pairs of a class. `scores`: higher means same.

    One sort serves every resample: a resample is a count per pair, its ROC the cumulative counts along the sorted
    scores (one point per distinct score), so 1,000 resamples of 6,000 pairs take well under a second, in chunks
    of bounded memory."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    same = labels[order] == SAME
    same_at, different_at = np.flatnonzero(same), np.flatnonzero(~same)
    if len(same_at) < 2 or len(different_at) < 2:
        return None
    ranked = scores[order]
    ends = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])  # the last pair of each run of equal scores
    rng = np.random.default_rng(seed)
    figures: dict[str, list[np.ndarray]] = {"auc": [], "eer": [], **{key: [] for key in FARS}}
    chunk = max(1, BOOTSTRAP_ENTRIES // len(scores))
    for start in range(0, BOOTSTRAP_RESAMPLES, chunk):
        resamples = min(chunk, BOOTSTRAP_RESAMPLES - start)
        rates = []
        for positions in (same_at, different_at):
            weights = np.zeros((resamples, len(scores)))
            weights[:, positions] = _resampled_counts(rng, len(positions), resamples)
            cumulative = np.cumsum(weights, axis=1)[:, ends] / len(positions)
            rates.append(np.concatenate([np.zeros((resamples, 1)), cumulative], axis=1))
        tpr, fpr = rates
        figures["auc"].append(np.trapezoid(tpr, fpr, axis=1))
        for key, far in FARS.items():
            figures[key].append(np.where(fpr <= far, tpr, 0.0).max(axis=1))
        figures["eer"].append(_equal_error_rates(fpr, 1 - tpr))
    return {
        key: Interval(*(float(q) for q in np.percentile(np.concatenate(values), [2.5, 97.5])))
        for key, values in figures.items()
    }


def _equal_error_rates(fpr: np.ndarray, fnr: np.ndarray) -> np.ndarray:
    """Row by row, where false rejects meet false accepts, interpolated along the ROC (as `equal_error_rate`)."""
    i = np.argmax(fnr <= fpr, axis=1)
    rows = np.arange(len(fpr))
    before = np.maximum(i - 1, 0)
    d0, d1 = fnr[rows, before] - fpr[rows, before], fnr[rows, i] - fpr[rows, i]
    t = np.divide(d0, d0 - d1, out=np.zeros_like(d0), where=d0 != d1)
    interpolated = fpr[rows, before] + t * (fpr[rows, i] - fpr[rows, before])
    return np.where(i == 0, fpr[rows, 0], interpolated)


def shown(value: float | None, spec: str = ".4f") -> str:
    """A figure as text; "n/a" when it is undefined (None or NaN: no pairs of a class, a single fold)."""
    return "n/a" if value is None or not math.isfinite(value) else format(value, spec)


def percent(value: float | None, digits: int = 1) -> str:
    """A rate as a percentage (`87.2%`), or "n/a"."""
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.{digits}f}%"


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(roc_auc_score(labels == SAME, scores)) if len(np.unique(labels)) == 2 else math.nan


@dataclass
class TarAtFar:
    """True accept rate at a false accept rate, with its interval; None (and how many different-person pairs it
    would need) where the list has too few to measure that rate."""

    value: float | None
    ci: Interval | None = None
    needs_different_pairs: int | None = None


@dataclass
class Curves:
    """Bootstrap intervals and the curves beyond the ROC: DET on normal-deviate axes, the reliability diagram."""

    auc_ci: Interval | None  # None: too few pairs of a class for the bootstrap (fewer than two)
    eer_ci: Interval | None
    tar_at_far: dict[str, TarAtFar]
    det: dict[str, list[float]]
    calibration: dict[str, list[float]] | None  # probabilities only


@dataclass
class View2Folds:
    """LFW View 2 on one model: each fold at the threshold best on the other nine."""

    fold_accuracies: list[float]
    fold_thresholds: list[float]
    mean: float
    std: float
    standard_error: float


THRESHOLD_SOURCES = ("validation", "list", "protocol")  # a run's held-out pairs, --threshold-from, the training side


@dataclass
class ThresholdSource:
    """Where the operating threshold was chosen: the kind of source, a line naming the pairs, how many, and the
    false accept rate it was held to (None: best accuracy)."""

    kind: str
    description: str
    pairs: int
    far: float | None = None


@dataclass
class Metrics:
    """Every figure of one model on one pair list. `at_threshold` is the operating point where a threshold was
    chosen away from these pairs (`threshold_source` says where); `oracle_best_on_test` peeks at the test labels and
    is labelled so."""

    pairs: int
    score_kind: str
    loss: float | None  # binary cross-entropy: probabilities only
    at_half: Rates | None  # probabilities only
    auc: float
    eer: float
    curves: Curves
    roc: dict[str, list[float]]
    threshold_curve: dict[str, list[float]]
    oracle_best_on_test: Rates
    warnings: list[str]
    at_threshold: Rates | None = None
    threshold_source: ThresholdSource | None = None
    fold_thresholds: list[float | None] | None = (
        None  # each View 2 fold's operating threshold, where each fold has its own
    )
    view2: View2Folds | None = None

    @property
    def operating_point(self) -> Rates:
        """The rates at the threshold that decides: the one chosen away from these pairs, else a probability's 0.5."""
        point = self.at_threshold or self.at_half
        if point is None:
            raise ValueError("no operating point: no threshold was chosen and the scores are not probabilities")
        return point


def operating_curves(labels: np.ndarray, scores: np.ndarray, probabilities: bool = True) -> Curves:
    """Bootstrap intervals of AUC, EER and TAR at each FAR the different-person pairs allow (at least 1/FAR of
    them, else None and how many it needs); the DET curve on normal-deviate axes; for probabilities, the
    reliability diagram. `scores`: higher means same."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    different = int((labels == DIFFERENT).sum())
    intervals = bootstrap_intervals(labels, scores) or {}
    tar = {}
    for key, far in FARS.items():
        needed = math.ceil(1 / far)
        if different >= needed:
            tar[key] = TarAtFar(tar_at_far(labels, scores, far), intervals.get(key))
        else:
            tar[key] = TarAtFar(None, needs_different_pairs=needed)
    fpr, tpr, _ = roc_curve(labels, scores, pos_label=SAME)
    inside = (fpr > 0) & (fpr < 1) & (tpr > 0) & (tpr < 1)  # the probit of 0 or 1 is infinite
    calibration = None
    if probabilities:
        predicted, observed = calibration_curve(labels == SAME, scores, n_bins=10, strategy="uniform")
        counts = np.histogram(scores, bins=np.linspace(0, 1, 11))[0]
        calibration = {"predicted": predicted.tolist(), "observed": observed.tolist(), "pairs_per_bin": counts.tolist()}
    return Curves(
        auc_ci=intervals.get("auc"),
        eer_ci=intervals.get("eer"),
        tar_at_far=tar,
        det={"fpr_probit": norm.ppf(fpr[inside]).tolist(), "fnr_probit": norm.ppf(1 - tpr[inside]).tolist()},
        calibration=calibration,
    )


def threshold_curve(labels: np.ndarray, scores: np.ndarray, kind: str, points: int = 101) -> dict[str, list[float]]:
    """Accuracy, TPR and TNR against the threshold in the score's own units (0-1 for probabilities, else the
    scores' range), for the report's curve."""
    scores, sign = np.asarray(scores, dtype=np.float64), direction(kind)
    low, high = (0.0, 1.0) if kind == "probability" else (float(scores.min()), float(scores.max()))
    thresholds = np.linspace(low, high, points)
    predicted = sign * scores[None, :] >= sign * thresholds[:, None]
    same = np.asarray(labels) == SAME
    tpr = (predicted & same).sum(1) / max(same.sum(), 1)
    tnr = (~predicted & ~same).sum(1) / max((~same).sum(), 1)
    accuracy = ((predicted & same).sum(1) + (~predicted & ~same).sum(1)) / len(same)
    return {"threshold": thresholds.tolist(), "accuracy": accuracy.tolist(), "tpr": tpr.tolist(), "tnr": tnr.tolist()}


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, float]:
    """McNemar's exact test of two models on the same pairs: a two-sided binomial test on their disagreements."""
    correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    only_a, only_b = int(np.sum(correct_a & ~correct_b)), int(np.sum(~correct_a & correct_b))
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {"only_first_correct": only_a, "only_second_correct": only_b, "p_value": float(p)}


def fold_thresholds(
    labels: np.ndarray, scores: np.ndarray, folds: np.ndarray, kind: str = "probability", far: float | None = None
) -> dict[int, float]:
    """Each fold's threshold, in the score's own units, chosen on the other folds' pairs (LFW's View 2 protocol):
    their best accuracy, or with `far` that false accept rate."""
    return {
        int(fold): choose_threshold(labels[folds != fold], scores[folds != fold], kind, far)
        for fold in np.unique(folds)
    }


def view2_folds(labels: np.ndarray, scores: np.ndarray, folds: np.ndarray, kind: str = "probability") -> View2Folds:
    """LFW View 2: for each fold, the threshold best on the other folds, applied to it.

    Returns per-fold accuracies, the thresholds (in the score's own units), their mean, the standard deviation
    (ddof=1) and the standard error of the mean (std / sqrt(folds)), which the LFW results page reports.
    """
    labels, scores, folds = np.asarray(labels), np.asarray(scores, dtype=np.float64), np.asarray(folds)
    chosen = fold_thresholds(labels, scores, folds, kind)
    thresholds = list(chosen.values())
    accuracies = [
        rates_of(labels[folds == fold], verdicts(scores[folds == fold], threshold, kind), threshold).accuracy
        for fold, threshold in chosen.items()
    ]
    accuracies_array = np.array(accuracies)
    std = float(accuracies_array.std(ddof=1)) if len(accuracies) > 1 else 0.0
    return View2Folds(accuracies, thresholds, float(accuracies_array.mean()), std, std / math.sqrt(len(accuracies)))


def threshold_label(threshold: float | None) -> str:
    return "each fold's threshold" if threshold is None else f"threshold {threshold:.4g}"


def degenerate_warning(rates: Rates) -> str | None:
    """A warning when one class is almost always predicted: high accuracy on one class hides a useless model."""
    low, high = sorted([rates.tpr, rates.tnr])
    if low < 0.1 and high > 0.5 or high > 0.98 and low < 0.6:
        return (
            f"degenerate predictor at {threshold_label(rates.threshold)}: TPR {rates.tpr:.3f}, TNR {rates.tnr:.3f} "
            "(it answers one class almost always)"
        )
    return None


def choose_threshold(labels: np.ndarray, scores: np.ndarray, kind: str, far: float | None = None) -> float:
    """The threshold, in the score's own units, of best accuracy on these pairs, or with `far` the most accepting
    one whose false accept rate on them is at most `far`."""
    sign = direction(kind)
    oriented = sign * np.asarray(scores, dtype=np.float64)
    return sign * (threshold_at_far(labels, oriented, far) if far else best_threshold(labels, oriented))


def verdicts(scores: np.ndarray, thresholds: float | np.ndarray, kind: str) -> np.ndarray:
    """'Same' where a score is on the same side of its threshold as same-person pairs are (a distance below it)."""
    sign = direction(kind)
    return sign * np.asarray(scores, dtype=np.float64) >= sign * np.asarray(thresholds, dtype=np.float64)


def summarise(
    labels: np.ndarray, scores: np.ndarray, threshold: float | np.ndarray | None = None, kind: str = "probability"
) -> Metrics:
    """Every figure of a verification study on one list of pairs, thresholds in the score's own units.

    `threshold` is one chosen elsewhere (on validation pairs), or one per pair (each View 2 fold's, chosen on the
    other folds); the test set's own best threshold appears only as `oracle_best_on_test`, labelled so. Loss, the
    rates at 0.5 and calibration exist for probabilities only.
    """
    sign = direction(kind)
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    oriented = sign * scores
    probabilities = kind == "probability"
    at_half = rates_at(labels, scores, 0.5) if probabilities else None
    best = rates_at(labels, oriented, best_threshold(labels, oriented))
    operating = None
    if threshold is not None:
        single = np.ndim(threshold) == 0
        operating = rates_of(labels, verdicts(scores, threshold, kind), float(threshold) if single else None)
    point = operating or at_half
    return Metrics(
        pairs=int(len(labels)),
        score_kind=kind,
        loss=binary_cross_entropy(labels, scores) if probabilities else None,
        at_half=at_half,
        auc=_auc(labels, oriented),
        eer=equal_error_rate(labels, oriented),
        curves=operating_curves(labels, oriented, probabilities),
        roc=roc_points(labels, oriented, sign),
        threshold_curve=threshold_curve(labels, scores, kind),
        oracle_best_on_test=replace(best, threshold=sign * best.threshold),
        warnings=[w for w in [degenerate_warning(point) if point else None] if w],
        at_threshold=operating,
    )


def mean_and_spread(values: list[float]) -> dict:
    """Mean, standard deviation (ddof=1) and standard error of the mean, as the LFW results page reports folds,
    and a 95% bootstrap interval of the mean over the folds (from two folds on)."""
    array = np.asarray(values, dtype=float)
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    spread = {"mean": float(array.mean()), "std": std, "standard_error": std / math.sqrt(len(array))}
    if len(array) > 1 and std > 0:
        interval = bootstrap((array,), np.mean, n_resamples=BOOTSTRAP_RESAMPLES, method="percentile",
                             random_state=np.random.default_rng(0)).confidence_interval  # fmt: skip
        spread["mean_ci"] = {"low": float(interval.low), "high": float(interval.high)}
    return spread


def averaged_roc(folds: list[tuple[np.ndarray, np.ndarray]], points: int = 401) -> dict[str, list[float]]:
    """The ROC averaged over folds as the LFW results page draws it: at each threshold, the mean over folds of the
    false and true positive rates. Thresholds are quantiles of all scores, so low thresholds are resolved too."""
    pooled = np.concatenate([scores for _, scores in folds])
    thresholds = np.unique(np.concatenate([[0.0], np.quantile(pooled, np.linspace(0, 1, points)), [np.inf]]))[::-1]
    rates = []
    for labels, scores in folds:
        accepted = np.asarray(scores)[None, :] >= thresholds[:, None]
        same = np.asarray(labels) == SAME
        rates.append((accepted[:, ~same].mean(1), accepted[:, same].mean(1)))
    fpr, tpr = (np.mean([fold[i] for fold in rates], axis=0) for i in (0, 1))
    return {"threshold": np.minimum(thresholds, 1.0).tolist(), "fpr": fpr.tolist(), "tpr": tpr.tolist()}
