"""The one way to describe, store and compare images, as a notebook uses it."""

from __future__ import annotations

import imagehash
import numpy as np
import pytest
from PIL import Image

from data_retrieval import ImageRecord, load_dataset, source_rows, write_manifest
from generator import attacked_images, get_attack, iter_attacks
from hashing import (
    BinaryCodes,
    FloatFeatures,
    describe,
    get_algorithm,
    load_descriptors,
    nearest,
    neighbours,
    pairwise,
    save_descriptors,
)
from helpers import load_image


@pytest.fixture
def folder(tmp_path, sample_paths):
    """Six photos and two attacked copies of two of them, in one folder."""
    out = tmp_path / "photos"
    out.mkdir()
    names = ["chelsea", "coffee", "rocket", "astronaut", "motorcycle", "retina"]
    for name in names:
        load_image(sample_paths[name]).resize((200, 150)).save(out / f"{name}.png")
    for name, attack in (("chelsea", "jpg_compression_50"), ("rocket", "horizontal_flip")):
        image = load_image(out / f"{name}.png")
        get_attack(attack)(image).save(out / f"copy_of_{name}.png")
    return out


def test_notebook_describe_store_and_find_neighbours(folder, tmp_path):
    """Describe a folder with a hash and a model, store both, find the nearest neighbours:
    one call each. The oracle for the hash is imagehash itself."""
    codes = describe(folder, "phash")
    feats = describe(folder, "efficientnet_lite0")
    assert codes.method == "phash" and feats.method == "efficientnet_lite0"
    assert codes.ids == feats.ids and "copy_of_chelsea" in codes.ids
    expected = [str(imagehash.phash(Image.open(folder / f"{i}.png"))) for i in codes.ids]
    assert codes.to_hex() == expected

    save_descriptors(codes, "photos", root=tmp_path / "features")
    save_descriptors(feats, "photos", root=tmp_path / "features")
    stored_codes = load_descriptors("photos", "phash", root=tmp_path / "features")
    stored_feats = load_descriptors("photos", feats.method, root=tmp_path / "features")
    assert isinstance(stored_codes, BinaryCodes) and stored_codes.n_bits == 64
    assert isinstance(stored_feats, FloatFeatures) and stored_feats.metric == "cosine"
    np.testing.assert_array_equal(stored_codes.packed, codes.packed)
    np.testing.assert_allclose(stored_feats.values, feats.values)

    originals = [i for i in codes.ids if not i.startswith("copy_of_")]
    queries = codes[[codes.ids.index(i) for i in ("copy_of_chelsea", "copy_of_rocket")]]
    database = codes[[codes.ids.index(i) for i in originals]]
    table = neighbours(queries, database, k=2)
    top = table[table["rank"] == 1].set_index("query_id")["neighbour_id"]
    assert top["copy_of_chelsea"] == "chelsea"  # JPEG keeps the perceptual hash close
    hamming = {i: (imagehash.phash(Image.open(folder / "copy_of_chelsea.png"))
                   - imagehash.phash(Image.open(folder / f"{i}.png"))) / 64 for i in originals}
    assert table.iloc[0]["distance"] == pytest.approx(min(hamming.values()))

    fq = stored_feats[[feats.ids.index("copy_of_rocket")]]
    fdb = stored_feats[[feats.ids.index(i) for i in originals]]
    assert neighbours(fq, fdb, k=1)["neighbour_id"].item() == "rocket"  # a flip: the network


def test_describe_takes_every_kind_of_input(folder, tmp_path):
    paths = sorted(folder.glob("*.png"))
    by_paths = describe(paths, "dhash")
    records = [ImageRecord(p.stem, p, group="experimental") for p in paths]
    by_records = describe(records, "dhash")
    manifest = write_manifest(records, tmp_path / "m.csv")
    by_manifest = describe(manifest, "dhash")
    by_images = describe([(p.stem, load_image(p)) for p in paths], "dhash")
    by_dataset = describe(load_dataset(f"folder:{folder}"), "dhash")
    by_algorithm = get_algorithm("dhash").describe(paths)  # the building block takes them too
    for other in (by_records, by_manifest, by_images, by_dataset, by_algorithm):
        np.testing.assert_array_equal(other.packed, by_paths.packed)
        assert other.ids == by_paths.ids
    assert by_paths.records is None and by_records.records[0].group == "experimental"
    assert by_manifest.records[0].group == "experimental"
    with pytest.raises(ValueError, match="unknown algorithm 'dhsh' \\(closest: 'dhash'\\)"):
        describe(paths, "dhsh")


def test_attacked_queries_know_their_source(folder):
    """On the fly, from disk or as lazily made images: the same pixels, and the ground truth
    comes from the records (source_id), never from file names."""
    sources = load_dataset(f"folder:{folder}").records[:3]
    attacks = [get_attack("jpg_compression_50"), get_attack("gaussian_noise_0.01")]
    lazy = describe(attacked_images(sources, attacks, seed=4), "ahash")
    streamed = describe(iter_attacks(sources, attacks, seed=4), "ahash")
    np.testing.assert_array_equal(lazy.packed, streamed.packed)
    assert [r.source_id for r in lazy.records] == [s.image_id for s in sources for _ in attacks]
    database = describe(sources[1:], "ahash")
    rows = source_rows(lazy.records, database.records)
    assert rows.tolist() == [-1, -1, 0, 0, 1, 1]  # the first source is not in the database
    with pytest.raises(ValueError, match="repeats"):
        source_rows(lazy.records, ["a", "b", "a"])


def test_methods_are_never_compared_across():
    image = [Image.new("RGB", (40, 30), "red"), Image.new("RGB", (40, 30), "blue")]
    ph = get_algorithm("phash").describe(image)
    dh = get_algorithm("dhash").describe(image)
    assert ph.n_bits == dh.n_bits == 64 and ph.method == "phash"
    with pytest.raises(ValueError, match="'phash' with descriptors of 'dhash'"):
        pairwise(ph, dh)
    with pytest.raises(ValueError, match="'phash' with descriptors of 'dhash'"):
        nearest(ph, dh)


def test_what_a_new_user_tries_first(tmp_path):
    """Found by trying the API as a newcomer: each now works, or says why not."""
    import imagehash

    from hashing import MultiCodes

    photos = load_dataset("sample").records[:4]
    codes = describe(photos, "phash")
    their = str(imagehash.phash(load_image(photos[0].path)))
    assert BinaryCodes.from_hex(their, 64).to_hex() == [their]  # one string is one code
    with pytest.raises(TypeError, match="pass str"):
        BinaryCodes.from_hex([imagehash.phash(load_image(photos[0].path))], 64)
    simhash = describe(photos, "efficientnet_lite0:bits=64")
    with pytest.raises(ValueError, match="cannot compare"):
        codes[0] - simhash[0]  # same length, different methods
    with pytest.raises(ValueError, match="give one of the two"):
        describe(photos, "efficientnet_lite0:bits=64,distance='l2'")
    with pytest.raises(ValueError, match=r"bits must be in \[0, 8192\]"):
        describe(photos, "efficientnet_lite0:bits=100000000")
    segments = describe(photos, "crop_resistant")
    assert isinstance(segments[:2], MultiCodes) and segments[1].ids == (photos[1].image_id,)
    np.testing.assert_array_equal(pairwise(segments[1:3], segments),
                                  pairwise(segments, segments)[1:3])
    assert segments.to_hex()[0] == [str(h) for h in imagehash.crop_resistant_hash(
        load_image(photos[0].path)).segment_hashes]
    with pytest.raises(ValueError, match=r"k must be in \[1, 4\]"):
        neighbours(codes, codes, k=5)
    with pytest.raises(TypeError, match="takes what hashing.describe returns"):
        save_descriptors(codes.packed, "x", root=tmp_path)
    save_descriptors(describe(photos, "phash:hash_size=16"), "p", root=tmp_path)
    assert load_descriptors("p", "phash:hash_size=16", root=tmp_path).n_bits == 256
    with pytest.raises(FileNotFoundError, match="stores in .*: phash_hash_size=16"):
        load_descriptors("p", "dhash", root=tmp_path)
    with pytest.raises(ValueError, match="closest: 'phash'"):
        describe(photos, "PHash")


def test_paths_sharing_a_file_name_get_distinct_ids(tmp_path):
    for folder, colour in (("a", "red"), ("b", "blue")):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (24, 16), colour).save(tmp_path / folder / "x.png")
    paths = [tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"]
    assert describe(paths, "ahash").ids == ("a/x", "b/x")
    with pytest.raises(ValueError, match="ids repeat"):
        describe([paths[0], paths[0]], "ahash")


def test_extract_gives_the_object_describe_gives(folder):
    """`extractor.extract` and `hashing.describe` of one model are interchangeable: the same
    class, rows, ids, method and metric, and both list the unreadable image they skipped."""
    from extractor import extract, get_model

    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    paths = sorted(folder.glob("*.png"))
    extracted = extract(get_model("efficientnet_lite0"), paths, batch_size=3)
    described = describe(paths, "efficientnet_lite0", on_error="skip")
    assert isinstance(extracted, FloatFeatures) and type(extracted) is type(described)
    assert extracted.method == described.method == "efficientnet_lite0"
    assert extracted.metric == described.metric == "cosine"
    assert extracted.ids == described.ids and "broken" not in extracted.ids
    np.testing.assert_allclose(extracted.values, described.values, rtol=1e-4, atol=1e-5)
    assert [b[0] for b in extracted.bad] == ["broken"]
    assert [b[1] for b in described.bad] == [str(folder / "broken.png")]
    # so one can be the queries and the other the database
    _, rows = nearest(extracted[:2], described, k=1)
    assert rows[:, 0].tolist() == [0, 1]
    with pytest.raises(ValueError, match="cannot compare descriptors of 'efficientnet_lite0' "
                                         "with descriptors of 'phash'"):
        nearest(extracted, describe(folder, "phash"))
