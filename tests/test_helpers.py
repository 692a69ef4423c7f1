from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import (
    DownloadError,
    ImageLoadError,
    Timer,
    atomic_write,
    derive_seed,
    download_file,
    load_image,
    read_json,
    resolve_device,
    rng_for,
    save_npy,
    write_experiment_json,
    write_json,
)

# --- atomic I/O ---------------------------------------------------------------------------------


def test_atomic_write_leaves_nothing_when_interrupted(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target) as handle:
        handle.write("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_json_round_trip_with_numpy_values(tmp_path):
    data = {"a": np.float32(0.5), "b": np.arange(3), "c": np.int64(7), "d": [1.5, None]}
    path = write_json(tmp_path / "x" / "data.json", data)
    assert read_json(path) == {"a": 0.5, "b": [0, 1, 2], "c": 7, "d": [1.5, None]}
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        read_json(tmp_path / "bad.json")


def test_npy_is_memory_mappable(tmp_path):
    array = np.random.default_rng(0).random((5, 4)).astype(np.float32)
    save_npy(tmp_path / "f.npy", array)
    mapped = np.load(tmp_path / "f.npy", mmap_mode="r")
    assert isinstance(mapped, np.memmap)
    np.testing.assert_array_equal(mapped, array)


def test_experiment_json_records_config_versions_and_times(tmp_path):
    path = write_experiment_json(tmp_path, {"seed": 3}, started_at="2026-01-01T00:00:00+00:00",
                                 ended_at="2026-01-01T00:01:00+00:00")
    record = json.loads(path.read_text())
    assert record["config"] == {"seed": 3}
    versions = record["versions"]
    assert versions["python"] == ".".join(map(str, sys.version_info[:3]))
    assert versions["numpy"] == np.__version__
    assert versions["pillow"] == Image.__version__
    for key in ("torch", "faiss-cpu", "faiss-gpu"):
        assert key in versions
    assert set(record["git"]) == {"commit", "dirty"}
    assert record["host"]["hostname"]
    assert record["started_at"] < record["ended_at"]


# --- load_image: bad inputs ---------------------------------------------------------------------


def _jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.jpg", b"", "empty file"),
        ("notes.jpg", b"these are not pixels\n" * 20, "not an image"),
        ("page.png", b"<html><body>404</body></html>", "not an image"),
    ],
)
def test_load_image_rejects_non_images(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageLoadError, match=reason) as info:
        load_image(path)
    assert info.value.path == path
    assert str(path) in str(info.value)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_load_image_rejects_truncated_files(tmp_path, photo, fmt):
    buffer = io.BytesIO()
    photo.save(buffer, format=fmt)
    data = buffer.getvalue()
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert info.value.path == path
    assert "truncated" in info.value.reason or "corrupt" in info.value.reason


def test_load_image_missing_file(tmp_path):
    with pytest.raises(ImageLoadError, match="not found"):
        load_image(tmp_path / "nope.jpg")


def test_load_image_pixel_limit(tmp_path):
    path = tmp_path / "big.png"
    Image.new("RGB", (300, 200)).save(path)
    with pytest.raises(ImageLoadError, match="too large"):
        load_image(path, max_pixels=300 * 200 - 1)
    assert load_image(path, max_pixels=300 * 200).size == (300, 200)


def test_load_image_error_survives_pickling(tmp_path):
    import pickle

    error = pickle.loads(pickle.dumps(ImageLoadError(tmp_path / "a.jpg", "broken")))
    assert error.path == tmp_path / "a.jpg" and error.reason == "broken"


# --- load_image: odd but valid inputs -----------------------------------------------------------


def test_load_image_grayscale(tmp_path):
    path = tmp_path / "gray.png"
    Image.fromarray(np.full((10, 12), 77, np.uint8), "L").save(path)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (12, 10)
    assert (np.asarray(image) == 77).all()


def test_load_image_rgba_is_composited_on_white(tmp_path):
    array = np.zeros((4, 4, 4), np.uint8)
    array[:, :2] = (255, 0, 0, 255)  # opaque red
    array[:, 2:] = (0, 0, 255, 0)  # fully transparent blue
    path = tmp_path / "alpha.png"
    Image.fromarray(array, "RGBA").save(path)
    out = np.asarray(load_image(path))
    assert (out[:, :2] == (255, 0, 0)).all()
    assert (out[:, 2:] == (255, 255, 255)).all()


def test_load_image_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), c).convert("P") for c in ("green", "red")]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(path) as check:
        assert check.n_frames == 2
    first = np.asarray(frames[0].convert("RGB"))
    assert not np.array_equal(first, np.asarray(frames[1].convert("RGB")))
    np.testing.assert_array_equal(np.asarray(load_image(path)), first)


def test_load_image_palette_png_with_transparency(tmp_path):
    image = Image.new("P", (4, 4), 0)
    image.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    image.putpixel((0, 0), 1)
    path = tmp_path / "pal.png"
    image.save(path, transparency=0)
    out = np.asarray(load_image(path))
    assert tuple(out[0, 0]) == (200, 100, 50)
    assert tuple(out[3, 3]) == (255, 255, 255)


def test_load_image_cmyk_jpeg(tmp_path, photo):
    cmyk = photo.resize((64, 48)).convert("CMYK")
    path = tmp_path / "cmyk.jpg"
    path.write_bytes(_jpeg_bytes(cmyk, quality=100))
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (64, 48)
    reference = np.asarray(photo.resize((64, 48)), dtype=float)
    assert np.abs(np.asarray(out, dtype=float) - reference).mean() < 10


def test_load_image_16bit_png_is_rescaled(tmp_path):
    array = np.array([[0, 257 * 128, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(array).save(path)
    with Image.open(path) as check:
        assert check.mode.startswith("I")
    out = np.asarray(load_image(path))
    assert out[0, :, 0].tolist() == [0, 128, 255]


def test_load_image_applies_exif_orientation(tmp_path):
    array = np.zeros((20, 40, 3), np.uint8)
    array[:, :20] = (255, 0, 0)  # left half red
    array[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "rotated.jpg"
    path.write_bytes(_jpeg_bytes(Image.fromarray(array), quality=95, exif=exif.tobytes()))
    out = np.asarray(load_image(path)).astype(int)
    assert out.shape == (40, 20, 3)
    assert out[:15, :, 0].mean() > 200 and out[:15, :, 2].mean() < 50  # left became top
    assert out[25:, :, 2].mean() > 200


# --- device, seeds, timing ----------------------------------------------------------------------


def test_resolve_device():
    import torch

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == expected
    assert resolve_device("CPU") == "cpu"
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_derived_seeds_are_stable_across_processes():
    here = derive_seed(3, "img_1", "gaussian_noise_0.01")
    code = ("from helpers import derive_seed;"
            "print(derive_seed(3, 'img_1', 'gaussian_noise_0.01'))")
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env={"PYTHONHASHSEED": "123"})
    assert int(there.stdout) == here
    assert derive_seed(3, "img_1", "a") != derive_seed(3, "img_2", "a")
    assert derive_seed(1, "x") != derive_seed("1", "x")
    np.testing.assert_array_equal(rng_for(1, "a").random(4), rng_for(1, "a").random(4))


def test_timer():
    with Timer() as timer:
        sum(range(1000))
    assert 0 <= timer.elapsed < 5
    first = timer.elapsed
    assert timer.elapsed == first  # frozen once exited


# --- downloads ----------------------------------------------------------------------------------


def test_download_resumes_and_verifies(http_server, tmp_path):
    import hashlib

    root, url = http_server
    payload = np.random.default_rng(0).bytes(3 << 20)
    (root / "blob.bin").write_bytes(payload)
    dest = tmp_path / "dl" / "blob.bin"
    dest.parent.mkdir()
    (dest.parent / "blob.bin.part").write_bytes(payload[:1000])  # an interrupted download
    digest = hashlib.sha256(payload).hexdigest()
    out = download_file(f"{url}/blob.bin", dest, expected_size=len(payload), sha256=digest)
    assert out.read_bytes() == payload
    assert not (dest.parent / "blob.bin.part").exists()
    # already there and valid: kept
    assert download_file(f"{url}/blob.bin", dest, sha256=digest) == dest


def test_download_rejects_wrong_checksum_and_missing_files(http_server, tmp_path):
    root, url = http_server
    (root / "a.bin").write_bytes(b"abc")
    with pytest.raises(DownloadError, match="SHA-256"):
        download_file(f"{url}/a.bin", tmp_path / "a.bin", sha256="0" * 64)
    assert not (tmp_path / "a.bin").exists()
    with pytest.raises(DownloadError, match="expected 4 bytes"):
        download_file(f"{url}/a.bin", tmp_path / "b.bin", expected_size=4)
    with pytest.raises(DownloadError, match="404"):
        download_file(f"{url}/missing.bin", tmp_path / "c.bin")


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_fast_png_is_lossless(tmp_path, photo, mode):
    from helpers import save_image

    image = photo.convert(mode)
    path = save_image(image, tmp_path / f"x_{mode}.png", compress_level=1)
    with Image.open(path) as back:
        assert back.mode == mode
        np.testing.assert_array_equal(np.asarray(back), np.asarray(image))


def test_time_repeated_warms_up_then_interleaves():
    from helpers import time_repeated

    calls = []
    timings = time_repeated({"a": lambda: calls.append("a") or 1,
                             "b": lambda: calls.append("b") or 2}, repeats=3, warmup=1)
    assert calls == ["a", "b"] * 4  # one warm-up round, then three interleaved rounds
    assert len(timings["a"].runs) == 3 and timings["b"].result == 2
    assert timings["a"].best <= timings["a"].median
    single = time_repeated(lambda: 7, repeats=2, warmup=0)
    assert single.result == 7 and len(single.runs) == 2
    with pytest.raises(ValueError, match="repeats"):
        time_repeated(lambda: 0, repeats=0)
