"""`clustering.find_duplicates`: the duplicate-finding protocol as one library call, checked on
real photos and their attacked copies (the truth from the generator's records, not from file
names), in imagededup's dictionary shape, and against `scripts/find_duplicates.py`."""

from __future__ import annotations

import json
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import clustering
from clustering import Duplicates, find_duplicates
from clustering.duplicates import DEFAULT_THRESHOLDS, TABLE_COLUMNS
from data_retrieval import ImageRecord, list_images
from generator import get_attack, write_attacks
from hashing import describe
from helpers.descriptors import BinaryCodes
from tests.conftest import load_script, run_main

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
    # phash has a default now (scripts/benchmark_duplicates.py); whash has none
    with pytest.raises(ValueError, match="no default threshold for whash"):
        find_duplicates(copies[0], "whash")

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


# --- what a person acts on: keepers, the removable list, the page, the figure, the notebook ----

def _save(path: Path, size: tuple[int, int], noisy: bool, seed: int = 0) -> Path:
    """A PNG of ``size``: random noise (a large file) or one flat colour (a small one)."""
    rng = np.random.default_rng(seed)
    if noisy:
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
    else:
        Image.new("RGB", size, (90, 120, 150)).save(path)
    return path


def _hand_grouped(folder: Path, groups: list[list[Path]], threshold: float | None = None
                  ) -> Duplicates:
    """`find_duplicates` on hand-made dhash codes: every file of a group the same random
    64-bit code (two random codes within 5 bits of each other: odds under 1e-12), so the
    groups are known whatever the pictures hold."""
    rng = np.random.default_rng(1)
    rows, records = [], []
    for members in groups:
        code = np.packbits(rng.integers(0, 2, 64, dtype=np.uint8))
        for path in members:
            rows.append(code)
            records.append(ImageRecord(path.stem, path))
    codes = BinaryCodes(np.array(rows), 64, ids=tuple(r.image_id for r in records),
                        records=tuple(records), method="dhash")
    return find_duplicates(codes, threshold=threshold, root=folder)


@pytest.fixture
def keeper_folder(tmp_path) -> tuple[Path, list[list[Path]], dict[str, str]]:
    """Four groups that each step of the keeper rule decides, a lone image, and the keepers
    worked out by hand."""
    folder = tmp_path / "keep"
    folder.mkdir()
    # pixels decide: 120x100 = 12,000 beats the wider 300x30 = 9,000 and 100x100, although
    # its flat colour makes it the smallest file
    a = [_save(folder / "a_flat_120x100.png", (120, 100), noisy=False),
         _save(folder / "a_noise_300x30.png", (300, 30), noisy=True),
         _save(folder / "a_noise_100x100.png", (100, 100), noisy=True)]
    # the same pixels: the larger file (noise) wins, although its path sorts last
    b = [_save(folder / "b_a_flat.png", (100, 100), noisy=False),
         _save(folder / "b_z_noise.png", (100, 100), noisy=True)]
    # the same pixels and bytes (one file copied): the older wins, although its path is last
    c = [_save(folder / "c_a_new.png", (80, 80), noisy=True, seed=3),
         folder / "c_b_old.png"]
    shutil.copyfile(c[0], c[1])
    os.utime(c[0], (1_500_000_000, 1_500_000_000))
    os.utime(c[1], (1_000_000_000, 1_000_000_000))
    # everything equal: the first path in alphabetical order
    d = [folder / "d_b.png", _save(folder / "d_a.png", (64, 64), noisy=True, seed=4)]
    shutil.copyfile(d[1], d[0])
    for path in d:
        os.utime(path, (1_200_000_000, 1_200_000_000))
    alone = [_save(folder / "e_alone.png", (50, 50), noisy=True, seed=5)]
    keepers = {"a_flat_120x100.png": "most pixels", "b_z_noise.png": "largest file",
               "c_b_old.png": "oldest", "d_a.png": "alphabetical"}
    return folder, [a, b, c, d, alone], keepers


def test_keepers_follow_the_stated_rule(keeper_folder):
    folder, groups, expected = keeper_folder
    found = _hand_grouped(folder, groups)
    assert found.n_groups == 4 and len(found) == 10
    keepers = found.keepers()
    assert list(keepers.columns) == list(clustering.duplicates.KEEPER_COLUMNS)
    assert sorted(keepers["file"]) == sorted(expected)
    for _, row in keepers.iterrows():
        assert expected[row["file"]] in row["reason"], row["reason"]
        with Image.open(row["image"]) as image:
            assert (row["width"], row["height"]) == image.size
        assert row["bytes"] == Path(row["image"]).stat().st_size
    # the keeper is one of its own group, and every group of two or more has one
    members = found.groups.set_index("image_id")["group"]
    assert sorted(members[keepers["image_id"]]) == sorted(keepers["group"])
    # the others are removable; the lone image is neither kept nor removable
    every = {p.resolve() for g in groups[:4] for p in g}
    kept = {(folder / name).resolve() for name in expected}
    assert {Path(p).resolve() for p in found.removable()} == every - kept
    assert "most pixels" in found.keeper_rule and "oldest" in found.keeper_rule


def test_list_removable_writes_the_non_keepers_and_refuses_another_file(copies, tmp_path,
                                                                        monkeypatch):
    folder, truth = copies
    # the oracle: each group is an original (a PNG) and its JPEG and 0.8-scaled copies; the
    # original has the most pixels or, against the JPEG copy of the same size, the larger file
    originals = {p for p in truth if p.parent == folder.resolve()}
    for original in originals:
        jpeg = folder / "copies" / f"{original.stem}_jpg_compression_50.jpg"
        with Image.open(original) as a, Image.open(jpeg) as b:
            assert a.size == b.size
        assert original.stat().st_size > jpeg.stat().st_size
    expected = sorted(str(p) for p in truth if p not in originals)
    monkeypatch.setenv("RESULTS_DIR", str(tmp_path / "Results"))
    listed = tmp_path / "lists" / "remove.txt"
    argv = [str(folder), "--method", "dhash", "--name", "dups", "--log-level", "WARNING",
            "--list-removable", str(listed)]
    code, err = run_main("find_duplicates", argv)
    assert code == 0, err
    lines = listed.read_text().splitlines()
    assert sorted(str(Path(line).resolve()) for line in lines) == expected
    assert all(Path(line).is_absolute() for line in lines)
    inside = (tmp_path / "Results" / "dups" / "removable.txt").read_text().splitlines()
    assert inside == lines and all(Path(p).exists() for p in truth)  # nothing deleted
    # a file it did not make is never replaced, --overwrite or not; nothing is written
    mine = tmp_path / "mine.txt"
    mine.write_text("my notes\n")
    for extra in ([], ["--overwrite"]):
        code, err = run_main("find_duplicates", [str(folder), "--method", "dhash", "--name",
                                                 "other", "--list-removable", str(mine),
                                                 *extra])
        assert code != 0 and ("refusing" in err or "exists" in err), err
        assert mine.read_text() == "my notes\n"
    assert not (tmp_path / "Results" / "other").exists()
    # its own list: replaced only with --overwrite
    code, err = run_main("find_duplicates", [*argv[:4], "again", *argv[5:]])
    assert code != 0 and "overwrite" in err, err
    code, err = run_main("find_duplicates", [*argv[:4], "again", *argv[5:], "--overwrite"])
    assert code == 0, err
    assert listed.read_text().splitlines() == lines


class _Page(HTMLParser):
    """The numbers index.html states: its counts table, each group section and figures."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, str] = {}
        self.sections: list[dict[str, str]] = []
        self.skipped: list[list[str]] = []
        self._table = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("id") == "counts":
            self.counts = {k[5:]: v for k, v in attrs.items() if k.startswith("data-")}
        if tag == "table":
            self._table = attrs.get("class")
        if tag == "section":
            self.sections.append({**attrs, "figures": [], "kept": []})
        if tag == "figure":
            self.sections[-1]["figures"].append(attrs["data-image-id"])
            if attrs.get("class") == "keep":
                self.sections[-1]["kept"].append(attrs["data-image-id"])
        if tag == "tr" and self._table == "skipped":
            self.skipped.append([])
        if tag == "td" and self._table == "skipped":
            self._cell = []

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.skipped[-1].append("".join(self._cell))
            self._cell = None
        if tag == "table":
            self._table = None


def test_index_html_counts_agree_with_duplicates_csv_and_lists_the_skipped(
        small_photos, tmp_path, monkeypatch, capsys):
    """A folder of three photos, two edited copies of one, a lone copy of another, a text
    file and an empty .jpg: the page and the script's output say what the CSV says."""
    for name, attack in (("chelsea", "jpg_compression_50"), ("chelsea", "scaling_0.8"),
                         ("coffee", "jpg_compression_50")):
        with Image.open(small_photos / f"{name}.png") as image:
            get_attack(attack)(image.convert("RGB")).save(small_photos / f"{name}_{attack}.png")
    (small_photos / "notes.txt").write_text("not a photo")
    (small_photos / "empty.jpg").write_bytes(b"")
    monkeypatch.setenv("RESULTS_DIR", str(tmp_path / "Results"))
    code = load_script("find_duplicates").main([str(small_photos), "--method", "dhash",
                                                "--name", "page", "--log-level", "WARNING"])
    assert code == 0
    printed = capsys.readouterr().out
    out = tmp_path / "Results" / "page"
    table = pd.read_csv(out / "duplicates.csv")
    everyone = pd.read_csv(out / "assignments.csv")
    page = _Page()
    page.feed((out / "index.html").read_text(encoding="utf-8"))
    sizes = table["group"].value_counts().sort_index()
    assert int(page.counts["groups"]) == table["group"].nunique() == 2
    assert int(page.counts["images-in-groups"]) == len(table) == 5
    assert int(page.counts["singletons"]) == len(everyone) - len(table) == 1
    assert int(page.counts["removable"]) == len(table) - table["group"].nunique()
    assert int(page.counts["images"]) == len(everyone) == 6
    # the same group numbers and members as the CSV, one keeper each (keepers.csv's)
    assert [int(s["data-group"]) for s in page.sections] == list(sizes.index)
    assert [int(s["data-size"]) for s in page.sections] == list(sizes)
    keepers = pd.read_csv(out / "keepers.csv")
    for section in page.sections:
        members = table[table["group"] == int(section["data-group"])]
        assert section["figures"] == list(members["image_id"])
        assert section["kept"] == list(keepers.loc[keepers["group"] == int(
            section["data-group"]), "image_id"])
    # the text file and the empty file: skipped, with the reason, on the page and on screen
    skipped = {Path(path).name: reason for path, reason in filter(None, page.skipped)}
    assert set(skipped) == {"notes.txt", "empty.jpg"} and int(page.counts["skipped"]) == 2
    assert int(page.counts["not-images"]) == 1 and int(page.counts["unreadable"]) == 1
    assert "not an image" in skipped["notes.txt"] and ".txt" in skipped["notes.txt"]
    assert "empty" in skipped["empty.jpg"]
    assert "notes.txt: not an image" in printed and "Keeper rule:" in printed
    assert "2 groups of two or more" in printed
    data = json.loads((out / "clusters.json").read_text())
    assert [Path(p).name for _, p, _ in data["skipped"]] == ["empty.jpg"]
    assert [Path(p).name for _, p, _ in data["not_images"]] == ["notes.txt"]
    # and the library's result reports the text file too
    found = find_duplicates(small_photos, "dhash")
    assert [(Path(p).name, "not an image" in why) for _, p, why in found.not_images] == \
        [("notes.txt", True)]
    assert "not_images=1" in repr(found)


def test_plot_returns_a_figure_and_writes_only_when_asked(found, tmp_path, monkeypatch):
    from matplotlib.figure import Figure  # matplotlib: only this test draws

    monkeypatch.chdir(tmp_path)
    figure = found.plot()
    assert isinstance(figure, Figure) and list(tmp_path.iterdir()) == []
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert sum("KEEP" in t for t in titles) == found.n_groups
    assert {t.split("\n")[0] for t in titles} == set(found.groups["file"].map(
        lambda f: f if len(f) <= 26 else "..." + f[-23:]))
    found.plot(tmp_path / "groups.png")
    assert [p.name for p in tmp_path.iterdir()] == ["groups.png"]
    with Image.open(tmp_path / "groups.png") as image:
        assert image.format == "PNG" and image.width > 300


def test_repr_html_is_bounded(tmp_path):
    """40 groups, one of 9 images: the notebook table shows the 10 largest, 6 images each,
    and says what it leaves out."""
    folder = tmp_path / "many"
    folder.mkdir()
    groups = [[_save(folder / f"big_{k}.png", (40, 30), noisy=True, seed=k) for k in range(9)]]
    groups += [[_save(folder / f"g{g}_{k}.png", (40, 30), noisy=True, seed=100 * g + k)
                for k in range(2)] for g in range(1, 40)]
    found = _hand_grouped(folder, groups, threshold=0.05)
    assert found.n_groups == 40
    text = found._repr_html_()
    assert text == found.to_html()
    assert text.count("<img") == 6 + 9 * 2 and "+3 more" in text
    assert "10 largest of 40 groups" in text and "30 more" in text
    assert text.count("data:image/png;base64,") == text.count("<img")
    assert len(text) < 24 * 8_000 + 10_000
    assert len(found.to_html(groups=3)) < len(text)


def test_a_draft_decode_takes_its_hashs_default_threshold(copies, found):
    """`dhash:decode='draft'` (a folder of large JPEGs is where it helps) groups with dhash's
    default threshold; these small files are decoded whole, so the groups are dhash's."""
    drafted = find_duplicates(copies[0], "dhash:decode='draft'")
    assert drafted.threshold == DEFAULT_THRESHOLDS["dhash"]
    assert drafted.to_dict() == found.to_dict()
    with pytest.raises(ValueError, match="no default threshold for phash_hash_size=16"):
        find_duplicates(copies[0], "phash:hash_size=16")
