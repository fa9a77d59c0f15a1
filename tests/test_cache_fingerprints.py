"""Caches are keyed by what they are computed from: a caption edited or an image replaced after `fplora cache`.

musubi-tuner names caches by image stem and `--skip_existing` keeps any file that exists, so an
edited caption once trained on its old text-encoder output and `fplora cache` said "nothing to do".
Through the real CLI against the recording fake: train refuses, naming the first changed record;
`fplora cache` computes exactly the changed records' files into the store; unchanged data is left
alone, and a file with new content under the same name, size and mtime is seen.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from fakes import fake
from fakes.fixtures import Workspace, snapshot

pytest_plugins = ["fakes.fixtures"]

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


def store_files(workspace: Workspace) -> set[Path]:
    root = workspace.root / ".fplora" / "cache-store"
    return {p for kind in ("latents", "text") for p in (root / kind).glob("*/*.safetensors")}


def cache_log(workspace: Workspace) -> str:
    return "".join(p.read_text() for p in sorted((workspace.render_dir / "logs").glob("cache-*.log")))


def test_a_first_cache_is_not_called_made_with_other_settings(workspace: Workspace) -> None:
    result = workspace.cli("cache", str(workspace.spec_path))
    assert result.exit_code == 0, result.output
    assert "(0 linked, 4 latents and 4 text-encoder outputs to compute)" in result.stderr
    assert "other settings" not in result.stderr
    assert all(p.is_symlink() for p in workspace.cache_dir.iterdir())


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

    check = ws.cli("cache", str(ws.spec_path), "--dry-run")  # a dry run changes no cache
    assert check.exit_code == 0 and snapshot(ws.cache_dir) == before

    result = ws.cli("cache", str(ws.spec_path))
    assert result.exit_code == 0, result.output
    assert "1 record's files outdated: replaced" in result.stderr
    assert scripts(ws) == ["fpack_cache_text_encoder_outputs"]  # a caption edit loads no VAE
    assert "cached 1 text-encoder outputs" in cache_log(ws)  # one text-encoder file recomputed
    metadata = fake.read_safetensors_metadata(text_file(ws, "0002"))
    assert metadata["caption"] == "a blue circle character waves at the camera"
    after = snapshot(ws.cache_dir)
    changed = {name for name in before if before[name] != after.get(name)}
    assert changed == {text_file(ws, "0002").name}
    assert len(store_files(ws)) == 9  # the old caption's output stays in the store until pruned

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


def test_a_touched_image_with_the_same_content_is_still_cached(cached_by_fplora: Workspace) -> None:
    ws = cached_by_fplora
    touch(ws.root / "data" / "dataset-v1" / "controls" / "0003_1.png")
    result = ws.cli("cache", str(ws.spec_path))
    assert result.exit_code == 0, result.output
    assert "nothing to do" in result.stderr and ws.calls() == []


def test_an_edited_image_recomputes_that_records_latent_only(cached_by_fplora: Workspace) -> None:
    ws = cached_by_fplora
    before = snapshot(ws.cache_dir)
    control = ws.root / "data" / "dataset-v1" / "controls" / "0003_1.png"
    control.write_bytes(control.read_bytes() + b"\0")

    refused = ws.cli("train", str(ws.spec_path))
    assert refused.exit_code == 1
    (line,) = error_lines(refused.stderr)
    assert "metadata-v1.jsonl:3:" in line and "1 of 4 records changed" in line and "its images" in line
    assert ws.calls() == []

    assert ws.cli("cache", str(ws.spec_path)).exit_code == 0
    assert scripts(ws) == ["fpack_cache_latents"]
    after = snapshot(ws.cache_dir)
    changed = {name for name in before if before[name] != after.get(name)}
    assert changed == {latent_file(ws, "0003").name}
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


def test_cp_p_onto_the_image_is_seen(cached_by_fplora: Workspace) -> None:
    """`cp -p other.png 0002.png`: the same path, size, mtime and inode; only the content (and the
    ctime, which no tool sets back) differ. The remembered hash is not trusted."""
    ws = cached_by_fplora
    target = ws.root / "data" / "dataset-v1" / "targets" / "0002.png"
    info = target.stat()
    data = bytearray(target.read_bytes())
    data[-20] ^= 0xFF  # the same size, other bytes
    other = ws.root / "other.png"
    other.write_bytes(bytes(data))
    os.utime(other, ns=(info.st_atime_ns, info.st_mtime_ns))
    subprocess.run(["cp", "-p", str(other), str(target)], check=True)
    after = target.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (info.st_size, info.st_mtime_ns, info.st_ino)
    refused = ws.cli("train", str(ws.spec_path))
    assert refused.exit_code == 1
    assert "metadata-v1.jsonl:2:" in refused.stderr and "its images" in refused.stderr


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


def test_caches_of_an_older_fplora_are_replaced_by_links(cached_by_fplora: Workspace) -> None:
    """Plain files and a stamp in the cache folder (fplora before the store): made under unknown
    settings, so refused and computed once into the store."""
    ws = cached_by_fplora
    for path in ws.cache_dir.iterdir():
        data = path.read_bytes()
        path.unlink()
        path.write_bytes(data)
    (ws.cache_dir / "fplora-cache.json").write_text("{}", encoding="utf-8")
    refused = ws.cli("train", str(ws.spec_path))
    assert refused.exit_code == 1
    assert "cache of 4 records was made with other settings" in refused.stderr
    result = ws.cli("cache", str(ws.spec_path))
    assert result.exit_code == 0, result.output
    assert ws.calls() == []  # the store has every entry: links replace the copies
    assert all(p.is_symlink() for p in ws.cache_dir.iterdir())
    assert not (ws.cache_dir / "fplora-cache.json").exists()


def test_a_removed_record_leaves_the_view_not_the_store(cached_by_fplora: Workspace) -> None:
    """musubi-tuner's trainer globs the cache folder, not the dataset: a removed record would train."""
    ws = cached_by_fplora
    path = jsonl(ws)
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")  # drop record 0004
    refused = ws.cli("train", str(ws.spec_path))
    assert refused.exit_code == 1
    (line,) = error_lines(refused.stderr)
    assert "2 cache files belong to no record of the dataset (e.g. 0004_" in line
    assert "run `fplora cache`: it removes them from the cache folder" in line
    assert ws.calls() == []

    result = ws.cli("cache", str(ws.spec_path))
    assert result.exit_code == 0, result.output
    assert "2 files of removed records: unlinked" in result.stderr
    assert not list(ws.cache_dir.glob("0004_*"))
    assert latent_file(ws, "0003").exists() and text_file(ws, "0003").exists()
    assert scripts(ws) == []  # the other records' caches were up to date: no encoder loaded
    assert len(store_files(ws)) == 8  # record 0004's entries stay until `fplora cache prune`
    trained = ws.cli("train", str(ws.spec_path))
    assert trained.exit_code == 0, trained.output
