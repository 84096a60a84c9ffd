"""Train a Siamese checkpoint: by-person validation split, uint8 images through tf.data, resumable runs, grid search.

Each epoch commits `best.keras` and `best.h5` (no optimizer state), `last.keras` (with it, for `--resume`) and
the history to the run folder at once (`lfwbench.runs`); at the end, the int8 bundle lets `lfwbench evaluate` score
on a CPU without TensorFlow.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from lfwbench import __version__, runs
from lfwbench.checkpoints import load_model, save_model
from lfwbench.config import TrainConfig
from lfwbench.engine import PRECISIONS, bundle_writers
from lfwbench.errors import LfwbenchError
from lfwbench.files import file_digest, write_json
from lfwbench.images import default_cache_dir, find_variant, image_path, load_images, load_pair_images
from lfwbench.inference import export_bundle
from lfwbench.machine import native_bfloat16
from lfwbench.model import build_siamese
from lfwbench.pairs import file_md5, people_of
from lfwbench.person_batches import PairValidation, all_pairs_model, person_batches, with_pair_targets
from lfwbench.plan import identity_rows, plan_lists, sampled_pairs, triples
from lfwbench.presets import get_preset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSummary(runs.RunSummary):
    """What a run did (its summary.json fields, `best_*` the epoch that best.* hold, see `TrainConfig.keep`), with
    its folder and history."""

    out_dir: Path = field(kw_only=True)
    history: list[dict] = field(default_factory=list, kw_only=True)


@dataclass
class TrainingData:
    """All images a run needs (uint8, one array), index triples for validation and for each epoch, and, when the
    run has identity epochs or person batches, the image rows and class numbers of the identity classes."""

    images: np.ndarray
    val: tuple[np.ndarray, np.ndarray, np.ndarray]
    epoch_pairs: Callable[[int], tuple[np.ndarray, np.ndarray, np.ndarray]]
    facts: dict
    identities: tuple[np.ndarray, np.ndarray] | None = None


def prepare_data(config: TrainConfig, root: Path, progress: bool = True) -> TrainingData:
    """Load the images, split by person, refuse evaluation identities, and plan each epoch's pairs."""
    _, image_dir = find_variant(root)
    lists = plan_lists(root, config)
    train, val, pool_people = lists.train, lists.val, lists.pool
    leaked = sorted(lists.seen_people & lists.eval_people)
    if leaked:
        raise LfwbenchError(
            f"{len(leaked)} people of {config.evaluated} would be trained on (e.g. {', '.join(leaked[:3])}); "
            "train on people disjoint from the evaluation list"
        )
    cache = default_cache_dir()
    listed_images = load_pair_images(
        train + val, image_dir, config.image_spec, config.train_list, cache_dir=cache, progress=progress
    )
    n_train = len(train)
    left, right, labels = listed_images.left, listed_images.right, listed_images.labels
    val_triples = triples(left[n_train:], right[n_train:], labels[n_train:])
    images = listed_images.images
    facts = {
        "train_pairs": n_train,
        "val_pairs": len(val),
        "train_people": len(people_of(train)),
        "val_people": len(people_of(val)),
        "eval_list": config.evaluated,
        "eval_people_in_training_or_validation": len(leaked),
    }
    identities = None
    if config.regime == "restricted":
        base = triples(left[:n_train], right[:n_train], labels[:n_train])

        def epoch_pairs(epoch: int) -> tuple[np.ndarray, ...]:
            order = np.random.default_rng([config.seed, epoch]).permutation(n_train)
            return tuple(column[order] for column in base)

    else:
        paths = [image_path(image_dir, name, i) for name, count in pool_people for i in range(1, count + 1)]
        if not any(count for _, count in pool_people):  # no counts known: take what the folders hold
            paths = sorted(p for name, _ in pool_people for p in (image_dir / name).glob(f"{name}_*.jpg"))
        pool, failed = load_images(paths, config.image_spec, cache, progress)
        good = np.setdiff1d(np.arange(len(paths)), list(failed))
        owners = np.array([path.parent.name for path in paths])[good]
        offset = len(images)
        images = np.concatenate([images, pool[good]])
        people_rows = [offset + np.flatnonzero(owners == name) for name in sorted(set(owners))]
        count = config.pairs_per_epoch or 2 * n_train
        facts |= {"pool_people": len(people_rows), "pool_images": len(good), "pairs_per_epoch": count}
        if failed:
            index, reason = next(iter(failed.items()))
            facts["pool_images_unusable"] = len(failed)
            log.warning(f"{len(failed)} pool image(s) unusable, left out (e.g. {paths[index]}: {reason})")

        def epoch_pairs(epoch: int) -> tuple[np.ndarray, ...]:
            return sampled_pairs(people_rows, count, np.random.default_rng([config.seed, epoch]))

        if config.identity_epochs or config.people_per_batch:
            identities = identity_rows(people_rows)
            facts |= {"identity_classes": int(identities[1].max()) + 1, "identity_images": len(identities[0])}

    return TrainingData(images, val_triples, epoch_pairs, facts, identities)


def steps_per_epoch(config: TrainConfig, data: TrainingData) -> int:
    """Batches per epoch: `pairs_per_epoch` pairs, or as many twin passes in person batches."""
    pairs = len(data.epoch_pairs(0)[2])
    steps = config.steps_per_epoch(pairs)
    if steps == 0:
        batch = config.person_batch or config.batch_size
        raise LfwbenchError(f"a batch of {batch} exceeds the {pairs} training pairs per epoch")
    return steps


def training_set(config: TrainConfig, data: TrainingData, epochs: range, steps: int) -> tf.data.Dataset:
    """The batches of the given epochs, in order: drawn pairs, or person batches with every pair's target."""
    augment = None
    if config.augment:  # as the uninterrupted run has it at this epoch: two sides per pair batch, one per person batch
        augment = _augmenter(config)
        skip_draws(augment, config.image_spec.shape, epochs.start * steps * (1 if config.person_batch else 2))
    if config.person_batch:
        drawn = [
            person_batches(*data.identities, config.people_per_batch, config.images_per_person, steps,
                           np.random.default_rng([config.seed, 2, epoch]))
            for epoch in epochs
        ]  # fmt: skip
        columns = tuple(np.concatenate([epoch[i] for epoch in drawn]) for i in range(2))
        batch = config.person_batch
        return with_pair_targets(make_dataset(data.images, columns, batch, augment), batch, bool(config.margin))
    plan = [data.epoch_pairs(epoch) for epoch in epochs]
    triples = tuple(np.concatenate([p[i][: steps * config.batch_size] for p in plan]) for i in range(3))
    return make_dataset(data.images, triples, config.batch_size, augment)


def _augmenter(config: TrainConfig) -> keras.Sequential:
    """Mirror, small shifts and rotations, brightness, and (`config.zoom`) random resized crops: the changes a face
    crop tolerates."""
    seed = config.seed
    zoom = [keras.layers.RandomZoom(config.zoom, fill_mode="reflect", seed=seed)] if config.zoom else []
    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomTranslation(0.06, 0.06, fill_mode="reflect", seed=seed),
            keras.layers.RandomRotation(0.03, fill_mode="reflect", seed=seed),
            *zoom,
            keras.layers.RandomBrightness(0.1, value_range=(0, 255), seed=seed),
        ],
        name="augment",
    )


def _generator_states(model: keras.Model) -> list:
    """The state variables of a model's random generators (dropout, augmentation layers), in a stable order."""
    return [variable for variable in model.variables if variable.path.endswith("seed_generator_state")]


def random_state(model: keras.Model) -> list[list[int]]:
    """Where the model's random generators stand: checkpoints do not keep it, the run's manifest does."""
    return [variable.numpy().tolist() for variable in _generator_states(model)]


def restore_random_state(model: keras.Model, states: list[list[int]]) -> None:
    """Put the generators back where `random_state` found them (nothing for runs that did not record them)."""
    for variable, state in zip(_generator_states(model), states, strict=bool(states)):
        variable.assign(state)


def skip_draws(augment: keras.Sequential, shape: tuple[int, ...], calls: int) -> None:
    """Advance the augmentation generators as `calls` calls would: each call advances each generator by a fixed
    count (measured on one probe call), so a resumed run augments every batch as the uninterrupted run did."""
    if not calls:
        return
    before = random_state(augment)
    augment(np.zeros((1, *shape), np.float32), training=True)
    after = random_state(augment)
    advanced = [[a + (b - a) * calls for a, b in zip(*pair, strict=True)] for pair in zip(before, after, strict=True)]
    restore_random_state(augment, advanced)


def make_dataset(
    images: np.ndarray,
    columns: tuple[np.ndarray, ...],
    batch_size: int,
    augment: keras.Sequential | None = None,
) -> tf.data.Dataset:
    """Batches of `(inputs, label)` from index columns and a label column (the last): `((left, right), label)`
    for pairs, `(image, label)` for one column. uint8 rows are gathered per batch and cast to float32 on the fly."""
    table = tf.constant(images)

    def gather(*batch):
        *indices, label = batch
        inputs = [tf.cast(tf.gather(table, side), tf.float32) for side in indices]
        if augment is not None:
            inputs = [augment(side, training=True) for side in inputs]
        return (tuple(inputs) if len(inputs) > 1 else inputs[0]), label

    dataset = tf.data.Dataset.from_tensor_slices(columns).batch(batch_size)
    return dataset.map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def learning_rate(config: TrainConfig, steps: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The configured rate, constant or decayed along a cosine to zero over `steps`."""
    if config.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(config.lr, steps)
    return config.lr


def pretrain_identities(twin: keras.Model, data: TrainingData, config: TrainConfig, verbose: int | str) -> list[dict]:
    """Train the twin to name the training people (softmax over the identity classes) before it sees any pair.

    One label out of ~1,000 people says more per image than one same/different bit per pair; the classifier layer
    is dropped afterwards, so the checkpoint is the plain Siamese network.
    """
    rows, labels = data.identities
    steps = len(rows) // config.batch_size
    if steps == 0:
        raise LfwbenchError(f"batch size {config.batch_size} exceeds the {len(rows)} images of the identity classes")
    orders = [
        np.random.default_rng([config.seed, 1, epoch]).permutation(len(rows)) for epoch in range(config.identity_epochs)
    ]
    order = np.concatenate([o[: steps * config.batch_size] for o in orders])
    augment = _augmenter(config) if config.augment else None
    dataset = make_dataset(data.images, (rows[order], labels[order]), config.batch_size, augment)
    classifier = keras.Sequential(
        [twin, keras.layers.Dense(int(labels.max()) + 1, dtype="float32", name="identity")], name="identities"
    )
    classifier.compile(
        optimizer=keras.optimizers.Adam(learning_rate(config, steps * config.identity_epochs)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    fitted = classifier.fit(
        dataset, epochs=config.identity_epochs, steps_per_epoch=steps, shuffle=False, verbose=verbose
    )
    return [
        {"epoch": epoch + 1, **{name: float(values[epoch]) for name, values in fitted.history.items()}}
        for epoch in range(config.identity_epochs)
    ]


def native_mixed_precision() -> bool:
    """Whether this machine multiplies in half precision natively (a GPU, a CPU with AVX512-BF16 or AMX): there
    mixed precision trains about 1.5x faster (docs/performance.md)."""
    return bool(tf.config.list_physical_devices("GPU")) or native_bfloat16()


def compute_policy(mixed_precision: bool) -> str:
    """The Keras dtype policy of a run: float32, or float32 weights with float16 products on a GPU, bfloat16 on a
    CPU."""
    if not mixed_precision:
        return "float32"
    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"


def fitted_model(model: keras.Model, config: TrainConfig) -> keras.Model:
    """What `fit` trains: the Siamese model, or for person batches its all-pairs view, sharing its optimizer."""
    if not config.person_batch:
        return model
    fitted = all_pairs_model(model, config.person_batch, config.margin)
    fitted.compile(optimizer=model.optimizer, loss="binary_crossentropy", weighted_metrics=["accuracy"])
    return fitted


def make_strategy(name: str) -> tf.distribute.Strategy:
    """tf.distribute for one device, all local devices (GPUs, else the logical CPUs), or several hosts."""
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def early_stop_wait(val_losses: Sequence[float], min_delta: float) -> int:
    """Epochs since the last improvement of at least `min_delta`, as Keras's EarlyStopping counts them."""
    best, wait = math.inf, 0
    for value in val_losses:
        if value < best - min_delta:
            best, wait = value, 0
        else:
            wait += 1
    return wait


class RunRecorder(keras.callbacks.Callback):
    """After every epoch, one commit of the history, `last.keras` and `best.*` (the lowest val_loss so far, or with
    `keep="last"` every epoch); then early stopping.

    Early stopping is computed from the stored history, so it carries over a `--resume`.
    """

    def __init__(
        self,
        folder: runs.RunFolder,
        history: list[dict],
        config: TrainConfig,
        siamese: keras.Model,
        progress: Callable[[str], None] | None = None,
    ):
        super().__init__()
        self.folder, self.history, self.config, self.progress = folder, history, config, progress
        self.siamese = siamese  # what the checkpoints hold, whichever model `fit` trains
        self.stopped_early = False
        self.first_epoch = True

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        # the first step traces the graph: the expected finish is paced from the steps after it. A batch-begin hook,
        # as one at batch end would make Keras hand every step's logs to Python in step with the training
        if batch == 1:
            self.paced_from = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
        row["seconds"] = time.perf_counter() - self.started
        row["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self.history.append(row)
        spec = self.config.image_spec
        checkpoints = {runs.LAST_KERAS: lambda path: save_model(self.siamese, path, spec, include_optimizer=True)}
        if runs.kept_epoch(self.history, self.config.keep) is row:
            for name in (runs.BEST_KERAS, runs.BEST_H5):
                checkpoints[name] = lambda path: save_model(self.siamese, path, spec)
        self.folder.commit_history(row["epoch"], self.history, checkpoints, random_state(self.siamese))
        if self.progress is not None:
            self.progress(
                f"{self.folder.path.name}: epoch {row['epoch']}/{self.config.epochs} loss {row['loss']:.4f} "
                f"val_loss {row['val_loss']:.4f} val_accuracy {row.get('val_accuracy', float('nan')):.4f} "
                f"{row['seconds']:.0f} s"
            )
            if self.first_epoch and row["epoch"] < self.config.epochs:
                steps = self.params.get("steps") or 1
                pace = (time.perf_counter() - self.paced_from) * steps / (steps - 1) if steps > 1 else row["seconds"]
                left = (self.config.epochs - row["epoch"]) * pace
                finish = time.strftime("%H:%M", time.localtime(time.time() + left))
                self.progress(f"{self.folder.path.name}: about {left / 60:.0f} min more at this pace, done by {finish}")
            self.first_epoch = False
        if early_stop_wait([r["val_loss"] for r in self.history], self.config.min_delta) >= self.config.patience:
            self.stopped_early = self.model.stop_training = True


def run_record(config: TrainConfig, root: Path, facts: dict) -> runs.RunRecord:
    """What config.json records: the options, the data and lists with md5s, the split facts, the versions."""
    lists = {name: root / name for name in (config.train_list, config.eval_list, config.people_list)}
    return runs.RunRecord(
        config,
        get_preset(config.preset).to_dict(),
        list(config.image_spec.shape),
        str(root.resolve()),
        find_variant(root)[0],
        {name: file_md5(path) for name, path in lists.items() if path.is_file()},
        facts,
        {"lfwbench": __version__, "tensorflow": tf.__version__, "keras": keras.__version__},
    )


def train(
    config: TrainConfig,
    root: Path,
    out_dir: Path,
    *,
    mode: str = "new",
    verbose: int | str = "auto",
    progress: Callable[[str], None] | None = None,
) -> TrainSummary:
    """Train a run in `out_dir` and return its summary; `mode` (see `runs.writing`): `new` needs an empty folder,
    `resume` continues the run there from its last committed epoch (its stored options; `epochs` may grow),
    `overwrite` replaces it. `progress` gets one line per committed epoch."""
    with runs.writing(out_dir, mode) as folder:
        return _train(config, root, folder, mode == "resume", verbose, progress)


def _train(
    config: TrainConfig,
    root: Path,
    folder: runs.RunFolder,
    resume: bool,
    verbose: int | str,
    progress: Callable[[str], None] | None,
) -> TrainSummary:
    out_dir = folder.path
    history = folder.history() if resume else []
    if resume:
        stored = folder.read_config().config
        config = replace(stored, epochs=config.epochs or stored.epochs)
    config = config.resolved()
    native = native_mixed_precision()
    if config.mixed_precision is None:  # recorded resolved, so a resume elsewhere computes as the run began
        config = replace(config, mixed_precision=native)
    if config.mixed_precision and not native:  # emulated bfloat16 is slower than float32, where it runs at all
        raise LfwbenchError(
            "mixed precision needs a GPU or a CPU with AVX512-BF16 or AMX, and this machine has neither: "
            "train with --no-mixed-precision (a run begun with it resumes on such a machine only)"
        )
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    data = prepare_data(config, root, progress=verbose != 0)
    if not resume:
        write_json(folder / runs.CONFIG, run_record(config, root, data.facts).to_dict())
    steps = steps_per_epoch(config, data)
    val_set = make_dataset(data.images, data.val, config.batch_size)
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(compute_policy(config.mixed_precision))
    try:
        with make_strategy(config.strategy).scope():
            if history:
                model = load_model(folder / runs.LAST_KERAS, compile=True)
                committed = folder.manifest()
                restore_random_state(model, committed.random_state if committed else [])
            else:
                model = build_siamese(
                    config.preset,
                    config.image_spec.shape,
                    lr=learning_rate(config, steps * config.epochs),
                    dropout=config.dropout,
                    twin_dropout=config.twin_dropout,
                    seed=config.seed,
                    identities=int(data.identities[1].max()) + 1 if config.margin else 0,
                )
                if config.identity_epochs:
                    identity = pretrain_identities(model.get_layer("twin"), data, config, verbose)
                    write_json(folder / runs.IDENTITY_HISTORY, identity)
            fitted = fitted_model(model, config)
        recorder = RunRecorder(folder, history, config, model, progress)
        callbacks: list[keras.callbacks.Callback] = [PairValidation(model, val_set)] if fitted is not model else []
        callbacks.append(recorder)
        if config.reduce_lr:
            callbacks.append(
                keras.callbacks.ReduceLROnPlateau(
                    factor=0.5, patience=max(1, config.patience // 2), min_delta=config.min_delta
                )
            )
        started = time.perf_counter()
        if len(history) < config.epochs:
            fitted.fit(
                training_set(config, data, range(len(history), config.epochs), steps),
                validation_data=None if fitted is not model else val_set,
                epochs=config.epochs,
                initial_epoch=len(history),
                steps_per_epoch=steps,
                callbacks=callbacks,
                shuffle=False,  # each epoch's pairs are already drawn in a seeded order
                verbose=verbose,
            )
    finally:
        keras.mixed_precision.set_global_policy(policy)
    if get_preset(config.preset).fitted_cosine:
        fit_cosine_head(folder, config, data)
    write_inference_bundle(folder, config.preset)
    best = runs.kept_epoch(history, config.keep)
    return TrainSummary(
        epochs_run=len(history),
        best_epoch=best["epoch"],
        best_val_loss=best["val_loss"],
        best_val_accuracy=best.get("val_accuracy", float("nan")),
        seconds_per_epoch=float(np.mean([row["seconds"] for row in history])),
        seconds=time.perf_counter() - started,
        stopped_early=recorder.stopped_early,
        out_dir=out_dir,
        history=history,
    )


MIN_COSINE_SCALE = 1e-3  # a fitted cosine head's least s: ensembles merge cosine heads of positive s only


def fit_cosine_head(folder: runs.RunFolder, config: TrainConfig, data: TrainingData) -> None:
    """Give best.keras/.h5 a cosine head, P(same) = sigmoid(s cos(a, b) + c), with s and c fitted by logistic
    regression on the validation pairs' cosines (the twin unchanged), committed with the run's last epoch.

    Idempotent: a resumed finished run fits the same head again from the same twin."""
    from sklearn.linear_model import LogisticRegression

    trained = load_model(folder / runs.BEST_KERAS)
    preset = replace(get_preset(config.preset), head="cosine")
    model = build_siamese(preset, config.image_spec.shape, compile=False)
    model.get_layer("twin").set_weights(trained.get_layer("twin").get_weights())
    left, right, labels = data.val
    rows, sides = np.unique(np.concatenate([left, right]), return_inverse=True)
    embeddings = model.get_layer("twin").predict(data.images[rows], verbose=0)
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    cosines = (unit[sides[: len(left)]] * unit[sides[len(left) :]]).sum(axis=1, keepdims=True)
    fit = LogisticRegression(C=1e4).fit(cosines, labels)
    scale, bias = float(fit.coef_.item()), float(fit.intercept_.item())
    if scale < MIN_COSINE_SCALE:  # no model worth merging, but a valid one: its scores still rise with the cosine
        log.warning(f"{folder.path.name}: the validation cosines do not tell same from different (fitted s "
                    f"{scale:.3g}); s set to {MIN_COSINE_SCALE}")  # fmt: skip
        scale = MIN_COSINE_SCALE
    model.get_layer("head").get_layer("same").set_weights([np.array([[scale]]), np.array([bias])])
    spec, committed = config.image_spec, folder.manifest()
    writers = {name: lambda path: save_model(model, path, spec) for name in (runs.BEST_KERAS, runs.BEST_H5)}
    folder.commit(committed.epoch, committed.history, writers, committed.random_state)
    log.info(f"{folder.path.name}: cosine head fitted on {len(labels)} validation pairs: s {scale:.2f}, c {bias:.2f}")


def write_inference_bundle(folder: runs.RunFolder, preset: str) -> None:
    """best.int8.* and best.float32.* (TFLite twin and JSON each): the best checkpoint ready for TensorFlow-free CPU
    evaluation, committed with the run's last epoch, so that the manifest vouches for the bundles (a bundle cannot
    vouch for itself)."""
    checkpoints = [folder / runs.BEST_KERAS, folder / runs.BEST_H5]
    model, digests = load_model(checkpoints[0]), [file_digest(path) for path in checkpoints]
    writers = {}
    for precision in PRECISIONS:
        writers |= bundle_writers(checkpoints[0].with_suffix(""), export_bundle(model, digests, preset, precision))
    committed = folder.manifest()
    folder.commit(committed.epoch, committed.history, writers, committed.random_state)
