"""Each kind of input `lfwbench evaluate` and `report` take, on the real data, with its time and peak memory.

From one trained lfwbench checkpoint (trained on the View 1 training people): the checkpoint itself; its twin's
embeddings written to an .npz (as another library would hand them over) compared by cosine and by Euclidean
distance; its `--predictions` CSV read back as `--scores`; and View 2 on the embeddings. Each command runs alone in
a subprocess, timed with /usr/bin/time (wall seconds, peak resident memory); the machine is printed first.

Usage: python benchmarks/scoring_inputs.py [DATA_ROOT] --checkpoint runs/levers/cpu-base/best.keras [--work DIR]
View 2 figures of a model trained on View 1 people are no View 2 results (View 1 and View 2 share people): they
show that the input kinds agree, nothing more.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def run(label: str, args: list[str]) -> dict:
    """One lfwbench command alone: its wall time, peak memory and the results it wrote (if any)."""
    command = ["/usr/bin/time", "-f", "TIME %e %M", sys.executable, "-m", "lfwbench", "-q", *args]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{label}: {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    seconds, kilobytes = re.search(r"TIME ([\d.]+) (\d+)", done.stderr).groups()
    row = {"input": label, "seconds": float(seconds), "peak_mb": int(kilobytes) / 1024, "command": " ".join(args)}
    out = args[args.index("--out") + 1] if "--out" in args else None
    if out and out.endswith(".json"):
        results = json.loads(Path(out).read_text())
        metrics = results["metrics"]
        point = metrics["at_threshold"] or metrics["at_half"]
        row |= {"list": results["data"]["pair_list_name"], "pairs": metrics["pairs"], "accuracy": point["accuracy"],
                "auc": metrics["auc"], "threshold from": metrics["threshold_source"]["description"]
                if metrics["threshold_source"] else "0.5",
                "view2": metrics["view2"]["mean"] if metrics["view2"] else None,
                "view2_se": metrics["view2"]["standard_error"] if metrics["view2"] else None}  # fmt: skip
    return row


def export_embeddings(checkpoint: Path, root: Path, lists: list[Path], out: Path) -> tuple[int, float]:
    """The checkpoint's twin embeddings of every image the lists name, as keys and vectors; count and seconds."""
    from lfwbench.checkpoints import load_model, read_stamp
    from lfwbench.images import default_cache_dir, find_variant, load_images
    from lfwbench.inference import embed_images
    from lfwbench.pairs import load_pairs
    from lfwbench.scoring import image_key

    spec = read_stamp(checkpoint).spec
    keys = sorted({image_key(n, i) for path in lists for p in load_pairs(path).pairs
                   for n, i in ((p.name1, p.index1), (p.name2, p.index2))})  # fmt: skip
    image_dir = find_variant(root)[1]
    images, failed = load_images([image_dir / key for key in keys], spec, default_cache_dir())
    assert not failed, failed
    started = time.perf_counter()
    vectors = embed_images(load_model(checkpoint), images, verbose=0)
    seconds = time.perf_counter() - started
    np.savez(out, keys=np.array(keys), vectors=vectors)
    return len(keys), seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", nargs="?", type=Path, default=Path("../shared/lfw"))
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("runs/scoring-inputs"))
    args = parser.parse_args()
    root, work, model = args.data, args.work, str(args.checkpoint)
    work.mkdir(parents=True, exist_ok=True)
    from lfwbench.doctor import matmul_gflops
    from lfwbench.machine import describe

    machine = describe()
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['vector_instructions']}; "
          f"float32 matmul {matmul_gflops():.0f} GFLOP/s")  # fmt: skip
    count, seconds = export_embeddings(args.checkpoint, root, [root / n for n in ("pairsDevTrain.txt",
                                       "pairsDevTest.txt", "pairs.txt")], work / "twin.npz")  # fmt: skip
    print(f"exported {count:,} twin embeddings in {seconds:.1f} s ({count / seconds:.0f} images/s)")
    data = ["--data", str(root)]
    devtrain = ["--threshold-from", str(root / "pairsDevTrain.txt")]
    for name in ("train", "test"):  # the model's own scores of both View 1 lists, for the round trip
        pairs = root / f"pairsDev{name.title()}.txt"
        predictions = str(work / f"{name}.csv")
        run("", ["evaluate", "--model", model, *data, "--pairs", str(pairs), "--predictions", predictions])
    test_rows = (work / "test.csv").read_text().splitlines()[1:]
    (work / "both.csv").write_text((work / "train.csv").read_text() + "\n".join(test_rows) + "\n")
    view2 = ["--view2", str(root / "pairs.txt")]
    rows = [
        run("lfwbench checkpoint (its validation threshold)", ["evaluate", "--model", model, *data,
            "--out", str(work / "model.json")]),
        run("lfwbench checkpoint, threshold from pairsDevTrain", ["evaluate", "--model", model, *data, *devtrain,
            "--out", str(work / "model-devtrain.json")]),
        run("its --predictions read back as --scores", ["evaluate", "--scores", str(work / "both.csv"),
            "--score-kind", "probability", *data, "--out", str(work / "scores.json")]),
        run("its twin's embeddings, cosine", ["evaluate", "--embeddings", str(work / "twin.npz"), *data,
            "--out", str(work / "cosine.json")]),
        run("its twin's embeddings, euclidean", ["evaluate", "--embeddings", str(work / "twin.npz"), "--metric",
            "euclidean", *data, "--out", str(work / "euclidean.json")]),
        run("its twin's embeddings, cosine, View 2", ["evaluate", "--embeddings", str(work / "twin.npz"), *view2,
            "--out", str(work / "view2.json")]),
        run("report: embeddings on View 2 (no --data)", ["report", "--embeddings", str(work / "twin.npz"), *view2,
            "--out", str(work / "view2-report.html")]),
    ]  # fmt: skip
    columns = ["input", "list", "pairs", "accuracy", "auc", "threshold from", "view2", "view2_se", "seconds", "peak_mb"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    formats = {"accuracy": "{:.4f}", "auc": "{:.4f}", "view2": "{:.4f}", "view2_se": "{:.4f}", "seconds": "{:.1f}",
               "peak_mb": "{:.0f}"}  # fmt: skip
    for row in rows:
        cells = ["" if row.get(c) is None else formats.get(c, "{}").format(row[c]) for c in columns]
        print("| " + " | ".join(cells) + " |")
    for row in rows:
        print(f"  {row['input']}: lfwbench {row['command']}")


if __name__ == "__main__":
    main()
