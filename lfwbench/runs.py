"""The run folder: its file names, config, history and commit record, and the lock of its one writer.

No other module names these files. An epoch becomes visible in one step: its files are first written under
staged names, then `manifest.json` (written atomically, fsynced) commits them, then they are renamed into place.
Whoever opens the folder next finishes the renames of a committed epoch (roll forward) and deletes staged files
that no manifest names (roll back), so a crash at any moment leaves the last committed epoch, whole.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from lfwbench.config import COUNTS, TrainConfig
from lfwbench.errors import LfwbenchError, RunFolderError, brief
from lfwbench.files import (
    TEMPORARY_PREFIX,
    FolderLock,
    file_digest,
    is_file_name,
    sync_file,
    typed_record,
    write_csv,
    write_json,
)
from lfwbench.pairs import Pair
from lfwbench.plan import ListPlan, plan_lists

CONFIG = "config.json"
MANIFEST = "manifest.json"
HISTORY_JSON, HISTORY_CSV = "history.json", "history.csv"
BEST_KERAS, BEST_H5, LAST_KERAS = "best.keras", "best.h5", "last.keras"
IDENTITY_HISTORY = "identity_history.json"
SUMMARY = "summary.json"
LOCK = ".lock"
FOLD_RESULTS = "results.json"  # a View 2 fold's run: its fold scored once the model was final
SEARCH_RESULTS = "results.csv"  # a search folder: its trials, best first
CROSSVAL_JSON, CROSSVAL_CSV = "crossval.json", "crossval.csv"  # a crossval folder: the folds and their summary
STAGED_PREFIX = ".staged-"
MANIFEST_FORMAT = 1


def default_run_folder(preset: str, seed: int, runs: Path = Path("runs")) -> Path:
    """`runs/PRESET-seedSEED`, where `train` and `run` put a run when no --out is given."""
    return runs / f"{preset}-seed{seed}"


def fold_folder(fold: int) -> str:
    """The run folder of View 2 fold `fold` inside a crossval folder."""
    return f"fold{fold:02d}"


def crossval_file(folder: Path) -> Path:
    """FOLDER/crossval.json, written once the folds a crossval was asked for are all scored; without it, an error
    saying how far the crossval there got and how to summarise the folds it has."""
    path = folder / CROSSVAL_JSON
    if path.is_file():
        return path
    folds = range(1, COUNTS["fold"][1] + 1)
    scored = [fold for fold in folds if (folder / fold_folder(fold) / FOLD_RESULTS).is_file()]
    if not scored:
        raise LfwbenchError(f"{folder}: no {CROSSVAL_JSON} and no scored fold; give the --runs folder of a crossval")
    listed = ",".join(map(str, scored))
    so_far = f"fold{'s' * (len(scored) > 1)} {listed}"
    raise LfwbenchError(
        f"{folder}: an unfinished crossval (scored so far: {so_far}), so no {CROSSVAL_JSON} yet; "
        f"`lfwbench crossval --folds {listed} --runs {folder}` (with its --preset and options) summarises them "
        "without training, the same command without --folds finishes the rest"
    )


def kept_epoch(history: list[dict], keep: str) -> dict:
    """The history row whose weights best.* hold: the last, or the first with the lowest val_loss."""
    return history[-1] if keep == "last" else min(history, key=lambda row: row["val_loss"])


@dataclass
class Manifest:
    """The last committed epoch: the history up to it, the sha256 of every file it made visible, and the state of
    the model's random generators (which checkpoints do not keep) for an exact resume."""

    epoch: int
    history: list[dict]
    files: dict[str, str]
    staged: dict[str, str] = field(default_factory=dict)  # final name -> staged name, until renamed into place
    random_state: list[list[int]] = field(default_factory=list)
    format: int = MANIFEST_FORMAT

    @classmethod
    def parse(cls, stored: object) -> Manifest:
        """A manifest from its JSON form, every field checked: a file someone else wrote names only plain files of
        its own folder, the staged ones by the name a commit gives them, so obeying it never touches anything else.
        Raises ValueError naming the first field that fails."""
        if not isinstance(stored, dict):
            raise ValueError(f"expected an object, got {type(stored).__name__}")
        if stored.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"format {brief(stored.get('format'))}")
        unknown = set(stored) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown field {brief(sorted(unknown)[0])}")
        epoch = stored.get("epoch")
        if not is_count(epoch):
            raise ValueError(f"epoch {brief(epoch)} is not a whole number >= 0")
        history = stored.get("history")
        if not isinstance(history, list) or not all(is_history_row(row) for row in history):
            raise ValueError("history is not a list of rows of finite numbers")
        files = stored.get("files")
        if not isinstance(files, dict) or not all(is_file_name(k) and is_sha256(v) for k, v in files.items()):
            raise ValueError("files is not a map of plain file names to sha256 digests")
        staged = stored.get("staged", {})
        if not isinstance(staged, dict) or any(
            not is_file_name(final) or value != staged_name(epoch, final) for final, value in staged.items()
        ):
            raise ValueError(f"staged names other files than this epoch's ({brief(staged)})")
        state = stored.get("random_state", [])
        if not isinstance(state, list) or not all(
            isinstance(row, list) and all(is_count(n) for n in row) for row in state
        ):
            raise ValueError("random_state is not a list of lists of whole numbers")
        return cls(epoch, history, files, staged, state)


def staged_name(epoch: int, name: str) -> str:
    """What `commit` writes `name` as until the manifest makes it visible."""
    return f"{STAGED_PREFIX}{epoch}-{name}"


def is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def is_history_row(row: object) -> bool:
    """An epoch's figures: names to finite numbers (or null where a figure is undefined)."""
    return isinstance(row, dict) and all(
        isinstance(key, str)
        and (value is None or (isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)))
        for key, value in row.items()
    )


@dataclass(frozen=True)
class EnsembleMember:
    checkpoint: str
    sha256: str
    seed: int


@dataclass(frozen=True)
class RunRecord:
    """config.json: the options a run was trained with (resolved), the data it read, its split, the versions.

    The one reader of config.json: every field is checked, a field this version does not know is refused, and a
    training option added since the run was made takes its default (what the run did without it)."""

    config: TrainConfig
    preset: dict
    input_shape: list[int]
    data_root: str
    variant: str
    lists_md5: dict[str, str]
    split: dict[str, int | str]
    versions: dict[str, str]
    ensemble: list[EnsembleMember] = field(default_factory=list)  # an ensemble's members, in the merged order

    @classmethod
    def parse(cls, stored: object) -> RunRecord:
        """Raises ValueError naming what fails."""
        record = typed_record(cls, stored)
        config = record.config.resolved()
        if record.input_shape != list(config.image_spec.shape):
            raise ValueError(f"input_shape {brief(record.input_shape)} is not the configured image's")
        lists = (config.train_list, config.eval_list, config.people_list)
        if not all(is_file_name(name) for name in lists):  # read under the data root, never elsewhere
            raise ValueError(f"the lists {brief(lists)} are not plain file names")
        return replace(record, config=config)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RunSummary:
    """summary.json of a finished job: what its training did, read back instead of training again."""

    epochs_run: int
    best_epoch: int
    best_val_loss: float
    best_val_accuracy: float
    seconds_per_epoch: float
    seconds: float
    stopped_early: bool

    @classmethod
    def parse(cls, stored: object) -> RunSummary:
        """Raises ValueError naming what fails: a field missing, unknown or of another type, a figure not finite."""
        summary = typed_record(cls, stored)
        figures = (summary.best_val_loss, summary.best_val_accuracy, summary.seconds_per_epoch, summary.seconds)
        if not all(math.isfinite(n) and n >= 0 for n in figures) or not 1 <= summary.best_epoch <= summary.epochs_run:
            raise ValueError("figures out of range")
        return summary


class RunFolder:
    """One run's folder on disk; writers hold its lock (see `writing`), readers need none."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def read_config(self) -> RunRecord:
        """config.json as `train` or `ensemble` wrote it, checked."""
        path = self / CONFIG
        try:
            return RunRecord.parse(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise RunFolderError(f"{self.path}: no {CONFIG}; not an lfwbench run folder") from None
        except (OSError, ValueError) as error:
            raise RunFolderError(f"{path}: not a run record ({error})") from None
        except LfwbenchError as error:  # a stored option no preset or choice of this version allows
            raise RunFolderError(f"{path}: {error}") from None

    def manifest(self) -> Manifest | None:
        """The committed state, or None when no epoch was committed (or the folder predates manifests)."""
        path = self / MANIFEST
        try:
            return Manifest.parse(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, RecursionError) as error:
            raise RunFolderError(f"{path}: unreadable ({error}); the run cannot be trusted") from None

    def history(self) -> list[dict]:
        """Epochs committed so far (history.json of a folder written before manifests)."""
        manifest = self.manifest()
        if manifest is not None:
            return manifest.history
        legacy = self / HISTORY_JSON
        if not legacy.is_file():
            return []
        try:
            rows = json.loads(legacy.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as error:
            raise RunFolderError(f"{legacy}: unreadable ({error})") from None
        if not isinstance(rows, list) or not all(is_history_row(row) for row in rows):
            raise RunFolderError(f"{legacy}: not a list of rows of finite numbers; the run cannot be trusted")
        return rows

    def entries(self) -> list[str]:
        return sorted(name for name in os.listdir(self.path) if name != LOCK) if self.path.is_dir() else []

    def recover(self) -> None:
        """Roll a committed epoch forward into place and delete what an interrupted write left behind."""
        manifest = self.manifest()
        for final, staged in (manifest.staged if manifest else {}).items():
            if (self / staged).is_file() and not (self / staged).is_symlink():
                os.replace(self / staged, self / final)
        for name in self.entries():
            if name.startswith((STAGED_PREFIX, TEMPORARY_PREFIX)):
                (self / name).unlink()
        if self.path.is_dir():
            sync_file(self.path)

    def commit(
        self,
        epoch: int,
        history: list[dict],
        writers: dict[str, Callable[[Path], None]],
        random_state: list[list[int]] | None = None,
    ) -> Manifest:
        """Make `epoch` visible at once: stage every file, commit the manifest, rename the files into place.

        `writers` maps a file name to a function writing that file at the path given; files not named keep
        what the previous commit holds.
        """
        previous = self.manifest()
        staged = {name: staged_name(epoch, name) for name in writers}
        for name, write in writers.items():
            write(self / staged[name])
        digests = {name: file_digest(self / staged[name]) for name in writers}
        files = {**(previous.files if previous else {}), **digests}
        manifest = Manifest(epoch, history, files, staged, random_state or [])
        write_json(self / MANIFEST, asdict(manifest))  # the commit point
        self.recover()
        return manifest

    def commit_history(
        self,
        epoch: int,
        history: list[dict],
        checkpoints: dict[str, Callable[[Path], None]],
        random_state: list[list[int]],
    ) -> None:
        """Commit an epoch's checkpoints together with history.json, history.csv and the generators' state."""
        table = [{"epoch": row["epoch"], **dict(sorted(row.items()))} for row in history]  # fresh or resumed alike
        files = {
            **checkpoints,
            HISTORY_JSON: lambda path: write_json(path, history),
            HISTORY_CSV: lambda path: write_csv(path, table),
        }
        self.commit(epoch, history, files, random_state)

    def clear(self) -> None:
        """Remove a previous run: the manifest first, so that nothing is read as committed meanwhile."""
        (self / MANIFEST).unlink(missing_ok=True)
        sync_file(self.path)
        for name in self.entries():
            if (self / name).is_file() or (self / name).is_symlink():
                (self / name).unlink()

    def is_run(self) -> bool:
        return (self / CONFIG).is_file() or (self / MANIFEST).is_file()


WRITE_MODES = ("new", "resume", "overwrite")


@contextlib.contextmanager
def writing(path: str | Path, mode: str = "new") -> Iterator[RunFolder]:
    """Hold the run folder for writing: `new` needs it absent or empty, `resume` needs a run there, `overwrite`
    replaces a run (never a folder that holds something else). A second writer is refused with the holder's pid."""
    folder = RunFolder(path)
    try:
        folder.path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise RunFolderError(f"{folder.path}: exists and is not a folder; choose another --out") from None
    lock = FolderLock(folder / LOCK)
    if not lock.acquire():
        raise RunFolderError(
            f"{folder.path}: in use by process {lock.holder()} (lock file {lock.path}); wait for it or choose another "
            "--out"
        )
    try:
        if mode != "overwrite":  # a run being replaced is not trusted to say what its commit was
            folder.recover()  # whatever a killed writer left: finished if committed, else removed
        if mode == "new" and folder.entries():
            raise RunFolderError(
                f"{folder.path}: not empty (holds {', '.join(folder.entries()[:3])}); pass --resume to continue the "
                "run there, --overwrite to replace it, or choose another --out"
            )
        if mode == "overwrite" and folder.entries() and not folder.is_run():
            raise RunFolderError(f"{folder.path}: holds files but no lfwbench run; refusing to overwrite it")
        if mode == "overwrite":
            folder.clear()
        if mode == "resume" and not (folder / CONFIG).is_file():
            raise RunFolderError(f"{folder.path}: nothing to resume (no {CONFIG}); train without --resume")
        yield folder
    finally:
        lock.release()


def recover_if_idle(folder: RunFolder) -> None:
    """Finish an interrupted commit before reading, unless a writer is at work (it will finish it itself)."""
    lock = FolderLock(folder / LOCK)
    # a read-only folder is read as it is; an untrusted manifest is obeyed in nothing (the reader then refuses it)
    with contextlib.suppress(OSError, RunFolderError):
        if lock.acquire():
            try:
                folder.recover()
            finally:
                lock.release()


@dataclass
class Run:
    """A training (or ensemble) run as stored beside a checkpoint: its config.json and its committed history."""

    folder: Path
    record: RunRecord
    history: list[dict]
    files: dict[str, str]
    _plans: dict[Path, ListPlan | None] = field(default_factory=dict, repr=False, compare=False)

    @property
    def config(self) -> TrainConfig:
        """The options the run was made with, resolved."""
        return self.record.config

    def lists(self, root: Path) -> ListPlan | None:
        """The run's pairs and people by role, as training planned them (once per data root); None without its
        training list."""
        if root not in self._plans:
            found = (root / self.config.train_list).is_file()
            self._plans[root] = plan_lists(root, self.config) if found else None
        return self._plans[root]

    def training_people(self, root: Path) -> set[str]:
        """The identities the run trained and validated on."""
        lists = self.lists(root)
        return lists.seen_people if lists is not None else set()

    def validation_pairs(self, root: Path) -> tuple[list[Pair], str] | None:
        """The held-out validation pairs of training people, as training split them, and a line naming them."""
        lists = self.lists(root)
        if lists is None:
            return None
        config = self.config
        source = config.train_list + (f" without fold {config.fold}" if config.fold else "")
        return lists.val, f"{source} (validation people, fraction {config.val_fraction}, seed {config.split_seed})"

    def as_training(self) -> dict:
        """What results.json keeps of the run: its config and its history."""
        return {"config": self.record.to_dict(), "history": self.history}


def run_files(checkpoint: Path) -> list[Path]:
    """What reading this checkpoint reads: the file, and every file of the run folder it sits in (none of which an
    output may replace)."""
    folder = RunFolder(checkpoint.parent)
    if not folder.is_run():
        return [checkpoint]
    return [checkpoint, *(path for path in folder.path.iterdir() if path.is_file())]


def read_run(checkpoint: Path, sha256: str) -> tuple[Run | None, list[str]]:
    """The run that made `checkpoint` (with this sha256), and warnings; None when the folder holds no run or its
    record does not describe this checkpoint (copied or replaced files): then nothing of it may be used."""
    folder = RunFolder(checkpoint.parent)
    if not (folder / CONFIG).is_file():
        return None, []
    recover_if_idle(folder)
    try:
        record, manifest = folder.read_config(), folder.manifest()
        history = folder.history()
    except (RunFolderError, ValueError) as error:
        return None, [f"{error}; the run folder is ignored and the checkpoint scored as a bare model"]
    if manifest is None:
        note = f"{folder.path} has no {MANIFEST} (written before runs were checked): its {CONFIG} is used unverified"
        return Run(folder.path, record, history, {}), [note]
    if sha256 not in manifest.files.values():
        return None, [
            f"{checkpoint.name} (sha256 {sha256[:12]}) is not a checkpoint the run in {folder.path} committed: its "
            f"{CONFIG} is ignored and the checkpoint scored on its own"
        ]
    return Run(folder.path, record, history, manifest.files), []
