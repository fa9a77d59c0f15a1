"""benchmarks/rehearse_rows.py, the rehearsal matrices' one runner: how it reads `fplora rehearse`'s
output into a verdict and compares it with the expected one. Lines as the rehearsal printed them on
the CPU musubi-tuner Python (benchmarks/results/rehearse-matrix-*.json's rows)."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import ModuleType

import pytest
from benchmark_modules import benchmark_module

COMPILE_NOTE = """\
note: torch.compile (resume, train): not rehearsed here (on a CPU it would build C++ kernels for minutes, not the GPU's)
rehearsal passed in 34 s
"""
MACHINE = """\
  --   train: not rehearsed: the package wandb is not installed in this musubi-tuner Python (/x/python); not a mistake in the spec if the machine that trains has it
  --   resume: not rehearsed: it needs train, which could not run here
rehearsal passed in 6 s; not rehearsed on this machine: train, resume (their code paths need what it lacks; see above)
"""
FAILED = """\
rehearsal failed at stage generate (generate, 1 of 1 infer prompts (one per setting)): wrote 0 of 1 latents (exit code 0 notwithstanding)
  musubi-tuner: NotImplementedError: Sampler dpm++ is not supported.
rehearsal failed at stage sweep (one sweep-worker cell): exit 1
  musubi-tuner: fplora-sweep-event {"event": "finished", "done": 0, "failed": 1}
"""
SUMMARY_ONLY = """\
rehearsal failed at stage cache-latents (latent caches): wrote 0 of 2 latent caches (exit code 0 notwithstanding)
rehearsal failed at stage train (2 training steps, sampling at first): exit 1
  musubi-tuner: ValueError: No training items found in the dataset.
"""


@pytest.fixture(scope="module")
def rows() -> ModuleType:
    return benchmark_module("rehearse_rows")


def test_a_note_that_says_not_rehearsed_is_no_machine_verdict(rows: ModuleType) -> None:
    assert rows.verdict(0, COMPILE_NOTE) == "pass"
    assert rows.verdict(0, MACHINE) == "machine"
    assert rows.first_error(MACHINE).startswith("the package wandb is not installed")


def test_a_failure_names_its_first_stage_and_musubi_tuners_own_error(rows: ModuleType) -> None:
    assert rows.verdict(1, FAILED) == "fail:generate"
    assert rows.first_error(FAILED) == "NotImplementedError: Sampler dpm++ is not supported."
    # no error of musubi-tuner's in the first failed stage: its summary, not a later stage's error
    assert rows.first_error(SUMMARY_ONLY).startswith("wrote 0 of 2 latent caches")
    assert rows.verdict(1, "Traceback ...") == "fail"


@pytest.mark.parametrize(
    ("got", "expected", "match"),
    [
        ("fail:train", "fail", True),  # the training side expects a failure at any stage
        ("refused", "fail", True),  # check refusing it is caught earlier still
        ("refused", "fail:generate", True),
        ("fail:train", "fail:generate", False),  # blamed on the wrong stage
        ("refused", "pass", False),
        ("fail:train", "machine", False),
        ("machine", "machine", True),
    ],
)
def test_verdicts_match_the_expected_one(rows: ModuleType, got: str, expected: str, match: bool) -> None:
    assert rows.matches(got, expected) is match


def test_both_matrices_use_the_one_runner_with_unique_row_ids() -> None:
    training = benchmark_module("rehearse_matrix")
    data = benchmark_module("rehearse_matrix_data")
    for matrix, count in ((training, 107), (data, 101)):
        ids = [row.id for row in matrix.ROWS]
        assert len(ids) == len(set(ids)) == count
        assert all(
            r.expected in ("pass", "fail", "machine") or r.expected.startswith("fail:") for r in matrix.ROWS
        )


def test_a_before_run_records_its_own_check_beside_the_current_one(
    rows: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--before` (an older fplora's verdicts) once wrote its check over the current run's: a row that
    passes now showed `refused` in the check column."""
    monkeypatch.setattr(rows, "_fplora", lambda args, cwd, env: (1, "error: refused by the old check", 0.0))
    configs = tmp_path / "configs"
    configs.mkdir()
    row = rows.Row("r", "x: 1", "pass", "")
    options = argparse.Namespace(before=True, state=tmp_path / "state.json", time_limit=1)
    recorded = rows._run(row, "extends: example.yaml\nx: 1\n", options, configs, {})
    assert (recorded["before"], recorded["before_check"]) == ("refused", "refused")
    assert "check" not in recorded
