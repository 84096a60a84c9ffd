from __future__ import annotations

import http.server
import json
import re
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from lfwbench import __version__
from lfwbench.cli import main
from lfwbench.fetch import fetch_lfw
from lfwbench.pairs import file_md5


def invoke(*args: str):
    return CliRunner().invoke(main, [str(arg) for arg in args])


def test_version_help_and_module_entry() -> None:
    result = invoke("--version")
    assert result.exit_code == 0, result.output
    assert __version__ in result.output
    for command in (["data", "check"], ["data", "stats"], ["data", "fetch"], ["train"], ["evaluate"], ["report"]):
        result = invoke(*command, "--help")
        assert result.exit_code == 0, result.output
        assert "Example: lfwbench" in result.output
    run = subprocess.run([sys.executable, "-m", "lfwbench", "--help"], capture_output=True, text=True)
    assert run.returncode == 0 and "Usage" in run.stdout


def test_check_reports_pairs_resolved(lfw_tree: Path) -> None:
    result = invoke("data", "check", "--data", lfw_tree)
    assert result.exit_code == 0, result.output
    assert "variant: lfw-deepfunneled" in result.output
    assert "people: 12  images: 48" in result.output
    assert "pairsDevTrain.txt: 24/24 pairs" in result.output and "pairsDevTest.txt: 8/8 pairs" in result.output


def test_check_accepts_view2_and_fails_on_missing(fresh_tree: Path) -> None:
    (fresh_tree / "lfw-deepfunneled" / "Test_Person00" / "Test_Person00_0003.jpg").unlink()
    result = invoke("data", "check", "--data", fresh_tree, "--pairs", fresh_tree / "pairs.txt")
    assert result.exit_code == 1, result.output
    assert "/12 pairs" in result.output and "pairs.txt: 12/12" not in result.output
    assert re.search(r"pairs.txt:\d+: missing \S*Test_Person00_0003.jpg", result.output), result.output


def test_data_root_from_environment_or_helpful_error(lfw_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = invoke("data", "check")
    assert result.exit_code == 1 and "Error: no LFW data root given" in result.output
    assert "LFWBENCH_DATA" in result.output
    monkeypatch.setenv("LFWBENCH_DATA", str(lfw_tree))
    result = invoke("data", "check")
    assert result.exit_code == 0, result.output


def test_bad_pair_list_is_one_line_error(fresh_tree: Path) -> None:
    (fresh_tree / "pairsDevTest.txt").write_text("4\nTest_Person00 1\n")
    result = invoke("data", "check", "--data", fresh_tree)
    assert result.exit_code == 1
    assert result.output == "Error: pairsDevTest.txt:2: expected 'name i j' or 'name1 i name2 j', got 2 fields\n"


def test_stats_counts_and_json(lfw_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    result = invoke("data", "stats", "--data", lfw_tree, "--json", out)
    assert result.exit_code == 0, result.output
    stats = json.loads(out.read_text())
    assert (stats["people"], stats["images"]) == (12, 48)
    assert stats["images_per_person"]["mean"] == 4.0
    splits = stats["splits"]
    assert splits["train"]["pairs"] + splits["validation"]["pairs"] == 24
    assert splits["test"] == {"list": "pairsDevTest.txt", "pairs": 8, "same": 4, "different": 4, "people": 4}
    assert splits["view2"]["folds"] == 2
    assert stats["test_train_overlap_people"] == 0


@pytest.mark.realdata
def test_real_data_check_and_stats(real_lfw: Path, tmp_path: Path) -> None:
    result = invoke("data", "check", "--data", real_lfw)
    assert result.exit_code == 0, result.output
    assert "people: 5749  images: 13233" in result.output
    assert "pairsDevTrain.txt: 2200/2200 pairs, 3443 distinct images" in result.output
    assert "pairsDevTest.txt: 1000/1000 pairs, 1549 distinct images" in result.output
    result = invoke("data", "stats", "--data", real_lfw, "--json", tmp_path / "s.json")
    assert result.exit_code == 0, result.output
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["splits"]["test"]["pairs"] == 1000 and stats["test_train_overlap_people"] == 0


def make_archive(tmp_path: Path, tree: Path) -> Path:
    archive = tmp_path / "lfw-deepfunneled.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree / "lfw-deepfunneled", arcname="lfw-deepfunneled")
    return archive


@pytest.fixture
def mirror(tmp_path: Path, lfw_tree: Path):
    """A web server on 127.0.0.1 serving a small archive and the lists, as a mirror would."""
    served = tmp_path / "served"
    served.mkdir()
    make_archive(served, lfw_tree)
    for name in ("pairsDevTrain.txt", "pairsDevTest.txt"):
        (served / name).write_bytes((lfw_tree / name).read_bytes())
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(served), **k)  # noqa: E731
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_fetch_from_mirror_checks_md5(mirror, tmp_path: Path) -> None:
    served, url = mirror
    lists = {name: file_md5(served / name) for name in ("pairsDevTrain.txt", "pairsDevTest.txt")}
    dest = tmp_path / "data"
    messages = []
    image_dir = fetch_lfw(
        dest, mirrors=[url], lists=lists, archive_md5=file_md5(served / "lfw-deepfunneled.tgz"), report=messages.append
    )
    assert image_dir == dest / "lfw-deepfunneled"
    assert invoke("data", "check", "--data", dest).exit_code == 0
    assert sorted(p.name for p in dest.iterdir()) == [
        ".fetch.lock",
        "lfw-deepfunneled",
        "pairsDevTest.txt",
        "pairsDevTrain.txt",
    ]
    assert any("md5 ok" in m for m in messages)


def test_fetch_with_bad_checksum_leaves_nothing(mirror, tmp_path: Path) -> None:
    _, url = mirror
    dest = tmp_path / "data"
    result = invoke("data", "fetch", "--dest", dest, "--mirror", url)
    assert result.exit_code == 1
    assert result.output.startswith("Error: could not fetch pairsDevTrain.txt:") and "expected 4f27cbf" in result.output
    assert [p.name for p in dest.iterdir()] == [".fetch.lock"]


def test_fetch_local_archive_wrong_md5(tmp_path: Path, lfw_tree: Path) -> None:
    archive = make_archive(tmp_path, lfw_tree)
    result = invoke("data", "fetch", "--dest", tmp_path / "d", "--archive", archive, "--mirror", "http://127.0.0.1:9")
    assert result.exit_code == 1 and "Error: " in result.output and "expected 68331da3" in result.output
    dest = tmp_path / "d2"
    with pytest.raises(Exception, match="expected 68331da3"):
        fetch_lfw(dest, archive=archive, lists={})
    assert [p.name for p in dest.iterdir()] == [".fetch.lock"]


def test_help_lists_each_preset_with_what_it_measured() -> None:
    from lfwbench.presets import PRESETS

    result = invoke("train", "--help")
    assert result.exit_code == 0, result.output
    flat = re.sub(r"-\s+", "-", " ".join(result.output.split()))  # Click wraps lines after hyphens too
    assert all(f"{name}: {' '.join(preset.measured.split())[:30]}" in flat for name, preset in PRESETS.items())
    assert "cpu: 87.2% ± 0.5 on View 2" in flat and "(so no clean test figure)" in flat
