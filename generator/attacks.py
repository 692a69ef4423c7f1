"""The attack functions: one function per family, registered in the study's order.

Every function takes an RGB PIL image and returns a new RGB PIL image. Random families take a
keyword-only ``rng`` (a NumPy generator) so that the caller decides the seed.
The default parameter lists and ids reproduce the original study (Vallez et al., "Unsupervised
improvement of image similarity", 2022, ``generate_attacks.py``).
"""

from __future__ import annotations

import functools
import io
import math
from pathlib import Path

import cv2
import numpy as np
import skimage
from PIL import Image, ImageColor, ImageEnhance, ImageOps

from generator.registry import register_attack
from generator.text import draw_meme_text
from helpers import load_image

_BICUBIC = Image.Resampling.BICUBIC
# Every numeric parameter is bounded: the id prints it, so 1e16 would print as "1e+16" and
# "+" joins compositions; and sizes scale memory.
_VARIANCE = (lambda v: 0 < v <= 1, "in (0, 1]")
_FRACTION = (lambda v: 0 <= v <= 1, "in [0, 1]")
_ODD_KERNEL = (lambda v: 1 <= v <= 99 and v % 2 == 1, "an odd integer in [1, 99]")
# Size factors are bounded: a ratio of 1e9 would ask for an image of 1e20 pixels.
_SIZE_FACTOR = (lambda v: 0 < v <= 10, "in (0, 10]")


def _array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB") if image.mode != "RGB" else image)


def _to_uint8(values: np.ndarray) -> Image.Image:
    """Floats on [0, 1] to an 8-bit RGB image (clipped, rounded)."""
    np.clip(values, 0.0, 1.0, out=values)
    values *= 255.0
    np.rint(values, out=values)
    return Image.fromarray(values.astype(np.uint8), mode="RGB")


# --- noise --------------------------------------------------------------------------------------


@register_attack("gaussian_noise_{variance}", default_set=(0.01, 0.02, 0.05),
                 checks={"variance": _VARIANCE})
def gaussian_noise(image: Image.Image, variance: float, *, rng: np.random.Generator) -> Image.Image:
    """Additive Gaussian noise of the given variance on pixel values scaled to [0, 1]."""
    x = _array(image).astype(np.float32) * np.float32(1 / 255)
    noise = rng.standard_normal(x.shape, dtype=np.float32)
    noise *= np.float32(math.sqrt(variance))
    x += noise
    return _to_uint8(x)


@register_attack("salt_pepper_noise_{amount}", default_set=(0.05, 0.1, 0.15),
                 checks={"amount": _FRACTION})
def salt_pepper_noise(
    image: Image.Image, amount: float, *, rng: np.random.Generator
) -> Image.Image:
    """Salt-and-pepper noise: each pixel, with probability ``amount``, turns white or black
    (half each)."""
    x = _array(image).copy()
    draws = rng.random(x.shape[:2], dtype=np.float32)
    x[draws < amount / 2] = 0
    x[(draws >= amount / 2) & (draws < amount)] = 255
    return Image.fromarray(x, mode="RGB")


@register_attack("speckle_noise_{variance}", default_set=(0.01, 0.02, 0.05),
                 checks={"variance": _VARIANCE})
def speckle_noise(image: Image.Image, variance: float, *, rng: np.random.Generator) -> Image.Image:
    """Multiplicative (speckle) noise ``x + x * n`` with ``n ~ N(0, variance)``, x on [0, 1]."""
    x = _array(image).astype(np.float32) * np.float32(1 / 255)
    noise = rng.standard_normal(x.shape, dtype=np.float32)
    noise *= np.float32(math.sqrt(variance))
    noise *= x
    x += noise
    return _to_uint8(x)


# --- filters ------------------------------------------------------------------------------------


def gaussian_sigma(size: int) -> float:
    """Standard deviation the study used for a Gaussian kernel of side ``size``."""
    return 0.6 * ((size - 1) * 0.5 - 1) + 1


@register_attack("gaussian_filter_{size}x{size}", default_set=(3, 5, 7),
                 checks={"size": _ODD_KERNEL})
def gaussian_filter(image: Image.Image, size: int) -> Image.Image:
    """Gaussian blur with a ``size`` x ``size`` kernel, sigma = 0.6((size-1)/2 - 1) + 1."""
    sigma = gaussian_sigma(size)
    out = cv2.GaussianBlur(_array(image), (size, size), sigmaX=sigma, sigmaY=sigma)
    return Image.fromarray(out, mode="RGB")


@register_attack("median_filter_{size}x{size}", default_set=(3, 5, 7),
                 checks={"size": _ODD_KERNEL})
def median_filter(image: Image.Image, size: int) -> Image.Image:
    """Median filter with a ``size`` x ``size`` window (per channel)."""
    out = cv2.medianBlur(np.ascontiguousarray(_array(image)), size)
    return Image.fromarray(out, mode="RGB")


# --- compression and geometry -------------------------------------------------------------------


@register_attack("jpg_compression_{quality}", default_set=(10, 50, 90),
                 checks={"quality": (lambda v: 1 <= v <= 100, "in [1, 100]")})
def jpg_compression(image: Image.Image, quality: int) -> Image.Image:
    """JPEG compression at the given quality (Pillow's encoder, 4:2:0 subsampling)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as compressed:
        return compressed.convert("RGB")


@register_attack("scaling_{ratio}", default_set=(0.4, 0.8, 1.2, 1.6),
                 checks={"ratio": _SIZE_FACTOR})
def scaling(image: Image.Image, ratio: float) -> Image.Image:
    """Bicubic resize of both sides by ``ratio`` (the size changes)."""
    width, height = image.size
    size = (max(1, round(ratio * width)), max(1, round(ratio * height)))
    return image.resize(size, _BICUBIC)


@register_attack("cropping_{percentage}_and_rescaling", default_set=(5, 10, 20, 40, 60),
                 checks={"percentage": (lambda v: 0 <= v < 100, "in [0, 100)")})
def cropping(image: Image.Image, percentage: float) -> Image.Image:
    """Central crop removing ``percentage`` % of each side's length, resized back (bicubic)."""
    width, height = image.size
    keep = 1 - percentage / 100
    new_w, new_h = max(1, round(width * keep)), max(1, round(height * keep))
    left, top = (width - new_w) // 2, (height - new_h) // 2
    return image.resize((width, height), _BICUBIC, box=(left, top, left + new_w, top + new_h))


@register_attack("rotation_{angle}_and_rescaling", default_set=(5, 10, 20, 40, 60),
                 checks={"angle": (lambda v: -360 <= v <= 360, "in [-360, 360]")})
def rotation(image: Image.Image, angle: float) -> Image.Image:
    """Rotation by ``angle`` degrees counter-clockwise, canvas expanded (black corners), resized
    back to the original size (bicubic)."""
    array = _array(image)
    height, width = array.shape[:2]
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), angle, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    # Expanded canvas; the tolerance keeps 90-degree multiples from gaining a pixel.
    new_w = math.ceil(width * cos + height * sin - 1e-6)
    new_h = math.ceil(width * sin + height * cos - 1e-6)
    matrix[0, 2] += (new_w - width) / 2
    matrix[1, 2] += (new_h - height) / 2
    # OpenCV's warp is several times faster than Pillow's rotate; the antialiased downscale
    # back to the original size stays with Pillow.
    rotated = cv2.warpAffine(array, matrix, (new_w, new_h), flags=cv2.INTER_CUBIC,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return Image.fromarray(rotated, mode="RGB").resize(image.size, _BICUBIC)


@register_attack("shearing_{angle}", default_set=(1, 2, 5, 10, 20),
                 checks={"angle": (lambda v: -90 < v < 90, "in (-90, 90)")})
def shearing(image: Image.Image, angle: float) -> Image.Image:
    """Shear by ``angle`` degrees along both axes about the centre, size kept (bicubic, black
    outside).

    The forward map is ``[[1, t], [t, 1 + t^2]]`` with ``t = tan(angle)``: torchvision's
    ``affine(shear=(-angle, -angle))``, as the study used.
    """
    t = math.tan(math.radians(angle))
    array = _array(image)
    height, width = array.shape[:2]
    # Pixel centres: the image centre is at ((w - 1) / 2, (h - 1) / 2).
    cx, cy = (width - 1) / 2, (height - 1) / 2
    forward = np.array([[1.0, t], [t, 1.0 + t * t]])
    offset = np.array([cx, cy]) - forward @ np.array([cx, cy])
    matrix = np.hstack([forward, offset[:, None]])
    out = cv2.warpAffine(array, matrix, (width, height), flags=cv2.INTER_CUBIC,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return Image.fromarray(out, mode="RGB")


# --- enhancements -------------------------------------------------------------------------------

_FACTORS = (0.5, 0.66, 1.5, 2)
_FACTOR_CHECK = {"factor": (lambda v: 0 <= v <= 100, "in [0, 100]")}


@register_attack("contrast_enhancement_{factor}", default_set=_FACTORS, checks=_FACTOR_CHECK)
def contrast_enhancement(image: Image.Image, factor: float) -> Image.Image:
    """Contrast scaled by ``factor`` (Pillow ``ImageEnhance.Contrast``; 1 leaves it)."""
    return ImageEnhance.Contrast(image).enhance(factor)


@register_attack("color_enhancement_{factor}", default_set=_FACTORS, checks=_FACTOR_CHECK)
def color_enhancement(image: Image.Image, factor: float) -> Image.Image:
    """Saturation scaled by ``factor`` (Pillow ``ImageEnhance.Color``)."""
    return ImageEnhance.Color(image).enhance(factor)


@register_attack("brightness_enhancement_{factor}", default_set=_FACTORS, checks=_FACTOR_CHECK)
def brightness_enhancement(image: Image.Image, factor: float) -> Image.Image:
    """Brightness scaled by ``factor`` (Pillow ``ImageEnhance.Brightness``)."""
    return ImageEnhance.Brightness(image).enhance(factor)


@register_attack("sharpness_enhancement_{factor}", default_set=_FACTORS, checks=_FACTOR_CHECK)
def sharpness_enhancement(image: Image.Image, factor: float) -> Image.Image:
    """Sharpness scaled by ``factor`` (Pillow ``ImageEnhance.Sharpness``)."""
    return ImageEnhance.Sharpness(image).enhance(factor)


# --- text ---------------------------------------------------------------------------------------


@register_attack("text_length_{length}", default_set=(10, 20, 30, 40, 50), name="text",
                 checks={"length": (lambda v: 1 <= v <= 1000, "in [1, 1000]")})
def text(
    image: Image.Image, length: int, *, rng: np.random.Generator, font: str | None = None
) -> Image.Image:
    """A random alphanumeric string of ``length`` characters in meme style at a random place.

    White fill, black outline, Impact when installed (else DejaVu Sans Bold from matplotlib;
    ``font`` overrides), about 40 px high at 512 px wide, wrapped to fit.
    """
    return draw_meme_text(image, length, rng, font)


# --- outside the default set --------------------------------------------------------------------


@register_attack("horizontal_flip")
def horizontal_flip(image: Image.Image) -> Image.Image:
    """Mirror left-right."""
    return ImageOps.mirror(image)


@register_attack("vertical_flip")
def vertical_flip(image: Image.Image) -> Image.Image:
    """Flip top-bottom."""
    return ImageOps.flip(image)


def _is_colour(name: str) -> bool:
    try:
        ImageColor.getrgb(name)
    except ValueError:
        return False
    return True


@register_attack("padding_{fraction}_{color}",
                 checks={"fraction": (lambda v: 0 < v <= 1, "in (0, 1]"),
                         "color": (_is_colour, "a CSS colour name or #rrggbb")})
def padding(image: Image.Image, fraction: float, color: str = "black") -> Image.Image:
    """A border on every side, ``fraction`` of the image's width (left, right) and height (top,
    bottom) thick, in ``color`` (a CSS colour name or ``#rrggbb``); the size grows."""
    fill = ImageColor.getrgb(color)
    width, height = image.size
    border = (round(fraction * width), round(fraction * height))
    return ImageOps.expand(image, border=border * 2, fill=fill)


@register_attack("aspect_ratio_{ratio}", checks={"ratio": _SIZE_FACTOR})
def aspect_ratio(image: Image.Image, ratio: float) -> Image.Image:
    """Stretch the width by ``ratio``, height kept (bicubic)."""
    width, height = image.size
    return image.resize((max(1, round(width * ratio)), height), _BICUBIC)


@register_attack("grayscale")
def grayscale(image: Image.Image) -> Image.Image:
    """Gray levels (ITU-R 601-2 luma), returned as RGB."""
    return image.convert("L").convert("RGB")


def default_background() -> str:
    """The cameraman photo from scikit-image: unrelated to the colour photos of ``sample``."""
    return str(Path(skimage.__file__).parent / "data" / "camera.png")


@functools.lru_cache(maxsize=8)
def _background(path: str) -> Image.Image:
    return load_image(path)  # decoded once per process, copied for each use


@register_attack("overlay_{scale}", checks={"scale": (lambda v: 0 < v <= 1, "in (0, 1]")})
def overlay(
    image: Image.Image,
    scale: float,
    *,
    rng: np.random.Generator,
    background: str | None = None,
) -> Image.Image:
    """The image shrunk to ``scale`` of the background's width (aspect kept, fitted inside),
    pasted at a random place onto an unrelated photo (DISC21's "overlay onto image").

    The result has the background's size. ``background`` is an image file; scikit-image's
    cameraman by default.
    """
    canvas = _background(background or default_background()).copy()
    bw, bh = canvas.size
    width, height = image.size
    factor = min(scale * bw / width, bh / height)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    pasted = image.resize(size, _BICUBIC)
    x = int(rng.integers(0, bw - size[0] + 1))
    y = int(rng.integers(0, bh - size[1] + 1))
    canvas.paste(pasted, (x, y))
    return canvas
