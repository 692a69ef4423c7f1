"""Classical perceptual hashes on batches of images, bit-identical to ``imagehash``.

By default; ``decode='draft'`` (a parameter of every hash here but ``hist_hash``, handled by
`hashing.methods.describing`) trades that for speed on large JPEGs: each hash registers the
short side its draft decode keeps (`draft_side`).

Each image is converted to gray once; each resized gray size is computed once per image and
shared by every algorithm that needs it (``GrayBatch``). The arithmetic then runs on stacks of
images at once.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pywt
import scipy.fftpack
from PIL import Image, ImageFilter
from scipy import ndimage

from hashing.methods.gray import _LANCZOS, GrayBatch
from hashing.methods.haar import haar_dec2, haar_rec2
from hashing.methods.registry import register_algorithm
from helpers.descriptors import BinaryCodes, MultiCodes

#: Largest ``hash_size`` accepted (64 x 64 = 4096 bits); bigger ones only cost memory.
MAX_HASH_SIZE = 64
#: Largest side of an image an algorithm resizes to.
MAX_WORK_SIDE = 4096


#: Pixels of a draft decode per cell of a hash's grid (a side): a JPEG decoded for
#: ``decode='draft'`` keeps a short side of at least ``DRAFT_CELL_PIXELS * hash_size`` and at
#: least the side the hash resizes to (`draft_side`). Measured on BSDS500 (docs/performance.md):
#: 16 moved no hash's AUC by more than 0.005 against the exact decode.
DRAFT_CELL_PIXELS = 16


def draft_side(cells: int, work_side: int = 0) -> int:
    """The short side a draft decode keeps for a hash of ``cells`` x ``cells`` cells that
    resizes to ``work_side`` pixels: ``max(DRAFT_CELL_PIXELS * cells, work_side)``."""
    return max(DRAFT_CELL_PIXELS * cells, work_side)


def _check_size(hash_size: int) -> None:
    if not 2 <= hash_size <= MAX_HASH_SIZE:
        raise ValueError(f"hash_size must be in [2, {MAX_HASH_SIZE}], got {hash_size}")


def _check_side(name: str, value: int, side: int) -> None:
    if not 1 <= side <= MAX_WORK_SIDE:
        raise ValueError(f"{name} gives a {side} px working image; it must be in "
                         f"[1, {MAX_WORK_SIDE}] px")


@register_algorithm("ahash", draft=lambda p: draft_side(p["hash_size"]))
def ahash(batch: GrayBatch, hash_size: int = 8) -> BinaryCodes:
    """Average hash (Krawetz, "Looks Like It", 2011): gray pixels above their mean."""
    _check_size(hash_size)
    pixels = batch.resized(hash_size, hash_size)
    mean = pixels.reshape(len(pixels), -1).mean(axis=1)
    return BinaryCodes.from_bits(pixels > mean[:, None, None])


@register_algorithm("dhash", draft=lambda p: draft_side(p["hash_size"]))
def dhash(batch: GrayBatch, hash_size: int = 8) -> BinaryCodes:
    """Difference hash (Krawetz, "Kind of Like That", 2013): is each pixel brighter than its
    left neighbour, on a (hash_size + 1) x hash_size image."""
    _check_size(hash_size)
    pixels = batch.resized(hash_size + 1, hash_size)
    return BinaryCodes.from_bits(pixels[:, :, 1:] > pixels[:, :, :-1])


@register_algorithm("phash", draft=lambda p: draft_side(
    p["hash_size"], p["hash_size"] * p["highfreq_factor"]))
def phash(batch: GrayBatch, hash_size: int = 8, highfreq_factor: int = 4) -> BinaryCodes:
    """Perceptual hash (Krawetz, "Looks Like It", 2011): low frequencies of the 2-D DCT of a
    (hash_size * highfreq_factor)^2 image, above their median."""
    _check_size(hash_size)
    size = hash_size * highfreq_factor
    _check_side(f"phash: hash_size {hash_size} x highfreq_factor {highfreq_factor}", size,
                size)
    if highfreq_factor < 1:
        raise ValueError(f"phash: highfreq_factor must be >= 1, got {highfreq_factor}")
    pixels = batch.resized(size, size)
    dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=1), axis=2)
    low = dct[:, :hash_size, :hash_size]
    median = np.median(low.reshape(len(low), -1), axis=1)
    return BinaryCodes.from_bits(low > median[:, None, None])


@register_algorithm("whash", draft=lambda p: draft_side(p["hash_size"],
                                                       p["image_scale"] or 0))
def whash(batch: GrayBatch, hash_size: int = 8, image_scale: int | None = None,
          mode: str = "haar", remove_max_haar_ll: bool = True) -> BinaryCodes:
    """Wavelet hash, as imagehash computes it: the image resized to ``image_scale`` square
    (default: the largest power of two that fits its short side, at least ``hash_size``), its
    lowest Haar LL band removed (``remove_max_haar_ll``), then the LL band of the ``mode``
    wavelet (``haar`` or Daubechies ``db4``) at the level that leaves ``hash_size`` x
    ``hash_size`` for Haar, above its median.

    Haar runs on stacks of 8 images with the same floating-point operations as PyWavelets
    (tested equal): 0.17 s instead of 0.75 s for 200 images at 256 px here. ``db4`` goes
    through PyWavelets image by image; its LL band is larger than ``hash_size`` squared
    (imagehash keeps all of it: 14 x 14 bits for ``hash_size`` 8 at 256 px) and depends on
    the scale, so ``db4`` needs a fixed ``image_scale`` (codes of one method have one length).
    """
    _check_size(hash_size)
    if hash_size & (hash_size - 1):
        raise ValueError(f"whash: hash_size must be a power of 2, got {hash_size}")
    if mode not in ("haar", "db4"):
        raise ValueError(f"whash: mode must be 'haar' or 'db4', got {mode!r}")
    if image_scale is not None and not isinstance(image_scale, int):
        raise ValueError(f"whash: image_scale must be an integer, got {image_scale!r}")
    if image_scale is not None and (image_scale & (image_scale - 1) or
                                    not hash_size <= image_scale <= MAX_WORK_SIDE):
        raise ValueError(f"whash: image_scale must be a power of 2 in [hash_size, "
                         f"{MAX_WORK_SIDE}], got {image_scale}")
    if mode == "db4" and image_scale is None:
        raise ValueError("whash: mode='db4' needs image_scale (its code length depends on the "
                         "scale, so images of other sizes would get codes of other lengths)")
    level = int(np.log2(hash_size))
    scales = [image_scale or max(2 ** int(np.log2(min(g.size))), hash_size)
              for g in batch.gray]
    codes: list[np.ndarray] = [np.empty(0)] * len(batch)
    for scale in sorted(set(scales)):
        index = [i for i, s in enumerate(scales) if s == scale]
        stack = batch.resized(scale, scale, index)
        low = np.concatenate([
            _wavelet_low_band(stack[k:k + _HAAR_CHUNK] / 255.0, level, mode, remove_max_haar_ll)
            for k in range(0, len(stack), _HAAR_CHUNK)])
        median = np.median(low.reshape(len(low), -1), axis=1)
        for row, i in enumerate(index):
            codes[i] = low[row] > median[row]
    return BinaryCodes.from_bits(np.stack(codes))


# Images per Haar call: small stacks stay in cache (4x faster than 200 at once).
_HAAR_CHUNK = 8


def _wavelet_low_band(pixels: np.ndarray, level: int, mode: str, remove: bool) -> np.ndarray:
    """imagehash's whash steps: remove the top Haar LL band (``remove``), then the LL band
    of ``mode`` ``log2(side) - level`` levels down."""
    top = int(np.log2(pixels.shape[-1]))
    if remove:
        details = []
        for _ in range(top):
            pixels, detail = haar_dec2(pixels)
            details.append(detail)
        pixels = pixels * 0
        for detail in reversed(details):
            pixels = haar_rec2(pixels, detail)
    if mode == "db4":
        return np.stack([pywt.wavedec2(p, "db4", level=top - level)[0] for p in pixels])
    for _ in range(top - level):
        pixels = haar_dec2(pixels, details=False)[0]
    return pixels


# colorhash bins hue with np.histogram over linspace(0, 255, 7); the same bins as a lookup.
_HUE_EDGES = np.linspace(0, 255, 7)
_HUE_BIN = np.minimum(np.searchsorted(_HUE_EDGES, np.arange(256), side="right") - 1, 5)
_COLOUR_LUT: np.ndarray | None = None
_COLOUR_LUT_LOCK = threading.Lock()
# Codes of the colour class table: 0 low saturation, 1-6 faint colour by hue bin, 7-12 bright
# colour by hue bin, 13 saturation exactly 170 (imagehash counts it in neither); 14 marks
# dark pixels (gray value < 32) after the lookup.
_LOW_SAT, _NEITHER, _DARK = 0, 13, 14


def _colour_classes() -> np.ndarray:
    """colorhash's class of each of the 2**24 RGB colours, from Pillow's own HSV conversion of
    an image holding every colour once (so it is exactly Pillow's; built once, 16 MiB)."""
    global _COLOUR_LUT
    with _COLOUR_LUT_LOCK:
        if _COLOUR_LUT is None:
            rgb = np.arange(1 << 24, dtype=np.uint32)
            # index r | g << 8 | b << 16: a little-endian RGBX pixel read as uint32, masked
            channels = np.stack([rgb & 255, (rgb >> 8) & 255, (rgb >> 16) & 255], axis=-1)
            image = Image.fromarray(channels.astype(np.uint8).reshape(4096, 4096, 3), "RGB")
            hsv = np.asarray(image.convert("HSV")).reshape(-1, 3)
            del channels, image
            hue, sat = hsv[:, 0], hsv[:, 1]
            classes = np.full(1 << 24, _NEITHER, dtype=np.uint8)
            classes[sat < 256 // 3] = _LOW_SAT
            faint = (sat >= 256 // 3) & (sat < 256 * 2 // 3)
            bright = sat > 256 * 2 // 3
            classes[faint] = 1 + _HUE_BIN[hue[faint]]
            classes[bright] = 7 + _HUE_BIN[hue[bright]]
            _COLOUR_LUT = classes
    return _COLOUR_LUT


# colorhash counts pixels in classes, on no grid: its fractions move wherever detail at the
# pixel scale is averaged, so its draft side is measured, not derived (study protocol, AUC
# change against the exact decode): BSDS500 photos at 1/2 scale -0.019; 12 MP copies of them at
# 1/8 -0.0075, at 1/4 -0.0020. 400 px is the smallest side that keeps a 12 MP photo at 1/4.
COLORHASH_DRAFT_SIDE = 400


@register_algorithm("colorhash", draft=lambda p: COLORHASH_DRAFT_SIDE)
def colorhash(batch: GrayBatch, binbits: int = 3) -> BinaryCodes:
    """Colour hash (imagehash): the fractions of black, gray, and faint and bright colours in
    six hue bins each (14 fractions), each quantised to ``binbits`` bits as imagehash does.

    Each pixel's class comes from one lookup in a table of all 2**24 colours built from
    Pillow's HSV conversion (see `_colour_classes`), instead of converting every image.
    """
    if not 1 <= binbits <= 16:
        raise ValueError(f"colorhash: binbits must be in [1, 16], got {binbits}")
    top = 2 ** binbits
    lut = _colour_classes()
    values = np.empty((len(batch), 14), dtype=np.int64)
    for i, (image, intensity) in enumerate(zip(batch.images, batch.arrays, strict=True)):
        rgbx = np.asarray(image.convert("RGBX")).view("<u4")[..., 0]
        classes = lut[rgbx & 0xFFFFFF]
        dark = intensity < 256 // 8
        classes[dark] = _DARK
        counts = np.bincount(classes.ravel(), minlength=_DARK + 1)
        n = intensity.size
        colours = n - int(counts[_DARK]) - int(counts[_LOW_SAT])
        c = max(1, colours)
        values[i, 0] = min(top - 1, int(int(counts[_DARK]) / n * top))
        values[i, 1] = min(top - 1, int(int(counts[_LOW_SAT]) / n * top))
        values[i, 2:] = np.minimum(top - 1, (counts[1:13] * top * 1.0 / c).astype(np.int64))
    # imagehash's own bit layout: bit i of v is (v // 2**(b-i-1)) % 2**(b-i) > 0
    shifts = np.array([2 ** (binbits - i - 1) for i in range(binbits)])
    mods = np.array([2 ** (binbits - i) for i in range(binbits)])
    bits = (values[..., None] // shifts) % mods > 0
    return BinaryCodes.from_bits(bits)


@register_algorithm("block_mean", draft=lambda p: draft_side(
    p["hash_size"], p["hash_size"] * p["block_pixels"]))
def block_mean(batch: GrayBatch, hash_size: int = 16, block_pixels: int = 16) -> BinaryCodes:
    """Block mean value hash (Yang, Gu and Niu, "Block mean value based image perceptual
    hashing", IIH-MSP 2006, method 1): the gray image resized to ``hash_size * block_pixels``
    square, one bit per block: its mean at or above the median of the block means."""
    _check_size(hash_size)
    if block_pixels < 1:
        raise ValueError(f"block_mean: block_pixels must be >= 1, got {block_pixels}")
    side = hash_size * block_pixels
    _check_side(f"block_mean: hash_size {hash_size} x block_pixels {block_pixels}", side, side)
    pixels = batch.resized(side, side).astype(np.float64)
    means = pixels.reshape(len(pixels), hash_size, block_pixels, hash_size, block_pixels)
    means = means.mean(axis=(2, 4))
    median = np.median(means.reshape(len(means), -1), axis=1)
    return BinaryCodes.from_bits(means >= median[:, None, None])


@register_algorithm("hist_hash")
def hist_hash(batch: GrayBatch, bins: int = 12, sigma: float = 3.0,
              lam: float = 0.55) -> BinaryCodes:
    """Histogram-based hash robust to geometric deformation (Xiang, Kim and Huang, "Histogram-
    based image hashing scheme robust against geometric deformations", MM&Sec 2007).

    The gray image is smoothed by a Gaussian (``sigma``); the pixels with values in
    [(1 - lam) A, (1 + lam) A], A the mean, are counted in ``bins`` equal bins; every pair of
    bins i < j gives one bit, ``count_i >= count_j`` (the paper's ratio test), so
    ``bins * (bins - 1) / 2`` bits (66 for the study's L = 12).

    No draft decode (``decode='draft'``): the blur is ``sigma`` pixels of the decoded image,
    so a smaller decode would be another method, not the same one read faster.
    """
    if not 2 <= bins <= 256:
        raise ValueError(f"hist_hash: bins must be in [2, 256], got {bins}")
    if sigma <= 0 or not 0 < lam < 1:
        raise ValueError(f"hist_hash: need sigma > 0 and 0 < lam < 1, got {sigma}, {lam}")
    first, second = np.triu_indices(bins, k=1)
    bits = np.empty((len(batch), len(first)), dtype=bool)
    for i, gray in enumerate(batch.arrays):
        smooth = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), sigma,
                                  borderType=cv2.BORDER_REFLECT)
        mean = float(smooth.mean())
        counts, _ = np.histogram(smooth, bins=bins, range=((1 - lam) * mean, (1 + lam) * mean))
        bits[i] = counts[first] >= counts[second]
    return BinaryCodes.from_bits(bits)


#: Hashes a crop-resistant hash can compute on each segment (imagehash's ``hash_func``).
SEGMENT_HASHES = ("dhash", "ahash", "phash", "whash", "colorhash")


@register_algorithm("crop_resistant", draft=lambda p: draft_side(
    p["hash_size"], p["segmentation_image_size"]))
def crop_resistant(
    batch: GrayBatch,
    hash_size: int = 8,
    segment_threshold: int = 128,
    min_segment_size: int = 500,
    segmentation_image_size: int = 300,
    limit_segments: int | None = None,
    cutoff: int = 1,
    hash_func: str = "dhash",
) -> MultiCodes:
    """Crop-resistant hash (Jain, Deane and Prasad, "Efficient cropping-resistant robust image
    hashing", ARES 2014), as imagehash computes it: the gray image at
    ``segmentation_image_size`` square, blurred, split into bright and dark 4-connected
    segments; one ``hash_func`` hash (dHash by default; ahash, phash, whash or colorhash,
    with ``hash_size`` where it has one) of the bounding box of every segment larger than
    ``min_segment_size`` pixels, cut from the original image.

    Segments come from ``scipy.ndimage.label`` instead of imagehash's pixel-by-pixel flood
    fill, with imagehash's order and its stopping rule, so the segment hashes are the same.
    ``cutoff`` is the matching rule of the distance (see `MultiCodes`: a query with fewer
    segments than ``cutoff`` matches nothing, as in imagehash).
    """
    _check_size(hash_size)
    if cutoff < 1:
        raise ValueError(f"crop_resistant: cutoff must be >= 1, got {cutoff}")
    if hash_func not in SEGMENT_HASHES:
        raise ValueError(f"crop_resistant: hash_func must be one of {', '.join(SEGMENT_HASHES)}, "
                         f"got {hash_func!r}")
    size = segmentation_image_size
    _check_side("crop_resistant: segmentation_image_size", size, size)
    small = batch.resized(size, size)
    codes = []
    for i, gray in enumerate(batch.gray):
        blurred = Image.fromarray(small[i]).filter(ImageFilter.GaussianBlur())
        # OpenCV's 3x3 median (edges replicated) equals Pillow's MedianFilter(), 20x faster
        pixels = cv2.medianBlur(np.asarray(blurred), 3)
        boxes = _segment_boxes(pixels > segment_threshold, min_segment_size, limit_segments)
        width, height = gray.size
        boxes = [(left * (width / size), top * (height / size),
                  right * (width / size), bottom * (height / size))
                 for top, left, bottom, right in boxes]
        codes.append(_segment_codes(batch.images[i], gray, boxes, hash_func, hash_size))
    return MultiCodes.from_bits(codes, cutoff=cutoff)


def _segment_codes(image: Image.Image, gray: Image.Image, boxes: list, hash_func: str,
                   hash_size: int) -> np.ndarray:
    """Boolean (segments, bits): ``hash_func`` of each box of the image."""
    if hash_func == "dhash":  # the default, straight from the gray image
        crops = []
        for box in boxes:
            px = np.asarray(gray.crop(box).resize((hash_size + 1, hash_size), _LANCZOS))
            crops.append((px[:, 1:] > px[:, :-1]).ravel())
        return np.stack(crops)
    function = _SEGMENT_FUNCTIONS[hash_func]
    params = {} if hash_func == "colorhash" else {"hash_size": hash_size}
    segments = GrayBatch([image.crop(box) for box in boxes])
    found = function(segments, **params)
    return np.unpackbits(found.packed, axis=1, count=found.n_bits).astype(bool)


_FOUR_CONNECTED = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]])


def _segment_boxes(bright: np.ndarray, min_size: int,
                   limit: int | None) -> list[tuple[int, int, int, int]]:
    """Bounding boxes (top, left, bottom + 1, right + 1) of imagehash's segments.

    imagehash floods bright regions, then dark ones, each in raster order of its first pixel
    (the order ``ndimage.label`` numbers them). Its dark loop stops once its count of visited
    positions (the 2 (h + w) border cells, plus every segmented pixel but the seed of a
    one-pixel region) reaches h * w, which can leave the last dark regions out; that is kept.
    """
    h, w = bright.shape
    regions = []  # (size, slices) in imagehash's order
    visited = 2 * (h + w)
    for mask, is_dark in ((bright, False), (~bright, True)):
        labels, count = ndimage.label(mask, structure=_FOUR_CONNECTED)
        sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
        for size, slices in zip(sizes, ndimage.find_objects(labels), strict=True):
            if is_dark and visited >= h * w:
                break
            visited += int(size) - (size == 1)
            if size > min_size:
                regions.append((int(size), slices))
    if not regions:
        return [(0, 0, h, w)]
    if limit:
        regions = sorted(regions, key=lambda r: r[0], reverse=True)[:limit]
    return [(s[0].start, s[1].start, s[0].stop, s[1].stop) for _, s in regions]


_SEGMENT_FUNCTIONS = {"ahash": ahash, "phash": phash, "whash": whash, "colorhash": colorhash}
