"""results.json and crossval.json: the contract between `evaluate`, `crossval` and `report`, as dataclasses that
round-trip through JSON (dacite rebuilds them, checking every field's type)."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import dacite

from lfwbench.errors import LfwbenchError
from lfwbench.files import csv_text, json_text, write_json, write_texts
from lfwbench.machine import Environment
from lfwbench.metrics import Metrics, Rates, direction, mean_and_spread, shown

SCHEMA_VERSION = 3  # 3: any input and kind of score (ModelFacts.kind, score_kind), pairs by image number; older: re-run
CROSSVAL_SCHEMA = 1
GATES = ("accuracy", "auc", "view2")  # what --fail-under may gate; accuracy is at the operating point
# the --predictions CSV: its first five columns are those of a --scores file, so it reads back as one
PREDICTION_COLUMNS = ("name1", "image1", "name2", "image2", "score", "fold", "label", "predicted")


@dataclass
class PairRecord:
    """One scored pair, its images numbered as in the pair list; `label` and `predicted` are 1 for the same person,
    0 for different people; `score` is in the input's own units (ModelFacts.score_kind)."""

    name1: str
    image1: int
    name2: str
    image2: int
    fold: int
    label: int
    score: float
    predicted: int
    line: int

    @property
    def correct(self) -> bool:
        return self.label == self.predicted


@dataclass
class ModelFacts:
    """What was scored: the kind of input and its file (sha256), the kind of score it gives, how pairs were compared
    (`metric`, for embeddings), what images were fed (`preprocessing`; None where another program computed them),
    what ran it; for a Keras model its preset, parameters and layers."""

    name: str
    kind: str
    path: str
    sha256: str
    score_kind: str
    engine: str
    metric: str | None = None
    preprocessing: str | None = None
    preset: str | None = None
    parameters: int | None = None
    twin_parameters: int | None = None
    input_shape: list[int] | None = None
    layers: list[dict] = field(default_factory=list)


@dataclass
class DataFacts:
    """What was scored: the data root and variant, the pair list (and View 2 fold), the pairs left out."""

    root: str
    variant: str
    pair_list: str
    pair_list_name: str
    pair_list_md5: str
    folds: int
    distinct_images: int
    skipped_pairs: list[dict]
    stats: dict
    fold: int = 0

    @property
    def scored_on(self) -> str:
        """`pairsDevTest.txt`, or `pairs.txt fold 3`."""
        return f"{self.pair_list_name} fold {self.fold}" if self.fold else self.pair_list_name


@dataclass
class Settings:
    """How it was scored."""

    batch_size: int
    flip_tta: bool
    skip_missing: bool


@dataclass
class Results:
    """Everything a report shows about one checkpoint on one pair list, without TensorFlow."""

    model: ModelFacts
    data: DataFacts
    metrics: Metrics
    pairs: list[PairRecord]
    settings: Settings
    training: dict = field(default_factory=dict)  # the run's config.json and history, as the run folder holds them
    leakage: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    environment: Environment | None = None
    created: str = ""
    schema_version: int = SCHEMA_VERSION

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def operating_point(self) -> Rates:
        return self.metrics.operating_point

    def threshold_of(self, pair: PairRecord) -> float:
        """The threshold that judged this pair: the operating one, or its View 2 fold's."""
        per_fold = self.metrics.fold_thresholds
        return per_fold[pair.fold - 1] if per_fold else self.operating_point.threshold

    def margin(self, pair: PairRecord) -> float:
        """How far the pair's score lies on the 'same' side of its threshold (negative: the 'different' side)."""
        return direction(self.model.score_kind) * (pair.score - self.threshold_of(pair))

    @property
    def operating_label(self) -> str:
        """Where the deciding threshold came from, and the threshold: what every headline says beside a figure."""
        source = self.metrics.threshold_source
        threshold = self.operating_point.threshold
        if source is None:
            return f"{threshold:.3f} (the model's own 0.5: no validation pairs)"
        far = f" for FAR {100 * source.far:g}%" if source.far else ""
        value = "" if threshold is None else f" {threshold:.4g}"
        return f"the threshold{far}{value} chosen on {source.description}"

    def gate_value(self, metric: str) -> tuple[float, str]:
        """The figure `--gate` compares with `--fail-under`, and a line naming it."""
        if metric == "accuracy":
            return self.operating_point.accuracy, f"accuracy at {self.operating_label}"
        if metric == "auc":
            return self.metrics.auc, "AUC"
        if self.metrics.view2 is None:
            raise LfwbenchError(f"{self.name}: --gate view2 needs a View 2 evaluation (--view2 pairs.txt)")
        return self.metrics.view2.mean, "View 2 mean accuracy over folds"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Results:
        return typed(cls, data, "evaluate")


def typed(cls, data: dict, command: str):
    """`cls` rebuilt from its JSON form; another schema or a field of the wrong type is one clear error."""
    expected = cls.schema_version
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != expected:
        raise LfwbenchError(
            f"written by another lfwbench (schema {version}; this one reads {expected}); re-run lfwbench {command}"
        )
    try:
        hooks = {float: lambda value: math.nan if value is None else value}  # an undefined figure is stored as null
        return dacite.from_dict(cls, data, config=dacite.Config(strict=True, type_hooks=hooks))  # unknown: refused
    except dacite.DaciteError as error:
        raise LfwbenchError(f"not a file of lfwbench {command} ({error})") from None


def write_results(path: str | Path, results: Results) -> None:
    write_json(path, results.to_dict())


def results_json(results: Results) -> str:
    """results.json's text."""
    return json_text(results.to_dict())


def read_results(path: str | Path) -> Results:
    path = Path(path)
    try:
        return Results.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except LfwbenchError as error:
        raise LfwbenchError(f"{path}: {error}") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise LfwbenchError(f"{path}: not an lfwbench results file ({error})") from None


def predictions_csv(results: Results) -> str:
    """One row per pair: name1,image1,name2,image2,score,fold,label,predicted (`--scores` reads it back)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(PREDICTION_COLUMNS)
    writer.writerows([getattr(pair, column) for column in PREDICTION_COLUMNS] for pair in results.pairs)
    return text.getvalue()


@dataclass
class FoldRow:
    """One View 2 fold scored by the model trained without its people, at the threshold chosen on validation pairs
    of the training people."""

    fold: int
    pairs: int
    accuracy: float
    threshold: float
    tpr: float
    tnr: float
    auc: float
    accuracy_at_half: float
    people_in_training: int
    minutes: float
    run: str


@dataclass
class Crossval:
    """A View 2 cross-validation: the per-fold rows, û ± SE over them, the ROC averaged over folds and pooled, and
    what produced it (configuration, machine)."""

    config: dict
    folds: list[FoldRow]
    folds_total: int
    summary: dict
    averaged_roc: dict
    pooled_roc: dict
    machine: dict
    created: str = ""
    schema_version: int = CROSSVAL_SCHEMA

    @property
    def regime(self) -> str:
        return self.config.get("regime", "unrestricted")

    def headline(self) -> str:
        """The line a paper quotes; fewer folds than the protocol's are said to be fewer, never passed off as all."""
        mean, error = self.summary["mean"], self.summary["standard_error"]
        over = (
            f"over {len(self.folds)} folds"
            if len(self.folds) == self.folds_total
            else (f"over {len(self.folds)} of {self.folds_total} folds, unfinished")
        )
        return f"View 2, {self.regime}, no outside data: {shown(mean)} ± {shown(error)} (û ± SE {over})"

    @classmethod
    def from_dict(cls, data: dict) -> Crossval:
        """The crossval as stored, its folds checked and its summary recomputed from them (never taken on trust)."""
        crossval = typed(cls, data, "crossval")
        if not crossval.folds:
            raise LfwbenchError("holds no folds; run lfwbench crossval")
        bad = [row.fold for row in crossval.folds if not 0 <= row.accuracy <= 1]  # NaN fails both comparisons
        if bad:
            raise LfwbenchError(f"fold {bad[0]}'s accuracy is not a number in [0, 1]; run lfwbench crossval again")
        crossval.summary = mean_and_spread([row.accuracy for row in crossval.folds])
        return crossval


def write_crossval(folder: Path, crossval: Crossval, json_name: str, csv_name: str) -> None:
    """crossval.json (everything) and crossval.csv (the per-fold table) in the runs folder, both or neither."""
    table = csv_text([asdict(row) for row in crossval.folds])
    write_texts({folder / json_name: json_text(asdict(crossval)), folder / csv_name: table})


def read_crossval(path: Path) -> Crossval:
    try:
        return Crossval.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except LfwbenchError as error:
        raise LfwbenchError(f"{path}: {error}") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise LfwbenchError(f"{path}: not an lfwbench crossval file ({error})") from None
