"""The errors lfwbench raises for bad input; `cli` turns each into a one-line message and exit status 1."""

from __future__ import annotations

from pathlib import Path


class LfwbenchError(Exception):
    """A failure the user can fix: the message says where and how."""


class PairListError(LfwbenchError):
    """A pair or people list that does not follow the LFW format, located by file and line."""

    def __init__(self, path: str | Path, line: int, message: str):
        self.path, self.line = Path(path), line
        super().__init__(f"{self.path.name}:{line}: {message}")


class ImageError(LfwbenchError):
    """Missing or undecodable images, or a data root holding no LFW variant."""


class CheckpointError(LfwbenchError):
    """A model file that cannot be read or whose architecture lfwbench does not know."""


class RunFolderError(LfwbenchError):
    """A run folder that is in use, not empty, or does not hold what its record says."""


def brief(value: object, limit: int = 80) -> str:
    """`value` as a message may show it: its repr (control characters escaped), cut to `limit` characters with the
    length of the rest said, so a hostile field never makes a message long."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"


MESSAGE_LIMIT = 440  # characters of a message's text, so that `Warning: ...` and the cut's note stay under 500


def one_line(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """A message fit for one terminal line: control characters (a name's ANSI escapes, newlines) escaped, cut to
    `limit` with the length of the rest said."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"
