"""Each attack against its specification, with independent oracles where one exists."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import scipy.ndimage as ndi
from PIL import Image, ImageOps

from generator import (
    compose,
    default_attacks,
    families,
    get_attack,
    load_attack_config,
    parse_attack_id,
    parse_attack_specs,
)

# The 58 ids of the original study, written out from the specification.
STUDY_IDS = (
    [f"gaussian_noise_{v}" for v in ("0.01", "0.02", "0.05")]
    + [f"salt_pepper_noise_{v}" for v in ("0.05", "0.1", "0.15")]
    + [f"speckle_noise_{v}" for v in ("0.01", "0.02", "0.05")]
    + [f"gaussian_filter_{k}x{k}" for k in (3, 5, 7)]
    + [f"median_filter_{k}x{k}" for k in (3, 5, 7)]
    + [f"jpg_compression_{q}" for q in (10, 50, 90)]
    + [f"scaling_{r}" for r in ("0.4", "0.8", "1.2", "1.6")]
    + [f"cropping_{p}_and_rescaling" for p in (5, 10, 20, 40, 60)]
    + [f"rotation_{a}_and_rescaling" for a in (5, 10, 20, 40, 60)]
    + [f"shearing_{s}" for s in (1, 2, 5, 10, 20)]
    + [f"{kind}_enhancement_{f}" for kind in ("contrast", "color", "brightness", "sharpness")
       for f in ("0.5", "0.66", "1.5", "2")]
    + [f"text_length_{n}" for n in (10, 20, 30, 40, 50)]
)


def arr(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(np.float64)


@pytest.fixture
def gray_image() -> Image.Image:
    """Mid-gray: noise statistics are not distorted by clipping."""
    return Image.new("RGB", (200, 150), (128, 128, 128))


def test_default_set_is_the_58_study_ids():
    ids = [a.id for a in default_attacks()]
    assert len(STUDY_IDS) == 58
    assert ids == STUDY_IDS


@pytest.mark.parametrize("attack_id", STUDY_IDS)
def test_every_default_id_parses_back_and_runs(attack_id, photo):
    attack = parse_attack_id(attack_id)
    assert attack.id == attack_id
    out = attack.apply(photo.resize((120, 80)), seed=1, image_id="x")
    assert out.mode == "RGB"


def test_names_and_ids_build_the_same_attack():
    assert get_attack("rotation", angle=20).id == "rotation_20_and_rescaling"
    assert get_attack("rotation", 20) == get_attack("rotation_20_and_rescaling")
    assert get_attack("contrast_enhancement", factor=2).id == "contrast_enhancement_2"
    assert get_attack("gaussian_noise", variance=0.01).id == "gaussian_noise_0.01"
    assert get_attack("padding", 0.1, "white").id == "padding_0.1_white"


def test_unknown_names_and_bad_parameters_are_clear():
    with pytest.raises(ValueError, match="known: .*gaussian_noise"):
        get_attack("blur", 3)
    with pytest.raises(ValueError, match="ids look like"):
        parse_attack_id("blurring_3")
    with pytest.raises(ValueError, match="'size' must be an odd integer"):
        get_attack("median_filter", 4)
    with pytest.raises(ValueError, match="'quality' must be in"):
        get_attack("jpg_compression", 0)
    with pytest.raises(ValueError, match="must be an integer"):
        get_attack("jpg_compression", "high")
    with pytest.raises(ValueError, match="no parameter 'sigma'"):
        get_attack("gaussian_filter", sigma=2)


# --- noise ----------------------------------------------------------------------------------


@pytest.mark.parametrize("variance", [0.01, 0.02])  # little clipping at mid-gray
def test_gaussian_noise_has_the_given_variance(gray_image, variance):
    rng = np.random.default_rng(0)
    diff = (arr(get_attack("gaussian_noise", variance)(gray_image, rng)) - 128) / 255
    assert abs(diff.mean()) < 0.005
    assert diff.var() == pytest.approx(variance, rel=0.05)


@pytest.mark.parametrize("amount", [0.05, 0.15])
def test_salt_pepper_changes_that_fraction_of_pixels(gray_image, amount):
    out = arr(get_attack("salt_pepper_noise", amount)(gray_image, np.random.default_rng(1)))
    white = (out == 255).all(axis=2).mean()
    black = (out == 0).all(axis=2).mean()
    changed = (out != 128).any(axis=2).mean()
    assert changed == pytest.approx(white + black)  # whole pixels, all channels at once
    assert changed == pytest.approx(amount, rel=0.1)
    assert white == pytest.approx(black, rel=0.2)


def test_speckle_noise_is_multiplicative(gray_image):
    out = arr(get_attack("speckle_noise", 0.02)(gray_image, np.random.default_rng(2)))
    relative = (out - 128) / 128
    assert relative.var() == pytest.approx(0.02, rel=0.05)
    black = Image.new("RGB", (50, 50))
    assert arr(get_attack("speckle_noise", 0.05)(black, np.random.default_rng(2))).max() == 0


def test_random_attacks_depend_on_seed_and_image_id(photo):
    attack = get_attack("gaussian_noise_0.02")
    a = arr(attack.apply(photo, seed=0, image_id="a"))
    assert np.array_equal(a, arr(attack.apply(photo, seed=0, image_id="a")))
    assert not np.array_equal(a, arr(attack.apply(photo, seed=1, image_id="a")))
    assert not np.array_equal(a, arr(attack.apply(photo, seed=0, image_id="b")))


# --- filters --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [3, 5, 7])
def test_median_filter_matches_scipy(photo, size):
    ours = arr(get_attack("median_filter", size)(photo))
    ref = ndi.median_filter(np.asarray(photo), size=(size, size, 1), mode="nearest")
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("size", [3, 5, 7])
def test_gaussian_filter_matches_scipy_with_the_study_sigma(photo, size):
    sigma = 0.6 * ((size - 1) * 0.5 - 1) + 1
    x = np.arange(size) - size // 2
    kernel = np.exp(-(x**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    ref = np.asarray(photo, dtype=np.float64)
    for axis in (0, 1):
        ref = ndi.correlate1d(ref, kernel, axis=axis, mode="mirror")
    ours = arr(get_attack("gaussian_filter", size)(photo))
    assert np.abs(ours - np.rint(ref)).max() <= 1


# --- compression and geometry ---------------------------------------------------------------


def test_jpeg_compression_equals_a_pillow_round_trip(photo, tmp_path):
    photo.save(tmp_path / "q50.jpg", quality=50)
    with Image.open(tmp_path / "q50.jpg") as ref:
        np.testing.assert_array_equal(arr(get_attack("jpg_compression_50")(photo)), arr(ref))
    assert arr(get_attack("jpg_compression_10")(photo)).std() != arr(photo).std()


@pytest.mark.parametrize("ratio", [0.4, 0.8, 1.2, 1.6])
def test_scaling_changes_the_size(photo, ratio):
    out = get_attack("scaling", ratio)(photo)
    assert out.size == (round(451 * ratio), round(300 * ratio))


@pytest.mark.parametrize("percentage", [5, 20, 60])
def test_cropping_keeps_the_size_and_shows_the_centre(photo, percentage):
    out = get_attack("cropping", percentage)(photo)
    assert out.size == photo.size
    keep = 1 - percentage / 100
    w, h = round(451 * keep), round(300 * keep)
    left, top = (451 - w) // 2, (300 - h) // 2
    ref = photo.crop((left, top, left + w, top + h)).resize(photo.size, Image.Resampling.BICUBIC)
    assert np.abs(arr(out) - arr(ref)).mean() < 1.0


def test_rotation_is_counter_clockwise_and_keeps_the_size(photo):
    square = photo.crop((0, 0, 300, 300))
    out = get_attack("rotation", 90)(square)
    np.testing.assert_array_equal(arr(out), arr(square.transpose(Image.Transpose.ROTATE_90)))
    for angle in (5, 40, 60):
        rotated = get_attack("rotation", angle)(photo)
        assert rotated.size == photo.size
        ref = photo.rotate(angle, Image.Resampling.BICUBIC, expand=True).resize(photo.size)
        assert np.abs(arr(rotated) - arr(ref)).mean() < 4


@pytest.mark.parametrize("angle", [1, 5, 20])
def test_shearing_matches_torchvision_affine(photo, angle):
    import torchvision.transforms.functional as F

    ours = arr(get_attack("shearing", angle)(photo))
    mode = F.InterpolationMode.BICUBIC
    same = arr(F.affine(photo, angle=0, translate=(0, 0), scale=1, shear=(-angle, -angle),
                        interpolation=mode))
    opposite = arr(F.affine(photo, angle=0, translate=(0, 0), scale=1, shear=(angle, angle),
                            interpolation=mode))
    assert ours.shape == arr(photo).shape
    assert np.abs(ours - same).mean() < 1.5
    assert np.abs(ours - opposite).mean() > 5 * np.abs(ours - same).mean()


# --- enhancements ---------------------------------------------------------------------------


def test_brightness_scales_pixel_values(photo):
    out = arr(get_attack("brightness_enhancement", 0.5)(photo))
    assert np.abs(out - np.asarray(photo) * 0.5).max() <= 1


def test_color_zero_and_contrast_one(photo):
    gray = arr(get_attack("color_enhancement", 0)(photo))
    assert np.ptp(gray, axis=2).max() <= 1
    np.testing.assert_array_equal(arr(get_attack("contrast_enhancement", 1)(photo)), arr(photo))
    low = arr(get_attack("contrast_enhancement", 0.5)(photo))
    assert low.std() == pytest.approx(arr(photo).std() * 0.5, rel=0.05)


def test_sharpness_changes_edges_only(photo):
    sharp = arr(get_attack("sharpness_enhancement", 2)(photo))
    assert np.abs(sharp - arr(photo)).mean() > 0.5
    assert sharp.mean() == pytest.approx(arr(photo).mean(), abs=1.5)


# --- text -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size", [(512, 512), (32, 32), (32, 24), (4000, 3000), (4000, 32), (32, 4000), (600, 90)]
)
def test_text_fits_any_size_and_aspect(size):
    image = Image.new("RGB", size, (90, 120, 150))
    for length in (10, 50):
        out = get_attack("text", length)(image, np.random.default_rng(length))
        assert out.size == size
        pixels = arr(out)
        changed = (pixels != (90, 120, 150)).any(axis=2)
        assert changed.any()
        assert (pixels == 255).all(axis=2).any()  # white letters


def test_text_size_follows_the_width():
    from generator.text import default_font_path, layout_text

    font, wrapped, stroke, box = layout_text("i" * 20, 512, 512, default_font_path())
    assert font.size == 40
    assert wrapped.count("\n") == 0  # 20 narrow characters make one line
    big, _, _, _ = layout_text("i" * 20, 1024, 1024, default_font_path())
    assert big.size == 80
    font, wrapped, stroke, box = layout_text("W" * 50, 512, 512, default_font_path())
    lines = wrapped.split("\n")
    assert len(lines) >= 3 and max(len(line) for line in lines) <= 20
    assert all(font.getlength(line) + 2 * stroke <= 512 for line in lines)
    assert box[2] - box[0] <= 512


def test_text_is_seeded(photo):
    attack = get_attack("text_length_30")
    a = arr(attack.apply(photo, 0, "img"))
    assert np.array_equal(a, arr(attack.apply(photo, 0, "img")))
    assert not np.array_equal(a, arr(attack.apply(photo, 0, "other")))


def test_text_font_option(photo):
    import matplotlib

    mono = f"{matplotlib.get_data_path()}/fonts/ttf/DejaVuSansMono-Bold.ttf"
    a = get_attack("text", 20, font=mono).apply(photo, 0, "x")
    b = get_attack("text", 20).apply(photo, 0, "x")
    assert not np.array_equal(arr(a), arr(b))
    with pytest.raises(ValueError, match="cannot load font"):
        get_attack("text", 20, font="/no/such/font.ttf")(photo)


# --- outside the default set ----------------------------------------------------------------


def test_flips_equal_imageops(photo):
    np.testing.assert_array_equal(arr(get_attack("horizontal_flip")(photo)),
                                  arr(ImageOps.mirror(photo)))
    np.testing.assert_array_equal(arr(get_attack("vertical_flip")(photo)),
                                  arr(ImageOps.flip(photo)))


def test_padding_adds_a_coloured_border(photo):
    out = get_attack("padding", 0.1, "white")(photo)
    assert out.size == (451 + 2 * 45, 300 + 2 * 30)
    pixels = arr(out)
    assert (pixels[:30] == 255).all() and (pixels[:, :45] == 255).all()
    np.testing.assert_array_equal(pixels[30:330, 45:496], arr(photo))
    assert get_attack("padding", 0.1).id == "padding_0.1_black"
    with pytest.raises(ValueError, match="'color' must be a CSS colour name"):
        get_attack("padding", 0.1, "notacolour")  # refused when made, not on the first image


def test_aspect_ratio_and_grayscale(photo):
    assert get_attack("aspect_ratio", 1.5)(photo).size == (676, 300)
    gray = arr(get_attack("grayscale")(photo))
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()


def test_overlay_pastes_the_image_into_another_photo(photo):
    attack = get_attack("overlay", 0.5)
    out = attack.apply(photo, 0, "x")
    assert out.size == (512, 512)  # the default background, scikit-image's cameraman
    small = np.asarray(photo.resize((256, round(300 * 256 / 451)), Image.Resampling.BICUBIC))
    found = cv2.matchTemplate(np.asarray(out), small, cv2.TM_SQDIFF_NORMED).min()
    assert found < 1e-3
    assert np.array_equal(arr(out), arr(attack.apply(photo, 0, "x")))


def test_composition_applies_in_order(photo):
    chained = get_attack("cropping_20_and_rescaling+jpg_compression_50")
    assert chained.id == "cropping_20_and_rescaling+jpg_compression_50"
    expected = get_attack("jpg_compression", 50)(get_attack("cropping", 20)(photo))
    np.testing.assert_array_equal(arr(chained(photo)), arr(expected))
    assert compose("horizontal_flip", get_attack("grayscale")).id == "horizontal_flip+grayscale"


# --- choosing attacks from flags and files --------------------------------------------------


def test_specs_from_flags():
    ids = [a.id for a in parse_attack_specs(
        ["jpg_compression:10,50", "rotation", "horizontal_flip", "jpg_compression_10",
         "padding:fraction=0.1,0.2;color=white", "scaling_0.4+text_length_10"])]
    assert ids == ["jpg_compression_10", "jpg_compression_50",
                   *[f"rotation_{a}_and_rescaling" for a in (5, 10, 20, 40, 60)],
                   "horizontal_flip", "padding_0.1_white", "padding_0.2_white",
                   "scaling_0.4+text_length_10"]
    assert len(parse_attack_specs("default")) == 58
    with pytest.raises(ValueError, match="unknown attack family 'blur'"):
        parse_attack_specs(["blur:3"])


@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
def test_specs_from_config_files(tmp_path, suffix):
    path = tmp_path / f"attacks{suffix}"
    if suffix == ".toml":
        path.write_text('seed = 7\nattacks = ["median_filter", {gaussian_noise = [0.03]}, '
                        '{padding = {fraction = [0.05], color = ["red"]}}]\n')
    else:
        path.write_text("seed: 7\nattacks:\n  - median_filter\n  - gaussian_noise: [0.03]\n"
                        "  - padding: {fraction: [0.05], color: [red]}\n")
    config = load_attack_config(path)
    assert config["seed"] == 7
    ids = [a.id for a in parse_attack_specs(config["attacks"])]
    assert ids == ["median_filter_3x3", "median_filter_5x5", "median_filter_7x7",
                   "gaussian_noise_0.03", "padding_0.05_red"]


def test_config_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("attackz: [default]\n")
    with pytest.raises(ValueError, match="'attacks'"):
        load_attack_config(bad)
    with pytest.raises(ValueError, match=".toml, .yaml or .yml"):
        (tmp_path / "a.json").write_text("{}")
        load_attack_config(tmp_path / "a.json")


def test_registry_lists_every_family():
    names = set(families())
    assert {"gaussian_noise", "text", "overlay", "padding", "grayscale"} <= names
    assert math.isclose(len([f for f in families().values() if f.in_default_set]), 15)
