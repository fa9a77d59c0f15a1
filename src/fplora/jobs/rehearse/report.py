"""`fplora rehearse` and the gate before `train`/`cache`/`infer`/`eval`: check the spec, skip an
unchanged rehearsal, run it, and print the verdict (0 passed, 1 failed)."""

from __future__ import annotations

import os
from collections.abc import Callable

from rich.markup import escape

from fplora import plan as plans
from fplora.check import check_spec
from fplora.datasets.records import RecordCache
from fplora.jobs.context import Job
from fplora.jobs.rehearse.blame import describe_failure
from fplora.jobs.rehearse.remembered import passed_before, remember_pass, stamp_path
from fplora.jobs.rehearse.stages import Rehearsal, build
from fplora.jobs.rehearse.watch import STAGE_LIMIT, run, start_worker
from fplora.jobs.rehearse.watchdog import STAGE_IDLE
from fplora.plan import Plan
from fplora.presets.detect import detect
from fplora.problems import UserError, display_path
from fplora.process import Started
from fplora.runtime import ensure_musubi, python_for
from fplora.spec.models import Spec
from fplora.state import project_state

SKIP_ENV = "FPLORA_REHEARSE"
"""`FPLORA_REHEARSE=0`: no rehearsal before `train`/`cache`/`infer`/`eval`, as `--no-rehearse` on every
command (a scripted pipeline that drives its own stand-in musubi-tuner, like the GPU harness's local mode)."""


def has_gpu(spec: Spec, python: str) -> bool:
    """Whether this machine rehearses on a GPU, which decides the rehearsal's image sizes: nvidia-smi,
    else the musubi-tuner Python's torch, asked once and remembered in `.fplora/` as `gpu: auto`
    remembers it (so that a repeated rehearsal of an unchanged spec starts no process)."""
    return detect(python, project_state(spec.path)) is not None


def rehearse(
    spec: Spec,
    python: str,
    *,
    say: Callable[[str], None],
    force: bool = False,
    limit: float = STAGE_LIMIT,
    idle: float = STAGE_IDLE,
    real: Plan | None = None,
    quiet_unchanged: bool = False,
    built: Rehearsal | None = None,
    worker: Started | None = None,
) -> int:
    """`fplora rehearse`: build, skip when this exact rehearsal passed before (unless `force`), run,
    print the verdict. 0 when it passed, 1 when a stage failed. `quiet_unchanged`: the gate before
    another verb says nothing when it skips an unchanged rehearsal, so that verb's own output (and
    its one-line errors) stay as they were; `fplora rehearse` says it. `built`: the rehearsal,
    when the caller built it already; `worker`: the worker `start_worker` began for it (the caller
    stops it when it is not used)."""
    rehearsal = built or build(spec, python, real, gpu=has_gpu(spec, python))
    when = None if force else passed_before(rehearsal)
    if when is not None:
        if not quiet_unchanged:
            say(f"rehearsal: unchanged since it passed at {when}: not run again (--force runs it)")
        return 0
    log = display_path(rehearsal.log)
    say(f"rehearsal of {display_path(spec.path)} on stand-in models (log: {log})")
    for name, why in rehearsal.skipped:
        say(f"  {name}: skipped: {why}")
    result = run(rehearsal, python, say=say, limit=limit, idle=idle, worker=worker)
    for text in result.notes:
        say(f"note: {text}")
    for outcome in result.outcomes:
        if outcome.not_rehearsed is not None:
            say(f"  --   {outcome.stage.name}: not rehearsed: {outcome.not_rehearsed}")
        elif outcome.problem is None:
            say(f"  ok   {outcome.stage.name} ({outcome.seconds:.1f} s)")
    failed = [o for o in result.outcomes if o.problem is not None]
    for outcome in failed:
        if outcome.problem and outcome.problem.startswith("not run:"):
            say(f"  --   {outcome.stage.name}: {outcome.problem}")
            continue
        for line in describe_failure(rehearsal, outcome):
            say(line)
    if failed:
        say(f"rehearsal FAILED in {result.seconds:.0f} s; log: {display_path(result.log)}")
        return 1
    unrehearsed = [o.stage.name for o in result.outcomes if o.not_rehearsed is not None]
    # a stood-in kernel was not rehearsed either: the pass holds on this host only, so that the GPU
    # box rehearses the kernel itself
    kernels = [f"attention kernel {kernel}" for kernel in result.stood_in]
    remember_pass(rehearsal, result.seconds, unrehearsed + kernels)
    if unrehearsed:
        say(
            f"rehearsal passed in {result.seconds:.0f} s; not rehearsed on this machine:"
            f" {', '.join(unrehearsed)} (their code paths need what it lacks; see above)"
        )
        return 0
    say(f"rehearsal passed in {result.seconds:.0f} s")
    return 0


def run_rehearse(
    spec: Spec, *, force: bool = False, limit: float = STAGE_LIMIT, idle: float = STAGE_IDLE
) -> int:
    """`fplora rehearse SPEC`: the spec checked (model files aside: the rehearsal brings its own),
    then the rehearsal, unless this exact one passed before; the musubi-tuner Python is probed only
    when the rehearsal runs, so that an unchanged spec costs no process start."""
    from fplora.jobs.context import console, report

    out = console()
    python = python_for(spec)
    # a rehearsal that will run (forced, or of a spec never rehearsed here) has its worker started
    # first: it starts up while the spec is checked and the rehearsal planned
    worker = (
        start_worker(python, spec.render_dir / "rehearsal")
        if force or not stamp_path(spec).is_file()
        else None
    )
    try:
        records = RecordCache(spec)
        problems = check_spec(spec, skip_models=True, records=records)
        if any(p.severity == "error" for p in problems):
            raise UserError(problems)
        report(out, problems)
        real = plans.build(spec, records=records)
        built = build(spec, python, real, gpu=has_gpu(spec, python))

        def say(text: str) -> None:
            out.print(escape(text), highlight=False)

        if force or passed_before(built) is None:
            ensure_musubi(python, ["musubi_tuner", "accelerate"])
        return rehearse(
            spec, python, say=say, force=force, limit=limit, idle=idle, real=real, built=built, worker=worker
        )
    finally:
        if worker is not None:
            worker.stop()


def gate(job: Job, *, skip: bool) -> int:
    """Before `train`, `cache`, `infer` or `eval` spend GPU time: rehearse what they render, unless
    `--no-rehearse`, a dry run, or nothing changed since the last passed rehearsal (then it costs a
    fingerprint: well under a second). 0 to go on, 1 when the rehearsal failed (it said why)."""
    if skip or job.dry_run or os.environ.get(SKIP_ENV) == "0":
        return 0
    return rehearse(job.plan.spec, job.python, say=job.say, real=job.plan, quiet_unchanged=True)
