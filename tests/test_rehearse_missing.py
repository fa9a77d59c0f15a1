"""A kernel or package the spec's settings need and this musubi-tuner Python lacks: on a machine with
CUDA (the one that trains) the real run would stop the same way, so the rehearsal fails, naming the
spec line and the fix; on a CPU machine the stage is not rehearsed here, the GPU box's rehearsal
checks it. The fake rehearsal worker reports CUDA with FAKE_REHEARSAL_CUDA=1 (its kernels are all
missing, as on a box without flash_attn, sageattention and xformers)."""

from __future__ import annotations

from fakes.fixtures import Workspace

from fplora.jobs.rehearse import remembered, stages
from fplora.spec import load_spec

pytest_plugins = ["fakes.fixtures"]

NO_KERNEL = "train:TypeError: 'NoneType' object is not callable"
NO_PACKAGE = (
    "train:ModuleNotFoundError: No module named 'prodigyopt' (the package prodigyopt is not installed"
    " in this musubi-tuner Python)"
)


def _line(said: str, start: str) -> str:
    return next(line for line in said.splitlines() if line.startswith(start))


def _fails_on_the_training_box(workspace: Workspace, error: str) -> str:
    """Rehearse the workspace's spec where the fake worker reports CUDA and `error`; what it said,
    after checking that it failed."""
    result = workspace.cli(
        "rehearse", str(workspace.spec_path), env={"FAKE_REHEARSAL_CUDA": "1", "FAKE_REHEARSAL_FAIL": error}
    )
    said = result.stdout + result.stderr
    assert result.exit_code == 1, said
    return said


def test_a_missing_attention_kernel_fails_on_the_training_box(workspace: Workspace) -> None:
    workspace.write_spec(train={"attention": "xformers"})
    said = _fails_on_the_training_box(workspace, NO_KERNEL)
    line = _line(said, "rehearsal failed at stage train ")
    assert line.startswith(
        "rehearsal failed at stage train (2 training steps, sampling at first): configs/v1.yaml:"
    )
    assert line.endswith(
        ": train.attention: xformers needs the package xformers, which this musubi-tuner Python"
        " (bin/musubi-python) lacks: the real run would stop the same way — install xformers there,"
        " or choose train.attention: sdpa"
    )
    assert "not rehearsed" not in said


def test_a_missing_attention_kernel_on_a_cpu_machine_is_left_to_the_gpu_box(workspace: Workspace) -> None:
    """Stood in for by PyTorch's attention here; the pass holds on this machine only, so that the GPU
    box, where the same project is rehearsed again, checks the kernel itself."""
    workspace.write_spec(train={"attention": "xformers"})
    result = workspace.cli("rehearse", str(workspace.spec_path))
    said = " ".join((result.stdout + result.stderr).split())
    assert result.exit_code == 0, said
    assert "note: attention kernel xformers (train, resume): not installed here (it needs CUDA);" in said
    assert (
        "the kernel itself is checked by the GPU box's rehearsal, which fails if it is not installed there"
        in said
    )
    built = stages.build(load_spec(workspace.spec_path), str(workspace.python))
    assert remembered.passed_before(built) is not None
    stamp = remembered.stamp_path(built.spec).read_text(encoding="utf-8")
    assert '"attention kernel xformers"' in stamp  # not rehearsed here: another host rehearses again


def test_a_missing_package_fails_on_the_training_box(workspace: Workspace) -> None:
    workspace.write_spec(train={"optimizer": {"type": "prodigyopt.Prodigy"}})
    said = _fails_on_the_training_box(workspace, NO_PACKAGE)
    line = _line(said, "rehearsal failed at stage train ")
    assert line.endswith(
        ": train.optimizer.type: prodigyopt.Prodigy needs the package prodigyopt, which this musubi-tuner"
        " Python (bin/musubi-python) lacks: the real run would stop the same way — install prodigyopt"
        " there, or change train.optimizer.type"
    )


def test_a_missing_package_on_a_cpu_machine_is_not_rehearsed_here(workspace: Workspace) -> None:
    workspace.write_spec(train={"optimizer": {"type": "prodigyopt.Prodigy"}})
    result = workspace.cli("rehearse", str(workspace.spec_path), env={"FAKE_REHEARSAL_FAIL": NO_PACKAGE})
    said = " ".join((result.stdout + result.stderr).split())
    assert result.exit_code == 0, said
    assert (
        "-- train: not rehearsed: the package prodigyopt is not installed in this musubi-tuner Python"
        " (bin/musubi-python); the GPU box's rehearsal checks it there, and fails if it is missing"
        " there too" in said
    )


def test_a_missing_kernel_of_generate_names_the_infer_setting(workspace: Workspace) -> None:
    workspace.write_spec(infer={"attention": "flash"})
    error = "generate:TypeError: 'NoneType' object is not callable"
    said = _fails_on_the_training_box(workspace, error)
    assert _line(said, "rehearsal failed at stage generate ").endswith(
        ": infer.attention: flash needs the package flash_attn, which this musubi-tuner Python"
        " (bin/musubi-python) lacks: the real run would stop the same way — install flash_attn there,"
        " or choose infer.attention: sdpa"
    )
