"""Problems found in user input, as data, and the one-line form they are printed in.

Every user mistake ends up as a `Problem`: where (file and line), what (the key or record), what is
wrong and what to do. The CLI prints them one per line, `file:line: key: what — fix`, like a
compiler or ruff, and exits 1 without a traceback. Decisions (which state to resume, which LoRAs to
run) return `note`s the same way, so that the job prints them in one place, and `fplora doctor`'s
checks return theirs (an `ok` too). It is fplora's one finding type (tests/test_architecture.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int | None
    key: str
    message: str
    fix: str = ""
    # "error", "warning", "note" (something a decision wants said) or "ok" (a check that passed,
    # which `fplora doctor` lists beside its warnings and failures)
    severity: str = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        text = ": ".join(part for part in (where, self.key, self.message) if part)
        return f"{text} — {self.fix}" if self.fix else text


def note(message: str, where: str = "") -> Problem:
    """A note from a decision: not a mistake, something the user should know about what runs."""
    return Problem(where, None, "", message, severity="note")


class UserError(Exception):
    """A mistake in the user's input or environment: printed as problems, exit code 1, no traceback."""

    def __init__(self, problems: Problem | Iterable[Problem]):
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def display_path(path: Path | str) -> str:
    """A path as the user should see it: relative to the working directory when below it."""
    path = Path(path)
    here = Path.cwd()
    # the path as written first (made absolute, not resolved): a link is named by its own path, not
    # by the file it points to (a dataset's targets/0001.png linked from a pool of pictures was
    # named pool/0001.png); then resolved, for a path that reaches the working directory by a link
    for candidate, base in ((Path(os.path.abspath(path)), here), (path.resolve(), here.resolve())):
        try:
            return str(candidate.relative_to(base))
        except ValueError:
            continue
    return str(path)


def yaml_value(value: object) -> object:
    """A setting's value as a spec writes it in YAML, for messages that quote it: `true`/`false`
    (Python's `True` would be a string in the user's file), anything else as it is."""
    return str(value).lower() if isinstance(value, bool) else value


def plural(n: float, noun: str, many: str | None = None, *, shown: str | None = None) -> str:
    """`1 record`, `2 records`, `0 records`; `many` for a noun that is not made plural with an s
    (`plural(n, "entry", "entries")`); `shown` for a count written otherwise than `str(n)` (`2.5`,
    `10,000` epochs)."""
    return f"{shown or n} {noun if n == 1 else many or noun + 's'}"


def byte_size(count: int) -> str:
    """A size as messages say it: `1.2 GB`, `3.4 MB`, `5.6 kB`, `12 bytes` (decimal units, as the
    Hub's pages show them)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"
