"""`--lora` selections over a run's step checkpoints: ranges, strides and the newest few.

The memo compares checkpoints by step; a sweep names many of them, so besides `stepN`, `latest`,
`final` and paths, `--lora` takes selections that resolve against the step LoRAs on disk:

- `step3000..step5000`: every step checkpoint from 3000 to 5000, both ends included
  (`step3000..` and `..step5000` leave one end open);
- `every:1000`: the checkpoints whose global step is a multiple of 1000;
- `last:3`: the three newest step checkpoints.

Filters joined by commas apply left to right (`step2000..step8000,every:1000`: the thousands in that
range; `every:1000,last:3`: the three newest of those), and repeated `--lora` options add up, as
they always have. A selection expands into `stepN` words in step order, so every later decision
(which segment's file, twins, damaged files) is the one `stepN` already gets.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from fplora.problems import Problem, UserError, note, plural
from fplora.runs.checkpoints import Checkpoint

_RANGE = re.compile(r"^(?:step(\d+))?\.\.(?:step(\d+))?$")
_EVERY = re.compile(r"^every:(\S*)$")
_LAST = re.compile(r"^last:(\S*)$")

FORMS = "stepA..stepB, every:N or last:K"


def is_selection(word: str) -> bool:
    """Whether `word` is a selection rather than one checkpoint (a path with `..` in it is a path
    when it exists: `../other/run.safetensors`)."""
    return bool(
        not ("/" in word or word.endswith(".safetensors"))
        and ("," in word or _RANGE.match(word) or word.startswith(("every:", "last:")))
    )


def _error(word: str, message: str, fix: str = "") -> UserError:
    return UserError(Problem("command line", None, "--lora", f"{word}: {message}", fix))


def _count(word: str, part: str, value: str, what: str) -> int:
    if not value.isdigit() or int(value) == 0:
        where = f"{part}: " if part != word else ""  # which filter, when the word has several
        raise _error(
            word, f"{where}{what} must be a whole number above 0", f"write e.g. {part.split(':')[0]}:3"
        )
    return int(value)


def _apply(word: str, part: str, steps: list[int], notes: list[Problem]) -> list[int]:
    """One filter over the steps chosen so far."""
    if match := _RANGE.match(part):
        low, high = (int(g) if g else None for g in match.groups())
        if low is None and high is None:
            raise _error(word, "'..' needs a step at one end at least", "write e.g. step3000..step5000")
        if low is not None and high is not None and low > high:
            raise _error(
                word, f"the range is empty: step{low} comes after step{high}", f"write step{high}..step{low}"
            )
        return [s for s in steps if (low is None or s >= low) and (high is None or s <= high)]
    if match := _EVERY.match(part):
        stride = _count(word, part, match.group(1), "the stride")
        return [s for s in steps if s % stride == 0]
    if match := _LAST.match(part):
        count = _count(word, part, match.group(1), "the count")
        if len(steps) < count:
            have = f"only {plural(len(steps), 'step checkpoint')} match"
            notes.append(note(f"--lora {word}: {have} at {part}; using {'it' if len(steps) == 1 else 'all'}"))
        return steps[-count:]
    raise _error(
        word,
        f"'{part}' is not a selection",
        f"combine {FORMS} with commas; give latest, final, stepN or a path in an --lora of its own",
    )


def _listed(steps: list[int]) -> str:
    if len(steps) <= 8:
        return ", ".join(f"step{s}" for s in steps) or "none"
    return f"{len(steps)} from step{steps[0]} to step{steps[-1]}"


def check_form(word: str) -> None:
    """Refuse (UserError) a malformed selection (`every:0`, `last:-1`, `step5000..step3000`) as such,
    whether or not the run has checkpoints yet: "train first" would not be the fix."""
    for part in word.split(","):
        _apply(word, part.strip(), [], [])


def select_steps(word: str, steps: Sequence[int]) -> tuple[list[int], list[Problem]]:
    """The global steps `word` selects from `steps` (ascending), and notes.

    Refuses (UserError) a malformed selection and one that selects nothing, naming what exists."""
    chosen = sorted(set(steps))
    notes: list[Problem] = []
    for part in word.split(","):
        chosen = _apply(word, part.strip(), chosen, notes)
    if not chosen:
        raise _error(word, "selects no checkpoint", f"step checkpoints: {_listed(sorted(set(steps)))}")
    return chosen, notes


def expand(
    words: Sequence[str], checkpoints: Sequence[Checkpoint], output_name: str
) -> tuple[list[str], list[Problem]]:
    """`--lora` words with every selection replaced by its `stepN` words; other words unchanged.

    `checkpoints` are the run's (`runs.checkpoints.find`); only step LoRA files count (a final file
    is the last step's weights, reached by `final`)."""
    steps = sorted({c.step for c in checkpoints if c.kind == "lora" and not c.final and c.step is not None})
    out: list[str] = []
    notes: list[Problem] = []
    for word in words:
        if not is_selection(word):
            out.append(word)
            continue
        check_form(word)
        if not steps:
            raise _error(
                word,
                f"no step LoRA of {output_name} found to select from",
                "train first; a dry run before training takes steps one by one (--lora step100)",
            )
        chosen, said = select_steps(word, steps)
        notes += said
        out += [f"step{step}" for step in chosen]
    return out, notes
