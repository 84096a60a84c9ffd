"""The `lfwbench` command: each command parses its options, calls one library function and prints the result.

TensorFlow is imported only inside the commands that need a model, so `--help`, `data` and
`report --results` start fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from lfwbench import __version__
from lfwbench.errors import LfwbenchError


class Lfwbench(click.Group):
    """Turns every LfwbenchError raised below into `Error: ...` and exit status 1, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except LfwbenchError as error:
            raise click.ClickException(str(error)) from None


data_option = click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="LFWBENCH_DATA",
    help="LFW data root (holds lfw-deepfunneled/, lfw2/, ... and the pair lists); default $LFWBENCH_DATA.",
)


def echo_err(message: str) -> None:
    click.echo(message, err=True)


@click.group(cls=Lfwbench, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lfwbench")
def main() -> None:
    """Siamese face verification on Labeled Faces in the Wild: check data, train, evaluate, report.

    Example: lfwbench run --data ../shared/lfw --preset quick
    """


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
        for line in item.missing:
            click.echo(f"  missing {line}")
    if not result.ok:
        raise click.ClickException("some pairs name missing images (listed above)")


@data.command("stats")
@data_option
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the figures here."
)
@click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.2, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the by-person validation split.")
def data_stats(data: Path | None, json_path: Path | None, val_fraction: float, seed: int) -> None:
    """People, images and per-split pair counts, as the original notebook printed them.

    Example: lfwbench data stats --data ../shared/lfw --json stats.json
    """
    from lfwbench.dataset import data_stats as compute_stats
    from lfwbench.files import write_json
    from lfwbench.images import resolve_data_root

    stats = compute_stats(resolve_data_root(data), val_fraction, seed)
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

    image_dir = fetch_lfw(dest, variant, mirrors, archive, report=echo_err)
    click.echo(f"ready: {image_dir}")


def print_json(data: dict) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))
