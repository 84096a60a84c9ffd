"""What machine produced a figure: CPU model and vector instructions, cores, Python, OS. No TensorFlow.

Times on these shared hosts differ sixfold between an AVX-512 and an AVX2-only CPU, so every time lfwbench
records is stored beside this description.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lfwbench import __version__

VECTOR_FLAGS = ("avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile", "avx2", "fma")
BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")  # a CPU with one of these multiplies bfloat16 natively


def _cpu() -> tuple[str, set[str]]:
    """The CPU's model name and instruction flags, from /proc/cpuinfo where there is one."""
    model, flags = platform.processor() or "unknown", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    return model, flags


def native_bfloat16() -> bool:
    """Whether this CPU computes in bfloat16 natively: there, mixed precision halves a training step's time."""
    return any(flag in _cpu()[1] for flag in BFLOAT16_FLAGS)


def describe() -> dict[str, str | int]:
    """CPU model, its vector instructions (the widest first), cores, Python and OS."""
    model, flags = _cpu()
    return {
        "cpu": model,
        "vector_instructions": " ".join(flag for flag in VECTOR_FLAGS if flag in flags) or "unknown",
        "cores": os.cpu_count() or 0,
        "python": platform.python_version(),
        "os": platform.platform(),
    }


LIBRARIES = {"numpy": ("numpy",), "tensorflow": ("tensorflow", "tensorflow-cpu"), "keras": ("keras",),
             "opencv": ("opencv-python-headless", "opencv-python")}  # fmt: skip


def library_versions() -> dict[str, str]:
    """lfwbench's and its stack's versions, read from package metadata (no TensorFlow import)."""
    versions = {"lfwbench": __version__}
    for name, distributions in LIBRARIES.items():
        versions[name] = "not installed"
        for distribution in distributions:
            try:
                versions[name] = importlib.metadata.version(distribution)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return versions


def _output(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


@dataclass
class Environment:
    """What produced a figure: the machine, GPU, versions, the git commit of a checkout, the command line."""

    cpu: str
    vector_instructions: str
    cores: int
    python: str
    os: str
    gpu: str
    lfwbench_version: str
    numpy_version: str
    tensorflow_version: str
    keras_version: str
    opencv_version: str
    git_commit: str
    command: str


def environment() -> Environment:
    """Everything that says what produced a figure: the machine, GPU, versions, git commit of a checkout, command."""
    checkout = Path(__file__).resolve().parents[1]
    commit = (
        _output(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"]) if (checkout / ".git").exists() else ""
    )
    gpu = _output(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]) if shutil.which("nvidia-smi") else ""
    return Environment(
        **describe(),
        gpu=gpu.replace("\n", ", ") or "none",
        **{f"{name}_version": version for name, version in library_versions().items()},
        git_commit=commit or "not a checkout",
        command=" ".join(["lfwbench" if Path(sys.argv[0]).name == "lfwbench" else sys.argv[0], *sys.argv[1:]]),
    )
