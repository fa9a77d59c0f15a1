"""The learning rate follows the effective batch: derivation, rendering (config.toml parsed back),
the lines `check`, `render` and `--dry-run` print, and what a resume may not change behind the user."""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from fakes.fixtures import Workspace

from fplora import plan
from fplora.jobs.resume import resume_point
from fplora.problems import UserError
from fplora.runs.catalogue import Catalogue
from fplora.runs.manifest import Manifest, Segment
from fplora.spec import load_spec
from fplora.spec.learning_rate import derive, number
from fplora.spec.rules import spec_warnings

pytest_plugins = ["fakes.fixtures"]


def _rate(project: Callable[..., Path], text: str, tmp_path: Path) -> float:
    """The learning_rate of the rendered config.toml, read back with a TOML parser."""
    spec = load_spec(project(text))
    built = plan.build(spec, tmp_path / "out")
    config = next(t for p, t in built.files.items() if p.name == "config.toml")
    return float(tomllib.loads(config)["learning_rate"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # base: batch 2, 1 process, no accumulation
        ("train:\n  optimizer: {learning_rate: 1.0e-3}\n", 1e-3),  # no tuned_at_batch: as written
        ("train:\n  optimizer: {learning_rate: 1.0e-3, tuned_at_batch: 2}\n", 1e-3),
        ("data: {batch_size: 16}\ntrain:\n  optimizer: {learning_rate: 1.0e-3, tuned_at_batch: 4}\n", 2e-3),
        (
            "data: {batch_size: 8}\ntrain:\n  optimizer: {learning_rate: 1.0e-3, tuned_at_batch: 4}\n",
            1e-3 * math.sqrt(2),
        ),
        (
            "data: {batch_size: 4}\ntrain:\n  gradient_accumulation_steps: 2\n"
            "  optimizer: {learning_rate: 1.0e-3, tuned_at_batch: 4, lr_rule: linear}\n",
            2e-3,
        ),
        (
            "data: {batch_size: 16}\ntrain:\n  optimizer: {learning_rate: 1.0e-3, tuned_at_batch: 4, lr_rule: none}\n",
            1e-3,
        ),
        (  # two processes double the effective batch
            "data: {batch_size: 8}\nlaunch: {num_processes: 2}\n"
            "train:\n  optimizer: {learning_rate: 1.0e-3, tuned_at_batch: 4}\n",
            2e-3,
        ),
    ],
)
def test_rendered_rate_follows_the_effective_batch(
    project, tmp_path: Path, text: str, expected: float
) -> None:
    assert _rate(project, text, tmp_path) == pytest.approx(expected, rel=1e-5)  # 6 digits rendered


def test_derivation_text(project) -> None:
    spec = load_spec(project("data: {batch_size: 16}\ntrain:\n  optimizer: {tuned_at_batch: 4}\n"))
    assert derive(spec).text() == "learning_rate 1e-3 tuned at batch 4 → 2e-3 at effective batch 16 (sqrt)"
    assert number(1e-3 * math.sqrt(2)) == "1.414e-3"
    assert number(0.05) == "0.05"


def test_datasets_of_different_batch_sizes_run_with_the_rate_as_written(project) -> None:
    """musubi-tuner runs datasets of different batch sizes (each step's batch comes from one of
    them), so the base's tuned_at_batch, which has no one effective batch to scale to, does not stop
    such a spec: the rate is used as written, and check says so as a warning at the key."""
    path = project(
        "datasets:\n"
        "  - {jsonl: ../data/dataset-v1/metadata-v1.jsonl, batch_size: 4}\n"
        "  - {jsonl: ../data/dataset-v1/metadata-v1.jsonl, batch_size: 8, cache_directory: ../c2}\n"
        "train:\n  optimizer: {learning_rate: 2.0e-4, tuned_at_batch: 4}\n"
    )
    spec = load_spec(path)
    (problem,) = [p for p in spec_warnings(spec) if p.key == "train.optimizer.tuned_at_batch"]
    assert problem.severity == "warning"
    assert "different batch sizes (4, 8)" in problem.message and "2e-4 is used as written" in problem.message
    assert "tuned_at_batch: null" in problem.fix
    derived = derive(spec)
    assert derived.value == 2e-4 and not derived.scaled
    assert derived.text() == (
        "learning_rate 2e-4 tuned at batch 4, used as written (the datasets' batch sizes differ: no one"
        " effective batch to scale to)"
    )


def test_check_render_and_dry_run_print_the_derivation(workspace: Workspace) -> None:
    workspace.write_spec(data={"batch_size": 8}, train={"optimizer": {"tuned_at_batch": 2}})
    line = "learning_rate 1e-3 tuned at batch 2 → 2e-3 at effective batch 8 (sqrt)"
    for args in (("check", "--skip-models"), ("render",), ("train", "--dry-run")):
        result = workspace.cli(args[0], str(workspace.spec_path), *args[1:])
        assert result.exit_code == 0, result.output
        assert line in result.stderr, args
    config = tomllib.loads((workspace.render_dir / "config.toml").read_text())
    assert config["learning_rate"] == pytest.approx(2e-3)


def _run_with_rate(spec, rate: float) -> Catalogue:
    """The run as a command reads it, its manifest saying the first segment trained at `rate`."""
    manifest = Manifest(output_name=spec.output_name, spec=str(spec.path), fplora_version="test")
    manifest.segments.append(
        Segment(
            output_name=spec.output_name,
            spec_resolved=spec.model_dump(mode="json", by_alias=True),
            rendered={"configs/v1/config.toml": f"learning_rate = {rate}\n"},
        )
    )
    manifest.save(spec.train.output_dir)
    return Catalogue.of(spec)


def _state(spec) -> None:
    out = spec.train.output_dir
    (out / f"{spec.output_name}-step00000002-state").mkdir(parents=True)


def test_resume_refuses_a_rate_that_moved_with_the_batch(project) -> None:
    """musubi-tuner restores the optimizer's rate from the state: a derived rate that changed only
    because the batch did would be written to config.toml and wandb but never applied."""
    before = load_spec(project("data: {batch_size: 4}\ntrain:\n  optimizer: {tuned_at_batch: 4}\n"))
    _state(before)
    run = _run_with_rate(before, derive(before).value)
    assert resume_point(before, run, "latest").step == 2
    bigger = load_spec(project("data: {batch_size: 16}\ntrain:\n  optimizer: {tuned_at_batch: 4}\n"))
    with pytest.raises(UserError) as refused:
        resume_point(bigger, run, "latest")
    problem = refused.value.problems[-1]
    assert problem.key == "train.optimizer.tuned_at_batch"
    assert (
        "the state trained at learning_rate 1e-3; at effective batch 16 this spec derives 2e-3"
        in problem.message
    )


def test_resume_keeps_the_rate_when_the_split_changes_but_not_the_effective_batch(project) -> None:
    """A GPU preset (or the user) may trade batch for accumulation: same effective batch, same rate."""
    before = load_spec(project("data: {batch_size: 16}\ntrain:\n  optimizer: {tuned_at_batch: 4}\n"))
    _state(before)
    run = _run_with_rate(before, derive(before).value)
    split = load_spec(
        project(
            "data: {batch_size: 4}\ntrain:\n  gradient_accumulation_steps: 4\n  optimizer: {tuned_at_batch: 4}\n"
        )
    )
    point = resume_point(split, run, "latest")
    assert "train.optimizer" not in " ".join(n.message for n in point.notes)


def test_resume_with_a_rewritten_rate_is_the_users_decision(project) -> None:
    before = load_spec(project("data: {batch_size: 4}\ntrain:\n  optimizer: {tuned_at_batch: 4}\n"))
    _state(before)
    run = _run_with_rate(before, derive(before).value)
    rewritten = load_spec(project("data: {batch_size: 4}\ntrain:\n  optimizer: {learning_rate: 5.0e-4}\n"))
    point = resume_point(rewritten, run, "latest")
    assert "train.optimizer.learning_rate" in point.notes[0].message
