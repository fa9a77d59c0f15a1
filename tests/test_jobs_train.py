"""`fplora train` against the fake musubi-tuner: caches, manifest, log, checkpoints, exit codes, lock.

The fake writes what `fpack_train_network` writes, under musubi-tuner's names, and prints its tqdm
bar; fplora must find the checkpoints by those names, parse steps and losses from the bar, refuse to
overwrite a run, and hand back the trainer's exit code.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import fake
from fakes.fixtures import Workspace, add_runpodctl, process_gone, snapshot

pytest_plugins = ["fakes.fixtures"]


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def test_train_refuses_missing_caches_in_one_line(workspace: Workspace) -> None:
    result = workspace.cli("train", str(workspace.spec_path))
    assert result.exit_code == 1
    (line,) = error_lines(result.stderr)
    assert "misses 4 latent and 4 text-encoder files" in line
    assert "`fplora cache`" in line
    assert workspace.calls() == []
    assert not workspace.output_dir.exists()


def test_train_with_cache_caches_then_trains(workspace: Workspace) -> None:
    result = workspace.cli("train", str(workspace.spec_path), "--cache")
    assert result.exit_code == 0, result.output
    scripts = [c["args"][c["args"].index("-m", 2) + 1] for c in workspace.calls()]
    assert scripts == [
        "musubi_tuner.fpack_cache_latents",
        "musubi_tuner.fpack_cache_text_encoder_outputs",
        "musubi_tuner.fpack_train_network",
    ]
    assert (workspace.output_dir / "fake-v1.safetensors").is_file()


def test_train_writes_manifest_log_and_checkpoints_by_musubi_names(cached: Workspace) -> None:
    result = cached.cli("train", str(cached.spec_path))
    assert result.exit_code == 0, result.output
    (call,) = cached.calls("fpack_train_network")
    invocation = fake.validate(call["args"])
    assert invocation.values["output_name"] == "fake-v1"
    assert invocation.values["save_precision"] == "bf16"

    names = {p.name for p in cached.output_dir.iterdir() if not p.name.startswith(".")}  # the lock's guard
    steps = {f"fake-v1-step{s:08d}.safetensors" for s in range(1, 5)}
    states = {f"fake-v1-step{s:08d}-state" for s in range(1, 5)}
    finals = {"fake-v1.safetensors", "fake-v1-state"}
    assert names == steps | states | finals | {"fake-v1.log", "fake-v1.fplora-run.json", "sample"}
    assert not (cached.output_dir / "fake-v1.lock").exists()
    samples = sorted(p.name.split("_")[1] for p in (cached.output_dir / "sample").iterdir())
    assert samples == ["000002", "000004", "e000000"]

    manifest = cached.manifest()
    (segment,) = manifest["segments"]
    assert segment["output_name"] == "fake-v1"
    assert segment["step_offset"] == 0 and segment["resumed_from"] is None
    assert segment["exit_code"] == 0 and segment["interrupted"] is False
    assert segment["last_step"] == 4
    assert segment["losses"] == [0.11, 0.12, 0.13, 0.14]
    assert segment["command"][1:] == call["args"]
    assert manifest["spec"] == str(cached.spec_path)
    assert manifest["schema_version"] == 2 and "rendered" not in manifest  # once, in the segment
    assert str(cached.render_dir / "config.toml") in segment["rendered"]

    log = (cached.output_dir / "fake-v1.log").read_text(encoding="utf-8")
    assert segment["log"] == str(cached.output_dir / "fake-v1.log")
    assert "fake training fake-v1: 4 steps" in log and "| 4/4 [" in log
    assert "training finished at global step 4 (exit 0); log: outputs/fake-v1.log" in result.stderr


def test_exit_code_is_the_trainers(cached: Workspace) -> None:
    result = cached.cli("train", str(cached.spec_path), env={"FAKE_EXIT": "3"})
    assert result.exit_code == 3
    (segment,) = cached.manifest()["segments"]
    assert segment["exit_code"] == 3 and segment["interrupted"] is False
    assert "training failed" in result.stderr
    # the fake failed before saving anything: the same command again sets the failed start aside
    assert result.stderr.splitlines()[-1] == (
        "nothing was saved: once the cause is fixed, run `fplora train configs/v1.yaml` again"
    )
    again = cached.cli("train", str(cached.spec_path))
    assert again.exit_code == 0 and "set aside" in again.stderr


def test_second_train_without_resume_refuses_and_touches_nothing(cached: Workspace) -> None:
    assert cached.cli("train", str(cached.spec_path)).exit_code == 0
    before = snapshot(cached.output_dir)
    cached.forget_calls()
    result = cached.cli("train", str(cached.spec_path))
    assert result.exit_code == 1
    (line,) = error_lines(result.stderr)
    assert "already holds run fake-v1" in line and "--resume" in line
    # it finished: `--resume` alone would be refused next, so the fix says to raise the steps first
    assert line.endswith(
        " — it finished at step 4 (train.max_train_steps): to train further, raise train.max_train_steps"
        " and run `fplora train configs/v1.yaml --resume latest`; or start a new version (a new spec file)"
    ), line
    assert cached.calls() == []
    assert snapshot(cached.output_dir) == before


def _dead_pid() -> int:
    """The pid of a process that has exited (a killed fplora, say)."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(done.stdout)


def test_a_live_lock_refuses(cached: Workspace) -> None:
    cached.output_dir.mkdir()
    lock = cached.output_dir / "fake-v1.lock"
    lock.write_text(f"{os.getpid()}\n")
    result = cached.cli("train", str(cached.spec_path))
    assert result.exit_code == 1
    assert f"another training (pid {os.getpid()}) is writing this run" in result.stderr
    assert lock.read_text() == f"{os.getpid()}\n"
    assert cached.calls() == []


def test_a_lock_whose_training_child_outlived_fplora_refuses(cached: Workspace) -> None:
    """fplora killed (OOM, a timeout) while its child, in its own session, still trains."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        cached.output_dir.mkdir()
        lock = cached.output_dir / "fake-v1.lock"
        lock.write_text(f"{_dead_pid()}\n{child.pid}\n")
        result = cached.cli("train", str(cached.spec_path))
        assert result.exit_code == 1
        assert f"another training (pid {child.pid}) is writing this run" in result.stderr
        assert cached.calls() == []
    finally:
        child.kill()
        child.wait()


def test_the_lock_records_the_training_child(cached: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    from fplora.runs.lock import Lock

    seen: list[str] = []
    original = Lock.add

    def spy(self: Lock, pid: int) -> None:
        original(self, pid)
        seen.extend(self.path.read_text().split())

    monkeypatch.setattr(Lock, "add", spy)
    assert cached.cli("train", str(cached.spec_path)).exit_code == 0
    assert len(seen) == 2  # fplora's pid, then the child's
    assert seen[0] == str(os.getpid()) and seen[1] != seen[0]


def test_a_stale_lock_is_taken_over(cached: Workspace) -> None:
    dead_pid = _dead_pid()
    cached.output_dir.mkdir()
    lock = cached.output_dir / "fake-v1.lock"
    lock.write_text(f"{dead_pid}\n")
    result = cached.cli("train", str(cached.spec_path))
    assert result.exit_code == 0, result.output
    assert not lock.exists()
    assert len(cached.calls("fpack_train_network")) == 1


def test_missing_musubi_is_reported_with_the_install_hint(cached: Workspace) -> None:
    result = cached.cli("train", str(cached.spec_path), env={"FAKE_MUSUBI_MISSING": "1"})
    assert result.exit_code == 1
    assert "cannot import musubi_tuner" in result.stderr and "uv pip install" in result.stderr
    assert cached.calls() == []
    # a dry run does not need musubi-tuner
    dry = cached.cli("train", str(cached.spec_path), "--dry-run", env={"FAKE_MUSUBI_MISSING": "1"})
    assert dry.exit_code == 0


def test_a_module_the_spec_needs_is_probed_before_training(cached: Workspace) -> None:
    """adamw8bit needs bitsandbytes, which musubi-tuner imports only after loading the models."""
    result = cached.cli("train", str(cached.spec_path), env={"FAKE_MISSING_MODULES": "bitsandbytes"})
    assert result.exit_code == 1
    assert "cannot import bitsandbytes" in result.stderr
    assert cached.calls() == []


def test_stop_pod_always_runs_runpodctl(cached: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    add_runpodctl(cached, monkeypatch)
    monkeypatch.setenv("RUNPOD_POD_ID", "pod123")
    result = cached.cli("train", str(cached.spec_path), "--stop-pod", "always", env={"FAKE_EXIT": "3"})
    assert result.exit_code == 3
    tools = [r for r in cached.records() if r.get("tool") == "runpodctl"]
    assert [t["args"] for t in tools] == [["stop", "pod", "pod123"]]


def test_stop_pod_always_also_when_caching_fails(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`train --cache --stop-pod always` left alone: a caching failure must not keep the pod billing."""
    add_runpodctl(workspace, monkeypatch)
    monkeypatch.setenv("RUNPOD_POD_ID", "pod123")
    env = {"FAKE_EXIT": "4", "FAKE_EXIT_SCRIPT": "fpack_cache_latents"}
    result = workspace.cli("train", str(workspace.spec_path), "--cache", "--stop-pod", "always", env=env)
    assert result.exit_code == 4
    assert workspace.calls("fpack_train_network") == []
    tools = [r for r in workspace.records() if r.get("tool") == "runpodctl"]
    assert [t["args"] for t in tools] == [["stop", "pod", "pod123"]]


def test_stop_pod_success_keeps_a_failed_runs_pod(cached: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    add_runpodctl(cached, monkeypatch)
    monkeypatch.setenv("RUNPOD_POD_ID", "pod123")
    result = cached.cli("train", str(cached.spec_path), "--stop-pod", "success", env={"FAKE_EXIT": "3"})
    assert result.exit_code == 3
    assert [r for r in cached.records() if r.get("tool") == "runpodctl"] == []


def test_stop_pod_without_a_pod_id_warns(cached: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    add_runpodctl(cached, monkeypatch)
    result = cached.cli("train", str(cached.spec_path), "--stop-pod", "always")
    assert result.exit_code == 0
    assert "not on RunPod (no RUNPOD_POD_ID or runpodctl): not stopping a pod" in result.stderr
    assert [r for r in cached.records() if r.get("tool") == "runpodctl"] == []


def test_stop_pod_rejects_other_words(cached: Workspace) -> None:
    result = cached.cli("train", str(cached.spec_path), "--stop-pod", "sometimes")
    assert result.exit_code == 1
    assert "--stop-pod: must be success, always or never" in result.stderr


def test_the_record_file_is_one_json_object_per_line(cached: Workspace) -> None:
    assert cached.cli("train", str(cached.spec_path)).exit_code == 0
    for line in cached.record.read_text().splitlines():
        assert isinstance(json.loads(line), dict)
    (call,) = cached.calls("fpack_train_network")
    assert call["cwd"] == str(cached.root)
    assert call["env"]["FPLORA_MUSUBI_PYTHON"] == str(cached.python)


def test_stop_pod_always_also_when_fplora_refuses(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Missing caches stop the command before training; an unattended pod set to `always` stops too."""
    add_runpodctl(workspace, monkeypatch)
    monkeypatch.setenv("RUNPOD_POD_ID", "pod123")
    result = workspace.cli("train", str(workspace.spec_path), "--stop-pod", "always")
    assert result.exit_code == 1
    assert "run `fplora cache` first" in result.stderr
    assert workspace.calls("fpack_train_network") == []
    tools = [r for r in workspace.records() if r.get("tool") == "runpodctl"]
    assert [t["args"] for t in tools] == [["stop", "pod", "pod123"]]
    kept = workspace.cli("train", str(workspace.spec_path), "--stop-pod", "success")
    assert kept.exit_code == 1
    assert len([r for r in workspace.records() if r.get("tool") == "runpodctl"]) == 1


def test_fplora_failing_mid_training_stops_the_child_before_the_lock_goes(
    cached: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk while fplora reads the bar: the child must be stopped (not train on unrecorded),
    the lock released only once it is gone, the segment's end recorded, and one line said."""
    from fplora.jobs import train
    from fplora.runs import lock

    cached.write_spec(train={"max_train_steps": 20})
    children: list[int] = []
    alive_at_release: list[bool] = []
    add, release = lock.Lock.add, lock._release

    def add_and_note(self: lock.Lock, pid: int) -> None:
        children.append(pid)
        add(self, pid)

    def release_and_note(path: object) -> None:
        alive_at_release.extend(not process_gone(pid) for pid in children)
        release(path)  # type: ignore[arg-type]

    def full_disk(self: object, line: str) -> None:
        if "avr_loss=" in line:
            raise OSError(errno.ENOSPC, "No space left on device", str(cached.output_dir / "fake-v1.log"))

    monkeypatch.setattr(lock.Lock, "add", add_and_note)
    monkeypatch.setattr(lock, "_release", release_and_note)
    monkeypatch.setattr(train._LossWatch, "__call__", full_disk)
    result = cached.cli("train", str(cached.spec_path), env={"FAKE_TRAIN_SLEEP": "0.2"})
    assert result.exit_code == 1
    (line,) = error_lines(result.stderr)
    assert line.startswith("error: outputs/fake-v1.log: fplora failed while training ran (No space left")
    assert "fplora train --resume latest" in line
    assert children and alive_at_release == [False]
    assert not (cached.output_dir / "fake-v1.lock").exists()
    (segment,) = cached.manifest()["segments"]
    assert segment["ended"] and segment["interrupted"] is True
    assert not (cached.output_dir / "fake-v1.safetensors").exists()


def _pod_stops(workspace: Workspace) -> list[list[str]]:
    return [r["args"] for r in workspace.records() if r.get("tool") == "runpodctl"]


def test_stop_pod_always_when_the_end_cannot_be_recorded(
    cached: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk when the manifest is saved after training: one line, not a traceback, and the
    unattended pod stops (an error that is not a refusal used to skip the stop)."""
    from fplora.runs.manifest import Manifest

    add_runpodctl(cached, monkeypatch)
    monkeypatch.setenv("RUNPOD_POD_ID", "pod123")
    save = Manifest.save
    saves: list[int] = []

    def full_after_start(self: Manifest, output_dir: Path) -> Path:
        saves.append(1)
        if len(saves) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(self, output_dir)

    monkeypatch.setattr(Manifest, "save", full_after_start)
    result = cached.cli("train", str(cached.spec_path), "--stop-pod", "always")
    assert result.exit_code == 1
    (line,) = error_lines(result.stderr)
    assert line.startswith(
        "error: outputs/fake-v1.fplora-run.json: cannot record the end of fake-v1 (No space left on device);"
        " its training ended with exit 0"
    )
    assert _pod_stops(cached) == [["stop", "pod", "pod123"]]
    assert (cached.output_dir / "fake-v1.safetensors").is_file()


def test_stop_pod_always_when_fplora_fails_unexpectedly(
    cached: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever fplora raises (here a bug of its own), the pod set to `always` stops."""
    from fplora.jobs import train

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    add_runpodctl(cached, monkeypatch)
    monkeypatch.setenv("RUNPOD_POD_ID", "pod123")
    monkeypatch.setattr(train, "prepare_train", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        cached.cli("train", str(cached.spec_path), "--stop-pod", "always")
    assert _pod_stops(cached) == [["stop", "pod", "pod123"]]


def test_an_output_dir_that_is_a_file_is_refused_at_its_line_and_the_pod_stops(
    cached: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_runpodctl(cached, monkeypatch)
    monkeypatch.setenv("RUNPOD_POD_ID", "pod123")
    (cached.root / "taken").write_text("not a folder\n")
    cached.write_spec(train={"output_dir": "../taken"}, runpod={"stop_pod": "always"})
    result = cached.cli("train", str(cached.spec_path))
    assert result.exit_code == 1
    (line,) = error_lines(result.stderr)
    assert line.startswith("error: configs/v1.yaml:")
    assert line.endswith(
        "train.output_dir: taken is a file, not a folder — name a folder (or move the file away)"
    )
    assert _pod_stops(cached) == [["stop", "pod", "pod123"]]
    check = cached.cli("check", str(cached.spec_path))
    assert check.exit_code == 1 and "train.output_dir: taken is a file, not a folder" in check.stderr


def test_an_unwritable_output_dir_is_refused_before_training(
    cached: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As root every folder is writable, so the permission test stands in through `os.access`."""
    real = os.access
    parent = str(cached.root)
    monkeypatch.setattr(os, "access", lambda path, mode: str(path) != parent and real(path, mode))
    result = cached.cli("check", str(cached.spec_path), "--skip-models")
    assert result.exit_code == 1
    (line,) = error_lines(result.stderr)
    assert line.endswith(
        "train.output_dir: outputs cannot be made: . is not writable — name a folder you can write,"
        " or fix the permissions"
    )


def _no_wandb_login(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(home))
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL", "NETRC", "WANDB_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)


def test_train_refuses_wandb_logging_without_a_login_before_launching(
    cached: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unattended run that logs to wandb without credentials would fail inside musubi-tuner after
    the models load: it is refused in one line at the spec's key, before anything runs."""
    home = tmp_path / "home"
    home.mkdir()
    _no_wandb_login(home, monkeypatch)
    cached.write_spec(train={"logging": {"with": "wandb"}})
    result = cached.cli("train", str(cached.spec_path), "--no-rehearse")
    assert result.exit_code == 1
    (line,) = error_lines(result.stderr)
    spec_line = next(
        i for i, text in enumerate(cached.spec_path.read_text().splitlines(), 1) if "with: wandb" in text
    )
    assert line == (
        f"error: {cached.spec_path.relative_to(Path.cwd())}:{spec_line}: train.logging.with: logs to wandb, but no wandb login"
        " was found (no WANDB_API_KEY, no api.wandb.ai entry in ~/.netrc or $NETRC): musubi-tuner would"
        " fail at accelerate's init_trackers after the models load — run `wandb login`, set"
        " WANDB_API_KEY, or set WANDB_MODE=offline"
    )
    assert cached.calls() == []
    # refused before the rehearsal too, which would spend its minutes first
    rehearsed = cached.cli("train", str(cached.spec_path))
    assert rehearsed.exit_code == 1 and error_lines(rehearsed.stderr) == [line]
    assert "rehears" not in rehearsed.output
    # --dry-run launches nothing, so it does not ask
    assert cached.cli("train", str(cached.spec_path), "--dry-run").exit_code == 0


@pytest.mark.parametrize(
    "login",
    [
        "key",
        "netrc",
        "NETRC",
        "offline",
        "self-hosted netrc",
        "wandb offline",
        "wandb disabled here",
        "wandb login --host",
    ],
)
def test_train_with_a_wandb_login_is_not_refused(
    cached: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, login: str
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    _no_wandb_login(home, monkeypatch)
    secret = "0123456789abcdef0123456789abcdef01234567"
    entry = f"machine api.wandb.ai\n  login user\n  password {secret}\n"
    if login == "key":
        monkeypatch.setenv("WANDB_API_KEY", secret)
    elif login == "netrc":
        (home / ".netrc").write_text(entry)
    elif login == "NETRC":
        (tmp_path / "elsewhere").write_text(entry)
        monkeypatch.setenv("NETRC", str(tmp_path / "elsewhere"))
    elif login == "offline":
        monkeypatch.setenv("WANDB_MODE", "offline")
    elif login == "wandb offline":  # what `wandb offline` keeps in the user's settings
        (home / ".config" / "wandb").mkdir(parents=True)
        (home / ".config" / "wandb" / "settings").write_text("[default]\nmode = offline\n")
    elif login == "wandb disabled here":  # ... or in the workspace's, in the folder the run starts in
        (Path.cwd() / "wandb").mkdir()
        (Path.cwd() / "wandb" / "settings").write_text("[default]\nmode = disabled\n")
    elif login == "wandb login --host":  # a self-hosted server kept as base_url, its key in ~/.netrc
        (home / ".config" / "wandb").mkdir(parents=True)
        (home / ".config" / "wandb" / "settings").write_text(
            "[default]\nbase_url = https://wandb.example.com\n"
        )
        (home / ".netrc").write_text(entry.replace("api.wandb.ai", "wandb.example.com"))
    else:
        (home / ".netrc").write_text(entry.replace("api.wandb.ai", "wandb.example.com"))
        monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.com")
    cached.write_spec(train={"logging": {"with": "wandb"}})
    result = cached.cli("train", str(cached.spec_path), "--no-rehearse")
    assert "wandb login" not in result.output
    assert secret not in result.output
    assert cached.calls(), result.output  # launched


def test_an_offline_wandb_training_says_how_to_upload_it(cached: Workspace) -> None:
    """WANDB_MODE=offline on a pod without a login: the run lands in ./wandb/, and nothing said so or
    how to send it once there is network."""
    cached.write_spec(train={"logging": {"with": "wandb"}})
    result = cached.cli("train", str(cached.spec_path), env={"WANDB_MODE": "offline"})
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[-1] == (
        "wandb ran offline (WANDB_MODE=offline): its run is under wandb/; upload it where there is"
        " network: wandb sync wandb/offline-run-*"
    )
