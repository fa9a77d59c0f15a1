"""What the H100 runs and the first users' paths taught, pinned down on the CPU with the fake.

Each test names the trap: a tensorboard run that musubi-tuner refuses to start, a resumed segment
that samples its starting state again, caching that runs before a refusal it could not change, a
failed start that blocked every later start, complete caches recomputed for nothing.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest
from fakes import fake
from fakes.fixtures import Workspace

pytest_plugins = ["fakes.fixtures"]


def test_tensorboard_gets_a_logging_dir(cached: Workspace) -> None:
    """musubi-tuner refuses `log_with = "tensorboard"` without `logging_dir` at start-up."""
    cached.write_spec(train={"logging": {"with": "tensorboard"}})
    assert cached.cli("train", str(cached.spec_path), "--dry-run").exit_code == 0
    config = tomllib.loads((cached.render_dir / "config.toml").read_text(encoding="utf-8"))
    assert config["log_with"] == "tensorboard"
    assert config["logging_dir"] == str(cached.output_dir / "logs")


def test_resumed_segment_does_not_sample_at_first_again(cached: Workspace) -> None:
    cached.write_spec(sample={"at_first": True, "every_n_steps": 2})
    assert cached.cli("train", str(cached.spec_path)).exit_code == 0
    cached.write_spec(train={"max_train_steps": 6})
    cached.forget_calls()
    result = cached.cli("train", str(cached.spec_path), "--resume", "step2")
    assert result.exit_code == 0, result.output
    (call,) = cached.calls("fpack_train_network")
    given = fake.validate(call["args"]).given
    config = tomllib.loads(Path(given["config_file"]).read_text(encoding="utf-8"))
    assert given["config_file"].endswith("config-resume.toml")
    assert "sample_at_first" not in config
    assert config["sample_every_n_steps"] == 2
    samples = sorted(p.name for p in (cached.output_dir / "sample").iterdir())
    assert not [s for s in samples if s.startswith("fake-v1-r1_e000000")]


def test_train_with_cache_refuses_before_caching(cached: Workspace) -> None:
    """`--cache` must not spend GPU minutes on caches for a training that will be refused."""
    assert cached.cli("train", str(cached.spec_path)).exit_code == 0
    cached.forget_calls()
    result = cached.cli("train", str(cached.spec_path), "--cache")
    assert result.exit_code == 1
    assert "already holds run fake-v1" in result.stderr
    assert cached.calls() == []


def test_a_start_that_saved_nothing_does_not_block_the_next(cached: Workspace) -> None:
    failed = cached.cli("train", str(cached.spec_path), env={"FAKE_EXIT": "1"})
    assert failed.exit_code == 1
    assert not list(cached.output_dir.glob("*.safetensors"))
    again = cached.cli("train", str(cached.spec_path))
    assert again.exit_code == 0, again.output
    assert "set aside outputs/fake-v1.log of a start that saved nothing" in again.stderr
    names = {p.name for p in cached.output_dir.iterdir()}
    assert any(n.startswith("fake-v1.log.failed-") for n in names)  # kept, not deleted
    assert any(n.startswith("fake-v1.fplora-run.json.failed-") for n in names)
    assert len(cached.manifest()["segments"]) == 1


def test_infer_dry_run_before_training_names_the_final_file(cached: Workspace) -> None:
    result = cached.cli("infer", str(cached.spec_path), "--lora", "final", "--dry-run")
    assert result.exit_code == 0, result.output
    (line,) = [line for line in result.stdout.splitlines() if line]
    assert f"--lora_weight {cached.output_dir}/fake-v1.safetensors" in line
    assert f"--save_path {cached.output_dir}/sample/v1-final-lm1.0" in line


def test_more_processes_than_gpus_is_refused_before_launch(
    cached: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    cached.write_spec(launch={"num_processes": 2})
    result = cached.cli("train", str(cached.spec_path))
    assert result.exit_code == 1
    assert (
        "launch.num_processes: 2 processes on this machine, but it has 1 GPU(s)"
        " — set launch.num_processes to 1 or fewer" in result.stderr
    )
    assert cached.calls() == []


def test_gpus_hidden_by_cuda_visible_devices_are_not_a_process_count_to_lower(
    cached: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CUDA_VISIBLE_DEVICES="" left over from a CPU rehearsal: "set launch.num_processes to 0 or
    fewer" is no fix; the variable is."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    result = cached.cli("train", str(cached.spec_path))
    assert result.exit_code == 1
    assert (
        "launch.num_processes: 1 process on this machine, but no GPU is visible (CUDA_VISIBLE_DEVICES='')"
        " — unset CUDA_VISIBLE_DEVICES (or name this machine's GPUs in it), on the GPU machine"
    ) in result.stderr
    assert cached.calls() == []


def test_gpus_counted_with_nvidia_smi(cached: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    smi = cached.bin / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: a)'\necho 'GPU 1: NVIDIA H100 80GB HBM3 (UUID: b)'\n"
    )
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{cached.bin}:{os.environ['PATH']}")
    cached.write_spec(launch={"num_processes": 2})
    result = cached.cli("train", str(cached.spec_path))
    assert result.exit_code == 0, result.output
    (call,) = cached.calls("fpack_train_network")
    assert "--multi_gpu" in call["args"]


def test_a_command_reads_each_dataset_once(cached: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """check, rendering, the cache check and training share one reader: 10,000 records are read once."""
    import fplora.datasets.records as records_module

    reads: list[str] = []
    original = records_module.read_records

    def counting(jsonl: Path) -> records_module.Records:
        reads.append(str(jsonl))
        return original(jsonl)

    monkeypatch.setattr(records_module, "read_records", counting)
    assert cached.cli("train", str(cached.spec_path)).exit_code == 0
    assert len(reads) == 1
