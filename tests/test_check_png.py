"""`check.png`: a PNG is vouched for without Pillow's decoder only where Pillow's full decode would
succeed with the same size; everything else is left to Pillow, so no verdict changes.

The files are made by Pillow where it can make them, and by hand (chunks, CRCs and zlib written here)
where a file Pillow would never write is needed: a bad filter type, too few or too many rows, split
pixel data."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from fplora.check import images as check_images
from fplora.check.png import SIGNATURE, whole_png_size


def saved(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **options)
    return buffer.getvalue()


def noise(mode: str, size: tuple[int, int] = (37, 23)) -> Image.Image:
    """Noise in `mode`: it compresses badly, so a cut or a flipped byte lands in real pixel data."""
    return Image.effect_noise(size, 80).convert(mode)


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def handmade(
    raw: bytes,
    width: int,
    height: int,
    *,
    colour: int = 2,
    parts: int = 1,
    between: bytes = b"",
    before: bytes = b"",
    after: bytes = b"",
) -> bytes:
    """An 8-bit PNG whose pixel data is `raw` (filter bytes included) compressed, in `parts` IDAT
    chunks with `between` (whole chunks) after the first, `before` ahead of them, `after` behind them."""
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0))
    stream = zlib.compress(raw)
    step = -(-len(stream) // parts)
    idats = [chunk(b"IDAT", stream[at : at + step]) for at in range(0, len(stream), step)]
    return SIGNATURE + ihdr + before + idats[0] + between + b"".join(idats[1:]) + after + chunk(b"IEND", b"")


def rgb_rows(width: int, height: int, filter_type: int = 0) -> bytes:
    return b"".join(
        bytes([filter_type]) + bytes((x * 7 + y) % 256 for x in range(3 * width)) for y in range(height)
    )


def pillow_size(data: bytes) -> tuple[int, int] | None:
    """What a full Pillow decode finds: the size, or None when it fails."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.size
    except Exception:
        return None


def agrees(data: bytes) -> bool:
    """The fast path vouches for a file only where Pillow's decode succeeds, with the same size."""
    size = whole_png_size(data)
    return size is None or size == pillow_size(data)


@pytest.mark.parametrize("mode", ["L", "RGB", "P", "LA", "RGBA"])
def test_every_8_bit_mode_is_vouched_for_with_its_size(mode: str) -> None:
    data = saved(noise(mode))
    assert whole_png_size(data) == (37, 23) == pillow_size(data)


def test_pillow_saved_chunks_stay_on_the_fast_path() -> None:
    """Text, resolution, gamma and transparency chunks: what real datasets' PNGs carry."""
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a prompt, steps 20")
    data = saved(noise("RGB"), pnginfo=info, dpi=(72, 72), transparency=(1, 2, 3))
    gamma = chunk(b"gAMA", struct.pack(">I", 45455))
    data = data[:33] + gamma + data[33:]
    assert whole_png_size(data) == (37, 23) == pillow_size(data)
    assert whole_png_size(saved(noise("P"), transparency=0)) == (37, 23)


@pytest.mark.parametrize(
    "data",
    [
        saved(noise("RGB"), icc_profile=b"\0" * 200),  # iCCP: compressed, Pillow parses it
        saved(noise("I;16")),  # 16 bits
        saved(noise("1")),  # 1 bit
        saved(noise("RGB"), save_all=True, append_images=[noise("RGB")]),  # animated (APNG)
    ],
    ids=["iccp", "16-bit", "1-bit", "apng"],
)
def test_what_it_cannot_vouch_for_is_left_to_pillow(data: bytes) -> None:
    assert whole_png_size(data) is None
    assert pillow_size(data) is not None  # Pillow reads them: the check's verdict is Pillow's


def test_interlaced_is_left_to_pillow() -> None:
    data = bytearray(handmade(rgb_rows(4, 4), 4, 4))
    data[28] = 1  # IHDR's interlace byte, CRC fixed below
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    assert whole_png_size(bytes(data)) is None


def test_cut_png_is_never_vouched_for() -> None:
    """Cut at 500 bytes (the issue's case) and at every other length: never vouched for, and Pillow
    refuses every cut inside the pixel data."""
    data = saved(noise("RGB", (64, 64)))
    assert whole_png_size(data[:500]) is None and pillow_size(data[:500]) is None
    for keep in range(len(data)):
        assert whole_png_size(data[:keep]) is None


@pytest.mark.parametrize("mode", ["L", "RGB", "P", "LA", "RGBA"])
def test_a_flipped_or_cut_byte_anywhere_is_never_vouched_for_where_pillow_fails(mode: str) -> None:
    """Each byte flipped in turn, and the file cut at each length, in a PNG with text and resolution
    chunks: wherever the fast path vouches, Pillow's decode agrees."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "a painter")
    data = saved(noise(mode, (20, 12)), pnginfo=info, dpi=(96, 96))
    assert whole_png_size(data) == (20, 12)
    for at in range(8, len(data)):
        for flip in (0x01, 0x80):
            damaged = bytearray(data)
            damaged[at] ^= flip
            assert agrees(bytes(damaged)), (at, flip)
        assert agrees(data[:at]), at


def test_corrupt_pixel_data_with_a_valid_crc_is_caught() -> None:
    """Flipped bytes inside the zlib stream, the IDAT CRC written again to match: only inflating
    the stream to its end finds them."""
    width, height = 30, 20
    good = handmade(rgb_rows(width, height), width, height)
    assert whole_png_size(good) == (width, height)
    start = good.index(b"IDAT") + 4
    length = struct.unpack(">I", good[start - 8 : start - 4])[0]
    caught = 0
    for at in range(start + 2, start + length):
        damaged = bytearray(good)
        damaged[at] ^= 0xFF
        damaged[start + length : start + length + 4] = struct.pack(
            ">I", zlib.crc32(bytes(damaged[start - 4 : start + length]))
        )
        assert whole_png_size(bytes(damaged)) is None  # zlib or its checksum refuses each
        caught += pillow_size(bytes(damaged)) is None
    assert caught > 0  # some of them Pillow's own decode refuses too


def test_crcs_are_checked_as_pillow_does() -> None:
    """A wrong CRC on a header chunk makes Pillow refuse the file, so it is left to Pillow; the pixel
    data's CRC Pillow skips, as this does (the zlib stream's checksum covers the pixels)."""
    good = handmade(rgb_rows(8, 6), 8, 6, before=chunk(b"pHYs", bytes(9)))
    at = good.index(b"pHYs") + 4 + 9
    bad_phys = good[:at] + bytes([good[at] ^ 1]) + good[at + 1 :]
    assert whole_png_size(bad_phys) is None and pillow_size(bad_phys) is None
    at = good.index(b"IEND") - 8
    bad_idat_crc = good[:at] + bytes([good[at] ^ 1]) + good[at + 1 :]
    assert whole_png_size(bad_idat_crc) == (8, 6) == pillow_size(bad_idat_crc)


@pytest.mark.parametrize(
    ("rows", "height", "vouched"),
    [
        (rgb_rows(8, 6), 6, True),
        (rgb_rows(8, 6, filter_type=4), 6, True),
        (rgb_rows(8, 6, filter_type=5), 6, False),  # no such filter type
        (rgb_rows(8, 5), 6, False),  # a row short
        (rgb_rows(8, 7), 6, False),  # a row too many
        (rgb_rows(8, 6)[:-1], 6, False),  # a byte short
    ],
)
def test_rows_must_be_exactly_what_the_header_says(rows: bytes, height: int, vouched: bool) -> None:
    data = handmade(rows, 8, height)
    assert whole_png_size(data) == ((8, height) if vouched else None)
    assert agrees(data)


def test_pixel_data_in_several_chunks() -> None:
    rows = rgb_rows(16, 16)
    assert whole_png_size(handmade(rows, 16, 16, parts=3)) == (16, 16)
    interrupted = handmade(rows, 16, 16, parts=3, between=chunk(b"tEXt", b"a\0b"))
    assert whole_png_size(interrupted) is None and agrees(interrupted)


@pytest.mark.parametrize(
    ("extra", "vouched"),
    [
        (chunk(b"tIME", bytes(7)), True),  # Pillow reads past it
        (chunk(b"pHYs", bytes(9)), True),
        (chunk(b"pHYs", bytes(8)), False),  # Pillow: "Truncated pHYs chunk"
        (chunk(b"sRGB", b""), False),  # Pillow: "Truncated sRGB chunk"
        (chunk(b"zTXt", b"k\0\0" + zlib.compress(b"v")), False),  # compressed: Pillow parses it
        (chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 6, 8, 2, 0, 0, 0)), False),  # a second header
        (chunk(b"t1Me", b""), False),  # not a chunk type
    ],
)
def test_chunks_after_the_pixels_count_too(extra: bytes, vouched: bool) -> None:
    """Pillow's load parses the chunks behind the pixel data as well, and fails on some."""
    data = handmade(rgb_rows(8, 6), 8, 6, after=extra)
    assert whole_png_size(data) == ((8, 6) if vouched else None)
    assert agrees(data)


def test_palette_image_needs_its_palette() -> None:
    rows = b"".join(b"\0" + bytes(range(8)) for _ in range(4))
    palette = chunk(b"PLTE", bytes(range(24)))
    assert whole_png_size(handmade(rows, 8, 4, colour=3, before=palette)) == (8, 4)
    assert whole_png_size(handmade(rows, 8, 4, colour=3)) is None
    too_long = handmade(rows, 8, 4, colour=3, before=chunk(b"PLTE", bytes(800)))
    assert whole_png_size(too_long) is None and pillow_size(too_long) is None  # "invalid palette size"


def test_chunks_pillow_parses_agree_at_every_length() -> None:
    """Each chunk type Pillow parses, and some it does not, at lengths around what its parser needs,
    before and behind the pixel data: the fast path never vouches for a file Pillow refuses."""
    kinds = [b"PLTE", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"pHYs", b"tEXt", b"zTXt", b"iTXt"]
    kinds += [b"eXIf", b"iCCP", b"acTL", b"fcTL", b"fdAT", b"tIME", b"IHDR", b"IDAT"]
    for colour, channels in [(3, 1), (0, 1), (2, 3), (4, 2), (6, 4)]:
        rows = b"".join(b"\0" + bytes(range(row, row + 5 * channels)) for row in range(3))
        palette = chunk(b"PLTE", bytes(30)) if colour == 3 else b""
        for kind in kinds:
            for length in [*range(0, 40, 3), 767, 768, 769, 800]:
                body = (b"k\0" + bytes((7 + at) % 256 for at in range(length)))[:length]
                extra = chunk(kind, body)
                for before, after in [(palette + extra, b""), (palette, extra)]:
                    data = handmade(rows, 5, 3, colour=colour, before=before, after=after)
                    assert agrees(data), (colour, kind, length, before == palette)


def test_more_pixels_than_pillow_opens_quietly_is_left_to_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 47)
    assert whole_png_size(handmade(rgb_rows(8, 6), 8, 6)) is None


@pytest.mark.parametrize("data", [b"", b"GIF89a", SIGNATURE, SIGNATURE + b"\0" * 30])
def test_not_a_png_or_no_header(data: bytes) -> None:
    assert whole_png_size(data) is None


def test_check_verdicts_are_pillows(tmp_path: Path) -> None:
    """Through `decode_stat`: a whole PNG its size, a cut or damaged one Pillow's words."""
    whole = tmp_path / "whole.png"
    whole.write_bytes(saved(noise("RGB", (64, 64))))
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[:500])
    bad_filter = tmp_path / "filter.png"
    bad_filter.write_bytes(handmade(rgb_rows(8, 6, filter_type=7), 8, 6))
    assert check_images.decode_stat(str(whole))[2] == check_images.ImageInfo(size=(64, 64))
    cut_info = check_images.decode_stat(str(cut))[2]
    assert cut_info.error == (
        "cannot be decoded (image file is truncated), so musubi-tuner's caching would stop on it"
    )
    filter_info = check_images.decode_stat(str(bad_filter))[2]
    assert filter_info.error is not None and filter_info.error.startswith("cannot be decoded")
