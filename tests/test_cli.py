"""The command line itself: version, help, start-up cost, init, render's clobber guard, spec history."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fplora import __version__
from fplora.cli import app

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_version_matches_the_package_metadata() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"fplora {pyproject['project']['version']}\n" == f"fplora {__version__}\n"


@pytest.mark.parametrize("command", ["check", "render", "init", "cache", "train", "infer", "runs"])
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "Example: fplora" in result.output


def test_help_imports_none_of_the_gpu_stack_or_the_validators() -> None:
    code = (
        "import sys, runpy; sys.argv = ['fplora', '--help']\n"
        "try:\n    runpy.run_module('fplora', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "heavy = {'torch', 'accelerate', 'wandb', 'musubi_tuner', 'pydantic', 'ruamel', 'PIL'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_init_lays_out_a_project_and_refuses_to_overwrite(tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", str(tmp_path / "proj")])
    assert result.exit_code == 0, result.output
    for name in ("configs/base.yaml", "configs/v1.yaml", "datasets/dataset-v1/README.md"):
        assert (tmp_path / "proj" / name).is_file()
    before = (tmp_path / "proj/configs/v1.yaml").read_text()
    (tmp_path / "proj/configs/v1.yaml").write_text(before + "# mine\n")
    again = runner.invoke(app, ["init", str(tmp_path / "proj")])
    assert again.exit_code == 1
    # run twice: one cause, one line at the folder, and what to do instead
    assert again.output.splitlines()[0] == (
        f"error: {tmp_path / 'proj'}: is an fplora project already (configs/base.yaml, configs/v1.yaml,"
        " datasets/dataset-v1/README.md exist); nothing written — init an empty folder, or start the next"
        " version here: copy configs/v1.yaml to configs/v2.yaml"
    )
    assert (tmp_path / "proj/configs/v1.yaml").read_text() == before + "# mine\n"
    (tmp_path / "other/configs").mkdir(parents=True)
    (tmp_path / "other/configs/v1.yaml").write_text("mine\n")
    one = runner.invoke(app, ["init", str(tmp_path / "other")])
    assert one.exit_code == 1
    assert "configs/v1.yaml: exists already; not overwriting it — init an empty folder" in one.output


def test_init_template_is_a_valid_spec_once_data_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["init"]).exit_code == 0
    result = runner.invoke(app, ["check", "configs/v1.yaml", "--skip-models"])
    # the template is valid YAML and a valid spec; only the (still empty) dataset is missing
    assert result.exit_code == 1
    assert "dataset JSONL file not found" in result.output
    assert "not made yet? `fplora dataset init <folder of pictures>` writes one" in result.output
    assert "unknown key" not in result.output


def test_render_writes_its_files_and_guards_other_specs(project, tmp_path: Path) -> None:
    v1 = project()
    result = runner.invoke(app, ["render", str(v1)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "configs/v1"
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == [
        "config-resume.toml",
        "config.toml",
        "dataset.toml",
        "infer-prompts.txt",
        "prompts.txt",
    ]
    # rendering the same spec again is fine; another spec into the same folder is refused
    assert runner.invoke(app, ["render", str(v1)]).exit_code == 0
    v2 = project(name="v2.yaml")
    config = (out / "config.toml").read_text()
    refused = runner.invoke(app, ["render", str(v2), "--out", str(out)])
    assert refused.exit_code == 1
    assert "configs/v1/config.toml: was rendered from" in refused.output
    assert "render into another folder with --out, or pass --force" in refused.output
    assert (out / "config.toml").read_text() == config
    forced = runner.invoke(app, ["render", str(v2), "--out", str(out), "--force"])
    assert forced.exit_code == 0
    assert "v2.yaml" in (out / "config.toml").read_text()


def test_render_refuses_records_check_refuses(project, tmp_path: Path) -> None:
    """A hand-trainer renders to run musubi-tuner themselves: files for a record that lacks a control
    image would fail on the GPU, so render says what check says and writes nothing."""
    v1 = project()
    (tmp_path / "data/dataset-v1/c/2_1.png").unlink()
    result = runner.invoke(app, ["render", str(v1)])
    assert result.exit_code == 1
    assert "data/dataset-v1/metadata-v1.jsonl:2: control_path_1:" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "configs/v1").exists()


def test_render_refuses_a_hand_written_file(project, tmp_path: Path) -> None:
    v1 = project()
    (tmp_path / "configs/v1").mkdir()
    (tmp_path / "configs/v1/config.toml").write_text("dit = 'mine'\n")
    result = runner.invoke(app, ["render", str(v1)])
    assert result.exit_code == 1
    assert "configs/v1/config.toml: was not written by fplora; not overwriting it" in result.output
    assert not (tmp_path / "configs/v1/dataset.toml").exists()  # all or nothing


def test_spec_defaults_to_the_last_one_used(project) -> None:
    v1 = project()
    project(name="v2.yaml")
    ambiguous = runner.invoke(app, ["render"])
    assert ambiguous.exit_code == 1
    assert (
        "no spec given and no last one; configs/ has configs/v1.yaml, configs/v2.yaml — name one, e.g. configs/v2.yaml"
        in ambiguous.output
    )
    assert runner.invoke(app, ["check", str(v1), "--skip-models"]).exit_code == 0
    again = runner.invoke(app, ["render"])
    assert again.exit_code == 0
    assert "using configs/v1.yaml (the spec of the last command)" in again.output


def test_the_only_spec_under_configs_is_picked(project) -> None:
    project()
    result = runner.invoke(app, ["check", "--skip-models"])
    assert result.exit_code == 0, result.output
    assert "using configs/v1.yaml (the only spec under configs/)" in result.output


def test_readme_first_command_works_from_the_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    result = runner.invoke(app, ["check", "configs/example.yaml", "--skip-models"])
    assert result.exit_code == 0, result.output
    assert "configs/example.yaml: ok" in result.output


def test_render_without_the_dataset_says_which_prompt_needs_it(project, tmp_path: Path) -> None:
    spec = project()
    (tmp_path / "data/dataset-v1/metadata-v1.jsonl").unlink()
    result = runner.invoke(app, ["render", str(spec)])
    assert result.exit_code == 1
    # render checks as `check --skip-models` does: the dataset's own line, not the prompt that needs it
    assert result.output == (
        "error: configs/v1.yaml:3: datasets[0].jsonl: dataset JSONL file not found:"
        " data/dataset-v1/metadata-v1.jsonl — check the path; relative paths resolve against the folder"
        " of the spec file that writes them; not made yet? `fplora dataset init <folder of pictures>`"
        " writes one\n"
    )
    assert not (tmp_path / "configs/v1").exists()


def test_init_names_the_project_after_its_folder_and_says_what_next(tmp_path: Path) -> None:
    """Two projects from one template must not share outputs: `project` and `output_dir` differ."""
    result = runner.invoke(app, ["init", str(tmp_path / "Cat Turn")])
    assert result.exit_code == 0, result.output
    base = (tmp_path / "Cat Turn/configs/base.yaml").read_text()
    assert "project: cat-turn " in base and "output_dir: /workspace/cat-turn-models" in base
    assert "my-framepack" not in base
    assert "which writes the metadata-v1.jsonl configs/v1.yaml names" in result.output
    assert f"cd '{tmp_path}/Cat Turn', then put the pictures in datasets/dataset-v1/" in result.output
    # the README's first section: pictures → dataset init, the models fetched where base.yaml looks
    for step in (
        "`fplora dataset init datasets/dataset-v1`",
        "`fplora models fetch`",
        "fplora train --cache",
    ):
        assert step in result.output


def test_the_default_spec_is_found_from_a_subfolder(project, monkeypatch: pytest.MonkeyPatch) -> None:
    v1 = project()
    monkeypatch.chdir(v1.parent)  # configs/
    result = runner.invoke(app, ["check", "--skip-models"])
    assert result.exit_code == 0, result.output
    assert "using v1.yaml (the only spec under configs/)" in result.output


def test_a_folder_given_as_the_spec_is_answered_with_its_experiments(project) -> None:
    """Only experiment specs are offered (not the base they extend, nor a dataset snippet), v2
    before v10; the project folder itself is read as its configs/."""
    v1 = project()
    project(name="v10.yaml")
    project(name="v2.yaml")
    (v1.parent / "fplora-dataset.yaml").write_text("datasets:\n  - jsonl: x.jsonl\n")
    for given in ("configs", "."):
        result = runner.invoke(app, ["check", given])
        assert result.exit_code == 1
        assert result.output.splitlines()[0] == (
            f"error: {given}: is a folder, not a spec file — name a spec file in it:"
            " configs/v1.yaml, configs/v2.yaml, configs/v10.yaml"
        )


def test_a_version_s_rendered_folder_given_as_the_spec_names_its_spec(project) -> None:
    """`configs/v1/` (a shell completes `configs/v1` to it) was answered "name a spec file (a .yaml)"."""
    spec = project()
    (spec.parent / "v1").mkdir()
    for given in ("configs/v1", "configs/v1/"):
        result = runner.invoke(app, ["check", given])
        assert result.exit_code == 1
        assert result.output.splitlines()[0] == (
            "error: configs/v1: is the folder fplora renders a spec into, not a spec file"
            " — give the spec: configs/v1.yaml"
        )


def test_the_install_hint_is_the_readme_install_line() -> None:
    from fplora.runtime import install_hint

    requirement = re.search(r'"(musubi-tuner\[cu128\] @ git\+[^"]+)"', install_hint())
    assert requirement is not None
    assert f'"{requirement.group(1)}"' in (REPO / "README.md").read_text(encoding="utf-8")


def test_train_on_files_rendered_from_another_spec_names_a_fix_train_has(project, tmp_path: Path) -> None:
    """`train` has no --force or --out: its refusal must point at `fplora render --force`."""
    v1 = project()
    v2 = project(name="v2.yaml")
    assert runner.invoke(app, ["render", str(v2), "--out", str(tmp_path / "configs/v1")]).exit_code == 0
    result = runner.invoke(app, ["train", str(v1), "--dry-run"])
    assert result.exit_code == 1
    assert "configs/v1/config.toml: was rendered from" in result.output
    assert "move them away, or overwrite them with this spec's: fplora render configs/v1.yaml --force" in (
        result.output
    )
    assert "--out" not in result.output


def test_a_comment_after_extends_does_not_make_the_base_an_experiment(project) -> None:
    """`extends:` is read as YAML reads it: `base.yaml  # house settings` names base.yaml."""
    project("extends: base.yaml  # the house settings\n")
    result = runner.invoke(app, ["check", "--skip-models"])
    assert result.exit_code == 0, result.output
    assert "using configs/v1.yaml (the only spec under configs/)" in result.output


def test_a_command_outside_a_project_remembers_nothing(
    project, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from $HOME with a spec's path, a read-only command leaves no .fplora/ there."""
    v1 = project()
    home = tmp_path_factory.mktemp("home")
    monkeypatch.chdir(home)
    assert runner.invoke(app, ["check", str(v1), "--skip-models"]).exit_code == 0
    assert list(home.iterdir()) == []


def test_the_remembered_spec_survives_moving_the_project(project, tmp_path: Path, monkeypatch) -> None:
    """rsync to a pod moves the folder: the default is kept relative to the project."""
    v1 = project()
    project(name="v2.yaml")
    assert runner.invoke(app, ["check", str(v1), "--skip-models"]).exit_code == 0
    assert (tmp_path / ".fplora/last-spec").read_text() == "configs/v1.yaml\n"
    moved = tmp_path.parent / f"{tmp_path.name}-moved"
    tmp_path.rename(moved)
    try:
        monkeypatch.chdir(moved)
        result = runner.invoke(app, ["check", "--skip-models"])
        assert "using configs/v1.yaml (the spec of the last command)" in result.output, result.output
    finally:
        moved.rename(tmp_path)


def test_render_out_naming_a_file_says_so(project, tmp_path: Path) -> None:
    v1 = project()
    (tmp_path / "rendered").write_text("a file\n")
    result = runner.invoke(app, ["render", str(v1), "--out", "rendered"])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        "error: command line: --out: rendered is a file, not a folder — name a folder (or move the file away)"
    )


def test_render_where_configs_cannot_be_written_is_one_line(project, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only configs/ (as root every folder is writable: the write itself is refused here)."""
    import errno

    from fplora import plan

    def refused(path: Path, text: str) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    v1 = project()
    monkeypatch.setattr(plan, "write_atomic", refused)
    for args in (["render", str(v1)], ["train", str(v1), "--dry-run"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, result.output
        assert result.output.splitlines()[-1] == (
            "error: configs/v1/config.toml: cannot write it: permission denied"
            " — make configs/v1 writable, or write elsewhere"
        )


def test_a_rendered_folder_that_is_a_file_is_one_line(project, tmp_path: Path) -> None:
    v1 = project()
    (tmp_path / "configs/v1").write_text("not a folder\n")
    result = runner.invoke(app, ["train", str(v1), "--dry-run"])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        "error: configs/v1/config.toml: cannot write it: a file is where a folder should be"
        " — make configs/v1 writable, or write elsewhere"
    )


def test_init_on_a_file_or_an_unwritable_place_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("mine\n")
    result = runner.invoke(app, ["init", "notes.txt"])
    assert result.exit_code == 1
    assert result.output == (
        "error: command line: DIRECTORY: notes.txt is a file, not a folder"
        " — name a new or empty folder you can write\n"
    )
    assert (tmp_path / "notes.txt").read_text() == "mine\n"
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path and real(path, mode))
    result = runner.invoke(app, ["init", "new-project"])
    assert result.exit_code == 1
    assert result.output == (
        "error: command line: DIRECTORY: new-project cannot be made: . is not writable"
        " — name a new or empty folder you can write\n"
    )


def test_a_hand_edited_rendered_file_is_not_overwritten_unsaid(project, tmp_path: Path) -> None:
    v1 = project()
    assert runner.invoke(app, ["render", str(v1)]).exit_code == 0
    config = tmp_path / "configs/v1/config.toml"
    edited = config.read_text() + "max_grad_norm = 0.5\n"
    config.write_text(edited)
    result = runner.invoke(app, ["render", str(v1)])
    assert result.exit_code == 1
    # the edit is read back: the hand-trainer's habit, said as the spec field that holds it
    assert result.output.splitlines()[-1] == (
        "error: configs/v1/config.toml: was edited since fplora rendered it (max_grad_norm = 0.5 added);"
        " not overwriting it — put it in the spec (max_grad_norm: train.optimizer.max_grad_norm), then"
        " render with --force, which replaces the edited file"
    )
    assert config.read_text() == edited
    train = runner.invoke(app, ["train", str(v1), "--dry-run"])
    assert train.exit_code == 1
    assert train.output.splitlines()[-1].endswith(
        " — put it in the spec (max_grad_norm: train.optimizer.max_grad_norm), then run"
        " `fplora render configs/v1.yaml --force`, which replaces the edited file"
    )
    changed = edited.replace("max_grad_norm = 0.5", "network_dropout = 0.1")
    config.write_text(changed.replace("max_train_steps = 4", "max_train_steps = 8"))
    other = runner.invoke(app, ["render", str(v1)])
    assert other.output.splitlines()[-1] == (
        "error: configs/v1/config.toml: was edited since fplora rendered it (max_train_steps = 8, was 4;"
        " network_dropout = 0.1 added); not overwriting it — put them in the spec (max_train_steps:"
        " train.max_train_steps; network_dropout: musubi: config:), then render with --force, which"
        " replaces the edited file"
    )
    assert runner.invoke(app, ["render", str(v1), "--force"]).exit_code == 0
    assert "max_grad_norm" not in config.read_text()
    dataset = tmp_path / "configs/v1/dataset.toml"
    text = dataset.read_text()
    dataset.write_text(
        text.replace("batch_size = 2", "batch_size = 4").replace(
            "[[datasets]]", "[[datasets]]\nnum_repeats = 3"
        )
    )
    refused = runner.invoke(app, ["render", str(v1)])
    assert refused.output.splitlines()[-1] == (
        "error: configs/v1/dataset.toml: was edited since fplora rendered it (general.batch_size = 4, was 2;"
        " datasets[0].num_repeats = 3 added); not overwriting it — put them in the spec (batch_size:"
        " data.batch_size; num_repeats: datasets[0].num_repeats (or data.num_repeats for every dataset)),"
        " then render with --force, which replaces the edited file"
    )


def test_a_changed_spec_renders_again_without_force(project, tmp_path: Path) -> None:
    v1 = project()
    assert runner.invoke(app, ["render", str(v1)]).exit_code == 0
    v1.write_text(v1.read_text() + "train:\n  max_train_steps: 7\n")
    result = runner.invoke(app, ["render", str(v1)])
    assert result.exit_code == 0, result.output
    assert "max_train_steps = 7" in (tmp_path / "configs/v1/config.toml").read_text()


def test_a_moved_project_keeps_its_rendered_files(project, tmp_path: Path, monkeypatch) -> None:
    """rsync to a pod moves the folder: its rendered files still know their spec."""
    v1 = project()
    assert runner.invoke(app, ["render", str(v1)]).exit_code == 0
    moved = tmp_path.parent / f"{tmp_path.name}-moved"
    tmp_path.rename(moved)
    try:
        monkeypatch.chdir(moved)
        for args in (["render", "configs/v1.yaml"], ["train", "configs/v1.yaml", "--dry-run"]):
            result = runner.invoke(app, args)
            assert result.exit_code == 0, result.output
        other = moved / "configs/v2.yaml"
        other.write_text((moved / "configs/v1.yaml").read_text())
        refused = runner.invoke(app, ["render", str(other), "--out", "configs/v1"])
        assert refused.exit_code == 1
        assert (
            "configs/v1/config.toml: was rendered from configs/v1.yaml; not overwriting it" in refused.output
        )
    finally:
        moved.rename(tmp_path)


def test_a_broken_rule_and_a_missing_image_are_reported_together(project, tmp_path: Path) -> None:
    """A spec that loads but breaks a cross-field rule still has its records and images checked:
    one run shows both problems, in file and line order, instead of one round after the other."""
    spec = project("train:\n  fp8_scaled: true\n")
    (tmp_path / "data/dataset-v1/t/2.png").unlink()
    result = runner.invoke(app, ["check", str(spec), "--skip-models"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert (
        lines[0]
        == "error: configs/v1.yaml:5: train.fp8_scaled: fp8_scaled needs fp8_base — add `fp8_base: true`"
    )
    assert lines[1].startswith("error: data/dataset-v1/metadata-v1.jsonl:2: image_path: ")
    assert "t/2.png" in lines[1]
    assert lines[-1] == "configs/v1.yaml: 2 errors, 0 warnings"


def test_a_rule_that_changes_what_the_records_mean_is_reported_alone(project, tmp_path: Path) -> None:
    """A prompt naming a dataset that is not there makes the record checks meaningless: only the
    rule's error is said, not a flood of follow-on errors."""
    spec = project("sample:\n  prompts:\n    - record: 1\n      dataset: 3\n")
    (tmp_path / "data/dataset-v1/t/2.png").unlink()
    result = runner.invoke(app, ["check", str(spec), "--skip-models"])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "error: configs/v1.yaml:7: sample.prompts[0].dataset: there is no datasets[3] — use 0..0",
        "configs/v1.yaml: 1 error, 0 warnings",
    ]


def test_a_quoted_tilde_in_a_path_argument_is_the_home_folder(
    project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`fplora check "~/my lora/configs/v1.yaml"`: quoted for its space, the `~` reaches fplora as
    written (the shell expands it only unquoted), and the spec was "not found"."""
    project()
    monkeypatch.setenv("HOME", str(tmp_path))
    result = runner.invoke(app, ["check", "~/configs/v1.yaml", "--skip-models"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["render", "~/configs/v1.yaml"]).exit_code == 0
    (tmp_path / "out" / "sample").mkdir(parents=True)
    empty = runner.invoke(app, ["sheet", "~/out/sample"])
    assert "is not a folder" not in empty.output and "holds no infer folder" in empty.output
