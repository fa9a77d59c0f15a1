"""The fake musubi-tuner must reject what the real parsers reject, or the job tests prove nothing.

Each case takes a command fplora really renders (its `--dry-run` output) and breaks one thing the
way a rendering bug would: an abbreviated or misplaced accelerate option, a wrong type, a misspelt
config key that musubi-tuner would ignore without a word, a dataset key its schema refuses.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from fakes import FAKE_PYTHON, fake
from fakes.fixtures import Workspace

pytest_plugins = ["fakes.fixtures"]


def rendered(workspace: Workspace, *command: str) -> list[list[str]]:
    """The argvs (after the Python) of `fplora <command> --dry-run`."""
    result = workspace.cli(*command, str(workspace.spec_path), "--dry-run")
    assert result.exit_code == 0, result.output
    return [shlex.split(line)[1:] for line in result.stdout.splitlines()]


def replace(args: list[str], old: str, new: list[str]) -> list[str]:
    index = args.index(old)
    return [*args[:index], *new, *args[index + 1 :]]


ARGV_BREAKS: dict[str, tuple[Callable[[list[str]], list[str]], str]] = {
    "abbreviated accelerate option": (
        lambda a: replace(a, "--num_processes", ["--num_process"]),
        "unrecognized arguments: --num_process (an abbreviation of --num_processes",
    ),
    "accelerate option after the script": (
        lambda a: [*a, "--num_machines", "1"],
        "unrecognized arguments: --num_machines",
    ),
    "accelerate choice": (
        lambda a: replace(a, "bf16", ["bf17"]),
        "argument --mixed_precision: invalid choice: 'bf17'",
    ),
    "accelerate int": (
        lambda a: [*a[:2], "--main_process_port", "http", *a[2:]],
        "argument --main_process_port: invalid int value: 'http'",
    ),
    "script without -m": (
        lambda a: [x for i, x in enumerate(a) if not (x == "-m" and i > 1)],
        "without -m/--module",
    ),
    "abbreviated script flag": (
        lambda a: [*a, "--max_train_step", "3"],
        "unrecognized arguments: --max_train_step (an abbreviation of --max_train_steps",
    ),
    "script int": (lambda a: [*a, "--max_train_steps", "1.5"], "invalid int value: '1.5'"),
    "script choice": (lambda a: [*a, "--save_precision", "bf32"], "invalid choice: 'bf32'"),
    "flag without its value": (
        lambda a: [*a, "--output_name"],
        "argument --output_name: expected one argument",
    ),
    "value on a store_true flag": (lambda a: [*a, "--fp8_base=1"], "ignored explicit argument '1'"),
    "option given twice": (
        lambda a: [*a, "--output_name", "x", "--output_name", "y"],
        "argument --output_name: given more than once",
    ),
    "stray word": (lambda a: [*a, "oops"], "unrecognized arguments: oops"),
    "unknown script": (
        lambda a: replace(a, "musubi_tuner.fpack_train_network", ["musubi_tuner.wan_train_network"]),
        "no musubi-tuner script 'musubi_tuner.wan_train_network'",
    ),
}


@pytest.mark.parametrize("case", list(ARGV_BREAKS))
def test_validator_rejects_a_broken_command_line(workspace: Workspace, case: str) -> None:
    (args,) = rendered(workspace, "train")
    fake.validate(args)  # the real command is fine
    breaker, message = ARGV_BREAKS[case]
    with pytest.raises(fake.Violation) as error:
        fake.validate(breaker(args))
    assert message in str(error.value)


def test_validator_checks_nargs_of_list_options(workspace: Workspace) -> None:
    args = rendered(workspace, "infer", "--lora", "step1")[0]
    assert fake.validate([*args, "--video_size", "96", "64"]).given["video_size"] == [96, 64]
    with pytest.raises(fake.Violation, match="--video_size: expected 2 arguments"):
        fake.validate([*args, "--video_size", "96"])
    save = args.index("--save_path")
    with pytest.raises(fake.Violation, match="required: --save_path"):
        fake.validate(args[:save] + args[save + 2 :])


CONFIG_BREAKS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "misspelt key": (
        lambda c: c.update(learning_rat=0.1),
        "learning_rat is not an option of fpack_train_network",
    ),
    "string for a boolean": (lambda c: c.update(sdpa="true"), "sdpa expects a boolean"),
    "string for a list": (lambda c: c.update(network_args="a=b"), "network_args expects an array"),
    "float for an int": (lambda c: c.update(max_train_steps=1.5), "max_train_steps expects int"),
    "choice": (lambda c: c.update(timestep_sampling="sigmoidal"), "'sigmoidal' is not one of"),
    "empty optimizer": (lambda c: c.update(optimizer_type=""), "optimizer_type is empty"),
    "no save_precision": (lambda c: c.pop("save_precision"), "save_precision is unset"),
    "no dit": (lambda c: c.pop("dit"), "dit must be set"),
    "fp8_scaled alone": (lambda c: c.update(fp8_scaled=True), "fp8_scaled needs fp8_base"),
    "sage attention": (lambda c: c.update(sage_attn=True), "sage_attn is refused"),
}


@pytest.mark.parametrize("case", list(CONFIG_BREAKS))
def test_validator_checks_the_config_file_key_by_key(workspace: Workspace, case: str) -> None:
    (args,) = rendered(workspace, "train")
    config = tomllib.loads((workspace.render_dir / "config.toml").read_text(encoding="utf-8"))
    change, message = CONFIG_BREAKS[case]
    change(config)
    broken = workspace.root / "broken.toml"
    broken.write_text(tomli_w.dumps(config), encoding="utf-8")
    with pytest.raises(fake.Violation) as error:
        fake.validate(replace(args, str(workspace.render_dir / "config.toml"), [str(broken)]))
    assert message in str(error.value)


def test_config_file_without_suffix_and_tables_are_read_like_musubi(workspace: Workspace) -> None:
    (args,) = rendered(workspace, "train")
    config = tomllib.loads((workspace.render_dir / "config.toml").read_text(encoding="utf-8"))
    tabled = {"model": {k: config.pop(k) for k in ("dit", "vae")}, **config}
    (workspace.root / "tabled.toml").write_text(tomli_w.dumps(tabled), encoding="utf-8")
    config_path = str(workspace.render_dir / "config.toml")
    values = fake.validate(replace(args, config_path, [str(workspace.root / "tabled")])).values
    assert values["dit"] == str(workspace.root / "models" / "dit" / "model-00001-of-00002.safetensors")
    overridden = fake.validate([*args, "--max_train_steps", "9"]).values
    assert overridden["max_train_steps"] == 9  # the command line wins over the TOML


DATASET_BREAKS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "cache_directory in general": (
        lambda d: d["general"].update(cache_directory="x"),
        "[general] cache_directory is not allowed there",
    ),
    "string for a boolean": (
        lambda d: d["general"].update(enable_bucket="true"),
        "enable_bucket expects bool",
    ),
    "unknown dataset key": (
        lambda d: d["datasets"][0].update(fp_1f_clean_index=[0]),
        "fp_1f_clean_index is not a dataset key",
    ),
    "no cache directory": (lambda d: d["datasets"][0].pop("cache_directory"), "without cache_directory"),
}


@pytest.mark.parametrize("case", list(DATASET_BREAKS))
def test_validator_checks_the_dataset_config(workspace: Workspace, case: str) -> None:
    args = rendered(workspace, "cache")[0]
    dataset = tomllib.loads((workspace.render_dir / "dataset.toml").read_text(encoding="utf-8"))
    change, message = DATASET_BREAKS[case]
    change(dataset)
    broken = workspace.root / "dataset.toml"
    broken.write_text(tomli_w.dumps(dataset), encoding="utf-8")
    with pytest.raises(fake.Violation) as error:
        fake.validate(replace(args, args[args.index("--dataset_config") + 1], [str(broken)]))
    assert message in str(error.value)


def test_one_frame_caching_needs_every_control_image(workspace: Workspace) -> None:
    args = rendered(workspace, "cache")[0]
    dataset = tomllib.loads((workspace.render_dir / "dataset.toml").read_text(encoding="utf-8"))
    dataset["datasets"][0]["fp_1f_clean_indices"] = [0, 5, 10]
    broken = workspace.root / "dataset.toml"
    broken.write_text(tomli_w.dumps(dataset), encoding="utf-8")
    with pytest.raises(fake.Failure, match="has 2 control images, fp_1f_clean_indices needs 3"):
        fake.validate(replace(args, args[args.index("--dataset_config") + 1], [str(broken)]))


def run_fake(
    program: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(program), *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False
    )


def test_probe_succeeds_or_reports_musubi_missing(workspace: Workspace) -> None:
    assert run_fake(FAKE_PYTHON, "-c", "print(1)").returncode == 0  # the script works on its own too
    missing = run_fake(workspace.python, "-c", "x", env={"FAKE_MUSUBI_MISSING": "1"})
    assert missing.returncode == 3 and missing.stdout.strip() == "musubi_tuner"


def test_a_violation_exits_2_and_is_recorded(workspace: Workspace) -> None:
    (args,) = rendered(workspace, "train")
    done = run_fake(workspace.python, *args, "--bogus")
    assert done.returncode == 2
    assert "unrecognized arguments: --bogus" in done.stderr
    records = [json.loads(line) for line in workspace.record.read_text().splitlines()]
    assert records[0]["args"] == [*args, "--bogus"]
    assert records[-1]["event"] == "violation"


def test_generate_crashes_on_a_weight_without_multiplier(workspace: Workspace) -> None:
    """The pinned script's trap: `--lora_weight` alone dies with a TypeError."""
    args = rendered(workspace, "infer", "--lora", "step1")[0]
    lora = workspace.root / "lora.safetensors"
    lora.write_bytes(b"x")
    start = args.index("--lora_weight")
    stripped = [*args[:start], "--lora_weight", str(lora), *args[start + 4 :]]
    assert "--lora_multiplier" not in stripped
    done = run_fake(workspace.python, *stripped)
    assert done.returncode == 1
    assert "object of type 'float' has no len()" in done.stderr
