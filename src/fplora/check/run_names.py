"""Where a run writes, against other specs: two specs with one `output_dir` and output name write the
same `-stepNNNNNNNN` checkpoints, states and manifest, each over the other's.

Two places show it before any GPU time: a spec beside this one (a copied version that kept its
base's `output_name`, or a base that sets one for every version) resolving to the same run, and a
run already in `output_dir` whose manifest names another spec file (another project that kept the
same `project:` and `output_dir`).
"""

from __future__ import annotations

from pathlib import Path

from fplora.problems import Problem, UserError, display_path
from fplora.runs.catalogue import Catalogue
from fplora.runs.manifest import UnreadableManifest
from fplora.spec import load_spec
from fplora.spec.load import specs_under
from fplora.spec.models import Spec
from fplora.state import configs_folder

_NAMING = ("output_name", "version:")
"""Words a spec must hold to name its run other than `<project>-<its file stem>`."""


def _run_key(spec: Spec) -> tuple[Path, str]:
    return spec.train.output_dir.resolve(), spec.output_name


def _where_named(spec: Spec) -> tuple[str, ...]:
    """The key that gives the run its name: `train.output_name` or `version` when written, else
    `train.output_dir` (it points the problem at a line the user can change)."""
    for key in (("train", "output_name"), ("version",)):
        if spec.written(key):
            return key
    return ("train", "output_dir")


def _siblings(spec: Spec) -> list[Spec]:
    """The other specs that may name their run the way this one does: those beside it, and those of
    the same file name elsewhere in the project's `configs/` (`configs/v4.yaml` and
    `configs/archive/v4.yaml` both name theirs `<project>-v4`; only the spec's own folder was read)."""
    named = spec.written(("train", "output_name")) or spec.written(("version",))
    found = []
    for other in specs_under(configs_folder(spec.path) or spec.path.parent):
        if other.resolve() == spec.path.resolve():
            continue
        try:
            text = other.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if other.parent.resolve() != spec.path.parent.resolve() and other.stem != spec.path.stem:
            # elsewhere in configs/, one version name (`<project>-<stem>`) is the slip; specs in
            # folders of their own naming one output_name on purpose (infer settings of one run) are not
            continue
        if not named and other.stem != spec.path.stem and not any(word in text for word in _NAMING):
            continue  # `<project>-<stem>`: a different stem never collides
        try:
            found.append(load_spec(other))
        except UserError:
            continue  # a broken sibling is its own check's business
    return found


def check_run_names(spec: Spec, run: Catalogue | None = None) -> list[Problem]:
    """An error for a spec beside this one that writes the same run; a warning for a run in
    `output_dir` that another spec file started (`run`: the command's catalogue of it)."""
    problems = []
    key = _run_key(spec)
    shown_dir = display_path(spec.train.output_dir)
    for other in _siblings(spec):
        if _run_key(other) == key:
            problems.append(
                spec.problem(
                    _where_named(spec),
                    f"{display_path(other.path)} writes the same run {spec.output_name} into {shown_dir}:"
                    " the two would overwrite each other's checkpoints and states",
                    "give each spec its own train.output_name (or leave it out: <project>-<version>"
                    " differs per spec file)",
                )
            )
    return problems + foreign_run(spec, run)


def foreign_run(spec: Spec, run: Catalogue | None = None) -> list[Problem]:
    """A warning when the run under the spec's output name was started from another spec file: two
    projects with the same `project:`, version and `output_dir` share one run, and the second would
    train into, resume, list or infer from the first one's as its own. Every command that opens a job
    says it through `check_spec`; `fplora runs`, which opens none, asks here. An unreadable manifest
    gives no warning: the command that needs it says so."""
    try:
        manifest = (run or Catalogue.of(spec)).manifest
    except UnreadableManifest:
        return []
    if manifest is None or not manifest.spec or Path(manifest.spec).resolve() == spec.path.resolve():
        return []
    return [
        spec.problem(
            _where_named(spec),
            f"run {spec.output_name} in {display_path(spec.train.output_dir)} was started from"
            f" {display_path(manifest.spec)}, not this spec: training would write into the other spec's run",
            "give this spec its own train.output_name, project: or output_dir (if the project folder"
            " moved, this is the same spec: ignore it)",
            "warning",
        )
    ]
