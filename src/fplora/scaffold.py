"""`fplora init`: a new project laid out the way the memo works (configs per version, datasets apart)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fplora.problems import Problem, UserError, display_path

LAYOUT = {
    "configs/base.yaml": "base.yaml",
    "configs/v1.yaml": "v1.yaml",
    "datasets/dataset-v1/README.md": "dataset-README.md",
}


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
    for path, template in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(templates.joinpath(template).read_text(encoding="utf-8"), encoding="utf-8")
    return list(targets)
