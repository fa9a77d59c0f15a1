"""The options several verbs share, typed once so their help reads the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def home(value: Path | None) -> Path | None:
    """A path option's leading `~` expanded: the shell expands it only at the start of a word, so
    `--out=~/loras` arrives as a literal `~`, which would make a folder named `~` in the current one."""
    return value.expanduser() if value is not None else None


def homes(values: list[Path] | None) -> list[Path] | None:
    """`home` for each path of a repeated argument."""
    return [value.expanduser() for value in values] if values is not None else None


SpecArg = Annotated[
    Path | None,
    typer.Argument(
        help="Spec file (configs/v8.yaml). Default: the spec of this project's last command.",
        show_default=False,
        callback=home,  # quoted for a space in the path, `"~/my lora/configs/v1.yaml"` keeps its `~`
    ),
]
Gpu = Annotated[
    str | None,
    typer.Option(
        "--gpu",
        metavar="<preset>",
        help="GPU preset: auto, h200, h100-80g, a6000-48g, 4090-24g (wins over the spec's gpu:)."
        " Settings the spec writes win over the preset.",
        show_default=False,
    ),
]
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Render files and print the commands, one per line; run nothing.")
]
NoRehearse = Annotated[
    bool,
    typer.Option(
        "--no-rehearse",
        help="Do not rehearse first (by default the spec's commands are rehearsed on stand-in models"
        " when what they render changed since the last passed rehearsal; see `fplora rehearse`).",
    ),
]


def lora(help: str) -> Any:
    """`--lora <checkpoint>`, as `infer`, `eval` and `export` take it: one flag, one metavar. The help
    is the verb's own, since what each accepts and defaults to differs."""
    return typer.Option("--lora", metavar="<checkpoint>", help=help)


def redo(help: str) -> Any:
    """`--redo`: make again what is already made with these settings; the help says what that is."""
    return typer.Option("--redo", help=help)
