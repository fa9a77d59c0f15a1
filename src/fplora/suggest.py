""" "Did you mean …?": the closest of the names a user could have meant."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice most like `word`, if one is close enough to be a likely typo."""
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`did you mean 'x'?`, or "" when nothing is close."""
    close = closest(word, choices)
    return f"did you mean '{close}'?" if close else ""
