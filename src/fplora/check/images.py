"""Is this file an image musubi-tuner can load, and how big is it: decoded once, pixels and all.

A header tells the size but not whether the pixels are there: a PNG cut short after its first few
hundred bytes opens fine and fails only when musubi-tuner's latent caching decodes it, after the models
are loaded. So every image is decoded once, as musubi-tuner's `Image.open(...).convert("RGB")` would,
and the verdict is remembered by path, size and modification time (`check.verified`), so that a repeated
check decodes nothing. The common PNG is proved whole with zlib instead (`check.png`: everything a full
decode would find, for half of Pillow's time on a small one); every other file, and any PNG that proof
cannot vouch for, is decoded by Pillow, whose verdict and words stand.

Pillow is first asked for the four formats datasets use, because by default it walks all its plugins.
A file none of those four identify is tried once more with every format, so that an image in a rarer
format Pillow reads (and musubi-tuner, which opens images with Pillow, would too) is not reported as
broken.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import UnidentifiedImageError

from fplora.check.png import whole_png_size

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

FAST_FORMATS = ("PNG", "JPEG", "WEBP", "BMP")
"""Formats tried first: what image datasets are made of, and what musubi-tuner lists as image files."""


@dataclass(frozen=True)
class ImageInfo:
    """What decoding found: a size, or why the file is not a usable image.

    `error` is a predicate that reads after the path ("not found", "is empty"), so callers can say
    where the path came from; `fix` is what to do about it. `lasting` is false for verdicts about
    the file's surroundings rather than its bytes (missing, a folder, no permission): those are
    never remembered, since they change without the file's size or time changing.
    """

    size: tuple[int, int] | None = None
    error: str | None = None
    fix: str = ""
    lasting: bool = True

    @property
    def ok(self) -> bool:
        return self.error is None


NOT_FOUND = ImageInfo(error="not found", fix="check the path", lasting=False)


HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
"""Pillow modes of 16-bit and float images: `convert("RGB")`, as musubi-tuner loads images, clips
them to 8 bits instead of scaling, so most pixels come out white."""

DRAFT_FORMATS = ("JPEG", "MPO")
"""Formats decoded at libjpeg's smallest scale: it still reads and entropy-decodes every byte of the
file, so a cut JPEG fails as at full size (even with only its 2-byte end marker missing) and one with
damaged data passes as it would in caching, in ~1/3 of the time for a 1024-pixel baseline JPEG (3.2 to
1.2 ms; progressive 6.6 to 5.0 ms); it leaves out the inverse transform and colour work at full size."""

HIGH_BIT = ImageInfo(
    error="is a 16-bit or float image, which musubi-tuner's RGB conversion clips to nearly white",
    fix="save it as an 8-bit RGB image",
)


def _decoded(image: PILImage) -> ImageInfo:
    size = image.size
    if image.format in DRAFT_FORMATS:
        image.draft(None, (1, 1))  # libjpeg's 1/8 scale: every byte still read, less pixel work
    image.load()  # every pixel: a cut or corrupt file fails here, as it would in caching
    return HIGH_BIT if image.mode in HIGH_BIT_MODES else ImageInfo(size=size)


def decode_stat(path: str) -> tuple[int, int, ImageInfo]:
    """(size in bytes, modification time in ns, verdict) of one image, the first two read from the
    file that was decoded (-1 when it could not be opened). Never raises.

    The file is read whole in one system call and decoded from memory: Pillow reading a file object
    makes several small reads and seeks, which for a small image cost ~15 % of the decode."""
    try:
        handle = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        return -1, -1, NOT_FOUND
    except Exception as exc:
        return -1, -1, _failure(path, exc)
    try:
        found = os.fstat(handle)
        data = _read_all(handle, found.st_size)
    except Exception as exc:  # a folder (read fails), an I/O error
        return -1, -1, _failure(path, exc)
    finally:
        os.close(handle)
    return found.st_size, found.st_mtime_ns, _decode_bytes(path, data)


def _read_all(handle: int, size: int) -> bytes:
    """Every byte of the open file: one read when it has the size `fstat` gave, more if it grew or
    a read came back short."""
    data = os.read(handle, size + 1)
    if len(data) == size:
        return data
    parts = [data]
    while parts[-1]:
        parts.append(os.read(handle, max(size, 1 << 16)))
    return b"".join(parts)


def _decode_bytes(path: str, data: bytes) -> ImageInfo:
    size = whole_png_size(data)  # the common PNG, proved whole without Pillow's slower decode
    if size is not None:
        return ImageInfo(size=size)
    from PIL import Image  # here: a repeated check decodes nothing, and `check` should start fast

    try:
        with Image.open(io.BytesIO(data), formats=FAST_FORMATS) as image:
            return _decoded(image)
    except UnidentifiedImageError:
        pass
    except Exception as exc:  # one image must never stop the whole check
        return _failure(path, exc)
    try:  # second try with every format Pillow has, for files the fast formats did not identify
        with Image.open(io.BytesIO(data)) as image:
            return _decoded(image)
    except Exception as exc:
        return _failure(path, exc)


def _failure(path: str, exc: Exception) -> ImageInfo:
    """Turn an exception from opening or decoding `path` into the most useful explanation."""
    if isinstance(exc, FileNotFoundError):
        return NOT_FOUND
    if isinstance(exc, IsADirectoryError) or os.path.isdir(path):
        return ImageInfo(error="is a folder, not an image", fix="point at an image file", lasting=False)
    if isinstance(exc, PermissionError):
        return ImageInfo(
            error="cannot be read: permission denied", fix="fix the file's permissions", lasting=False
        )
    try:
        empty = os.path.getsize(path) == 0
    except OSError:
        empty = False
    if empty:
        return ImageInfo(error="is empty (0 bytes)", fix="write the image again")
    if isinstance(exc, UnidentifiedImageError):
        return ImageInfo(
            error="is not an image Pillow can read",
            fix=f"use a {', '.join(FAST_FORMATS[:-1])} or {FAST_FORMATS[-1]} file",
        )
    return ImageInfo(
        error=f"cannot be decoded ({exc}), so musubi-tuner's caching would stop on it",
        fix="write or download the image again",
    )
