"""Peak memory of `lfwbench evaluate` with one image replaced by a 623-byte JPEG header declaring 20,000 x 20,000.

The header is refused before decoding, so the run should cost what the same run without it costs. Each contender
runs in its own process, alternating, and its peak resident memory is read from `wait4`.

    python benchmarks/hostile_images.py ../shared/lfw [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

from lfwbench.images import find_variant
from lfwbench.pairs import load_pairs


def jpeg_header(width: int, height: int) -> bytes:
    """SOI, a quantisation table and a baseline frame header declaring `width` x `height`: no pixel data."""
    quantisation = b"\xff\xdb" + struct.pack(">H", 67) + b"\x00" + bytes(range(1, 65))
    frame = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3)
    frame += b"".join(bytes([component, 0x11, 0]) for component in (1, 2, 3))
    return (b"\xff\xd8" + quantisation + frame).ljust(623, b"\0")


def data_root(real: Path, folder: Path, bomb: bool) -> Path:
    """A data root whose person folders link to the real ones, but for the first pair's person, copied, whose
    first image is the header bomb when `bomb`."""
    _, image_dir = find_variant(real)
    first = load_pairs(real / "pairsDevTest.txt").pairs[0]
    images = folder / "lfw-deepfunneled"
    images.mkdir(parents=True)
    for person in os.scandir(image_dir):
        if person.name != first.name1:
            (images / person.name).symlink_to(Path(person.path).resolve())
    shutil.copytree(image_dir / first.name1, images / first.name1)
    if bomb:
        (images / first.name1 / f"{first.name1}_{first.index1:04d}.jpg").write_bytes(jpeg_header(20_000, 20_000))
    for name in ("pairsDevTrain.txt", "pairsDevTest.txt"):
        shutil.copyfile(real / name, folder / name)
    return folder


def peak_mb(command: list[str], env: dict) -> tuple[float, int]:
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    process.stderr.close()
    return usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        model = work / "random.keras"
        subprocess.run(
            [sys.executable, "-c", "import sys; from lfwbench.checkpoints import save_model; "
             "from lfwbench.model import build_siamese; save_model(build_siamese('quick', (64, 64, 3), seed=0), "
             "sys.argv[1])", str(model)],
            check=True,
        )  # fmt: skip
        roots = {name: data_root(args.data, work / name, name == "bomb") for name in ("clean", "bomb")}
        env = {**os.environ, "LFWBENCH_CACHE": str(work / "cache"), "TF_CPP_MIN_LOG_LEVEL": "3"}
        evaluate = [sys.executable, "-m", "lfwbench", "evaluate", "--model", str(model), "--skip-missing"]
        peak_mb(evaluate + ["--data", str(roots["clean"])], env)  # converts the twin once, into the cache
        figures: dict[str, list[float]] = {"clean": [], "bomb": []}
        for _ in range(args.repeats):
            for name, root in roots.items():
                megabytes, code = peak_mb(evaluate + ["--data", str(root)], env)
                assert code == 0, f"{name}: exit {code}"
                figures[name].append(megabytes)
        print("| pair list | peak resident memory (MB), each run |")
        print("|---|---|")
        for name, values in figures.items():
            label = "pairsDevTest, one image a 623-byte 20,000 x 20,000 header" if name == "bomb" else "pairsDevTest"
            print(f"| {label} | {', '.join(f'{value:.0f}' for value in values)} |")
        mean = {name: sum(values) / len(values) for name, values in figures.items()}
        print(f"difference of the means: {mean['bomb'] - mean['clean']:+.0f} MB")


if __name__ == "__main__":
    main()
