"""What machine produced a figure: CPU model and vector instructions, cores, Python, OS. No TensorFlow.

Times on these shared hosts differ sixfold between an AVX-512 and an AVX2-only CPU, so every time lfwbench
records is stored beside this description.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

VECTOR_FLAGS = ("avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "avx2", "fma")


def describe() -> dict[str, str | int]:
    """CPU model, its vector instructions (the widest first), cores, Python and OS."""
    model, flags = platform.processor() or "unknown", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    return {
        "cpu": model,
        "vector_instructions": " ".join(flag for flag in VECTOR_FLAGS if flag in flags) or "unknown",
        "cores": os.cpu_count() or 0,
        "python": platform.python_version(),
        "os": platform.platform(),
    }
