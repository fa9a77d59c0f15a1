"""Signals and output plumbing: Ctrl-C reaches musubi-tuner through fplora, and is recorded.

The child runs in its own session, so a terminal's Ctrl-C reaches only fplora, which must forward it
(to the whole group: accelerate's workers too), wait, record the segment as interrupted and exit
with the child's code. These run `python -m fplora` as a real process, since signals need one.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakes.fixtures import Workspace, process_gone

from fplora import process

pytest_plugins = ["fakes.fixtures"]

# the bar of step 1 with its loss: what fplora parses as "step 1 done"
FIRST_STEP = re.compile(rb"\| 1/\d+ \[[^\]]*avr_loss=")
# step 2 started: step 1's checkpoint and state are on disk
SECOND_STEP = re.compile(rb"\| 2/\d+ \[")


STEPS = 10  # at 0.25 s a step, a slow CI machine still signals long before training ends


def start_training(workspace: Workspace) -> subprocess.Popen[bytes]:
    workspace.write_spec(train={"max_train_steps": STEPS})
    env = {**os.environ, "FAKE_TRAIN_SLEEP": "0.25"}
    return subprocess.Popen(
        [sys.executable, "-m", "fplora", "train", str(workspace.spec_path)],
        cwd=workspace.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_for(proc: subprocess.Popen[bytes], pattern: re.Pattern[bytes], timeout: float = 20) -> bytes:
    """Read fplora's stdout (the child's output, teed) until `pattern` shows up."""
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + timeout
    while not pattern.search(seen):
        left = deadline - time.monotonic()
        assert left > 0, f"timed out; output so far: {seen!r}"
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            assert chunk, f"fplora ended early: {seen!r}"
            seen += chunk
    return seen


def wait_for_log(log: Path, text: str, timeout: float = 20) -> None:
    """Poll the run's log until `text` shows up (a condition, not a guess at how long it takes)."""
    deadline = time.monotonic() + timeout
    while not (log.is_file() and text in log.read_text(encoding="utf-8", errors="replace")):
        assert time.monotonic() < deadline, f"timed out waiting for {text!r} in {log}"
        time.sleep(0.02)


def interrupt(proc: subprocess.Popen[bytes], at: re.Pattern[bytes], signum: int = signal.SIGINT) -> str:
    """Send `signum` to fplora once its output shows `at`; its stderr once it has ended (killed if it
    does not end, so that no test leaves a training behind)."""
    try:
        wait_for(proc, at)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    return stderr.decode()


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_is_forwarded_and_the_segment_marked_interrupted(
    cached: Workspace, signum: int, code: int
) -> None:
    proc = start_training(cached)
    stderr = interrupt(proc, FIRST_STEP, signum)
    assert proc.returncode == code, stderr
    if signum == signal.SIGINT:  # the fake handles Ctrl-C like Python: note it, exit 130
        (event,) = cached.events("signal")
        assert event["signum"] == signal.SIGINT
    (segment,) = cached.manifest()["segments"]
    assert segment["interrupted"] is True and segment["exit_code"] == code
    assert segment["last_step"] is not None and segment["last_step"] < STEPS
    assert "training interrupted" in stderr
    assert not (cached.output_dir / "fake-v1.safetensors").exists()  # nothing written after the signal
    assert not (cached.output_dir / "fake-v1.lock").exists()


def test_a_ctrl_c_before_the_first_save_says_to_start_over_not_to_fix_a_cause(cached: Workspace) -> None:
    """Stopped by hand: "once the cause is fixed" read as if something had gone wrong."""
    cached.write_spec(train={"save_every_n_steps": 5})
    proc = start_training(cached)
    stderr = interrupt(proc, FIRST_STEP)
    assert proc.returncode == 130, stderr
    assert stderr.splitlines()[-1] == (
        "stopped before the first save (train.save_every_n_steps 5): nothing to resume — run"
        " `fplora train configs/v1.yaml` again to start over"
    )


def test_a_closed_stdout_does_not_stop_training(cached: Workspace) -> None:
    """`fplora train | tee log`: Ctrl-C kills tee too. fplora must keep logging, forward the signal
    and record the segment, not die on the broken pipe (the child would follow it, unrecorded)."""
    proc = start_training(cached)
    try:
        wait_for(proc, FIRST_STEP)
        assert proc.stdout is not None
        proc.stdout.close()
        # fplora echoes a chunk before logging it: step 2 in the log was drawn into the broken pipe
        wait_for_log(cached.output_dir / "fake-v1.log", f"| 2/{STEPS} [")
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr.decode()
    assert len(cached.events("signal")) == 1
    (segment,) = cached.manifest()["segments"]
    assert segment["interrupted"] is True and segment["exit_code"] == 130
    assert segment["last_step"] is not None and segment["last_step"] >= 2
    assert f"| 2/{STEPS} [" in (cached.output_dir / "fake-v1.log").read_text(encoding="utf-8")


def test_an_interrupted_run_resumes_from_its_last_state(cached: Workspace) -> None:
    interrupt(start_training(cached), SECOND_STEP)
    states = sorted(cached.output_dir.glob("fake-v1-step*-state"))
    newest = int(states[-1].name.split("-step")[1][:8])
    result = cached.cli("train", str(cached.spec_path), "--resume", "latest")
    assert result.exit_code == 0, result.output
    first, second = cached.manifest()["segments"]
    # the bar may show a step whose state was not saved yet: resume from the newest state
    assert 1 <= newest <= first["last_step"]
    assert second["step_offset"] == newest
    assert second["step_offset"] + second["last_step"] == STEPS


def test_run_tees_output_splits_redraws_and_maps_signals(tmp_path: Path) -> None:
    code = (
        "import os, signal, sys\n"
        "sys.stdout.write('a\\rb\\nc'); sys.stdout.flush()\n"
        "sys.stderr.write('\\nerr\\n'); sys.stderr.flush()\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
    )
    lines: list[str] = []
    log = tmp_path / "run.log"
    echo = tmp_path / "echo"
    with echo.open("wb") as handle:
        result = process.run([sys.executable, "-c", code], log=log, on_line=lines.append, echo=handle)
    assert result.returncode == 128 + signal.SIGTERM and result.interrupted is False
    assert lines == ["a", "b", "c", "err"]
    assert log.read_bytes() == echo.read_bytes() == b"a\rb\nc\nerr\n"


def test_a_failing_reader_stops_the_child_and_its_group_before_raising(tmp_path: Path) -> None:
    """The log's disk is full (/dev/full): fplora's side fails, so the child must not train on
    unwatched; its whole group (accelerate's workers) is stopped before the error goes on."""
    pids = tmp_path / "pids"
    code = (
        "import subprocess, sys, time\n"
        "worker = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pids)!r}, 'w').write(f'{{__import__(\"os\").getpid()}} {{worker.pid}}')\n"
        "while True:\n"
        "    print('step', flush=True); time.sleep(0.05)\n"
    )
    with pytest.raises(OSError) as raised:
        process.run([sys.executable, "-c", code], log=Path("/dev/full"), echo=None)
    assert raised.value.errno == 28  # ENOSPC
    leader, worker = (int(p) for p in pids.read_text().split())
    assert process_gone(leader)
    deadline = time.monotonic() + 5  # SIGKILL is sent before returning; the kernel may lag a moment
    while not process_gone(worker) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process_gone(worker)


def test_a_started_child_starts_up_first_and_is_followed_once_told(tmp_path: Path) -> None:
    """`start` begins a child ahead of its work (the rehearsal worker imports torch while fplora
    checks the spec): what it writes meanwhile waits in its pipe, `tell` gives it its one line, and
    `run` follows it from its first line as any child; `stop` then has nothing left to stop."""
    code = "import sys\nprint('up', flush=True)\nprint('given ' + sys.stdin.readline().strip(), flush=True)\n"
    started = process.start([sys.executable, "-c", code])
    started.tell("plan.json")
    lines: list[str] = []
    log = tmp_path / "run.log"
    with (tmp_path / "echo").open("wb") as echo:
        result = process.run(started, log=log, on_line=lines.append, echo=echo)
    assert (result.returncode, lines) == (0, ["up", "given plan.json"])
    assert log.read_bytes() == b"up\ngiven plan.json\n"
    started.stop()
    assert started.proc.returncode == 0


def test_a_started_child_not_wanted_is_stopped_with_its_group(tmp_path: Path) -> None:
    """fplora found the spec wrong before it had a plan for the child: the child, still waiting for
    its line, is stopped with what it started, and reaped."""
    pids = tmp_path / "pids"
    code = (
        "import os, subprocess, sys, time\n"
        "worker = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{worker.pid}}')\n"
        "sys.stdin.readline()\n"
        "time.sleep(60)\n"
    )
    started = process.start([sys.executable, "-c", code])
    deadline = time.monotonic() + 20
    while not (pids.is_file() and pids.read_text()) and time.monotonic() < deadline:
        time.sleep(0.01)
    started.stop()
    leader, worker = (int(p) for p in pids.read_text().split())
    assert started.proc.returncode is not None and process_gone(leader)
    deadline = time.monotonic() + 5
    while not process_gone(worker) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process_gone(worker)
