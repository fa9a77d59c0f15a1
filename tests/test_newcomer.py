"""What a new user stumbled on in a walkthrough (fresh clone, README only), each pinned to the exact
message fplora now prints: errors that name the fix, and warnings for what was accepted silently.

Each case goes through the command line (`fplora check`) on the `project` fixture of conftest.py:
configs/base.yaml holds the models and house settings, configs/v1.yaml extends it, and the dataset
data/dataset-v1/metadata-v1.jsonl has two records with relative paths.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fplora.cli import app

runner = CliRunner()
DATASET = Path("data/dataset-v1/metadata-v1.jsonl")
Make = Callable[..., Path]


def safetensors_bytes() -> bytes:
    """A minimal whole safetensors file (one F16 tensor): a LoRA file as far as fplora looks."""
    header = json.dumps({"w": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}}).encode()
    return struct.pack("<Q", len(header)) + header + bytes(4)


def check(spec: Path, *options: str) -> tuple[int, list[str]]:
    result = runner.invoke(app, ["check", str(spec), *options])
    return result.exit_code, result.output.splitlines()


def records(absolute: bool = False) -> list[dict[str, str]]:
    """The fixture dataset's two records, with absolute paths when musubi-tuner should read the
    file itself (fplora hands it a rewritten copy when any path is relative)."""
    found = [json.loads(line) for line in DATASET.read_text(encoding="utf-8").splitlines()]
    if absolute:
        base = DATASET.parent.resolve()
        found = [{k: v if k == "caption" else str(base / v) for k, v in r.items()} for r in found]
    return found


def write(lines: list[dict[str, str] | str], prefix: str = "") -> None:
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    DATASET.write_text(prefix + text + "\n", encoding="utf-8")


# --- dataset JSONL -------------------------------------------------------------------------------

BOM = "\ufeff"
BOM_MESSAGE = "starts with a byte-order mark (BOM), which musubi-tuner's JSONL reader fails on"


def test_bom_where_musubi_reads_the_file_itself_is_an_error(project: Make) -> None:
    spec = project()
    write(records(absolute=True), prefix=BOM)
    code, lines = check(spec, "--skip-models")
    assert code == 1
    assert lines == [
        f"error: {DATASET}:1: {BOM_MESSAGE} — save it as UTF-8 without BOM",
        "configs/v1.yaml: 1 error, 0 warnings",
    ]


def test_bom_before_relative_records_is_a_warning_and_the_copy_has_none(project: Make) -> None:
    spec = project()
    write(records(), prefix=BOM)
    code, lines = check(spec, "--skip-models")
    assert code == 0
    assert lines[0] == (
        f"warning: {DATASET}:1: {BOM_MESSAGE}; fplora hands musubi-tuner a copy without it"
        " (the records use relative paths) — save it as UTF-8 without BOM"
    )
    assert runner.invoke(app, ["render", str(spec)]).exit_code == 0
    copy = Path("configs/v1/data/0-metadata-v1.jsonl").read_text(encoding="utf-8")
    assert not copy.startswith(BOM)
    assert len(copy.splitlines()) == 2


@pytest.mark.parametrize(
    ("key", "suggested"),
    [
        ("control_image_1", "control_path_1"),
        ("control_1", "control_path_1"),
        ("controlImage0", "control_path_0"),
        ("control", "control_path_0"),
        ("captoin", "caption"),
        ("target", "image_path"),
        ("text", "caption"),
    ],
)
def test_a_misnamed_record_key_gets_the_key_it_means(project: Make, key: str, suggested: str) -> None:
    spec = project()
    first, second = records()
    known = {"control_path_1": "control_path_1", "caption": "caption", "image_path": "image_path"}
    replaced = known.get(suggested, "control_path_1" if suggested.startswith("control") else suggested)
    first[key] = first.pop(replaced)
    write([first, second])
    code, lines = check(spec, "--skip-models")
    assert code == 1
    assert f"error: {DATASET}:1: {key}: unknown record key — did you mean '{suggested}'?" in lines


def test_a_misnamed_control_key_is_one_error_not_two(project: Make) -> None:
    """The record then has one control image too few; that is the same mistake, not a second one."""
    spec = project()
    first, second = records()
    first["control_image_1"] = first.pop("control_path_1")
    write([first, second])
    assert check(spec, "--skip-models") == (
        1,
        [
            f"error: {DATASET}:1: control_image_1: unknown record key — did you mean 'control_path_1'?",
            "configs/v1.yaml: 1 error, 0 warnings",
        ],
    )


def test_an_unrelated_unknown_key_is_not_offered_a_lookalike(project: Make) -> None:
    spec = project()
    first, second = records()
    write([{**first, "mask_path": "m.png"}, second])
    _, lines = check(spec, "--skip-models")
    assert (
        f"error: {DATASET}:1: mask_path: unknown record key — use image_path, caption and control_path_0..N"
        in lines
    )


def test_windows_paths_in_a_jsonl_are_named_with_the_linux_spelling(project: Make) -> None:
    spec = project()
    first, second = records()
    first["image_path"] = first["image_path"].replace("/", "\\")
    second["control_path_0"] = "C:\\Users\\me\\c0.png"
    write([first, second])
    code, lines = check(spec, "--skip-models")
    assert code == 1
    assert lines[0] == (
        f"warning: {DATASET}:1: image_path: 't\\1.png' looks like a Windows path (and 1 more record):"
        " musubi-tuner runs on Linux, where '\\' is part of a file name — write 't/1.png': paths use '/' on Linux"
    )


def test_blank_line_in_relative_records_is_a_warning_with_what_musubi_would_do(project: Make) -> None:
    spec = project()
    first, second = records()
    write([first, "", second])
    code, lines = check(spec, "--skip-models")
    assert code == 0
    assert lines[0] == (
        f"warning: {DATASET}:2: blank line: musubi-tuner parses every line as JSON and stops at a blank one;"
        " fplora hands musubi-tuner a copy without them (the records use relative paths) — delete the blank lines"
    )


def test_blank_line_where_musubi_reads_the_file_itself_is_an_error(project: Make) -> None:
    spec = project()
    first, second = records(absolute=True)
    write([first, "", second])
    code, lines = check(spec, "--skip-models")
    assert code == 1
    assert lines[0] == (
        f"error: {DATASET}:2: blank line: musubi-tuner parses every line as JSON and stops at a blank one"
        " — delete the blank lines"
    )


# --- the spec ------------------------------------------------------------------------------------


def test_a_spec_naming_the_snippet_instead_of_the_jsonl_is_one_error(project: Make) -> None:
    """`fplora dataset init` writes metadata.jsonl and fplora-dataset.yaml side by side: naming the
    second gave an invalid-JSON error for every one of its lines."""
    snippet = DATASET.parent / "fplora-dataset.yaml"
    snippet.write_text(
        "datasets:\n  - jsonl: ../data/dataset-v1/metadata-v1.jsonl\none_frame:\n  target_index: 5\n"
    )
    spec = project("datasets:\n  - jsonl: ../data/dataset-v1/fplora-dataset.yaml\n")
    code, lines = check(spec, "--skip-models")
    assert code == 1
    assert lines[0] == (
        "error: configs/v1.yaml:3: datasets[0].jsonl: data/dataset-v1/fplora-dataset.yaml is not a JSONL"
        " dataset: none of its lines is a JSON record — name the dataset's .jsonl file (`fplora dataset"
        " init` writes metadata.jsonl; the fplora-dataset.yaml beside it is the snippet for the spec)"
    )
    assert not any("invalid JSON" in line for line in lines)


def test_broken_json_records_keep_their_own_errors(project: Make) -> None:
    write(["{'image_path': 't/1.png'}", "{'image_path': 't/2.png'}"])
    code, lines = check(project(), "--skip-models")
    assert code == 1
    assert (
        sum("invalid JSON: Expecting property name enclosed in double quotes" in line for line in lines) == 2
    )


def test_a_spec_that_forgot_extends_is_told_so_in_one_line(project: Make) -> None:
    spec = project("extends: null\n")  # the fixture adds `extends: base.yaml` unless one is written
    spec.write_text("datasets:\n  - jsonl: ../data/dataset-v1/metadata-v1.jsonl\n", encoding="utf-8")
    assert check(spec, "--skip-models") == (
        1,
        [
            "error: configs/v1.yaml:1: required sections project, models, one_frame, train are missing"
            " — did you forget `extends: base.yaml`? (base.yaml beside this file sets them)",
            "configs/v1.yaml: 1 error, 0 warnings",
        ],
    )


def test_the_base_named_as_the_spec_is_told_to_name_a_version(project: Make) -> None:
    """`fplora check configs/base.yaml` answered 'datasets: required key is missing — add it', which
    sends a new user to put a dataset into the base every version shares."""
    project()
    project("train: {seed: 3}\n", name="v2.yaml")
    assert check(Path("configs/base.yaml"), "--skip-models") == (
        1,
        [
            "error: configs/base.yaml: is the base that configs/v1.yaml, configs/v2.yaml extend, not a spec"
            " on its own (datasets missing) — name a version instead, e.g. configs/v1.yaml",
            "configs/base.yaml: 1 error, 0 warnings",
        ],
    )
    models = Path("configs/models.yaml")  # a base of the base, missing several sections
    base = Path("configs/base.yaml")
    text = base.read_text(encoding="utf-8")
    models_part = text[text.index("models:") : text.index("data:")]
    models.write_text(models_part, encoding="utf-8")
    base.write_text("extends: models.yaml\n" + text.replace(models_part, ""), encoding="utf-8")
    code, lines = check(models, "--skip-models")
    assert code == 1
    assert lines[0].startswith(
        "error: configs/models.yaml: is the base that configs/base.yaml, configs/v1.yaml,"
    )
    assert "not a spec on its own (project, datasets, one_frame, train missing)" in lines[0]


def test_an_output_dir_that_lands_among_the_specs_is_warned_about(project: Make) -> None:
    """`fplora init` says to set train.output_dir in configs/base.yaml; `output_dir: outputs` there
    resolves against configs/, so gigabytes of checkpoints would go beside the specs."""
    spec = project("train:\n  output_dir: outputs\n")
    code, lines = check(spec, "--skip-models")
    assert code == 0
    assert lines[0] == (
        "warning: configs/v1.yaml:5: train.output_dir: configs/outputs is inside configs, the specs' folder"
        " (relative paths resolve against the file that writes them): checkpoints and states would go"
        " beside the specs — write '../outputs' for a folder beside it, or an absolute path"
        " (e.g. /workspace/demo-models)"
    )
    assert ", 0 warnings" in check(project("train:\n  output_dir: ../outputs\n"), "--skip-models")[1][-1]


def test_a_spec_copied_by_a_file_manager_is_told_to_rename_the_file(project: Make) -> None:
    """`v1 copy.yaml`: the version is the file's name, which the user never wrote as `version:`."""
    spec = project()
    copy = spec.with_name("v1 copy.yaml")
    shutil.copy(spec, copy)
    code, lines = check(copy, "--skip-models")
    assert code == 1
    assert lines[0] == (
        "error: configs/v1 copy.yaml:1: version: 'v1 copy' (the file's name) must be one word"
        " — rename the file, e.g. v1-copy.yaml"
    )


def test_a_lone_spec_missing_its_sections_is_told_what_to_do(project: Make, tmp_path: Path) -> None:
    lone = tmp_path / "elsewhere" / "v1.yaml"
    lone.parent.mkdir()
    lone.write_text("datasets:\n  - jsonl: x.jsonl\n", encoding="utf-8")
    _, lines = check(lone, "--skip-models")
    assert lines[0] == (
        "error: elsewhere/v1.yaml:1: required sections project, models, one_frame, train are missing"
        " — add them, or `extends:` the spec that sets them (as `fplora init`'s configs/v1.yaml does)"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "one_frame: {clean_indices: []}\n",
            "one_frame.clean_indices: needs at least 1 entry, has none — add one",
        ),
        ("infer: {multipliers: []}\n", "infer.multipliers: needs at least 1 entry, has none — add one"),
        ("project: ''\n", "project: must not be empty — write a value, or remove the key"),
        (
            "train: {mixed_precision: bf17}\n",
            "train.mixed_precision: should be 'bf16', 'fp16' or 'no', not 'bf17' — did you mean 'bf16'?",
        ),
        (
            "data: {batch_size: 2.5}\n",
            "data.batch_size: should be a whole number, not 2.5 — leave out the fraction",
        ),
        (
            "train: {optimizer: {learning_rate: fast}}\n",
            "train.optimizer.learning_rate: should be a number, not 'fast' — write e.g. 16, 0.5 or 1.0e-3",
        ),
        ("train: {output_name: 12}\n", 'train.output_name: should be text, not 12 — quote it: "12"'),
        ("infer: {multipliers: [-1]}\n", "infer.multipliers[0]: should be more than 0, not -1"),
        (
            "launch: {main_process_port: 70000}\n",
            "launch.main_process_port: should be at most 65535, not 70000",
        ),
        ("train: {blocks_to_swap: -2}\n", "train.blocks_to_swap: should be at least 0, not -2"),
    ],
)
def test_validation_errors_are_in_fplora_words(project: Make, text: str, expected: str) -> None:
    spec = project(text)
    code, lines = check(spec, "--skip-models")
    assert code == 1
    assert lines[0] == f"error: configs/v1.yaml:4: {expected}"
    assert not any("after validation" in line or "Input should" in line for line in lines)


def test_an_empty_section_in_a_child_spec_warns_what_it_drops(project: Make) -> None:
    spec = project("data:\ntrain:\n  logging:\n  max_train_steps: 4\n")
    code, lines = check(spec, "--skip-models")
    assert code == 0
    assert lines[:2] == [
        "warning: configs/v1.yaml:4: data: left empty, which drops what configs/base.yaml set under it:"
        " resolution, batch_size — indent the keys you meant under it, delete the line to keep the base's,"
        " or write `data: null` to drop them on purpose",
        "warning: configs/v1.yaml:6: train.logging: left empty, which drops what configs/base.yaml set under"
        " it: with — indent the keys you meant under it, delete the line to keep the base's, or write"
        " `logging: null` to drop them on purpose",
    ]


def test_an_explicit_null_drops_the_base_without_a_warning(project: Make) -> None:
    spec = project("data: null\n")
    code, lines = check(spec, "--skip-models")
    assert code == 0
    assert not any("left empty" in line for line in lines)


def test_a_windows_output_dir_is_warned_about(project: Make) -> None:
    spec = project("train:\n  output_dir: C:\\Users\\me\\out\n")
    code, lines = check(spec, "--skip-models")
    assert code == 0
    assert lines[0] == (
        "warning: configs/v1.yaml:5: train.output_dir: 'C:\\Users\\me\\out' looks like a Windows path:"
        " musubi-tuner runs on Linux, where '\\' is part of a file name — write the Linux path on the GPU box"
        " (e.g. /workspace/...)"
    )


# --- models --------------------------------------------------------------------------------------


def test_a_missing_models_folder_is_one_line_naming_the_variable(
    project: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = Path("configs/base.yaml")
    base.write_text(
        base.read_text().replace("dir: ../models", "dir: ${FPLORA_MODELS_DIR:-/nowhere/models}"),
        encoding="utf-8",
    )
    monkeypatch.delenv("FPLORA_MODELS_DIR", raising=False)
    assert check(project()) == (
        1,
        [
            "error: configs/base.yaml:3: models.dir: folder /nowhere/models does not exist, so none of the"
            " five models can be found (from ${FPLORA_MODELS_DIR:-/nowhere/models}: FPLORA_MODELS_DIR is not set)"
            " — export FPLORA_MODELS_DIR=<the folder that holds the models>, or set models.dir"
            " (`--skip-models` checks all the rest without them)",
            "configs/v1.yaml: 1 error, 0 warnings",
        ],
    )


def test_a_missing_models_folder_written_out_names_models_dir(project: Make) -> None:
    base = Path("configs/base.yaml")
    base.write_text(base.read_text().replace("dir: ../models", "dir: ../no-models"), encoding="utf-8")
    _, lines = check(project())
    assert lines[0] == (
        "error: configs/base.yaml:3: models.dir: folder no-models does not exist, so none of the five models"
        " can be found — set models.dir to the folder that holds them (`--skip-models` checks all the rest"
        " without them)"
    )


# --- fplora init ---------------------------------------------------------------------------------


def test_init_writes_a_gitignore_for_what_fplora_writes(tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", str(tmp_path / "proj")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "proj/.gitignore").read_text(encoding="utf-8") == (
        "# fplora's state: the spec of the last command\n"
        ".fplora/\n"
        "# rendered by fplora from configs/<version>.yaml into configs/<version>/, with the caches under"
        " cache/; the specs themselves are kept, in configs/ and its subfolders\n"
        "configs/**/*\n!configs/**/\n!configs/**/*.yaml\n!configs/**/*.yml\n"
    )


def test_init_adds_only_missing_entries_to_an_existing_gitignore(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("__pycache__/\n.fplora/", encoding="utf-8")
    assert runner.invoke(app, ["init", str(tmp_path)]).exit_code == 0
    assert (tmp_path / ".gitignore").read_text(encoding="utf-8") == (
        "__pycache__/\n.fplora/\n\n"
        "# rendered by fplora from configs/<version>.yaml into configs/<version>/, with the caches under"
        " cache/; the specs themselves are kept, in configs/ and its subfolders\n"
        "configs/**/*\n!configs/**/\n!configs/**/*.yaml\n!configs/**/*.yml\n"
    )


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_gitignore_keeps_specs_and_drops_rendered_files(tmp_path: Path) -> None:
    assert runner.invoke(app, ["init", str(tmp_path)]).exit_code == 0
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    names = [".fplora/last-spec", "configs/v1/config.toml", "configs/v1/cache/dataset-v1/x.safetensors"]
    names += ["configs/archive/v0/config.toml"]  # a spec's in a subfolder of configs/
    names += ["configs/v1.yaml", "configs/base.yaml", "datasets/dataset-v1/metadata-v1.jsonl"]
    names += ["configs/archive/v0.yaml"]  # configs/*/ ignored it
    done = subprocess.run(
        ["git", "-C", str(tmp_path), "check-ignore", *names], capture_output=True, text=True, check=False
    )
    assert done.stdout.splitlines() == names[:4]


def test_init_base_yaml_sets_nothing_a_jsonl_dataset_ignores(tmp_path: Path) -> None:
    assert runner.invoke(app, ["init", str(tmp_path)]).exit_code == 0
    base = (tmp_path / "configs/base.yaml").read_text(encoding="utf-8")
    assert "caption_extension" not in base
    assert "memo" not in base
    assert "practitioner" in base  # where the house settings come from, in plain words


# --- README --------------------------------------------------------------------------------------

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_the_readme_explains_the_memo_once_and_does_not_lean_on_it() -> None:
    assert len(re.findall(r"\bmemo\b", README)) == 1
    assert "Where the house settings come from" in README


def test_the_readme_record_is_the_bundled_example_s_first_record() -> None:
    block = re.search(r"```json\n(.*?)\n```", README, re.DOTALL)
    assert block is not None
    example = Path(__file__).resolve().parents[1] / "datasets/example/dataset-v1/metadata-v1.jsonl"
    first = example.read_text(encoding="utf-8").splitlines()[0]
    assert json.loads(block.group(1)) == json.loads(first)


@pytest.mark.parametrize(
    "term", ["clean_indices", "target_index", "no_post", "kisekaeichi", "start image", "`--of`"]
)
def test_the_readme_glossary_explains_the_one_frame_terms(term: str) -> None:
    glossary = README.split("### Glossary", 1)[1].split("\n## ", 1)[0]
    assert term in glossary


# --- fplora infer --lora -------------------------------------------------------------------------


def test_a_dry_run_for_a_step_never_saved_says_so(project: Make) -> None:
    """The fixture saves every 2 steps up to 4: step3 is no checkpoint, however long it trains."""
    spec = project()
    result = runner.invoke(app, ["infer", str(spec), "--lora", "step3", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert (
        "warning: command line: --lora: step3 will never exist: LoRAs are saved every 2 steps"
        " (train.save_every_n_steps) — use step2 or step4"
    ) in result.output.splitlines()


def test_a_step_never_saved_is_refused_with_the_reason(project: Make) -> None:
    from fplora.problems import UserError
    from fplora.runs.loras import choose_loras
    from fplora.spec import load_spec

    spec = load_spec(project())
    spec.train.output_dir.mkdir(parents=True)
    for step in (2, 4):
        (spec.train.output_dir / f"demo-v1-step{step:08d}.safetensors").write_bytes(safetensors_bytes())
    with pytest.raises(UserError) as refused:
        choose_loras(spec, ["step3"])
    assert [str(p) for p in refused.value.problems] == [
        "out: no LoRA at global step 3, and there never will be: LoRAs are saved every 2 steps"
        " (train.save_every_n_steps) — use step2 or step4"
    ]


def test_a_step_a_resumed_segment_saves_is_not_called_never(project: Make) -> None:
    """A segment resumed from step 3 saves at 5, 7, ...: step5 is a step LoRA to come, not a typo."""
    from fplora.runs.loras import never_saved
    from fplora.spec import load_spec

    spec = load_spec(project())
    spec.train.output_dir.mkdir(parents=True)
    assert never_saved(spec, "step5") is not None
    (spec.train.output_dir / "demo-v1-step00000003.safetensors").write_bytes(safetensors_bytes())
    assert never_saved(spec, "step5") is None
    assert never_saved(spec, "step4") is None  # the final step, and a multiple of 2


# --- the command line ----------------------------------------------------------------------------


def test_check_ends_with_its_summary_after_a_spec_error_too(project: Make) -> None:
    """A data error always ended with `<spec>: 1 error, 0 warnings`; a spec error did not."""
    spec = project("train: {max_train_steps: many}\n")
    assert check(spec, "--skip-models") == (
        1,
        [
            "error: configs/v1.yaml:4: train.max_train_steps: should be a whole number, not 'many'"
            " — write digits only, e.g. 16",
            "configs/v1.yaml: 1 error, 0 warnings",
        ],
    )


def test_several_errors_of_another_command_are_counted_for_the_spec(project: Make) -> None:
    spec = project("train: {max_train_steps: many, save_every_n_steps: few}\n")
    result = runner.invoke(app, ["render", str(spec)])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == "configs/v1.yaml: 2 errors, 0 warnings"


def test_outside_a_project_no_spec_says_how_to_get_into_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 1
    assert result.output == (
        "error: command line: SPEC: no spec given, and this folder is not in an fplora project"
        " (no configs/ here or above) — cd into the project folder, give the spec's path"
        " (e.g. my-project/configs/v1.yaml), or start a project: fplora init my-project\n"
    )


def test_in_a_project_without_specs_no_spec_says_to_write_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "configs").mkdir()
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["train", "--dry-run"])
    assert result.output == (
        "error: command line: SPEC: no spec given, and configs/ has none"
        " — write one (fplora init writes a starter), or name one\n"
    )


def test_fplora_help_lists_init_first_with_whole_summaries_and_an_example() -> None:
    result = runner.invoke(app, ["--help"], terminal_width=80)
    assert result.exit_code == 0
    commands = result.output.split("Commands:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert [line.split()[0] for line in commands] == [
        "init",
        "check",
        "rehearse",
        "render",
        "cache",
        "train",
        "infer",
        "eval",
        "export",
        "doctor",
        "runs",
        "plot",
        "sheet",
        "models",  # typer lists verbs with subcommands after the others
        "dataset",
    ]
    assert not any(line.rstrip().endswith("...") for line in commands)
    assert all(len(line) <= 80 for line in result.output.splitlines())
    assert "Example:\n    fplora init my-project && cd my-project\n" in result.output


def test_init_says_it_added_to_an_existing_gitignore(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("*.pyc\n", encoding="utf-8")
    result = runner.invoke(app, ["init", str(tmp_path)])
    assert f"added fplora's entries to {tmp_path / '.gitignore'}" in result.output.splitlines()
    assert "memo" not in runner.invoke(app, ["init", "--help"]).output


# --- issue 19: what the walkthrough found accepted silently or said vaguely ------------------------


def test_a_variable_without_braces_is_warned_about(project: Make) -> None:
    spec = project("train:\n  output_dir: $HOME/models\n")
    code, lines = check(spec, "--skip-models")
    assert code == 0
    assert lines[0] == (
        "warning: configs/v1.yaml:5: train.output_dir: $HOME is not expanded: fplora expands only ${HOME},"
        " so it stays literal text — write '${HOME}/models'"
    )


@pytest.mark.parametrize("given", ["v1", "configs/v1", "v1.yaml"])
def test_a_spec_named_without_its_folder_or_suffix_gets_the_file_it_means(project: Make, given: str) -> None:
    project()
    assert check(Path(given)) == (
        1,
        [
            f"error: {given}: spec file not found — did you mean configs/v1.yaml?",
            f"{given}: 1 error, 0 warnings",
        ],
    )


def test_a_version_not_written_yet_lists_the_specs_there_and_a_typo_gets_the_file_it_means(
    project: Make,
) -> None:
    """`configs/v3.yaml` when v1 and v2 exist was answered 'check the path'; a close name (v2) would
    be a wrong guess for a version not made yet, while `bsae.yaml` is a typo of base.yaml."""
    project()
    project(name="v2.yaml")
    project(name="v10.yaml")
    assert check(Path("configs/v3.yaml"))[1][0] == (
        "error: configs/v3.yaml: spec file not found — configs holds base.yaml, v1.yaml, v2.yaml, v10.yaml;"
        " a new version starts as a copy of one of them"
    )
    assert check(Path("configs/bsae.yaml"))[1][0] == (
        "error: configs/bsae.yaml: spec file not found — did you mean configs/base.yaml?"
    )
    # names are compared without their `.yaml`, which made any name ending in "e" look like base.yaml
    assert check(Path("configs/nope.yaml"))[1][0] == (
        "error: configs/nope.yaml: spec file not found — configs holds base.yaml, v1.yaml, v2.yaml, v10.yaml;"
        " a new version starts as a copy of one of them"
    )


def test_a_dataset_or_a_rendered_file_given_as_the_spec_is_named_for_what_it_is(project: Make) -> None:
    project()
    assert check(DATASET)[1][0] == (
        f"error: {DATASET}: is a JSONL dataset, not a spec — give the spec that lists it: configs/v1.yaml"
    )
    assert runner.invoke(app, ["render", "configs/v1.yaml"]).exit_code == 0
    assert check(Path("configs/v1/config.toml"))[1][0] == (
        "error: configs/v1/config.toml: is a TOML file (musubi-tuner's config or dataset, which fplora"
        " renders), not a spec — give the spec it was rendered from: configs/v1.yaml"
    )


def test_a_hand_written_musubi_config_given_as_the_spec_says_how_to_move_it_over(project: Make) -> None:
    """A musubi-tuner hand-trainer gives their own config.toml: "give the spec" alone did not say that
    its settings go into one, nor that check names the field for each musubi-tuner key."""
    project()
    Path("my-run.toml").write_text("network_dim = 32\nlearning_rate = 1e-4\n", encoding="utf-8")
    assert check(Path("my-run.toml"))[1][0] == (
        "error: my-run.toml: is a TOML file (musubi-tuner's config or dataset, which fplora renders), not a"
        " spec — give a spec (configs/v1.yaml); to move this file's settings over, write them into one"
        " under their musubi-tuner names: check says the spec field for each"
    )


def test_a_base_spec_that_is_not_utf8_names_its_line(project: Make) -> None:
    spec = project()
    base = Path("configs/base.yaml")
    base.write_bytes(base.read_bytes() + "# 振り向く\n".encode("cp932"))
    assert check(spec) == (
        1,
        [
            "error: configs/base.yaml:25: not UTF-8 text (byte 0x90) — save the spec as UTF-8",
            "configs/v1.yaml: 1 error, 0 warnings",
        ],
    )


def test_a_base_spec_that_cannot_be_read_says_how_to_fix_it(
    project: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = project()
    real = Path.read_text

    def refuse(path: Path, *args: object, **kwargs: object) -> str:
        if path.name == "base.yaml":
            raise PermissionError(13, "Permission denied")
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", refuse)
    assert check(spec)[1][0] == (
        "error: configs/base.yaml: cannot read it: permission denied — make it readable: chmod a+r configs/base.yaml"
    )


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        (42, 'caption: should be text, not the number 42 — quote it: "caption": "42"'),
        (["a", "b"], "caption: should be text, not a list — write the caption as one JSON string"),
        (None, "caption: missing — write the caption text"),
    ],
)
def test_a_caption_that_is_not_text_says_what_it_is(project: Make, caption: object, expected: str) -> None:
    spec = project()
    first, second = records()
    second["caption"] = caption  # type: ignore[assignment]
    write([first, {k: v for k, v in second.items() if v is not None}])
    code, lines = check(spec, "--skip-models")
    assert code == 1
    assert lines[0].startswith(f"error: {DATASET}:2: {expected}")


def test_an_implausible_learning_rate_is_refused_or_warned_with_the_house_range(project: Make) -> None:
    spec = project("train:\n  optimizer: {learning_rate: 10}\n")
    assert check(spec, "--skip-models") == (
        1,
        [
            "error: configs/v1.yaml:5: train.optimizer.learning_rate: 10 is far above the range LoRA training"
            " uses (1e-5 to 0.01) — did you mean 1e-3? (the house rule of thumb at effective batch 2: 1e-3 up"
            " to batch 4, × sqrt(batch / 4) above)",
            "configs/v1.yaml: 1 error, 0 warnings",
        ],
    )
    spec = project("train:\n  optimizer: {learning_rate: 1.0e-7}\n")
    code, lines = check(spec, "--skip-models")
    assert code == 0
    assert lines[0].startswith(
        "warning: configs/v1.yaml:5: train.optimizer.learning_rate: 1e-7 is far below the range LoRA training"
        " uses (1e-5 to 0.01) — did you mean 1e-3?"
    )
    spec = project("train:\n  optimizer: {type: prodigyopt.Prodigy, learning_rate: 1.0}\n")
    assert check(spec, "--skip-models")[0] == 0  # an adaptive optimizer takes 1.0 by convention
    # Adafactor's relative step (musubi-tuner's default for it) does not use the rate at all
    spec = project("train:\n  optimizer: {type: adafactor, learning_rate: 10}\n")
    assert check(spec, "--skip-models") == (
        0,
        ["configs/v1.yaml: ok, 1 dataset, effective batch 2, 0 warnings (model files not checked)"],
    )
    fixed = "train:\n  optimizer: {type: adafactor, learning_rate: 10, args: [relative_step=False]}\n"
    assert check(project(fixed), "--skip-models")[1][0].startswith(
        "error: configs/v1.yaml:5: train.optimizer.learning_rate: 10 is far above the range"
    )


def test_the_same_jsonl_listed_twice_is_blamed_on_the_jsonl(project: Make) -> None:
    spec = project(
        "datasets:\n  - jsonl: ../data/dataset-v1/metadata-v1.jsonl\n  - jsonl: ../data/dataset-v1/metadata-v1.jsonl\n"
    )
    assert check(spec, "--skip-models")[1][0] == (
        "error: configs/v1.yaml:4: datasets[1].jsonl: the same JSONL as datasets[0], into the same cache:"
        " caching would delete the other's files — remove this entry (to weight the records, raise"
        " datasets[0].num_repeats), or give it its own cache_directory to train them at a second resolution"
    )
    spec = project(
        "datasets:\n  - jsonl: ../data/dataset-v1/metadata-v1.jsonl\n"
        "  - {jsonl: ../data/dataset-v1/metadata-v1.jsonl, cache_directory: ../cache/b, resolution: 128}\n"
    )
    assert check(spec, "--skip-models")[0] == 0  # a second resolution, in a cache of its own


def test_two_specs_writing_the_same_run_are_told_before_training(project: Make) -> None:
    """A copied version that kept `output_name`: both would write demo-run's checkpoints."""
    project("train:\n  output_name: demo-run\n", name="v2.yaml")
    spec = project("train:\n  output_name: demo-run\n")
    code, lines = check(spec, "--skip-models")
    assert code == 1
    assert lines[0] == (
        "error: configs/v1.yaml:5: train.output_name: configs/v2.yaml writes the same run demo-run into out:"
        " the two would overwrite each other's checkpoints and states — give each spec its own"
        " train.output_name (or leave it out: <project>-<version> differs per spec file)"
    )


def test_a_version_of_one_name_in_a_subfolder_of_configs_is_the_same_run(project: Make) -> None:
    """configs/archive/v1.yaml and configs/v1.yaml both write <project>-v1: only the spec's own
    folder was compared, so the second training would have written into the first one's run."""
    spec = project()
    (spec.parent / "archive").mkdir()
    (spec.parent / "archive" / "v1.yaml").write_text("extends: ../v1.yaml\n", encoding="utf-8")
    code, lines = check(spec, "--skip-models")
    assert code == 1
    assert lines[0].startswith(
        "error: configs/base.yaml:17: train.output_dir: configs/archive/v1.yaml writes the same run demo-v1"
    )


def test_a_run_started_by_a_spec_in_another_folder_is_warned_about(project: Make, tmp_path: Path) -> None:
    """Two projects that kept the same `project:` and `output_dir`: the manifest names the other."""
    spec = project()
    out = tmp_path / "out"
    out.mkdir()
    other = tmp_path / "other-project/configs/v1.yaml"
    (out / "demo-v1.fplora-run.json").write_text(
        json.dumps({"schema_version": 2, "output_name": "demo-v1", "spec": str(other), "segments": []})
    )
    code, lines = check(spec, "--skip-models")
    assert code == 0
    assert lines[0] == (
        "warning: configs/base.yaml:17: train.output_dir: run demo-v1 in out was started from"
        " other-project/configs/v1.yaml, not this"
        " spec: training would write into the other spec's run — give this spec its own train.output_name,"
        " project: or output_dir (if the project folder moved, this is the same spec: ignore it)"
    )


def test_a_caption_the_text_encoder_cuts_says_what_is_cut(project: Make) -> None:
    spec = project()
    first, second = records()
    second["caption"] = "a character turns around slowly. " * 300
    write([first, second])
    code, lines = check(spec, "--skip-models")
    assert code == 0
    assert lines[0] == (
        f"warning: {DATASET}:2: caption: about 2,100 tokens (9,900 characters): the text encoder reads the"
        " first 256 (CLIP-L the first 77) and cuts the rest, from about character 1,206: 'around slowly. a"
        " character turns arou...' — shorten it to what matters (under about 256 tokens, ~1,000 characters"
        " of English)"
    )


def test_a_resolution_turned_against_every_image_is_warned_about(project: Make) -> None:
    """One line for the one cause: the per-image aspect warnings it explains are left out."""
    spec = project("data:\n  resolution: [96, 64]\n")  # the fixture's images are 64x96
    assert check(spec, "--skip-models") == (
        0,
        [
            "warning: configs/v1.yaml:5: data.resolution: [96, 64] is landscape ([width, height]), but all 2"
            " target images are portrait (e.g. 64x96): samples are made at 96x64, and every image is cropped"
            " to it (no enable_bucket) — did you mean [64, 96]?",
            "configs/v1.yaml: ok, 1 dataset, effective batch 2, 1 warning (model files not checked)",
        ],
    )


def test_an_eval_fraction_far_from_what_the_dataset_can_give_is_warned_about(project: Make) -> None:
    spec = project("eval: {fraction: 0.01}\n")
    code, lines = check(spec, "--skip-models")
    assert code == 0
    assert lines[0] == (
        "warning: configs/v1.yaml:4: eval.fraction: 0.01 of 2 records holds out 1 record (50%), far from the"
        " 1% asked — name the records to hold out (`records: [3]`), or a fraction this dataset can give"
        " (at least 0.5)"
    )


def test_check_says_an_infer_prompt_is_one_edit_from_a_caption(project: Make) -> None:
    """Only `infer` said so before; now `check` does, once (infer's own check prints it, too)."""
    spec = project(
        "infer:\n  prompts:\n"
        "    - {text: 'a character turn, take 1', image: ../data/dataset-v1/t/1.png,"
        " control_images: [../data/dataset-v1/c/1_0.png, ../data/dataset-v1/c/1_1.png]}\n"
    )
    code, lines = check(spec, "--skip-models")
    assert code == 0
    assert lines[0].startswith(
        "warning: configs/v1.yaml:6: infer.prompts[0].text: is 1 edit from a training caption, and a prompt"
        " worded unlike its caption can lose the LoRA's effect: a character [-turns,-] {+turn,+} take 1"
    )


def test_one_mistake_on_many_records_is_one_line(project: Make) -> None:
    spec = project()
    first, _ = records()
    many = [{**first, "image_path": f"t/{i}.png"} for i in range(1, 11)]
    for record in many:
        record.pop("control_path_1")
    write(many)
    code, lines = check(spec, "--skip-models")
    assert code == 1
    errors = [line for line in lines if line.startswith("error:") and "control" in line]
    assert errors == [
        f"error: {DATASET}:1: control_path: 2 control images expected (one_frame.clean_indices = [0, 10]),"
        " found 1 (and 9 more records: lines 2, 3, 4, 5, 6, …) — give every record control_path_0..1, or"
        " change one_frame.clean_indices"
    ]
