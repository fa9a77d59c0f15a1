"""Written-out infer prompts against the training captions: exact is silent, near warns, far is silent."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from fplora.check.captions import bounded_distance, caption_problems, closest_caption, word_diff
from fplora.datasets.records import RecordCache
from fplora.spec import load_spec

CAPTIONS = ["a character turns, take 1", "a character turns, take 2", "a dog sits on a red chair"]


def levenshtein(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


def test_bounded_distance_agrees_with_the_full_computation() -> None:
    rng = random.Random(7)
    words = ["ab", "abc", "ba", "", "aab", "cab", "abcabc", "xyz"]
    for a, b in itertools.product(words, repeat=2):
        for limit in range(5):
            full = levenshtein(a, b)
            assert bounded_distance(a, b, limit) == (full if full <= limit else None), (a, b, limit)
    for _ in range(200):
        a = "".join(rng.choice("abc ") for _ in range(rng.randint(0, 30)))
        b = "".join(rng.choice("abc ") for _ in range(rng.randint(0, 30)))
        full = levenshtein(a, b)
        assert bounded_distance(a, b, 6) == (full if full <= 6 else None)


@pytest.mark.parametrize(
    ("text", "caption", "distance"),
    [
        ("a character turns, take 1", None, None),  # exact: silent
        ("A character  turns, take 1", "a character turns, take 1", 0),  # case and spacing only
        ("a character turn, take 2", "a character turns, take 2", 1),
        ("a character spins, take 1", "a character turns, take 1", 3),
        ("a dog sits on a chair", None, None),  # 4 edits from a 25-letter caption: a new prompt
        ("a cat plays the piano in the rain", None, None),
    ],
)
def test_closest_caption(text: str, caption: str | None, distance: int | None) -> None:
    near = closest_caption(text, CAPTIONS)
    assert (near.caption, near.distance) == (caption, distance) if near else caption is None


def test_word_diff() -> None:
    assert (
        word_diff("a character turns left", "a character spins left")
        == "a character [-turns-] {+spins+} left"
    )
    assert word_diff("a b c", "a c d") == "a [-b-] c {+d+}"
    assert word_diff("A cat", "a cat") == "[-A-] {+a+} cat"
    assert word_diff("a  cat", "a cat") == "a cat (only spacing differs)"


def _spec(project: Callable[..., Path], *texts: str) -> Path:
    prompts = "".join(
        f"    - text: {text!r}\n      image: ../data/dataset-v1/c/1_0.png\n"
        "      control_images: [../data/dataset-v1/c/1_0.png, ../data/dataset-v1/c/1_1.png]\n"
        for text in texts
    )
    return project(f"infer:\n  prompts:\n{prompts}")


def test_problems_point_at_the_prompt_line(project: Callable[..., Path]) -> None:
    path = _spec(project, "a character turns, take 1", "a character turn, take 2", "something new entirely")
    spec = load_spec(path)
    (problem,) = caption_problems(spec, RecordCache(spec), strict=False)
    assert problem.severity == "warning"
    assert str(problem) == (
        "configs/v1.yaml:9: infer.prompts[1].text: is 1 edit from a training caption, and a prompt worded"
        " unlike its caption can lose the LoRA's effect: a character [-turns,-] {+turn,+} take 2"
        " — copy the caption exactly ('a character turns, take 2'), or use record: for that record's"
        " caption; --strict-captions makes this an error"
    )
    (strict,) = caption_problems(spec, RecordCache(spec), strict=True)
    assert strict.severity == "error" and "--strict-captions" not in strict.fix


def test_prompts_from_records_are_not_compared(project: Callable[..., Path]) -> None:
    spec = load_spec(project("infer:\n  prompts:\n    - record: 1\n"))
    assert caption_problems(spec, RecordCache(spec), strict=True) == []


def test_ten_thousand_captions_stay_fast() -> None:
    import time

    rng = random.Random(1)
    words = [
        "red",
        "blue",
        "green",
        "character",
        "turns",
        "faces",
        "camera",
        "slowly",
        "quickly",
        "left",
        "right",
        "up",
        "down",
    ]
    captions = [" ".join(rng.choice(words) for _ in range(14)) for _ in range(10_000)]
    start = time.perf_counter()
    closest_caption("a prompt that is unlike any of the captions above, and long enough to matter", captions)
    assert time.perf_counter() - start < 2.0
