#!/usr/bin/env python3
"""Fold a `preset_speed.py` results file into `src/fplora/presets/measurements.json`.

The GPU session writes `$OUT/preset_speed.json` (every variant's settings as fplora resolved them,
s/step, samples/s, peak, and the run's date, card and versions). Here, after the call:

    uv run python benchmarks/fold_speed.py <files_at>/preset_speed.json            # show the rows
    uv run python benchmarks/fold_speed.py <files_at>/preset_speed.json --write    # and add them

Each measured variant becomes one row under a new source named `preset-speed-<date>-<card>` (or
`--source NAME`), with the settings the run used (not the ones asked for: `gpu: auto` records what
it chose). A variant that ran out of memory becomes an out-of-memory row (peak and s/step null, as
issue 12's cells are kept); one that failed otherwise, or was skipped, is left out and listed. Rows
already there for the same source are replaced, so folding the same run again is safe; a source
that holds another run's rows (a second run on the same day and card) is refused, naming
`--source`, rather than replaced.
Then `uv run pytest tests/test_presets.py` says whether the memory model still holds every row
within 2 % (docs/presets.md: refit it, or mark the shape as the model's limit).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

MEASUREMENTS = Path(__file__).resolve().parents[1] / "src" / "fplora" / "presets" / "measurements.json"
CARDS = {"H200": "h200", "H100 80GB": "h100-80g", "H100 PCIe": "h100-80g", "H100 SXM": "h100-80g"}
REFERENCE = (512, 768, 2)


def card_key(name: str) -> str | None:
    return next((key for part, key in CARDS.items() if part.lower() in name.lower()), None)


def source_name(result: dict[str, Any]) -> str:
    return f"preset-speed-{result['date'][:10]}-{card_key(result['card']) or 'gpu'}"


def rows_of(result: dict[str, Any], source: str | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """measurements.json rows for every variant that trained or ran out of memory; what was left out."""
    gpu = card_key(result["card"])
    if gpu is None:
        raise SystemExit(f"{result['card']!r}: no preset for this card in {MEASUREMENTS.name}")
    source = source or source_name(result)
    rows, left = [], []
    for name, entry in result["variants"].items():
        settings = entry.get("settings")
        if not settings or entry.get("skipped") or (entry.get("rc") and not entry.get("oom")):
            left.append(f"{name}: {entry.get('skipped') or 'rc ' + str(entry.get('rc'))}")
            continue
        row: dict[str, Any] = {
            "gpu": gpu,
            "source": source,
            "batch": settings["batch"],
            "blocks_to_swap": settings["blocks_to_swap"],
            "gradient_checkpointing": settings["gradient_checkpointing"],
            "s_per_step": None if entry.get("oom") else entry.get("s_per_micro_batch"),
            "peak_mib": None if entry.get("oom") else entry.get("peak_MiB_run"),
        }
        if row["s_per_step"] is None and row["peak_mib"] is not None:
            left.append(f"{name}: no step time measured")
            continue
        for key in ("fp8", "compile"):
            if settings.get(key):
                row[key] = True
        if settings.get("split_attn") is False:
            row["split_attn"] = False
        width, height, controls = settings["width"], settings["height"], settings["controls"]
        if (width, height) != REFERENCE[:2]:
            row["width"], row["height"] = width, height
        if controls != REFERENCE[2]:
            row["controls"] = controls
        if settings.get("options"):
            row["options"] = settings["options"]
        accumulation = settings.get("accumulation", 1)
        row["note"] = f"{name}: {entry.get('what', '')}" + (
            f", x {accumulation} accumulation" if accumulation > 1 else ""
        )
        if entry.get("oom"):
            seen = entry.get("peak_MiB_run")
            row["note"] += "; out of memory" + (f" (nvidia-smi saw {seen:,} MiB)" if seen else "")
        if entry.get("first_step_extra_s") and settings.get("compile"):
            row["first_step_extra_s"] = round(entry["first_step_extra_s"])
        rows.append(row)
    return rows, left


def dumps(data: dict[str, Any]) -> str:
    """measurements.json as it is kept: one row per line, the rest indented."""
    rows = data["rows"]
    text = json.dumps({**data, "rows": ["@ROWS@"]}, indent=1, ensure_ascii=False)
    lines = ",\n".join("  " + json.dumps(row, ensure_ascii=False) for row in rows)
    return text.replace('  "@ROWS@"', lines) + "\n"


def fold(
    data: dict[str, Any], result: dict[str, Any], source: str | None = None
) -> tuple[dict[str, Any], list[str]]:
    """`data` with `result`'s rows under `source` (default: source_name), and what was left out.
    A source already holding another run (its `run` is not this result's date and time) is refused:
    replacing it would drop that run's rows."""
    source = source or source_name(result)
    held = data["sources"].get(source)
    if held is not None and held.get("run") != result["date"]:
        raise SystemExit(
            f"{source}: already holds the rows of another run ({held.get('run') or held['date']});"
            f" fold this one under its own name: --source {source}-<what it measured>"
        )
    rows, left = rows_of(result, source)
    kept = [row for row in data["rows"] if row["source"] != source]
    sources = dict(data["sources"])
    sources[source] = {
        "date": result["date"][:10],
        "run": result["date"],
        "where": f"one {result['card']}, benchmarks/preset_speed.py --matrix, side by side in one session",
        "versions": ", ".join(f"{k} {v}" for k, v in result.get("versions", {}).items()),
        "command": result.get("command", "benchmarks/preset_speed.py --matrix"),
    }
    return {**data, "sources": sources, "rows": kept + rows}, left


def table(data: dict[str, Any]) -> str:
    """docs/presets.md's "The measurements" table, MFU columns included (fplora.presets.flops)."""
    sys.path.insert(0, str(MEASUREMENTS.parents[2]))
    from fplora.presets import flops

    gpus = data["gpus"]
    lines = [
        "| GPU | source | batch | swap | checkpointing | s/step | samples/s | peak MiB | free"
        " | MFU, 3x | MFU, LoRA count |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in data["rows"]:
        ref_w, ref_h, ref_c = REFERENCE
        width, height = row.get("width", ref_w), row.get("height", ref_h)
        controls = row.get("controls", ref_c)
        batch = f"{row['batch']}"
        extras = [
            label
            for key, label in (("fp8", "fp8"), ("compile", "compile"), ("processes", "2 GPUs, per GPU"))
            if row.get(key)
        ]
        if row.get("split_attn") is False:
            extras.append("no split_attn")
        if controls != ref_c or (width, height) != (ref_w, ref_h):
            extras.append(f"{width}x{height}, {controls} control{'s' if controls != 1 else ''}")
        extras += row.get("options", [])
        if extras:
            batch += " + " + ", ".join(extras)
        marks = [
            m
            for m, on in (
                ("superseded", row.get("superseded")),
                ("time not used", row.get("time_unreliable")),
                ("reported, not reproduced", row.get("unreproduced")),
            )
            if on
        ]
        source = row["source"] + (f" ({'; '.join(marks)})" if marks else "")
        peak, s_step = row["peak_mib"], row["s_per_step"]
        memory = gpus[row["gpu"]]["memory_mib"]
        cells = [
            row["gpu"],
            source,
            batch,
            str(row["blocks_to_swap"]),
            "yes" if row["gradient_checkpointing"] else "no",
        ]
        if peak is None:
            lines.append("| " + " | ".join([*cells, "out of memory", "", "", "", "", ""]) + " |")
            continue
        rate = row["batch"] / s_step if s_step else None
        cells += [
            f"{s_step:g}" if s_step else "",
            f"{rate:.3f}" if rate else "",
            f"{peak:,}",
            f"{1 - peak / memory:.1%}",
        ]
        if rate:
            tok = flops.tokens(width, height, controls)
            f = flops.per_sample(tok)
            cells += [
                f"{flops.mfu(rate, f.convention, row['gpu']):.1%}",
                f"{flops.mfu(rate, f.lora, row['gpu']):.1%}",
            ]
        else:
            cells += ["", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("results", type=Path, nargs="?", help="preset_speed.json from a --matrix run")
    parser.add_argument("--table", action="store_true", help="print docs/presets.md's measurements table")
    parser.add_argument("--write", action="store_true", help=f"write {MEASUREMENTS.name}")
    parser.add_argument("--measurements", type=Path, default=MEASUREMENTS)
    parser.add_argument(
        "--source", help="the rows' source name (default preset-speed-<date>-<card>): one per run"
    )
    args = parser.parse_args()
    data = json.loads(args.measurements.read_text(encoding="utf-8"))
    if args.table:
        print(table(data))
        return 0
    if args.results is None:
        parser.error("a preset_speed.json to fold, or --table")
    result = json.loads(args.results.read_text(encoding="utf-8"))
    source = args.source or source_name(result)
    folded, left = fold(data, result, source)
    for row in folded["rows"]:
        if row["source"] == source:
            print(json.dumps(row, ensure_ascii=False))
    for line in left:
        print(f"left out: {line}", file=sys.stderr)
    if args.write:
        args.measurements.write_text(dumps(folded), encoding="utf-8")
        print(f"wrote {args.measurements}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
