"""Peak memory and time of `lfwbench evaluate` on a long pair list (200,000 pairs of LFW's 13,233 images by
default), for this checkout and, with --before REV, the lfwbench of that commit, alternating, each run alone in its
own process. Memory should grow with the distinct images, not with the pairs.

Each engine of this checkout is measured (`--engine float32` and `int8`); a checkpoint whose run has no TFLite twin
of an engine has it converted into the cache in its first round, so take the figures of the second.

Usage: python benchmarks/many_pairs.py [DATA_ROOT] --checkpoint runs/levers/cpu-base/best.keras [--pairs 200000]
       [--before e983ca4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from lfwbench.images import find_variant


def write_list(root: Path, path: Path, count: int, seed: int = 0) -> None:
    """A View 1 style list of `count` pairs, half same and half different, drawn from every image of the root."""
    rng = np.random.default_rng(seed)
    image_dir = find_variant(root)[1]
    people = {folder.name: len(list(folder.glob("*.jpg"))) for folder in sorted(image_dir.iterdir())}
    names = list(people)
    twice = [name for name in names if people[name] >= 2]
    half = count // 2
    lines = [str(half)]
    for name in rng.choice(twice, half):
        i, j = rng.choice(np.arange(1, people[name] + 1), 2, replace=False)
        lines.append(f"{name}\t{i}\t{j}")
    for a, b in rng.choice(len(names), (half, 2)):
        b = (b + 1) % len(names) if a == b else b
        lines.append(
            f"{names[a]}\t{rng.integers(1, people[names[a]] + 1)}\t{names[b]}\t{rng.integers(1, people[names[b]] + 1)}"
        )
    path.write_text("\n".join(lines) + "\n")


def measure(source: Path | None, args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak MB of one `lfwbench evaluate`, from `source` (a checkout) or the installed one."""
    environment = {**os.environ, **({"PYTHONPATH": str(source)} if source else {})}
    command = ["/usr/bin/time", "-f", "TIME %e %M", sys.executable, "-m", "lfwbench", "-q", "evaluate", *args]
    # run from the source folder (or a neutral one): `-m` puts the working folder first on sys.path
    done = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=source or "/")
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    seconds, kilobytes = re.search(r"TIME ([\d.]+) (\d+)", done.stderr).groups()
    return float(seconds), int(kilobytes) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", nargs="?", type=Path, default=Path("../shared/lfw"))
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--pairs", type=int, default=200_000)
    parser.add_argument("--before", help="a commit to measure against (checked out in a temporary worktree)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        write_list(args.data, work / "many.txt", args.pairs)
        contenders: dict[str, tuple[Path | None, list[str]]] = {
            f"this checkout, --engine {engine}": (None, ["--engine", engine]) for engine in ("float32", "int8")
        }
        if args.before:
            subprocess.run(["git", "worktree", "add", "--detach", str(work / "before"), args.before], check=True,
                           capture_output=True)  # fmt: skip
            contenders[args.before] = (work / "before", [])
        try:
            for round_number in range(args.rounds):
                for number, (label, (source, options)) in enumerate(contenders.items()):
                    out = work / f"{number}-{round_number}.json"
                    run = ["--model", str(args.checkpoint.resolve()), "--data", str(args.data.resolve()),
                           "--pairs", str(work / "many.txt"), "--out", str(out), *options]  # fmt: skip
                    seconds, peak = measure(source, run)
                    print(f"| {label} (round {round_number + 1}) | {args.pairs:,} | {seconds:.0f} | {peak:,.0f} |",
                          flush=True)  # fmt: skip
        finally:
            if args.before:
                subprocess.run(["git", "worktree", "remove", "--force", str(work / "before")], capture_output=True)


if __name__ == "__main__":
    main()
