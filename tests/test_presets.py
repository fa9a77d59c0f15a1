"""GPU presets: the memory model against every measurement, what each preset chooses, that the
spec's own settings win, `auto` through a fake nvidia-smi, and the estimates of `train --dry-run`."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
import tomllib
from fakes.fixtures import Workspace

from fplora import plan
from fplora.presets import apply, detect
from fplora.presets.choose import choose, shape_factor
from fplora.presets.table import table
from fplora.problems import UserError
from fplora.spec import load_spec

pytest_plugins = ["fakes.fixtures"]

MEMO = "data: {resolution: [512, 768], batch_size: 16}\n"


def test_the_memory_model_reproduces_every_measured_peak() -> None:
    """Fixed part + per sample + per swapped block (+ DDP, − fp8), fitted to these rows: within 2 %."""
    model = table().model
    for row in table().rows:
        if row.peak_mib is None:
            continue
        predicted = model.peak(
            checkpointing=row.gradient_checkpointing,
            batch=row.batch,
            swap=row.blocks_to_swap,
            shape=1.0,
            fp8=row.fp8,
            processes=row.processes,
        )
        assert abs(predicted - row.peak_mib) / row.peak_mib < 0.02, row


def test_the_model_predicts_the_measured_out_of_memory_cells() -> None:
    model = table().model
    for row in table().rows:
        if row.peak_mib is None and not row.fp8:  # fp8 without recomputation OOMed: not modelled
            memory = table().gpus[row.gpu].memory_mib
            predicted = model.peak(
                checkpointing=row.gradient_checkpointing,
                batch=row.batch,
                swap=row.blocks_to_swap,
                shape=1.0,
                fp8=False,
                processes=1,
            )
            assert predicted > memory, row


@pytest.mark.parametrize(
    ("gpu", "expected"),
    [
        ("h200", (1, 16, 0, False, "measured")),  # no recomputation: 1.07 samples/s vs the memo's 0.94
        ("h100-80g", (8, 2, 0, True, "measured")),  # the memo's batch 16 + swap 20 leaves 0.6 % free
        ("a6000-48g", (4, 4, 0, True, "modelled")),
        ("4090-24g", (1, 16, 14, True, "modelled")),
    ],
)
def test_each_preset_at_the_memos_shape(gpu: str, expected: tuple[int, int, int, bool, str]) -> None:
    info = table().gpus[gpu]
    choice = choose(gpu, info.label, info.memory_mib, effective=16, shape=1.0, measured=info.measured)
    assert choice is not None
    got = (
        choice.batch,
        choice.accumulation,
        choice.blocks_to_swap,
        choice.gradient_checkpointing,
        choice.basis,
    )
    assert got == expected
    assert choice.headroom >= 0.05


def test_a_larger_image_falls_back_to_recomputation_on_the_h200() -> None:
    info = table().gpus["h200"]
    shape = shape_factor(768, 1024, 2)
    choice = choose("h200", info.label, info.memory_mib, effective=16, shape=shape)
    assert choice is not None and choice.gradient_checkpointing and choice.headroom >= 0.05


def _spec(project: Callable[..., Path], text: str):
    return load_spec(project(text))


def _rendered(spec, tmp_path: Path) -> tuple[dict, dict]:
    built = plan.build(spec, tmp_path / "out")
    by_name = {p.name: t for p, t in built.files.items()}
    return tomllib.loads(by_name["config.toml"]), tomllib.loads(by_name["dataset.toml"])


def test_a_preset_splits_the_effective_batch_and_keeps_the_rate(project, tmp_path: Path) -> None:
    spec = _spec(project, MEMO + "gpu: h100-80g\ntrain:\n  optimizer: {tuned_at_batch: 4}\n")
    applied = apply(spec)
    config, dataset = _rendered(applied.spec, tmp_path)
    assert dataset["general"]["batch_size"] == 8
    assert config["gradient_accumulation_steps"] == 2
    assert "blocks_to_swap" not in config and config["gradient_checkpointing"] is True
    assert config["learning_rate"] == pytest.approx(2e-3)  # effective batch 16 either way
    assert applied.lines()[0].startswith("gpu h100-80g: batch 8 × 2 accumulation steps, no block swap")


def test_settings_the_spec_writes_win(project, tmp_path: Path) -> None:
    spec = _spec(project, MEMO + "gpu: h100-80g\ntrain:\n  blocks_to_swap: 20\n")
    applied = apply(spec)
    config, dataset = _rendered(applied.spec, tmp_path)
    assert (config["blocks_to_swap"], dataset["general"]["batch_size"]) == (20, 8)  # b16+swap20: no headroom
    assert "gpu h100-80g: train.blocks_to_swap 20 kept as written in the spec" in applied.lines()


def test_written_accumulation_pins_the_split(project, tmp_path: Path) -> None:
    spec = _spec(project, MEMO + "gpu: h200\ntrain:\n  gradient_accumulation_steps: 1\n")
    config, dataset = _rendered(apply(spec).spec, tmp_path)
    assert dataset["general"]["batch_size"] == 16
    assert "gradient_accumulation_steps" not in config
    assert config["gradient_checkpointing"] is True  # batch 16 without recomputation cannot fit


def test_the_command_line_wins_and_names_are_checked(project) -> None:
    spec = _spec(project, MEMO + "gpu: h200\n")
    assert apply(spec, "h100-80g").choice.gpu == "h100-80g"
    with pytest.raises(UserError) as refused:
        apply(spec, "h100")
    assert refused.value.problems[0].key == "--gpu"
    with pytest.raises(UserError) as refused:
        apply(_spec(project, MEMO + "gpu: a6000\n"))
    assert refused.value.problems[0].key == "gpu" and "a6000-48g" in refused.value.problems[0].fix


def _fake_smi(folder: Path, output: str) -> None:
    smi = folder / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\nprintf '{output}'\n")
    smi.chmod(smi.stat().st_mode | stat.S_IXUSR)


def test_auto_reads_nvidia_smi(project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_smi(bin_dir, "NVIDIA H200, 143771\\nNVIDIA H200, 143771\\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    found = detect()
    assert found is not None and (found.name, found.memory_mib, found.count) == ("NVIDIA H200", 143771, 2)
    applied = apply(_spec(project, MEMO + "gpu: auto\n"))
    assert applied.choice is not None and applied.choice.gpu == "h200"
    assert applied.lines()[0] == "gpu auto: NVIDIA H200, 143,771 MiB (nvidia-smi): preset h200"


def test_auto_models_an_unlisted_gpu(project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_smi(bin_dir, "NVIDIA A100-SXM4-40GB, 40960\\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    applied = apply(_spec(project, MEMO + "gpu: auto\n"))
    assert applied.choice is not None and applied.choice.basis == "modelled"
    assert "not measured on this GPU" in applied.lines()[1]


def test_auto_without_a_gpu_says_so(project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    applied = apply(_spec(project, MEMO + "gpu: auto\n"), python=str(tmp_path / "no-python"))
    assert applied.choice is None
    assert "no GPU found here" in applied.lines()[0]


def test_check_and_dry_run_print_the_choice_and_the_estimate(workspace: Workspace) -> None:
    workspace.write_spec(data={"resolution": [512, 768], "batch_size": 16}, price_per_hour=2.5)
    check = workspace.cli("check", str(workspace.spec_path), "--skip-models", "--gpu", "h100-80g")
    assert check.exit_code == 0, check.output
    assert (
        "note: gpu h100-80g: batch 8 × 2 accumulation steps, no block swap, gradient checkpointing"
        in check.stderr
    )
    dry = workspace.cli("train", str(workspace.spec_path), "--dry-run", "--gpu", "h100-80g")
    assert dry.exit_code == 0, dry.output
    assert "estimate: 1 steps per epoch (effective batch 16); max_train_steps 4 is 4 epochs" in dry.stderr
    assert "estimate: 22.8 s/step (11.42 s per micro-batch of 8 × 2, measured on h100-80g)" in dry.stderr
    assert "at $2.5/h" in dry.stderr
    priced = workspace.cli(
        "train", str(workspace.spec_path), "--dry-run", "--gpu", "h100-80g", "--price-per-hour", "10"
    )
    assert "at $10/h" in priced.stderr
    modelled = workspace.cli("train", str(workspace.spec_path), "--dry-run", "--gpu", "4090-24g")
    assert "estimate: no time: the 4090-24g preset is modelled, not measured" in modelled.stderr
