"""RunPod: stop the pod when training ends (`runpodctl stop pod $RUNPOD_POD_ID`), as the memo does
after `&&`, so an unattended rented GPU stops costing money."""

from __future__ import annotations

import os
import shutil

from fplora import process
from fplora.jobs import Job


def stop_pod(job: Job, when: str, exit_code: int) -> None:
    """Stop this RunPod pod when training ends, as `when` (never, success, always) says."""
    if when == "never" or (when == "success" and exit_code != 0):
        return
    pod = os.environ.get("RUNPOD_POD_ID")
    runpodctl = shutil.which("runpodctl")
    if not pod or not runpodctl:
        job.console.print("[yellow]not on RunPod (no RUNPOD_POD_ID or runpodctl): not stopping a pod[/]")
        return
    job.show([runpodctl, "stop", "pod", pod])
    process.run([runpodctl, "stop", "pod", pod])


def stop_pod_after(job: Job, when: str | None, exit_code: int) -> None:
    """`--stop-pod` for a command that ended before training started (`train --cache` whose caching
    failed): an unattended pod set to stop `always` must not keep running."""
    stop_pod(job, when or job.plan.spec.runpod.stop_pod, exit_code)
