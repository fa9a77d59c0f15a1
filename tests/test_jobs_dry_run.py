"""`--dry-run`: stdout is the commands and nothing else, each one valid for accelerate and musubi-tuner.

A user pipes these lines into a shell or a job script, so they must split back into the exact argv,
and each argv must pass the fake's validator (the bundled argparse snapshots, the config TOML key by
key, the dataset TOML). A dry run must also work on a machine without musubi-tuner.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from fakes import fake
from fakes.fixtures import Workspace

pytest_plugins = ["fakes.fixtures"]

# accelerate fills any launch option left out from a user's default config file
EXPLICIT_LAUNCH = {"num_processes", "num_machines", "mixed_precision", "dynamo_backend"}


@pytest.fixture
def no_musubi(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Path:
    """FPLORA_MUSUBI_PYTHON names a Python that does not exist."""
    missing = workspace.root / "nowhere" / "python"
    monkeypatch.setenv("FPLORA_MUSUBI_PYTHON", str(missing))
    return missing


def commands(workspace: Workspace, *args: str) -> list[list[str]]:
    """Run `fplora <args> --dry-run` and check each stdout line is one valid command."""
    result = workspace.cli(*args, "--dry-run")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines, result.output
    argvs = [shlex.split(line) for line in lines]
    for line, argv in zip(lines, argvs, strict=True):
        assert shlex.join(argv) == line  # one command per line, quoted as a shell reads it
        invocation = fake.validate(argv[1:])
        assert set(invocation.accelerate) >= EXPLICIT_LAUNCH, line
    assert workspace.calls() == []  # nothing ran
    return argvs


def scripts(argvs: list[list[str]]) -> list[str]:
    return [argv[argv.index("-m", 2) + 1] for argv in argvs]


def test_train_dry_run_prints_one_valid_command(workspace: Workspace, no_musubi: Path) -> None:
    (argv,) = commands(workspace, "train", str(workspace.spec_path))
    assert argv[0] == str(no_musubi)
    assert argv[1:3] == ["-m", "accelerate.commands.launch"]
    assert scripts([argv]) == ["musubi_tuner.fpack_train_network"]
    assert argv[-2:] == ["--config_file", str(workspace.render_dir / "config.toml")]
    assert not workspace.output_dir.exists()  # a dry run writes no run files


def test_cache_dry_run_prints_both_cache_commands(workspace: Workspace, no_musubi: Path) -> None:
    argvs = commands(workspace, "cache", str(workspace.spec_path))
    assert scripts(argvs) == [
        "musubi_tuner.fpack_cache_latents",
        "musubi_tuner.fpack_cache_text_encoder_outputs",
    ]
    latents = fake.validate(argvs[0][1:])
    assert latents.given["one_frame"] is True
    # the records to compute, staged: musubi-tuner never writes into the store or a view folder
    staging = workspace.root / ".fplora" / "cache-store" / "staging" / "dry-run"
    assert latents.given["dataset_config"] == str(staging / "latents.toml")
    assert not workspace.cache_dir.exists()


def test_train_with_cache_dry_run_prints_three_commands(workspace: Workspace, no_musubi: Path) -> None:
    argvs = commands(workspace, "train", str(workspace.spec_path), "--cache")
    assert scripts(argvs) == [
        "musubi_tuner.fpack_cache_latents",
        "musubi_tuner.fpack_cache_text_encoder_outputs",
        "musubi_tuner.fpack_train_network",
    ]


def test_infer_dry_run_prints_one_command_per_multiplier(workspace: Workspace, no_musubi: Path) -> None:
    lora = workspace.root / "some-lora.safetensors"
    lora.write_bytes(b"x")
    argvs = commands(
        workspace, "infer", str(workspace.spec_path), "--lora", str(lora), "--multiplier", "0.8",
        "--multiplier", "1.2", "--no-sweep",
    )  # fmt: skip
    assert scripts(argvs) == ["musubi_tuner.fpack_generate_video"] * 2
    given = [fake.validate(argv[1:]).given for argv in argvs]
    assert [g["lora_weight"] for g in given] == [[str(lora)], [str(lora)]]
    assert [g["lora_multiplier"] for g in given] == [[0.8], [1.2]]
    assert [Path(g["save_path"]).name for g in given] == ["v1-some-lora-lm0.8", "v1-some-lora-lm1.2"]
    assert not (workspace.output_dir / "sample").exists()


def test_infer_dry_run_of_several_cells_prints_the_sweep_worker(
    workspace: Workspace, no_musubi: Path
) -> None:
    """Two cells or more go to the sweep worker by default: one launch of fplora's worker file; the
    plan it names is not written in a dry run, and nothing lands in sample/."""
    lora = workspace.root / "some-lora.safetensors"
    lora.write_bytes(b"x")
    result = workspace.cli(
        "infer", str(workspace.spec_path), "--lora", str(lora), "--multiplier", "0.8", "--multiplier", "1.2",
        "--dry-run",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    argv = shlex.split(line)
    accel, _, script, args = fake.parse_launch(argv[1:])
    assert set(accel) >= EXPLICIT_LAUNCH
    assert script == fake.SWEEP_WORKER and accel["num_processes"] == 1
    assert args[0] == "--plan" and Path(args[1]).parent.name == "v1-sweeps"
    assert not (workspace.output_dir / "sample").exists()
    assert "dry run: one worker process would make 2 cells (its plan file is not written):" in result.stderr
    assert "  some-lora.safetensors ×1.2 → outputs/sample/v1-some-lora-lm1.2" in result.stderr


def test_dry_run_quotes_paths_with_spaces(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Python path with a space must survive the round trip through the printed line."""
    spaced = workspace.root / "my env" / "python"
    monkeypatch.setenv("FPLORA_MUSUBI_PYTHON", str(spaced))
    (argv,) = commands(workspace, "train", str(workspace.spec_path))
    assert argv[0] == str(spaced)


def test_dry_run_says_nothing_else_on_stdout(workspace: Workspace, no_musubi: Path) -> None:
    result = workspace.cli("cache", str(workspace.spec_path), "--dry-run")
    assert result.exit_code == 0
    assert all(line.startswith(str(no_musubi) + " -m ") for line in result.stdout.splitlines())
    assert "dry run" in result.stderr


def test_train_dry_run_counts_steps_per_epoch_without_the_held_out_records(workspace: Workspace) -> None:
    """4 records, 2 held out for evaluation, batch 1: musubi-tuner trains on 2 a epoch."""
    workspace.write_spec(data={"batch_size": 1}, eval={"records": [2, 4]})
    result = workspace.cli("train", str(workspace.spec_path), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "estimate: 2 steps per epoch (effective batch 1); max_train_steps 4 is 2 epochs" in result.stderr


def test_train_dry_run_says_one_epoch_and_a_part_of_one(workspace: Workspace) -> None:
    """4 records, batch 4: one step is one epoch; the count agrees with its noun, fractions too."""
    for steps, said in ((1, "is 1 epoch"), (3, "is 3 epochs")):
        workspace.write_spec(
            data={"batch_size": 4}, train={"max_train_steps": steps, "save_every_n_steps": 1}
        )
        result = workspace.cli("train", str(workspace.spec_path), "--dry-run")
        assert result.exit_code == 0, result.output
        assert (
            f"estimate: 1 step per epoch (effective batch 4); max_train_steps {steps} {said}" in result.stderr
        )
    workspace.write_spec(data={"batch_size": 2}, train={"max_train_steps": 5, "save_every_n_steps": 1})
    result = workspace.cli("train", str(workspace.spec_path), "--dry-run")
    assert "2 steps per epoch (effective batch 2); max_train_steps 5 is 2.5 epochs" in result.stderr


def test_train_dry_run_writes_thousands_of_epochs_as_a_number(workspace: Workspace) -> None:
    """A small dataset and the house settings' 10,000 steps: thousands of epochs, written out."""
    workspace.write_spec(data={"batch_size": 4}, train={"max_train_steps": 10000, "save_every_n_steps": 100})
    result = workspace.cli("train", str(workspace.spec_path), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "max_train_steps 10000 is 10,000 epochs" in result.stderr
