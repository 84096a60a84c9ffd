"""LFW images on disk: find the variant, check each file's header, decode once to uint8 at model size, cache.

A file is trusted only as far as its header: the declared size is checked before any pixel is decoded (a 600-byte
JPEG may declare 20,000 x 20,000 pixels), and a JPEG without its end marker is refused as truncated.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import stat
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from lfwbench.console import progress_bar
from lfwbench.errors import ImageError, brief
from lfwbench.files import TEMPORARY_PREFIX, atomic_open, write_json
from lfwbench.pairs import Pair

# Where each LFW archive puts its person folders, most specific first; "." is a root holding them itself.
VARIANT_DIRS = (
    "lfw2/lfw2",
    "lfw2",
    "lfw-deepfunneled/lfw-deepfunneled",
    "lfw-deepfunneled",
    "lfw_funneled",
    "lfw",
    ".",
)
LFW_SIDE = 250  # every LFW variant stores 250x250 images
MAX_SIDE = 4096  # larger declared sizes are refused before decoding; OpenCV's own limit is lowered to match
MIN_SIDE = 32  # smaller images hold no face worth scoring
MAX_FILE_BYTES = 8 << 20  # an LFW image is under 100 KB: a file of more than 8 MB is no face image
CACHE_FORMAT = 1
DATA_HELP = "pass --data DIR or set LFWBENCH_DATA; `lfwbench data fetch --dest DIR` downloads the data set"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageSpec:
    """How images are prepared for the model: output side, 1 or 3 channels, centred crop side (0: none)."""

    size: int = 105
    channels: int = 3
    crop: int = 0

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.size, self.size, self.channels)

    def checked(self) -> ImageSpec:
        """Itself when a model can take it, else ValueError: what a file someone else wrote may ask for."""
        numbers = (self.size, self.channels, self.crop)
        if not all(type(n) is int for n in numbers) or not (
            16 <= self.size <= MAX_SIDE and self.channels in (1, 3) and 0 <= self.crop <= LFW_SIDE
        ):
            raise ValueError(f"(size, channels, crop) {brief(numbers)} is no image a model takes")
        return self

    def describe(self) -> str:
        """What the model is fed, in words: `64x64 grayscale, centre crop 128 of the 250x250 image`."""
        crop = f"centre crop {self.crop} of the {LFW_SIDE}x{LFW_SIDE} image" if self.crop else "the whole image"
        return f"{self.size}x{self.size} {'grayscale' if self.channels == 1 else 'RGB'}, {crop}"


@dataclass
class PairImages:
    """The distinct images a pair list names, decoded once, and each pair's two indices into them."""

    pairs: list[Pair]
    paths: list[Path]
    images: np.ndarray
    left: np.ndarray
    right: np.ndarray
    skipped: list[tuple[Pair, str]] = field(default_factory=list)

    @property
    def labels(self) -> np.ndarray:
        return np.array([pair.label for pair in self.pairs], dtype=np.int8)


def resolve_data_root(data: str | Path | None) -> Path:
    """The data root from `--data`, else `LFWBENCH_DATA`; the error says how to get the data."""
    value = data or os.environ.get("LFWBENCH_DATA")
    if not value:
        raise ImageError(f"no LFW data root given: {DATA_HELP}")
    root = Path(value).expanduser()
    if not root.is_dir():
        raise ImageError(f"{root}: no such folder: {DATA_HELP}")
    return root


def _holds_people(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    for entry in os.scandir(folder):
        if entry.is_dir() and os.path.isfile(os.path.join(entry.path, f"{entry.name}_0001.jpg")):
            return True
    return False


def find_variant(root: str | Path) -> tuple[str, Path]:
    """Which LFW variant `root` holds, and the folder of its person folders, from the folder layout alone."""
    root = Path(root)
    for name in VARIANT_DIRS:
        if _holds_people(root / name):
            return (name.split("/")[0] if name != "." else "root"), root / name
    raise ImageError(f"{root}: no LFW images found (looked for {', '.join(VARIANT_DIRS[:-1])}): {DATA_HELP}")


def image_path(image_dir: Path, name: str, index: int) -> Path:
    """`Aaron_Eckhart 1` -> `<image_dir>/Aaron_Eckhart/Aaron_Eckhart_0001.jpg`."""
    return image_dir / name / f"{name}_{index:04d}.jpg"


class UnusableImage(ImageError):
    """An image file that cannot be used: unreadable, truncated, too large or too small; the message says which."""


@dataclass(frozen=True)
class ImageHeader:
    """What an image file declares before any pixel is decoded."""

    format: str
    mode: str
    width: int
    height: int

    @property
    def odd(self) -> str:
        """How a usable file differs from LFW's colour JPEGs ("" when it does not): it is converted, and counted."""
        kind = [] if self.format == "JPEG" else [f"{self.format} content"]
        return ", ".join(kind + (["grayscale"] if self.mode in ("L", "LA", "I", "I;16") else []))


def read_header(content: bytes) -> ImageHeader:
    """The header of an image file's bytes, checked: a readable format, sides within MIN_SIDE..MAX_SIDE, and for a
    JPEG its end-of-image marker (a truncated JPEG decodes silently to grey)."""
    try:
        with Image.open(io.BytesIO(content)) as image:
            header = ImageHeader(image.format or "unknown", image.mode, *image.size)
    except Image.DecompressionBombError as error:
        raise UnusableImage(f"too large ({error})") from None
    except (OSError, ValueError, SyntaxError) as error:  # Pillow's errors for a file it cannot parse
        raise UnusableImage(f"not a readable image ({error})") from None
    sides = f"{header.width}x{header.height}"
    if max(header.width, header.height) > MAX_SIDE:
        raise UnusableImage(f"too large ({sides} declared, at most {MAX_SIDE}x{MAX_SIDE})")
    if min(header.width, header.height) < MIN_SIDE:
        raise UnusableImage(f"too small ({sides}, at least {MIN_SIDE}x{MIN_SIDE})")
    if header.format == "JPEG" and b"\xff\xd9" not in content[-64:]:
        raise UnusableImage("truncated (the JPEG ends before its end-of-image marker)")
    return header


def read_image_file(path: str | Path) -> bytes:
    """An image file's bytes, its size checked first (an LFW image is under 100 KB; a 6 GB file is refused
    unread), and only from a regular file (a fifo would block)."""
    try:
        status = os.stat(path)
        if not stat.S_ISREG(status.st_mode):
            raise UnusableImage("not a regular file")
        if status.st_size > MAX_FILE_BYTES:
            raise UnusableImage(f"too large a file ({status.st_size:,} bytes; at most {MAX_FILE_BYTES:,})")
        with open(path, "rb") as handle:
            return handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise UnusableImage(f"unreadable ({error.strerror})") from None


def decode_image(path: str | Path, spec: ImageSpec) -> np.ndarray:
    """Decode, centre-crop and resize one image to uint8 HxWxC (RGB) after checking its header; `UnusableImage`
    says why a file cannot be used.

    JPEG is decoded at half scale when that still leaves enough pixels, which halves the decoding time.
    """
    content = read_image_file(path)
    read_header(content)
    side = spec.crop or LFW_SIDE
    factor = 2 if side // 2 >= spec.size else 1
    gray = spec.channels == 1
    flags = {
        (1, False): cv2.IMREAD_COLOR,
        (1, True): cv2.IMREAD_GRAYSCALE,
        (2, False): cv2.IMREAD_REDUCED_COLOR_2,
        (2, True): cv2.IMREAD_REDUCED_GRAYSCALE_2,
    }[factor, gray]
    image = cv2.imdecode(np.frombuffer(content, np.uint8), flags)
    if image is None:
        raise UnusableImage("undecodable")
    if spec.crop:
        crop = spec.crop // factor
        top, left = max(0, (image.shape[0] - crop) // 2), max(0, (image.shape[1] - crop) // 2)
        image = image[top : top + crop, left : left + crop]
    if image.shape[:2] != (spec.size, spec.size):
        image = cv2.resize(image, (spec.size, spec.size), interpolation=cv2.INTER_AREA)
    if gray:
        return image[:, :, None]
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def default_cache_dir() -> Path:
    return Path(os.environ.get("LFWBENCH_CACHE") or Path.home() / ".cache" / "lfwbench")


def _cache_key(paths: Sequence[Path], spec: ImageSpec) -> str:
    digest = hashlib.sha256(json.dumps([CACHE_FORMAT, asdict(spec)]).encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"\0{os.path.abspath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:40]


def _read_cache(array_path: Path, expected_shape: tuple[int, ...]) -> np.ndarray | None:
    """The cached array if it is whole; any entry that fails to read or check is deleted, to be rebuilt."""
    if not array_path.exists() and not array_path.with_suffix(".json").exists():
        return None
    try:
        meta = json.loads(array_path.with_suffix(".json").read_text())
        images = np.load(array_path, allow_pickle=False)
        intact = (
            images.dtype == np.uint8
            and images.shape == expected_shape
            and meta.get("blake2b") == hashlib.blake2b(images.data).hexdigest()
        )
    except Exception:  # noqa: BLE001  whatever a damaged entry raises (EOFError, ValueError, ...), rebuild it
        intact = False
    if intact:
        return images
    for path in (array_path, array_path.with_suffix(".json")):
        path.unlink(missing_ok=True)
    return None


def _write_cache(array_path: Path, images: np.ndarray) -> None:
    """Store the array; a cache that cannot be written costs time, not the run: a warning, and on we go."""
    try:
        with atomic_open(array_path, "wb") as handle:
            np.save(handle, images, allow_pickle=False)
        write_json(array_path.with_suffix(".json"), {"blake2b": hashlib.blake2b(images.data).hexdigest()})
    except OSError as error:
        log.warning(f"image cache not written ({error}); images will be decoded again next time")


def sweep_cache(cache_dir: Path) -> None:
    """Delete what writers killed mid-write left in the cache."""
    for leftover in cache_dir.glob(f"{TEMPORARY_PREFIX}*") if cache_dir.is_dir() else []:
        leftover.unlink(missing_ok=True)


def load_images(
    paths: Sequence[Path], spec: ImageSpec, cache_dir: Path | None = None, progress: bool = False
) -> tuple[np.ndarray, dict[int, str]]:
    """Decode `paths` in parallel into one uint8 array (N, size, size, channels); also why each failed index failed.

    With `cache_dir`, the array is stored under a key of the paths, their sizes and mtimes and `spec`, so a
    second call loads it in well under a second; a stale or corrupt cache entry is rebuilt, never trusted.
    """
    shape = (len(paths), *spec.shape)
    array_path = cache_dir / f"images-{_cache_key(paths, spec)}.npy" if cache_dir else None
    if array_path is not None:
        sweep_cache(cache_dir)
        cached = _read_cache(array_path, shape)
        if cached is not None:
            return cached, {}
    images = np.zeros(shape, dtype=np.uint8)
    failed: dict[int, str] = {}

    def decode_into(index: int) -> None:
        try:
            images[index] = decode_image(paths[index], spec)
        except UnusableImage as problem:
            failed[index] = str(problem)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        with progress_bar(pool.map(decode_into, range(len(paths))), "Loading images", progress, len(paths)) as bar:
            for _ in bar:
                pass
    if array_path is not None and not failed:
        _write_cache(array_path, images)
    return images, dict(sorted(failed.items()))


def cached_pair_images(
    pairs: Sequence[Pair], image_dir: Path, spec: ImageSpec, source: str, skip_missing: bool, progress: bool
) -> PairImages:
    """`load_pair_images` through the user's image cache: how every scorer loads the images of a list."""
    return load_pair_images(
        pairs, image_dir, spec, source, skip_missing=skip_missing, cache_dir=default_cache_dir(), progress=progress
    )


def load_pair_images(
    pairs: Sequence[Pair],
    image_dir: Path,
    spec: ImageSpec,
    source: str,
    *,
    skip_missing: bool = False,
    cache_dir: Path | None = None,
    progress: bool = False,
) -> PairImages:
    """Load every distinct image the pairs name, once, and index the pairs into them.

    A missing or undecodable image is an error naming every pair-list line (`source:LINE`) that needs one and
    the path tried; with `skip_missing` those pairs are left out and listed in `skipped` instead.
    """
    index: dict[Path, int] = {}
    pair_paths = []
    for pair in pairs:
        ends = (
            image_path(image_dir, pair.name1, pair.index1),
            image_path(image_dir, pair.name2, pair.index2),
        )
        for path in ends:
            index.setdefault(path, len(index))
        pair_paths.append(ends)
    paths = list(index)
    present = [path for path in paths if path.is_file()]
    images, failed = load_images(present, spec, cache_dir, progress)
    problems = dict.fromkeys(set(paths) - set(present), "missing")
    problems.update({present[i]: reason for i, reason in failed.items()})
    bad = [i for i, ends in enumerate(pair_paths) if any(path in problems for path in ends)]
    if bad and not skip_missing:
        details = [
            f"{source}:{pairs[i].line}: {problems[path]} {path}"
            for i in bad
            for path in pair_paths[i]
            if path in problems
        ]
        shown = "; ".join(details[:20]) + (f"; and {len(details) - 20} more" if len(details) > 20 else "")
        raise ImageError(
            f"{len(problems)} image(s) missing or unusable (--skip-missing leaves out their pairs): {shown}"
        )
    skipped = [(pairs[i], "; ".join(f"{problems[p]} {p}" for p in pair_paths[i] if p in problems)) for i in bad]
    bad_set = set(bad)
    kept = [i for i in range(len(pairs)) if i not in bad_set]
    if pairs and not kept:
        raise ImageError(f"{source}: none of its {len(pairs)} pairs has both images usable; nothing to score")
    used = sorted({path for i in kept for path in pair_paths[i]}, key=index.__getitem__)
    row = {path: i for i, path in enumerate(present)}
    if len(used) != len(present):
        images = images[[row[path] for path in used]]
    position = {path: i for i, path in enumerate(used)}
    left = np.array([position[pair_paths[i][0]] for i in kept], dtype=np.int32)
    right = np.array([position[pair_paths[i][1]] for i in kept], dtype=np.int32)
    return PairImages([pairs[i] for i in kept], used, images, left, right, skipped)
