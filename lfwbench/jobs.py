"""Independent training jobs, search trials and View 2 folds, run one after another here or as Ray tasks.

A job trains (or resumes, or reads back) one run folder and, for a fold, scores the held-out fold once its model is
final. On a Ray cluster every task writes under the same runs folder, which must therefore be a filesystem all
machines share: the driver checks that it sees what each task wrote.
"""

from __future__ import annotations

import datetime
import itertools
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from lfwbench import runs
from lfwbench.config import TrainConfig
from lfwbench.errors import LfwbenchError
from lfwbench.files import FolderLock, file_digest, write_csv, write_json
from lfwbench.machine import describe
from lfwbench.metrics import averaged_roc, mean_and_spread, roc_points
from lfwbench.pairs import VIEW2_LIST, VIEW2_PEOPLE, load_pairs
from lfwbench.plan import fold_pairs
from lfwbench.presets import get_preset
from lfwbench.results import Crossval, FoldRow, Results, read_results, write_crossval

Report = Callable[[str], None]
log = logging.getLogger(__name__)


@dataclass
class Job:
    """One run to train into `folder`; with `config.fold` and `score`, its fold is scored afterwards."""

    config: TrainConfig
    root: Path
    folder: Path
    score: bool = True  # an ensemble's members are not: their merged model is


@dataclass
class JobResult:
    folder: Path
    summary: runs.RunSummary


def progress_line(message: str) -> None:
    """A training job's epoch lines, through the library's channel (a Ray task's stay on its worker)."""
    log.info(message)


def _readable(path: Path) -> bool:
    """Whether a fold's results can be read back; one written by an older lfwbench is scored again (the model and
    its threshold are final, so the figures are the same)."""
    try:
        read_results(path)
    except LfwbenchError:
        return False
    return True


def _summary(path: Path) -> runs.RunSummary | None:
    """A finished job's summary.json, or None where it is missing or damaged (the job then finishes again)."""
    try:
        return runs.RunSummary.parse(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, RecursionError):
        return None


def run_job(job: Job) -> JobResult:
    """Train the job's run (resuming an interrupted one, reading back a finished one), then score its fold."""
    from lfwbench.training import train

    folder, done = runs.RunFolder(job.folder), job.folder / runs.SUMMARY
    if folder.is_run():  # finished or not, a run of other options is never passed off as this job's
        stored = folder.read_config().config
        asked = job.config.resolved()
        if asked.mixed_precision is None:  # left to the machine: whatever the run's machine chose
            asked = replace(asked, mixed_precision=stored.mixed_precision)
        if replace(stored, epochs=None) != replace(asked, epochs=None) or stored.epochs > asked.epochs:
            raise LfwbenchError(f"{job.folder}: holds a run with other options; choose another runs folder")
        if stored.epochs < asked.epochs:  # more epochs asked: the run resumes to them, its summary is stale
            done.unlink(missing_ok=True)
            (job.folder / runs.FOLD_RESULTS).unlink(missing_ok=True)
    summary = _summary(done)
    if summary is None:
        mode = "resume" if folder.is_run() else "new"
        result = train(job.config, job.root, job.folder, mode=mode, verbose=0, progress=progress_line)
        summary = runs.RunSummary(**{f.name: getattr(result, f.name) for f in fields(runs.RunSummary)})
        write_json(done, asdict(summary))
    if job.config.fold and job.score:
        score_fold(job.folder, job.root, job.config)
    return JobResult(job.folder, summary)


def score_fold(folder: Path, root: Path, config: TrainConfig) -> None:
    """Score the View 2 fold of the model in `folder` once (its results.json), unless a readable one is there."""
    if _readable(folder / runs.FOLD_RESULTS):
        return
    from lfwbench.evaluation import evaluate
    from lfwbench.results import write_results

    results = evaluate(folder / runs.BEST_KERAS, root, root / config.eval_list, fold=config.fold, progress=False)
    write_results(folder / runs.FOLD_RESULTS, results)


def training_minutes(folder: Path) -> float:
    """Minutes the run's committed epochs took to train, across its resumes."""
    return sum(row.get("seconds", 0.0) for row in runs.RunFolder(folder).history()) / 60


def member_configs(config: TrainConfig) -> list[TrainConfig]:
    """The seeds of a preset's ensemble (`Preset.members`): seed, seed + 1, ..., all on the first one's validation
    split, so that the merged model's threshold is chosen on pairs none of them trained on."""
    resolved = config.resolved()
    count = get_preset(config.preset).members
    return [replace(config, seed=resolved.seed + i, split_seed=resolved.split_seed) for i in range(count)]


def merge_fold(members: Sequence[Path], folder: Path, root: Path, config: TrainConfig) -> None:
    """Merge a fold's trained members into `folder` (once) and score the fold with the merged model."""
    from lfwbench.ensemble import write_ensemble

    checkpoints = [member / runs.BEST_KERAS for member in members]
    merged = runs.RunFolder(folder)
    if merged.is_run():  # read back only the merge of these members (by folder name: --runs may be spelt otherwise)
        stored = merged.read_config().ensemble
        if [Path(m.checkpoint).parent.name for m in stored] != [member.name for member in members]:
            raise LfwbenchError(f"{folder}: holds a run other than the merge of {', '.join(m.name for m in members)}")
        if [m.sha256 for m in stored] == [file_digest(path) for path in checkpoints]:
            return score_fold(folder, root, config)
        (folder / runs.FOLD_RESULTS).unlink(missing_ok=True)  # a member trained on: merged and scored again
    write_ensemble(checkpoints, folder, overwrite=merged.is_run())
    score_fold(folder, root, config)


@dataclass
class Runner:
    """Where jobs run: here, one after another (`ray` None), or as Ray tasks (`ray` an address, "" for a local
    cluster or $RAY_ADDRESS), each asking for `cpus` and `gpus`."""

    ray: str | None = None
    cpus: float = 1
    gpus: float = 0

    def run(self, jobs: Sequence[Job], report: Report) -> list[JobResult]:
        if self.ray is None:
            results = []
            for number, job in enumerate(jobs, start=1):
                report(f"[{number}/{len(jobs)}] {job.folder}")
                results.append(run_job(job))
            return results
        return self._on_ray(jobs, report)

    def _on_ray(self, jobs: Sequence[Job], report: Report) -> list[JobResult]:
        try:
            import ray
        except ImportError:
            raise LfwbenchError("--ray needs Ray: pip install 'lfwbench[ray]'") from None
        ray.init(address=self.ray or None, ignore_reinit_error=True, log_to_driver=False)
        task = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus)(run_job)
        report(f"{len(jobs)} jobs as Ray tasks ({self.cpus} CPU, {self.gpus} GPU each)")
        try:
            results = ray.get([task.remote(job) for job in jobs])
        except ray.exceptions.RayTaskError as error:
            cause = error.cause if isinstance(error.cause, LfwbenchError) else error
            raise LfwbenchError(f"a Ray task failed: {str(cause).splitlines()[0]}") from None
        for result in results:
            if not (result.folder / runs.SUMMARY).is_file():
                raise LfwbenchError(
                    f"{result.folder}: written by a Ray task but not visible here; on a cluster the runs folder must "
                    "be a filesystem every machine shares"
                )
        return results


def grid(**options: Sequence) -> list[dict]:
    """Every combination of the given option values, in a stable order."""
    names = sorted(options)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(options[name] for name in names))]


def run_name(changes: dict) -> str:
    return "_".join(f"{name}={value}" for name, value in sorted(changes.items()))


def search(
    base: TrainConfig,
    root: Path,
    out_dir: Path,
    combinations: list[dict],
    runner: Runner | None = None,
    report: Report = lambda message: None,
) -> list[dict]:
    """Train each combination in its own run folder; finished runs are read from disk, unfinished ones resumed.

    Writes `results.csv` sorted by validation accuracy (best first) and returns its rows.
    """
    jobs = [Job(replace(base, **changes), root, out_dir / run_name(changes)) for changes in combinations]
    results = (runner or Runner()).run(jobs, report)
    rows = [
        {"run": result.folder.name, **changes, **asdict(result.summary)}
        for changes, result in zip(combinations, results, strict=True)
    ]
    rows.sort(key=lambda row: -row["best_val_accuracy"])
    write_csv(out_dir / runs.SEARCH_RESULTS, rows)
    return rows


def fold_config(base: TrainConfig, fold: int) -> TrainConfig:
    """The base recipe trained on View 2 without fold `fold`, and scored on it."""
    return replace(base, train_list=VIEW2_LIST, eval_list=VIEW2_LIST, people_list=VIEW2_PEOPLE, fold=fold)


def crossval(
    base: TrainConfig,
    root: Path,
    out_dir: Path,
    folds: Sequence[int],
    runner: Runner | None = None,
    report: Report = lambda message: None,
) -> Crossval:
    """Train one model per View 2 fold without that fold's people, score each fold once its model is final, and
    aggregate: û ± SE over folds, the ROC averaged over folds and pooled. Writes crossval.json and crossval.csv.

    Every fold's plan is checked before any training (a pairs.txt that breaks the View 2 split is refused); finished
    folds are read back and an interrupted one resumes from its last epoch.
    """
    configs = [fold_config(base, fold) for fold in folds]
    for config in configs:
        fold_pairs(root, config)
    folds_total = load_pairs(root / VIEW2_LIST).folds
    if runs.RunFolder(out_dir).is_run() or (out_dir / runs.SEARCH_RESULTS).is_file():
        raise LfwbenchError(f"{out_dir}: holds a train or search run, not a crossval's folds; choose another --runs")
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = FolderLock(out_dir / runs.LOCK)
    if not lock.acquire():
        raise LfwbenchError(f"{out_dir}: a crossval (process {lock.holder()}) is running there; wait for it")
    try:
        members = {config.fold: member_configs(config) for config in configs}
        if all(len(seeds) == 1 for seeds in members.values()):
            jobs = [Job(config, root, out_dir / runs.fold_folder(config.fold)) for config in configs]
            (runner or Runner()).run(jobs, report)
            minutes = [training_minutes(job.folder) for job in jobs]
        else:  # fold by fold: its members trained (side by side on Ray), merged and scored once
            minutes = []
            for config in configs:
                fold = out_dir / runs.fold_folder(config.fold)
                folders = [fold.with_name(f"{fold.name}-seed{member.seed}") for member in members[config.fold]]
                jobs = [Job(m, root, f, score=False) for m, f in zip(members[config.fold], folders, strict=True)]
                (runner or Runner()).run(jobs, report)
                report(f"fold {config.fold}: merging its {len(folders)} members and scoring the fold")
                merge_fold(folders, fold, root, config)
                minutes.append(sum(training_minutes(folder) for folder in folders))
        scored = [read_results(out_dir / runs.fold_folder(config.fold) / runs.FOLD_RESULTS) for config in configs]
        result = aggregate(replace(configs[0].resolved(), fold=0), scored, folds_total, minutes)
        write_crossval(out_dir, result, runs.CROSSVAL_JSON, runs.CROSSVAL_CSV)
    finally:
        lock.release()
    return result


def aggregate(config: TrainConfig, scored: list[Results], folds_total: int, minutes: Sequence[float]) -> Crossval:
    """Per-fold rows at each fold's validation threshold (and its training minutes, every member's), their mean ± SE,
    the fold-averaged and pooled ROC."""
    rows, curves = [], []
    for results, fold_minutes in zip(scored, minutes, strict=True):
        at, half = results.operating_point, results.metrics.at_half
        rows.append(
            FoldRow(
                fold=results.data.fold,
                pairs=len(results.pairs),
                accuracy=at.accuracy,
                threshold=at.threshold,
                tpr=at.tpr,
                tnr=at.tnr,
                auc=results.metrics.auc,
                accuracy_at_half=half.accuracy,
                people_in_training=results.leakage["people_in_training_and_evaluation"],
                minutes=fold_minutes,
                run=str(Path(results.model.path).parent),
            )
        )
        curves.append((np.array([p.label for p in results.pairs]), np.array([p.score for p in results.pairs])))
    labels, scores = (np.concatenate([curve[i] for curve in curves]) for i in (0, 1))
    return Crossval(
        config=asdict(config),
        folds=rows,
        folds_total=folds_total,
        summary=mean_and_spread([row.accuracy for row in rows]),
        averaged_roc=averaged_roc(curves),
        pooled_roc=roc_points(labels, scores),
        machine=describe(),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
