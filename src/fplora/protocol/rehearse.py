"""fplora's side of the rehearsal worker's protocol (`fplora/worker/rehearse.py`): its version and the
events it prints among musubi-tuner's output."""

from __future__ import annotations

from typing import Any

from fplora.protocol import events

PROTOCOL = 1
EVENT_PREFIX = "fplora-rehearse-event "


def parse_event(line: str) -> dict[str, Any] | None:
    """The rehearsal worker's event on a line of its output, or None for any other line."""
    return events.parse_event(line, EVENT_PREFIX)
