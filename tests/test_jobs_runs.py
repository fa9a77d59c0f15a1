"""`fplora runs`: a run's segments and checkpoints in global steps, after a resume."""

from __future__ import annotations

import os

from fakes.fixtures import Workspace

from fplora.problems import display_path

pytest_plugins = ["fakes.fixtures"]


def test_runs_lists_segments_in_global_steps(cached: Workspace) -> None:
    empty = cached.cli("runs", str(cached.spec_path))
    assert empty.exit_code == 0
    assert "fake-v1: no training yet in outputs" in empty.stdout
    assert cached.cli("train", str(cached.spec_path)).exit_code == 0
    cached.write_spec(train={"max_train_steps": 6})
    assert cached.cli("train", str(cached.spec_path), "--resume", "latest").exit_code == 0
    result = cached.cli("runs", str(cached.spec_path))
    assert result.exit_code == 0, result.output
    lines = [" ".join(line.replace("│", " ").split()) for line in result.stdout.splitlines()]
    first = next(line for line in lines if line.startswith("fake-v1 1"))
    second = next(line for line in lines if line.startswith("fake-v1-r1 "))
    assert first.startswith("fake-v1 1–4 finished")
    assert first.endswith("1, 2, 3, 4, final 1, 2, 3, 4, final")
    # the resumed segment's own step 1 and 2 are global steps 5 and 6
    assert second.startswith("fake-v1-r1 5–6 finished")
    assert second.endswith("5, 6, final 5, 6, final")


def test_a_long_list_of_steps_is_offered_as_a_range_and_the_nearest() -> None:
    from fplora.runs.checkpoints import available

    steps = list(range(100, 10_001, 100))
    assert available(steps, 150) == "100 steps from step100 to step10000; nearest: step100, step200"
    assert available(steps[:3], 150) == "step100, step200, step300"


def test_a_run_trained_from_another_spec_file_is_pointed_out_once(cached: Workspace) -> None:
    """Two projects sharing project name, version and output_dir share one run: say so, once, in
    check's words (`check/run_names.py`), whichever command reads the run."""
    import shutil

    assert cached.cli("train", str(cached.spec_path)).exit_code == 0
    twin = cached.root / "configs2"
    shutil.copytree(cached.spec_path.parent, twin, ignore=shutil.ignore_patterns("v1"))
    said = f"run fake-v1 in {display_path(cached.output_dir)} was started from"
    # the resume stops at the run's end (max_train_steps reached): after the warning, as any refusal would
    runs, infer, resume = ["runs"], ["infer", "--lora", "step1"], ["train", "--resume", "latest", "--dry-run"]
    for command, code in ((runs, 0), (infer, 0), (resume, 1)):
        result = cached.cli(command[0], str(twin / "v1.yaml"), *command[1:])
        assert result.exit_code == code, result.output
        told = [line for line in result.stderr.splitlines() if "run fake-v1" in line]
        assert len(told) == 1 and told[0].startswith("warning: ") and said in told[0], (command, told)
    same = cached.cli("runs", str(cached.spec_path))
    assert "was started from" not in same.stderr


def test_a_segment_whose_fplora_was_killed_is_not_shown_running(cached: Workspace) -> None:
    """kill -9 (or a lost pod) leaves a segment without an end; only a held lock means it runs."""
    import json

    assert cached.cli("train", str(cached.spec_path)).exit_code == 0
    data = cached.manifest()
    data["segments"][0].update(ended=None, exit_code=None, last_step=None)
    cached.manifest_path.write_text(json.dumps(data))
    result = cached.cli("runs", str(cached.spec_path))
    row = next(line for line in result.stdout.splitlines() if "fake-v1" in line and "–" in line)
    assert "1–4+" in row and "stopped (no exit recorded)" in row
    lock = cached.output_dir / "fake-v1.lock"
    lock.write_text(f"{os.getpid()}\n")  # a live holder: this test process
    result = cached.cli("runs", str(cached.spec_path))
    row = next(line for line in result.stdout.splitlines() if "fake-v1" in line and "–" in line)
    assert "running" in row
