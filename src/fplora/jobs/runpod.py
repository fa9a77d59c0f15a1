"""RunPod: stop the pod when training ends (`runpodctl stop pod $RUNPOD_POD_ID`), as the memo does
after `&&`, so an unattended rented GPU stops costing money."""

from __future__ import annotations

import os
import shutil

from fplora import process
from fplora.jobs.context import Job


def stop_pod(job: Job, when: str, exit_code: int) -> None:
    """Stop this RunPod pod when training ends, as `when` (never, success, always) says."""
    if when == "never" or (when == "success" and exit_code != 0):
        return
    pod = os.environ.get("RUNPOD_POD_ID")
    runpodctl = shutil.which("runpodctl")
    if not pod or not runpodctl:
        job.say("not on RunPod (no RUNPOD_POD_ID or runpodctl): not stopping a pod", "yellow")
        return
    job.show([runpodctl, "stop", "pod", pod])
    process.run([runpodctl, "stop", "pod", pod])
