"""`lfwbench evaluate`: score a pair list with any scorer, choose its threshold away from the scored pairs, and
gather every figure and fact into Results."""

from __future__ import annotations

import datetime
import time
from pathlib import Path

import numpy as np

from lfwbench.config import VAL_FRACTION
from lfwbench.dataset import data_stats
from lfwbench.errors import LfwbenchError
from lfwbench.images import find_variant
from lfwbench.machine import environment, library_versions
from lfwbench.metrics import ThresholdSource, choose_threshold, fold_thresholds, summarise, verdicts, view2_folds
from lfwbench.pairs import SAME, VIEW1_LISTS, Pair, PairList, file_md5, load_pairs, people_of, protocol_files
from lfwbench.results import DataFacts, PairRecord, Results, Settings
from lfwbench.scoring import ScoredPairs, Scorer, open_input

TRAINING_SIDE = VIEW1_LISTS[0]  # where a View 1 threshold comes from for a model that brings no validation pairs


def _both_classes(scored: ScoredPairs, name: str) -> None:
    labels = {pair.label for pair in scored.pairs}
    if len(labels) < 2:
        raise LfwbenchError(
            f"{name}: only {'same' if SAME in labels else 'different'}-person pairs are left to score "
            "(--skip-missing left out the others); accuracy, ROC and thresholds need both"
        )


def labels_of(pairs: list[Pair]) -> np.ndarray:
    return np.array([pair.label for pair in pairs], dtype=np.int8)


def _threshold_pairs(
    scorer: Scorer, root: Path | None, scored_list: PairList, threshold_from: Path | None
) -> tuple[list[Pair], str, str] | None:
    """The pairs to choose the threshold on, the kind of source and a line naming them: `--threshold-from`, else
    the run's validation pairs, else the training side of View 1; None when there are none."""
    if threshold_from is not None:
        return list(load_pairs(threshold_from).pairs), "list", Path(threshold_from).name
    held_out = scorer.run.validation_pairs(root) if scorer.run is not None and root is not None else None
    if held_out is not None:
        return held_out[0], "validation", held_out[1]
    training = root / TRAINING_SIDE if root is not None else None
    if training is not None and training.is_file() and scored_list.name != TRAINING_SIDE:
        return list(load_pairs(training).pairs), "protocol", f"{TRAINING_SIDE} (the training side of View 1)"
    return None


def _chosen_threshold(
    scorer: Scorer,
    root: Path | None,
    scored_list: PairList,
    threshold_from: Path | None,
    far: float | None,
    skip_missing: bool,
    warnings: list[str],
) -> tuple[float | None, ThresholdSource | None]:
    """The operating threshold for a View 1 list (or one fold), and where it came from; (None, None) leaves a
    probability at 0.5. Anything else without a source is one line saying what to give."""
    kind = scorer.facts.score_kind
    found = _threshold_pairs(scorer, root, scored_list, threshold_from)
    if found is None:
        if kind == "probability" and far is None:
            return None, None
        raise LfwbenchError(
            f"{scorer.facts.name}: no pairs to choose a threshold on for {scored_list.name}: give --threshold-from "
            f"LIST (pairs of other people, such as {TRAINING_SIDE}), a --data root holding {TRAINING_SIDE}, or "
            "score View 2 with --view2 pairs.txt (each fold's threshold from the other nine)"
        )
    pairs, source_kind, description = found
    scored = scorer.score(pairs, description.split(" ")[0], skip_missing, False)
    _both_classes(scored, description)
    shared = people_of(scored.pairs) & scored_list.people
    if shared and source_kind != "validation":
        warnings.append(
            f"the threshold was chosen on {description}, which shares {len(shared)} people with {scored_list.name}: "
            "the figures at it are no clean test figures"
        )
    threshold = choose_threshold(labels_of(scored.pairs), scored.scores, kind, far)
    return threshold, ThresholdSource(source_kind, description, len(scored.pairs), far)


def files_read(scorers: list[Scorer], root: Path | None, lists: list[Path | None]) -> list[Path]:
    """Every file an evaluation reads: the inputs' own, the pair lists given, and the data root's lists."""
    found = [path for scorer in scorers for path in scorer.inputs] + [path for path in lists if path is not None]
    return found + (protocol_files(root) if root is not None else [])


def evaluate(
    model: Scorer | Path,
    root: Path | None,
    pairs_path: Path | None = None,
    *,
    batch_size: int = 64,
    flip: bool = False,
    threshold_from: Path | None = None,
    skip_missing: bool = False,
    engine: str = "auto",
    progress: bool = True,
    fold: int = 0,
    view2: bool = False,
    far: float | None = None,
) -> Results:
    """Score every pair of `pairs_path` (default: pairsDevTest.txt in `root`) and compute all metrics.

    `model` is a Scorer, or an lfwbench checkpoint opened with `engine`, `batch_size` and `flip`. The decision
    threshold is never chosen on the scored pairs: it comes from `threshold_from`, else the run's validation pairs,
    else the protocol's training side (pairsDevTrain.txt for a View 1 list; for a View 2 list each fold's threshold
    from the other folds); `far` holds it to that false accept rate there instead of best accuracy. With `fold`
    only that fold of a View 2 list is reported (`crossval` scores each fold's model so); `view2` refuses a list
    of one fold. `root` may be None for precomputed inputs given their lists.
    """
    timings = {}
    started = time.perf_counter()
    scorer = (
        open_input("model", model, root, engine=engine, batch_size=batch_size, flip=flip)
        if isinstance(model, Path)
        else model
    )
    kind = scorer.facts.score_kind
    timings["load_model"] = time.perf_counter() - started

    started = time.perf_counter()
    if pairs_path is None and root is None:
        raise LfwbenchError("no pair list: give --pairs FILE, --view2 pairs.txt or a --data root")
    pairs_path = Path(pairs_path or root / "pairsDevTest.txt")
    pair_list = load_pairs(pairs_path)
    if view2 and pair_list.folds < 2:
        raise LfwbenchError(
            f"{pair_list.name}: not a View 2 list (one fold, header '{pair_list.per_fold}'); use --pairs"
        )
    if fold and fold > pair_list.folds:
        raise LfwbenchError(f"{pair_list.name}: no fold {fold} (it has {pair_list.folds})")
    warnings = list(scorer.notes)
    held_out = scorer.run is not None and root is not None and scorer.run.validation_pairs(root) is not None
    per_fold = pair_list.folds > 1 and threshold_from is None and not held_out
    wanted = [pair for pair in pair_list.pairs if per_fold or not fold or pair.fold == fold - 1]
    timings["parse"] = time.perf_counter() - started

    started = time.perf_counter()
    scored = scorer.score(wanted, pair_list.name, skip_missing, progress)
    _both_classes(scored, pair_list.name)
    timings["infer"] = time.perf_counter() - started
    timings["images_per_second"] = scored.distinct_images * (2 if flip else 1) / max(timings["infer"], 1e-9)

    started = time.perf_counter()
    labels, scores = labels_of(scored.pairs), scored.scores
    folds = np.array([pair.fold for pair in scored.pairs])
    if per_fold:
        chosen = fold_thresholds(labels, scores, folds, kind, far)
        threshold = np.array([chosen[fold] for fold in folds])  # each pair judged at its own fold's
        others = f"the other {pair_list.folds - 1} folds of {pair_list.name}, each fold its own"
        source = ThresholdSource("protocol", others, int(len(scores) * (pair_list.folds - 1) / pair_list.folds), far)
    else:
        threshold, source = _chosen_threshold(scorer, root, pair_list, threshold_from, far, skip_missing, warnings)
    timings["validation_threshold"] = time.perf_counter() - started

    started = time.perf_counter()
    kept = folds == fold - 1 if fold else np.ones(len(scores), bool)
    pairs = [pair for pair, keep in zip(scored.pairs, kept, strict=True) if keep]
    labels, scores, folds = labels[kept], scores[kept], folds[kept]
    if isinstance(threshold, np.ndarray):
        threshold = threshold[kept]
        if len(np.unique(threshold)) == 1:  # one fold of a View 2 list: one threshold
            threshold = float(threshold[0])
    metrics = summarise(labels, scores, threshold, kind)
    metrics.threshold_source = source
    if isinstance(threshold, np.ndarray):
        metrics.fold_thresholds = [float(threshold[folds == k][0]) if (folds == k).any() else None
                                   for k in range(pair_list.folds)]  # fmt: skip
    metrics.warnings = warnings + metrics.warnings
    if pair_list.folds > 1 and not fold:
        metrics.view2 = view2_folds(labels, scores, folds, kind)
    timings["metrics"] = time.perf_counter() - started

    evaluated_people = people_of(pairs)
    training_people = scorer.run.training_people(root) if scorer.run is not None and root is not None else None
    overlap = sorted((training_people or set()) & evaluated_people)
    leakage = {"checked": training_people is not None, "people_in_training_and_evaluation": len(overlap),
               "examples": overlap[:10]}  # fmt: skip
    if overlap:
        metrics.warnings.append(f"leakage: {len(overlap)} people of {pair_list.name} were in the training lists")

    predicted = verdicts(scores, 0.5 if threshold is None else threshold, kind)
    records = [
        PairRecord(pair.name1, pair.index1, pair.name2, pair.index2, pair.fold + 1, int(pair.label == SAME),
                   float(score), int(guess), pair.line)
        for pair, score, guess in zip(pairs, scores, predicted, strict=True)
    ]  # fmt: skip
    variant = find_variant(root)[0] if root is not None else ""
    run_config = scorer.run.config if scorer.run is not None else None
    split = (run_config.val_fraction, run_config.split_seed) if run_config is not None else (VAL_FRACTION, 0)
    return Results(
        model=scorer.facts,
        data=DataFacts(
            root=str(root.resolve()) if root is not None else "",
            variant=variant,
            pair_list=str(pairs_path),
            pair_list_name=pair_list.name,
            pair_list_md5=file_md5(pairs_path),
            folds=pair_list.folds,
            fold=fold,
            distinct_images=scored.distinct_images,
            skipped_pairs=[
                {"line": pair.line, "reason": reason}
                for pair, reason in scored.skipped
                if not fold or pair.fold == fold - 1
            ],
            stats=data_stats(root, *split) if root is not None else {},
        ),
        metrics=metrics,
        pairs=records,
        settings=Settings(batch_size, flip, skip_missing),
        training=scorer.run.as_training() if scorer.run is not None else {},
        leakage=leakage,
        timings=timings,
        versions=library_versions(),
        environment=environment(),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
