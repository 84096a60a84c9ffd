"""The `lfwbench` command: each command parses its options, calls one library function and prints the result.

TensorFlow is imported only inside the commands that need a model, so `--help`, `data` and
`report --results` start fast.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from lfwbench import __version__
from lfwbench.config import DEFAULTS, VAL_FRACTION
from lfwbench.errors import LfwbenchError, one_line

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter is not for users


class Lfwbench(click.Group):
    """Turns every failure below into one line, `Error: ...`, and exit status 1: LfwbenchErrors as they are, the
    operating system's (a read-only folder, a full disk) with the path. Only Ctrl-C reads "Aborted!"; anything else
    is a bug, shown as one line too unless LFWBENCH_DEBUG is set."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except LfwbenchError as error:
            raise click.ClickException(one_line(str(error))) from None
        except OSError as error:
            where = f"{error.filename}: " if error.filename else ""
            raise click.ClickException(one_line(f"{where}{error.strerror or error}")) from None
        except Exception as error:
            if os.environ.get("LFWBENCH_DEBUG"):
                raise
            raise click.ClickException(
                f"internal error ({type(error).__name__}: {one_line(str(error), 200)}); set LFWBENCH_DEBUG=1 for the "
                "traceback and please report it"
            ) from None


data_option = click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="LFWBENCH_DATA",
    help="LFW data root (holds lfw-deepfunneled/, lfw2/, ... and the pair lists); default $LFWBENCH_DATA.",
)


def echo_err(message: str) -> None:
    """A line on stderr, its control characters escaped and its length bounded (names come from files)."""
    click.echo(one_line(message), err=True)


def with_options(options: list):
    """Apply a list of click options, in order, to a command."""

    def decorate(function):
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


@click.group(cls=Lfwbench, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lfwbench")
@click.option("-v", "--verbose", is_flag=True, help="Also show TensorFlow's native start-up logs.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr (warnings and errors still show).")
@click.pass_context
def main(context: click.Context, verbose: bool, quiet: bool) -> None:
    """Siamese face verification on Labeled Faces in the Wild: check data, train, evaluate, report.

    Stdout carries results only; progress goes to stderr.

    Example: lfwbench run --data ../shared/lfw --preset cpu
    """
    from lfwbench.console import log_to_stderr, without_native_logs

    context.obj = {"quiet": quiet}
    log_to_stderr(quiet)
    if not verbose:
        context.with_resource(without_native_logs())


def quiet() -> bool:
    context = click.get_current_context(silent=True)
    return bool(context and (context.find_root().obj or {}).get("quiet"))


def progress(message: str) -> None:
    """A progress line on stderr, unless -q."""
    if not quiet():
        echo_err(message)


@main.group()
def data() -> None:
    """The data set: is it whole (check), what is in it (stats), get it (fetch)."""


@data.command("check")
@data_option
@click.option(
    "--pairs",
    "pair_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Pair list to resolve (View 1 or View 2); repeatable. Default: the View 1 lists in the data root.",
)
def data_check(data: Path | None, pair_files: tuple[Path, ...]) -> None:
    """Check that every image named by the pair lists exists.

    Example: lfwbench data check --data ../shared/lfw
    """
    from lfwbench.dataset import check_data
    from lfwbench.images import resolve_data_root

    result = check_data(resolve_data_root(data), list(pair_files) or None)
    click.echo(f"variant: {result.variant} ({result.image_dir})")
    click.echo(f"people: {result.people}  images: {result.images}")
    for item in result.lists:
        click.echo(f"{item.name}: {item.resolved}/{item.total} pairs, {item.distinct_images} distinct images")
        for kind, count in sorted(item.odd.items()):
            click.echo(f"  {count} image(s) with {kind}: converted when read")
        for line in item.missing:
            click.echo(f"  {line}")
    if not result.ok:
        raise click.ClickException("some pairs name missing or unusable images (listed above)")


@data.command("stats")
@data_option
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the figures here."
)
@click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), default=VAL_FRACTION, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the by-person validation split.")
def data_stats(data: Path | None, json_path: Path | None, val_fraction: float, seed: int) -> None:
    """People, images and per-split pair counts, as the original notebook printed them.

    Example: lfwbench data stats --data ../shared/lfw --json stats.json
    """
    from lfwbench.dataset import data_stats as compute_stats
    from lfwbench.files import refuse_overwriting, write_json
    from lfwbench.images import resolve_data_root
    from lfwbench.pairs import protocol_files

    root = resolve_data_root(data)
    if json_path:
        refuse_overwriting([json_path], protocol_files(root))
    stats = compute_stats(root, val_fraction, seed)
    per = stats["images_per_person"]
    click.echo(f"variant: {stats['variant']}")
    click.echo(f"people: {stats['people']}  images: {stats['images']}")
    click.echo(f"images per person: mean {per['mean']:.2f}, std {per['std']:.2f}, max {per['max']}")
    for split, row in stats["splits"].items():
        click.echo(
            f"{split:<10} {row['list']:<18} pairs {row['pairs']:>5} (same {row['same']}, different "
            f"{row['different']}), people {row['people']}"
        )
    if "test_train_overlap_people" in stats:
        click.echo(f"people in both training and test lists: {stats['test_train_overlap_people']}")
    if json_path:
        write_json(json_path, stats)
        click.echo(f"wrote {json_path}")


@data.command("fetch")
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), required=True, help="Folder to fill.")
@click.option(
    "--variant",
    type=click.Choice(["lfw-deepfunneled", "lfw", "lfw_funneled"]),
    default="lfw-deepfunneled",
    show_default=True,
)
@click.option(
    "--mirror", "mirrors", multiple=True, help="Base URL serving the LFW files by name; repeatable, tried first."
)
@click.option(
    "--archive", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Use this local image archive."
)
def data_fetch(dest: Path, variant: str, mirrors: tuple[str, ...], archive: Path | None) -> None:
    """Download the images and lists, check their md5 sums, unpack without leaving partial files.

    Example: lfwbench data fetch --dest ~/lfw --mirror https://example.org/lfw
    """
    from lfwbench.fetch import fetch_lfw

    image_dir = fetch_lfw(dest, variant, mirrors, archive, report=progress)
    click.echo(f"ready: {image_dir}")


GRID_OPTIONS = ("epochs", "batch_size", "lr", "dropout")


def training_options(grid: bool = False):
    """The options of `train`, `run` and `search`; with `grid`, the grid's four options repeat."""
    from lfwbench.config import KEEPS, REGIMES, SCHEDULES, STRATEGIES
    from lfwbench.presets import PRESETS

    many = " Repeat to search several values." if grid else ""
    options = [
        data_option,
        click.option(
            "--preset",
            type=click.Choice(list(PRESETS)),
            default=DEFAULTS.preset,
            show_default=True,
            help="; ".join(f"{name}: {preset.measured}" for name, preset in PRESETS.items()) + ".",
        ),
        click.option("--epochs", type=click.IntRange(1), multiple=grid, help="Epochs (default: the preset's)." + many),
        click.option("--batch-size", type=click.IntRange(1), multiple=grid, help="Pairs per batch." + many),
        click.option("--lr", type=click.FloatRange(0, min_open=True), multiple=grid, help="Adam learning rate." + many),
        click.option(
            "--dropout",
            type=click.FloatRange(0, 1, max_open=True),
            multiple=grid,
            default=() if grid else DEFAULTS.dropout,
            show_default=not grid,
            help="Dropout before the last unit." + many,
        ),
        click.option(
            "--twin-dropout",
            type=click.FloatRange(0, 1, max_open=True),
            default=DEFAULTS.twin_dropout,
            show_default=True,
            help="Dropout on the twin's features before its embedding layer.",
        ),
        click.option(
            "--patience", type=click.IntRange(1), help="Early-stopping patience in epochs (default: the preset's, 6)."
        ),
        click.option("--min-delta", type=click.FloatRange(0), default=0.01, show_default=True),
        click.option(
            "--val-fraction",
            type=click.FloatRange(0, 1, min_open=True, max_open=True),
            help=f"Share of training pairs held out for validation, split by person (default: the preset's, "
            f"{VAL_FRACTION}).",
        ),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option(
            "--split-seed",
            type=int,
            help="Seed of the validation split (default: --seed); fix it to train seeds for an ensemble.",
        ),
        click.option("--channels", type=click.Choice(["1", "3"]), help="Grayscale or colour (default: the preset's)."),
        click.option("--size", type=click.IntRange(16), help="Input side in pixels (default: the preset's)."),
        click.option("--crop", type=click.IntRange(0), help="Centred crop side before resizing, 0 for none."),
        click.option(
            "--regime",
            type=click.Choice(REGIMES),
            help="Only the listed pairs, or new balanced pairs each epoch from the training people.",
        ),
        click.option("--pairs-per-epoch", type=click.IntRange(1), help="Pairs drawn per epoch (unrestricted)."),
        click.option(
            "--augment/--no-augment",
            default=None,
            help="Flips, small shifts and rotations, brightness (default: the preset's).",
        ),
        click.option(
            "--zoom",
            type=click.FloatRange(0, 1, max_open=True),
            help="With --augment, zoom each image in or out by up to this fraction of its side (default 0: none).",
        ),
        click.option(
            "--identity-epochs",
            type=click.IntRange(0),
            help="Epochs teaching the twin to name the training people before pair training (unrestricted).",
        ),
        click.option(
            "--people-per-batch",
            type=click.IntRange(0),
            help="Train on batches of P people x K images, scoring every pair inside (unrestricted); 0: pairs.",
        ),
        click.option("--images-per-person", type=click.IntRange(2), help="K of the person batches (default 4)."),
        click.option(
            "--margin",
            type=click.FloatRange(0, 1),
            help="CosFace margin of an identity loss beside the pair loss (person batches, cosine head); 0: none.",
        ),
        click.option(
            "--schedule",
            type=click.Choice(SCHEDULES),
            help="Learning rate: constant, or cosine decay to zero (default: the preset's).",
        ),
        click.option(
            "--keep",
            type=click.Choice(KEEPS),
            help="Epoch that best.keras/.h5 hold: lowest validation loss, or the last (default: the preset's).",
        ),
        click.option("--reduce-lr/--no-reduce-lr", default=False, help="Halve the learning rate on a plateau."),
        click.option(
            "--mixed-precision/--no-mixed-precision",
            default=None,
            help="Half-precision compute, float32 weights: float16 on a GPU, bfloat16 on a CPU (default: where the "
            "hardware has it natively: a GPU, or a CPU with AVX512-BF16 or AMX).",
        ),
        click.option(
            "--strategy",
            type=click.Choice(STRATEGIES),
            default="default",
            show_default=True,
            help="tf.distribute strategy.",
        ),
        click.option(
            "--deterministic/--no-deterministic",
            default=True,
            show_default=True,
            help="Deterministic TensorFlow ops: same seed, same history.",
        ),
        click.option("--train-list", default="pairsDevTrain.txt", show_default=True, help="Training pair list."),
        click.option(
            "--eval-list",
            default="pairsDevTest.txt",
            show_default=True,
            help="Evaluation list: its people are refused in training.",
        ),
    ]

    return with_options(options)


def train_config(options: dict):
    from lfwbench.config import TrainConfig

    values = {name: options[name] for name in TrainConfig.__dataclass_fields__ if name in options}
    values["channels"] = int(values["channels"]) if values.get("channels") else None
    return TrainConfig(**values)


def echo_summary(summary) -> None:
    click.echo(
        f"best.* hold epoch {summary.best_epoch}/{summary.epochs_run}: val_loss {summary.best_val_loss:.4f}, "
        f"val_accuracy {summary.best_val_accuracy:.4f}; {summary.seconds_per_epoch:.1f} s per epoch"
        + ("; stopped early" if summary.stopped_early else "")
    )
    click.echo(f"checkpoints: {summary.out_dir / 'best.h5'} and best.keras (resume from last.keras)")


def write_mode(function):
    """--resume and --overwrite: what to do with a run folder that is not empty (by default, refuse)."""
    options = [
        click.option(
            "--resume",
            is_flag=True,
            help="Continue the run in the folder from its last committed epoch (its options; --epochs may grow).",
        ),
        click.option("--overwrite", is_flag=True, help="Replace the run in the folder."),
    ]
    return with_options(options)(function)


def mode_of(resume: bool, overwrite: bool) -> str:
    if resume and overwrite:
        raise click.UsageError("give --resume or --overwrite, not both")
    return "resume" if resume else "overwrite" if overwrite else "new"


@main.command()
@training_options()
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="Run folder [default: runs/PRESET-seedSEED]."
)
@write_mode
def train(data: Path | None, out: Path | None, resume: bool, overwrite: bool, **options) -> None:
    """Train a Siamese checkpoint (best.keras, best.h5, last.keras, history) on the View 1 training list.

    Example: lfwbench train --data ../shared/lfw --preset quick --out runs/quick
    """
    from lfwbench.images import resolve_data_root
    from lfwbench.presets import get_preset
    from lfwbench.runs import default_run_folder
    from lfwbench.training import train as train_run

    out = out or default_run_folder(options["preset"], options["seed"])
    mode = mode_of(resume, overwrite)
    summary = train_run(train_config(options), resolve_data_root(data), out, mode=mode, verbose=0, progress=progress)
    echo_summary(summary)
    members = get_preset(options["preset"]).members
    if members > 1:
        seed, split = options["seed"], options["seed"] if options["split_seed"] is None else options["split_seed"]
        echo_err(
            f"Note: {options['preset']} merges {members} seeds; this run is one. Train --seed {seed + 1} ... "
            f"{seed + members - 1} with --split-seed {split}, then merge them with lfwbench "
            "ensemble (lfwbench crossval does all of it for each View 2 fold)"
        )


def ray_options(function):
    """Where independent jobs (search trials, View 2 folds) run: here, one after another, or as Ray tasks."""
    options = [
        click.option(
            "--ray",
            "ray_address",
            is_flag=False,
            flag_value="",
            default=None,
            metavar="[ADDRESS]",
            help="Run each job as a Ray task: on a new local cluster, or joining ADDRESS (also when $RAY_ADDRESS is "
            "set). On a cluster, --runs/--out must be a filesystem every machine shares.",
        ),
        click.option("--cpus-per-job", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True),
        click.option("--gpus-per-job", type=click.FloatRange(0), default=0.0, show_default=True),
    ]
    return with_options(options)(function)


def job_runner(ray_address: str | None, cpus_per_job: float, gpus_per_job: float):
    from lfwbench.jobs import Runner

    if ray_address is None and os.environ.get("RAY_ADDRESS"):
        ray_address = ""  # Ray reads the address from the environment itself
    return Runner(ray_address, cpus_per_job, gpus_per_job)


VIEW2_FOLDS = 10  # pairs.txt's folds


def parse_folds(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    """`1-10` or `1,4,7` -> the fold numbers."""
    try:
        if "-" in value:
            first, last = (int(part) for part in value.split("-"))
            if first > last:
                raise ValueError
            folds = list(range(first, last + 1)) if 1 <= first and last <= VIEW2_FOLDS else []
        else:
            folds = sorted({int(part) for part in value.split(",")})
    except ValueError:
        raise click.BadParameter(f"expected a range like 1-10 or a list like 1,4,7, got {value[:40]!r}") from None
    if not folds or not all(1 <= fold <= VIEW2_FOLDS for fold in folds):
        raise click.BadParameter(f"View 2 has folds 1 to {VIEW2_FOLDS}, got {value[:40]!r}")
    return folds


@main.command()
@training_options(grid=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/search"), show_default=True)
@ray_options
def search(data: Path | None, out: Path, ray_address, cpus_per_job, gpus_per_job, **options) -> None:
    """Train every combination of --lr, --dropout, --epochs and --batch-size; finished runs are not retrained.

    Example: lfwbench search --data ../shared/lfw --lr 1e-3 --lr 3e-4 --dropout 0.2 --dropout 0.5
    """
    from lfwbench.images import resolve_data_root
    from lfwbench.jobs import grid
    from lfwbench.jobs import search as search_runs

    values = {name: options.pop(name) for name in GRID_OPTIONS}
    combinations = grid(**{name: chosen for name, chosen in values.items() if chosen})
    runner = job_runner(ray_address, cpus_per_job, gpus_per_job)
    base = train_config({**options, "dropout": DEFAULTS.dropout})
    rows = search_runs(base, resolve_data_root(data), out, combinations, runner, progress)
    for row in rows:
        click.echo(f"{row['run']:<50} val_accuracy {row['best_val_accuracy']:.4f}  val_loss {row['best_val_loss']:.4f}")
    click.echo(f"best: {rows[0]['run']} ({out / 'results.csv'})")


@main.command()
@training_options()
@click.option("--folds", default="1-10", show_default=True, callback=parse_folds, help="Folds: 1-10, or 1,4,7.")
@click.option(
    "--runs",
    "runs_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of the fold runs [default: runs/crossval-PRESET-seedSEED].",
)
@ray_options
def crossval(data, folds, runs_dir, ray_address, cpus_per_job, gpus_per_job, **options) -> None:
    """LFW's View 2 protocol: one model per fold of pairs.txt, trained without that fold's people and scored on it.

    The threshold of each fold is chosen on validation pairs of its training people; finished folds are read back,
    an interrupted one resumes. The last line is the figure to quote.

    Example: lfwbench crossval --data ../shared/lfw --preset cpu --folds 1-10
    """
    from lfwbench.images import resolve_data_root
    from lfwbench.jobs import crossval as run_crossval
    from lfwbench.runs import CROSSVAL_CSV, CROSSVAL_JSON

    context = click.get_current_context()
    for name in ("train_list", "eval_list"):
        if context.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
            option = "--" + name.replace("_", "-")
            raise click.UsageError(f"{option} does not apply: crossval trains and scores on pairs.txt and people.txt")
    runs_dir = runs_dir or Path("runs") / f"crossval-{options['preset']}-seed{options['seed']}"
    from lfwbench.metrics import shown

    runner = job_runner(ray_address, cpus_per_job, gpus_per_job)
    result = run_crossval(train_config(options), resolve_data_root(data), runs_dir, folds, runner, progress)
    for row in result.folds:
        click.echo(
            f"fold {row.fold:2d}  accuracy {shown(row.accuracy)} at threshold {shown(row.threshold, '.3f')}  "
            f"TPR {shown(row.tpr)}  TNR {shown(row.tnr)}  AUC {shown(row.auc)}  {row.pairs} pairs  "
            f"{row.minutes:.1f} min"
        )
    click.echo(f"wrote {runs_dir / CROSSVAL_JSON} and {CROSSVAL_CSV}")
    click.echo(result.headline())


@main.command()
@click.option(
    "--model",
    "models",
    multiple=True,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A trained run's checkpoint; repeat for each member (same preset input and validation split).",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Folder to write.")
@click.option("--overwrite", is_flag=True, help="Replace the ensemble already in --out.")
def ensemble(models: tuple[Path, ...], out: Path, overwrite: bool) -> None:
    """Merge runs into one checkpoint that averages their logits; evaluate and report take it like any other.

    Example: lfwbench ensemble --model runs/cpu-seed0/best.keras --model runs/cpu-seed1/best.keras --out runs/ens
    """
    from lfwbench.ensemble import write_ensemble

    click.echo(f"checkpoints: {write_ensemble(models, out, overwrite)} and best.h5 ({len(models)} members)")


def echo_headline(results, err: bool = False) -> None:
    """The one-screen summary of an evaluation: the operating point first (and where its threshold came from), then
    0.5 for a probability, the curve, View 2 as û ± SE, what scored it."""
    from lfwbench.metrics import shown

    m, point = results.metrics, results.operating_point
    ci, half = point.accuracy_ci, m.at_half
    flip = ", test-time flip averaging" if results.settings.flip_tta else ""
    lines = [
        f"{results.name} ({results.model.kind}, {results.model.score_kind}) on {results.data.scored_on} "
        f"({m.pairs} pairs{flip}; engine {results.model.engine})",
        f"  accuracy  {shown(point.accuracy)}  (95% CI {shown(ci.low, '.3f')}-{shown(ci.high, '.3f')}, {m.pairs} "
        f"pairs) at {results.operating_label}",
        f"  TPR same  {shown(point.tpr)}   TNR different {shown(point.tnr)}",
    ]
    if half is not None:
        lines.append(f"  at 0.5    {shown(half.accuracy)}  (TPR {shown(half.tpr)}, TNR {shown(half.tnr)})")
    loss = f"   loss {shown(m.loss)}" if m.loss is not None else ""
    lines.append(f"  AUC       {shown(m.auc)}   EER {shown(m.eer)}{loss}")
    if m.view2 is not None:
        v2 = m.view2
        lines.append(
            f"  View 2    {shown(v2.mean)} ± {shown(v2.standard_error)} (û ± SE over {len(v2.fold_accuracies)} folds, "
            f"each at the threshold best on the others; std {shown(v2.std)})"
        )
    for line in lines:
        click.echo(one_line(line), err=err)
    for warning in m.warnings:
        echo_err(f"Warning: {warning}")


GATE_EXIT = 3  # below --fail-under: distinct from errors (1) and usage (2)


def check_gate(figures: list[tuple[float, str]], fail_under: float | None) -> None:
    """Exit 3 when a gated figure is below --fail-under: a result below the bar, not an error."""
    from lfwbench.metrics import shown

    for value, label in figures:
        if fail_under is not None and not (value is not None and value >= fail_under):  # NaN or none: not passed
            echo_err(f"Below the gate: {label} {shown(value)} < --fail-under {fail_under}")
            click.get_current_context().exit(GATE_EXIT)


def gate_options(function):
    """--fail-under and --gate, for CI: exit 3 when the gated figure is below the bar."""
    from lfwbench.results import GATES

    options = [
        click.option(
            "--fail-under",
            type=click.FloatRange(0, 1),
            help="Exit 3 (after writing everything) when the --gate figure is below this.",
        ),
        click.option(
            "--gate",
            type=click.Choice(GATES),
            default="accuracy",
            show_default=True,
            help="The figure --fail-under gates: accuracy at the operating point (the validation threshold), AUC, "
            "or the View 2 mean.",
        ),
    ]
    return with_options(options)(function)


flip_option = click.option(
    "--flip/--no-flip", default=False, help="Test-time flip averaging (labelled in every output)."
)


def evaluation_options(function):
    from lfwbench.engine import ENGINES

    options = [
        data_option,
        click.option(
            "--pairs",
            "pairs_path",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="Pair list to score [default: pairsDevTest.txt in the data root].",
        ),
        click.option(
            "--view2",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="An official pairs.txt: 10-fold View 2 protocol.",
        ),
        click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True),
        flip_option,
        click.option(
            "--threshold-from",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="Choose the threshold on this pair list (of other people) instead of the run's validation pairs or "
            "the protocol's training side.",
        ),
        click.option("--skip-missing", is_flag=True, help="Leave out pairs whose images are missing (counted)."),
        click.option(
            "--fold",
            type=click.IntRange(0),
            default=0,
            help="Score only this fold of a View 2 list, as crossval scores each fold's model (0: every pair).",
        ),
        click.option(
            "--far",
            type=click.FloatRange(0, 1, min_open=True, max_open=True),
            help="Operating point at this false accept rate on the pairs the threshold is chosen on (e.g. 1e-2), not "
            "at their best accuracy.",
        ),
        click.option(
            "--engine",
            type=click.Choice(ENGINES),
            default="auto",
            show_default=True,
            help="Twin inference: int8 (TFLite, 2.4x faster on CPUs) or float32 (Keras); auto: float32 on GPUs.",
        ),
    ]
    return with_options(options)(function)


def input_options(multiple: bool):
    """What to score: a model, embeddings or pair scores computed by any library; with `multiple`, each repeats."""
    from lfwbench.preprocessing import DEFAULT_NORMALIZATION, NORMALIZATIONS
    from lfwbench.scoring import EMBEDDING_METRICS, SAFE_OPS, SCORE_KINDS

    again = " Repeatable." if multiple else ""
    path = click.Path(exists=True, dir_okay=False, path_type=Path)
    options = [
        click.option(
            "--model", "models", multiple=True, type=path,
            help="Checkpoint: .keras or .h5 (lfwbench's, or the original notebook's Keras 2 .h5)." + again,
        ),
        click.option(
            "--embeddings", multiple=True, type=path,
            help="Embeddings from any library: .npz with keys (image paths such as Name/Name_0001.jpg) and vectors "
            "(N x D), or .csv with a path column then the vector's columns; no TensorFlow needed." + again,
        ),
        click.option(
            "--scores", multiple=True, type=path,
            help="Pair scores from any library: .csv with name1,image1,name2,image2,score (lfwbench's --predictions "
            "reads back); needs --score-kind." + again,
        ),
        click.option(
            "--metric", type=click.Choice(list(EMBEDDING_METRICS)), default="cosine", show_default=True,
            help="How --embeddings are compared: cosine similarity or Euclidean distance.",
        ),
        click.option(
            "--score-kind", type=click.Choice(SCORE_KINDS),
            help="Which way --scores (or a Siamese --model's output) point: a probability of 'same', a similarity "
            "(higher: same), a distance (lower: same). A model's is read from its graph where it can be.",
        ),
        click.option(
            "--size", type=click.IntRange(16),
            help="A model from elsewhere: input side in pixels [default: the model's input].",
        ),
        click.option(
            "--channels", type=click.Choice(["1", "3"]), help="A model from elsewhere: 1 or 3 [default: the model's]."
        ),
        click.option(
            "--crop", type=click.IntRange(0, 250), default=0, show_default=True,
            help="A model from elsewhere: side of the centred crop of the 250x250 LFW image before resizing (0: none).",
        ),
        click.option(
            "--normalize", type=click.Choice(list(NORMALIZATIONS)),
            help=f"A model from elsewhere: pixels x/255 (0-1), x/127.5-1 (-1-1, insightface), x (0-255), or "
            f"ImageNet's mean/std [default: {DEFAULT_NORMALIZATION}].",
        ),
        click.option("--mean", type=float, multiple=True, help="Instead of --normalize: (x - mean) / std in 0-255 "
                     "units, one value or one per channel (repeat)."),
        click.option("--std", type=float, multiple=True, help="With --mean."),
        click.option("--bgr", is_flag=True, help="A model from elsewhere: feed channels in BGR order (default RGB)."),
        click.option(
            "--lambda", "lambdas", multiple=True, metavar="[NAME=]OP",
            help=f"A Keras model's Lambda (code, never run) replaced by a safe operation: {', '.join(SAFE_OPS)}; "
            "NAME=OP where a model has several. Assumed, and said, where the graph leaves no doubt.",
        ),
    ]  # fmt: skip
    return with_options(options)


def given_inputs(models, embeddings, scores) -> list[tuple[str, Path]]:
    return [("model", p) for p in models] + [("embeddings", p) for p in embeddings] + [("scores", p) for p in scores]


def optional_data_root(data: Path | None) -> Path | None:
    """The data root when one is given (--data or $LFWBENCH_DATA); precomputed inputs and saved results need none."""
    from lfwbench.images import resolve_data_root

    return resolve_data_root(data) if data or os.environ.get("LFWBENCH_DATA") else None


def open_inputs(inputs: list[tuple[str, Path]], root: Path | None, options: dict) -> list:
    from lfwbench.foreign_models import ModelOptions
    from lfwbench.scoring import open_input

    model = ModelOptions(
        size=options["size"], channels=int(options["channels"]) if options["channels"] else None,
        crop=options["crop"], normalization=options["normalize"], mean=options["mean"], std=options["std"],
        order="bgr" if options["bgr"] else "rgb", metric=options["metric"], score_kind=options["score_kind"],
        lambdas=options["lambdas"],
    )  # fmt: skip
    keys = ("engine", "batch_size", "flip")
    settings = {key: options[key] for key in keys}
    return [open_input(kind, path, root, **settings, model_options=model) for kind, path in inputs]


def scored_list(options: dict) -> tuple[Path | None, bool]:
    """The pair list to score and whether it is a View 2 list asked for as one."""
    if options["pairs_path"] and options["view2"]:
        raise click.UsageError("give --pairs or --view2, not both")
    return options["view2"] or options["pairs_path"], options["view2"] is not None


def run_evaluations(scorers: list, root: Path | None, options: dict) -> list:
    from lfwbench.evaluation import evaluate as evaluate_input

    pairs_path, view2 = scored_list(options)
    keys = ("batch_size", "flip", "threshold_from", "skip_missing", "fold", "far")
    settings = {key: options[key] for key in keys}
    return [evaluate_input(s, root, pairs_path, view2=view2, progress=not quiet(), **settings) for s in scorers]


def lists_read(options: dict) -> list[Path | None]:
    return [options["pairs_path"], options["view2"], options["threshold_from"]]


@main.command()
@with_options([input_options(multiple=False)])
@evaluation_options
@click.option(
    "--out",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="Write results.json here (- for stdout).",
)
@click.option(
    "--predictions",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write per-pair CSV here (name1,image1,name2,image2,score,...: reads back as --scores).",
)
@gate_options
def evaluate(models, embeddings, scores, out: Path | None, predictions: Path | None, fail_under, gate, data,
             **options) -> None:  # fmt: skip
    """Score a pair list with one input: accuracy, TPR, TNR, AUC, EER with intervals, View 2 folds, loss.

    The input is a checkpoint (--model), or embeddings (--embeddings) or pair scores (--scores) computed by any
    library. The threshold comes from --threshold-from, the run's validation pairs, or the protocol's training side
    (pairsDevTrain.txt; on View 2 the other nine folds), and every headline says which.

    Example: lfwbench evaluate --embeddings emb.npz --view2 ../shared/lfw/pairs.txt
    """
    from lfwbench.evaluation import files_read
    from lfwbench.files import refuse_overwriting, write_texts
    from lfwbench.results import predictions_csv, results_json

    inputs = given_inputs(models, embeddings, scores)
    if len(inputs) != 1:
        raise click.UsageError("give one input: --model, --embeddings or --scores (report compares several)")
    root = optional_data_root(data)
    scorers = open_inputs(inputs, root, options)
    to_stdout = out == Path("-")
    named = [(path, render) for path, render in ((out, results_json), (predictions, predictions_csv)) if path]
    files = {path: render for path, render in named if path != Path("-")}
    refuse_overwriting([path for path, _ in named if path != Path("-")], files_read(scorers, root, lists_read(options)))
    (results,) = run_evaluations(scorers, root, options)
    echo_headline(results, err=to_stdout)  # stdout holds the JSON alone then
    if to_stdout:
        click.echo(results_json(results), nl=False)
    write_texts({path: render(results) for path, render in files.items()})
    for path in files:
        click.echo(f"wrote {path}")
    check_gate([results.gate_value(gate)], fail_under)


def write_report_outputs(
    results: list, files, plotlyjs: str, gallery: int, root: Path | None, fail_under, gate
) -> None:
    """Show each headline, write the page and its results (all or none), then --fail-under."""
    from lfwbench.report import write_report_files

    for result in results:
        echo_headline(result)
    write_report_files(files, results, plotlyjs, gallery, root)
    click.echo(f"wrote {files.html} ({files.html.stat().st_size / 1e6:.1f} MB)")
    for path in files.all[1:]:
        click.echo(f"wrote {path}")
    check_gate([result.gate_value(gate) for result in results], fail_under)


report_options = [
    click.option(
        "--out",
        type=click.Path(dir_okay=False, path_type=Path),
        help="HTML file [default: reports/<checkpoint>-<pair-list>.html]; the results go beside it as .json.",
    ),
    click.option(
        "--plotlyjs",
        type=click.Choice(["inline", "cdn"]),
        default="inline",
        show_default=True,
        help="Inline plotly.js (offline, about 4.7 MB) or load it from the CDN.",
    ),
    click.option("--gallery", type=click.IntRange(0), default=10, show_default=True, help="Cards per gallery section."),
    click.option(
        "--summary",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Also write a Markdown table (pull requests).",
    ),
    click.option(
        "--latex", type=click.Path(dir_okay=False, path_type=Path), help="Also write a LaTeX (booktabs) table (papers)."
    ),
]


@main.command()
@with_options([input_options(multiple=True)])
@click.option(
    "--results",
    "results_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Render from saved results.json instead (no TensorFlow needed); repeatable, and mixes with the inputs.",
)
@click.option(
    "--crossval",
    "crossval_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Report a View 2 cross-validation: the --runs folder of `lfwbench crossval`.",
)
@click.option(
    "--devtest",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="With --crossval: results.json of the same preset on pairsDevTest, shown beside it.",
)
@evaluation_options
@with_options(report_options)
@gate_options
def report(models, embeddings, scores, results_files, crossval_dir, devtest, out, fail_under, gate, plotlyjs, gallery,
           summary, latex, data, **options) -> None:  # fmt: skip
    """Evaluate and write one self-contained HTML report (and each input's results JSON).

    Several inputs of any kind (--model, --embeddings, --scores, --results) are compared side by side: one table,
    overlaid ROC curves, McNemar's test between each two scored on the same pairs, the pairs they disagree on. Faces
    are shown from the --data root only.

    Example: lfwbench report --model runs/quick/best.h5 --embeddings other.npz --data ../shared/lfw
    """
    from lfwbench.evaluation import files_read
    from lfwbench.report import report_files
    from lfwbench.results import read_results

    if crossval_dir:
        crossval = write_crossval_page(crossval_dir, devtest, out, plotlyjs)
        check_gate([(crossval.summary["mean"], "View 2 mean accuracy over folds")], fail_under)
        return
    inputs = given_inputs(models, embeddings, scores)
    if not inputs and not results_files:
        raise click.UsageError("give --model, --embeddings, --scores, --results FILE or --crossval DIR")
    root = optional_data_root(data)
    results = [read_results(path) for path in results_files]
    scorers = open_inputs(inputs, root, options)
    results += run_evaluations(scorers, root, options)
    read = files_read(scorers, root, [*lists_read(options), *results_files])
    files = report_files(results, out, summary, latex, read)
    write_report_outputs(results, files, plotlyjs, gallery, root, fail_under, gate)


def write_crossval_page(folder: Path, devtest: Path | None, out: Path | None, plotlyjs: str):
    """reports/crossval-FOLDER.html from FOLDER/crossval.json; returns the crossval."""
    from lfwbench.files import refuse_overwriting
    from lfwbench.report import write_crossval_report
    from lfwbench.results import read_crossval, read_results
    from lfwbench.runs import crossval_file

    out = out or Path("reports") / f"crossval-{folder.resolve().name}.html"
    source = crossval_file(folder)
    refuse_overwriting([out], [source, *([devtest] if devtest else [])])
    crossval = read_crossval(source)
    write_crossval_report(out, crossval, read_results(devtest) if devtest else None, plotlyjs)
    click.echo(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    click.echo(crossval.headline())
    return crossval


@main.command()
@training_options()
@click.option("--runs", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"), show_default=True)
@flip_option
@with_options(report_options)
@gate_options
@write_mode
def run(data, runs: Path, flip: bool, out, fail_under, gate, plotlyjs, gallery, summary, latex, resume, overwrite,
        **options) -> None:  # fmt: skip
    """The whole notebook in one command: train, evaluate on pairsDevTest, write the report.

    Example: lfwbench run --data ../shared/lfw --preset cpu
    """
    from lfwbench.evaluation import evaluate as evaluate_model
    from lfwbench.images import resolve_data_root
    from lfwbench.pairs import protocol_files
    from lfwbench.report import report_files
    from lfwbench.runs import BEST_H5, default_run_folder, run_files
    from lfwbench.training import train as train_run

    root = resolve_data_root(data)
    folder = default_run_folder(options["preset"], options["seed"], runs)
    trained = train_run(
        train_config(options), root, folder, mode=mode_of(resume, overwrite), verbose=0, progress=progress
    )
    echo_summary(trained)
    checkpoint = trained.out_dir / BEST_H5
    results = evaluate_model(checkpoint, root, root / options["eval_list"], flip=flip, progress=not quiet())
    files = report_files([results], out, summary, latex, run_files(checkpoint) + protocol_files(root))
    write_report_outputs([results], files, plotlyjs, gallery, root, fail_under, gate)


@main.command()
@click.option(
    "--seconds", type=click.FloatRange(0.1), default=2.0, show_default=True, help="Matmul timing per precision."
)
def doctor(seconds: float) -> None:
    """What this machine is, its measured matmul rate, and the minutes each preset's training should take here.

    Example: lfwbench doctor
    """
    from lfwbench.doctor import diagnose

    progress("timing matrix products ...")
    found = diagnose(seconds)
    machine = found.environment
    click.echo(f"CPU: {machine.cpu}, {machine.cores} cores; vector instructions: {machine.vector_instructions}")
    click.echo(f"GPU: {machine.gpu}")
    onednn = {True: "on", False: "off", None: "unknown"}[found.onednn]
    click.echo(f"TensorFlow {found.tensorflow}, oneDNN {onednn}; Keras {machine.keras_version}")
    half = f", {found.half_matmul_gflops:.0f} GFLOP/s in half precision" if found.half_matmul_gflops else ""
    click.echo(f"matmul: {found.matmul_gflops:.0f} GFLOP/s float32{half}")
    click.echo(f"training computes in: {found.policy} (lfwbench train --mixed-precision/--no-mixed-precision)")
    click.echo("expected training, at the share of the matmul rate each preset reached where measured:")
    width = max(len("preset"), *(len(row.preset) for row in found.estimates)) + 1
    click.echo(f"{'preset':<{width}}{'epochs':>7}{'GFLOP/epoch':>13}{'share':>7}{'minutes':>9}")
    for row in found.estimates:
        share, minutes = (f"{row.share:.2f}", f"{row.minutes:.0f}") if row.minutes else ("-", "unknown")
        click.echo(f"{row.preset:<{width}}{row.epochs:>7}{row.gflop_per_epoch:>13,.0f}{share:>7}{minutes:>9}")
