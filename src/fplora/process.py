"""The one place fplora starts subprocesses, and asks whether a process still runs.

Children run from argument lists (never through a shell), in their own process group so that
Ctrl-C reaches fplora first; fplora forwards it to the whole group (accelerate's workers too),
waits, and returns the child's exit code. Output streams to the terminal and into a log file.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import BinaryIO

_LINE_SPLIT = re.compile(rb"[\r\n]")
# how long a child stopped because fplora itself failed gets to exit cleanly before it is killed
_STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class Result:
    returncode: int
    interrupted: bool  # a signal (Ctrl-C, SIGTERM) was forwarded to the child


def _exit_code(returncode: int) -> int:
    """Shell convention: a child killed by signal N exits 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


@dataclass(frozen=True)
class Started:
    """A child that `start` began ahead of the work it is for: it starts up (imports, a device)
    while fplora prepares that work, then reads one line on its stdin (`tell`) and is followed by
    `run` as any child. Its output waits in its pipe meanwhile. `stop` ends it when the work is not
    wanted after all; a child whose parent dies reads end-of-file there, and can leave."""

    proc: subprocess.Popen[bytes]

    def tell(self, line: str) -> None:
        """Its one line of input, then end-of-file (a child that already left is `run`'s to report)."""
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):  # BrokenPipeError included
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.close()

    def stop(self) -> None:
        """End it and its group and reap it, unless `run` already followed it to its end."""
        if self.proc.returncode is None:
            if self.proc.stdin is not None:
                with contextlib.suppress(OSError):
                    self.proc.stdin.close()
            _stop(self.proc)


def _popen(
    argv: Sequence[str], env: Mapping[str, str] | None, cwd: Path | None, stdin: int | None
) -> Started:
    return Started(
        subprocess.Popen(
            list(argv),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
            cwd=cwd,
            start_new_session=True,
        )
    )


def start(argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Started:
    """Start `argv` now, with a pipe for its input, to be followed later by `run(started, ...)`."""
    return _popen(argv, env, cwd, subprocess.PIPE)


def run(
    argv: Sequence[str] | Started,
    *,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    cwd: Path | None = None,
    on_line: Callable[[str], None] | None = None,
    echo: BinaryIO | None = None,
    on_start: Callable[[int], None] | None = None,
) -> Result:
    """Run `argv`, tee its output (stdout and stderr together) to `echo` and `log`.

    `on_line` sees each line, split on both `\\n` and `\\r` (tqdm redraws with `\\r`). A child
    `start` began (`argv` a `Started`; `env` and `cwd` were given there) is followed the same way,
    from the first line it wrote.
    """
    sink: BinaryIO | None = echo if echo is not None else sys.stdout.buffer
    log_handle = log.open("ab") if log else None
    try:
        proc = argv.proc if isinstance(argv, Started) else _popen(argv, env, cwd, None).proc
    except OSError:
        if log_handle:
            log_handle.close()
        raise
    if on_start:
        on_start(proc.pid)
    interrupted = False
    signals_seen = 0

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal interrupted, signals_seen
        interrupted = True
        signals_seen += 1
        # first Ctrl-C: pass it on and let the child stop cleanly; a third one kills it
        sig = signum if signals_seen < 3 else signal.SIGKILL
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        assert proc.stdout is not None
        _pump(proc.stdout.fileno(), sink, log_handle, on_line)
        returncode = proc.wait()
    except BaseException:
        # fplora's own side failed (the log's disk full, a callback): a child left running would
        # train on unrecorded, its lock released under it. Stop it before the error goes on.
        _stop(proc)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if log_handle:
            log_handle.close()
    return Result(_exit_code(returncode), interrupted)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the child's whole group and wait for it: SIGTERM, then SIGKILL after a grace period.

    Our end of its output pipe is closed first, so a child blocked writing to it is not left
    waiting for a reader that is gone."""
    if proc.stdout is not None:
        with contextlib.suppress(OSError):
            proc.stdout.close()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=_STOP_GRACE_S)
    # the group may outlive its leader (accelerate's workers): kill what is left, then reap
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _pump(
    fd: int, sink: BinaryIO | None, log: BinaryIO | None, on_line: Callable[[str], None] | None
) -> None:
    """Copy the child's output to the terminal and the log as it comes, and hand each line to
    `on_line`, until the child closes its end."""
    pending = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except InterruptedError:
            continue
        if not chunk:
            break
        if sink is not None:
            try:
                sink.write(chunk)
                sink.flush()
            except OSError:  # `| tee` killed by the same Ctrl-C, a closed terminal: keep the log
                _silence(sink)
                sink = None
        if log:
            log.write(chunk)
            log.flush()
        if on_line:
            pending += chunk
            *lines, pending = _LINE_SPLIT.split(pending)
            for line in lines:
                if line:
                    on_line(line.decode("utf-8", "replace"))
    if on_line and pending:
        on_line(pending.decode("utf-8", "replace"))


def _silence(stream: BinaryIO) -> None:
    """Point a broken stream's descriptor at /dev/null, so that later writes and the flush at exit
    (of data still buffered) do not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, io.UnsupportedOperation):
        pass


def capture(argv: Sequence[str], *, timeout: float = 60) -> tuple[int, str]:
    """Run a short helper command and return (exit code, combined output)."""
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return done.returncode, (done.stdout + done.stderr)


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a run's lock holder, a cache run's staging folder): signal 0
    asks without sending anything. Another user's process is alive, and not ours to judge stale."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
