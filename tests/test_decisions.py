"""The resume and LoRA-choice decisions, called directly on files laid out as musubi-tuner names
them: what each chooses, what it notes and what it refuses, without running a job."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from fplora.jobs.resume import resume_point
from fplora.musubi import names
from fplora.problems import UserError
from fplora.runs.catalogue import Catalogue
from fplora.runs.loras import choose_loras
from fplora.runs.manifest import Manifest, Segment
from fplora.spec import load_spec
from fplora.spec.models import Spec


def _spec(project: Callable[..., Path], text: str = "") -> Spec:
    return load_spec(project(text))


def _lora_bytes(weights: str) -> bytes:
    """A valid LoRA file whose weights hash (musubi-tuner's metadata) is `weights`."""
    header = {
        "__metadata__": {names.LORA_WEIGHTS_HASH_KEY: weights},
        "w": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]},
    }
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + bytes(4)


def _save(spec: Spec, segment: str, step: int | None, *, state: bool = True, weights: str = "") -> None:
    """A LoRA (and its -state folder) as musubi-tuner writes them at a segment's own step."""
    out = spec.train.output_dir
    out.mkdir(parents=True, exist_ok=True)
    lora = names.lora_step_file(segment, step) if step else names.lora_final_file(segment)
    (out / lora).write_bytes(_lora_bytes(weights or f"{segment}-{step}"))
    if state:
        folder = names.state_step_dir(segment, step) if step else names.state_final_dir(segment)
        (out / folder).mkdir()


def _manifest(spec: Spec, *offsets: int) -> Manifest:
    manifest = Manifest(
        output_name=spec.output_name,
        spec=str(spec.path),
        fplora_version="test",
        musubi_tuner={},
    )
    for index, offset in enumerate(offsets):
        name = manifest.segment_name(index)
        manifest.segments.append(
            Segment(
                output_name=name,
                step_offset=offset,
                num_processes=spec.launch.num_processes,
                spec_resolved=spec.model_dump(mode="json", by_alias=True),
            )
        )
    manifest.save(spec.train.output_dir)
    return manifest


def _catalogue(spec: Spec, *offsets: int) -> Catalogue:
    """The run as a command reads it, after its manifest is written with these segments."""
    _manifest(spec, *offsets)
    return Catalogue.of(spec)


def test_latest_state_of_a_resumed_run_is_at_its_global_step(project) -> None:
    spec = _spec(project)
    _save(spec, spec.output_name, 2)
    _save(spec, f"{spec.output_name}-r1", 1)
    _manifest(spec, 0, 2)
    point = resume_point(spec, Catalogue.of(spec), "latest")
    assert point.path.name == names.state_step_dir(f"{spec.output_name}-r1", 1)
    assert (point.step, point.notes) == (3, [])


def test_resuming_an_older_state_notes_the_branch(project) -> None:
    spec = _spec(project)
    _save(spec, spec.output_name, 2)
    _save(spec, spec.output_name, 4)
    point = resume_point(spec, _catalogue(spec, 0), "step2")
    assert point.step == 2
    assert [n.severity for n in point.notes] == ["note"]
    assert "trains steps 3–4 again in a new segment" in point.notes[0].message


def test_a_changed_network_dim_is_refused_other_changes_noted(project) -> None:
    spec = _spec(project)
    _save(spec, spec.output_name, 2)
    _manifest(spec, 0)
    changed = _spec(project, "train:\n  network: {dim: 64}\n")
    with pytest.raises(UserError) as refused:
        resume_point(changed, Catalogue.of(changed), "latest")
    assert [p.key for p in refused.value.problems] == ["train.network.dim"]
    lr = _spec(project, "train:\n  optimizer: {learning_rate: 0.5}\n")
    point = resume_point(lr, Catalogue.of(lr), "latest")
    assert "train.optimizer.learning_rate" in point.notes[0].message


def test_another_process_count_is_refused(project) -> None:
    spec = _spec(project)
    _save(spec, spec.output_name, 2)
    _manifest(spec, 0)
    two = _spec(project, "launch: {num_processes: 2}\n")
    with pytest.raises(UserError) as refused:
        resume_point(two, Catalogue.of(two), "latest")
    assert refused.value.problems[-1].key == "launch.num_processes"


def test_a_dry_run_names_the_future_state_in_a_note(project) -> None:
    spec = _spec(project)
    point = resume_point(spec, Catalogue.of(spec), "step2", dry_run=True)
    assert point.path.name == names.state_step_dir(spec.output_name, 2)
    assert point.notes[0].message.startswith("dry run: ")
    with pytest.raises(UserError):
        resume_point(spec, Catalogue.of(spec), "step2")


def test_loras_resolve_each_once_with_a_note_for_twins(project) -> None:
    spec = _spec(project)
    _save(spec, spec.output_name, 2, state=False)
    _save(spec, spec.output_name, 4, state=False, weights="last")
    _save(spec, spec.output_name, None, state=False, weights="last")  # final: step 4's weights
    choice = choose_loras(spec, ["step2", "latest", "step4", "final"])
    assert [c.step for c in choice.loras] == [2, 4]
    assert [n.severity for n in choice.notes] == ["note"]
    assert "holds the same weights" in choice.notes[0].message
    assert set(choice.identities) == {c.path for c in choice.loras} | {
        spec.train.output_dir / names.lora_final_file(spec.output_name)
    }


def test_a_missing_step_and_a_damaged_file_are_refused_before_anything_runs(project) -> None:
    spec = _spec(project)
    _save(spec, spec.output_name, 2, state=False)
    with pytest.raises(UserError) as refused:
        choose_loras(spec, ["step2", "step3"])
    assert "no LoRA at global step 3" in refused.value.problems[0].message
    (spec.train.output_dir / names.lora_step_file(spec.output_name, 2)).write_bytes(b"<html>")
    with pytest.raises(UserError) as damaged:
        choose_loras(spec, ["step2"])
    assert "not a safetensors file" in damaged.value.problems[0].message
    assert choose_loras(spec, ["step2"], dry_run=True).loras  # a dry run reads no model file


def test_a_state_folder_given_as_a_lora_points_at_its_lora(project) -> None:
    spec = _spec(project)
    _save(spec, spec.output_name, 2)
    state = spec.train.output_dir / names.state_step_dir(spec.output_name, 2)
    with pytest.raises(UserError) as refused:
        choose_loras(spec, [str(state)])
    problem = refused.value.problems[0]
    assert problem.message == "is a training state, not a LoRA"
    assert "--lora step2" in problem.fix
