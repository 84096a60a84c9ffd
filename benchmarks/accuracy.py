"""Train a preset from scratch for several seeds and score each on pairsDevTest, as the accuracy record asks.

Each run trains on the DevTrain people only (the tool refuses DevTest identities), picks the threshold on its
validation pairs, and is evaluated once on the test pairs. Prints one row per seed and the mean ± std.

Usage: python benchmarks/accuracy.py [DATA_ROOT] --preset cpu --seeds 0,1,2 [--runs runs/accuracy] [--flip]
       [--set augment=true --set epochs=20 ...]   (any TrainConfig field)

--flip also scores each run with test-time flip averaging (columns flip_at_val_threshold, flip_auc).
--ensemble also merges the seeds' best checkpoints into one (`lfwbench ensemble`; give --set split_seed=0 so that
they share a validation split) and scores it the same way.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import fields
from pathlib import Path

import numpy as np

from lfwbench import runs
from lfwbench.ensemble import write_ensemble
from lfwbench.evaluation import evaluate
from lfwbench.files import write_json
from lfwbench.metrics import wilson_interval
from lfwbench.training import TrainConfig, train


def parse_setting(text: str) -> tuple[str, object]:
    name, value = text.split("=", 1)
    kinds = {f.name: f.type for f in fields(TrainConfig)}
    if name not in kinds:
        raise SystemExit(f"--set {name}: not a TrainConfig field ({', '.join(kinds)})")
    if value.lower() in ("true", "false"):
        return name, value.lower() == "true"
    for cast in (int, float):
        try:
            return name, cast(value)
        except ValueError:
            pass
    return name, value


def scores(checkpoint: Path, data: Path, flip: bool) -> dict:
    """Test accuracy at 0.5 and at the validation threshold, AUC; with `flip`, the same under flip averaging."""
    metrics = evaluate(checkpoint, data, progress=False).metrics
    row = {"test_at_0.5": metrics.at_half.accuracy, "auc": metrics.auc, "pairs": metrics.pairs,
           "test_at_val_threshold": metrics.at_threshold.accuracy}  # fmt: skip
    if flip:
        flipped = evaluate(checkpoint, data, flip=True, progress=False).metrics
        row |= {"flip_at_val_threshold": flipped.at_threshold.accuracy, "flip_auc": flipped.auc}
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", nargs="?", type=Path, default=Path("../shared/lfw"))
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--runs", type=Path, default=Path("runs/accuracy"))
    parser.add_argument("--set", dest="settings", action="append", default=[], type=parse_setting)
    parser.add_argument("--flip", action="store_true", help="also score with test-time flip averaging")
    parser.add_argument("--ensemble", action="store_true", help="also score the seeds merged into one model")
    args = parser.parse_args()
    rows, folders = [], []
    label = ",".join(f"{k}={v}" for k, v in args.settings)
    stem = args.runs / f"{args.preset}{'-' + label if label else ''}"
    for seed in (int(s) for s in args.seeds.split(",")):
        out = stem.with_name(f"{stem.name}-seed{seed}")
        folders.append(out)
        start = time.perf_counter()
        if (out / runs.SUMMARY).is_file():
            summary = json.loads((out / runs.SUMMARY).read_text())
        else:
            config = TrainConfig(preset=args.preset, seed=seed, **dict(args.settings))
            mode = "resume" if runs.RunFolder(out).is_run() else "new"  # an interrupted seed goes on
            result = train(config, args.data, out, mode=mode, verbose=2)
            summary = {"epochs": result.epochs_run, "minutes": (time.perf_counter() - start) / 60,
                       "val_accuracy": result.best_val_accuracy}  # fmt: skip
            write_json(out / runs.SUMMARY, summary)
        rows.append({"seed": seed, **summary, **scores(out / runs.BEST_KERAS, args.data, args.flip)})
    print(f"preset {args.preset} {label}".rstrip())
    header = ("seed", "epochs", "minutes", "val_accuracy", "test_at_0.5", "test_at_val_threshold", "auc")
    header += ("flip_at_val_threshold", "flip_auc") if args.flip else ()
    print("".join(f"{h:>22}" for h in header))
    for row in rows:
        print("".join(f"{row[h]:>22.4f}" if isinstance(row[h], float) else f"{row[h]:>22}" for h in header))
    for key in header[2:]:
        values = np.array([row[key] for row in rows])
        print(f"{key:>22}: {values.mean():.4f} ± {values.std(ddof=1) if len(values) > 1 else 0:.4f} (std)")
    total = sum(row["pairs"] for row in rows)
    for key in ("test_at_val_threshold", "flip_at_val_threshold")[: 1 + args.flip]:
        correct = sum(round(row[key] * row["pairs"]) for row in rows)
        interval = wilson_interval(correct, total)
        print(f"{key}, all seeds pooled: {correct / total:.4f} "
              f"(95% Wilson interval {interval.low:.4f}-{interval.high:.4f})")  # fmt: skip
    if args.ensemble:
        members = [folder / runs.BEST_KERAS for folder in folders]
        merged_folder = stem.with_name(f"{stem.name}-ensemble{args.seeds.replace(',', '+')}")
        merged = write_ensemble(members, merged_folder, overwrite=True)
        merged_scores = scores(merged, args.data, args.flip)
        pairs = merged_scores.pop("pairs")
        for key, value in merged_scores.items():
            line = f"ensemble of {len(members)}, {key}: {value:.4f}"
            if not key.endswith("auc"):
                interval = wilson_interval(round(value * pairs), pairs)
                line += f" (95% Wilson interval {interval.low:.4f}-{interval.high:.4f})"
            print(line)


if __name__ == "__main__":
    main()
