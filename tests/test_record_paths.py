"""A record's paths are kept as text for speed: the text must be exactly what `str(Path(...))` gave
when records held `Path`s, or image verdicts, messages and rendered JSONL would change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fplora.check.records import _stem
from fplora.datasets.records import Record, _path

VALUES = [
    "a.png",
    "./a.png",
    "sub/../a.png",
    "sub//a.png",
    "sub/./a.png",
    "sub/",
    "../up/a.png",
    ".hidden",
    "a.tar.gz",
    "/abs/a.png",
    "/abs//a.png",
    "/abs/./a.png",
    "/abs/../a.png",
    "/abs/dir/",
    "/abs/dir/.",
    "//host/a.png",
    "///three/a.png",
    "C:\\images\\a.png",
    "img\\a.png",
]


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("base", ["/data/set", "data", "."])
def test_path_text_is_what_path_gave(value: str, base: str) -> None:
    text, relative = _path(value, base)
    expected = Path(value) if value.startswith("/") else Path(os.path.normpath(os.path.join(base, value)))
    assert text == str(expected)
    assert relative is (not value.startswith("/"))


@pytest.mark.parametrize("value", ["/d/a.png", "/d/a.tar.gz", "/d/.hidden", "/d/a.", "/d/noext", "b.jpg"])
def test_stem_is_path_stem(value: str) -> None:
    assert _stem(value) == Path(value).stem


def test_record_paths_as_paths() -> None:
    record = Record(3, Path("/d/t.png"), "c", [Path("/d/s.png")], relative=True)
    assert record.image == Path("/d/t.png") and record.image_path == "/d/t.png"
    assert record.controls == [Path("/d/s.png")]
    record.control_paths.append("/d/e.png")
    assert record.controls == [Path("/d/s.png"), Path("/d/e.png")]
    assert record == Record(3, "/d/t.png", "c", ["/d/s.png", "/d/e.png"], relative=True)
    assert Record(1, None, None).image is None
