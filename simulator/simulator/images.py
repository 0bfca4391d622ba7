"""Placeholder pictures rendered with Pillow: a coloured background, two shapes and
the first words of the prompt.

Opaque pictures are drawn in palette mode with four colours, which keeps a
256x256 PNG near 1 KB and its rendering under a millisecond. Rendered bytes are
also cached per (size, caption, variant, format), so a repeated request costs
only a dictionary lookup. The benchmark path relies on that.
"""

from __future__ import annotations

import base64
import colorsys
import io
import zlib
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFilter, ImageFont

CAPTION_WORDS = 4
CAPTION_MAX_CHARS = 40
_CACHE_SIZE = 256
_MIN_FONT_SIZE = 8

MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_PILLOW_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}

RGB = tuple[int, int, int]
# Palette indexes of the four colours of an opaque picture.
BACKGROUND, ACCENT, TEXT, OUTLINE = 0, 1, 2, 3
WHITE: RGB = (255, 255, 255)
BLACK: RGB = (0, 0, 0)


def caption_from_prompt(prompt: str) -> str:
    """Return the first few words of the prompt, shortened to fit on a small image."""
    caption = " ".join(prompt.split()[:CAPTION_WORDS])
    if len(caption) > CAPTION_MAX_CHARS:
        caption = caption[: CAPTION_MAX_CHARS - 3].rstrip() + "..."
    return caption


@lru_cache(maxsize=_CACHE_SIZE)
def render_image(
    width: int,
    height: int,
    caption: str,
    variant: int = 0,
    image_format: str = "png",
    transparent: bool = False,
    blurred: bool = False,
) -> bytes:
    """Render and encode one picture. Each variant gets different colours.

    `transparent` leaves the background fully transparent (PNG and WebP only).
    `blurred` imitates an output that moderation blurred.
    """
    picture = _draw_picture(width, height, caption, variant, transparent)
    if blurred:
        picture = picture.convert("RGBA" if transparent else "RGB")
        picture = picture.filter(ImageFilter.GaussianBlur(max(width, height) / 40))
    return _encode(picture, image_format)


@lru_cache(maxsize=_CACHE_SIZE)
def render_image_base64(
    width: int,
    height: int,
    caption: str,
    variant: int = 0,
    image_format: str = "png",
    transparent: bool = False,
    blurred: bool = False,
) -> str:
    """Return render_image's bytes as a base64 string, cached separately."""
    data = render_image(
        width, height, caption, variant, image_format, transparent, blurred
    )
    return base64.b64encode(data).decode("ascii")


@lru_cache(maxsize=_CACHE_SIZE)
def render_grid(tile_width: int, tile_height: int, caption: str) -> bytes:
    """Render a 2x2 PNG grid whose four tiles are distinct variants numbered 1 to 4."""
    grid = Image.new("RGB", (tile_width * 2, tile_height * 2))
    for index in range(4):
        tile = _draw_picture(tile_width, tile_height, caption, index, False)
        _draw_label(tile, str(index + 1))
        column, row = index % 2, index // 2
        grid.paste(tile.convert("RGB"), (column * tile_width, row * tile_height))
    return _encode(grid, "png")


def _draw_picture(
    width: int, height: int, caption: str, variant: int, transparent: bool
) -> Image.Image:
    background, accent = _palette(caption, variant)
    if transparent:
        picture = Image.new("RGBA", (width, height), (0, 0, 0, 0))
        fills: dict[int, int | RGB] = {ACCENT: accent, TEXT: WHITE, OUTLINE: BLACK}
    else:
        picture = Image.new("P", (width, height), BACKGROUND)
        picture.putpalette([*background, *accent, *WHITE, *BLACK])
        fills = {ACCENT: ACCENT, TEXT: TEXT, OUTLINE: OUTLINE}
    draw = ImageDraw.Draw(picture)
    short_side = min(width, height)
    offset = (variant % 4) * short_side // 10
    left, top = width // 8 + offset, height // 8
    draw.ellipse(
        (left, top, left + short_side // 2, top + short_side // 2), fill=fills[ACCENT]
    )
    draw.rectangle(
        (width // 2, height // 2, width - width // 10, height - height // 10),
        outline=fills[ACCENT],
        width=max(1, short_side // 64),
    )
    _draw_caption(draw, width, height, caption, fills[TEXT], fills[OUTLINE])
    return picture


def _palette(caption: str, variant: int) -> tuple[RGB, RGB]:
    hue = (zlib.crc32(caption.encode()) % 360 + variant * 83) % 360 / 360
    background = colorsys.hsv_to_rgb(hue, 0.55, 0.85)
    accent = colorsys.hsv_to_rgb((hue + 0.5) % 1.0, 0.7, 0.95)
    return _to_rgb(background), _to_rgb(accent)


def _to_rgb(color: tuple[float, float, float]) -> RGB:
    red, green, blue = (round(channel * 255) for channel in color)
    return red, green, blue


def _draw_caption(
    draw: ImageDraw.ImageDraw,
    width: int,
    height: int,
    text: str,
    fill: int | RGB,
    outline: int | RGB,
) -> None:
    if not text:
        return
    font_size = max(_MIN_FONT_SIZE, min(width, height) // 10)
    # Shrink the font until the caption fits in 90 % of the width.
    while (
        font_size > _MIN_FONT_SIZE
        and draw.textlength(text, font=_font(font_size)) > width * 0.9
    ):
        font_size = max(_MIN_FONT_SIZE, font_size * 3 // 4)
    draw.text(
        (width / 2, height / 2),
        text,
        font=_font(font_size),
        fill=fill,
        anchor="mm",
        stroke_width=max(1, font_size // 12),
        stroke_fill=outline,
    )


def _draw_label(tile: Image.Image, label: str) -> None:
    """Draw a tile number in the top-left corner of an opaque (palette) picture."""
    font_size = max(_MIN_FONT_SIZE, min(tile.size) // 6)
    ImageDraw.Draw(tile).text(
        (font_size // 2, font_size // 4),
        label,
        font=_font(font_size),
        fill=TEXT,
        stroke_width=max(1, font_size // 12),
        stroke_fill=OUTLINE,
    )


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow's built-in font scales when Pillow has FreeType support, and falls
    # back to a fixed-size bitmap font otherwise.
    return ImageFont.load_default(size=size)


def _encode(picture: Image.Image, image_format: str) -> bytes:
    if image_format != "png" and picture.mode == "P":
        picture = picture.convert("RGB")
    if image_format == "jpeg" and picture.mode != "RGB":
        picture = picture.convert("RGB")
    buffer = io.BytesIO()
    picture.save(buffer, _PILLOW_FORMATS[image_format])
    return buffer.getvalue()
