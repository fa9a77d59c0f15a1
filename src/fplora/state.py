"""Where a project keeps fplora's own state (`.fplora/`), found from a spec's path.

Commands remember things between runs there (the last spec, image verdicts, ...). The folder sits
at the project's root, beside `configs/`: a spec in `configs/` uses the folder above it, a spec
elsewhere the folder it is in, unless that folder already holds a `.fplora/`.
"""

from __future__ import annotations

from pathlib import Path

STATE_DIR = ".fplora"


def project_state(spec_path: Path) -> Path:
    """`.fplora/` of the project `spec_path` belongs to (not created here)."""
    folder = spec_path.absolute().parent
    if not (folder / STATE_DIR).is_dir() and folder.name == "configs":
        folder = folder.parent
    return folder / STATE_DIR
