"""Loading specs: extends, path resolution, ${VAR}, line numbers, defaults and cross-field rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from fplora.problems import UserError
from fplora.spec import load_spec
from fplora.spec.load import load


def test_extends_merges_deeply_and_child_wins(project) -> None:
    spec = load_spec(project("train:\n  max_train_steps: 8\n"))
    assert spec.train.max_train_steps == 8  # child
    assert spec.train.save_every_n_steps == 2  # base, same section
    assert spec.project == "demo"
    assert spec.version == "v1"  # the file's stem
    assert spec.output_name == "demo-v1"


def test_lists_are_replaced_not_appended(project) -> None:
    spec = load_spec(project("one_frame:\n  clean_indices: [0]\n"))
    assert spec.one_frame.clean_indices == [0]


def test_relative_paths_resolve_against_the_file_that_wrote_them(project, tmp_path: Path) -> None:
    spec = load_spec(project())
    # models.dir is written in configs/base.yaml as ../models; model names resolve against it
    assert spec.models.dit == tmp_path / "models/dit/model-00001-of-00002.safetensors"
    # output_dir comes from base.yaml, the dataset from v1.yaml: both relative to configs/
    assert spec.train.output_dir == tmp_path / "out"
    assert spec.datasets[0].jsonl == tmp_path / "data/dataset-v1/metadata-v1.jsonl"


def test_base_in_another_folder_resolves_its_own_paths(project, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "house.yaml").write_text("train:\n  output_dir: runs\n")
    spec = load_spec(project("extends: [base.yaml, ../shared/house.yaml]\n"))
    assert spec.train.output_dir == shared / "runs"


def test_env_vars_expand_with_defaults(project, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OUT_ROOT", str(tmp_path / "elsewhere"))
    spec = load_spec(project("train:\n  output_dir: ${OUT_ROOT}/x\n  output_name: ${NAME:-fallback}\n"))
    assert spec.train.output_dir == tmp_path / "elsewhere/x"
    assert spec.output_name == "fallback"


def test_source_map_points_at_lines(project) -> None:
    loaded = load(project("train:\n  max_train_steps: 8\n"))
    assert loaded.where(("train", "max_train_steps")).line == 5
    assert loaded.where(("train", "max_train_steps")).file.name == "v1.yaml"
    assert loaded.where(("train", "save_every_n_steps")).file.name == "base.yaml"
    assert loaded.where(("one_frame", "target_index")).line == 14


def test_extends_cycle_is_reported(project, tmp_path: Path) -> None:
    (tmp_path / "configs/a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "configs/b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(UserError) as error:
        load_spec(tmp_path / "configs/a.yaml")
    assert str(error.value) == (
        "configs/b.yaml:1: extends: cycle: configs/a.yaml → configs/b.yaml → configs/a.yaml"
        " — remove one of the extends"
    )


def test_a_spec_extending_itself_and_a_folder_are_reported_at_the_line(project, tmp_path: Path) -> None:
    (tmp_path / "configs/self.yaml").write_text("project: x\nextends: self.yaml\n")
    with pytest.raises(UserError) as error:
        load_spec(tmp_path / "configs/self.yaml")
    assert str(error.value).startswith(
        "configs/self.yaml:2: extends: cycle: configs/self.yaml → configs/self.yaml"
    )
    (tmp_path / "configs/dir.yaml").write_text("extends: ../configs\n")
    with pytest.raises(UserError) as error:
        load_spec(tmp_path / "configs/dir.yaml")
    assert "configs/dir.yaml:1: extends: ../configs is a folder" in str(error.value)


def test_defaults_follow_the_memo(project) -> None:
    spec = load_spec(project())
    assert spec.train.save_precision == "bf16"  # needed by the pinned generate script
    assert spec.train.optimizer.type == "adamw8bit"  # never the empty default that crashes
    assert spec.sample.flow_shift is None  # FramePack's dynamic shift, the only one training samples use
    assert spec.launch.num_processes == 1


def test_derived_cache_directory_is_per_spec_and_dataset_version(project, tmp_path: Path) -> None:
    spec = load_spec(project())
    assert spec.cache_directory(0) == tmp_path / "configs/v1/cache/dataset-v1/metadata-v1"


def test_derived_cache_directories_of_two_jsonls_of_one_name_tell_them_apart(project, tmp_path: Path) -> None:
    """x/data/metadata.jsonl and y/data/metadata.jsonl both derived cache/data/metadata, refused as
    "same cache directory as datasets[0] — give each dataset its own cache_directory", a key the spec
    never wrote."""
    text = "datasets:\n  - jsonl: ../x/data/metadata.jsonl\n  - jsonl: ../y/data/metadata.jsonl\n"
    spec = load_spec(project(text))
    assert spec.cache_directory(0) == tmp_path / "configs/v1/cache/x-data/metadata"
    assert spec.cache_directory(1) == tmp_path / "configs/v1/cache/y-data/metadata"


def test_effective_batch_counts_processes_and_accumulation(project) -> None:
    text = "launch:\n  num_processes: 2\ntrain:\n  gradient_accumulation_steps: 3\n"
    assert (
        load_spec(project(text)).effective_batch_text()
        == "effective batch 12 (2 × 2 processes × 3 accumulation steps)"
    )


def test_effective_batch_of_one_process_is_the_batch(project) -> None:
    assert load_spec(project()).effective_batch_text() == "effective batch 2"


def test_effective_batch_per_dataset_when_datasets_differ(project) -> None:
    text = (
        "launch:\n  num_processes: 2\n"
        "datasets:\n"
        "  - {jsonl: ../data/dataset-v1/metadata-v1.jsonl, cache_directory: ../cache-a}\n"
        "  - {jsonl: ../data/dataset-v1/metadata-v1.jsonl, cache_directory: ../cache-b, batch_size: 4}\n"
    )
    assert load_spec(project(text)).effective_batch_text() == "effective batch 4/8 (2/4 × 2 processes)"


def test_two_datasets_sharing_a_cache_are_refused(project) -> None:
    text = (
        "datasets:\n"
        "  - {jsonl: ../data/dataset-v1/metadata-v1.jsonl, cache_directory: ../cache}\n"
        "  - {jsonl: ../data/dataset-v1/metadata-v1.jsonl, cache_directory: ../cache}\n"
    )
    with pytest.raises(UserError) as error:
        load_spec(project(text))
    assert "datasets[1].cache_directory: same cache directory as datasets[0]" in str(error.value)


def test_multi_node_launch_is_valid_with_its_address(project) -> None:
    text = (
        "launch:\n  num_processes: 4\n  num_machines: 2\n  machine_rank: 1\n"
        "  main_process_ip: 10.0.0.1\n  main_process_port: 29500\n"
    )
    spec = load_spec(project(text))
    assert spec.launch.machine_rank == 1


def test_empty_variable_takes_the_default_as_in_the_shell(project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAME", "")
    monkeypatch.setenv("STEPS", "")
    spec = load_spec(project("train:\n  output_name: ${NAME:-fallback}\n  max_train_steps: ${STEPS:-6}\n"))
    assert spec.output_name == "fallback"
    assert spec.train.max_train_steps == 6


def test_empty_default_allows_an_empty_value(project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEG", "")
    spec = load_spec(project("sample:\n  prompts:\n    - {record: 1, negative_prompt: '${NEG:-}'}\n"))
    assert spec.sample.prompts[0].negative_prompt == ""


def test_resolution_takes_numbers_from_variables(project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("W", "128")
    text = (
        "data:\n  resolution: ['${W:-64}', 96]\n"
        "datasets:\n  - {jsonl: ../data/dataset-v1/metadata-v1.jsonl, resolution: '${RES:-512}'}\n"
    )
    spec = load_spec(project(text))
    assert spec.data.resolution == (128, 96)
    assert spec.datasets[0].resolution == 512
    assert load_spec(project("data:\n  resolution: ${RES:-256}\n")).data.resolution == 256


def test_variable_notes_are_dropped_with_the_value_a_child_replaces(project, tmp_path: Path) -> None:
    (tmp_path / "configs/base.yaml").write_text(
        (tmp_path / "configs/base.yaml").read_text().replace("max_train_steps: 4", "max_train_steps: ${S:-4}")
    )
    loaded = load(project("train:\n  max_train_steps: 8\n"))
    assert loaded.note(("train", "max_train_steps")) == ""
    assert load(project()).note(("train", "max_train_steps")) == " (from ${S:-4}: S is not set)"


def test_null_drops_an_inherited_section(project) -> None:
    base = load_spec(project("infer: {multipliers: [1.2]}\n", name="v0.yaml"))
    assert base.infer.multipliers == [1.2]
    (base.path.parent / "v1.yaml").write_text("extends: v0.yaml\ninfer: null\n")
    assert load_spec(base.path.parent / "v1.yaml").infer.multipliers == [1.0]  # the default


def test_null_drops_inherited_pass_through_options(project) -> None:
    base = project("musubi:\n  config: {network_dropout: 0.1, max_timestep: 900}\n", name="v0.yaml")
    configs = base.parent
    (configs / "v1.yaml").write_text("extends: v0.yaml\nmusubi: {config: {network_dropout: null}}\n")
    assert load_spec(configs / "v1.yaml").musubi.config == {"max_timestep": 900}
    (configs / "v1.yaml").write_text("extends: v0.yaml\nmusubi: {config: null}\n")
    assert load_spec(configs / "v1.yaml").musubi.config == {}


def test_null_drops_inherited_sample_prompts_and_says_what_is_left(project, tmp_path: Path) -> None:
    """base.yaml has sample prompts; `sample: null` resets sampling to its defaults (on, no prompts)."""
    with pytest.raises(UserError) as error:
        load_spec(project("sample: null\n"))
    assert str(error.value).startswith(
        "configs/v1.yaml:4: sample: sampling is on but sample.prompts is empty"
    )


def test_null_over_a_base_value_where_null_means_nothing_says_how_to_keep_the_base(project) -> None:
    """Only the settings a GPU preset chooses take null back; elsewhere a null over a base's value is
    a mistake, said as one (not pydantic's "should be a whole number, not empty")."""
    configs = project("train: {seed: 7}\n", name="v0.yaml").parent
    (configs / "v1.yaml").write_text("extends: v0.yaml\ntrain:\n  seed: null\n")
    with pytest.raises(UserError) as error:
        load_spec(configs / "v1.yaml")
    (problem,) = error.value.problems
    assert str(problem).startswith(
        "configs/v1.yaml:3: train.seed: null does not give this key back: only the settings a GPU preset"
        ' chooses take null ("let fplora choose") — remove the line to keep 7 from configs/v0.yaml:'
    )
    assert str(problem).endswith(", or write a value")


def test_null_stays_null_where_it_is_a_value(project) -> None:
    spec = load_spec(project("sample:\n  every_n_steps: null\n  at_first: false\n  prompts: null\n"))
    assert spec.sample.every_n_steps is None  # null turns step sampling off, not back to 100
    assert spec.sample.prompts == []  # a list: back to its default
