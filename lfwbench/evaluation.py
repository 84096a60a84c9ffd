"""`lfwbench evaluate`: score a pair list with a checkpoint and gather every figure and fact into Results."""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from lfwbench import __version__
from lfwbench.checkpoints import load_model
from lfwbench.dataset import data_stats
from lfwbench.files import file_digest
from lfwbench.images import ImageSpec, default_cache_dir, find_variant, load_pair_images
from lfwbench.inference import score_pairs
from lfwbench.metrics import best_threshold, summarise, view2_folds
from lfwbench.model import layer_table
from lfwbench.pairs import SAME, file_md5, load_pairs, load_people, people_of, split_by_person
from lfwbench.results import PairRecord, Results


def read_run(model_path: Path) -> dict:
    """The training run stored beside a checkpoint (config.json, history.json), or {} when there is none."""
    folder = model_path.parent
    if not (folder / "config.json").is_file():
        return {}
    run = {"config": json.loads((folder / "config.json").read_text())}
    if (folder / "history.json").is_file():
        run["history"] = json.loads((folder / "history.json").read_text())
    return run


def _training_people(run: dict, root: Path) -> set[str]:
    """The identities a run trained and validated on: its listed pairs, and its people list when unrestricted."""
    config = run.get("config", {}).get("config", {})
    people: set[str] = set()
    if (root / config.get("train_list", "")).is_file():
        people |= load_pairs(root / config["train_list"]).people
    if config.get("regime") == "unrestricted" and (root / config.get("people_list", "")).is_file():
        people |= {name for fold in load_people(root / config["people_list"]) for name, _ in fold}
    return people


def _validation_threshold(
    model, run: dict, root: Path, image_dir: Path, spec: ImageSpec, threshold_from, batch_size, flip
):
    """The accuracy-maximising threshold on validation pairs: `threshold_from`, else the run's held-out split."""
    config = run.get("config", {}).get("config", {})
    if threshold_from is not None:
        pairs, source = load_pairs(threshold_from).pairs, Path(threshold_from).name
    elif (root / config.get("train_list", "")).is_file():
        _, pairs = split_by_person(
            load_pairs(root / config["train_list"]).pairs, config["val_fraction"], config["seed"]
        )
        source = f"{config['train_list']} (validation people, fraction {config['val_fraction']}, seed {config['seed']})"
    else:
        return None, None
    loaded = load_pair_images(pairs, image_dir, spec, source, cache_dir=default_cache_dir(), progress=False)
    scores = score_pairs(model, loaded.images, loaded.left, loaded.right, batch_size, flip, verbose=0)
    return best_threshold(loaded.labels, scores), {"source": source, "pairs": len(loaded.pairs)}


def evaluate(
    model_path: Path,
    root: Path,
    pairs_path: Path | None = None,
    *,
    batch_size: int = 64,
    flip: bool = False,
    threshold_from: Path | None = None,
    skip_missing: bool = False,
    progress: bool = True,
) -> Results:
    """Score every pair of `pairs_path` (default: pairsDevTest.txt in `root`) and compute all metrics.

    The decision threshold is chosen on validation pairs, never on the evaluated ones; View 2 lists (several
    folds) also get the 10-fold protocol.
    """
    timings = {}
    started = time.perf_counter()
    model = load_model(model_path)
    run = read_run(model_path)
    stored = run.get("config", {})
    _, size, _, channels = model.get_layer("twin").input.shape
    spec = ImageSpec(size, channels, stored.get("config", {}).get("crop", 0) or 0)
    timings["load_model"] = time.perf_counter() - started

    started = time.perf_counter()
    pairs_path = Path(pairs_path or root / "pairsDevTest.txt")
    pair_list = load_pairs(pairs_path)
    variant, image_dir = find_variant(root)
    timings["parse"] = time.perf_counter() - started

    started = time.perf_counter()
    loaded = load_pair_images(
        pair_list.pairs, image_dir, spec, pair_list.name,
        skip_missing=skip_missing, cache_dir=default_cache_dir(), progress=progress,
    )  # fmt: skip
    timings["load_images"] = time.perf_counter() - started

    started = time.perf_counter()
    scores = score_pairs(model, loaded.images, loaded.left, loaded.right, batch_size, flip, "auto" if progress else 0)
    timings["infer"] = time.perf_counter() - started
    timings["images_per_second"] = len(loaded.paths) * (2 if flip else 1) / timings["infer"]

    started = time.perf_counter()
    threshold, threshold_source = _validation_threshold(
        model, run, root, image_dir, spec, threshold_from, batch_size, flip
    )
    timings["validation_threshold"] = time.perf_counter() - started

    started = time.perf_counter()
    labels = loaded.labels
    metrics = summarise(labels, scores, threshold)
    metrics["validation_threshold"] = threshold_source
    if pair_list.folds > 1:
        metrics["view2"] = view2_folds(labels, scores, np.array([pair.fold for pair in loaded.pairs]))
    timings["metrics"] = time.perf_counter() - started

    evaluated_people = people_of(loaded.pairs)
    overlap = sorted(_training_people(run, root) & evaluated_people)
    leakage = {"checked": bool(run), "people_in_training_and_evaluation": len(overlap), "examples": overlap[:10]}
    if overlap:
        metrics["warnings"].append(f"leakage: {len(overlap)} people of {pair_list.name} were in the training lists")

    predicted = (scores >= 0.5).astype(int)
    records = [
        PairRecord(
            pair.name1, str(loaded.paths[i]), pair.name2, str(loaded.paths[j]), pair.fold + 1,
            int(pair.label == SAME), float(score), int(guess), pair.line,
        )
        for pair, i, j, score, guess in zip(loaded.pairs, loaded.left, loaded.right, scores, predicted, strict=True)
    ]  # fmt: skip
    twin = model.get_layer("twin")
    return Results(
        model={
            "name": model_path.stem
            if model_path.stem not in ("best", "last")
            else f"{model_path.parent.name}/{model_path.stem}",
            "path": str(model_path),
            "sha256": file_digest(model_path),
            "preset": stored.get("config", {}).get("preset", model.name.removeprefix("siamese_")),
            "parameters": int(model.count_params()),
            "twin_parameters": int(twin.count_params()),
            "input_shape": list(spec.shape),
            "layers": layer_table(model),
        },
        data={
            "root": str(root.resolve()),
            "variant": variant,
            "pair_list": str(pairs_path),
            "pair_list_name": pair_list.name,
            "pair_list_md5": file_md5(pairs_path),
            "folds": pair_list.folds,
            "distinct_images": len(loaded.paths),
            "skipped_pairs": [{"line": pair.line, "reason": reason} for pair, reason in loaded.skipped],
            "stats": data_stats(
                root, stored.get("config", {}).get("val_fraction", 0.2), stored.get("config", {}).get("seed", 0)
            ),
        },
        metrics=metrics,
        pairs=records,
        settings={"batch_size": batch_size, "flip_tta": flip, "crop": spec.crop, "skip_missing": skip_missing},
        training=run,
        leakage=leakage,
        timings=timings,
        versions={"lfwbench": __version__, "tensorflow": tf.__version__, "keras": keras.__version__},
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
