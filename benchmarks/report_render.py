"""Time `lfwbench report --results` for a 1,000-pair results file: read the JSON, render, write the HTML.

Usage: python benchmarks/report_render.py RESULTS_JSON   (e.g. one written by `lfwbench evaluate --out`)
Target (issue 5): under 2 s; the page under 6 MB with plotly.js inline.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from lfwbench.report import write_report
from lfwbench.results import read_results


def main() -> None:
    source = Path(sys.argv[1])
    timings = []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(3):
            start = time.perf_counter()
            results = read_results(source)
            page = write_report(Path(folder) / "report.html", [results])
            timings.append(time.perf_counter() - start)
        size = page.stat().st_size
    print(
        f"{len(results.pairs)} pairs: render {min(timings):.2f} s (best of 3, first {timings[0]:.2f} s), "
        f"page {size / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    main()
