"""The run lock: one training per output name, a stale lock taken over by exactly one process."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path

import pytest

from fplora.problems import UserError
from fplora.runs.checkpoints import run_files
from fplora.runs.lock import holder, locked

TAKERS = 6


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped): what a stale lock holds."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _take(path: str, start: Barrier, release: Event, results: multiprocessing.Queue[str]) -> None:
    """One racer: wait for all, try the lock, report, and hold it until the parent has counted."""
    start.wait()
    try:
        with locked(Path(path)):
            results.put("won")
            release.wait(30)
    except UserError:
        results.put("refused")


def test_two_takers_of_a_stale_lock_never_both_hold_it(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    for _ in range(5):  # the race is a matter of timing: give it several chances to show
        path = tmp_path / "run.lock"
        path.write_text(f"{_dead_pid()}\n")
        start, release, results = context.Barrier(TAKERS), context.Event(), context.Queue()
        takers = [
            context.Process(target=_take, args=(str(path), start, release, results)) for _ in range(TAKERS)
        ]
        for taker in takers:
            taker.start()
        outcomes = sorted(results.get(timeout=30) for _ in takers)
        release.set()
        for taker in takers:
            taker.join(timeout=30)
        assert outcomes == ["refused"] * (TAKERS - 1) + ["won"]
        assert not path.exists()  # the winner released it


def test_a_live_holder_refuses_and_is_named(tmp_path: Path) -> None:
    path = tmp_path / "run.lock"
    with locked(path) as lock:
        assert holder(path) == os.getpid()
        with pytest.raises(UserError, match=f"pid {os.getpid()}"), locked(path):
            pass
        lock.add(12345678)  # the child's pid is recorded after ours
        assert path.read_text().split() == [str(os.getpid()), "12345678"]
    assert not path.exists() and holder(path) is None


def test_a_live_child_keeps_the_lock_after_fplora_is_gone(tmp_path: Path) -> None:
    """fplora killed, musubi-tuner still training: the lock is still taken."""
    path = tmp_path / "run.lock"
    path.write_text(f"{_dead_pid()}\n{os.getpid()}\n")
    assert holder(path) == os.getpid()
    with pytest.raises(UserError, match="another training"), locked(path):
        pass


def test_the_guard_file_is_not_read_as_a_file_of_the_run(tmp_path: Path) -> None:
    with locked(tmp_path / "demo-v1.lock"):
        pass
    (tmp_path / "demo-v1.log").write_text("")
    assert [p.name for p in run_files(tmp_path, "demo-v1")] == ["demo-v1.log"]
