"""When a rehearsal stage counts as hung: no output from the worker and next to no CPU used by its
process tree for `idle` seconds, or, whatever it does, more than `limit` seconds in the stage.

Why two rules: a stage that waits forever (a data loader whose worker died, a lock, a queue nobody
fills) prints nothing and uses no CPU, and is stopped after `idle` seconds instead of the whole limit.
A stage that computes without printing (torch.compile's first build on a GPU box, ~70 s, much of it in
inductor's compile worker processes) uses CPU and is left alone; a loop that spins forever uses CPU
too, and only the hard limit stops it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable

STAGE_IDLE = 30.0
"""Seconds without a line from the worker and without CPU use after which a stage counts as hung.
The rehearsal's stages print or compute all the time (the slowest step, the first training step's
compile on a GPU box, keeps inductor's workers busy); waiting on nothing for this long does not end."""
BUSY_SHARE = 0.02
"""CPU a stage must use to count as working, as a share of one core over the idle window: a blocked
process tree uses next to none (a thread that wakes now and then), a computing one most of a core."""

CpuProbe = Callable[[], float | None]
"""CPU seconds used so far by the worker and its descendants, or None when it cannot be told."""


class Watchdog:
    """The hang rules for one stage at a time; `verdict()` is asked every second or so by the
    rehearsal's watcher, which stops the worker when it answers. The clock and the CPU probe are
    given, so the rules are tested without waiting."""

    def __init__(
        self,
        limit: float,
        idle: float,
        cpu: CpuProbe,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.idle = limit, idle
        self.cpu, self.clock = cpu, clock
        self._lock = threading.Lock()
        self._started: float | None = None
        self._output = 0.0
        self._samples: deque[tuple[float, float]] = deque()

    def start(self) -> None:
        """A stage started: its time and its idle window begin now."""
        with self._lock:
            self._started = self._output = self.clock()
            self._samples.clear()
            used = self.cpu()
            if used is not None:
                self._samples.append((self._started, used))

    def stop(self) -> None:
        """The stage ended: nothing to judge until the next starts."""
        with self._lock:
            self._started = None

    def output(self) -> None:
        """The worker wrote a line: it is not stuck."""
        with self._lock:
            self._output = self.clock()

    def verdict(self) -> str | None:
        """Why the current stage counts as hung, or None while it does not."""
        with self._lock:
            if self._started is None:
                return None
            now = self.clock()
            spent = now - self._started
            used = self.cpu()
            samples = self._samples
            if used is not None:
                samples.append((now, used))
                # the window's start: the newest sample at least `idle` old
                while len(samples) > 1 and samples[1][0] <= now - self.idle:
                    samples.popleft()
            if spent >= self.limit:
                if used is not None and samples and self._busy(now, used):
                    # a loop that never ends and a machine too slow for the stage look the same here
                    return (
                        f"no result after {self.limit:.0f} s: it hangs, or is too slow for this machine"
                        " (its processes were still computing when stopped) — rehearse again with a"
                        " larger --time-limit to tell"
                    )
                return f"no result after {self.limit:.0f} s: it hangs (stopped)"
            if used is None:
                return None  # CPU use unknown here: only the hard limit
            since = samples[0][0]
            if now - self._output < self.idle or now - since < self.idle:
                return None
            if self._busy(now, used):
                return None
            return (
                f"no output and no CPU use for {self.idle:g} s: it hangs (stopped {spent:.0f} s in;"
                " a stage that computes is given up to its time limit)"
            )

    def _busy(self, now: float, used: float) -> bool:
        """The process tree used CPU over the current window (the lock held)."""
        since, before = self._samples[0]
        return now > since and used - before >= BUSY_SHARE * (now - since)


def tree_cpu(pid: int) -> CpuProbe:
    """The CPU probe of the process `pid` and its descendants (a launcher's children, inductor's
    compile workers): user and system time, with that of the children they have already reaped."""
    import psutil  # here: only a running rehearsal reads process times

    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return lambda: None

    def used() -> float | None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            return None
        total = 0.0
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
        return total

    return used
