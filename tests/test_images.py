from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from lfwbench.errors import ImageError
from lfwbench.images import ImageSpec, find_variant, image_path, load_images, load_pair_images
from lfwbench.pairs import load_pairs


@pytest.mark.parametrize("folder", ["lfw2", "lfw2/lfw2", "lfw", "lfw_funneled", "lfw-deepfunneled", "."])
def test_variant_found_from_layout_alone(tmp_path: Path, folder: str) -> None:
    person = tmp_path / folder / "Aaron_Eckhart"
    person.mkdir(parents=True)
    (person / "Aaron_Eckhart_0001.jpg").write_bytes(b"")
    name, image_dir = find_variant(tmp_path)
    assert image_dir == tmp_path / folder
    assert name == {"lfw2/lfw2": "lfw2", ".": "root"}.get(folder, folder)
    assert image_path(image_dir, "Aaron_Eckhart", 1) == person / "Aaron_Eckhart_0001.jpg"


def test_no_variant_says_how_to_get_data(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="lfwbench data fetch"):
        find_variant(tmp_path)


@pytest.mark.parametrize(("spec", "shape"), [(ImageSpec(), (105, 105, 3)), (ImageSpec(64, 1, 150), (64, 64, 1))])
def test_images_are_uint8_at_model_size(lfw_tree: Path, spec: ImageSpec, shape: tuple[int, ...]) -> None:
    paths = sorted((lfw_tree / "lfw-deepfunneled" / "Train_Person00").glob("*.jpg"))
    images, failed = load_images(paths, spec)
    assert images.dtype == np.uint8 and images.shape == (len(paths), *shape) and failed == {}
    assert images.std() > 10  # real pixels, not the zero fill


def test_each_distinct_image_decoded_once(lfw_tree: Path) -> None:
    pair_list = load_pairs(lfw_tree / "pairsDevTrain.txt")
    loaded = load_pair_images(pair_list.pairs, lfw_tree / "lfw-deepfunneled", ImageSpec(), "pairsDevTrain.txt")
    distinct = {image_path(Path(), p.name1, p.index1) for p in pair_list.pairs} | {
        image_path(Path(), p.name2, p.index2) for p in pair_list.pairs
    }
    assert len(loaded.paths) == len(distinct) == loaded.images.shape[0]
    first = pair_list.pairs[0]
    assert loaded.paths[loaded.left[0]].name == f"{first.name1}_{first.index1:04d}.jpg"
    assert loaded.labels.tolist() == [p.label for p in pair_list.pairs]


def test_cache_is_used_then_rebuilt_when_stale_or_corrupt(fresh_tree: Path, tmp_path: Path) -> None:
    paths = sorted((fresh_tree / "lfw-deepfunneled").glob("*/*.jpg"))
    cache = tmp_path / "cache"
    first, _ = load_images(paths, ImageSpec(), cache)
    (entry,) = cache.glob("*.npy")
    second, _ = load_images(paths, ImageSpec(), cache)
    np.testing.assert_array_equal(first, second)
    data = bytearray(entry.read_bytes())
    data[-100] ^= 0xFF  # flip a pixel: the stored digest no longer matches
    entry.write_bytes(bytes(data))
    third, _ = load_images(paths, ImageSpec(), cache)
    np.testing.assert_array_equal(first, third)
    entry.write_bytes(entry.read_bytes()[:200])  # truncated
    np.testing.assert_array_equal(first, load_images(paths, ImageSpec(), cache)[0])
    shutil.copy(paths[1], paths[0])  # content changed: a new key, not the old entry
    changed, _ = load_images(paths, ImageSpec(), cache)
    np.testing.assert_array_equal(changed[0], changed[1])
    assert len(list(cache.glob("*.npy"))) == 2


def test_missing_and_undecodable_images_name_every_line(fresh_tree: Path) -> None:
    image_dir = fresh_tree / "lfw-deepfunneled"
    (image_dir / "Test_Person00" / "Test_Person00_0002.jpg").unlink()
    (image_dir / "Test_Person01" / "Test_Person01_0003.jpg").write_bytes(b"not a jpeg")
    pairs = load_pairs(fresh_tree / "pairsDevTest.txt").pairs
    with pytest.raises(ImageError) as caught:
        load_pair_images(pairs, image_dir, ImageSpec(), "pairsDevTest.txt")
    message = str(caught.value)
    assert message.startswith("2 image(s) missing or unusable")
    assert "pairsDevTest.txt:2: missing " in message and "Test_Person00_0002.jpg" in message
    assert "pairsDevTest.txt:3: not a readable image " in message and "Test_Person01_0003.jpg" in message
    assert "\n" not in message
    loaded = load_pair_images(pairs, image_dir, ImageSpec(), "pairsDevTest.txt", skip_missing=True)
    assert len(loaded.pairs) + len(loaded.skipped) == len(pairs) and loaded.skipped
    assert all(pair not in loaded.pairs for pair, _ in loaded.skipped)
    assert loaded.images.shape[0] == len(loaded.paths) == len(set(loaded.left) | set(loaded.right))
