"""Text on contact sheets in any script a caption is written in, glyph by glyph from the font that has it.

Pillow's own font (Aileron) covers Latin only: a Japanese caption (`振り向く`) came out as a row of
empty boxes, the font's `.notdef` glyph. Pillow has no font fallback, so a `Face` splits the text into
runs, each drawn in the first font that has a glyph for its characters: Aileron, then the bundled
Droid Sans Fallback (kana, CJK ideographs, Hangul; `fonts/README.md`). Whether a font has a glyph is
read off the glyph itself: one that renders like the font's `.notdef` (what it draws for a code point
it lacks) is missing.
"""

from __future__ import annotations

import io
from functools import cache
from importlib import resources

from PIL import ImageDraw, ImageFont

FALLBACK = "DroidSansFallback.ttf"
NOTDEF_PROBE = "\U0010ffff"  # a noncharacter: every font draws its .notdef for it

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
Ink = tuple[int, int, int]


def _glyph(font: Font, char: str) -> tuple[tuple[int, int], bytes]:
    mask = font.getmask(char)
    return mask.size, bytes(mask)


@cache
def _notdef(font: Font) -> tuple[tuple[int, int], bytes]:
    return _glyph(font, NOTDEF_PROBE)


@cache
def has_glyph(font: Font, char: str) -> bool:
    """Whether `font` draws `char` as a glyph of its own rather than its missing-glyph box."""
    return _glyph(font, char) != _notdef(font)


@cache
def _fallback_bytes() -> bytes:
    return (resources.files("fplora.sheet") / "fonts" / FALLBACK).read_bytes()


@cache
def _fallback(size: int) -> ImageFont.FreeTypeFont | None:
    try:
        return ImageFont.truetype(io.BytesIO(_fallback_bytes()), size)
    except (OSError, ImportError):  # Pillow without FreeType, a font file left out of the install
        return None


class Face:
    """A size of the sheet's text: Pillow's font, then the fallback for what it lacks."""

    def __init__(self, size: int) -> None:
        try:
            primary: Font = ImageFont.load_default(size=size)
        except (OSError, ValueError, TypeError):  # Pillow without FreeType: the fixed bitmap font
            primary = ImageFont.load_default()
        fallback = _fallback(size) if isinstance(primary, ImageFont.FreeTypeFont) else None
        self.fonts: list[Font] = [primary, *([fallback] if fallback is not None else [])]
        self.primary = primary

    def font_for(self, char: str) -> Font:
        """The first font with a glyph for `char`, else the primary (its box marks what none has)."""
        return next((font for font in self.fonts if has_glyph(font, char)), self.primary)

    def runs(self, text: str) -> list[tuple[str, Font]]:
        """`text` split where the font changes; spaces stay with the run they are in."""
        runs: list[tuple[str, Font]] = []
        for char in text:
            font = runs[-1][1] if runs and char.isspace() else self.font_for(char)
            if runs and runs[-1][1] is font:
                runs[-1] = (runs[-1][0] + char, font)
            else:
                runs.append((char, font))
        return runs

    def length(self, text: str) -> float:
        return sum(font.getlength(run) for run, font in self.runs(text))

    def fit(self, text: str, width: float) -> str:
        """`text`, cut with "..." to fit `width` pixels."""
        if self.length(text) <= width:
            return text
        while text and self.length(text + "...") > width:
            text = text[:-1]
        return text + "..."

    def _baseline(self) -> int:
        if isinstance(self.primary, ImageFont.FreeTypeFont):
            return self.primary.getmetrics()[0]
        return 0

    def draw(self, draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, fill: Ink) -> None:
        """Draw `text` with its top left at `xy`, every run on the primary font's baseline."""
        if len(self.fonts) == 1:
            draw.text(xy, text, font=self.primary, fill=fill)
            return
        x, y = xy[0], xy[1] + self._baseline()
        for run, font in self.runs(text):
            draw.text((x, y), run, font=font, fill=fill, anchor="ls")
            x += font.getlength(run)

    def draw_centred(
        self, draw: ImageDraw.ImageDraw, centre: tuple[float, float], text: str, fill: Ink
    ) -> None:
        """Draw `text` centred on `centre`, as Pillow's anchor "mm" centres one font."""
        if len(self.fonts) == 1:
            draw.text(centre, text, font=self.primary, fill=fill, anchor="mm")
            return
        assert isinstance(self.primary, ImageFont.FreeTypeFont)
        ascent, descent = self.primary.getmetrics()
        top = centre[1] - (ascent + descent) / 2
        self.draw(draw, (centre[0] - self.length(text) / 2, top), text, fill)
