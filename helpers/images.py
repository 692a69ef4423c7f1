"""Robust image loading: every odd but valid image becomes RGB, every bad one a clear error."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, JpegImagePlugin, UnidentifiedImageError

#: Default pixel limit of :func:`load_image` (width x height), above which an image is refused.
#: 100 megapixels: far above any photo dataset we use, far below what exhausts memory.
DEFAULT_MAX_PIXELS = 100_000_000

#: Modes whose samples exceed 8 bits; they are rescaled to 0..255 rather than clipped.
WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


class ImageLoadError(Exception):
    """An image file could not be turned into an RGB image.

    Attributes
    ----------
    path : Path
        The file.
    reason : str
        What is wrong with it.
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keep both fields when sent between processes
        return (type(self), (self.path, self.reason))


def _wide_to_8bit(image: Image.Image) -> Image.Image:
    """Rescale a 16/32-bit or float gray image to 8 bits, keeping the relative levels."""
    array = np.asarray(image, dtype=np.float64)
    if image.mode == "F":  # a [0, 1] image, an 8-bit one in floats, or a 16-bit one
        top = array.max(initial=0.0)
        peak = 1.0 if top <= 1.0 else 255.0 if top <= 255.0 else 65535.0
    else:
        peak = 65535.0 if array.max(initial=0) > 255 or image.mode.startswith("I;16") else 255.0
    array = np.clip(np.rint(array * (255.0 / peak)), 0, 255).astype(np.uint8)
    return Image.fromarray(array, mode="L")


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert any Pillow image to RGB.

    Transparent images (RGBA, LA, palette with transparency) are composited on ``background``;
    16-bit and float images are rescaled to 8 bits; CMYK, YCbCr, palette and gray images use
    Pillow's conversions.

    Parameters
    ----------
    image : PIL.Image.Image
        Any mode.
    background : tuple of 3 int
        Colour under transparent pixels (white by default).

    Returns
    -------
    PIL.Image.Image
        Mode ``"RGB"``.
    """
    if image.mode == "RGB":
        return image
    if image.mode in WIDE_MODES:
        return _wide_to_8bit(image).convert("RGB")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return image.convert("RGB")


#: The EXIF tag of the orientation (1: as stored).
_ORIENTATION = 0x0112


#: The first bytes of every JPEG file (start of image, then a marker).
_JPEG_MAGIC = b"\xff\xd8\xff"


def is_jpeg_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a readable file that starts as a JPEG does (whatever its name
    says); False for anything else, an unreadable or missing file included."""
    try:
        with open(path, "rb") as file:
            return file.read(3) == _JPEG_MAGIC
    except OSError:
        return False


def is_draftable(image: Image.Image, draft: int | None) -> bool:
    """Whether `load_image` decodes an opened, unloaded ``image`` at a reduced scale for
    ``draft``: a JPEG whose short side is at least twice ``draft`` (a smaller one would keep
    its full size: it is decoded whole, as without ``draft``)."""
    return (draft is not None and isinstance(image, JpegImagePlugin.JpegImageFile)
            and min(image.size) >= 2 * draft)


def _decode(image: Image.Image, draft: int | None) -> Image.Image:
    """The first frame of an opened image, decoded (at a draft scale for a JPEG when
    ``draft`` is set), EXIF orientation applied."""
    image.seek(0)  # (an MPO's seek resets its decoder: the draft comes after)
    if is_draftable(image, draft):
        image.draft("RGB", (draft, draft))
    image.load()
    if image.getexif().get(_ORIENTATION, 1) != 1:  # else no copy is needed
        image = ImageOps.exif_transpose(image)
    return image


def load_image(
    path: str | os.PathLike,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    draft: int | None = None,
) -> Image.Image:
    """Load an image file as an RGB PIL image, EXIF orientation applied.

    Multi-frame files (GIF, APNG, TIFF) give their first frame.

    Parameters
    ----------
    path : str or PathLike
        Image file.
    max_pixels : int or None
        Refuse images with more pixels than this (checked from the header, before decoding).
        ``None`` disables the check.
    draft : int, optional
        A JPEG file (MPO included) is decoded by libjpeg at 1/2, 1/4 or 1/8 scale straight
        from its DCT coefficients: the smallest of these scales whose short side is still at
        least ``draft`` pixels (Pillow's ``Image.draft("RGB", (draft, draft))``). A JPEG
        whose short side is under ``2 * draft`` is decoded whole, exactly as without
        ``draft``, and so is every other format. The pixels are not those of a full decode
        resized.

    Returns
    -------
    PIL.Image.Image
        Mode ``"RGB"``, fully decoded (the file is closed).

    Raises
    ------
    ImageLoadError
        The file is missing, empty, not an image, truncated or corrupt, or too large.
    ValueError
        ``draft`` is not a positive integer.
    """
    if draft is not None and (not isinstance(draft, int) or isinstance(draft, bool)
                              or draft < 1):
        raise ValueError(f"draft must be a positive number of pixels or None, got {draft!r}")
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageLoadError(path, "file not found") from None
    except OSError as exc:
        raise ImageLoadError(path, f"cannot read file ({exc.strerror or exc})") from exc
    if path.is_dir():
        raise ImageLoadError(path, "is a directory, not an image file")
    if size == 0:
        raise ImageLoadError(path, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Our own limit replaces Pillow's decompression-bomb warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if max_pixels is not None and width * height > max_pixels:
                    raise ImageLoadError(
                        path,
                        f"image too large: {width}x{height} = {width * height:,} pixels, "
                        f"limit is {max_pixels:,} (raise max_pixels to load it)",
                    )
                return to_rgb(_decode(image, draft))
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError(path, "not an image file (format not recognised)") from None
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(path, f"image too large ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        message = str(exc) or type(exc).__name__
        if "truncated" in message.lower():
            reason = f"truncated image data ({message})"
        else:
            reason = f"corrupt or unreadable image data ({message})"
        raise ImageLoadError(path, reason) from None
