"""`fplora cache`: latent and text-encoder caches for every dataset of a spec."""

from __future__ import annotations

from fplora import process
from fplora.datasets import caches, split
from fplora.datasets.records import RecordCache
from fplora.jobs.context import Job, log_path
from fplora.problems import Problem, UserError, display_path
from fplora.render import commands
from fplora.runs.lock import holder, lock_path


def _note(state: caches.CacheState) -> str:
    """Why the files already there are not all kept; empty for a new or an up-to-date cache."""
    orphans = f", {len(state.orphans)} files of removed records: deleted" if state.orphans else ""
    if not state.present:
        return orphans
    if not state.stamp_ok:
        made = ", made with other settings" if state.stamped else ", not made by `fplora cache`"
        return made + orphans
    changed = len(state.changed)
    if changed and not state.fingerprinted:
        return f", stamped without record fingerprints: {changed} records recomputed{orphans}"
    if changed:
        return f", {changed} records changed since caching: recomputed{orphans}"
    return orphans


def run_cache(job: Job, *, rebuild: bool = False) -> int:
    """Run the cache scripts that have work; stamp each cache directory when they succeed.

    Caches that are complete, stamped with the spec's settings and made from the records as they are
    now are left alone (loading the encoders alone costs GPU minutes); `rebuild` recomputes everything.
    With matching settings, the cache files of records whose caption or images changed since (by the
    stamp's fingerprints) are removed first, so that `--skip_existing` recomputes exactly those:
    musubi-tuner skips any file that exists. A script with nothing to do is not started: a re-captioned
    dataset loads only the text encoders. A dry run reads the same state and prints what would run.
    """
    spec, paths = job.plan.spec, job.plan.paths
    running = holder(lock_path(spec.train.output_dir, spec.output_name))
    if running is not None and not job.dry_run:
        raise UserError(
            Problem(
                display_path(spec.path),
                None,
                "",
                f"{spec.output_name} is training (pid {running}) from these caches; recomputing them now"
                " would change its data under it",
                "wait for the training to end, or stop it first",
            )
        )
    # each folder gets the records that belong in it: training records without the held-out ones,
    # then the evaluation split's in a folder of its own
    records = split.entry_records(spec, job.plan.records or RecordCache(spec))
    states: list[caches.CacheState] = []
    for index in spec.cache_entries:
        dataset = spec.dataset_entry(index)
        state = caches.state_of(spec, index, records(index))
        states.append(state)
        label = "evaluation split" if index == spec.eval_index else f"dataset {index}"
        job.say(
            f"{label}: {display_path(dataset.jsonl)} ({state.records} records)"
            f" → cache {display_path(state.directory)}"
            f" ({state.records - state.missing_latents} latents, {state.records - state.missing_text}"
            f" text-encoder outputs already there{_note(state)})"
        )
    fresh = not rebuild and all(state.stamp_ok for state in states)
    latents = not fresh or any(s.missing_latents or s.stale_latents for s in states)
    text = not fresh or any(s.missing_text or s.stale_text for s in states)
    if not (latents or text):
        if not job.dry_run:
            for state in states:
                if state.orphans:
                    for path in state.orphan_files():
                        path.unlink(missing_ok=True)
                    caches.write_stamp(spec, state.dataset, state.prints)
        job.say("caches are complete and match the spec: nothing to do (--rebuild recomputes them)")
        return 0
    extra = {"skip_existing": True} if fresh else {}
    argvs = []
    if latents:
        argvs.append(commands.cache_latents(spec, paths, job.python) + commands.flags(extra, "cache_latents"))
    if text:
        argvs.append(
            commands.cache_text_encoder(spec, paths, job.python) + commands.flags(extra, "cache_text_encoder")
        )
    for argv in argvs:
        job.show(argv)
    if job.dry_run:
        return 0
    for state in states:
        # orphans go whatever the settings: the scripts only (re)write the records' own files
        for path in [*state.orphan_files(), *(state.stale_files() if fresh else [])]:
            path.unlink(missing_ok=True)
    log = log_path(paths.dir / "logs", "cache")
    for argv in argvs:
        result = process.run(argv, log=log)
        if result.returncode != 0:
            job.say(f"caching failed (exit {result.returncode}); log: {display_path(log)}", "red")
            return result.returncode
    for state in states:  # the fingerprints of the records as the scripts were given them
        caches.write_stamp(spec, state.dataset, state.prints)
    job.say(f"caches ready; log: {display_path(log)}")
    return 0
