from __future__ import annotations

import hashlib
import io
import logging
import re
import tarfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from data_retrieval import (
    MANIFEST_COLUMNS,
    ArchiveError,
    DatasetNotFoundError,
    ImageRecord,
    data_root,
    download_bsds500,
    list_datasets,
    list_images,
    load_dataset,
    load_images,
    read_manifest,
    split_groups,
    split_kaggle_memes,
    write_manifest,
)
from data_retrieval.bsds500 import BSDS500_SHA256, BSDS500_SIZE, BSDS500_URL
from helpers import DownloadError, load_image


def test_sample_dataset_has_at_least_ten_colour_photos():
    dataset = load_dataset("sample")
    assert len(dataset) >= 10 and not dataset.bad
    for record in dataset.records:
        assert record.source_id == record.image_id and record.attack_id is None
        pixels = np.asarray(load_image(record.path)).astype(int)
        assert min(pixels.shape[:2]) >= 256
        assert np.abs(pixels[..., 0] - pixels[..., 2]).mean() > 2, record.image_id  # colour


def test_named_datasets_are_listed():
    assert {"sample", "bsds500", "kaggle_memes", "flickr500k", "cartoons", "meme_templates",
            "imagenet_samples"} <= set(list_datasets())


def test_data_root_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("DATASETS_DIR", raising=False)
    assert data_root().name == "Datasets"
    monkeypatch.setenv("DATASETS_DIR", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    assert data_root(tmp_path / "flag") == tmp_path / "flag"


def test_missing_dataset_says_where_and_how(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("bsds500", tmp_path)
    message = str(info.value)
    assert str(tmp_path / "BSDS500") in message and "download_datasets.py bsds500" in message
    with pytest.raises(ValueError, match="known: .*bsds500"):
        load_dataset("bsds5000")


def test_folder_listing_reports_each_bad_file_once(tmp_path, caplog):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (8, 8), "red").save(folder / "a.png")
    Image.new("RGB", (8, 8), "blue").save(folder / "sub" / "b.jpg")
    Image.new("RGB", (8, 8), "green").save(folder / "buzz.gif")
    Image.new("RGB", (8, 8), "green").save(folder / "buzz.jpg")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "fake.png").write_text("not an image")
    (folder / "notes.txt").write_text("ignored: not an image extension")
    with caplog.at_level(logging.WARNING):
        dataset = load_dataset(f"folder:{folder}")
    assert [r.image_id for r in dataset.records] == ["a", "buzz.gif", "buzz.jpg", "sub/b"]
    assert sorted(b.path.name for b in dataset.bad) == ["empty.jpg", "fake.png"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert any("empty.jpg" in w and "empty" in w for w in warnings)
    assert any("fake.png" in w and "not an image" in w for w in warnings)


def test_manifest_round_trip_and_pandas(tmp_path):
    records = [
        ImageRecord("a", tmp_path / "a.png", group="experimental"),
        ImageRecord("a_jpg_compression_50", tmp_path / "x" / "b.png", "a",
                    "jpg_compression_50", "experimental"),
        ImageRecord("c", "/elsewhere/c.jpg", group="control"),
    ]
    path = write_manifest(records, tmp_path / "manifest.csv")
    frame = pd.read_csv(path)
    assert tuple(frame.columns) == MANIFEST_COLUMNS
    assert frame["path"].tolist()[:2] == ["a.png", "x/b.png"]  # relative inside the folder
    back = read_manifest(path)
    assert back == [r.replace(path=r.path.resolve()) for r in records]
    with pytest.raises(ValueError, match="duplicate image_id 'a'"):
        write_manifest(records + [records[0]], tmp_path / "dup.csv")


def test_split_groups_is_seeded_and_disjoint():
    records = [ImageRecord(f"img{i}", f"/x/{i}.jpg") for i in range(500)]
    split = split_groups(records, 250, 250, seed=0)
    groups = {r.image_id: r.group for r in split}
    assert len(split) == 500
    assert sum(g == "experimental" for g in groups.values()) == 250
    assert split == split_groups(records, 250, 250, seed=0)
    other = split_groups(records, 250, 250, seed=1)
    assert {r.image_id for r in other if r.group == "experimental"} != {
        r.image_id for r in split if r.group == "experimental"}
    small = split_groups(records, 100, 50, seed=0)
    assert len(small) == 150
    with pytest.raises(ValueError, match="cannot split 500 images"):
        split_groups(records, 400, 200)
    with pytest.raises(ValueError, match="originals only"):
        split_groups([ImageRecord("b", "/b", "a", "jpg_compression_50")])


# --- BSDS500 ------------------------------------------------------------------------------


def _fake_bsds_archive(path, counts):
    with tarfile.open(path, "w:gz") as archive:
        for split, n in counts.items():
            for i in range(n):
                buffer = io.BytesIO()
                Image.new("RGB", (12, 8), (i * 20 % 255, 0, 0)).save(buffer, format="JPEG")
                info = tarfile.TarInfo(f"BSR/BSDS500/data/images/{split}/{1000 + i}.jpg")
                info.size = len(buffer.getvalue())
                archive.addfile(info, io.BytesIO(buffer.getvalue()))
            info = tarfile.TarInfo(f"BSR/BSDS500/data/images/{split}/Thumbs.db")
            info.size = 3
            archive.addfile(info, io.BytesIO(b"xyz"))
            info = tarfile.TarInfo(f"BSR/BSDS500/data/groundTruth/{split}/1000.mat")
            info.size = 1
            archive.addfile(info, io.BytesIO(b"m"))


def test_bsds500_download_checks_and_converts(http_server, tmp_path):
    www, url = http_server
    counts = {"train": 4, "val": 2, "test": 3}
    _fake_bsds_archive(www / "BSR_bsds500.tgz", counts)
    root = tmp_path / "data"
    archive = www / "BSR_bsds500.tgz"
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    dest = download_bsds500(root, url=f"{url}/BSR_bsds500.tgz", expected_counts=counts,
                            expected_size=archive.stat().st_size, sha256=digest)
    assert dest == root / "BSDS500"
    for split, n in counts.items():
        assert len(list((dest / split).glob("*.jpg"))) == n
    assert not list(dest.rglob("Thumbs.db")) and not list(dest.rglob("*.mat"))
    dataset = load_dataset("bsds500", root)
    assert len(dataset) == 9 and "train/1000" in {r.image_id for r in dataset.records}
    assert len(load_dataset("bsds500", root, subset="val")) == 2
    assert not (root / "downloads" / "BSR_bsds500.tgz").exists()


def test_bsds500_download_rejects_a_wrong_archive(http_server, tmp_path):
    www, url = http_server
    _fake_bsds_archive(www / "BSR_bsds500.tgz", {"train": 2, "val": 1, "test": 1})
    root = tmp_path / "data"
    with pytest.raises(ArchiveError, match="expected"):
        download_bsds500(root, url=f"{url}/BSR_bsds500.tgz", expected_size=None,
                         sha256=None)  # the official 200/100/200
    assert not (root / "BSDS500").exists()


def test_bsds500_download_checks_size_and_sha256_by_default(http_server, tmp_path):
    """The official archive's size and SHA-256 are recorded: any other file is refused before
    it is opened, and it is fetched over https."""
    www, url = http_server
    _fake_bsds_archive(www / "BSR_bsds500.tgz", {"train": 200, "val": 100, "test": 200})
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="expected 70763455 bytes"):
        download_bsds500(root, url=f"{url}/BSR_bsds500.tgz")
    assert not (root / "BSDS500").exists()
    assert BSDS500_URL.startswith("https://") and BSDS500_SIZE == 70_763_455
    assert re.fullmatch(r"[0-9a-f]{64}", BSDS500_SHA256)


def test_real_bsds500(bsds_root):
    dataset = load_dataset("bsds500", bsds_root)
    assert len(dataset) == 500 and not dataset.bad
    for split, n in {"train": 200, "val": 100, "test": 200}.items():
        assert len(load_dataset("bsds500", bsds_root, subset=split)) == n
    split = split_groups(dataset.records, 250, 250, seed=0)
    assert len({r.image_id for r in split}) == 500


# --- Kaggle memes ---------------------------------------------------------------------------


def test_kaggle_memes_splitter(tmp_path):
    images = tmp_path / "kaggle_images"
    images.mkdir()
    colours = {"m1": "red", "m2": "blue", "m3": "green", "m4": "white", "EQKrGAq_imgr": "black",
               "stray": "gray"}
    for stem, colour in colours.items():
        Image.new("RGB", (10, 10), colour).save(images / f"{stem}.png")
    csv = tmp_path / "reddit_posts.csv"
    csv.write_text("id,template,title\nm2,bad_luck_brian,a\nm1,success_kid,b\n"
                   "m3,bad_luck_brian,c\nm4,success_kid,d\nmissing,success_kid,e\n")
    out = tmp_path / "kaggle_memes"
    split = split_kaggle_memes(csv, images, out)
    assert set(split.templates) == {"bad-luck-brian", "success-kid"}
    # the first meme of a template in the CSV is its reference image
    assert np.asarray(Image.open(out / "templates" / "bad-luck-brian.png"))[0, 0].tolist() == [
        0, 0, 255]
    assert np.asarray(Image.open(out / "templates" / "success-kid.png"))[0, 0].tolist() == [
        255, 0, 0]
    memes = {r.image_id: r.source_id for r in read_manifest(out / "memes.csv")}
    assert memes == {"m1": "success-kid", "m2": "bad-luck-brian", "m3": "bad-luck-brian",
                     "m4": "success-kid", "EQKrGAq_imgr": "bad-luck-brian"}
    assert split.missing_images == ["missing"]
    assert [p.name for p in split.unlabelled_images] == ["stray.png"]
    assert (images / "m1.png").exists()  # nothing moved
    dataset = load_dataset("kaggle_memes", tmp_path)
    assert {r.image_id for r in dataset.records if r.is_original} == {
        "bad-luck-brian", "success-kid"}
    assert len(load_dataset("kaggle_memes", tmp_path, subset="memes")) == 5


def test_load_images_accepts_names_folders_and_manifests(tmp_path, small_photos):
    assert len(load_images(str(small_photos))) == 3
    manifest = write_manifest(load_images(str(small_photos)).records, tmp_path / "m.csv")
    assert [r.image_id for r in load_images(str(manifest)).records] == ["chelsea", "coffee",
                                                                         "rocket"]
    with pytest.raises(ValueError, match="neither a dataset name"):
        load_images("no_such_thing")


def test_list_images_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_images(tmp_path / "nope")


def test_sample_records_is_seeded_and_keeps_order(caplog):
    from data_retrieval import ImageRecord, sample_records

    records = [ImageRecord(f"im{i}", None) for i in range(20)]
    picked = sample_records(records, 5, seed=3)
    expected = np.sort(np.random.default_rng(3).choice(20, 5, replace=False))
    assert [r.image_id for r in picked] == [f"im{i}" for i in expected]
    assert sample_records(records, 0) == records
    assert sample_records(records, 50, what="toy") == records and "toy has 20" in caplog.text
    with pytest.raises(ValueError, match="--count must be >= 0"):
        sample_records(records, -1)


# --- the scripts of this package, through the output mechanism (issue 25) ----------------------


def _script_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


def test_download_script_errors_are_one_line_with_status_2(tmp_path, capsys, http_server):
    from tests.conftest import load_script

    script = load_script("download_datasets")
    # a dataset without a public URL: an error line on stderr (was a plain line on stdout)
    assert script.main(["kaggle_memes", "--data-root", str(tmp_path / "root")]) == 2
    assert _script_error(capsys).startswith("error: kaggle_memes cannot be downloaded")
    # a failed download: exit 2 and one line (was exit 1)
    _, url = http_server
    code = script.main(["bsds500", "--data-root", str(tmp_path / "root"), "--url",
                        f"{url}/missing.tgz"])
    assert code == 2 and _script_error(capsys).startswith("error:")
    assert not (tmp_path / "root" / "BSDS500").exists()
    # --data-root is a folder it writes into: a file is refused when parsed
    (tmp_path / "file").write_text("mine")
    with pytest.raises(SystemExit) as exit_:
        script.main(["bsds500", "--data-root", str(tmp_path / "file")])
    assert exit_.value.code == 2 and "it is a file" in _script_error(capsys)
    assert (tmp_path / "file").read_text() == "mine"


def test_split_kaggle_memes_script_refuses_bad_columns_and_outputs(tmp_path, capsys):
    from tests.conftest import load_script

    script = load_script("split_kaggle_memes")
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (10, 10), "red").save(images / "m1.png")
    csv = tmp_path / "reddit_posts.csv"
    csv.write_text("id,template\nm1,success_kid\n")
    (tmp_path / "file").write_text("mine")
    for extra, message in ((["--stem-column", "-1"], "'-1' is not an integer"),
                           (["--template-column", "1e9"], "'1e9' is not an integer")):
        with pytest.raises(SystemExit) as exit_:
            script.main([str(csv), str(images), str(tmp_path / "out"), *extra])
        assert exit_.value.code == 2 and message in _script_error(capsys)
    with pytest.raises(SystemExit) as exit_:
        script.main([str(csv), str(images), str(tmp_path / "file")])
    assert exit_.value.code == 2 and "it is a file" in _script_error(capsys)
    # the same column for the stem and the template: refused, not a split of nonsense
    assert script.main([str(csv), str(images), str(tmp_path / "out"), "--stem-column", "1",
                        "--template-column", "1"]) == 2
    assert "--stem-column and --template-column" in _script_error(capsys)
    assert script.main([str(csv), str(images), str(tmp_path / "memes_out"), "--stem-column",
                        "0"]) == 0  # an ordinary run still works
    assert script.main([str(tmp_path / "none.csv"), str(images), str(tmp_path / "o2")]) == 2
    assert "not found" in _script_error(capsys)
    assert not (tmp_path / "o2").exists() and (tmp_path / "file").read_text() == "mine"
