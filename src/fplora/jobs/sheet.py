"""`fplora sheet`: contact sheets of a folder's infer folders, the index pages' paths printed."""

from __future__ import annotations

from pathlib import Path

from fplora.jobs import output
from fplora.musubi.names import TRAINING_SAMPLE_DIR
from fplora.problems import Problem, UserError
from fplora.runs.infer_folders import FOLDER_RECORD, parse_save_dir_name, save_root
from fplora.sheet.draw import build
from fplora.spec.models import Spec


def run_sheet(
    directory: Path | None, version: str | None, spec: Spec | None = None, *, its_version: bool = False
) -> int:
    """Sheets of `directory`'s infer folders; without one, of the folder `spec`'s infers write to,
    only the spec's version's when `its_version` (a spec named on the command line) and no
    `version` is given."""
    if directory is None:
        assert spec is not None, "a spec names the default folder"
        directory = save_root(spec)
        if its_version and version is None:
            version = spec.version
        which = f", version {version}" if its_version else ""
        output.line(
            f"using {output.shown(directory)}{which} (where {output.shown(spec.path)} infers into)", err=True
        )
    if not directory.is_dir():
        raise UserError(
            Problem("command line", None, "DIRECTORY", f"{output.shown(directory)} is not a folder")
        )
    indexes = build(directory, version)
    if not indexes:
        which = f"{version}-" if version else "<version>-"
        others = _versions(directory)
        fix = f"it holds those of {', '.join(others)}: --version {others[0]}" if version and others else ""
        sample = directory / TRAINING_SAMPLE_DIR
        if not others and sample.is_dir() and _versions(sample):
            # the run's output_dir given for the folder infer writes into, its sample/
            fix = f"its {TRAINING_SAMPLE_DIR}/ holds them: fplora sheet {output.shown(sample)}"
        raise UserError(
            Problem(
                "command line",
                None,
                "DIRECTORY",
                f"{output.shown(directory)} holds no infer folder"
                f" ({which}stepNNNNNNNN-lm<m> with fplora-infer.json)",
                fix,
            )
        )
    for index in indexes:
        output.line(output.shown(index))
    return 0


def _versions(directory: Path) -> list[str]:
    """The versions whose infer folders `directory` holds, for a `--version` that names none."""
    found = {
        parsed[0]
        for folder in directory.iterdir()
        if (folder / FOLDER_RECORD).is_file() and (parsed := parse_save_dir_name(folder.name))
    }
    return sorted(found)
