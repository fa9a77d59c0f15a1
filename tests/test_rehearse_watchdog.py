"""A stage hangs when it waits on nothing: no line from the worker and next to no CPU used by its
process tree for the idle limit, or, whatever it does, past the hard limit. The rules run on a given
clock and CPU probe (no waiting here); the fake rehearsal worker shows them stop a silent, idle stage
long before the hard limit and leave a silent, computing one alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from fakes.fixtures import Workspace

from fplora.jobs.rehearse.watchdog import Watchdog, tree_cpu

pytest_plugins = ["fakes.fixtures"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _run(dog: Watchdog, clock: Clock, seconds: int, cpu: list[float], per_second: float) -> str | None:
    """`seconds` one-second polls, the stage using `per_second` CPU seconds each: the first verdict."""
    for _ in range(seconds):
        clock.now += 1
        cpu[0] += per_second
        if (why := dog.verdict()) is not None:
            return why
    return None


def test_a_stage_that_waits_on_nothing_hangs_after_the_idle_limit_not_the_hard_one() -> None:
    clock, cpu = Clock(), [5.0]
    dog = Watchdog(300, 30, lambda: cpu[0], clock=clock)
    dog.start()
    assert _run(dog, clock, 29, cpu, 0.0) is None
    why = _run(dog, clock, 5, cpu, 0.0)
    assert why is not None and why.startswith("no output and no CPU use for 30 s: it hangs (stopped 30 s in;")


def test_a_silent_stage_that_computes_runs_until_the_hard_limit() -> None:
    """torch.compile's first build: a minute and more without a line, its CPU busy."""
    clock, cpu = Clock(), [0.0]
    dog = Watchdog(300, 30, lambda: cpu[0], clock=clock)
    dog.start()
    assert _run(dog, clock, 299, cpu, 0.9) is None
    # still computing at the limit: a loop that never ends, or a CPU too slow for the spec's sizes
    # (a fresh project's 512x768 at batch 16 trains for many minutes on a laptop's stand-ins)
    assert _run(dog, clock, 1, cpu, 0.9) == (
        "no result after 300 s: it hangs, or is too slow for this machine (its processes were still"
        " computing when stopped) — rehearse again with a larger --time-limit to tell"
    )


def test_output_keeps_an_idle_stage_alive_and_a_trickle_of_cpu_does_not() -> None:
    clock, cpu = Clock(), [0.0]
    dog = Watchdog(300, 30, lambda: cpu[0], clock=clock)
    dog.start()
    for _ in range(25):  # a progress bar redrawn every 10 s, nothing computed in between
        assert _run(dog, clock, 10, cpu, 0.0) is None
        dog.output()
    # a thread that wakes now and then (a data loader's status check) is not work
    assert (_run(dog, clock, 40, cpu, 0.001) or "").startswith("no output and no CPU use for 30 s")


def test_a_new_stage_starts_its_own_clock_and_unknown_cpu_leaves_only_the_hard_limit() -> None:
    clock = Clock()
    dog = Watchdog(300, 30, lambda: None, clock=clock)
    dog.start()
    clock.now += 250
    dog.stop()
    assert dog.verdict() is None  # between stages: nothing to judge
    dog.start()
    assert _run(dog, clock, 299, [0.0], 0.0) is None  # no CPU figure: silence alone proves nothing
    assert _run(dog, clock, 1, [0.0], 0.0) == "no result after 300 s: it hangs (stopped)"


BURNER = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time\\nt = time.process_time() + 0.3\\nwhile time.process_time() < t: pass\\nprint('burnt', flush=True)\\ntime.sleep(60)"], stdout=sys.stdout)
time.sleep(60)
"""


def test_the_cpu_probe_counts_the_workers_descendants() -> None:
    """A launcher's children (inductor's compile workers) compute for the stage: their CPU counts."""
    proc = subprocess.Popen(
        [sys.executable, "-c", BURNER], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "burnt"
        used = tree_cpu(proc.pid)()
        assert used is not None and used >= 0.25  # the kernel counts in 10 ms ticks, a little short
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the child too
        proc.wait()
    assert tree_cpu(proc.pid)() is None  # gone: unknown, not zero


def test_a_hung_stage_is_stopped_at_the_idle_limit(workspace: Workspace) -> None:
    """The fake worker waits an hour at training, silent and idle: stopped after the idle limit (a
    hard limit of an hour would have let this test run for one)."""
    result = workspace.cli(
        "rehearse",
        str(workspace.spec_path),
        "--time-limit",
        "3600",
        "--idle-limit",
        "0.5",
        env={"FAKE_REHEARSAL_HANG": "train"},
    )
    said = result.stdout + result.stderr
    assert result.exit_code == 1, said
    assert (
        "rehearsal failed at stage train (2 training steps, sampling at first): no output and no CPU use"
        " for 0.5 s: it hangs" in said
    )
    assert "ok   cache-latents" in said
    assert "--   generate: not run: train failed" in said


def test_a_worker_killed_in_a_stage_is_said_not_taken_for_a_stage_never_run(workspace: Workspace) -> None:
    """The out-of-memory killer's SIGKILL in the middle of training (a 512x768 spec at batch 16 on a
    laptop): training ran and died; it was not "not run"."""
    result = workspace.cli("rehearse", str(workspace.spec_path), env={"FAKE_REHEARSAL_KILLED": "train"})
    said = result.stdout + result.stderr
    assert result.exit_code == 1, said
    assert (
        "rehearsal failed at stage train (2 training steps, sampling at first): the rehearsal worker was"
        " killed by SIGKILL in the middle of it — out of memory?" in said
    )
    assert "ok   cache-latents" in said
    assert "--   generate: not run: train failed" in said
    assert "Traceback" not in said


def test_a_silent_stage_that_computes_is_not_a_hang(workspace: Workspace) -> None:
    """The fake worker computes 1.5 CPU seconds at training without a line, past an idle limit of
    0.5 s: it works, so it is left to finish."""
    result = workspace.cli(
        "rehearse",
        str(workspace.spec_path),
        "--idle-limit",
        "0.5",
        env={"FAKE_REHEARSAL_BUSY": "train:1.5"},
    )
    said = result.stdout + result.stderr
    assert result.exit_code == 0, said
    assert "ok   train" in said
