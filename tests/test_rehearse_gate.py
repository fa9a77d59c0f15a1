"""`train`, `cache`, `infer` and `eval` rehearse first (issue 20), with the fake musubi-tuner
answering the rehearsal worker: each rehearsal stage's rendered command is checked and emulated like
a real launch. Rehearsed again only when what they render changed; `--no-rehearse` skips it."""

from __future__ import annotations

import pytest
from fakes.fixtures import Workspace

pytest_plugins = ["fakes.fixtures"]


def test_train_rehearses_first_and_a_failed_rehearsal_stops_it(cached: Workspace) -> None:
    result = cached.cli(
        "train",
        str(cached.spec_path),
        env={"FAKE_REHEARSAL_FAIL": "train:RuntimeError: No LoRA modules found"},
    )
    assert result.exit_code == 1
    assert "rehearsal failed at stage train (2 training steps, sampling at first): exit 1" in result.stderr
    assert "musubi-tuner: RuntimeError: No LoRA modules found" in result.stderr
    assert cached.calls("fpack_train_network") == []  # the real training never started
    assert "Traceback" not in result.stderr.replace("musubi-tuner: ", "")


def test_a_passed_rehearsal_is_not_repeated_until_the_rendered_files_change(workspace: Workspace) -> None:
    first = workspace.cli("cache", str(workspace.spec_path))
    assert first.exit_code == 0, first.output
    assert "rehearsal passed" in first.stderr
    again = workspace.cli("cache", str(workspace.spec_path), "--rebuild")
    assert "rehearsal:" not in again.stderr and "rehearsal passed" not in again.stderr  # skipped unsaid
    said = workspace.cli("rehearse", str(workspace.spec_path))
    assert "unchanged since it passed" in said.stderr + said.stdout
    workspace.write_spec(train={"seed": 7})  # a different config.toml
    changed = workspace.cli("cache", str(workspace.spec_path), "--rebuild")
    assert "rehearsal passed" in changed.stderr


def test_no_rehearse_skips_it_and_check_rehearse_adds_it(workspace: Workspace) -> None:
    skipped = workspace.cli("cache", str(workspace.spec_path), "--no-rehearse")
    assert skipped.exit_code == 0 and "rehearsal" not in skipped.stderr
    checked = workspace.cli("check", str(workspace.spec_path), "--rehearse")
    assert checked.exit_code == 0, checked.output
    assert "rehearsal passed" in checked.stderr


def test_a_dry_run_does_not_rehearse(cached: Workspace) -> None:
    result = cached.cli("train", str(cached.spec_path), "--dry-run")
    assert result.exit_code == 0 and "rehearsal" not in result.stderr


FAILING = {"FAKE_REHEARSAL_FAIL": "train:RuntimeError: No LoRA modules found"}


@pytest.fixture
def trained(workspace: Workspace) -> Workspace:
    """A 4-step run with an evaluation split, cached and trained without rehearsing: the next
    command that may rehearse does."""
    workspace.write_spec(eval={"records": [2, 4]})
    assert workspace.cli("cache", str(workspace.spec_path), "--no-rehearse").exit_code == 0
    result = workspace.cli("train", str(workspace.spec_path), "--no-rehearse")
    assert result.exit_code == 0, result.output
    workspace.forget_calls()
    return workspace


@pytest.mark.parametrize("verb", ["infer", "eval"])
def test_infer_and_eval_rehearse_first_unless_told_not_to(trained: Workspace, verb: str) -> None:
    stopped = trained.cli(verb, str(trained.spec_path), env=FAILING)
    assert stopped.exit_code == 1
    assert "rehearsal failed at stage train" in stopped.stderr
    assert trained.calls() == []  # nothing of the verb's own ran
    skipped = trained.cli(verb, str(trained.spec_path), "--no-rehearse", env=FAILING)
    assert "rehearsal" not in skipped.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["infer", "--lora", "step3..step9,every:5"], "step3..step9,every:5: selects no checkpoint"),
        (["infer", "--lora", "step7"], "no LoRA at global step 7"),
        (["eval", "--lora", "step7"], "no LoRA at global step 7"),
        (["train"], "already holds run"),
        (["train", "--resume", "latest"], "already at max_train_steps"),
    ],
)
def test_a_refusal_of_the_verb_s_own_comes_before_the_rehearsal(
    trained: Workspace, args: list[str], said: str
) -> None:
    """A mistyped `--lora` or a finished run is said at once, not after half a minute of rehearsing
    a spec that changed since its last rehearsal."""
    result = trained.cli(args[0], str(trained.spec_path), *args[1:], env=FAILING)
    assert result.exit_code == 1
    assert said in result.stderr
    assert "rehearsal" not in result.stderr


def test_eval_of_a_spec_without_a_split_and_train_over_stale_caches_refuse_before_the_rehearsal(
    workspace: Workspace,
) -> None:
    no_split = workspace.cli("eval", str(workspace.spec_path), env=FAILING)
    assert no_split.exit_code == 1
    assert "has no evaluation split" in no_split.stderr and "rehearsal" not in no_split.stderr
    uncached = workspace.cli("train", str(workspace.spec_path), env=FAILING)
    assert uncached.exit_code == 1
    assert "run `fplora cache` first" in uncached.stderr and "rehearsal" not in uncached.stderr
    assert workspace.calls() == []


def test_a_code_path_that_needs_cuda_is_not_rehearsed_on_a_cpu_machine_and_not_failed(
    workspace: Workspace,
) -> None:
    """`device: cuda`, pinned memory, a GPU-only kernel: valid on the GPU box, impossible here. The
    stage (and those that need it) are said not rehearsed, and the rest of the spec still passes."""
    error = "RuntimeError: Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU"
    result = workspace.cli(
        "rehearse", str(workspace.spec_path), env={"FAKE_REHEARSAL_FAIL": f"train:{error}"}
    )
    said = result.stdout + result.stderr
    assert result.exit_code == 0, said
    assert "--   train: not rehearsed: its code path needs CUDA, which this machine lacks" in said
    assert "--   generate: not rehearsed: it needs train, which could not run here" in said
    assert "ok   cache-latents" in said
    assert "not rehearsed on this machine: train, resume, generate, sweep" in said


def test_a_cache_script_that_writes_no_caches_fails_its_own_stage(workspace: Workspace) -> None:
    """caching that exits 0 without a cache (a debug mode, a batch size that loops over nothing) is
    caught at caching, not later as a training without data."""
    result = workspace.cli("rehearse", str(workspace.spec_path), env={"FAKE_REHEARSAL_NOOP": "cache-latents"})
    said = result.stdout + result.stderr
    assert result.exit_code == 1
    assert "rehearsal failed at stage cache-latents (latent caches): wrote 0 of 2 latent caches in" in said
    assert "(exit code 0 notwithstanding): training would find no data" in said


def test_a_training_stage_that_saves_no_lora_fails_there_not_in_the_stages_after_it(
    workspace: Workspace,
) -> None:
    """musubi-tuner's trainer can exit 0 having trained nothing (`show_timesteps` returns before its
    loop): the missing LoRA fails training itself, and the stages that needed it are not run because
    training failed, not blamed in its place."""
    result = workspace.cli("rehearse", str(workspace.spec_path), env={"FAKE_REHEARSAL_NOOP": "train"})
    said = result.stdout + result.stderr
    assert result.exit_code == 1
    assert "rehearsal failed at stage train (" in said
    assert ".safetensors (exit code 0 notwithstanding)" in said
    assert "--   generate: not run: train failed" in said
    assert "rehearsal failed at stage generate" not in said
