"""`--lora` selections: ranges, strides and the newest few, resolved against the steps on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from fplora.problems import UserError
from fplora.runs.checkpoints import Checkpoint
from fplora.runs.lora_ranges import expand, is_selection, select_steps

STEPS = [500, 1000, 1500, 2000, 2500, 3000, 4000, 5000, 6000]


@pytest.mark.parametrize(
    ("word", "chosen"),
    [
        ("step1000..step3000", [1000, 1500, 2000, 2500, 3000]),
        ("step1200..step2100", [1500, 2000]),
        ("step5000..", [5000, 6000]),
        ("..step1000", [500, 1000]),
        ("every:1000", [1000, 2000, 3000, 4000, 5000, 6000]),
        ("last:3", [4000, 5000, 6000]),
        ("step1000..step4000,every:1000", [1000, 2000, 3000, 4000]),
        ("every:1000,last:2", [5000, 6000]),
        ("last:5,every:1000", [3000, 4000, 5000, 6000]),  # the last five hold 2500
        ("every:1000, last:2", [5000, 6000]),
    ],
)
def test_selections(word: str, chosen: list[int]) -> None:
    assert select_steps(word, STEPS)[0] == chosen


@pytest.mark.parametrize(
    ("word", "message"),
    [
        (
            "step3000..step1000",
            "--lora: step3000..step1000: the range is empty: step3000 comes after step1000 — write step1000..step3000",
        ),
        (
            "every:0",
            "--lora: every:0: the stride must be a whole number above 0 — write e.g. every:3",
        ),
        ("last:x", "--lora: last:x: the count must be a whole number above 0 — write e.g. last:3"),
        (
            "step7000..",
            "--lora: step7000..: selects no checkpoint — step checkpoints: 9 from step500 to step6000",
        ),
        (
            "every:7000",
            "--lora: every:7000: selects no checkpoint — step checkpoints: 9 from step500 to step6000",
        ),
        ("..", "--lora: ..: '..' needs a step at one end at least — write e.g. step3000..step5000"),
        (
            "every:1000,latest",
            "--lora: every:1000,latest: 'latest' is not a selection — combine stepA..stepB, every:N or last:K with commas; give latest, final, stepN or a path in an --lora of its own",
        ),
    ],
)
def test_bad_selections_say_what_to_write(word: str, message: str) -> None:
    with pytest.raises(UserError) as error:
        select_steps(word, STEPS)
    assert str(error.value) == f"command line: {message}"


def test_last_with_fewer_checkpoints_takes_all_and_says_so() -> None:
    chosen, (said,) = select_steps("last:5", [100, 200])
    assert chosen == [100, 200]
    assert said.message == "--lora last:5: only 2 step checkpoints match at last:5; using all"


def test_words_that_are_not_selections() -> None:
    for word in ("latest", "final", "step100", "../run/x.safetensors", "a..b.safetensors", "/tmp/x"):
        assert not is_selection(word)
    for word in ("step1..step2", "every:10", "last:1", "..step5", "every:10,last:2"):
        assert is_selection(word)


def _checkpoints(steps: list[int]) -> list[Checkpoint]:
    found = [Checkpoint(Path(f"r-step{s:08d}.safetensors"), "lora", s, 0, False) for s in steps]
    found.append(Checkpoint(Path("r.safetensors"), "lora", steps[-1], 0, True))  # the final file
    found.append(Checkpoint(Path("r-step00000100-state"), "state", 100, 0, False))
    return found


def test_expand_keeps_other_words_and_ignores_finals_and_states() -> None:
    words, notes = expand(["latest", "every:200", "step100"], _checkpoints([100, 200, 300, 400]), "r")
    assert words == ["latest", "step200", "step400", "step100"]
    assert notes == []


def test_expand_before_training_says_train_first() -> None:
    with pytest.raises(UserError) as error:
        expand(["last:3"], [], "fake-v1")
    assert "last:3: no step LoRA of fake-v1 found to select from — train first" in str(error.value)


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("every:0", "every:0: the stride must be a whole number above 0 — write e.g. every:3"),
        ("last:-1", "last:-1: the count must be a whole number above 0 — write e.g. last:3"),
        (
            "step5000..step3000",
            "step5000..step3000: the range is empty: step5000 comes after step3000 — write step3000..step5000",
        ),
    ],
)
def test_a_malformed_selection_before_training_is_refused_as_such(word: str, message: str) -> None:
    """Not "train first": training would not make `every:0` mean anything."""
    with pytest.raises(UserError) as error:
        expand([word], [], "fake-v1")
    assert str(error.value) == f"command line: --lora: {message}"
