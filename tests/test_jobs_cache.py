"""`fplora cache` against the fake musubi-tuner: both scripts, their caches, the stamp, --skip_existing.

musubi-tuner's cache names encode neither the one-frame settings nor the dataset version, so fplora
stamps a cache directory after a successful run and passes `--skip_existing` only while the stamp
matches; these tests hold it to that, through the real CLI and real subprocesses.
"""

from __future__ import annotations

import json
import os

import pytest
from fakes import fake
from fakes.fixtures import Workspace, snapshot

pytest_plugins = ["fakes.fixtures"]

STEMS = ("0001", "0002", "0003", "0004")
LATENTS = {f"{stem}_0064x0096_fp.safetensors" for stem in STEMS}  # the example images are 64x96
TEXT = {f"{stem}_fp_te.safetensors" for stem in STEMS}
STAMP = "fplora-cache.json"


def cache_files(workspace: Workspace) -> set[str]:
    return {p.name for p in workspace.cache_dir.iterdir()}


def test_cache_runs_both_scripts_and_stamps_the_cache(workspace: Workspace) -> None:
    result = workspace.cli("cache", str(workspace.spec_path))
    assert result.exit_code == 0, result.output
    calls = workspace.calls()
    assert [c["args"][c["args"].index("-m", 2) + 1] for c in calls] == [
        "musubi_tuner.fpack_cache_latents",
        "musubi_tuner.fpack_cache_text_encoder_outputs",
    ]
    for call in calls:
        invocation = fake.validate(call["args"])
        assert "skip_existing" not in invocation.given
        assert call["env"]["PYTHONUNBUFFERED"] == "1"
    assert fake.validate(calls[0]["args"]).given["one_frame"] is True
    assert cache_files(workspace) == LATENTS | TEXT | {STAMP}
    stamp = json.loads((workspace.cache_dir / STAMP).read_text())
    assert stamp["dataset"]["fp_1f_clean_indices"] == [0, 10] and stamp["dataset"]["fp_1f_target_index"] == 5
    assert "--text_encoder2" in stamp["cache_text_encoder"]
    (log,) = (workspace.render_dir / "logs").glob("cache-*.log")
    assert "cached 4 latents" in log.read_text() and "cached 4 text-encoder outputs" in log.read_text()
    assert "caches ready" in result.stderr


def test_complete_caches_are_left_alone(workspace: Workspace) -> None:
    """Loading the encoders costs GPU minutes: complete, stamped caches start nothing."""
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    before = snapshot(workspace.cache_dir)
    workspace.forget_calls()
    result = workspace.cli("cache", str(workspace.spec_path))
    assert result.exit_code == 0, result.output
    assert workspace.calls() == []
    assert "caches are complete and match the spec: nothing to do" in result.stderr
    assert snapshot(workspace.cache_dir) == before


def test_incomplete_caches_pass_skip_existing_and_keep_the_files(workspace: Workspace) -> None:
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    latent = next(p for p in workspace.cache_dir.iterdir() if p.name.endswith("_fp.safetensors"))
    latent.unlink()
    before = {k: v for k, v in snapshot(workspace.cache_dir).items() if k != STAMP}
    workspace.forget_calls()
    result = workspace.cli("cache", str(workspace.spec_path))
    assert result.exit_code == 0, result.output
    (call,) = workspace.calls()  # only a latent is missing: the text encoders are not loaded
    assert "musubi_tuner.fpack_cache_latents" in call["args"]
    assert fake.validate(call["args"]).given.get("skip_existing") is True
    after = snapshot(workspace.cache_dir)
    assert {k: v for k, v in after.items() if k in before} == before
    assert latent.name in after


def test_rebuild_recomputes_everything(workspace: Workspace) -> None:
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    workspace.forget_calls()
    assert workspace.cli("cache", str(workspace.spec_path), "--rebuild").exit_code == 0
    calls = workspace.calls()
    assert len(calls) == 2
    assert all("skip_existing" not in fake.validate(c["args"]).given for c in calls)


def test_changed_one_frame_settings_recache_everything(workspace: Workspace) -> None:
    """The names do not change with the settings, so `--skip_existing` would keep stale latents."""
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    workspace.write_spec(one_frame={"no_2x": True})
    stale = workspace.cli("train", str(workspace.spec_path))
    assert stale.exit_code == 1
    assert "made with other settings" in stale.stderr and "fplora cache" in stale.stderr
    workspace.forget_calls()
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    latents = fake.validate(workspace.calls("fpack_cache_latents")[0]["args"]).given
    assert latents.get("one_frame_no_2x") is True
    assert "skip_existing" not in latents
    assert "--one_frame_no_2x" in json.loads((workspace.cache_dir / STAMP).read_text())["cache_latents"]


def test_failed_caching_returns_the_exit_code_and_writes_no_stamp(workspace: Workspace) -> None:
    result = workspace.cli(
        "cache",
        str(workspace.spec_path),
        env={"FAKE_EXIT": "4", "FAKE_EXIT_SCRIPT": "fpack_cache_text_encoder_outputs"},
    )
    assert result.exit_code == 4
    assert "caching failed (exit 4)" in result.stderr
    assert len(workspace.calls()) == 2
    assert not (workspace.cache_dir / STAMP).exists()
    # without a stamp the next run must not skip: the latents may be from other settings
    workspace.forget_calls()
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    assert all("--skip_existing" not in c["args"] for c in workspace.calls())


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
    monkeypatch.setenv("FPLORA_MUSUBI_PYTHON", str(workspace.root / "nowhere" / "python"))
    result = workspace.cli("cache", str(workspace.spec_path))
    assert result.exit_code == 1
    assert "cannot run" in result.stderr and "FPLORA_MUSUBI_PYTHON" in result.stderr


def test_dry_run_shows_only_the_scripts_that_would_run(workspace: Workspace) -> None:
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    workspace.forget_calls()
    complete = workspace.cli("cache", str(workspace.spec_path), "--dry-run")
    assert complete.exit_code == 0 and complete.stdout == ""
    assert "nothing to do" in complete.stderr
    next(p for p in workspace.cache_dir.iterdir() if p.name.endswith("_fp_te.safetensors")).unlink()
    one = workspace.cli("cache", str(workspace.spec_path), "--dry-run")
    (line,) = one.stdout.splitlines()
    assert "musubi_tuner.fpack_cache_text_encoder_outputs" in line and "--skip_existing" in line
    assert workspace.calls() == []


def test_a_changed_pass_through_cache_option_recaches(workspace: Workspace) -> None:
    """Pass-through options reach the cache scripts (vae_tiling changes the latents): the stamp has them."""
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    workspace.write_spec(musubi={"cache_latents": {"vae_tiling": True}})
    stale = workspace.cli("train", str(workspace.spec_path))
    assert stale.exit_code == 1
    assert "made with other settings" in stale.stderr
    workspace.forget_calls()
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    latents = fake.validate(workspace.calls("fpack_cache_latents")[0]["args"]).given
    assert latents.get("vae_tiling") is True and "skip_existing" not in latents


def test_cache_refuses_while_the_spec_is_training(workspace: Workspace) -> None:
    lock = workspace.output_dir / "fake-v1.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(f"{os.getpid()}\n")  # a live holder: this test process
    result = workspace.cli("cache", str(workspace.spec_path), "--rebuild")
    assert result.exit_code == 1
    assert f"fake-v1 is training (pid {os.getpid()}) from these caches" in result.stderr
    assert workspace.calls() == []


def test_a_changed_text_encoder2_recaches(workspace: Workspace) -> None:
    """text_encoder2's CLIP output is in the text-encoder cache: the stamp is built from the argv the
    cache scripts get, so a model the hand-kept list forgot cannot be left out again (evaluation's
    setup holds the same stamp: its scores under the old encoder no longer count)."""
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    other = workspace.root / "models" / "te2-other.safetensors"
    other.write_bytes((workspace.root / "models" / "te2.safetensors").read_bytes())
    workspace.write_spec(models={"text_encoder2": "te2-other.safetensors"})
    stale = workspace.cli("train", str(workspace.spec_path))
    assert stale.exit_code == 1
    assert "made with other settings" in stale.stderr
    workspace.forget_calls()
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    text = fake.validate(workspace.calls("fpack_cache_text_encoder_outputs")[0]["args"]).given
    assert text["text_encoder2"] == str(other) and "skip_existing" not in text
