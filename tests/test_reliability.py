"""Hostile and damaged input, without TensorFlow: run folders, image files, caches, lists, archives, reports.

Each test is a row of docs/reliability.md; the TensorFlow ones are in test_run_integrity.py.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import tarfile
import zipfile
import zlib
from dataclasses import asdict, replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from lfwbench import runs
from lfwbench.cli import main
from lfwbench.config import TrainConfig
from lfwbench.dataset import check_data
from lfwbench.errors import ImageError, LfwbenchError, PairListError, RunFolderError
from lfwbench.fetch import fetch_lfw
from lfwbench.files import FolderLock, file_digest, write_json
from lfwbench.images import ImageSpec, UnusableImage, decode_image, load_images, load_pair_images, read_header
from lfwbench.pairs import file_md5, load_pairs, load_people
from lfwbench.report import render_report, thumbnail
from lfwbench.results import write_results


def invoke(*args) -> object:
    return CliRunner().invoke(main, [str(arg) for arg in args])


def jpeg_header(width: int, height: int) -> bytes:
    """The first bytes of a baseline JPEG declaring `width` x `height`: SOI, a quantisation table, SOF0."""
    quantisation = b"\xff\xdb" + struct.pack(">H", 67) + b"\x00" + bytes(range(1, 65))
    frame = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3)
    frame += b"".join(bytes([component, 0x11, 0]) for component in (1, 2, 3))
    return b"\xff\xd8" + quantisation + frame


def png_bomb(side: int) -> bytes:
    """A small PNG declaring `side` x `side` grayscale pixels, all zero (compresses about 1000:1)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compressobj(9)
    data = b"".join(rows.compress(b"\x00" * (side + 1)) for _ in range(side)) + rows.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def image_file(tree: Path, person: str, index: int) -> Path:
    return tree / "lfw-deepfunneled" / person / f"{person}_{index:04d}.jpg"


# --- the run folder -------------------------------------------------------------------------------------------


def run_record(**options) -> dict:
    """A config.json as training writes it, of a tiny run with these options."""
    config = TrainConfig(preset="tiny", **options).resolved()
    return runs.RunRecord(config, {}, list(config.image_spec.shape), "/data", "lfw", {}, {}, {}).to_dict()


def fake_commit(folder: runs.RunFolder, epoch: int, history: list[dict]) -> None:
    writers = {
        name: (lambda text: lambda path: path.write_text(text))(f"{name} {epoch}") for name in ("a.bin", "b.bin")
    }
    folder.commit_history(epoch, history, writers, [[1, epoch]])


def test_new_run_folder_refuses_a_non_empty_folder_and_overwrite_refuses_a_non_run(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunFolderError, match="not empty .*--resume .*--overwrite"), runs.writing(tmp_path, "new"):
        pass
    with pytest.raises(RunFolderError, match="holds files but no lfwbench run"), runs.writing(tmp_path, "overwrite"):
        pass
    assert (tmp_path / "notes.txt").read_text() == "mine"
    with pytest.raises(RunFolderError, match="nothing to resume"), runs.writing(tmp_path / "empty", "resume"):
        pass


def test_overwrite_removes_the_manifest_first_then_the_rest(tmp_path: Path) -> None:
    with runs.writing(tmp_path / "run") as folder:
        write_json(folder / runs.CONFIG, run_record())
        fake_commit(folder, 1, [{"epoch": 1}])
    with runs.writing(tmp_path / "run", "overwrite") as folder:
        assert folder.entries() == [] and folder.manifest() is None


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    with runs.writing(tmp_path / "run"):
        with pytest.raises(RunFolderError, match=f"in use by process {os.getpid()}"), runs.writing(tmp_path / "run"):
            pass
    with runs.writing(tmp_path / "run", "overwrite"):  # released when the first writer is done
        pass


def test_out_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunFolderError, match="exists and is not a folder"), runs.writing(tmp_path / "file"):
        pass


def test_an_epoch_commits_every_file_at_once_and_the_manifest_records_their_sha256(tmp_path: Path) -> None:
    with runs.writing(tmp_path / "run") as folder:
        fake_commit(folder, 1, [{"epoch": 1}])
        fake_commit(folder, 2, [{"epoch": 1}, {"epoch": 2}])
        manifest = folder.manifest()
        assert manifest.epoch == 2 and [row["epoch"] for row in manifest.history] == [1, 2]
        assert manifest.files["a.bin"] == file_digest(folder / "a.bin") and (folder / "a.bin").read_text() == "a.bin 2"
        assert json.loads((folder / runs.HISTORY_JSON).read_text()) == manifest.history
        assert manifest.random_state == [[1, 2]]
        assert not [name for name in folder.entries() if name.startswith(".")]


def test_a_commit_interrupted_after_the_manifest_is_rolled_forward(tmp_path: Path) -> None:
    with runs.writing(tmp_path / "run") as folder:
        write_json(folder / runs.CONFIG, run_record())
        fake_commit(folder, 1, [{"epoch": 1}])
        (folder / "a.bin").rename(folder / ".staged-1-a.bin")  # as if killed before renaming it into place
        (folder / ".lfwbench-tmp-b.x1.bin").write_text("half")  # a write killed midway
    with runs.writing(tmp_path / "run", "resume") as folder:
        assert (folder / "a.bin").read_text() == "a.bin 1" and ".lfwbench-tmp-b.x1.bin" not in folder.entries()


def test_staged_files_no_manifest_names_are_rolled_back(tmp_path: Path) -> None:
    with runs.writing(tmp_path / "run") as folder:
        write_json(folder / runs.CONFIG, run_record())
        fake_commit(folder, 1, [{"epoch": 1}])
        (folder / ".staged-2-a.bin").write_text("a.bin 2")  # killed before epoch 2's manifest
    with runs.writing(tmp_path / "run", "resume") as folder:
        assert folder.manifest().epoch == 1 and (folder / "a.bin").read_text() == "a.bin 1"
        assert ".staged-2-a.bin" not in folder.entries()


def test_a_damaged_manifest_is_refused_in_one_line(tmp_path: Path) -> None:
    with runs.writing(tmp_path / "run") as folder:
        write_json(folder / runs.CONFIG, run_record())
        (folder / runs.MANIFEST).write_text("{not json")
    with pytest.raises(RunFolderError, match="manifest.json: unreadable .*cannot be trusted"):
        with runs.writing(tmp_path / "run", "resume"):
            pass


def test_a_config_that_does_not_describe_the_checkpoint_is_ignored(tmp_path: Path) -> None:
    with runs.writing(tmp_path / "run") as folder:
        write_json(folder / runs.CONFIG, run_record(crop=128))
        fake_commit(folder, 1, [{"epoch": 1}])
    run, warnings = runs.read_run(tmp_path / "run" / "a.bin", file_digest(tmp_path / "run" / "a.bin"))
    assert run is not None and run.config.crop == 128 and warnings == []
    (tmp_path / "run" / "a.bin").write_text("another run's checkpoint")
    run, warnings = runs.read_run(tmp_path / "run" / "a.bin", file_digest(tmp_path / "run" / "a.bin"))
    assert run is None and "is not a checkpoint the run in" in warnings[0] and "ignored" in warnings[0]


def test_a_folder_from_before_manifests_is_used_with_a_warning(tmp_path: Path) -> None:
    write_json(tmp_path / runs.CONFIG, run_record(seed=3))
    write_json(tmp_path / runs.HISTORY_JSON, [{"epoch": 1}])
    (tmp_path / "best.keras").write_text("old")
    run, warnings = runs.read_run(tmp_path / "best.keras", "0" * 64)
    assert run.config.split_seed == 3 and run.history == [{"epoch": 1}] and "used unverified" in warnings[0]


def test_reading_a_run_finishes_an_interrupted_commit_when_no_writer_holds_it(tmp_path: Path) -> None:
    with runs.writing(tmp_path / "run") as folder:
        write_json(folder / runs.CONFIG, run_record())
        fake_commit(folder, 1, [{"epoch": 1}])
        (folder / "a.bin").rename(folder / ".staged-1-a.bin")
    run, warnings = runs.read_run(tmp_path / "run" / "a.bin", file_digest(tmp_path / "run" / ".staged-1-a.bin"))
    assert run is not None and warnings == [] and (tmp_path / "run" / "a.bin").is_file()


HOSTILE_MANIFEST_FIELDS = [
    ("staged", {"../victim.txt": "history.csv"}),
    ("staged", {"history.csv": "../victim.txt"}),
    ("staged", {"/tmp/victim.txt": ".staged-1-history.csv"}),
    ("staged", {"a.bin": ".staged-1-a.bin", "..": ".staged-1-.."}),
    ("staged", ["a.bin"]),
    ("files", ["a.bin"]),
    ("files", {"../a.bin": "0" * 64}),
    ("files", {"a.bin": "not a digest"}),
    ("files", {"a\x00b": "0" * 64}),
    ("epoch", "1"),
    ("epoch", -1),
    ("epoch", True),
    ("epoch", 1.5),
    ("history", {"epoch": 1}),
    ("history", [{"loss": "NaN"}]),
    ("history", [{"loss": float("nan")}]),
    ("history", [[1, 2]]),
    ("random_state", [[1, "x"]]),
    ("random_state", 7),
    ("format", 99),
    ("surprise", 1),
]


@pytest.mark.parametrize(("field", "value"), HOSTILE_MANIFEST_FIELDS)
def test_a_manifest_that_fails_a_field_is_never_obeyed(tmp_path: Path, field: str, value) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    folder_path = tmp_path / "run"
    with runs.writing(folder_path) as folder:
        write_json(folder / runs.CONFIG, run_record())
        fake_commit(folder, 1, [{"epoch": 1}])
    stored = json.loads((folder_path / runs.MANIFEST).read_text())
    stored[field] = value
    (folder_path / runs.MANIFEST).write_text(json.dumps(stored))  # NaN is written as JSON's NaN
    (folder_path / runs.HISTORY_CSV).rename(folder_path / ".staged-1-history.csv")
    before = sorted(path.name for path in folder_path.iterdir())
    run, warnings = runs.read_run(folder_path / "a.bin", file_digest(folder_path / "a.bin"))
    assert run is None and "cannot be trusted; the run folder is ignored" in warnings[0], warnings
    assert len(warnings[0]) < 500
    assert victim.read_text() == "mine" and sorted(path.name for path in folder_path.iterdir()) == before
    with pytest.raises(RunFolderError, match="manifest.json: unreadable"), runs.writing(folder_path, "resume"):
        pass
    assert victim.read_text() == "mine"
    with runs.writing(folder_path, "overwrite") as folder:  # replacing an untrusted run obeys nothing of it
        assert folder.entries() == []
    assert victim.read_text() == "mine"


CONFIG_FIELDS = [
    (("config", "seed"), "1"),
    (("config", "seed"), -1),
    (("config", "epochs"), 0),
    (("config", "lr"), float("nan")),
    (("config", "val_fraction"), 5),
    (("config", "size"), 10**9),
    (("config", "channels"), 7),
    (("config", "margin"), 2.0),
    (("config", "augment"), "yes"),
    (("config", "preset"), "no-such"),
    (("config", "regime"), "anything"),
    (("config", "train_list"), "../../etc/passwd"),
    (("config", "surprise"), 1),
    (("config",), [1]),
    (("input_shape",), [1, 2]),
    (("split",), "x"),
    (("ensemble",), [{"checkpoint": 1}]),
    (("surprise",), 1),
    ((), [1]),
]


@pytest.mark.parametrize(("where", "value"), CONFIG_FIELDS)
def test_a_config_that_fails_a_field_is_never_used_and_resume_refuses_it(
    lfw_tree: Path, tmp_path: Path, where: tuple, value
) -> None:
    folder_path = tmp_path / "run"
    with runs.writing(folder_path) as folder:
        write_json(folder / runs.CONFIG, run_record())
        fake_commit(folder, 1, [{"epoch": 1}])
    assert runs.read_run(folder_path / "a.bin", file_digest(folder_path / "a.bin"))[0] is not None
    stored = json.loads((folder_path / runs.CONFIG).read_text())
    target = stored
    for key in where[:-1]:
        target = target[key]
    if where:
        target[where[-1]] = value
    (folder_path / runs.CONFIG).write_text(json.dumps(stored if where else value))
    run, warnings = runs.read_run(folder_path / "a.bin", file_digest(folder_path / "a.bin"))
    assert run is None and warnings[0].startswith(f"{folder_path / runs.CONFIG}: ") and len(warnings[0]) < 500
    before = {path.name: path.read_bytes() for path in folder_path.iterdir()}
    result = invoke("-q", "train", "--data", lfw_tree, "--out", folder_path, "--resume")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and runs.CONFIG in lines[0] and len(lines[0]) < 500, lines
    assert {path.name: path.read_bytes() for path in folder_path.iterdir()} == before


def test_a_config_from_before_a_training_option_existed_takes_its_default(tmp_path: Path) -> None:
    stored = run_record()
    del stored["config"]["margin"], stored["ensemble"]
    record = runs.RunRecord.parse(stored)
    assert record.config.margin == 0.0 and record.ensemble == []


def test_a_manifest_with_a_huge_field_is_refused_in_a_short_line(tmp_path: Path) -> None:
    with runs.writing(tmp_path / "run") as folder:
        write_json(folder / runs.CONFIG, run_record())
        fake_commit(folder, 1, [{"epoch": 1}])
        stored = json.loads((folder / runs.MANIFEST).read_text())
        stored["format"] = "x" * 100_000
        (folder / runs.MANIFEST).write_text(json.dumps(stored))
    with pytest.raises(RunFolderError) as refused:
        runs.RunFolder(tmp_path / "run").manifest()
    assert len(str(refused.value)) < 500 and "more characters" in str(refused.value)


# --- image files ------------------------------------------------------------------------------------------------


def test_a_huge_declared_jpeg_is_refused_before_decoding(tmp_path: Path) -> None:
    header = jpeg_header(20_000, 20_000)
    assert len(header) < 700
    with pytest.raises(UnusableImage, match="too large"):
        read_header(header + b"\xff\xd9")
    with pytest.raises(UnusableImage, match=r"too large \(5000x4000 declared, at most 4096x4096\)"):
        read_header(jpeg_header(5000, 4000) + b"\xff\xd9")
    (tmp_path / "bomb.jpg").write_bytes(header)
    with pytest.raises(UnusableImage, match="too large"):
        decode_image(tmp_path / "bomb.jpg", ImageSpec())


def test_a_png_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    bomb = png_bomb(20_000)
    assert len(bomb) < 2_000_000
    with pytest.raises(UnusableImage, match="too large"):
        read_header(bomb)


def test_opencv_own_pixel_limit_is_lowered_to_match() -> None:
    assert os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] == str(4096 * 4096)


@pytest.mark.parametrize(
    "content, reason",
    [
        (lambda good: good[: len(good) // 2], "truncated"),
        (lambda good: cv2.imencode(".jpg", np.zeros((1, 1, 3), np.uint8))[1].tobytes(), "too small"),
        (lambda good: b"name,score\nAaron,1\n", "not a readable image"),
        (lambda good: b"", "not a readable image"),
    ],
)
def test_unusable_images_are_errors_naming_file_line_and_reason(fresh_tree: Path, content, reason: str) -> None:
    path = image_file(fresh_tree, "Test_Person00", 1)
    path.write_bytes(content(path.read_bytes()))
    pairs = load_pairs(fresh_tree / "pairsDevTest.txt")
    with pytest.raises(ImageError, match=rf"pairsDevTest.txt:2: {reason}.*Test_Person00_0001.jpg"):
        load_pair_images(pairs.pairs, fresh_tree / "lfw-deepfunneled", ImageSpec(), "pairsDevTest.txt")
    loaded = load_pair_images(
        pairs.pairs, fresh_tree / "lfw-deepfunneled", ImageSpec(), "pairsDevTest.txt", skip_missing=True
    )
    assert loaded.skipped and all(reason in why for _, why in loaded.skipped)


def test_png_content_and_grayscale_are_converted_and_counted_by_data_check(fresh_tree: Path) -> None:
    colour = image_file(fresh_tree, "Test_Person00", 1)
    face = cv2.imread(str(colour))
    colour.write_bytes(cv2.imencode(".png", face)[1].tobytes())  # PNG named .jpg
    gray = image_file(fresh_tree, "Test_Person01", 1)
    cv2.imwrite(str(gray), cv2.cvtColor(cv2.imread(str(gray)), cv2.COLOR_BGR2GRAY))
    assert decode_image(colour, ImageSpec()).shape == decode_image(gray, ImageSpec()).shape == (105, 105, 3)
    check = {item.name: item for item in check_data(fresh_tree).lists}["pairsDevTest.txt"]
    assert check.odd == {"PNG content": 1, "grayscale": 1} and check.resolved == check.total
    result = invoke("data", "check", "--data", fresh_tree)
    assert result.exit_code == 0 and "1 image(s) with PNG content: converted when read" in result.output


def test_data_check_fails_on_a_truncated_image_with_its_line(fresh_tree: Path) -> None:
    path = image_file(fresh_tree, "Test_Person00", 1)
    path.write_bytes(path.read_bytes()[:3000])
    result = invoke("data", "check", "--data", fresh_tree)
    assert result.exit_code == 1 and "pairsDevTest.txt:2: truncated" in result.output, result.output


def test_skip_missing_with_every_pair_missing_is_one_line(fresh_tree: Path) -> None:
    for path in (fresh_tree / "lfw-deepfunneled").glob("Test_*/*.jpg"):
        path.unlink()
    pairs = load_pairs(fresh_tree / "pairsDevTest.txt").pairs
    with pytest.raises(ImageError, match="none of its 8 pairs has both images usable"):
        load_pair_images(pairs, fresh_tree / "lfw-deepfunneled", ImageSpec(), "pairsDevTest.txt", skip_missing=True)


# --- caches -----------------------------------------------------------------------------------------------------


def cache_entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("images-*.npy"))


@pytest.mark.parametrize("damage", [b"", b"\x93NUMPY garbage", b"not numpy at all" * 100])
def test_a_damaged_image_cache_entry_is_deleted_and_rebuilt(lfw_tree: Path, tmp_path: Path, damage: bytes) -> None:
    paths = sorted((lfw_tree / "lfw-deepfunneled").glob("Train_*/*.jpg"))[:5]
    first, _ = load_images(paths, ImageSpec(), tmp_path)
    (entry,) = cache_entries(tmp_path)
    entry.write_bytes(damage)
    again, failed = load_images(paths, ImageSpec(), tmp_path)
    np.testing.assert_array_equal(first, again)
    assert failed == {} and np.array_equal(np.load(entry), first)


def test_a_cache_that_cannot_be_written_is_a_warning(lfw_tree: Path, tmp_path: Path, caplog) -> None:
    (tmp_path / "file").write_text("a file where the cache folder should be")
    paths = sorted((lfw_tree / "lfw-deepfunneled").glob("Train_*/*.jpg"))[:3]
    with caplog.at_level("WARNING", logger="lfwbench"):
        images, failed = load_images(paths, ImageSpec(), tmp_path / "file" / "cache")
    assert len(images) == 3 and failed == {}
    assert [r.levelname for r in caplog.records if "image cache not written" in r.getMessage()] == ["WARNING"]


def test_the_library_reports_through_one_channel_that_quiet_silences(capsys) -> None:
    import logging

    from lfwbench.console import log_to_stderr
    from lfwbench.jobs import progress_line

    for quiet in (True, False):
        log_to_stderr(quiet)
        progress_line("fold01: epoch 1/30")
        logging.getLogger("lfwbench.images").warning("cache not written \x1b[31m")
        err = capsys.readouterr().err
        assert ("fold01: epoch 1/30" in err) is not quiet
        assert "Warning: cache not written \\x1b[31m" in err  # warnings always show, escaped


def test_a_killed_writers_leftovers_are_swept_from_the_cache(lfw_tree: Path, tmp_path: Path) -> None:
    (tmp_path / ".lfwbench-tmp-images-abc.x.npy").write_bytes(b"\0" * 1000)
    load_images(sorted((lfw_tree / "lfw-deepfunneled").glob("Train_*/*.jpg"))[:2], ImageSpec(), tmp_path)
    assert not list(tmp_path.glob(".lfwbench-tmp-*")) and len(cache_entries(tmp_path)) == 1


# --- pair and people lists --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, message",
    [
        ("2\nA\t1\t2\nB\t\u00b2\t2\nC\t1\tD\t1\nE\t1\tF\t1\n", "list.txt:3: expected a positive image number, got '²'"),
        ("\ufeff1\nA\t1\t2\nC\t1\tD\t1\n", None),  # a BOM at the start is what some editors write: accepted
        ("1\nA\t1\t2\n\ufeffC\t1\tD\t1\n", "list.txt:3: a byte order mark"),
        ("\u00b2\n", "list.txt:1: expected a header"),
    ],
)
def test_list_errors_name_the_right_line(tmp_path: Path, content: str, message: str | None) -> None:
    path = tmp_path / "list.txt"
    path.write_text(content, encoding="utf-8")
    if message is None:
        assert len(load_pairs(path)) == 2
    else:
        with pytest.raises(PairListError, match=message):
            load_pairs(path)


def test_a_non_utf8_byte_is_reported_on_its_line(tmp_path: Path) -> None:
    path = tmp_path / "people.txt"
    path.write_bytes(b"2\nAaron\t1\nJos\xe9\t2\n")
    with pytest.raises(PairListError, match=r"people.txt:3: not UTF-8 \(byte 0xe9\)"):
        load_people(path)


# --- fetching ---------------------------------------------------------------------------------------------------


def tarball(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("kind", ["zip", "truncated"])
def test_a_broken_archive_is_one_line(tmp_path: Path, kind: str) -> None:
    archive = tmp_path / "lfw.tgz"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as handle:
            handle.writestr("lfw/a.txt", "x")
    else:
        tarball(archive, {"lfw/A/A_0001.jpg": os.urandom(200_000)})
        archive.write_bytes(archive.read_bytes()[:50_000])
    with pytest.raises(LfwbenchError, match="lfw.tgz: not a whole tar archive"):
        fetch_lfw(tmp_path / "dest", "lfw", archive=archive, lists={}, archive_md5=file_md5(archive))
    assert [path.name for path in (tmp_path / "dest").iterdir()] == [".fetch.lock"]  # no half-unpacked folder


def test_archive_with_lists_beside_or_inside_needs_no_network(tmp_path: Path) -> None:
    beside, inside = b"1\nA\t1\t2\nA\t1\tB\t1\n", b"10\n"
    (tmp_path / "pairsDevTest.txt").write_bytes(beside)
    archive = tarball(tmp_path / "lfw.tgz", {"lfw/A/A_0001.jpg": b"x", "lfw/people.txt": inside})
    lists = {"pairsDevTest.txt": file_md5(tmp_path / "pairsDevTest.txt"), "people.txt": zlib_md5(inside)}
    messages: list[str] = []
    dest = tmp_path / "dest"
    (dest / ".fetch-killed").mkdir(parents=True)  # what a killed fetch leaves
    fetch_lfw(dest, "lfw", mirrors=("http://127.0.0.1:9/",), archive=archive, lists=lists,
              archive_md5=file_md5(archive), report=messages.append)  # fmt: skip
    assert (dest / "pairsDevTest.txt").read_bytes() == beside and (dest / "people.txt").read_bytes() == inside
    assert all("md5 ok" in message and "127.0.0.1" not in message for message in messages) and len(messages) == 2
    assert sorted(path.name for path in dest.iterdir()) == [".fetch.lock", "lfw", "pairsDevTest.txt", "people.txt"]


def zlib_md5(data: bytes) -> str:
    import hashlib

    return hashlib.md5(data).hexdigest()


def test_a_bad_mirror_is_one_line(tmp_path: Path) -> None:
    result = invoke("data", "fetch", "--dest", tmp_path / "d", "--mirror", "not a url", "--variant", "lfw")
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "could not fetch" in result.output


def test_a_second_fetch_into_one_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    lock = FolderLock(tmp_path / "d" / ".fetch.lock")
    assert lock.acquire()
    try:
        with pytest.raises(LfwbenchError, match=f"another fetch \\(process {os.getpid()}\\)"):
            fetch_lfw(tmp_path / "d", "lfw", lists={})
    finally:
        lock.release()


# --- reports and the command line -------------------------------------------------------------------------------


def test_report_never_replaces_its_input(make_results, lfw_tree: Path, tmp_path: Path) -> None:
    keep = tmp_path / "keep.json"
    write_results(keep, make_results(lfw_tree))
    before = keep.read_bytes()
    for out in (keep, keep.with_suffix(".html")):  # keep.html would write its results to keep.json
        result = invoke("report", "--results", keep, "--out", out)
        assert result.exit_code == 1 and "is also an input of this command" in result.output, result.output
    assert keep.read_bytes() == before and not keep.with_suffix(".html").exists()


def test_thumbnails_only_of_files_under_the_data_root(make_results, lfw_tree: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.jpg"
    cv2.imwrite(str(outside), np.full((120, 120, 3), 200, np.uint8))
    shown = thumbnail(str(outside), tmp_path)  # what the page would embed if the data root held it
    assert shown.startswith("data:image/jpeg;base64,") and thumbnail(str(outside), lfw_tree) == ""
    results = make_results(lfw_tree, pairs=4)
    results.pairs[0].name1 = "../../" + str(tmp_path)  # a name that tries to leave the image folder
    results.data.root = str(tmp_path)  # a results file cannot choose the root either
    html = render_report([results], plotlyjs="cdn", gallery=4, root=lfw_tree)
    face = thumbnail(image_file(lfw_tree, results.pairs[0].name2, results.pairs[0].image2), lfw_tree)
    assert shown not in html and face in html
    bare = render_report([results], plotlyjs="cdn", gallery=4)
    assert "data:image/jpeg" not in bare and "No faces shown" in bare


def test_a_run_without_history_renders_without_curves(make_results, lfw_tree: Path) -> None:
    results = make_results(lfw_tree)
    results.training = {"config": {"config": {"seed": 1}}}
    html = render_report([results], plotlyjs="cdn")
    assert "No training history is stored" in html and "0 epochs" in html


def test_os_errors_are_one_line_naming_the_path(make_results, lfw_tree: Path, tmp_path: Path) -> None:
    results = tmp_path / "r.json"
    write_results(results, make_results(lfw_tree))
    (tmp_path / "file").write_text("x")
    result = invoke("report", "--results", results, "--out", tmp_path / "file" / "report.html")
    last = result.output.splitlines()[-1]
    assert result.exit_code == 1 and last.startswith(f"Error: {tmp_path / 'file'}") and "Traceback" not in result.output


def test_an_unexpected_failure_is_one_line_unless_debugging(lfw_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("lfwbench.dataset.check_data", broken)
    result = invoke("data", "check", "--data", lfw_tree)
    assert result.exit_code == 1 and "internal error (RuntimeError: boom); set LFWBENCH_DEBUG=1" in result.output
    monkeypatch.setenv("LFWBENCH_DEBUG", "1")
    assert isinstance(invoke("data", "check", "--data", lfw_tree).exception, RuntimeError)


@pytest.mark.parametrize("config", ['{"config": 5}', '{"config": {"layers": [{"class_name": "Sequential"}]}}', "[1]"])
def test_a_malformed_checkpoint_config_is_one_line(tmp_path: Path, config: str) -> None:
    import h5py

    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as file:
        file.attrs["keras_version"], file.attrs["model_config"] = "2.8.0", config
    from lfwbench.checkpoints import load_model
    from lfwbench.errors import CheckpointError

    with pytest.raises(CheckpointError, match=r"odd.h5: (malformed model config|unknown architecture)"):
        load_model(path)


def test_progress_bars_show_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import click

    from lfwbench.console import progress_bar

    for terminal in (False, True):
        stream = io.StringIO()
        stream.isatty = lambda terminal=terminal: terminal
        monkeypatch.setattr(click, "get_text_stream", lambda name, stream=stream: stream)
        with progress_bar(range(3), "Loading images") as bar:
            assert list(bar) == [0, 1, 2]
        assert ("Loading images" in stream.getvalue()) == terminal


# --- session 8: gates, folds, bounded reads, odd files ----------------------------------------------------------


def test_a_gate_fails_on_nan(make_results, lfw_tree: Path, tmp_path: Path) -> None:
    results = make_results(lfw_tree)
    results.metrics.auc = float("nan")
    write_results(tmp_path / "r.json", results)
    args = ["report", "--results", tmp_path / "r.json", "--out", tmp_path / "p.html", "--plotlyjs", "cdn"]
    result = invoke(*args, "--fail-under", "0.5", "--gate", "auc")
    assert result.exit_code == 3 and "AUC n/a < --fail-under 0.5" in result.output, result.output


@pytest.mark.parametrize("folds", ["10-1", "0-3", "1-1000000000", "11", "1,2,x", ""])
def test_crossval_folds_outside_view2_are_a_usage_error(lfw_tree: Path, tmp_path: Path, folds: str) -> None:
    result = invoke("crossval", "--data", lfw_tree, "--preset", "tiny", "--folds", folds, "--runs", tmp_path / "cv")
    assert result.exit_code == 2 and "--folds" in result.output and not (tmp_path / "cv").exists(), result.output


def test_a_crossval_file_is_checked_and_its_summary_recomputed(tmp_path: Path) -> None:
    from lfwbench.results import Crossval, FoldRow, read_crossval, write_crossval

    rows = [FoldRow(k, 600, 0.8 + 0.01 * k, 0.1, 0.9, 0.8, 0.9, 0.8, 0, 1.0, f"f{k}") for k in (1, 2)]
    curve = {"fpr": [0.0, 1.0], "tpr": [0.0, 1.0], "threshold": [1.0, 0.0]}
    stored = Crossval({}, rows, 10, {"mean": 0.99, "std": 0.0, "standard_error": 0.0}, curve, curve, {})
    write_crossval(tmp_path, stored, "cv.json", "cv.csv")
    assert read_crossval(tmp_path / "cv.json").summary["mean"] == pytest.approx(0.815)  # never the stored 0.99
    for folds, message in (([], "holds no folds"), ([replace(rows[0], accuracy=float("nan"))], "not a number")):
        write_json(tmp_path / "cv.json", asdict(replace(stored, folds=folds)))
        with pytest.raises(LfwbenchError, match=message):
            read_crossval(tmp_path / "cv.json")


def test_an_image_file_too_large_or_not_regular_is_refused_unread(tmp_path: Path) -> None:
    huge = tmp_path / "huge.jpg"
    with open(huge, "wb") as handle:  # sparse: 6 GB on paper, nothing on disk
        handle.write(jpeg_header(200, 200))
        handle.truncate(6 << 30)
    with pytest.raises(UnusableImage, match="too large a file"):
        decode_image(huge, ImageSpec(32, 3))
    fifo = tmp_path / "fifo.jpg"
    os.mkfifo(fifo)
    with pytest.raises(UnusableImage, match="not a regular file"):
        decode_image(fifo, ImageSpec(32, 3))


def test_a_fifo_as_a_pair_list_is_one_line_not_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "pairs.txt"
    os.mkfifo(fifo)
    with pytest.raises(PairListError, match="pairs.txt:1: not a regular file"):
        load_pairs(fifo)


def test_a_person_folder_that_is_a_symlink_loop_is_passed_over(fresh_tree: Path) -> None:
    from lfwbench.dataset import data_stats

    (fresh_tree / "lfw-deepfunneled" / "Loop_Person").symlink_to(fresh_tree / "lfw-deepfunneled" / "Loop_Person")
    assert data_stats(fresh_tree)["people"] == 12


def test_the_markdown_summary_escapes_what_it_prints(make_results, lfw_tree: Path) -> None:
    from lfwbench.report import summary_markdown

    table = summary_markdown([make_results(lfw_tree, name="<script>x</script>\nrow | two")])
    assert "<script>" not in table and "&lt;script&gt;" in table and "row \\| two" in table
    assert len(table.strip().splitlines()) == 3


def test_crossval_refuses_runs_that_hold_another_kind_of_run(lfw_tree: Path, tmp_path: Path) -> None:
    write_json(tmp_path / "run" / runs.CONFIG, run_record())
    result = invoke("crossval", "--data", lfw_tree, "--preset", "tiny", "--folds", "1", "--runs", tmp_path / "run")
    assert result.exit_code == 1 and "holds a train or search run" in result.output, result.output
    assert sorted(path.name for path in (tmp_path / "run").iterdir()) == [runs.CONFIG]


SUMMARY = {"epochs_run": 3, "best_epoch": 2, "best_val_loss": 0.5, "best_val_accuracy": 0.8, "seconds_per_epoch": 1.5,
           "seconds": 4.5, "stopped_early": False}  # fmt: skip
SUMMARY_FIELDS = [("best_val_accuracy", "high"), ("best_val_accuracy", None), ("best_val_loss", -1.0),
                  ("best_epoch", 4), ("best_epoch", 0), ("epochs_run", 2.5), ("seconds", float("inf")),
                  ("stopped_early", "no"), ("surprise", 1)]  # fmt: skip


@pytest.mark.parametrize("content", ["{not json", "[]", '{"best_val_accuracy": NaN}', "[" * 100_000])
def test_a_damaged_fold_summary_is_not_read_back(tmp_path: Path, content: str) -> None:
    from lfwbench.jobs import _summary

    (tmp_path / "summary.json").write_text(content)
    assert _summary(tmp_path / "summary.json") is None
    write_json(tmp_path / "summary.json", SUMMARY)
    assert _summary(tmp_path / "summary.json") == runs.RunSummary(**SUMMARY)


@pytest.mark.parametrize(("field", "value"), SUMMARY_FIELDS)
def test_a_fold_summary_that_fails_a_field_is_not_read_back(tmp_path: Path, field: str, value) -> None:
    from lfwbench.jobs import _summary

    (tmp_path / "summary.json").write_text(json.dumps({**SUMMARY, field: value}))
    assert _summary(tmp_path / "summary.json") is None


@pytest.mark.parametrize(
    "stamp",
    [
        '{"size": 999999, "channels": 3, "crop": 0}',
        '{"size": 64, "channels": 7}',
        '{"size": "64", "channels": 3}',
        '{"size": 64, "channels": 3, "evil": 1}',
        "[]",
    ],
)
def test_a_checkpoint_stamp_out_of_range_is_one_line(tmp_path: Path, stamp: str) -> None:
    import h5py

    from lfwbench.checkpoints import read_stamp
    from lfwbench.errors import CheckpointError

    with h5py.File(tmp_path / "m.h5", "w") as file:
        file.attrs["lfwbench.json"] = stamp
    with pytest.raises(CheckpointError, match="m.h5: unreadable checkpoint"):
        read_stamp(tmp_path / "m.h5")


RESULTS_FIELDS = [
    (("metrics", "auc"), "high"),
    (("metrics", "pairs"), "many"),
    (("pairs",), {"a": 1}),
    (("pairs", 0, "image1"), "../../etc/passwd"),
    (("pairs", 0, "score"), [1, 2]),
    (("model",), None),
    (("data", "folds"), "10"),
    (("schema_version",), 99),
    (("metrics", "at_threshold", "surprise"), 1),
]


@pytest.mark.parametrize(("where", "value"), RESULTS_FIELDS)
def test_a_results_file_that_fails_a_field_is_one_line_and_writes_nothing(
    make_results, lfw_tree: Path, tmp_path: Path, where: tuple, value
) -> None:
    path = tmp_path / "r.json"
    write_results(path, make_results(lfw_tree))
    stored = json.loads(path.read_text())
    target = stored
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    path.write_text(json.dumps(stored))
    result = invoke("report", "--results", path, "--out", tmp_path / "page.html", "--plotlyjs", "cdn")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith(f"Error: {path}"), result.output
    assert len(lines[0]) < 500 and not (tmp_path / "page.html").exists() and "Traceback" not in result.output


def test_a_results_file_naming_people_outside_the_image_folder_embeds_nothing_of_them(
    make_results, lfw_tree: Path, tmp_path: Path
) -> None:
    results = make_results(lfw_tree, pairs=4)
    for pair in results.pairs:
        pair.name1 = "../../../etc"
    write_results(tmp_path / "r.json", results)
    result = invoke("report", "--results", tmp_path / "r.json", "--data", lfw_tree, "--out", tmp_path / "p.html",
                    "--plotlyjs", "cdn", "--gallery", "4")  # fmt: skip
    assert result.exit_code == 0, result.output
    html = (tmp_path / "p.html").read_text()
    faces = {(p.name2, p.image2) for p in results.pairs}  # the plain names' faces only
    embedded = set(re.findall(r'data:image/jpeg;base64,[^"]+', html))
    assert len(embedded) == len(faces) and "no image" in html


def test_outputs_are_written_all_or_none(tmp_path: Path) -> None:
    from lfwbench.files import write_texts

    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError):  # the second cannot be written: the first must not appear either
        write_texts({tmp_path / "first.json": "{}", tmp_path / "file" / "second.csv": "a\n"})
    assert sorted(path.name for path in tmp_path.iterdir()) == ["file"]
