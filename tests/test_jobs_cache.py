"""`fplora cache` against the fake musubi-tuner: the project's store, each version's folder a view of it.

musubi-tuner caches into a folder by image stem, trusts any file there with `--skip_existing`, and
deletes files the dataset does not name; fplora runs it on a staging folder of the records the store
lacks and links each version's cache folder to the store. These tests hold it to that, through the
real CLI and real subprocesses of the fake (which creates the files the real scripts would).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import pytest
from fakes import fake
from fakes.fixtures import Workspace, snapshot

pytest_plugins = ["fakes.fixtures"]

STEMS = ("0001", "0002", "0003", "0004")
LATENTS = {f"{stem}_0064x0096_fp.safetensors" for stem in STEMS}  # the example images are 64x96
TEXT = {f"{stem}_fp_te.safetensors" for stem in STEMS}


def store(workspace: Workspace) -> Path:
    return workspace.root / ".fplora" / "cache-store"


def store_files(workspace: Workspace) -> set[Path]:
    return {p for kind in ("latents", "text") for p in (store(workspace) / kind).glob("*/*.safetensors")}


def cache_files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def given(call: dict[str, Any]) -> dict[str, Any]:
    """The script options of a recorded launch (its staging files are gone: the fake checked them
    when it ran)."""
    _, _, script, script_args = fake.parse_launch(call["args"])
    values, _, _ = fake.parse_options(script_args, fake.script_options(script), stop_at_positional=False)
    return values


def scripts(workspace: Workspace) -> list[str]:
    return [c["args"][c["args"].index("-m", 2) + 1].rsplit(".", 1)[1] for c in workspace.calls()]


def log_text(workspace: Workspace) -> str:
    return "".join(p.read_text() for p in sorted((workspace.render_dir / "logs").glob("cache-*.log")))


def second_version(workspace: Workspace, name: str = "v1b", **changes: Any) -> Path:
    """`configs/<name>.yaml` that extends v1.yaml, with `changes`."""
    import json

    path = workspace.root / "configs" / f"{name}.yaml"
    lines = ["extends: v1.yaml"] + [f"{key}: {json.dumps(value)}" for key, value in changes.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_cache_computes_into_the_store_and_links_the_view(workspace: Workspace) -> None:
    result = workspace.cli("cache", str(workspace.spec_path))
    assert result.exit_code == 0, result.output
    calls = workspace.calls()
    assert scripts(workspace) == ["fpack_cache_latents", "fpack_cache_text_encoder_outputs"]
    for call in calls:
        options = given(call)
        assert "skip_existing" not in options and "keep_cache" not in options
        assert "/.fplora/cache-store/staging/" in options["dataset_config"]
        assert call["env"]["PYTHONUNBUFFERED"] == "1"
    assert given(calls[0])["one_frame"] is True
    assert cache_files(workspace.cache_dir) == LATENTS | TEXT
    for path in workspace.cache_dir.iterdir():
        assert path.is_symlink() and not os.path.isabs(os.readlink(path))
        assert path.resolve().parent.parent.parent == store(workspace).resolve()
    assert len(store_files(workspace)) == 8
    assert not list((store(workspace) / "staging").iterdir())  # nothing left half-way
    assert "cached 4 latents" in log_text(workspace) and "cached 4 text-encoder outputs" in log_text(
        workspace
    )
    assert "caches ready: 8 files linked" in result.stderr


def test_complete_caches_are_left_alone(workspace: Workspace) -> None:
    """Loading the encoders costs GPU minutes: complete caches start nothing."""
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    before = snapshot(store(workspace) / "latents"), cache_files(workspace.cache_dir)
    workspace.forget_calls()
    result = workspace.cli("cache", str(workspace.spec_path))
    assert result.exit_code == 0, result.output
    assert workspace.calls() == []
    assert "caches are complete and match the spec: nothing to do" in result.stderr
    assert (snapshot(store(workspace) / "latents"), cache_files(workspace.cache_dir)) == before


def test_two_versions_of_one_dataset_share_every_cache_file(workspace: Workspace) -> None:
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    v1b = second_version(workspace, train={"max_train_steps": 8})
    workspace.forget_calls()
    result = workspace.cli("cache", str(v1b))
    assert result.exit_code == 0, result.output
    assert workspace.calls() == []  # `v1b extends v1` with the same data computes nothing
    view = workspace.root / "configs" / "v1b" / "cache" / "dataset-v1" / "metadata-v1"
    assert cache_files(view) == LATENTS | TEXT
    shared = {p.name: p.resolve() for p in workspace.cache_dir.iterdir()}
    assert {p.name: p.resolve() for p in view.iterdir()} == shared
    assert len(store_files(workspace)) == 8
    assert workspace.cli("train", str(v1b)).exit_code == 0


def test_a_deleted_link_is_relinked_without_computing(workspace: Workspace) -> None:
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    (workspace.cache_dir / "0002_0064x0096_fp.safetensors").unlink()
    workspace.forget_calls()
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    assert workspace.calls() == []
    assert cache_files(workspace.cache_dir) == LATENTS | TEXT


def test_train_links_what_the_store_holds_without_being_asked(workspace: Workspace) -> None:
    """A new version of the same data: every cache file is in the store, only the links are missing.
    Linking needs no GPU and no musubi-tuner, so train does it rather than refusing for `fplora cache`."""
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    v1b = second_version(workspace, train={"max_train_steps": 8})
    view = workspace.root / "configs" / "v1b" / "cache" / "dataset-v1" / "metadata-v1"
    workspace.forget_calls()
    result = workspace.cli("train", str(v1b), "--no-rehearse")
    assert result.exit_code == 0, result.output
    assert scripts(workspace) == ["fpack_train_network"]  # nothing cached, only trained
    assert "caches ready: 8 files linked" in result.stderr
    assert cache_files(view) == LATENTS | TEXT


def test_train_still_refuses_caches_it_would_have_to_compute(workspace: Workspace) -> None:
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    (workspace.cache_dir / "0002_0064x0096_fp.safetensors").resolve().unlink()
    workspace.forget_calls()
    refused = workspace.cli("train", str(workspace.spec_path), "--no-rehearse")
    assert refused.exit_code == 1
    assert "fplora train --cache" in refused.stderr
    assert workspace.calls() == []


def test_an_entry_missing_from_the_store_is_computed_alone(workspace: Workspace) -> None:
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    (workspace.cache_dir / "0003_0064x0096_fp.safetensors").resolve().unlink()
    workspace.forget_calls()
    result = workspace.cli("cache", str(workspace.spec_path))
    assert result.exit_code == 0, result.output
    assert scripts(workspace) == ["fpack_cache_latents"]  # the text encoders are not loaded
    assert "cached 1 latents" in log_text(workspace)
    assert "0 latents and 1" not in result.stderr and "1 latent and 0 text-encoder outputs" in result.stderr
    assert all(p.exists() for p in workspace.cache_dir.iterdir())


def test_rebuild_recomputes_everything(workspace: Workspace) -> None:
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    workspace.forget_calls()
    assert workspace.cli("cache", str(workspace.spec_path), "--rebuild").exit_code == 0
    assert scripts(workspace) == ["fpack_cache_latents", "fpack_cache_text_encoder_outputs"]
    assert len(store_files(workspace)) == 8
    assert all(p.exists() for p in workspace.cache_dir.iterdir())


def test_changed_one_frame_settings_recompute_the_latents_only(workspace: Workspace) -> None:
    """The names do not change with the settings; the store's keys do."""
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    workspace.write_spec(one_frame={"no_2x": True})
    stale = workspace.cli("train", str(workspace.spec_path))
    assert stale.exit_code == 1
    assert "made with other settings" in stale.stderr and "fplora cache" in stale.stderr
    workspace.forget_calls()
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    (call,) = workspace.calls()
    assert given(call)["one_frame_no_2x"] is True
    assert len(store_files(workspace)) == 12  # the old latents stay for v1 as it was
    assert workspace.cli("train", str(workspace.spec_path)).exit_code == 0


def test_a_changed_pass_through_cache_option_recaches(workspace: Workspace) -> None:
    """Pass-through options reach the cache scripts (vae_tiling changes the latents)."""
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    workspace.write_spec(musubi={"cache_latents": {"vae_tiling": True}})
    stale = workspace.cli("train", str(workspace.spec_path))
    assert stale.exit_code == 1
    assert "made with other settings" in stale.stderr
    workspace.forget_calls()
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    (call,) = workspace.calls()
    assert given(call)["vae_tiling"] is True


def _other_model(path: Path) -> Path:
    header = b'{"__metadata__":{"stand_in":"another text encoder 2"}}'
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    return path


def test_a_changed_text_encoder2_recaches(workspace: Workspace) -> None:
    """text_encoder2's CLIP output is in the text-encoder cache: the key is built from the argv the
    cache scripts get, so a model a hand-kept list forgot cannot be left out again."""
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    other = _other_model(workspace.root / "models" / "te2-other.safetensors")
    workspace.write_spec(models={"text_encoder2": "te2-other.safetensors"})
    stale = workspace.cli("train", str(workspace.spec_path))
    assert stale.exit_code == 1
    assert "made with other settings" in stale.stderr
    workspace.forget_calls()
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    (call,) = workspace.calls()
    assert given(call)["text_encoder2"] == str(other)


def test_a_model_moved_elsewhere_with_the_same_content_recomputes_nothing(workspace: Workspace) -> None:
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    models = workspace.root / "models"
    models.rename(workspace.root / "weights")
    workspace.write_spec(models={"dir": "../weights"})
    workspace.forget_calls()
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    assert workspace.calls() == []


def test_failed_caching_returns_the_exit_code_and_adopts_nothing(workspace: Workspace) -> None:
    result = workspace.cli(
        "cache",
        str(workspace.spec_path),
        env={"FAKE_EXIT": "4", "FAKE_EXIT_SCRIPT": "fpack_cache_text_encoder_outputs"},
    )
    assert result.exit_code == 4
    assert "caching failed (exit 4)" in result.stderr
    assert len(workspace.calls()) == 2
    assert len(store_files(workspace)) == 4  # the latents' script succeeded: they were adopted
    assert cache_files(workspace.cache_dir) == set()  # nothing linked for training
    assert not list((store(workspace) / "staging").iterdir())
    workspace.forget_calls()
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    assert scripts(workspace) == ["fpack_cache_text_encoder_outputs"]


def test_a_file_cut_short_is_never_taken_as_a_cache(workspace: Workspace) -> None:
    """A script that dies mid-write (or exits 0 with a broken file) leaves nothing in the store."""
    result = workspace.cli("cache", str(workspace.spec_path), env={"FAKE_CACHE_TRUNCATE": "1"})
    assert result.exit_code == 1
    assert "musubi-tuner left no whole cache file for 0001.png" in result.stderr
    assert not list((store(workspace) / "latents").glob("*/*"))
    assert not (workspace.cache_dir / "0001_0064x0096_fp.safetensors").exists()


def test_staging_left_by_a_killed_run_is_removed_and_never_adopted(workspace: Workspace) -> None:
    dead = store(workspace) / "staging" / "999999999-1" / "latents" / "0"
    dead.mkdir(parents=True)
    (dead / "0001_0064x0096_fp.safetensors").write_bytes(b"half")
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    assert not (store(workspace) / "staging" / "999999999-1").exists()
    assert "cached 4 latents" in log_text(workspace)


def test_missing_musubi_stops_before_running_anything(workspace: Workspace) -> None:
    result = workspace.cli("cache", str(workspace.spec_path), env={"FAKE_MUSUBI_MISSING": "1"})
    assert result.exit_code == 1
    assert "cannot import musubi_tuner" in result.stderr
    assert "uv pip install" in result.stderr and "FPLORA_MUSUBI_PYTHON" in result.stderr
    assert workspace.calls() == []
    assert not workspace.cache_dir.exists()


def test_a_python_that_does_not_exist_is_reported(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Said as the setting that names a path that is not there, not as musubi-tuner to install."""
    python = workspace.root / "nowhere" / "python"
    monkeypatch.setenv("FPLORA_MUSUBI_PYTHON", str(python))
    result = workspace.cli("cache", str(workspace.spec_path))
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"error: musubi-tuner: FPLORA_MUSUBI_PYTHON={python}: no such file — point it at the python of the"
        " environment musubi-tuner is installed in"
    )
    assert "uv pip install" not in result.stderr


def test_dry_run_shows_only_the_scripts_that_would_run(workspace: Workspace) -> None:
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    workspace.forget_calls()
    complete = workspace.cli("cache", str(workspace.spec_path), "--dry-run")
    assert complete.exit_code == 0 and complete.stdout == ""
    assert "nothing to do" in complete.stderr
    (workspace.cache_dir / "0004_fp_te.safetensors").resolve().unlink()
    one = workspace.cli("cache", str(workspace.spec_path), "--dry-run")
    (line,) = one.stdout.splitlines()
    assert "musubi_tuner.fpack_cache_text_encoder_outputs" in line
    staged = store(workspace) / "staging" / "dry-run" / "text-0.jsonl"
    assert '"caption"' in staged.read_text() and len(staged.read_text().splitlines()) == 1
    assert workspace.calls() == []


def test_cache_refuses_while_the_spec_is_training(workspace: Workspace) -> None:
    lock = workspace.output_dir / "fake-v1.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(f"{os.getpid()}\n")  # a live holder: this test process
    result = workspace.cli("cache", str(workspace.spec_path), "--rebuild")
    assert result.exit_code == 1
    assert f"fake-v1 is training (pid {os.getpid()}) from these caches" in result.stderr
    assert workspace.calls() == []


def test_status_says_per_version_what_is_present_missing_and_stale(workspace: Workspace) -> None:
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    second_version(workspace, train={"max_train_steps": 8})
    second_version(workspace, "v2", one_frame={"no_2x": True})
    workspace.forget_calls()
    result = workspace.cli("cache", "status")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert (
        "configs/v1.yaml: dataset 0: 4 records: 8 present, 0 in the store to link, 0 missing, 0 stale,"
        " 0 of removed records"
    ) in lines
    # only links are missing: no computing, and train makes them itself
    assert (
        "configs/v1b.yaml: dataset 0: 4 records: 0 present, 8 in the store to link, 0 missing, 0 stale,"
        " 0 of removed records — nothing to compute: `fplora train` links them (or `fplora cache`)"
    ) in lines
    assert any(
        line.startswith("configs/v2.yaml: dataset 0: 4 records: 0 present, 4 in the store to link, 4 missing")
        for line in lines
    )
    assert lines[-1].startswith("store .fplora/cache-store: 8 files, ")
    assert workspace.calls() == []


def test_prune_removes_only_what_no_spec_uses_after_a_dry_run(workspace: Workspace) -> None:
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    path = workspace.root / "data" / "dataset-v1" / "metadata-v1.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")  # drop record 0004
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    assert len(store_files(workspace)) == 8
    dry = workspace.cli("cache", "prune", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would remove 2 store entries no spec uses" in dry.stdout and "6 kept" in dry.stdout
    assert len(store_files(workspace)) == 8
    done = workspace.cli("cache", "prune")
    assert done.exit_code == 0, done.output
    assert "removed 2 store entries" in done.stdout
    assert len(store_files(workspace)) == 6
    assert workspace.cli("train", str(workspace.spec_path)).exit_code == 0


def test_a_spec_in_a_subfolder_of_configs_shares_the_project_s_store(workspace: Workspace) -> None:
    """configs/archive/v0.yaml got a `.fplora/` of its own in configs/archive/: its caches were
    computed again, and `cache status` and `prune` never saw it."""
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    launched = len(workspace.calls())
    archive = workspace.root / "configs" / "archive"
    archive.mkdir()
    (archive / "v0.yaml").write_text("extends: ../v1.yaml\n", encoding="utf-8")
    result = workspace.cli("cache", "configs/archive/v0.yaml", "--no-rehearse")
    assert result.exit_code == 0, result.output
    assert len(workspace.calls()) == launched  # every file linked from the store, none computed
    assert not (archive / ".fplora").exists()
    assert len(store_files(workspace)) == 8
    status = workspace.cli("cache", "status")
    assert status.exit_code == 0, status.output
    assert "configs/archive/v0.yaml: dataset 0: 4 records: 8 present" in status.stdout
    assert "configs/archive/v0: " not in status.output  # its rendered folder holds no spec


def test_status_names_the_record_whose_image_is_missing(workspace: Workspace) -> None:
    """`cache status` said "1 missing — run `fplora cache`", and cache then refused at the record:
    status names the record and the file itself, and what to do first."""
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    (workspace.root / "data" / "dataset-v1" / "controls" / "0002_1.png").unlink()
    status = workspace.cli("cache", "status")
    assert status.exit_code == 0, status.output
    line = next(x for x in status.stdout.splitlines() if x.startswith("configs/v1.yaml: dataset 0"))
    assert line.endswith(
        " — data/dataset-v1/metadata-v1.jsonl:2: control_path_1: data/dataset-v1/controls/0002_1.png not"
        " found: fix the record, then run `fplora cache` (`fplora check` lists every problem)"
    ), line


def test_status_says_a_missing_jsonl_at_the_spec_line_that_names_it(workspace: Workspace) -> None:
    """The dataset folder renamed after caching: status said only "data/dataset-v1/metadata-v1.jsonl:
    dataset JSONL file not found — check datasets[].jsonl", naming no spec."""
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    (workspace.root / "data" / "dataset-v1").rename(workspace.root / "data" / "turn-v1")
    status = workspace.cli("cache", "status")
    assert status.exit_code == 1
    assert (
        "error: configs/v1.yaml:8: datasets[0].jsonl: dataset JSONL file not found:"
        " data/dataset-v1/metadata-v1.jsonl (folder data/dataset-v1 does not exist);"
        " data/turn-v1/metadata-v1.jsonl has its name — renamed? name it:"
        " jsonl: ../data/turn-v1/metadata-v1.jsonl"
    ) in status.stderr


def test_prune_keeps_everything_while_a_spec_does_not_load(workspace: Workspace) -> None:
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    (workspace.root / "configs" / "broken.yaml").write_text("extends: nowhere.yaml\n", encoding="utf-8")
    result = workspace.cli("cache", "prune")
    assert result.exit_code == 1
    assert "configs/broken.yaml: does not load" in result.stderr
    assert len(store_files(workspace)) == 8


def test_status_and_prune_leave_out_a_base_that_is_no_spec_on_its_own(workspace: Workspace) -> None:
    """`fplora init`'s base.yaml names no dataset: it is part of the versions that extend it."""
    (workspace.root / "configs" / "base.yaml").write_text("project: fake\n", encoding="utf-8")
    workspace.write_spec(extends="base.yaml")
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    status = workspace.cli("cache", "status")
    assert status.exit_code == 0, status.output
    assert "base.yaml" not in status.output
    assert "configs/v1.yaml: dataset 0: 4 records: 8 present" in status.stdout
    prune = workspace.cli("cache", "prune", "--dry-run")
    assert prune.exit_code == 0, prune.output
    assert "would remove 0 store entries no spec uses" in prune.stdout
    named = workspace.cli("cache", "status", "configs/base.yaml")  # named: its problem is shown
    assert named.exit_code == 1
    assert "configs/base.yaml: does not load (required sections" in named.stderr


def _count_reads(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[str]:
    """The names of the files `module.name(path)` reads from now on, in order, one per call."""
    reads: list[str] = []
    original = getattr(module, name)

    def counted(path: Path) -> Any:
        reads.append(path.name)
        return original(path)

    monkeypatch.setattr(module, name, counted)
    return reads


def test_status_and_prune_read_each_spec_file_once(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Which specs are bases comes from the same loads the specs are validated from: a file is read
    once on its own and once for each spec that extends it (its chain), not again to find the bases."""
    import importlib

    spec_load = importlib.import_module("fplora.spec.load")  # the package's `load` is the function
    (workspace.root / "configs" / "base.yaml").write_text("project: fake\n", encoding="utf-8")
    workspace.write_spec(extends="base.yaml")
    second_version(workspace)
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    reads = _count_reads(monkeypatch, spec_load, "read_one")
    for args in (["status"], ["prune", "--dry-run"]):
        reads.clear()
        result = workspace.cli("cache", *args)
        assert result.exit_code == 0, result.output
        assert sorted(reads) == ["base.yaml"] * 3 + ["v1.yaml"] * 2 + ["v1b.yaml"]


def test_prune_keeps_everything_where_the_model_files_are_not(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Caches are keyed by the models' content: in a shell where the spec's models are not found
    (no FPLORA_MODELS_DIR), every entry would look unused."""
    workspace.write_spec(models={"dir": "${MODELS:-../models}"})
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    monkeypatch.setenv("MODELS", str(workspace.root / "elsewhere"))
    status = workspace.cli("cache", "status")
    assert "configs/v1.yaml: model files not found here (models.vae," in status.stdout
    assert "stale" not in status.stdout
    for args in (["--dry-run"], []):
        result = workspace.cli("cache", "prune", *args)
        assert result.exit_code == 1
        assert "which entries this spec uses cannot be told" in result.stderr
        assert "would remove" not in result.stdout and "removed" not in result.stdout
    assert len(store_files(workspace)) == 8


def test_a_view_changed_after_caching_is_read_again_not_taken_from_its_seal(workspace: Workspace) -> None:
    """A no-op trusts the store's seal of a view folder only while the folder is unchanged."""
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0  # seals the complete view
    assert list((store(workspace) / "views").glob("*.json"))
    link = workspace.cache_dir / "0001_fp_te.safetensors"
    other = os.readlink(workspace.cache_dir / "0002_fp_te.safetensors")
    tmp = workspace.cache_dir / ".swap"
    os.symlink(other, tmp)
    os.replace(tmp, link)  # 0001's caption output now points at 0002's
    refused = workspace.cli("train", str(workspace.spec_path))
    assert refused.exit_code == 1 and "1 of 4 records changed" in refused.stderr
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    assert os.readlink(link) != other


def test_cache_reads_each_dataset_jsonl_once(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """`fplora cache` first asks whether the caches are complete, then checks and caches: one
    RecordCache for both, so a dataset's JSONL is read once per command, as RecordCache promises."""
    from fplora.datasets import records

    reads = _count_reads(monkeypatch, records, "read_records")
    result = workspace.cli("cache", str(workspace.spec_path))
    assert result.exit_code == 0, result.output
    assert reads == ["metadata-v1.jsonl"]
    reads.clear()
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0  # complete: nothing to do
    assert reads == ["metadata-v1.jsonl"]


def test_a_dataset_that_cannot_be_read_is_said_by_status_and_keeps_prune_from_removing(
    workspace: Workspace,
) -> None:
    """A JSONL moved away (or broken) leaves its dataset's records unknown: `status` names the file
    instead of counting 0 records, and `prune` keeps everything instead of taking that dataset's
    caches for unused."""
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    jsonl = workspace.root / "data" / "dataset-v1" / "metadata-v1.jsonl"
    jsonl.rename(jsonl.with_suffix(".moved"))
    status = workspace.cli("cache", "status")
    assert status.exit_code == 1
    assert "0 records" not in status.output
    assert (
        "configs/v1.yaml:8: datasets[0].jsonl: dataset JSONL file not found: data/dataset-v1/metadata-v1.jsonl"
        in status.stderr
    )
    for args in (["--dry-run"], []):
        result = workspace.cli("cache", "prune", *args)
        assert result.exit_code == 1
        assert "dataset JSONL file not found" in result.stderr
        assert "would remove" not in result.stdout and "removed" not in result.stdout
    assert len(store_files(workspace)) == 8
