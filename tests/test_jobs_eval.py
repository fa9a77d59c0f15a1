"""`fplora eval` against the real evaluation worker file with a stand-in backend (no torch): the
plan it is given, the table, eval.json with global steps across a resume, skipping what is already
scored, a failing checkpoint, and `--lora best` in infer and runs.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest
from fakes import fake
from fakes.fixtures import Workspace

from fplora.protocol import eval as protocol
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
    assert "3 checkpoints already scored with this setup: skipped" in result.stderr
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
    assert "eval: cache of 1 record misses 1 latent" in result.output and "fplora cache" in result.output
    # eval's advice is caching, never a training (`fplora train --cache`), and said once
    assert "train --cache" not in result.output
    assert result.output.count("error:") == 1, result.output


def test_eval_links_a_split_the_store_already_holds(trained: Workspace) -> None:
    """A second version with the same split computes nothing: eval links its caches rather than
    sending the user to `fplora cache` for links."""
    second = trained.root / "configs" / "v1b.yaml"
    second.write_text("extends: v1.yaml\n", encoding="utf-8")
    (trained.output_dir / "fake-v1b.fplora-run.json").unlink(missing_ok=True)
    for path in trained.output_dir.glob("fake-v1-*.safetensors"):
        shutil.copy(path, path.with_name(path.name.replace("fake-v1-", "fake-v1b-")))
    result = trained.cli("eval", str(second), "--no-rehearse", "--lora", "all")
    assert result.exit_code == 0, result.output
    assert "caches ready:" in result.output
    assert [c for c in trained.calls() if "fpack_cache" in " ".join(c["args"])] == []


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


def test_lora_best_whose_file_was_deleted_names_it_and_the_best_left(trained: Workspace) -> None:
    """The best checkpoint deleted: `--lora best` said "no LoRA at global step 3", not that best
    meant step 3, nor which scored checkpoint is best of those still there."""
    assert trained.cli("eval", str(trained.spec_path)).exit_code == 0
    points = [p for p in eval_json(trained)["points"] if p["lora"]]
    best, runner_up = sorted(points, key=lambda p: (p["loss"], p["step"]))[:2]
    Path(best["lora"]).unlink()
    result = trained.cli("export", str(trained.spec_path), "--lora", "best")
    assert result.exit_code == 1
    assert (
        f"--lora best: the best-scored LoRA, {best['label']} (loss {best['loss']:.5f}), is no longer there"
        f" — the best-scored of those left is {runner_up['label']} (loss {runner_up['loss']:.5f}):"
        f" --lora {runner_up['label']}"
    ) in result.stderr


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
    assert worker.PROTOCOL == protocol.PROTOCOL and worker.EVENT_PREFIX == protocol.EVENT_PREFIX


def test_a_dry_run_prints_the_worker_command_and_writes_no_plan(workspace: Workspace) -> None:
    workspace.write_spec(eval={"fraction": 0.25})
    result = workspace.cli("eval", str(workspace.spec_path), "--dry-run")
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    assert "-m accelerate.commands.launch --num_processes 1" in line
    assert line.split()[-3].endswith("src/fplora/worker/eval.py") and line.split()[-2] == "--plan"
    assert not Path(line.split()[-1]).exists()
    assert "it would score 1 checkpoint" in result.stderr  # before training: the untrained network


def _musubi_training_parser_module() -> ModuleType:
    """musubi-tuner's parser and config reader as they behave at the pinned commit:
    `read_config_from_file` parses `sys.argv` again (training/parser_common.py:807)."""
    import argparse

    module = ModuleType("musubi_tuner.fpack_train_network")

    def setup_parser_common() -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser()
        parser.add_argument("--config_file")
        parser.add_argument("--network_dim", type=int)
        return parser

    def read_config_from_file(
        args: argparse.Namespace, parser: argparse.ArgumentParser
    ) -> argparse.Namespace:
        assert Path(args.config_file).is_file()
        return parser.parse_args(namespace=argparse.Namespace(network_dim=32))  # as if read from it

    module.setup_parser_common = setup_parser_common  # type: ignore[attr-defined]
    module.framepack_setup_parser = lambda parser: parser  # type: ignore[attr-defined]
    module.read_config_from_file = read_config_from_file  # type: ignore[attr-defined]
    return module


def test_the_worker_reads_the_run_config_with_musubis_own_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first GPU run died in argparse ("unrecognized arguments: --plan"): musubi-tuner's config
    reader parses sys.argv, which held the worker's command line."""
    path = Path(__file__).resolve().parents[1] / "src" / "fplora" / "worker" / "eval.py"
    spec = importlib.util.spec_from_file_location("fplora_eval_worker_argv", path)
    assert spec is not None and spec.loader is not None
    worker = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = worker  # dataclasses look their module up
    spec.loader.exec_module(worker)
    config = tmp_path / "config.toml"
    config.write_text("[network]\nnetwork_dim = 32\n")
    package = ModuleType("musubi_tuner")
    package.fpack_train_network = _musubi_training_parser_module()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "musubi_tuner", package)
    monkeypatch.setitem(sys.modules, "musubi_tuner.fpack_train_network", package.fpack_train_network)
    monkeypatch.setattr(sys, "argv", [str(path), "--plan", str(tmp_path / "plan.json")])
    plan = worker.Plan(str(config), str(tmp_path / "eval-dataset.toml"), [0.5], 42, [])
    backend = worker.MusubiBackend()
    backend.calls = worker.common.musubi_calls()  # musubi_calls.py beside the worker, against the stand-in
    args = backend._args(plan)
    assert (args.network_dim, args.dataset_config, args.timestep_sampling) == (
        32,
        plan.dataset_config,
        "uniform",
    )
    assert sys.argv[1] == "--plan"  # given back


def test_the_worker_finds_short_network_module_names_as_training_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`networks.lora_framepack` is a name inside the musubi_tuner package: training puts the package
    folder on sys.path. The worker once put the folder above it there (found on the CPU against the
    real musubi-tuner: "No module named 'networks'")."""
    path = Path(__file__).resolve().parents[1] / "src" / "fplora" / "worker" / "eval.py"
    spec = importlib.util.spec_from_file_location("fplora_eval_worker_networks", path)
    assert spec is not None and spec.loader is not None
    worker = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = worker
    spec.loader.exec_module(worker)
    package = tmp_path / "src" / "musubi_tuner"
    (package / "networks").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "networks" / "__init__.py").write_text("")
    (package / "networks" / "lora_stand_in.py").write_text("FOUND = 'inside musubi_tuner'\n")
    (package / "fpack_train_network.py").write_text("")
    monkeypatch.setattr(sys, "path", [str(tmp_path / "src"), *sys.path])
    for name in ("networks", "musubi_tuner", "musubi_tuner.fpack_train_network"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    module = worker.common.musubi_calls().network_module("networks.lora_stand_in")
    assert module.FOUND == "inside musubi_tuner"
    for name in ("networks", "networks.lora_stand_in", "musubi_tuner", "musubi_tuner.fpack_train_network"):
        sys.modules.pop(name, None)


def test_the_worker_compiles_as_training_does_unless_eval_says(trained: Workspace) -> None:
    """`compile` in the plan follows train.compile (the h200 preset sets it), eval.compile wins, and a
    change of it is a change of setup (compiled kernels round differently)."""
    plans = []
    for change in ({}, {"train": {"compile": True}}, {"eval": {"compile": False}}):
        trained.write_spec(**change)
        trained.forget_calls()
        result = trained.cli("eval", str(trained.spec_path), "--lora", "step4", "--redo")
        assert result.exit_code == 0, result.output
        (call,) = trained.calls()
        plans.append(fake.validate(call["args"]).values["plan"]["compile"])
        assert eval_json(trained)["setup"]["compile"] is plans[-1]
    assert plans == [False, True, False]


def test_a_compiled_evaluation_reports_the_first_checkpoint_apart(trained: Workspace) -> None:
    trained.write_spec(eval={"compile": True})
    result = trained.cli("eval", str(trained.spec_path), "--lora", "step3..step4", "--redo")
    assert result.exit_code == 0, result.output
    assert "s for the first, with compiling;" in result.stdout + result.stderr
    assert "s per checkpoint after it)" in result.stdout + result.stderr


def test_a_split_written_after_training_is_refused_for_scoring(workspace: Workspace) -> None:
    """`eval:` added to a spec that has trained: the records it holds out were trained on, so their
    loss says how well the LoRA fits them, not how it does on records it never saw, and `--lora best`
    would pick the most overfitted checkpoint."""
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    assert workspace.cli("train", str(workspace.spec_path)).exit_code == 0
    workspace.write_spec(eval={"records": [2, 4], "timesteps": TIMESTEPS})
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    workspace.forget_calls()
    refused = workspace.cli("eval", str(workspace.spec_path), "--no-rehearse")
    assert refused.exit_code == 1
    (line,) = [x for x in refused.output.splitlines() if x.startswith("error:")]
    assert line.startswith("error: configs/v1.yaml:")
    assert (
        "eval: fake-v1 trained without this evaluation split, so the checkpoints to score were trained"
        " on the records it holds out: their loss shows fit, not how the LoRA does on records it never"
        " saw — train a new version with this eval: from the start, or set eval.allow_training_records:"
        " true to score them anyway"
    ) in line
    assert workspace.calls() == []
    workspace.write_spec(eval={"allow_training_records": True})
    allowed = workspace.cli("eval", str(workspace.spec_path), "--no-rehearse")
    assert allowed.exit_code == 0, allowed.output
    assert (
        "warning: configs/v1.yaml:" in allowed.output
        and "trained without this evaluation split" in allowed.output
    )


def test_a_split_trained_with_from_the_start_is_scored_without_a_word(trained: Workspace) -> None:
    result = trained.cli("eval", str(trained.spec_path), "--no-rehearse")
    assert result.exit_code == 0, result.output
    assert "trained without this evaluation split" not in result.output
