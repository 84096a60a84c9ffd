"""`lfwbench data fetch`: download (or take a local archive), check the published md5 sums, unpack atomically."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

from lfwbench.errors import LfwbenchError
from lfwbench.files import FolderLock, atomic_open
from lfwbench.pairs import file_md5

# The archives and lists as the LFW site published them, with its md5 sums.
ARCHIVES = {
    "lfw": ("lfw.tgz", "a17d05bd522c52d84eca14327a23d494"),
    "lfw_funneled": ("lfw-funneled.tgz", "1b42dfed7d15c9b2dd63d5e5840c86ad"),
    "lfw-deepfunneled": ("lfw-deepfunneled.tgz", "68331da3eb755a505a502b5aacb3c201"),
}
LISTS = {
    "pairsDevTrain.txt": "4f27cbf15b2da4a85c1907eb4181ad21",
    "pairsDevTest.txt": "5132f7440eb68cf58910c8a45a2ac10b",
    "pairs.txt": "9f1ba174e4e1c508ff7cdf10ac338a7d",
    "peopleDevTrain.txt": "54eaac34beb6d042ed3a7d883e247a21",
    "peopleDevTest.txt": "e4bf5be0a43b5dcd9dc5ccfcb8fb19c5",
    "people.txt": "450f0863dd89e85e73936a6d71a3474b",
    "lfw-names.txt": "a6d0a479bd074669f656265a6e693f6d",
}
WORK_PREFIX = ".fetch-"

# The UMass host is gone since 2025; these serve some of the files under their own ids. Users add --mirror URLs,
# base URLs under which each file is found by its published name; those are tried first.
KNOWN_COPIES = {
    "lfw.tgz": ["https://ndownloader.figshare.com/files/5976018"],
    "lfw-funneled.tgz": ["https://ndownloader.figshare.com/files/5976015"],
    "pairsDevTrain.txt": ["https://ndownloader.figshare.com/files/5976012"],
    "pairsDevTest.txt": ["https://ndownloader.figshare.com/files/5976009"],
    "pairs.txt": ["https://ndownloader.figshare.com/files/5976006"],
}


def _download(urls: Sequence[str], target: Path, md5: str, report: Callable[[str], None]) -> None:
    """Fetch the first of `urls` whose bytes match `md5` into `target`; never leaves a partial file."""
    failures = []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=60) as response, atomic_open(target, "wb") as handle:
                shutil.copyfileobj(response, handle, 1 << 20)
        except (urllib.error.URLError, OSError, ValueError) as error:  # ValueError: not a URL at all
            failures.append(f"{url}: {error}")
            continue
        actual = file_md5(target)
        if actual == md5:
            report(f"{target.name}: md5 ok ({url})")
            return
        target.unlink()
        failures.append(f"{url}: md5 {actual}, expected {md5}")
    raise LfwbenchError(f"could not fetch {target.name}: " + "; ".join(failures or ["no source known, pass --mirror"]))


def _sources(name: str, mirrors: Sequence[str]) -> list[str]:
    return [f"{mirror.rstrip('/')}/{name}" for mirror in mirrors] + KNOWN_COPIES.get(name, [])


def _unpack(archive: Path, into: Path) -> None:
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(into, filter="data")
    except (tarfile.TarError, EOFError, zlib.error) as error:
        raise LfwbenchError(f"{archive}: not a whole tar archive ({error or type(error).__name__})") from None


def _local_copy(name: str, md5: str, places: Sequence[Path]) -> Path | None:
    """The first of `places` holding `name` with the published md5 (beside the archive, inside it)."""
    for folder in places:
        if (folder / name).is_file() and file_md5(folder / name) == md5:
            return folder / name
    return None


def fetch_lfw(
    dest: Path,
    variant: str = "lfw-deepfunneled",
    mirrors: Sequence[str] = (),
    archive: Path | None = None,
    lists: dict[str, str] | None = None,
    archive_md5: str | None = None,
    report: Callable[[str], None] = lambda message: None,
) -> Path:
    """Put the `variant` images and the pair and people lists under `dest`, each checked against its md5.

    Work happens in a temporary folder inside `dest`; files and the image folder are renamed into place only
    once verified, so an interrupted fetch or a bad checksum leaves nothing half-written, and what a killed fetch
    left is removed by the next. With `archive`, lists found beside it or inside it are used before any download.
    """
    archive_name, default_md5 = ARCHIVES[variant]
    archive_md5 = archive_md5 or default_md5
    lists = LISTS if lists is None else lists
    dest.mkdir(parents=True, exist_ok=True)
    lock = FolderLock(dest / ".fetch.lock")
    if not lock.acquire():
        raise LfwbenchError(f"{dest}: another fetch (process {lock.holder()}) is filling it; wait for it")
    try:
        for leftover in dest.glob(f"{WORK_PREFIX}*"):
            shutil.rmtree(leftover, ignore_errors=True)
        return _fetch(dest, variant, mirrors, archive, lists, archive_name, archive_md5, report)
    finally:
        lock.release()


def _fetch(dest, variant, mirrors, archive, lists, archive_name, archive_md5, report) -> Path:
    with tempfile.TemporaryDirectory(dir=dest, prefix=WORK_PREFIX) as work:
        work = Path(work)
        unpacked = work / "unpacked"
        wanted = not (dest / variant).is_dir()
        if wanted and archive is not None:
            actual = file_md5(archive)
            if actual != archive_md5:
                raise LfwbenchError(f"{archive}: md5 {actual}, expected {archive_md5} for {archive_name}")
            _unpack(archive, unpacked)
        places = ([archive.parent] if archive is not None else []) + [unpacked, unpacked / variant]
        for name, md5 in lists.items():
            if (dest / name).is_file() and file_md5(dest / name) == md5:
                continue
            found = _local_copy(name, md5, places)
            if found is not None:
                shutil.copyfile(found, work / name)
                report(f"{name}: md5 ok ({found.parent})")
            else:
                _download(_sources(name, mirrors), work / name, md5, report)
        if wanted and archive is None:
            _download(_sources(archive_name, mirrors), work / archive_name, archive_md5, report)
            _unpack(work / archive_name, unpacked)
        if wanted:
            if not (unpacked / variant).is_dir():
                raise LfwbenchError(f"{archive_name}: expected a top-level folder {variant}/ in the archive")
            (unpacked / variant).rename(dest / variant)
        for name in lists:
            if (work / name).is_file():
                (work / name).rename(dest / name)
    return dest / variant
