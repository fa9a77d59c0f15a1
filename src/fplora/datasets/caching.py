"""`fplora cache`: latent and text-encoder caches for every dataset of a spec."""

from __future__ import annotations

from fplora import process
from fplora.datasets import caches
from fplora.datasets.records import RecordCache
from fplora.jobs import Job, log_path
from fplora.problems import display_path
from fplora.render import commands


def run_cache(job: Job, *, rebuild: bool = False) -> int:
    """Run both cache scripts; stamp each cache directory when both succeed.

    Caches that are complete and stamped with the spec's settings are left alone (loading the
    encoders alone costs GPU minutes); `rebuild` recomputes everything, e.g. after images changed
    in place under the same names.
    """
    spec, paths = job.plan.spec, job.plan.paths
    records = job.plan.records or RecordCache(spec)
    fresh = not rebuild and all(caches.stamp_matches(spec, i) for i in range(len(spec.datasets)))
    complete = True
    for index, dataset in enumerate(spec.datasets):
        if not job.dry_run:
            state = caches.state_of(spec, index, records(index))
            complete = complete and state.complete
            stale = "" if state.stamp_ok else ", made with other settings"
            job.console.print(
                f"dataset {index}: {display_path(dataset.jsonl)} ({state.records} records)"
                f" → cache {display_path(state.directory)}"
                f" ({state.records - state.missing_latents} latents, {state.records - state.missing_text}"
                f" text-encoder outputs already there{stale})",
                highlight=False,
            )
    if not job.dry_run and fresh and complete:
        job.console.print("caches are complete and match the spec: nothing to do (--rebuild recomputes them)")
        return 0
    extra = {"skip_existing": True} if fresh else {}
    argvs = [
        commands.cache_latents(spec, paths, job.python) + commands.flags(extra, "fpack_cache_latents"),
        commands.cache_text_encoder(spec, paths, job.python)
        + commands.flags(extra, "fpack_cache_text_encoder_outputs"),
    ]
    for argv in argvs:
        job.show(argv)
    if job.dry_run:
        return 0
    log = log_path(paths.dir / "logs", "cache")
    for argv in argvs:
        result = process.run(argv, log=log)
        if result.returncode != 0:
            job.console.print(f"[red]caching failed (exit {result.returncode}); log: {display_path(log)}[/]")
            return result.returncode
    for index in range(len(spec.datasets)):
        caches.write_stamp(spec, index)
    job.console.print(f"caches ready; log: {display_path(log)}", highlight=False)
    return 0
