"""The run manifest: validated when read, tolerant of a newer fplora, one line when unreadable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fakes.fixtures import Workspace

from fplora.runs.manifest import SCHEMA_VERSION, Manifest, UnreadableManifest

pytest_plugins = ["fakes.fixtures"]


def _write(folder: Path, data: Any) -> Path:
    path = Manifest.path_for(folder, "demo-v1")
    path.write_text(json.dumps(data) if not isinstance(data, str) else data, encoding="utf-8")
    return path


def _segment(name: str = "demo-v1", **more: Any) -> dict[str, Any]:
    segment = {"output_name": name, "step_offset": 0, "resumed_from": None, "num_processes": 1}
    return segment | {"command": [], "log": "", "started": "2025-01-01T00:00:00+00:00"} | more


def test_a_version_1_manifest_moves_its_spec_into_the_first_segment(tmp_path: Path) -> None:
    """Manifests before schema 2 held the first segment's spec at manifest level too: read once."""
    spec = {"train": {"max_train_steps": 4}}
    _write(
        tmp_path,
        {
            "output_name": "demo-v1",
            "spec": "configs/v1.yaml",
            "spec_resolved": spec,
            "rendered": {"configs/v1/config.toml": "x = 1\n"},
            "fplora_version": "0.1.0",
            "musubi_tuner": {"commit": "abc"},
            "segments": [_segment(), _segment("demo-v1-r1", step_offset=2, spec_resolved={"v": 2})],
        },
    )
    manifest = Manifest.load(tmp_path, "demo-v1")
    assert manifest is not None and manifest.schema_version == SCHEMA_VERSION
    first, second = manifest.segments
    assert first.spec_resolved == spec and first.rendered == {"configs/v1/config.toml": "x = 1\n"}
    assert second.spec_resolved == {"v": 2}
    saved = json.loads(manifest.save(tmp_path).read_text(encoding="utf-8"))
    assert "spec_resolved" not in saved and "rendered" not in saved
    assert saved["segments"][0]["spec_resolved"] == spec


def test_a_placeholder_segment_does_not_take_the_manifest_level_spec(tmp_path: Path) -> None:
    """A run trained without fplora, then resumed: segment 0 never ran under this spec."""
    placeholder = {"output_name": "demo-v1", "step_offset": 0, "resumed_from": None, "num_processes": 1}
    placeholder |= {"command": [], "log": "", "started": ""}
    resumed = _segment("demo-v1-r1", step_offset=2, spec_resolved={"v": 2})
    _write(
        tmp_path, {"output_name": "demo-v1", "spec_resolved": {"v": 2}, "segments": [placeholder, resumed]}
    )
    manifest = Manifest.load(tmp_path, "demo-v1")
    assert manifest is not None and manifest.segments[0].spec_resolved == {}


def test_keys_of_a_newer_fplora_are_kept(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "schema_version": SCHEMA_VERSION,
            "output_name": "demo-v1",
            "tags": ["sweep-3"],
            "segments": [_segment(gpu="H200")],
        },
    )
    manifest = Manifest.load(tmp_path, "demo-v1")
    assert manifest is not None and manifest.segments[0].end_step is None
    saved = json.loads(manifest.save(tmp_path).read_text(encoding="utf-8"))
    assert saved["tags"] == ["sweep-3"] and saved["segments"][0]["gpu"] == "H200"


def test_a_newer_schema_is_read_but_not_written_over(tmp_path: Path) -> None:
    path = _write(tmp_path, {"schema_version": SCHEMA_VERSION + 1, "output_name": "demo-v1", "segments": []})
    manifest = Manifest.load(tmp_path, "demo-v1")
    assert manifest is not None
    before = path.read_text(encoding="utf-8")
    with pytest.raises(UnreadableManifest, match="newer fplora"):
        manifest.save(tmp_path)
    assert path.read_text(encoding="utf-8") == before


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ('{"output_name": "demo-v1", "segments": [', "not valid JSON"),
        ("", "not valid JSON"),
        ("[1, 2]", "the file: Input should be"),
        (
            json.dumps({"output_name": "demo-v1", "segments": [_segment(step_offset="two")]}),
            "segments.0.step_offset",
        ),
        (json.dumps({"segments": []}), "output_name: Field required"),
        (b"\xff\xfe{}", "not valid JSON"),
    ],
)
def test_an_unreadable_manifest_is_one_line_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | bytes, reason: str
) -> None:
    monkeypatch.chdir(tmp_path)
    path = Manifest.path_for(tmp_path, "demo-v1")
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(UnreadableManifest) as raised:
        Manifest.load(tmp_path, "demo-v1")
    (problem,) = raised.value.problems
    text = str(problem)
    assert "\n" not in text
    assert text.startswith("demo-v1.fplora-run.json: unreadable run manifest: ")
    assert reason in text and "move it aside" in text


def _break(workspace: Workspace) -> None:
    text = workspace.manifest_path.read_text(encoding="utf-8")
    workspace.manifest_path.write_text(text[: len(text) // 2], encoding="utf-8")  # a truncated write


def test_runs_with_a_broken_manifest_says_so_once_and_lists_the_files(cached: Workspace) -> None:
    assert cached.cli("train", str(cached.spec_path)).exit_code == 0
    cached.write_spec(train={"max_train_steps": 6})
    assert cached.cli("train", str(cached.spec_path), "--resume", "latest").exit_code == 0
    _break(cached)
    result = cached.cli("runs", str(cached.spec_path))
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: outputs/fake-v1.fplora-run.json: unreadable run manifest: not valid JSON")
    rows = [" ".join(row.replace("│", " ").split()) for row in result.stdout.splitlines()]
    first = next(row for row in rows if row.startswith("fake-v1 1"))
    second = next(row for row in rows if row.startswith("fake-v1-r1 "))
    assert first.endswith("1, 2, 3, 4, final 1, 2, 3, 4, final")
    assert second.endswith("1, 2, final 1, 2, final")  # its own steps: the offset was in the manifest


def test_runs_with_a_manifest_of_a_newer_fplora_shows_it(cached: Workspace) -> None:
    assert cached.cli("train", str(cached.spec_path)).exit_code == 0
    data = cached.manifest() | {"schema_version": SCHEMA_VERSION + 1, "new_key": {"x": 1}}
    cached.manifest_path.write_text(json.dumps(data), encoding="utf-8")
    result = cached.cli("runs", str(cached.spec_path))
    assert result.exit_code == 0, result.output
    assert "1, 2, 3, 4, final" in result.stdout


@pytest.mark.parametrize("command", [["train", "--resume", "latest"], ["infer", "--lora", "step2"]])
def test_commands_that_need_the_offsets_stop_on_a_broken_manifest(
    cached: Workspace, command: list[str]
) -> None:
    assert cached.cli("train", str(cached.spec_path)).exit_code == 0
    _break(cached)
    cached.forget_calls()
    result = cached.cli(command[0], str(cached.spec_path), *command[1:])
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: outputs/fake-v1.fplora-run.json: unreadable run manifest")
    assert cached.calls() == []


def test_segments_on_disk_lists_each_segment_once(tmp_path: Path) -> None:
    """With the manifest unreadable, the segments come from the file names, read back as
    `segment_name` writes them: a stray `-r0` file is not the first segment a second time."""
    from fplora.runs.checkpoints import segments_on_disk

    for name in ("demo-v1-step00000001", "demo-v1-r0-step00000002", "demo-v1-r1-step00000003"):
        (tmp_path / f"{name}.safetensors").write_bytes(b"")
    names = [segment.output_name for segment in segments_on_disk(tmp_path, "demo-v1")]
    assert names == ["demo-v1", "demo-v1-r1"]
