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
    with pytest.raises(ValueError, match="known: ahash"):
        get_algorithm("fhash")
    with pytest.raises(ValueError, match="no parameter"):
        get_algorithm("ahash", size=8)
    with pytest.raises(ValueError, match="power of 2"):
        get_algorithm("whash", hash_size=6).describe([Image.new("RGB", (64, 64))])


def test_colorhash_bits_equal_imagehash(images):
    for binbits in (3, 4):
        codes = get_algorithm("colorhash", binbits=binbits).describe(images)
        expected = np.stack([imagehash.colorhash(im, binbits=binbits).hash.flatten()
                             for im in images])
        np.testing.assert_array_equal(codes.to_bits(), expected)


def _segment_sets(bits_list):
    return [sorted(row.tobytes() for row in bits) for bits in bits_list]


def test_crop_resistant_segments_equal_imagehash(images):
    photos = images[:11] + images[11:18]  # the sample photos and their attacked copies
    codes = get_algorithm("crop_resistant").describe(photos)
    expected = [np.stack([h.hash.flatten() for h in imagehash.crop_resistant_hash(im)
                          .segment_hashes]) for im in photos]
    assert _segment_sets(codes.to_bits()) == _segment_sets(expected)
    limited = get_algorithm("crop_resistant", limit_segments=2).describe(photos[:3])
    expected = [np.stack([h.hash.flatten() for h in imagehash.crop_resistant_hash(
        im, limit_segments=2).segment_hashes]) for im in photos[:3]]
    assert _segment_sets(limited.to_bits()) == _segment_sets(expected)


def test_crop_resistant_on_bsds_photos(bsds_root):
    photos = [load_image(r.path) for r in load_dataset("bsds500", bsds_root, limit=12).records]
    codes = get_algorithm("crop_resistant").describe(photos)
    expected = [np.stack([h.hash.flatten() for h in imagehash.crop_resistant_hash(im)
                          .segment_hashes]) for im in photos]
    assert _segment_sets(codes.to_bits()) == _segment_sets(expected)


def test_exact_resize_equals_pillow():
    from hashing.methods.resize import resize_stack

    rng = np.random.default_rng(3)
    for shape in [(321, 481), (481, 321), (17, 300), (5, 7), (64, 64)]:
        stack = rng.integers(0, 256, (3, *shape), dtype=np.uint8)
        for size in [(8, 8), (9, 8), (32, 32), (16, 16), (64, 40)]:
            ours = resize_stack(stack, size)
            for k in range(3):
                ref = np.asarray(Image.fromarray(stack[k]).resize(size, Image.LANCZOS))
                np.testing.assert_array_equal(ours[k], ref)


def test_haar_equals_pywavelets():
    import pywt

    from hashing.methods.haar import haar_dec2, haar_rec2

    x = np.random.default_rng(0).random((2, 16, 16))
    low, details = haar_dec2(x)
    ref = pywt.wavedec2(x, "haar", level=1, axes=(-2, -1))
    np.testing.assert_array_equal(low, ref[0])
    for ours, theirs in zip(details, ref[1], strict=True):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(haar_rec2(low, details),
                                  pywt.waverec2(ref, "haar", axes=(-2, -1)))


def test_block_mean_by_hand():
    # 4 blocks of 2x2 pixels: means 10, 20, 30, 40 -> median 25 -> bits 0 0 1 1
    pixels = np.kron(np.array([[10, 20], [30, 40]], np.uint8), np.ones((2, 2), np.uint8))
    image = Image.fromarray(pixels).convert("RGB")
    bits = get_algorithm("block_mean", hash_size=2, block_pixels=2).describe([image]).to_bits()
    np.testing.assert_array_equal(bits[0], [False, False, True, True])


def test_hist_hash_bits_and_robustness(images):
    codes = get_algorithm("hist_hash").describe(images[:11])
    assert codes.n_bits == 66
    flipped = [im.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for im in images[:11]]
    # a histogram does not change when pixels move
    np.testing.assert_array_equal(get_algorithm("hist_hash").describe(flipped).to_bits(),
                                  codes.to_bits())


def test_describe_all_threads_give_the_same_codes(images):
    from hashing import describe_all

    algorithms = [get_algorithm(n) for n in ("ahash", "whash", "colorhash", "crop_resistant")]
    one = describe_all(images, algorithms, workers=1)
    two = describe_all(images, algorithms, workers=3)
    for a in algorithms:
        a_bits, b_bits = one[a.label].to_bits(), two[a.label].to_bits()
        assert len(a_bits) == len(b_bits) == len(images)
        for x, y in zip(a_bits, b_bits, strict=True):
            np.testing.assert_array_equal(x, y)
