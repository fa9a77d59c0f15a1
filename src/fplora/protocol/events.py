"""Reading a worker's events off its output: the sweep and evaluation workers print one JSON object
per line after a prefix of their own, among musubi-tuner's log lines and progress bars on the same
stream."""

from __future__ import annotations

import json
from typing import Any


def parse_event(line: str, prefix: str) -> dict[str, Any] | None:
    """The event on a line of a worker's output, or None for any other line (musubi-tuner's log, a
    progress bar, an event line cut by a crash)."""
    start = line.find(prefix)
    if start < 0:
        return None
    try:
        event = json.loads(line[start + len(prefix) :])
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) and isinstance(event.get("event"), str) else None
