"""lfwbench's own checkpoints as scorers: the int8 bundle (no TensorFlow), or float32 Keras; the run folder beside a
checkpoint gives its validation pairs, training people and history."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from lfwbench.checkpoints import read_stamp
from lfwbench.engine import (
    Bundle,
    LiteTwin,
    ModelSummary,
    bundle_files,
    embed_batches,
    head_scores,
    read_bundle,
    write_bundle,
)
from lfwbench.errors import CheckpointError
from lfwbench.files import file_digest
from lfwbench.images import ImageSpec, PairImages, cached_pair_images, default_cache_dir, find_variant
from lfwbench.pairs import Pair
from lfwbench.presets import PRESETS
from lfwbench.results import ModelFacts
from lfwbench.runs import Run, read_run, run_files
from lfwbench.scoring import ScoredPairs

ScorePairImages = Callable[[PairImages, bool], np.ndarray]


@dataclass
class CheckpointScorer:
    """A Siamese checkpoint lfwbench trained: images decoded as its stamp (or run) says, P(same) from its head."""

    facts: ModelFacts
    inputs: list[Path]
    run: Run | None
    image_dir: Path
    spec: ImageSpec
    score_images: ScorePairImages
    notes: list[str] = field(default_factory=list)

    def score(self, pairs: Sequence[Pair], source: str, skip_missing: bool, progress: bool) -> ScoredPairs:
        loaded = cached_pair_images(pairs, self.image_dir, self.spec, source, skip_missing, progress)
        return ScoredPairs(loaded.pairs, self.score_images(loaded, progress), loaded.skipped, len(loaded.paths))


ENGINE_NAMES = {"int8": "int8 (TFLite weights, XNNPACK on the CPU)", "float32": "float32 (TFLite, XNNPACK on the CPU)"}


def _bundle_engine(bundle: Bundle, batch_size: int, flip: bool) -> tuple[ScorePairImages, ModelSummary, str]:
    twin = LiteTwin(bundle.tflite, (batch_size, *bundle.facts.input_shape))
    weights = 1 if bundle.facts.head == "cosine" else twin.width
    if len(bundle.facts.head_kernel) != weights:
        raise ValueError(f"head_kernel of {len(bundle.facts.head_kernel):,} weights for embeddings of {twin.width:,}")

    def score(pairs: PairImages, progress: bool) -> np.ndarray:
        embeddings = embed_batches(twin, pairs.images, batch_size, flip, progress)
        return head_scores(bundle.facts, embeddings, pairs.left, pairs.right)

    facts = replace(bundle.facts.model, input_shape=bundle.facts.input_shape)
    return score, facts, ENGINE_NAMES[bundle.facts.precision]


def committed_bundle(run: Run | None, stem: Path, precision: str) -> bool:
    """Whether the run's manifest lists the bundle at `stem`, both files with their sha256: only then is a bundle
    beside a checkpoint used (its JSON alone could say anything of itself)."""
    paths = bundle_files(stem, precision)
    return run is not None and all(path.is_file() and run.files.get(path.name) == file_digest(path) for path in paths)


def _engine(
    model_path: Path, sha256: str, engine: str, preset: str | None, batch_size: int, flip: bool, warn, run: Run | None
) -> tuple[ScorePairImages, ModelSummary, str]:
    """The fastest way to score with this checkpoint on this machine: on a CPU, a TFLite twin of the precision asked
    (no TensorFlow at all where a stored bundle exists); on an NVIDIA GPU, float32 Keras.

    `auto` picks float32 where a GPU is present or for a preset whose int8 verdicts were not shown to agree with
    float32's (`Preset.int8_agrees`), else int8; a checkpoint converted for the first time has its bundle stored in
    the cache, keyed by its sha256. A bundle that does not belong to the checkpoint, or that fails to load, is
    passed over with a warning and rebuilt into the cache.
    """
    gpu = shutil.which("nvidia-smi") is not None
    if engine == "auto":
        known = PRESETS.get(preset or "")
        engine = "float32" if gpu or (known is not None and not known.int8_agrees) else "int8"
    cached = default_cache_dir() / f"twin-{sha256[:24]}"
    lite = not (gpu and engine == "float32")
    if lite:
        beside = model_path.with_suffix("")
        for stem in (beside, cached):
            files = bundle_files(stem, engine)
            if stem == beside and any(path.exists() for path in files) and not committed_bundle(run, stem, engine):
                warn(f"{files[0].name}: not a bundle the run beside it committed; ignored, the twin is converted again")
                continue
            bundle, problem = read_bundle(stem, sha256, engine)
            if problem:
                warn(f"{problem}; ignored, the twin is converted again")
            if bundle is not None:
                try:
                    return _bundle_engine(bundle, batch_size, flip)
                except (ValueError, RuntimeError) as error:
                    warn(f"{files[0]}: unusable ({error}); ignored, the twin is converted again")
    from lfwbench.checkpoints import load_model
    from lfwbench.inference import export_bundle, keras_engine, model_facts, score_pairs

    model = load_model(model_path)
    preset = preset or model.name.removeprefix("siamese_")
    if lite:
        bundle = export_bundle(model, [sha256], preset, engine)
        try:
            write_bundle(cached, bundle)
        except OSError as error:  # a cache that cannot be written costs the next run a conversion, nothing more
            warn(f"{error.filename or cached}: {engine} twin not cached ({error.strerror}); converted again next time")
        return _bundle_engine(bundle, batch_size, flip)
    embed = keras_engine(model)

    def score(pairs: PairImages, progress: bool) -> np.ndarray:
        verbose = "auto" if progress else 0
        return score_pairs(model, pairs.images, pairs.left, pairs.right, batch_size, flip, verbose, embed)

    return score, model_facts(model, preset), "float32 (Keras on the GPU)"


def model_name(path: Path) -> str:
    """`best.keras` is named by its run folder (`cpu-seed0/best`), any other checkpoint by its file name."""
    return f"{path.parent.name}/{path.stem}" if path.stem in ("best", "last") else path.stem


def open_checkpoint(
    model_path: Path, root: Path, engine: str = "auto", batch_size: int = 64, flip: bool = False
) -> CheckpointScorer:
    """An lfwbench checkpoint (or the original notebook's Keras 2 `.h5`) as a scorer of the images under `root`."""
    sha256 = file_digest(model_path)
    run, notes = read_run(model_path, sha256)
    stamp = read_stamp(model_path)
    preset = run.config.preset if run is not None else stamp.preset if stamp is not None else None
    score, facts, engine_name = _engine(model_path, sha256, engine, preset, batch_size, flip, notes.append, run)
    size, _, channels = facts.input_shape
    spec = (
        stamp.spec if stamp is not None else run.config.image_spec if run is not None else ImageSpec(size, channels, 0)
    )
    if (spec.size, spec.channels) != (size, channels):
        raise CheckpointError(
            f"{model_path}: says it takes {spec.shape} images, but its model takes {size}x{size}x{channels}"
        )
    model = ModelFacts(
        name=model_name(model_path), kind="lfwbench checkpoint", path=str(model_path), sha256=sha256,
        score_kind="probability", engine=engine_name, preprocessing=spec.describe() + ", scaled to [0, 1] by the model",
        preset=facts.preset, parameters=facts.parameters, twin_parameters=facts.twin_parameters,
        input_shape=list(spec.shape), layers=facts.layers,
    )  # fmt: skip
    inputs = run_files(model_path)
    return CheckpointScorer(model, inputs, run, find_variant(root)[1], spec, score, notes)
