"""fplora's side of the sweep worker's protocol (`fplora/worker/sweep.py`): the plan it reads, one
entry per (checkpoint, multiplier) cell, and the events it prints."""

from __future__ import annotations

import json
from typing import Any

from fplora.protocol import events
from fplora.runs.infer_folders import Pair

PROTOCOL = 1
EVENT_PREFIX = "fplora-sweep-event "


def cell_id(index: int) -> str:
    return f"c{index}"


def plan_json(generate_args: list[str], pairs: list[Pair]) -> str:
    """The plan the worker reads: generate's shared options and one entry per cell to make."""
    cells = [
        {
            "id": cell_id(index),
            "lora": str(pair.checkpoint.path),
            "multiplier": pair.multiplier,
            "save_path": str(pair.save_path),
            "label": pair.checkpoint.label,
        }
        for index, pair in enumerate(pairs)
    ]
    plan = {"protocol": PROTOCOL, "generate_args": generate_args, "cells": cells}
    return json.dumps(plan, indent=1, ensure_ascii=False) + "\n"


def parse_event(line: str) -> dict[str, Any] | None:
    """The sweep worker's event on a line of its output, or None for any other line."""
    return events.parse_event(line, EVENT_PREFIX)
