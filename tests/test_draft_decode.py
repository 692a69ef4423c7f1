"""The opt-in draft decode of the classical hashes (``decode='draft'``, issue 30), checked
against Pillow's own ``Image.draft`` and imagehash on the full decode."""

from __future__ import annotations

import logging

import imagehash
import numpy as np
import pytest
from PIL import Image

from hashing import (
    describe,
    describe_all,
    get_algorithm,
    load_descriptors,
    nearest,
    pairwise,
    parse_algorithm,
    save_descriptors,
)
from helpers import load_image

DRAFTABLE = ["ahash", "phash", "dhash", "whash", "colorhash", "block_mean", "crop_resistant"]
FIVE = {"ahash": imagehash.average_hash, "phash": imagehash.phash, "dhash": imagehash.dhash,
        "whash": imagehash.whash, "colorhash": imagehash.colorhash}


@pytest.fixture(scope="module")
def large_jpegs(tmp_path_factory, sample_paths) -> list:
    """Three real photos upscaled with Lanczos to 3200 x 2400 and saved as JPEG (quality
    92): large enough that a draft decode reads them at 1/8 scale."""
    folder = tmp_path_factory.mktemp("large")
    paths = []
    for name in ("chelsea", "coffee", "astronaut"):
        with Image.open(sample_paths[name]) as image:
            big = image.convert("RGB").resize((3200, 2400), Image.Resampling.LANCZOS)
        paths.append(folder / f"{name}.jpg")
        big.save(paths[-1], quality=92)
    return paths


@pytest.fixture(scope="module")
def large_png(tmp_path_factory, sample_paths):
    """A real photo as a PNG far larger than any draft side."""
    path = tmp_path_factory.mktemp("png") / "coffee.png"
    with Image.open(sample_paths["coffee"]) as image:
        image.convert("RGB").resize((1600, 1200), Image.Resampling.LANCZOS).save(path)
    return path


@pytest.mark.parametrize("name", DRAFTABLE)
def test_the_decode_mode_is_part_of_the_identity(name):
    exact, draft = get_algorithm(name), get_algorithm(name, decode="draft")
    assert exact.label == name and draft.label == f"{name}_decode=draft"
    assert parse_algorithm(f"{name}:decode='draft'") == draft
    assert get_algorithm(name, decode="exact") == exact  # the default names nothing
    assert exact.draft_side is None and draft.draft_side >= 128
    other = {"colorhash": {"binbits": 4}, "block_mean": {"hash_size": 8}}
    sized = get_algorithm(name, decode="draft", **other.get(name, {"hash_size": 16}))
    assert sized.label != draft.label and "decode=draft" in sized.label


def test_draft_sides_follow_the_rule():
    """At least 16 pixels per hash cell, and at least the side the hash resizes to
    (colorhash, without a grid: a measured side)."""
    sides = {n: get_algorithm(n, decode="draft").draft_side for n in DRAFTABLE}
    assert sides == {"ahash": 128, "phash": 128, "dhash": 128, "whash": 128,
                     "colorhash": 400, "block_mean": 256, "crop_resistant": 300}
    assert get_algorithm("phash", decode="draft", hash_size=16).draft_side == 256
    assert get_algorithm("phash", decode="draft", highfreq_factor=32).draft_side == 256
    assert get_algorithm("whash", decode="draft", image_scale=512).draft_side == 512


@pytest.mark.parametrize(("spec", "message"), [
    ("phash:decode='fast'", "decode must be one of 'exact', 'draft', got 'fast'"),
    ("phash:decode=1", "decode must be one of 'exact', 'draft', got 1"),
    ("hist_hash:decode='draft'", "'hist_hash' has no draft decode"),
    ("orb:decode='draft'", "'orb' has no draft decode"),
])
def test_bad_decode_modes_are_refused_by_name(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_algorithm(spec)


def test_load_image_draft_is_pillows_draft(large_jpegs):
    """The oracle: Pillow's own Image.draft before the load."""
    for side in (128, 400, 1000, 5000):
        ours = load_image(large_jpegs[0], draft=side)
        with Image.open(large_jpegs[0]) as image:
            image.draft("RGB", (side, side))
            expected = image.convert("RGB")
        assert ours.size == expected.size and min(ours.size) >= min(side, 2400)
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(expected))
    assert load_image(large_jpegs[0], draft=128).size == (400, 300)  # 1/8 scale
    assert load_image(large_jpegs[0], draft=1000).size == (1600, 1200)  # 1/2 scale
    with pytest.raises(ValueError, match="draft must be a positive number of pixels"):
        load_image(large_jpegs[0], draft=0)


def test_draft_keeps_the_exif_orientation(tmp_path, sample_paths):
    with Image.open(sample_paths["chelsea"]) as image:
        big = image.convert("RGB").resize((1800, 1200))
    exif = Image.Exif()
    exif[0x0112] = 6  # turned 90 degrees: shown 1200 wide, 1800 high
    big.save(tmp_path / "turned.jpg", quality=90, exif=exif)
    assert load_image(tmp_path / "turned.jpg").size == (1200, 1800)
    assert load_image(tmp_path / "turned.jpg", draft=128).size == (150, 225)


@pytest.mark.parametrize("name", DRAFTABLE)
def test_draft_never_applies_to_other_files_or_to_images_in_memory(large_png, name):
    """A PNG (far larger than the draft side) and an image in memory give the exact bits."""
    with Image.open(large_png) as image:
        in_memory = image.convert("RGB")
    assert load_image(large_png, draft=128).size == (1600, 1200)
    exact = describe([large_png], name, show_progress=False).to_bits()
    draft = describe([large_png], f"{name}:decode='draft'", show_progress=False).to_bits()
    np.testing.assert_array_equal(draft, exact)
    given = get_algorithm(name, decode="draft").describe([in_memory]).to_bits()
    np.testing.assert_array_equal(given, exact)


def test_a_jpeg_too_small_to_draft_gives_the_exact_bits(tmp_path, sample_paths):
    """A short side under twice the draft side: decoded whole, so the exact bits."""
    with Image.open(sample_paths["chelsea"]) as image:
        image.convert("RGB").save(tmp_path / "chelsea.jpg", quality=90)  # 451 x 300
    path = tmp_path / "chelsea.jpg"
    np.testing.assert_array_equal(np.asarray(load_image(path, draft=151)),
                                  np.asarray(load_image(path)))
    assert load_image(path, draft=150).size == (226, 150)
    codes = describe_all([path], ["colorhash", "colorhash:decode='draft'", "block_mean",
                                  "block_mean:decode='draft'"], show_progress=False)
    for name in ("colorhash", "block_mean"):  # drafts of 400 and 256: whole below 800, 512
        np.testing.assert_array_equal(codes[f"{name}_decode=draft"].to_bits(),
                                      codes[name].to_bits())


def test_a_mix_of_modes_is_refused(tmp_path, large_jpegs):
    exact = describe(large_jpegs, "phash", show_progress=False)
    draft = describe(large_jpegs, "phash:decode='draft'", show_progress=False)
    assert exact.method == "phash" and draft.method == "phash_decode=draft"
    for compare in (pairwise, nearest):
        with pytest.raises(ValueError, match="cannot compare descriptors of 'phash'"):
            compare(exact, draft)
    with pytest.raises(ValueError, match="different methods"):
        type(exact).concat([exact, draft])
    save_descriptors(exact, "photos", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="phash_decode=draft"):
        load_descriptors("photos", "phash:decode='draft'", root=tmp_path)
    save_descriptors(draft, "photos", root=tmp_path)
    assert load_descriptors("photos", "phash:decode='draft'", root=tmp_path).method == \
        "phash_decode=draft"
    assert load_descriptors("photos", "phash", root=tmp_path).method == "phash"


def test_draft_on_large_jpegs_is_close_to_imagehash_on_the_full_decode(large_jpegs):
    """Independent oracle: imagehash's functions on Pillow's full decode."""
    codes = describe_all(large_jpegs, [f"{n}:decode='draft'" for n in FIVE],
                         show_progress=False)
    for name, function in FIVE.items():
        expected = []
        for path in large_jpegs:
            with Image.open(path) as image:
                expected.append(function(image.convert("RGB")).hash.flatten())
        differ = (codes[f"{name}_decode=draft"].to_bits() != np.stack(expected)).sum(axis=1)
        # 64 bits for the 8 x 8 hashes, 42 for colorhash
        assert differ.max() <= 4, (name, differ)


def test_the_exact_default_still_equals_imagehash(large_jpegs):
    codes = describe_all(large_jpegs, list(FIVE), show_progress=False)
    for name, function in FIVE.items():
        expected = []
        for path in large_jpegs:
            with Image.open(path) as image:
                expected.append(function(image.convert("RGB")).hash.flatten())
        np.testing.assert_array_equal(codes[name].to_bits(), np.stack(expected))


def test_exact_and_draft_methods_in_one_call_match_separate_calls(large_jpegs, large_png):
    """One describe_all decodes each JPEG once per mode; each method gets the bits it gets
    alone."""
    paths = [*large_jpegs, large_png]
    specs = ["dhash", "dhash:decode='draft'", "block_mean:decode='draft'",
             "crop_resistant:decode='draft'"]
    together = describe_all(paths, specs, show_progress=False)
    for spec in specs:
        alone = describe(paths, spec, show_progress=False)
        mixed = together[parse_algorithm(spec).label]
        np.testing.assert_array_equal(mixed.packed, alone.packed)
        if spec.startswith("crop_resistant"):
            np.testing.assert_array_equal(mixed.offsets, alone.offsets)


def test_images_decoded_already_are_reported(large_jpegs, caplog):
    """A draft method given JPEGs decoded already (as load_image gives them) cannot draft
    them: it hashes them as given and says so."""
    pairs = [(f"image{i}", load_image(p)) for i, p in enumerate(large_jpegs)]
    with caplog.at_level(logging.WARNING):
        codes = describe(pairs, "ahash:decode='draft'", show_progress=False)
    assert "3 images came decoded already from JPEG files and were hashed" in caplog.text
    np.testing.assert_array_equal(codes.to_bits(), describe(pairs, "ahash").to_bits())


def test_the_benchmark_drafts_its_database_files(large_jpegs, large_png):
    """run_benchmark (evaluate_copy_detection.py's protocol) describes a draft method's
    database from the JPEG files, as describe does, not from the images it decoded already;
    an exact method beside it still gets the full decode, and a PNG is never drafted."""
    from data_retrieval import ImageRecord
    from hashing import run_benchmark

    records = [ImageRecord(p.name, p) for p in [*large_jpegs, large_png]]
    database = [(r, load_image(r.path)) for r in records]
    queries = [(ImageRecord(f"{r.image_id}_copy", None, source_id=r.image_id,
                            attack_id="resize"), image.resize((400, 300)))
               for r, image in database]
    algorithms = [parse_algorithm("ahash:decode='draft'"), parse_algorithm("ahash"),
                  parse_algorithm("whash:decode='draft'")]
    result = run_benchmark(algorithms, database, queries, workers=1, device="cpu",
                           keep_descriptors=True)
    paths = [r.path for r in records]
    for algorithm in algorithms:
        stored, _ = result.descriptors[algorithm.label]
        alone = describe(paths, algorithm)  # the oracle: describe on the files
        assert np.array_equal(stored.packed, alone.packed), algorithm.label
    exact, _ = result.descriptors["ahash"]
    draft, _ = result.descriptors["ahash_decode=draft"]
    expected = [imagehash.average_hash(Image.open(p)).hash.flatten() for p in paths]
    assert np.array_equal(exact.to_bits(), np.array(expected))  # the full decode, imagehash's
    # these upscaled photos hash alike at 1/8 scale but for one bit of one of them: the
    # database was drafted (the images decoded already would have given the exact bits)
    assert not np.array_equal(draft.packed[:3], exact.packed[:3])
    assert np.array_equal(draft.packed[3], exact.packed[3])  # the PNG was not
