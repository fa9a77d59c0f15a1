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


@pytest.mark.parametrize("verb", ["infer", "eval"])
def test_infer_and_eval_rehearse_first_unless_told_not_to(workspace: Workspace, verb: str) -> None:
    """Both open their job through the CLI's one `common.job`, which runs the gate."""
    failing = {"FAKE_REHEARSAL_FAIL": "train:RuntimeError: No LoRA modules found"}
    stopped = workspace.cli(verb, str(workspace.spec_path), env=failing)
    assert stopped.exit_code == 1
    assert "rehearsal failed at stage train" in stopped.stderr
    assert workspace.calls() == []  # nothing of the verb's own ran
    skipped = workspace.cli(verb, str(workspace.spec_path), "--no-rehearse", env=failing)
    assert "rehearsal" not in skipped.stderr
