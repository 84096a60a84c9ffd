"""Do the int8 and float32 engines decide alike? Scores a pair list with both, at each engine's validation threshold.

    python benchmarks/int8_agreement.py runs/crossval-cpu-seed0/fold01/best.keras ../shared/lfw

Prints, for the checkpoint's run: each engine's validation threshold and accuracy, the share of pairs on which
their verdicts agree (each at its own threshold, and both at float32's), and the largest probability difference.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lfwbench.evaluation import evaluate
from lfwbench.metrics import wilson_interval


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--pairs", type=Path, help="pair list (default: pairsDevTest.txt in the data root)")
    args = parser.parse_args()
    scored = {
        engine: evaluate(args.checkpoint, args.data, args.pairs, engine=engine, progress=False)
        for engine in ("float32", "int8")
    }
    probabilities = {engine: np.array([p.score for p in r.pairs]) for engine, r in scored.items()}
    thresholds = {engine: r.operating_point.threshold for engine, r in scored.items()}
    own = {engine: probabilities[engine] >= thresholds[engine] for engine in scored}
    common = {engine: probabilities[engine] >= thresholds["float32"] for engine in scored}
    pairs = len(probabilities["float32"])
    for engine, results in scored.items():
        print(f"{engine:>8}: threshold {thresholds[engine]:.4f}, accuracy {results.operating_point.accuracy:.4f}")
    for name, verdicts in (("each at its own threshold", own), ("both at float32's threshold", common)):
        agree = int((verdicts["float32"] == verdicts["int8"]).sum())
        interval = wilson_interval(agree, pairs)
        share = f"{agree}/{pairs} = {agree / pairs:.4f} (95% {interval.low:.4f}-{interval.high:.4f})"
        print(f"verdicts agree, {name}: {share}")
    print(f"largest probability difference: {np.abs(probabilities['float32'] - probabilities['int8']).max():.4f}")


if __name__ == "__main__":
    main()
