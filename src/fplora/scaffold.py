"""`fplora init`: a new project laid out for versioned experiments (configs per version, datasets apart).

Besides the starter specs and the dataset folder's README it writes a `.gitignore` for what fplora
writes and can write again: its own state (`.fplora/`) and everything under `configs/<version>/`,
the rendered musubi-tuner files and, by default, the latent and text-encoder caches (gigabytes).
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from fplora.problems import Problem, UserError, display_path
from fplora.writable import folder_problem, write_problem

LAYOUT = {
    "configs/base.yaml": "base.yaml",
    "configs/v1.yaml": "v1.yaml",
    "datasets/dataset-v1/README.md": "dataset-README.md",
}


PLACEHOLDER = "my-framepack-project"

GITIGNORE = {
    ".fplora/": "fplora's state: the spec of the last command",
    "configs/**/*": "rendered by fplora from configs/<version>.yaml into configs/<version>/, with the caches"
    " under cache/; the specs themselves are kept, in configs/ and its subfolders",
    "!configs/**/": "",
    "!configs/**/*.yaml": "",
    "!configs/**/*.yml": "",
}
"""What fplora writes into a project that git should not keep (pattern → why; "" for a pattern
that goes with the one above), one line each. `configs/*/` also hid the specs of a subfolder
(`configs/archive/v1.yaml`) from git: everything under configs/ is ignored but the folders, searched,
and the specs."""


def _gitignore(existing: str | None) -> str | None:
    """The `.gitignore` text with fplora's entries, or None when it already has them all.

    An existing file (a project that is a git repository already) keeps its lines; only the
    missing entries are added, so `init` never takes away what someone wrote there."""
    have = {line.strip() for line in (existing or "").splitlines()}
    missing = [(pattern, why) for pattern, why in GITIGNORE.items() if pattern not in have]
    if not missing:
        return None
    block = "".join((f"# {why}\n" if why else "") + f"{pattern}\n" for pattern, why in missing)
    if not existing:
        return block
    return existing + ("" if existing.endswith("\n") else "\n") + "\n" + block


def project_name(root: Path) -> str:
    """The project folder's name as a spec `project:` (it names outputs and the wandb project).

    Two projects started from the same template would otherwise share `project:` and
    `output_dir`, and the second would find the first one's run as its own."""
    slug = re.sub(r"[^a-z0-9]+", "-", root.resolve().name.lower()).strip("-")
    return slug or PLACEHOLDER


def scaffold(root: Path) -> list[Path]:
    """Write the starter files and fplora's `.gitignore` entries; refuse (before writing anything)
    if a starter file exists. Returns the files written, `.gitignore` last when it changed."""
    unusable = folder_problem(root)
    if unusable is not None:
        message, _ = unusable
        raise UserError(
            Problem("command line", None, "DIRECTORY", message, "name a new or empty folder you can write")
        )
    targets = {root / name: template for name, template in LAYOUT.items()}
    existing = [path for path in targets if path.exists()]
    if len(existing) > 1:  # init run again in its project: one cause, said once
        shown = ", ".join(path.relative_to(root).as_posix() for path in existing)
        where = display_path(root)
        raise UserError(
            Problem(
                f"{root.resolve().name} (this folder)" if where == "." else where,
                None,
                "",
                f"is an fplora project already ({shown} exist); nothing written",
                "init an empty folder, or start the next version here: copy configs/v1.yaml to"
                " configs/v2.yaml",
            )
        )
    if existing:
        raise UserError(
            [
                Problem(
                    display_path(p), None, "", "exists already; not overwriting it", "init an empty folder"
                )
                for p in existing
            ]
        )
    templates = resources.files("fplora.templates")
    name = project_name(root)
    path = root
    try:
        for path, template in targets.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            text = templates.joinpath(template).read_text(encoding="utf-8").replace(PLACEHOLDER, name)
            path.write_text(text, encoding="utf-8")
        written = list(targets)
        path = root / ".gitignore"
        entries = _gitignore(path.read_text(encoding="utf-8") if path.is_file() else None)
        if entries is not None:
            path.write_text(entries, encoding="utf-8")
            written.append(path)
    except OSError as error:  # what the check above cannot see: a read-only disk, a file in the way
        raise UserError(write_problem(path, error, "init a folder you can write")) from None
    return written
