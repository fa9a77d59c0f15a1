"""Where a project keeps fplora's own state (`.fplora/`), found from a spec's path, and where the
user's machine keeps what is made once per machine (`user_cache`).

Commands remember things between runs there (the last spec, image verdicts, ...). The folder sits
at the project's root, beside `configs/`: a spec in `configs/` (or a subfolder of it) uses the
folder above it, a spec elsewhere the folder it is in, unless that folder already holds a `.fplora/`.
"""

from __future__ import annotations

import os
from pathlib import Path

STATE_DIR = ".fplora"


def configs_folder(spec_path: Path) -> Path | None:
    """The project's `configs/` that `spec_path` is in: its own folder or the nearest above named so
    (`configs/archive/v1.yaml`, `configs/char-a/v2.yaml`); None for a spec outside one."""
    folder = spec_path.absolute().parent
    return next((f for f in (folder, *folder.parents) if f.name == "configs"), None)


def project_state(spec_path: Path) -> Path:
    """`.fplora/` of the project `spec_path` belongs to (not created here). A spec in a subfolder of
    `configs/` belongs to the same project as those beside `configs/`: its own `.fplora/` there gave
    it a cache store of its own (its caches computed again, out of `cache status` and `prune`)."""
    folder = spec_path.absolute().parent
    if (folder / STATE_DIR).is_dir():
        return folder / STATE_DIR
    configs = configs_folder(spec_path)
    return (configs.parent if configs is not None else folder) / STATE_DIR


def user_cache() -> Path:
    """fplora's folder in the user's cache (XDG_CACHE_HOME, else ~/.cache): what is made or asked once
    per machine rather than once per project (a rehearsal's stand-in DiT and compile caches, torch's
    answer to `gpu: auto`). Not created here."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fplora"
