"""Classical hashes bit for bit against imagehash, on real photos and attacked copies."""

from __future__ import annotations

import imagehash
import numpy as np
import pytest
from PIL import Image

from data_retrieval import load_dataset
from generator import get_attack
from hashing import GrayBatch, get_algorithm, list_algorithms
from helpers import load_image

REFERENCE = {
    "ahash": imagehash.average_hash,
    "phash": imagehash.phash,
    "dhash": imagehash.dhash,
    "whash": imagehash.whash,
}


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    photos = [load_image(r.path) for r in load_dataset("sample").records]
    attacked = [get_attack(a).apply(photos[i % len(photos)], 0, str(i)) for i, a in enumerate(
        ["jpg_compression_10", "rotation_20_and_rescaling", "scaling_0.4", "text_length_30",
         "gaussian_noise_0.05", "cropping_40_and_rescaling", "median_filter_7x7"])]
    tiny = [Image.new("RGB", (5, 7), "white"), photos[0].resize((300, 17))]
    return photos + attacked + tiny


@pytest.mark.parametrize("name", sorted(REFERENCE))
@pytest.mark.parametrize("hash_size", [8, 16])
def test_bits_equal_imagehash(images, name, hash_size):
    codes = get_algorithm(name, hash_size=hash_size).describe(images)
    expected = np.stack([REFERENCE[name](im, hash_size=hash_size).hash.flatten()
                         for im in images])
    assert codes.n_bits == hash_size * hash_size
    np.testing.assert_array_equal(codes.to_bits(), expected)


def test_shared_batch_serves_every_algorithm(images):
    batch = GrayBatch(images[:4])
    for name in ("ahash", "dhash", "phash"):
        get_algorithm(name).describe(batch)
    assert set(batch._stacks) == {(8, 8), (9, 8), (32, 32)}


def test_real_bsds_photos(bsds_root):
    photos = [load_image(r.path) for r in load_dataset("bsds500", bsds_root, limit=20).records]
    for name, reference in REFERENCE.items():
        codes = get_algorithm(name).describe(photos)
        expected = np.stack([reference(im).hash.flatten() for im in photos])
        np.testing.assert_array_equal(codes.to_bits(), expected)


def test_registry_errors():
    assert {"ahash", "phash", "dhash", "whash"} <= set(list_algorithms())
    with pytest.raises(ValueError, match="algorithms: ahash"):
        get_algorithm("fhash")
    with pytest.raises(ValueError, match="no parameter"):
        get_algorithm("ahash", size=8)
    with pytest.raises(ValueError, match="power of 2"):
        get_algorithm("whash", hash_size=6).describe([Image.new("RGB", (64, 64))])
