"""`lfwbench evaluate`: score a pair list with a checkpoint and gather every figure and fact into Results."""

from __future__ import annotations

import datetime
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lfwbench.checkpoints import read_stamp
from lfwbench.dataset import data_stats
from lfwbench.engine import Bundle, LiteTwin, bundle_files, embed_batches, head_scores, read_bundle, write_bundle
from lfwbench.errors import LfwbenchError
from lfwbench.files import file_digest
from lfwbench.images import ImageSpec, PairImages, default_cache_dir, find_variant, load_pair_images
from lfwbench.machine import environment, library_versions
from lfwbench.metrics import best_threshold, summarise, threshold_at_far, view2_folds
from lfwbench.pairs import SAME, file_md5, load_pairs, people_of
from lfwbench.presets import PRESETS
from lfwbench.results import DataFacts, ModelFacts, PairRecord, Results, Settings
from lfwbench.runs import Run, read_run


@dataclass
class Scorer:
    """Scores pairs of loaded images and knows the model's facts, whichever engine runs the twin."""

    score: Callable[[PairImages, bool], np.ndarray]
    facts: dict
    engine: str


def _bundle_scorer(bundle: Bundle, batch_size: int, flip: bool) -> Scorer:
    twin = LiteTwin(bundle.tflite, (batch_size, *bundle.facts["input_shape"]))

    def score(pairs: PairImages, progress: bool) -> np.ndarray:
        embeddings = embed_batches(twin, pairs.images, batch_size, flip, progress)
        return head_scores(bundle.facts, embeddings, pairs.left, pairs.right)

    facts = {**bundle.facts["model"], "input_shape": bundle.facts["input_shape"]}
    return Scorer(score, facts, "int8 (TFLite weights, XNNPACK on the CPU)")


def prepare_scorer(
    model_path: Path,
    sha256: str,
    engine: str,
    preset: str | None,
    batch_size: int,
    flip: bool,
    warn: Callable[[str], None] = lambda message: None,
) -> Scorer:
    """The fastest way to score with this checkpoint: a stored int8 bundle needs no TensorFlow at all.

    `auto` picks float32 Keras where an NVIDIA GPU is present or for a preset whose int8 verdicts were not shown to
    agree with float32's (`Preset.int8_agrees`), else the int8 TFLite twin; a checkpoint converted for the
    first time has its bundle stored in the cache, keyed by its sha256. A bundle that does not belong to the
    checkpoint, or that fails to load, is passed over with a warning and rebuilt into the cache.
    """
    gpu = shutil.which("nvidia-smi") is not None
    if engine == "auto":
        known = PRESETS.get(preset or "")
        engine = "float32" if gpu or (known is not None and not known.int8_agrees) else "int8"
    cached = default_cache_dir() / f"twin-{sha256[:24]}"
    if engine == "int8":
        for stem in (model_path.with_suffix(""), cached):
            bundle, problem = read_bundle(stem, sha256)
            if problem:
                warn(f"{problem}; ignored, the twin is converted again")
            if bundle is not None:
                try:
                    return _bundle_scorer(bundle, batch_size, flip)
                except (ValueError, RuntimeError) as error:
                    warn(f"{bundle_files(stem)[0]}: unusable ({error}); ignored, the twin is converted again")
    from lfwbench.checkpoints import load_model
    from lfwbench.inference import export_bundle, keras_engine, model_facts, score_pairs

    model = load_model(model_path)
    preset = preset or model.name.removeprefix("siamese_")
    if engine == "int8":
        bundle = export_bundle(model, [sha256], preset)
        write_bundle(cached, bundle)
        return _bundle_scorer(bundle, batch_size, flip)
    embed = keras_engine(model)

    def score(pairs: PairImages, progress: bool) -> np.ndarray:
        verbose = "auto" if progress else 0
        return score_pairs(model, pairs.images, pairs.left, pairs.right, batch_size, flip, verbose, embed)

    return Scorer(score, model_facts(model, preset), f"float32 (Keras on the {'GPU' if gpu else 'CPU'})")


def _validation_threshold(
    run: Run | None, root: Path, image_dir: Path, spec: ImageSpec, threshold_from, score, far: float | None
):
    """The threshold chosen on validation pairs (`threshold_from`, else the run's held-out split): the one that
    maximises accuracy there, or with `far` the lowest whose false accept rate there is at most `far`."""
    if threshold_from is not None:
        pairs, source = load_pairs(threshold_from).pairs, Path(threshold_from).name
    else:
        held_out = run.validation_pairs(root) if run is not None else None
        if held_out is None:
            return None, None
        pairs, source = held_out
    loaded = load_pair_images(pairs, image_dir, spec, source, cache_dir=default_cache_dir(), progress=False)
    scores = score(loaded, False)
    chosen = threshold_at_far(loaded.labels, scores, far) if far else best_threshold(loaded.labels, scores)
    return chosen, {"source": source, "pairs": len(loaded.pairs), "far": far}


def evaluate(
    model_path: Path,
    root: Path,
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

    The decision threshold is chosen on validation pairs, never on the evaluated ones; View 2 lists (several
    folds) also get the 10-fold protocol; with `fold` only that fold of a View 2 list is scored (`crossval` scores
    each fold's model so); `view2` refuses a list of one fold; `far` sets the operating point at that false accept
    rate on the validation pairs instead of at their best accuracy. `engine`: see `prepare_scorer`.
    """
    timings = {}
    started = time.perf_counter()
    checkpoint_sha256 = file_digest(model_path)
    run, notes = read_run(model_path, checkpoint_sha256)
    options = run.options if run is not None else {}
    stamp = read_stamp(model_path)
    preset = options.get("preset") or (stamp.preset if stamp is not None else None)
    scorer = prepare_scorer(model_path, checkpoint_sha256, engine, preset, batch_size, flip, notes.append)
    size, _, channels = scorer.facts["input_shape"]
    spec = stamp.spec if stamp is not None else run.image_spec if run is not None else ImageSpec(size, channels, 0)
    timings["load_model"] = time.perf_counter() - started

    started = time.perf_counter()
    pairs_path = Path(pairs_path or root / "pairsDevTest.txt")
    pair_list = load_pairs(pairs_path)
    if view2 and pair_list.folds < 2:
        raise LfwbenchError(
            f"{pair_list.name}: not a View 2 list (one fold, header '{pair_list.per_fold}'); use --pairs"
        )
    pairs = [pair for pair in pair_list.pairs if pair.fold == fold - 1] if fold else list(pair_list.pairs)
    if fold and not pairs:
        raise LfwbenchError(f"{pair_list.name}: no fold {fold} (it has {pair_list.folds})")
    variant, image_dir = find_variant(root)
    timings["parse"] = time.perf_counter() - started

    started = time.perf_counter()
    loaded = load_pair_images(
        pairs, image_dir, spec, pair_list.name,
        skip_missing=skip_missing, cache_dir=default_cache_dir(), progress=progress,
    )  # fmt: skip
    timings["load_images"] = time.perf_counter() - started
    if len(set(loaded.labels.tolist())) < 2:
        raise LfwbenchError(
            f"{pair_list.name}: only {'same' if loaded.labels[0] == SAME else 'different'}-person pairs are left to "
            "score (--skip-missing left out the others); accuracy, ROC and thresholds need both"
        )

    started = time.perf_counter()
    scores = scorer.score(loaded, progress)
    timings["infer"] = time.perf_counter() - started
    timings["images_per_second"] = len(loaded.paths) * (2 if flip else 1) / timings["infer"]

    started = time.perf_counter()
    threshold, threshold_source = _validation_threshold(run, root, image_dir, spec, threshold_from, scorer.score, far)
    timings["validation_threshold"] = time.perf_counter() - started

    started = time.perf_counter()
    labels = loaded.labels
    metrics = summarise(labels, scores, threshold)
    metrics.validation_threshold = threshold_source
    metrics.warnings = notes + metrics.warnings
    if pair_list.folds > 1 and not fold:
        metrics.view2 = view2_folds(labels, scores, np.array([pair.fold for pair in loaded.pairs]))
    timings["metrics"] = time.perf_counter() - started

    evaluated_people = people_of(loaded.pairs)
    overlap = sorted((run.training_people(root) if run is not None else set()) & evaluated_people)
    leakage = {"checked": run is not None, "people_in_training_and_evaluation": len(overlap), "examples": overlap[:10]}
    if overlap:
        metrics.warnings.append(f"leakage: {len(overlap)} people of {pair_list.name} were in the training lists")

    decisive = metrics.operating_point.threshold
    predicted = (scores >= decisive).astype(int)  # the operating point decides the verdicts, as in the headline
    records = [
        PairRecord(
            pair.name1, str(loaded.paths[i]), pair.name2, str(loaded.paths[j]), pair.fold + 1,
            int(pair.label == SAME), float(score), int(guess), pair.line,
        )
        for pair, i, j, score, guess in zip(loaded.pairs, loaded.left, loaded.right, scores, predicted, strict=True)
    ]  # fmt: skip
    return Results(
        model=ModelFacts(
            name=model_path.stem
            if model_path.stem not in ("best", "last")
            else f"{model_path.parent.name}/{model_path.stem}",
            path=str(model_path),
            sha256=checkpoint_sha256,
            preset=scorer.facts["preset"],
            parameters=scorer.facts["parameters"],
            twin_parameters=scorer.facts["twin_parameters"],
            input_shape=list(spec.shape),
            layers=scorer.facts["layers"],
        ),
        data=DataFacts(
            root=str(root.resolve()),
            variant=variant,
            pair_list=str(pairs_path),
            pair_list_name=pair_list.name,
            pair_list_md5=file_md5(pairs_path),
            folds=pair_list.folds,
            fold=fold,
            distinct_images=len(loaded.paths),
            skipped_pairs=[{"line": pair.line, "reason": reason} for pair, reason in loaded.skipped],
            stats=data_stats(root, options.get("val_fraction", 0.2), run.split_seed if run is not None else 0),
        ),
        metrics=metrics,
        pairs=records,
        settings=Settings(batch_size, flip, spec.crop, skip_missing, scorer.engine),
        training=run.as_training() if run is not None else {},
        leakage=leakage,
        timings=timings,
        versions=library_versions(),
        environment=environment(),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
