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
        f"  1. {go}put the pictures in datasets/dataset-v1/ (targets/, control_0/, control_1/, a"
        " <stem>.txt caption beside each target) and run `fplora dataset init datasets/dataset-v1`,"
        " which writes the metadata-v1.jsonl configs/v1.yaml names; or write that file by hand"
        " (datasets/dataset-v1/README.md says how)\n"
        "  2. export FPLORA_MODELS_DIR=<the models' folder> (configs/base.yaml's models.dir), then"
        " `fplora models fetch`; set train.output_dir in configs/base.yaml\n"
        "  3. fplora check (--skip-models until the models are there), then on the GPU box:"
        " fplora train --cache"
    )
    return 0
