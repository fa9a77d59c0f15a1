"""`fplora eval` against the real evaluation worker file with a stand-in backend (no torch): the
plan it is given, the table, eval.json with global steps across a resume, skipping what is already
scored, a failing checkpoint, and `--lora best` in infer and runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes import fake
from fakes.fixtures import Workspace

from fplora.runs import evaluation

pytest_plugins = ["fakes.fixtures"]

TIMESTEPS = [0.25, 0.75]


@pytest.fixture
def trained(workspace: Workspace) -> Workspace:
    """Steps 1–4 trained with LoRAs every step, records 2 and 4 held out for evaluation."""
    workspace.write_spec(eval={"records": [2, 4], "timesteps": TIMESTEPS})
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    result = workspace.cli("train", str(workspace.spec_path))
    assert result.exit_code == 0, result.output
    workspace.forget_calls()
    return workspace


def eval_json(workspace: Workspace) -> dict:
    path = workspace.output_dir / f"{workspace.output_name}.eval.json"
    return json.loads(path.read_text(encoding="utf-8"))


def test_eval_scores_every_checkpoint_in_one_worker_and_keeps_eval_json(trained: Workspace) -> None:
    result = trained.cli("eval", str(trained.spec_path))
    assert result.exit_code == 0, result.output
    (call,) = trained.calls()
    invocation = fake.validate(call["args"])
    plan = invocation.values["plan"]
    assert plan["dataset_config"].endswith("eval-dataset.toml") and plan["timesteps"] == TIMESTEPS
    labels = [c["label"] for c in plan["checkpoints"]]
    assert labels == ["untrained", "step1", "step2", "step3", "step4"]  # final = step4's weights: once
    data = eval_json(trained)
    points = {p["label"]: p for p in data["points"]}
    assert points["untrained"]["step"] == 0 and points["untrained"]["lora"] is None
    assert points["step3"]["step"] == 3 and points["step3"]["lora"].endswith(
        "fake-v1-step00000003.safetensors"
    )
    assert [b["t"] for b in points["step3"]["bands"]] == TIMESTEPS
    expected = sum(fake.fake_eval_loss("step3", t) for t in TIMESTEPS) / 2
    assert points["step3"]["loss"] == pytest.approx(expected)
    assert data["setup"]["timesteps"] == TIMESTEPS and set(data["setup"]["records"]) == {"0002", "0004"}
    out = result.stdout
    assert "t=0.25" in out and "t=0.75" in out and "step3" in out
    assert f"{expected:.5f} ←" in out  # the best is marked
    assert "best: step3" in result.stderr and "s per checkpoint after the load" in result.stderr


def test_eval_skips_checkpoints_scored_with_the_same_setup(trained: Workspace) -> None:
    assert trained.cli("eval", str(trained.spec_path), "--lora", "step1..step2").exit_code == 0
    trained.forget_calls()
    result = trained.cli("eval", str(trained.spec_path))
    assert result.exit_code == 0, result.output
    (call,) = trained.calls()
    labels = [c["label"] for c in fake.validate(call["args"]).values["plan"]["checkpoints"]]
    assert labels == ["step3", "step4"]
    assert "3 checkpoint(s) already scored with this setup: skipped" in result.stderr
    assert {p["label"] for p in eval_json(trained)["points"]} == {
        "untrained",
        "step1",
        "step2",
        "step3",
        "step4",
    }
    trained.forget_calls()
    nothing = trained.cli("eval", str(trained.spec_path))
    assert "nothing to score" in nothing.stderr and trained.calls() == []


def test_a_changed_setup_drops_the_old_scores(trained: Workspace) -> None:
    assert trained.cli("eval", str(trained.spec_path), "--lora", "step1").exit_code == 0
    trained.write_spec(eval={"noise_seed": 7})
    result = trained.cli("eval", str(trained.spec_path), "--lora", "step2", "--no-untrained")
    assert result.exit_code == 0, result.output
    assert "evaluation setup changed" in result.stderr and "noise_seed" in result.stderr
    assert [p["label"] for p in eval_json(trained)["points"]] == ["step2"]


def test_a_failing_checkpoint_is_reported_and_the_others_are_kept(trained: Workspace) -> None:
    result = trained.cli("eval", str(trained.spec_path), env={"FAKE_EVAL_FAIL": "step2"})
    assert result.exit_code == 1
    assert "step2: failed: RuntimeError: fake failure of step2" in result.stderr
    assert "step2" not in {p["label"] for p in eval_json(trained)["points"]}
    assert "step3" in {p["label"] for p in eval_json(trained)["points"]}


def test_eval_needs_a_split_and_its_caches(workspace: Workspace) -> None:
    result = workspace.cli("eval", str(workspace.spec_path), "--dry-run")
    assert result.exit_code == 1 and "has no evaluation split" in result.output
    workspace.write_spec(eval={"records": [2]})
    result = workspace.cli("eval", str(workspace.spec_path))
    assert result.exit_code == 1
    assert "eval: cache of 1 records misses 1 latent" in result.output and "fplora cache" in result.output


def test_resumed_segments_are_scored_at_their_global_steps(trained: Workspace) -> None:
    trained.write_spec(train={"max_train_steps": 6})
    result = trained.cli("train", str(trained.spec_path), "--resume", "latest")
    assert result.exit_code == 0, result.output
    assert (
        trained.cli("eval", str(trained.spec_path), "--lora", "step5..step6", "--no-untrained").exit_code == 0
    )
    points = {p["label"]: p for p in eval_json(trained)["points"]}
    assert points["step5"]["step"] == 5 and "-r1-step00000001" in points["step5"]["lora"]
    assert points["step6"]["step"] == 6


def test_lora_best_takes_the_lowest_scored_checkpoint(trained: Workspace) -> None:
    refused = trained.cli("infer", str(trained.spec_path), "--lora", "best", "--dry-run")
    assert refused.exit_code == 1
    assert "no evaluation of fake-v1 yet" in refused.output and "fplora eval" in refused.output
    assert trained.cli("eval", str(trained.spec_path)).exit_code == 0
    result = trained.cli("infer", str(trained.spec_path), "--lora", "best", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "fake-v1-step00000003.safetensors" in result.stdout
    runs = trained.cli("runs", str(trained.spec_path))
    assert "best evaluation: step3" in runs.output and "--lora best" in runs.output


def test_best_prefers_the_earlier_step_on_a_tie() -> None:
    def point(label: str, step: int, loss: float) -> evaluation.Point:
        return evaluation.Point(label=label, step=step, lora=f"/x/{label}", loss=loss, bands=[])

    data = evaluation.EvalFile(
        points=[
            point("step3", 3, 0.1),
            point("step2", 2, 0.1),
            evaluation.Point(label="untrained", step=0, lora=None, loss=0.01, bands=[]),
        ]
    )
    best = data.best()
    assert best is not None and best.label == "step2"  # the untrained network never counts


def test_the_protocol_constants_match_the_worker() -> None:
    import importlib.util

    path = Path(evaluation.__file__).parents[1] / "worker" / "eval.py"
    spec = importlib.util.spec_from_file_location("fplora_eval_worker_constants", path)
    assert spec is not None and spec.loader is not None
    worker = importlib.util.module_from_spec(spec)
    import sys

    sys.modules[spec.name] = worker
    spec.loader.exec_module(worker)
    assert worker.PROTOCOL == evaluation.PROTOCOL and worker.EVENT_PREFIX == evaluation.EVENT_PREFIX


def test_a_dry_run_prints_the_worker_command_and_writes_no_plan(workspace: Workspace) -> None:
    workspace.write_spec(eval={"fraction": 0.25})
    result = workspace.cli("eval", str(workspace.spec_path), "--dry-run")
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    assert "-m accelerate.commands.launch --num_processes 1" in line
    assert line.split()[-3].endswith("src/fplora/worker/eval.py") and line.split()[-2] == "--plan"
    assert not Path(line.split()[-1]).exists()
    assert "it would score 1 checkpoint(s)" in result.stderr  # before training: the untrained network
