"""`lfwbench data fetch`: download (or take a local archive), check the published md5 sums, unpack atomically."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from lfwbench.errors import LfwbenchError
from lfwbench.files import atomic_open
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
        except (urllib.error.URLError, OSError) as error:
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
    once verified, so an interrupted fetch or a bad checksum leaves nothing half-written.
    """
    archive_name, default_md5 = ARCHIVES[variant]
    archive_md5 = archive_md5 or default_md5
    lists = LISTS if lists is None else lists
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".fetch-") as work:
        work = Path(work)
        for name, md5 in lists.items():
            if (dest / name).is_file() and file_md5(dest / name) == md5:
                continue
            _download(_sources(name, mirrors), work / name, md5, report)
        if not (dest / variant).is_dir():
            if archive is not None:
                actual = file_md5(archive)
                if actual != archive_md5:
                    raise LfwbenchError(f"{archive}: md5 {actual}, expected {archive_md5} for {archive_name}")
                local = archive
            else:
                local = work / archive_name
                _download(_sources(archive_name, mirrors), local, archive_md5, report)
            unpacked = work / "unpacked"
            with tarfile.open(local) as tar:
                tar.extractall(unpacked, filter="data")
            top = unpacked / variant
            if not top.is_dir():
                raise LfwbenchError(f"{local.name}: expected a top-level folder {variant}/ in the archive")
            top.rename(dest / variant)
        for name in lists:
            if (work / name).is_file():
                (work / name).rename(dest / name)
    return dest / variant
