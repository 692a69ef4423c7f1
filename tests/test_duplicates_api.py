"""`clustering.find_duplicates`: the duplicate-finding protocol as one library call, checked on
real photos and their attacked copies (the truth from the generator's records, not from file
names), in imagededup's dictionary shape, and against `scripts/find_duplicates.py`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

import clustering
from clustering import Duplicates, find_duplicates
from clustering.duplicates import DEFAULT_THRESHOLDS, TABLE_COLUMNS
from data_retrieval import ImageRecord, list_images
from generator import get_attack, write_attacks
from hashing import describe
from tests.conftest import run_main

PHOTOS = ("chelsea", "coffee", "rocket", "motorcycle")
ATTACKS = ("jpg_compression_50", "scaling_0.8")


@pytest.fixture(scope="module")
def copies(tmp_path_factory, sample_paths) -> tuple[Path, dict[Path, str]]:
    """A folder of four small sample photos and two attacked copies of each (under
    ``copies/``), and the truth: every file's source image, from the records."""
    folder = tmp_path_factory.mktemp("dups") / "photos"
    folder.mkdir()
    originals = []
    for name in PHOTOS:
        with Image.open(sample_paths[name]) as image:
            image.convert("RGB").resize((160, 120)).save(folder / f"{name}.png")
        originals.append(ImageRecord(name, folder / f"{name}.png"))
    report = write_attacks(originals, [get_attack(a) for a in ATTACKS], folder / "copies",
                           workers=0, image_format="jpg", show_progress=False)
    assert len(report.records) == len(PHOTOS) * len(ATTACKS) and not report.bad
    truth = {Path(r.path).resolve(): r.source_id for r in [*originals, *report.records]}
    return folder, truth


@pytest.fixture(scope="module")
def found(copies) -> Duplicates:
    return find_duplicates(copies[0], "dhash")


def _partition(paths_by_group) -> set[frozenset[Path]]:
    return {frozenset(Path(p).resolve() for p in paths) for paths in paths_by_group}


def test_each_original_is_grouped_with_its_copies(copies, found):
    folder, truth = copies
    expected = {frozenset(p for p, s in truth.items() if s == source) for source in PHOTOS}
    grouped = _partition(found.groups.groupby("group")["image"].apply(list))
    assert grouped == expected
    assert found.n_groups == len(PHOTOS) and len(found) == len(truth)
    assert found.method == "dhash" and found.threshold == DEFAULT_THRESHOLDS["dhash"]
    assert found.skipped == [] and found.folder == folder
    # a group's first member is its representative: at distance 0 from itself
    assert (found.groups.groupby("group")["distance"].first() == 0).all()
    assert found.groups["distance"].between(0, found.threshold * len(ATTACKS)).all()
    assert list(found.groups.columns[:4]) == list(TABLE_COLUMNS)


def test_to_dict_has_imagededups_shape(copies, found):
    folder, truth = copies
    duplicates = found.to_dict()
    # every file a key, named as imagededup names it: relative to the folder searched
    assert set(duplicates) == {p.relative_to(folder.resolve()).as_posix() for p in truth}
    for name, others in duplicates.items():
        assert isinstance(others, list) and all(isinstance(o, str) for o in others)
        assert name not in others and len(set(others)) == len(others)
        for other in others:  # symmetric
            assert name in duplicates[other]
    # the truth, through the dictionary: a file's duplicates are the other files of its source
    source = {p.relative_to(folder.resolve()).as_posix(): s for p, s in truth.items()}
    for name, others in duplicates.items():
        assert sorted(others) == sorted(n for n, s in source.items()
                                        if s == source[name] and n != name)


def test_groups_and_to_frame_agree_with_to_dict(found):
    duplicates = found.to_dict()
    groups = found.groups
    for _, members in groups.groupby("group")["file"]:
        for name in members:
            assert sorted(duplicates[name]) == sorted(set(members) - {name})
    alone = set(duplicates) - set(groups["file"])
    assert all(duplicates[name] == [] for name in alone)
    frame = found.to_frame()
    assert list(frame["file"]) == found.files and len(frame) == len(found)
    in_groups = frame[frame["group"] >= 0].sort_values(["group", "image_id"])
    expected = groups.sort_values(["group", "image_id"])
    assert list(in_groups["file"]) == list(expected["file"])
    assert list(in_groups["distance"]) == pytest.approx(list(expected["distance"]))
    assert frame.loc[frame["group"] < 0, "distance"].isna().all()


def test_descriptors_give_the_same_groups(copies, found):
    records, _ = list_images(copies[0])
    again = find_duplicates(describe(records, "dhash", show_progress=False))
    assert _partition(again.groups.groupby("group")["image"].apply(list)) == \
        _partition(found.groups.groupby("group")["image"].apply(list))
    assert again.to_dict() == found.to_dict()  # file names relative to the common folder


def test_repr_is_one_short_line(found):
    text = repr(found)
    assert "\n" not in text and len(text) < 120
    assert text.startswith(f"Duplicates({len(PHOTOS)} groups") and "dhash" in text


def test_the_script_gives_the_library_s_groups(copies, found, tmp_path, monkeypatch):
    monkeypatch.setenv("RESULTS_DIR", str(tmp_path / "Results"))
    code, err = run_main("find_duplicates", [str(copies[0]), "--method", "dhash",
                                             "--name", "dups", "--log-level", "WARNING"])
    assert code == 0, err
    out = tmp_path / "Results" / "dups"
    table = pd.read_csv(out / "duplicates.csv")
    assert list(table.columns) == list(TABLE_COLUMNS)
    ours = found.groups[list(TABLE_COLUMNS)]
    assert list(table["group"]) == list(ours["group"])
    assert list(table["image"]) == list(ours["image"])
    assert list(table["image_id"]) == list(ours["image_id"])
    assert list(table["distance"]) == pytest.approx(list(ours["distance"]))
    data = json.loads((out / "clusters.json").read_text())
    assert data["folder"] == str(copies[0]) and data["skipped"] == []
    assert (out / "index.html").is_file()
    written = found.write(tmp_path / "library")
    assert (tmp_path / "library" / "duplicates.csv").read_bytes() == \
        (out / "duplicates.csv").read_bytes()
    assert {p.name for p in written} >= {"duplicates.csv", "assignments.csv", "clusters.json",
                                         "index.html"}


def test_refusals(copies, small_photos, monkeypatch):
    with pytest.raises(ValueError, match="no default threshold for phash"):
        find_duplicates(copies[0], "phash")

    def never(*args, **kwargs):
        raise AssertionError("an image was described")

    monkeypatch.setattr(clustering.duplicates, "describe", never)
    with pytest.raises(ValueError, match="per image"):
        find_duplicates(copies[0], "orb", threshold=0.1)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        find_duplicates(small_photos / "chelsea.png", "dhash")
    for extra in small_photos.iterdir():
        if extra.name != "chelsea.png":
            extra.unlink()
    with pytest.raises(ValueError, match="need at least 2"):
        find_duplicates(small_photos, "dhash")
