"""What reaches the terminal besides results: TensorFlow's native start-up logs are dropped unless asked for.

TensorFlow 2.21 writes lines such as `I0000 00:00:... port.cc:153] oneDNN custom operations are on` straight to
file descriptor 2 from C++, before its log level is read, so no environment variable silences them. While a command
runs, descriptor 2 feeds a pipe; a thread passes every line on to the real stderr except those native log lines.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

import click

from lfwbench.errors import one_line

T = TypeVar("T")

# absl's C++ line prefix (severity, date, time, thread, file:line]), its warning about logging before init, and
# LiteRT's note on its CPU delegate.
NATIVE_LOG = re.compile(
    rb"^([IWE]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] |WARNING: All log messages before absl|INFO: Created TensorFlow Lite)"
)


@contextlib.contextmanager
def without_native_logs() -> Iterator[None]:
    """Drop TensorFlow's native log lines from descriptor 2 for the block. Python's own stderr writes go straight to
    the real stderr meanwhile (a fresh stream on it), so nothing of lfwbench's is delayed or reordered."""
    try:
        if sys.stderr.fileno() != 2:
            raise ValueError("stderr is not descriptor 2")
    except (OSError, ValueError):  # stderr captured (tests) or replaced: leave it as it is
        yield
        return
    sys.stderr.flush()
    original = os.dup(2)
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)

    def pump() -> None:
        with os.fdopen(read, "rb") as source:
            for line in source:
                if not NATIVE_LOG.match(line):
                    os.write(original, line)

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()
    python_stderr = sys.stderr
    # left open afterwards: a logging handler made meanwhile may still hold it
    sys.stderr = os.fdopen(os.dup(original), "w", buffering=1, encoding=python_stderr.encoding, errors="replace")
    try:
        yield
    finally:
        sys.stderr.flush()
        sys.stderr = python_stderr
        os.dup2(original, 2)  # the pipe's last writer here closes: the pump drains it and ends
        thread.join(timeout=5)  # a child process still holding the pipe (a Ray worker) must not hold us
        os.close(original)


LIBRARY = "lfwbench"  # the logger the library reports progress (INFO) and warnings (WARNING) through


class _Terminal(logging.Handler):
    """Records of the library's logger as lines on stderr: warnings prefixed, control characters escaped."""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        click.echo(one_line(f"Warning: {message}" if record.levelno >= logging.WARNING else message), err=True)


def log_to_stderr(quiet: bool) -> None:
    """Render the library's one channel on stderr: progress unless `quiet`, warnings always."""
    logger = logging.getLogger(LIBRARY)
    logger.handlers = [_Terminal()]
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


def progress_bar(items: Iterable[T], label: str, shown: bool = True, length: int | None = None):
    """lfwbench's one progress bar: on stderr, and only on a terminal (a log gets the per-epoch and summary lines,
    not a bar redrawn in place)."""
    stream = click.get_text_stream("stderr")
    return click.progressbar(items, length=length, label=label, file=stream, hidden=not (shown and stream.isatty()))
