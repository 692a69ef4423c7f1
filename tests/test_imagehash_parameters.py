"""imagehash's whole parameter set, with imagehash itself as the oracle: whash's
``image_scale``, ``mode`` and ``remove_max_haar_ll``; the crop-resistant hash with any segment
hash (``hash_func``); multi-hashes to and from hex; the region cutoff of matching."""

from __future__ import annotations

import imagehash
import numpy as np
import pytest
from PIL import Image

from data_retrieval import load_dataset
from generator import get_attack
from hashing import describe, get_algorithm, pairwise
from helpers import load_image
from helpers.descriptors import MultiCodes


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    photos = [load_image(r.path) for r in load_dataset("sample").records]
    attacked = [get_attack(a).apply(photos[i % len(photos)], 0, str(i)) for i, a in enumerate(
        ["cropping_40_and_rescaling", "rotation_20_and_rescaling", "scaling_0.4"])]
    return photos + attacked + [photos[0].resize((300, 17))]


def _bits(hashes) -> np.ndarray:
    return np.stack([h.hash.flatten() for h in hashes])


@pytest.mark.parametrize("params", [
    {"image_scale": 64}, {"image_scale": 128, "hash_size": 16},
    {"remove_max_haar_ll": False}, {"remove_max_haar_ll": False, "image_scale": 32},
    {"mode": "db4", "image_scale": 128}, {"mode": "db4", "image_scale": 256,
                                          "remove_max_haar_ll": False},
])
def test_whash_parameters_equal_imagehash(images, params):
    codes = get_algorithm("whash", **params).describe(images)
    expected = _bits(imagehash.whash(im, **params) for im in images)
    assert codes.n_bits == expected.shape[1]
    np.testing.assert_array_equal(codes.to_bits(), expected)


def test_whash_refuses_what_imagehash_asserts_on_or_cannot_stack():
    photo = [Image.new("RGB", (64, 64), "gray")]
    for params, message in (({"image_scale": 48}, "power of 2"),
                            ({"image_scale": 4}, "power of 2 in"),
                            ({"mode": "db2"}, "'haar' or 'db4'"),
                            ({"mode": "db4"}, "needs image_scale")):
        with pytest.raises(ValueError, match=message):
            get_algorithm("whash", **params).describe(photo)


def _segments(bits_list) -> list[list[bytes]]:
    return [sorted(row.tobytes() for row in bits) for bits in bits_list]


@pytest.mark.parametrize("name, function, params", [
    ("phash", imagehash.phash, {}), ("ahash", imagehash.average_hash, {}),
    ("whash", imagehash.whash, {}), ("colorhash", imagehash.colorhash, {}),
    ("phash", imagehash.phash, {"hash_size": 16}),
])
def test_crop_resistant_with_any_segment_hash_equals_imagehash(images, name, function,
                                                                 params):
    images = [images[0], images[5], images[-4], images[-1]]  # imagehash's fill is slow
    codes = get_algorithm("crop_resistant", hash_func=name, **params).describe(images)
    reference = [_bits(imagehash.crop_resistant_hash(
        im, hash_func=lambda crop: function(crop, **params)).segment_hashes) for im in images]
    assert _segments(codes.to_bits()) == _segments(reference)


def test_crop_resistant_refuses_an_unknown_segment_hash():
    with pytest.raises(ValueError, match="hash_func must be one of"):
        get_algorithm("crop_resistant", hash_func="sscd").describe([Image.new("RGB", (9, 9))])


def test_multi_codes_round_trip_through_imagehash_hex(images):
    codes = get_algorithm("crop_resistant").describe(images[:4])
    texts = [str(imagehash.crop_resistant_hash(im)) for im in images[:4]]
    # imagehash's str is the comma-joined segment hex; segments in its order
    assert [",".join(h) for h in codes.to_hex()] != [] and len(texts) == 4
    back = MultiCodes.from_hex(texts, codes.n_bits)
    for ours, theirs, text in zip(codes.to_bits(), back.to_bits(), texts, strict=True):
        assert _segments([ours]) == _segments([theirs])
        reread = imagehash.hex_to_multihash(text)
        assert _segments([theirs]) == _segments([_bits(reread.segment_hashes)])
    again = MultiCodes.from_hex(codes.to_hex(), codes.n_bits)
    np.testing.assert_array_equal(again.packed, codes.packed)
    np.testing.assert_array_equal(again.offsets, codes.offsets)
    with pytest.raises(ValueError, match="at least one segment"):
        MultiCodes.from_hex(["abcd,"], 16)


def test_region_cutoff_matches_like_imagehash():
    """A query with fewer segments than the cutoff matches nothing in imagehash
    (``matches(region_cutoff=N)`` needs N matching segments); it was its last segment's
    distance here. Now: infinitely far, and ``distance <= t`` is imagehash's decision."""
    flat = Image.new("RGB", (200, 200), (40, 40, 40))  # one (dark) segment
    rng = np.random.default_rng(0)
    blocks = Image.fromarray((np.kron(rng.random((4, 4)) > 0.5, np.ones((50, 50))) * 255)
                             .astype(np.uint8)).convert("RGB")
    photos = [flat, blocks, blocks.rotate(3)]
    for cutoff in (1, 2, 3):
        codes = describe(photos, f"crop_resistant:cutoff={cutoff},min_segment_size=50")
        d = pairwise(codes, codes)
        hashes = [imagehash.crop_resistant_hash(im, min_segment_size=50) for im in photos]
        for i in range(3):
            for j in range(3):
                for t in (0.0, 0.1, 0.25):
                    theirs = hashes[i].matches(hashes[j], region_cutoff=cutoff,
                                               bit_error_rate=t)
                    assert (d[i, j] <= t) == theirs, (i, j, cutoff, t, d[i, j])
    assert len(hashes[0].segment_hashes) == 1
    assert np.isinf(pairwise(describe([flat], "crop_resistant:cutoff=2"),
                             describe([flat], "crop_resistant:cutoff=2"))[0, 0])
