"""Caching stages: `fplora cache` against musubi-tuner's cache scripts, and `recache`, which edits the
dataset after caching (fplora must refuse stale caches and recompute exactly what changed)."""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path
from typing import Any

from harness import state
from harness.asserts import Checks, manifest, safetensors_header
from harness.fake import write_png
from harness.proc import Ran, fplora
from harness.specs import write_specs
from harness.state import Stage
from harness.timings import cache_timings, guarded


def stage_cache(stage: dict[str, Any], checks: Checks) -> None:
    write_specs()
    ran = fplora(stage, "cache", str(state.CFG.spec("e2e")))
    checks.rc(ran, what="fplora cache e2e.yaml")
    stage["timings"] = guarded(checks, cache_timings, ran, state.CFG.records)
    records = [json.loads(x) for x in state.CFG.jsonl.read_text().splitlines() if x]
    names = {p.name for p in state.CFG.cache.iterdir()} if state.CFG.cache.is_dir() else set()
    size = f"{state.CFG.width:04d}x{state.CFG.height:04d}"
    latents = [f"{Path(r['image_path']).stem}_{size}_fp.safetensors" for r in records]
    tes = [f"{Path(r['image_path']).stem}_fp_te.safetensors" for r in records]
    checks.ok(not set(latents) - names, f"{len(latents)} latent caches by musubi's names", sorted(names)[:4])
    checks.ok(not set(tes) - names, f"{len(tes)} text-encoder caches by musubi's names", sorted(names)[:4])
    # fplora keeps one content-addressed store per project; a version's cache folder is a view of links
    store = (state.CFG.root / ".fplora" / "cache-store").resolve()
    wanted = [state.CFG.cache / n for n in (*latents, *tes)]
    outside = [p.name for p in wanted if not (p.is_symlink() and p.resolve().is_relative_to(store))]
    checks.ok(not outside, "every cache file is a link into the project's cache store", outside[:4])
    dangling = [p.name for p in wanted if p.is_symlink() and not p.exists()]
    checks.ok(not dangling, "every link resolves to a file in the store", dangling[:4])
    if latents and (state.CFG.cache / latents[0]).is_file():
        try:
            header = safetensors_header(state.CFG.cache / latents[0])
            checks.ok(len(header) > 1, f"{latents[0]} has tensors", list(header)[:6])
            stage["timings"]["latent_cache_keys"] = sorted(header)[:12]
        except (OSError, ValueError, struct.error) as exc:
            checks.ok(False, f"{latents[0]} header parses", exc)
    logs = sorted((state.CFG.configs / "e2e" / "logs").glob("cache-*.log"))
    checks.ok(logs, "fplora's cache log in configs/e2e/logs/")


def _cache_digests() -> dict[str, str]:
    """Which store entry each cache file of the view is, by name: a recomputed file is a new entry in
    the store, so its link changes (mtimes say nothing: links are remade, the store is content-keyed)."""
    out = {}
    for path in sorted(state.CFG.cache.iterdir()) if state.CFG.cache.is_dir() else []:
        if path.name.endswith(".safetensors"):
            out[path.name] = os.readlink(path) if path.is_symlink() else f"file {path.stat().st_mtime_ns}"
    return out


def _cache_scripts(ran: Ran) -> list[str]:
    """The musubi-tuner cache scripts fplora launched, from its `$ ` lines."""
    found = re.findall(r"-m musubi_tuner\.(fpack_cache_\w+)", "\n".join(line for _, line in ran.lines))
    return found


def stage_recache(stage: dict[str, Any], checks: Checks) -> None:
    """Edit the dataset after caching, as users do mid-project: fplora must refuse to train on the stale
    caches and recompute exactly the changed records with the real cache scripts.

    Changes the e2e dataset for good (a caption edited, a control image redrawn, the last record
    removed, then another caption edited), so run it last on a machine. The store is keyed by content:
    an image only touched (same bytes) is not stale, so record 5's control image gets new pixels."""
    write_specs()
    lines = [x for x in state.CFG.jsonl.read_text().splitlines() if x]
    records = [json.loads(x) for x in lines]
    if not checks.ok(len(records) >= 6, "recache: at least 6 records", len(records)):
        return
    stems = [Path(r["image_path"]).stem for r in records]
    latent = {s: f"{s}_{state.CFG.width:04d}x{state.CFG.height:04d}_fp.safetensors" for s in stems}
    text = {s: f"{s}_fp_te.safetensors" for s in stems}
    before = _cache_digests()
    # a caption edited (record 3), a control image redrawn (record 5), the last record removed
    records[2]["caption"] += ", edited after caching"
    control = Path(records[4]["control_path_0"])
    control = control if control.is_absolute() else state.CFG.jsonl.parent / control
    write_png(control, state.CFG.width, state.CFG.height, (200, 30, 90))
    removed = records.pop()
    state.CFG.jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    gone = Path(removed["image_path"]).stem
    free = [v for v in ("timing", state.CFG.g_version) if manifest(v) is None]
    if free:  # a spec sharing the cache with no run yet: train gets as far as the cache check
        refused = fplora(stage, "train", str(state.CFG.spec(free[0])), expect=1)
        checks.rc(refused, 1, f"fplora train {free[0]}.yaml refuses the stale cache")
        checks.ok(
            f"2 of {len(records)} records changed since their caches were made" in refused.text,
            "refusal counts the changed records",
            refused.text[-400:],
        )
    else:
        stage["skipped_refusal"] = "every spec sharing the cache has a run already"
    ran = fplora(stage, "cache", str(state.CFG.spec("e2e")))
    checks.rc(ran, what="fplora cache e2e.yaml after the edits")
    checks.ok(
        "1 latent and 1 text-encoder output to compute, 2 records' files outdated: replaced,"
        " 2 files of removed records: unlinked" in ran.text,
        "cache says what it recomputes and deletes",
        ran.text[-600:],
    )
    checks.ok(
        _cache_scripts(ran) == ["fpack_cache_latents", "fpack_cache_text_encoder_outputs"],
        "both scripts ran (an image and a caption changed)",
        _cache_scripts(ran),
    )
    after = _cache_digests()
    changed = {name for name in before if name in after and before[name] != after[name]}
    checks.ok(
        changed == {text[stems[2]], latent[stems[4]]},
        "exactly the edited caption's text-encoder file and the touched image's latent were recomputed",
        sorted(changed),
    )
    checks.ok(
        latent[gone] not in after and text[gone] not in after, "the removed record's cache files are gone"
    )
    views = [n for n in after if n.endswith(".safetensors")]
    checks.ok(len(views) == 2 * len(records), f"the view links {len(records)} records' 2 files", len(views))
    # a caption-only edit: only the text-encoder script may load
    records[3]["caption"] += ", edited again"
    state.CFG.jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    before = after
    again = fplora(stage, "cache", str(state.CFG.spec("e2e")))
    checks.rc(again, what="fplora cache e2e.yaml after a caption edit")
    checks.ok(
        _cache_scripts(again) == ["fpack_cache_text_encoder_outputs"],
        "a caption edit runs only the text-encoder script",
        _cache_scripts(again),
    )
    after = _cache_digests()
    changed = {name for name in before if name in after and before[name] != after[name]}
    checks.ok(changed == {text[stems[3]]}, "only that record's text-encoder file changed", sorted(changed))
    stage["timings"] = {
        "cache_both_scripts_s": round(ran.t1 - ran.t0, 1),
        "cache_text_encoder_only_s": round(again.t1 - again.t0, 1),
    }
    done = fplora(stage, "cache", str(state.CFG.spec("e2e")))
    checks.ok("nothing to do" in done.text and not _cache_scripts(done), "then nothing is left to do")


def _cached() -> bool:
    """Every record's latent and text-encoder file in the view, each resolving into the store."""
    cache = state.CFG.cache
    files = list(cache.glob("*_fp.safetensors")) if cache.is_dir() else []
    tes = list(cache.glob("*_fp_te.safetensors")) if cache.is_dir() else []
    whole = all(p.exists() for p in (*files, *tes))
    return whole and len(files) >= state.CFG.records and len(tes) >= state.CFG.records


STAGES = {
    "cache": Stage(stage_cache, 105, _cached),
    # both cache scripts (~118 s), then the text-encoder one alone (~85 s); never skipped: it edits
    "recache": Stage(stage_recache, 230),
}
