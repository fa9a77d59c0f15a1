"""Cache stamps fingerprint every record: a caption edited or an image replaced after `fplora cache`.

musubi-tuner names caches by image stem and `--skip_existing` keeps any file that exists, so without
fingerprints an edited caption trained on its old text-encoder output and `fplora cache` said
"nothing to do". Through the real CLI against the recording fake: train refuses, naming the first
changed record; `fplora cache` recomputes exactly the changed records' files; unchanged data is
left alone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fakes import fake
from fakes.fixtures import Workspace, snapshot

pytest_plugins = ["fakes.fixtures"]

STAMP = "fplora-cache.json"
STEMS = ("0001", "0002", "0003", "0004")


def jsonl(workspace: Workspace) -> Path:
    return workspace.root / "data" / "dataset-v1" / "metadata-v1.jsonl"


def set_caption(workspace: Workspace, line: int, caption: str) -> None:
    path = jsonl(workspace)
    lines = path.read_text(encoding="utf-8").splitlines()
    item = json.loads(lines[line - 1])
    item["caption"] = caption
    lines[line - 1] = json.dumps(item)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def touch(path: Path) -> None:
    """A new mtime, one second on: what an editor's save or a re-export does to an image."""
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def text_file(workspace: Workspace, stem: str) -> Path:
    return workspace.cache_dir / f"{stem}_fp_te.safetensors"


def latent_file(workspace: Workspace, stem: str) -> Path:
    (path,) = workspace.cache_dir.glob(f"{stem}_*x*_fp.safetensors")
    return path


def scripts(workspace: Workspace) -> list[str]:
    return [c["args"][c["args"].index("-m", 2) + 1].rsplit(".", 1)[1] for c in workspace.calls()]


@pytest.fixture
def cached_by_fplora(workspace: Workspace) -> Workspace:
    """Caches made by the real `fplora cache` (its stamp, its fingerprints), calls forgotten."""
    result = workspace.cli("cache", str(workspace.spec_path))
    assert result.exit_code == 0, result.output
    workspace.forget_calls()
    return workspace


def test_a_first_cache_is_not_called_made_with_other_settings(workspace: Workspace) -> None:
    result = workspace.cli("cache", str(workspace.spec_path))
    assert result.exit_code == 0, result.output
    assert "(0 latents, 0 text-encoder outputs already there)" in result.stderr
    assert "other settings" not in result.stderr
    stamp = json.loads((workspace.cache_dir / STAMP).read_text(encoding="utf-8"))
    assert stamp["fingerprints"] == 1
    assert set(stamp["records"]) == set(STEMS)
    assert all(set(p) == {"caption", "images"} for p in stamp["records"].values())


def test_edited_caption_stops_train_until_cache_recomputes_its_text_encoder_output(
    cached_by_fplora: Workspace,
) -> None:
    ws = cached_by_fplora
    before = snapshot(ws.cache_dir)
    set_caption(ws, 2, "a blue circle character waves at the camera")

    refused = ws.cli("train", str(ws.spec_path))
    assert refused.exit_code == 1
    (line,) = error_lines(refused.stderr)
    assert "data/dataset-v1/metadata-v1.jsonl:2: datasets[0]:" in line
    assert "1 of 4 records changed since their caches were made" in line
    assert "its caption" in line and "run `fplora cache`" in line
    assert ws.calls() == []
    assert not ws.output_dir.exists()

    check = ws.cli("cache", str(ws.spec_path), "--dry-run")  # a dry run deletes nothing
    assert check.exit_code == 0 and snapshot(ws.cache_dir) == before

    result = ws.cli("cache", str(ws.spec_path))
    assert result.exit_code == 0, result.output
    assert "1 records changed since caching: recomputed" in result.stderr
    assert scripts(ws) == ["fpack_cache_text_encoder_outputs"]  # a caption edit loads no VAE
    assert all(fake.validate(c["args"]).given.get("skip_existing") is True for c in ws.calls())
    metadata = fake.read_safetensors_metadata(text_file(ws, "0002"))
    assert metadata["caption"] == "a blue circle character waves at the camera"
    after = snapshot(ws.cache_dir)
    changed = {name for name in before if before[name] != after.get(name)}
    assert changed == {text_file(ws, "0002").name, STAMP}

    ws.forget_calls()
    assert ws.cli("train", str(ws.spec_path)).exit_code == 0
    assert scripts(ws) == ["fpack_train_network"]


def test_several_edits_are_one_line_naming_the_first_record(cached_by_fplora: Workspace) -> None:
    ws = cached_by_fplora
    set_caption(ws, 4, "a yellow star character jumps")
    set_caption(ws, 3, "a green triangle character jumps")
    refused = ws.cli("train", str(ws.spec_path))
    assert refused.exit_code == 1
    (line,) = error_lines(refused.stderr)
    assert "metadata-v1.jsonl:3:" in line and "2 of 4 records changed" in line


def test_touched_image_recomputes_that_records_latent_only(cached_by_fplora: Workspace) -> None:
    ws = cached_by_fplora
    before = snapshot(ws.cache_dir)
    touch(ws.root / "data" / "dataset-v1" / "controls" / "0003_1.png")

    refused = ws.cli("train", str(ws.spec_path))
    assert refused.exit_code == 1
    (line,) = error_lines(refused.stderr)
    assert "metadata-v1.jsonl:3:" in line and "1 of 4 records changed" in line and "its images" in line
    assert ws.calls() == []

    assert ws.cli("cache", str(ws.spec_path)).exit_code == 0
    after = snapshot(ws.cache_dir)
    changed = {name for name in before if before[name] != after.get(name)}
    assert changed == {latent_file(ws, "0003").name, STAMP}
    assert ws.cli("train", str(ws.spec_path)).exit_code == 0


def test_replaced_target_image_is_stale_even_with_the_same_name(cached_by_fplora: Workspace) -> None:
    ws = cached_by_fplora
    target = ws.root / "data" / "dataset-v1" / "targets" / "0001.png"
    replacement = ws.root / "new.png"
    replacement.write_bytes(target.read_bytes() + b"\0")  # another file, moved over the old one
    os.utime(replacement, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns))
    replacement.replace(target)
    refused = ws.cli("train", str(ws.spec_path))
    assert refused.exit_code == 1
    assert "metadata-v1.jsonl:1:" in refused.stderr and "its images" in refused.stderr


def test_unchanged_records_are_left_alone_even_when_the_jsonl_is_rewritten(
    cached_by_fplora: Workspace,
) -> None:
    ws = cached_by_fplora
    before = snapshot(ws.cache_dir)
    path = jsonl(ws)
    path.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    touch(path)
    result = ws.cli("cache", str(ws.spec_path))
    assert result.exit_code == 0, result.output
    assert "caches are complete and match the spec: nothing to do" in result.stderr
    assert ws.calls() == [] and snapshot(ws.cache_dir) == before
    assert ws.cli("train", str(ws.spec_path)).exit_code == 0


def test_train_with_cache_recomputes_the_edit_then_trains(cached_by_fplora: Workspace) -> None:
    ws = cached_by_fplora
    set_caption(ws, 1, "a red square character blinks")
    result = ws.cli("train", str(ws.spec_path), "--cache")
    assert result.exit_code == 0, result.output
    assert scripts(ws) == ["fpack_cache_text_encoder_outputs", "fpack_train_network"]
    assert fake.read_safetensors_metadata(text_file(ws, "0001"))["caption"] == "a red square character blinks"


def test_a_stamp_without_fingerprints_is_refused_then_recomputed(cached_by_fplora: Workspace) -> None:
    """An older fplora's stamp cannot tell what changed: treated as changed, everything recomputed once."""
    ws = cached_by_fplora
    stamp_path = ws.cache_dir / STAMP
    stamp = json.loads(stamp_path.read_text(encoding="utf-8"))
    del stamp["fingerprints"], stamp["records"]
    stamp_path.write_text(json.dumps(stamp), encoding="utf-8")
    before = snapshot(ws.cache_dir)

    refused = ws.cli("train", str(ws.spec_path))
    assert refused.exit_code == 1
    (line,) = error_lines(refused.stderr)
    assert "stamped by an older fplora, without record fingerprints" in line and "fplora cache" in line
    assert ws.calls() == []

    result = ws.cli("cache", str(ws.spec_path))
    assert result.exit_code == 0, result.output
    assert "stamped without record fingerprints: 4 records recomputed" in result.stderr
    after = snapshot(ws.cache_dir)
    assert all(before[name] != after[name] for name in before)  # every cache file and the stamp
    assert set(json.loads(stamp_path.read_text(encoding="utf-8"))["records"]) == set(STEMS)
    ws.forget_calls()
    assert "nothing to do" in ws.cli("cache", str(ws.spec_path)).stderr and ws.calls() == []


def test_cache_files_without_a_stamp_are_not_called_made_with_other_settings(
    cached_by_fplora: Workspace,
) -> None:
    ws = cached_by_fplora
    (ws.cache_dir / STAMP).unlink()
    refused = ws.cli("train", str(ws.spec_path))
    assert refused.exit_code == 1
    assert "was not made by `fplora cache` (no stamp)" in refused.stderr
    result = ws.cli("cache", str(ws.spec_path))
    assert result.exit_code == 0, result.output
    assert ", not made by `fplora cache`)" in result.stderr and "other settings" not in result.stderr
    assert all("skip_existing" not in fake.validate(c["args"]).given for c in ws.calls())


def test_a_removed_record_stops_train_until_cache_deletes_its_files(cached_by_fplora: Workspace) -> None:
    """musubi-tuner's trainer globs the cache folder, not the dataset: a removed record would train."""
    ws = cached_by_fplora
    path = jsonl(ws)
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")  # drop record 0004
    refused = ws.cli("train", str(ws.spec_path))
    assert refused.exit_code == 1
    (line,) = error_lines(refused.stderr)
    assert "2 cache files belong to no record of the dataset (e.g. 0004_" in line
    assert "run `fplora cache`: it deletes them" in line
    assert ws.calls() == []

    result = ws.cli("cache", str(ws.spec_path))
    assert result.exit_code == 0, result.output
    assert "2 files of removed records: deleted" in result.stderr
    assert not list(ws.cache_dir.glob("0004_*"))
    assert latent_file(ws, "0003").exists() and text_file(ws, "0003").exists()
    assert scripts(ws) == []  # the other records' caches were up to date: no encoder loaded
    trained = ws.cli("train", str(ws.spec_path))
    assert trained.exit_code == 0, trained.output
