"""Load every distinct image of pairsDevTrain at 105x105x3: cold (empty cache), then warm (from the cache).

Usage: python benchmarks/loading.py [DATA_ROOT]   (default ../shared/lfw)
Targets (issue 2): cold under 15 s on 2 cores, warm under 1 s, arrays under 150 MB.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

from lfwbench.images import ImageSpec, find_variant, load_pair_images
from lfwbench.pairs import load_pairs


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/lfw")
    _, image_dir = find_variant(root)
    pairs = load_pairs(root / "pairsDevTrain.txt").pairs
    with tempfile.TemporaryDirectory() as cache:
        rows = []
        for label in ("cold", "warm"):
            start = time.perf_counter()
            loaded = load_pair_images(pairs, image_dir, ImageSpec(), "pairsDevTrain.txt", cache_dir=Path(cache))
            rows.append((label, time.perf_counter() - start, loaded.images.shape[0], loaded.images.nbytes / 1e6))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'run':<6}{'seconds':>9}{'images':>8}{'images/s':>10}{'array MB':>10}")
    for label, seconds, count, megabytes in rows:
        print(f"{label:<6}{seconds:>9.2f}{count:>8}{count / seconds:>10.0f}{megabytes:>10.1f}")
    print(f"peak resident memory of the process: {peak:.0f} MB")


if __name__ == "__main__":
    main()
