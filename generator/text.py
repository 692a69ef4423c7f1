"""Meme-style text: white letters with a black outline in a bold condensed font."""

from __future__ import annotations

import functools
import string
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

CHARACTERS = string.ascii_uppercase + string.ascii_lowercase + string.digits

#: Where Impact usually is (Linux msttcorefonts, macOS, Windows).
IMPACT_CANDIDATES = (
    "/usr/share/fonts/truetype/msttcorefonts/Impact.ttf",
    "/usr/share/fonts/truetype/msttcorefonts/impact.ttf",
    "/usr/share/fonts/TTF/impact.ttf",
    "/usr/share/fonts/truetype/impact.ttf",
    "/Library/Fonts/Impact.ttf",
    "/System/Library/Fonts/Supplemental/Impact.ttf",
    "C:/Windows/Fonts/impact.ttf",
)

#: Characters per line in the study's memes (20 at 512 px wide).
MAX_CHARS_PER_LINE = 20


@functools.cache
def default_font_path() -> str:
    """Impact when the system has it, else DejaVu Sans Bold, which matplotlib ships."""
    for candidate in IMPACT_CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    return str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf")


@functools.lru_cache(maxsize=256)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    try:
        return ImageFont.truetype(path, size)
    except OSError as exc:
        raise ValueError(f"cannot load font {path!r} ({exc})") from None


@functools.lru_cache(maxsize=256)
def _char_widths(path: str, size: int) -> dict[str, float]:
    font = _font(path, size)
    return {c: font.getlength(c) for c in CHARACTERS}


def _wrap(text: str, widths: dict[str, float], max_width: float, max_chars: int) -> list[str]:
    lines, line, line_width = [], "", 0.0
    for char in text:
        w = widths[char]
        if line and (line_width + w > max_width or len(line) >= max_chars):
            lines.append(line)
            line, line_width = "", 0.0
        line += char
        line_width += w
    lines.append(line)
    return lines


def layout_text(
    text: str, width: int, height: int, font_path: str
) -> tuple[ImageFont.FreeTypeFont, str, int, tuple[int, int, int, int]]:
    """Font size, line breaks and outline for ``text`` so that it fits a ``width`` x ``height``
    image: about 40 px at 512 px wide, smaller where the image is too small for it.

    Returns
    -------
    font, wrapped text, stroke width, bounding box (left, top, right, bottom) drawn at (0, 0).
    """
    size = max(1, round(40 * width / 512))
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    while True:
        font = _font(font_path, size)
        stroke = max(1, round(size / 20))
        lines = _wrap(text, _char_widths(font_path, size), width - 2 * stroke - 2,
                      MAX_CHARS_PER_LINE)
        wrapped = "\n".join(lines)
        box = probe.multiline_textbbox((0, 0), wrapped, font=font, stroke_width=stroke,
                                       align="center")
        if (box[2] - box[0] <= width and box[3] - box[1] <= height) or size == 1:
            return font, wrapped, stroke, box
        size = max(1, min(size - 1, int(size * 0.85)))


def draw_meme_text(
    image: Image.Image, length: int, rng: np.random.Generator, font_path: str | None = None
) -> Image.Image:
    """Draw ``length`` random alphanumeric characters at a random place where they fit."""
    font_path = font_path or default_font_path()
    chars = np.frombuffer(CHARACTERS.encode("ascii"), dtype=np.uint8)
    text = rng.choice(chars, size=length).tobytes().decode("ascii")
    width, height = image.size
    font, wrapped, stroke, box = layout_text(text, width, height, font_path)
    text_w, text_h = box[2] - box[0], box[3] - box[1]
    x = int(rng.integers(0, max(0, width - text_w) + 1)) - box[0]
    y = int(rng.integers(0, max(0, height - text_h) + 1)) - box[1]
    out = image.copy()
    ImageDraw.Draw(out).multiline_text(
        (x, y), wrapped, font=font, fill="white", stroke_width=stroke, stroke_fill="black",
        align="center",
    )
    return out
