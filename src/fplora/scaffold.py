"""`fplora init`: a new project laid out the way the memo works (configs per version, datasets apart)."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from fplora.problems import Problem, UserError, display_path

LAYOUT = {
    "configs/base.yaml": "base.yaml",
    "configs/v1.yaml": "v1.yaml",
    "datasets/dataset-v1/README.md": "dataset-README.md",
}


PLACEHOLDER = "my-framepack-project"


def project_name(root: Path) -> str:
    """The project folder's name as a spec `project:` (it names outputs and the wandb project).

    Two projects started from the same template would otherwise share `project:` and
    `output_dir`, and the second would find the first one's run as its own."""
    slug = re.sub(r"[^a-z0-9]+", "-", root.resolve().name.lower()).strip("-")
    return slug or PLACEHOLDER


def scaffold(root: Path) -> list[Path]:
    """Write the starter files; refuse (before writing anything) if one exists."""
    targets = {root / name: template for name, template in LAYOUT.items()}
    existing = [path for path in targets if path.exists()]
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
    for path, template in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        text = templates.joinpath(template).read_text(encoding="utf-8").replace(PLACEHOLDER, name)
        path.write_text(text, encoding="utf-8")
    return list(targets)
