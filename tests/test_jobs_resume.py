"""`fplora train --resume`: segments, global steps, and never overwriting the first run's files.

musubi-tuner restarts its step count at 0 after `--resume` and would reuse the first run's
`-stepNNNNNNNN` names; the fake does the same, so these tests fail if fplora ever lets a resumed
segment write under the first segment's name or loses track of where its steps start.
"""

from __future__ import annotations

import shlex

import pytest
from fakes import fake
from fakes.fixtures import Workspace, snapshot

pytest_plugins = ["fakes.fixtures"]


@pytest.fixture
def stopped(cached: Workspace) -> Workspace:
    """A first segment stopped by hand after step 2 of 4 (checkpoints and states at 1 and 2)."""
    result = cached.cli("train", str(cached.spec_path), env={"FAKE_TRAIN_STOP_AFTER": "2"})
    assert result.exit_code == 130, result.output
    cached.forget_calls()
    return cached


def test_a_stopped_training_ends_with_the_command_that_continues_it(cached: Workspace) -> None:
    result = cached.cli("train", str(cached.spec_path), env={"FAKE_TRAIN_STOP_AFTER": "2"})
    assert result.exit_code == 130
    assert (
        result.stderr.splitlines()[-1] == "continue from step2: fplora train configs/v1.yaml --resume latest"
    )
    resumed = cached.cli(
        "train", str(cached.spec_path), "--resume", "latest", env={"FAKE_TRAIN_STOP_AFTER": "1"}
    )
    assert resumed.exit_code == 130
    assert resumed.stderr.splitlines()[-1] == (
        "continue from step3: fplora train configs/v1.yaml --resume latest"
    )


def first_segment_files(workspace: Workspace) -> dict[str, tuple[str, int]]:
    return {
        name: value
        for name, value in snapshot(workspace.output_dir).items()
        if name.startswith("fake-v1-step") or name in ("fake-v1.log", "fake-v1.safetensors")
    }


def train_call(workspace: Workspace) -> dict:
    (call,) = workspace.calls("fpack_train_network")
    return fake.validate(call["args"]).given


def test_stopped_segment_is_recorded(stopped: Workspace) -> None:
    (segment,) = stopped.manifest()["segments"]
    assert segment["exit_code"] == 130 and segment["last_step"] == 2
    assert not (stopped.output_dir / "fake-v1.safetensors").exists()


def test_resume_latest_continues_as_a_new_segment(stopped: Workspace) -> None:
    before = first_segment_files(stopped)
    result = stopped.cli("train", str(stopped.spec_path), "--resume", "latest")
    assert result.exit_code == 0, result.output
    assert "resuming at global step 2 as fake-v1-r1" in result.stderr
    given = train_call(stopped)
    state = stopped.output_dir / "fake-v1-step00000002-state"
    assert given["output_name"] == "fake-v1-r1"
    assert given["resume"] == str(state)
    assert given["max_train_steps"] == 2

    first, second = stopped.manifest()["segments"]
    assert first["output_name"] == "fake-v1"
    assert second["output_name"] == "fake-v1-r1"
    assert second["step_offset"] == 2 and second["resumed_from"] == str(state)
    assert second["last_step"] == 2 and second["exit_code"] == 0
    assert "training finished at global step 4" in result.stderr

    names = {p.name for p in stopped.output_dir.iterdir()}
    assert {"fake-v1-r1-step00000001.safetensors", "fake-v1-r1-step00000002.safetensors"} <= names
    assert {"fake-v1-r1.safetensors", "fake-v1-r1-state", "fake-v1-r1.log"} <= names
    # the resumed trainer counted from 0 again: under the first name it would have rewritten these
    assert first_segment_files(stopped) == before


@pytest.fixture
def resumed(stopped: Workspace) -> Workspace:
    """Segment 0 ran steps 1-2; segment -r1 ran global steps 3-4 (its own steps 1-2)."""
    assert stopped.cli("train", str(stopped.spec_path), "--resume", "latest").exit_code == 0
    stopped.forget_calls()
    return stopped


def generate_lora(workspace: Workspace) -> str:
    (call,) = workspace.calls("fpack_generate_video")
    (weight,) = fake.validate(call["args"]).given["lora_weight"]
    return weight


GLOBAL_STEPS = {
    "step1": "fake-v1-step00000001.safetensors",
    "step2": "fake-v1-step00000002.safetensors",
    "step3": "fake-v1-r1-step00000001.safetensors",
    "step4": "fake-v1-r1-step00000002.safetensors",
    "latest": "fake-v1-r1-step00000002.safetensors",
    "final": "fake-v1-r1.safetensors",
}


def test_infer_resolves_global_steps_across_segments(resumed: Workspace) -> None:
    """One test for all words: building the two-segment run costs more than the checks."""
    for which, file in GLOBAL_STEPS.items():
        resumed.forget_calls()
        result = resumed.cli("infer", str(resumed.spec_path), "--lora", which)
        assert result.exit_code == 0, (which, result.output)
        assert generate_lora(resumed) == str(resumed.output_dir / file), which
    sample = resumed.output_dir / "sample"
    assert {p.name for p in sample.iterdir() if p.is_dir()} == {
        f"v1-step0000000{n}-lm1.0" for n in (1, 2, 3, 4)
    }


def test_resume_again_is_refused_at_max_train_steps(resumed: Workspace) -> None:
    before = snapshot(resumed.output_dir)
    result = resumed.cli("train", str(resumed.spec_path), "--resume", "latest")
    assert result.exit_code == 1
    assert (
        "already at max_train_steps (4)" in result.stderr and "raise train.max_train_steps" in result.stderr
    )
    assert resumed.calls() == []
    assert snapshot(resumed.output_dir) == before


def test_resume_by_global_step_from_an_earlier_segment(resumed: Workspace) -> None:
    result = resumed.cli("train", str(resumed.spec_path), "--resume", "step2")
    assert result.exit_code == 0, result.output
    given = train_call(resumed)
    assert given["output_name"] == "fake-v1-r2"
    assert given["resume"] == str(resumed.output_dir / "fake-v1-step00000002-state")
    assert given["max_train_steps"] == 2
    assert resumed.manifest()["segments"][2]["step_offset"] == 2


def test_resume_from_a_state_path_of_a_later_segment_uses_its_global_step(resumed: Workspace) -> None:
    """`-r1-step00000001-state` holds global step 3, not 1: its name only has the segment's own step."""
    state = resumed.output_dir / "fake-v1-r1-step00000001-state"
    result = resumed.cli("train", str(resumed.spec_path), "--resume", str(state))
    assert result.exit_code == 0, result.output
    given = train_call(resumed)
    assert given["resume"] == str(state)
    assert given["max_train_steps"] == 1
    third = resumed.manifest()["segments"][2]
    assert third["output_name"] == "fake-v1-r2" and third["step_offset"] == 3


def test_resume_from_a_relative_state_path(stopped: Workspace) -> None:
    result = stopped.cli("train", str(stopped.spec_path), "--resume", "outputs/fake-v1-step00000001-state")
    assert result.exit_code == 0, result.output
    given = train_call(stopped)
    assert given["max_train_steps"] == 3
    assert stopped.manifest()["segments"][1]["step_offset"] == 1


def test_resume_at_an_unknown_step_lists_the_available_ones(stopped: Workspace) -> None:
    result = stopped.cli("train", str(stopped.spec_path), "--resume", "step3")
    assert result.exit_code == 1
    assert "no state at global step 3 — available: step1, step2" in result.stderr
    assert stopped.calls() == []


def test_raising_max_train_steps_continues_a_finished_run(cached: Workspace) -> None:
    assert cached.cli("train", str(cached.spec_path)).exit_code == 0
    cached.write_spec(train={"max_train_steps": 6})
    cached.forget_calls()
    result = cached.cli("train", str(cached.spec_path), "--resume", "final")
    assert result.exit_code == 0, result.output
    given = train_call(cached)
    assert given["resume"] == str(cached.output_dir / "fake-v1-state")
    assert given["max_train_steps"] == 2
    assert cached.manifest()["segments"][1]["step_offset"] == 4
    infer = cached.cli("infer", str(cached.spec_path), "--lora", "step5")
    assert infer.exit_code == 0, infer.output
    assert generate_lora(cached) == str(cached.output_dir / "fake-v1-r1-step00000001.safetensors")


def test_resuming_a_run_without_manifest_keeps_its_checkpoints(stopped: Workspace) -> None:
    """A run trained by musubi-tuner directly (or whose manifest was lost) is segment 0."""
    stopped.manifest_path.unlink()
    result = stopped.cli("train", str(stopped.spec_path), "--resume", "latest")
    assert result.exit_code == 0, result.output
    segments = stopped.manifest()["segments"]
    assert [s["output_name"] for s in segments] == ["fake-v1", "fake-v1-r1"]
    assert segments[1]["step_offset"] == 2
    for which, file in (
        ("step1", "fake-v1-step00000001.safetensors"),
        ("step3", "fake-v1-r1-step00000001.safetensors"),
    ):
        stopped.forget_calls()
        infer = stopped.cli("infer", str(stopped.spec_path), "--lora", which)
        assert infer.exit_code == 0, (which, infer.output)
        assert generate_lora(stopped) == str(stopped.output_dir / file)


def test_resume_dry_run_prints_a_valid_command_and_touches_nothing(stopped: Workspace) -> None:
    before = snapshot(stopped.output_dir)
    result = stopped.cli("train", str(stopped.spec_path), "--resume", "latest", "--dry-run")
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    given = fake.validate(shlex.split(line)[1:]).given
    assert given["output_name"] == "fake-v1-r1" and given["max_train_steps"] == 2
    assert given["resume"] == str(stopped.output_dir / "fake-v1-step00000002-state")
    assert stopped.calls() == []
    assert snapshot(stopped.output_dir) == before


def test_resuming_from_an_older_state_says_it_trains_those_steps_again(resumed: Workspace) -> None:
    result = resumed.cli("train", str(resumed.spec_path), "--resume", "step2")
    assert result.exit_code == 0, result.output
    assert (
        "the run already reached global step 4; resuming from step 2 trains steps 3–4 again" in result.stderr
    )


def test_a_step_in_two_segments_names_the_one_used_and_the_other(resumed: Workspace) -> None:
    """After a second resume from step 2, global step 3 exists in -r1 and -r2: the newest is used."""
    assert resumed.cli("train", str(resumed.spec_path), "--resume", "step2").exit_code == 0
    resumed.forget_calls()
    result = resumed.cli("infer", str(resumed.spec_path), "--lora", "step3")
    assert result.exit_code == 0, result.output
    assert generate_lora(resumed) == str(resumed.output_dir / "fake-v1-r2-step00000001.safetensors")
    assert "note: step3 also exists in an older segment: outputs/fake-v1-r1-step00000001.safetensors" in (
        result.stderr
    )


def test_dry_run_fails_like_the_real_command_once_states_exist(stopped: Workspace) -> None:
    """Only before any state exists may a dry run show a future state's name."""
    result = stopped.cli("train", str(stopped.spec_path), "--resume", "step3", "--dry-run")
    assert result.exit_code == 1
    assert "no state at global step 3 — available: step1, step2" in result.stderr
    assert "does not exist yet" not in result.stderr


def test_a_bare_number_is_answered_with_the_step_word(stopped: Workspace) -> None:
    result = stopped.cli("infer", str(stopped.spec_path), "--lora", "2")
    assert result.exit_code == 1
    assert "2: no such file, and not latest, final, best or stepN — write step2" in result.stderr


def test_a_misspelt_word_is_answered_with_the_word_this_command_takes(stopped: Workspace) -> None:
    """`--resume lastest`: did you mean latest; resume takes no `final`, so it is not offered."""
    result = stopped.cli("train", str(stopped.spec_path), "--resume", "lastest")
    assert result.exit_code == 1
    assert "error: lastest: no such file, and not latest or stepN — did you mean 'latest'?" in result.stderr
    assert "final" not in result.stderr
    lora = stopped.cli("infer", str(stopped.spec_path), "--lora", "fianl")
    assert lora.exit_code == 1
    assert (
        "error: fianl: no such file, and not latest, final, best or stepN — did you mean 'final'?"
        in lora.stderr
    )


def test_resume_refuses_another_process_count_in_words_that_agree(stopped: Workspace) -> None:
    """A DDP state does not load across process counts; the count agrees with its noun."""
    stopped.write_spec(launch={"num_processes": 2})
    result = stopped.cli("train", str(stopped.spec_path), "--resume", "latest")
    assert result.exit_code == 1
    assert "launch.num_processes: the state was saved with 1 process, this run uses 2" in result.stderr
    assert stopped.calls() == []


def test_resume_refuses_a_network_the_state_cannot_load(stopped: Workspace) -> None:
    """A changed dim fails in musubi-tuner's load_state, after the models are loaded."""
    stopped.write_spec(train={"network": {"dim": 16}})
    result = stopped.cli("train", str(stopped.spec_path), "--resume", "latest")
    assert result.exit_code == 1
    assert "train.network.dim: the state was saved with 32, the spec now says 16" in result.stderr
    assert stopped.calls() == []


def test_resume_notes_other_changed_settings_and_keeps_each_segments_files(stopped: Workspace) -> None:
    first = stopped.manifest()["segments"][0]
    stopped.write_spec(train={"optimizer": {"learning_rate": 5e-4}})
    result = stopped.cli("train", str(stopped.spec_path), "--resume", "latest")
    assert result.exit_code == 0, result.output
    assert "note: the spec changed since the state was saved: train.optimizer.learning_rate" in result.stderr
    segments = stopped.manifest()["segments"]
    config = next(text for path, text in segments[1]["rendered"].items() if path.endswith("config.toml"))
    assert "learning_rate = 0.0005" in config
    assert segments[1]["spec_resolved"]["train"]["optimizer"]["learning_rate"] == 5e-4
    assert segments[0]["rendered"] == first["rendered"]  # the first segment's own config is kept
    assert "learning_rate = 0.001" in next(
        text for path, text in segments[0]["rendered"].items() if path.endswith("config.toml")
    )


def test_resume_notes_changes_in_the_spec_s_words_not_python_s(stopped: Workspace) -> None:
    """Another GPU's preset on resume turned block swap off: the note said `20 → None`."""
    first = stopped.manifest()["segments"][0]["spec_resolved"]["train"]
    assert first["blocks_to_swap"] is None and first["img_in_txt_in_offloading"] is False
    stopped.write_spec(train={"blocks_to_swap": 4, "img_in_txt_in_offloading": True})
    result = stopped.cli("train", str(stopped.spec_path), "--resume", "latest", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "train.blocks_to_swap null → 4" in result.stderr
    assert "train.img_in_txt_in_offloading false → true" in result.stderr
    assert "None" not in result.stderr and "True" not in result.stderr


def test_resume_from_a_lora_file_says_it_is_not_a_state(stopped: Workspace) -> None:
    lora = stopped.output_dir / "fake-v1-step00000002.safetensors"
    result = stopped.cli("train", str(stopped.spec_path), "--resume", str(lora))
    assert result.exit_code == 1
    assert "is a file, not a training state" in result.stderr
    assert stopped.calls() == []


def test_resume_latest_with_every_state_deleted_says_what_is_left_to_do(stopped: Workspace) -> None:
    """The states deleted to save disk, the LoRAs kept: resume said "no state found — train first",
    and a plain train refuses the run's folder."""
    import shutil

    for state in stopped.output_dir.glob("*-state"):
        shutil.rmtree(state)
    result = stopped.cli("train", str(stopped.spec_path), "--resume", "latest")
    assert result.exit_code == 1
    assert (
        "error: outputs: no state of fake-v1 found, only LoRAs (step1, step2): a run continues only from a"
        " state — start a new version (a new spec file); to begin from a LoRA's weights, set"
        " musubi.config.network_weights to it there"
    ) in result.stderr
    assert stopped.calls() == []


def test_resume_from_another_runs_state_is_called_a_warm_start(stopped: Workspace) -> None:
    import shutil

    other = stopped.root / "elsewhere" / "other-step00000002-state"
    shutil.copytree(stopped.output_dir / "fake-v1-step00000002-state", other)
    result = stopped.cli("train", str(stopped.spec_path), "--resume", str(other))
    assert result.exit_code == 0, result.output
    assert (
        "is not a state of fake-v1; its weights and optimizer start this run (a warm start)" in result.stderr
    )


def test_a_resumed_segment_logs_to_a_wandb_run_of_its_own(stopped: Workspace) -> None:
    """musubi-tuner counts steps from 0 again after resume; in the first segment's wandb run its
    steps would be dropped as lower than the run's (render/tracker.py)."""
    stopped.write_spec(train={"logging": {"with": "wandb"}})
    result = stopped.cli("train", str(stopped.spec_path), "--resume", "latest", "--dry-run")
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    given = fake.validate(shlex.split(line)[1:]).given
    assert given["log_tracker_config"] == str(stopped.render_dir / "tracker-r1.toml")


def test_resume_refuses_a_scheduler_that_cannot_load_the_states(cached: Workspace) -> None:
    """musubi-tuner builds every named scheduler but rex (and a torch class named by
    lr_scheduler_type) as a LambdaLR, whose load_state_dict needs the `lr_lambdas` a RexLR state does
    not have (KeyError after the models load); the other way round loads."""
    cached.write_spec(train={"optimizer": {"lr_scheduler": "rex", "lr_warmup_steps": 1}})
    result = cached.cli("train", str(cached.spec_path), env={"FAKE_TRAIN_STOP_AFTER": "2"})
    assert result.exit_code == 130, result.output
    cached.forget_calls()
    cached.write_spec(train={"optimizer": {"lr_scheduler": "cosine", "lr_warmup_steps": 1}})
    result = cached.cli("train", str(cached.spec_path), "--resume", "latest")
    assert result.exit_code == 1
    assert (
        "train.optimizer.lr_scheduler: the state was saved with musubi-tuner's RexLR scheduler, the spec"
        " now builds a LambdaLR (cosine): its load_state_dict needs the lr_lambdas that state lacks"
    ) in result.stderr
    assert cached.calls() == []
    cached.write_spec(train={"optimizer": {"lr_scheduler": "rex", "lr_warmup_steps": 2}})
    resumed = cached.cli("train", str(cached.spec_path), "--resume", "latest")
    assert resumed.exit_code == 0, resumed.output
