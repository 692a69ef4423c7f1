"""Attacking many images: on the fly and on disk give the same pixels; runs resume."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from data_retrieval import load_dataset, read_manifest
from generator import default_attacks, get_attack, iter_attacks, write_attacks

ATTACKS = [get_attack(i) for i in (
    "gaussian_noise_0.02", "salt_pepper_noise_0.1", "text_length_30", "rotation_20_and_rescaling",
    "scaling_0.4", "overlay_0.5", "cropping_20_and_rescaling+speckle_noise_0.01")]


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image)


def test_on_the_fly_equals_on_disk(tmp_path, small_photos):
    records = load_dataset(f"folder:{small_photos}").records
    fly = {r.image_id: (r, pixels(im)) for r, im in iter_attacks(records, ATTACKS, seed=5)}
    report = write_attacks(records, ATTACKS, tmp_path / "out", seed=5, workers=0)
    assert report.written == len(records) * len(ATTACKS) and not report.bad
    disk = read_manifest(report.manifest)
    assert {r.image_id for r in disk} == set(fly)
    for record in disk:
        fly_record, fly_pixels = fly[record.image_id]
        assert (record.source_id, record.attack_id) == (fly_record.source_id,
                                                        fly_record.attack_id)
        with Image.open(record.path) as saved:
            np.testing.assert_array_equal(pixels(saved), fly_pixels)


def test_records_carry_identity_not_file_names(small_photos):
    records = load_dataset(f"folder:{small_photos}").records
    records = [r.replace(group="control") for r in records]
    out = list(iter_attacks(records[:1], ATTACKS[:2], include_originals=True))
    assert [r.attack_id for r, _ in out] == [None, "gaussian_noise_0.02", "salt_pepper_noise_0.1"]
    assert {r.source_id for r, _ in out} == {"chelsea"}
    assert {r.group for r, _ in out} == {"control"}


def test_workers_give_the_same_images(small_photos):
    records = load_dataset(f"folder:{small_photos}").records
    one = [(r, pixels(im)) for r, im in iter_attacks(records, ATTACKS, seed=1, workers=0)]
    two = [(r, pixels(im)) for r, im in iter_attacks(records, ATTACKS, seed=1, workers=2)]
    assert [r for r, _ in one] == [r for r, _ in two]
    for (_, a), (_, b) in zip(one, two, strict=True):
        np.testing.assert_array_equal(a, b)
    other = [pixels(im) for _, im in iter_attacks(records[:1], ATTACKS[:1], seed=2)]
    assert not np.array_equal(other[0], one[0][1])


def test_write_attacks_resumes(tmp_path, small_photos):
    records = load_dataset(f"folder:{small_photos}").records
    out = tmp_path / "out"
    first = write_attacks(records, ATTACKS[:3], out, workers=2)
    assert (first.written, first.skipped) == (9, 0)
    victim = out / "coffee_text_length_30.png"
    before = pixels(Image.open(victim))
    victim.unlink()
    second = write_attacks(records, ATTACKS[:3], out, workers=0)
    assert (second.written, second.skipped) == (1, 8)
    np.testing.assert_array_equal(pixels(Image.open(victim)), before)
    assert len(pd.read_csv(second.manifest)) == 9
    assert not list(out.rglob("*.tmp"))


def test_a_bad_image_is_reported_and_skipped(tmp_path, small_photos, caplog):
    records = load_dataset(f"folder:{small_photos}").records
    data = (small_photos / "coffee.png").read_bytes()
    (small_photos / "coffee.png").write_bytes(data[: len(data) // 3])  # truncated after listing
    report = write_attacks(records, ATTACKS[:2], tmp_path / "out", workers=2)
    assert [b.path.name for b in report.bad] == ["coffee.png"]
    assert report.written == 4
    bad_csv = pd.read_csv(tmp_path / "out" / "bad_images.csv")
    assert bad_csv["path"].str.endswith("coffee.png").all()
    assert sum("coffee.png" in r.getMessage() for r in caplog.records) == 1
    stream = iter_attacks(records, ATTACKS[:2])
    assert len(list(stream)) == 4 and len(stream.bad) == 1
    with pytest.raises(Exception, match="coffee.png"):
        list(iter_attacks(records, ATTACKS[:2], on_error="raise"))


def test_jpeg_output_and_bad_format(tmp_path, small_photos):
    records = load_dataset(f"folder:{small_photos}").records[:1]
    report = write_attacks(records, ATTACKS[:1], tmp_path / "j", image_format="jpg", workers=0)
    assert report.records[0].path.suffix == ".jpg"
    with pytest.raises(ValueError, match="cannot write images as 'xyz'"):
        write_attacks(records, ATTACKS[:1], tmp_path / "x", image_format="xyz")


def test_default_attacks_on_real_photos(bsds_root):
    records = load_dataset("bsds500", bsds_root, subset="val", limit=2).records
    out = list(iter_attacks(records, default_attacks(), seed=0))
    assert len(out) == 2 * 58
    sizes = {r.attack_id: im.size for r, im in out if r.source_id == records[0].image_id}
    original = Image.open(records[0].path).size
    assert sizes["scaling_0.4"] == (round(original[0] * 0.4), round(original[1] * 0.4))
    assert sizes["rotation_60_and_rescaling"] == original
