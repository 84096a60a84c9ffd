"""TrainConfig: every choice a run depends on, its defaults and the lists of allowed values, written once here.

No TensorFlow: the CLI builds its options' choices from these lists, and run folders read a stored config back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from lfwbench.errors import LfwbenchError, brief
from lfwbench.images import ImageSpec
from lfwbench.presets import get_preset

REGIMES = ("restricted", "unrestricted")
SCHEDULES = ("constant", "cosine")
KEEPS = ("best", "last")
STRATEGIES = ("default", "mirrored", "multiworker")
# The numbers a run may have, lowest and highest (None: no bound), for the command line and stored configs alike.
COUNTS = {
    "epochs": (1, None), "batch_size": (1, None), "patience": (1, None), "pairs_per_epoch": (0, None),
    "identity_epochs": (0, None), "people_per_batch": (0, None), "images_per_person": (2, None), "fold": (0, 10),
    "seed": (0, 2**32 - 1), "split_seed": (0, 2**32 - 1),  # NumPy's generators take no negative seed
}  # fmt: skip
RATES = {
    "lr": (lambda v: v > 0, "above 0"),
    "dropout": (lambda v: 0 <= v < 1, "from 0 up to 1"),
    "twin_dropout": (lambda v: 0 <= v < 1, "from 0 up to 1"),
    "val_fraction": (lambda v: 0 < v < 1, "between 0 and 1"),
    "margin": (lambda v: 0 <= v <= 1, "from 0 to 1"),
    "zoom": (lambda v: 0 <= v < 1, "from 0 up to 1"),
    "min_delta": (lambda v: v >= 0, "0 or more"),
}
VAL_FRACTION = 0.2  # share of the training pairs held out for validation, by person, unless the preset says otherwise


@dataclass
class TrainConfig:
    """Every choice a run depends on; `None` fields take the preset's defaults (see `resolved`)."""

    preset: str = "cpu"  # the CLI's default too: every default of a run is written here once
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    dropout: float = 0.3
    twin_dropout: float = 0.0  # on the twin's features before its embedding layer, in training only
    patience: int | None = None
    min_delta: float = 0.01
    val_fraction: float | None = None
    seed: int = 0
    split_seed: int | None = None
    channels: int | None = None
    size: int | None = None
    crop: int | None = None
    regime: str | None = None
    pairs_per_epoch: int | None = None
    augment: bool | None = None
    zoom: float | None = None  # with augment: random zoom in or out by up to this fraction of the side; 0: none
    identity_epochs: int | None = None
    people_per_batch: int | None = None
    images_per_person: int | None = None
    margin: float | None = None  # CosFace margin of the identity loss beside the pair loss; 0: no identity loss
    schedule: str | None = None
    keep: str | None = None
    reduce_lr: bool = False
    mixed_precision: bool | None = None  # None: where the hardware computes in half precision natively
    strategy: str = "default"
    deterministic: bool = True
    train_list: str = "pairsDevTrain.txt"
    eval_list: str = "pairsDevTest.txt"
    people_list: str = "peopleDevTrain.txt"
    fold: int = 0  # View 2: the fold (1-10) held out of training and scored; 0 for View 1

    def resolved(self) -> TrainConfig:
        preset = get_preset(self.preset)
        defaults = {
            "size": preset.size,
            "channels": preset.channels,
            "crop": preset.crop,
            "patience": 6,
            "pairs_per_epoch": 0,
            "identity_epochs": 0,
            "people_per_batch": 0,
            "images_per_person": 4,
            "margin": 0.0,
            "zoom": 0.0,
            "val_fraction": VAL_FRACTION,
            "schedule": "constant",
            "keep": "best",
            "split_seed": self.seed,
            **preset.defaults,
        }
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update({name: defaults.get(name) for name, value in values.items() if value is None})
        config = TrainConfig(**values)
        config._check_numbers()
        choices = {"regime": REGIMES, "schedule": SCHEDULES, "keep": KEEPS, "strategy": STRATEGIES}
        for name, allowed in choices.items():
            if getattr(config, name) not in allowed:
                raise LfwbenchError(f"{name} must be one of {', '.join(allowed)}, not {getattr(config, name)!r}")
        if (config.identity_epochs or config.people_per_batch) and config.regime != "unrestricted":
            raise LfwbenchError(
                "identity epochs and person batches need the unrestricted regime (all images of the training people)"
            )
        if config.margin and not (config.people_per_batch and get_preset(config.preset).head == "cosine"):
            raise LfwbenchError("a margin loss needs person batches (--people-per-batch) and a cosine-head preset")
        if config.zoom and not config.augment:
            raise LfwbenchError("zoom is an augmentation: it needs --augment")
        if config.people_per_batch and config.strategy != "default":
            raise LfwbenchError("person batches train on one device; use pair batches with a tf.distribute strategy")
        if config.fold and config.train_list != config.eval_list:
            raise LfwbenchError("a View 2 fold trains on the other folds of the list it is scored on")
        if config.schedule == "cosine" and config.reduce_lr:
            raise LfwbenchError("choose one learning-rate schedule: cosine decay or reduce-lr on plateau")
        return config

    def _check_numbers(self) -> None:
        """Every count a whole number in its range, every rate a finite number in its range, the image one a model
        takes: a stored config is checked as the command line's options are."""
        for name, (low, high) in COUNTS.items():
            value = getattr(self, name)
            if type(value) is not int or value < low or (high is not None and value > high):
                words = f"{low} or more" if high is None else f"from {low} to {high}"
                raise LfwbenchError(f"{name} {brief(value)} is not a whole number {words}")
        for name, (allowed, words) in RATES.items():
            value = getattr(self, name)
            number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            if not (number and allowed(value)):
                raise LfwbenchError(f"{name} {brief(value)} is not a number {words}")
        try:
            self.image_spec.checked()
        except ValueError as error:
            raise LfwbenchError(str(error)) from None

    @property
    def evaluated(self) -> str:
        """What the run is scored on: `pairsDevTest.txt`, or `pairs.txt fold 3`."""
        return f"{self.eval_list} fold {self.fold}" if self.fold else self.eval_list

    @property
    def image_spec(self) -> ImageSpec:
        return ImageSpec(self.size, self.channels, self.crop)

    @property
    def person_batch(self) -> int:
        """Images per person batch (P x K); 0 when the run trains on drawn or listed pairs."""
        return self.people_per_batch * self.images_per_person

    @property
    def images_per_step(self) -> int:
        """Twin passes per training step: a person batch, or both images of each pair of a pair batch."""
        return self.person_batch or 2 * self.batch_size

    def steps_per_epoch(self, pairs: int) -> int:
        """Batches of an epoch of `pairs` training pairs: pair batches, or as many twin passes in person batches."""
        return 2 * pairs // self.person_batch if self.person_batch else pairs // self.batch_size


DEFAULTS = TrainConfig()  # what the command line shows as each option's default
