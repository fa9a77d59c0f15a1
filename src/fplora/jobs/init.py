"""`fplora init`: write a starter project, say what was written and what to do next."""

from __future__ import annotations

import shlex
from pathlib import Path

from fplora.jobs import output
from fplora.scaffold import scaffold


def run_init(directory: Path) -> int:
    ignore = directory / ".gitignore"
    had_ignore = ignore.is_file()
    for path in scaffold(directory):
        done = "added fplora's entries to" if path == ignore and had_ignore else "created"
        output.line(f"{done} {output.shown(path)}")
    go = "" if directory.resolve() == Path.cwd() else f"cd {shlex.quote(output.shown(directory))}, then "
    output.line(
        "next:\n"
        "  1. put one JSON record per line in datasets/dataset-v1/metadata-v1.jsonl"
        " (datasets/dataset-v1/README.md says how)\n"
        "  2. in configs/base.yaml set models.dir (or FPLORA_MODELS_DIR) and train.output_dir\n"
        f"  3. {go}fplora check, fplora cache, fplora train"
    )
    return 0
