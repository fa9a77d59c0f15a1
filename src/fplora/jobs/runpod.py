"""RunPod: stop the pod when training ends (`runpodctl stop pod $RUNPOD_POD_ID`), as the memo does
after `&&`, so an unattended rented GPU stops costing money.

The stop runs in a `finally` around the whole verb (`stopping_pod`): however `fplora train` ends
(a refusal, a failed training, a full disk, a bug of fplora's) an `always` pod stops."""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape

from fplora import process
from fplora.spec.models import Spec

WHEN = ("success", "always", "never")


@dataclass
class PodStop:
    """What decides the stop at the verb's end: `when` (the command line's, else the spec's once
    loaded, else never) and the verb's exit code (1 until the verb sets it: an error is a failure)."""

    when: str | None
    dry_run: bool
    console: Console
    code: int = 1

    def follow(self, spec: Spec) -> None:
        """Take the spec's `runpod.stop_pod` unless the command line gave one."""
        if self.when is None:
            self.when = spec.runpod.stop_pod


@contextmanager
def stopping_pod(when: str | None, *, dry_run: bool, console: Console) -> Iterator[PodStop]:
    """Run the verb's body, then stop the pod as asked, whatever the body raised (never for a dry run)."""
    stop = PodStop(when, dry_run, console)
    try:
        yield stop
    finally:
        if not dry_run:
            stop_pod(console, stop.when or "never", stop.code)


def stop_pod(console: Console, when: str, exit_code: int) -> None:
    """Stop this RunPod pod when training ends, as `when` (never, success, always) says."""
    if when == "never" or (when == "success" and exit_code != 0):
        return
    pod = os.environ.get("RUNPOD_POD_ID")
    runpodctl = shutil.which("runpodctl")
    if not pod or not runpodctl:
        console.print("[yellow]not on RunPod (no RUNPOD_POD_ID or runpodctl): not stopping a pod[/]")
        return
    argv = [runpodctl, "stop", "pod", pod]
    console.print(f"[bold]$[/] {escape(shlex.join(argv))}", soft_wrap=True)
    process.run(argv)
