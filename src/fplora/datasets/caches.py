"""Latent and text-encoder caches: are they complete, and were they made with these settings?

musubi-tuner's cache names encode neither the one-frame settings nor the dataset version, and
`--skip_existing` only checks that a file exists. fplora writes a stamp beside the caches after a
successful `fplora cache`; training refuses caches whose stamp does not match the spec.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fplora.datasets.records import Records
from fplora.musubi.names import latent_cache_stem, text_encoder_cache_file
from fplora.problems import Problem, display_path
from fplora.spec.models import Spec

STAMP = "fplora-cache.json"


def stamp_for(spec: Spec, index: int) -> dict[str, Any]:
    """What the cache content depends on, besides the images themselves."""
    one_frame = spec.one_frame
    return {
        "jsonl": str(spec.datasets[index].jsonl),
        "resolution": spec.dataset_value(index, "resolution"),
        "enable_bucket": spec.dataset_value(index, "enable_bucket"),
        "bucket_no_upscale": spec.dataset_value(index, "bucket_no_upscale"),
        "clean_indices": list(one_frame.clean_indices),
        "target_index": one_frame.target_index,
        "no_post": one_frame.no_post,
        "no_2x": one_frame.no_2x,
        "no_4x": one_frame.no_4x,
        "latent_window_size": one_frame.latent_window_size,
        "vae": str(spec.models.vae),
        "image_encoder": str(spec.models.image_encoder),
        "text_encoder1": str(spec.models.text_encoder1),
        "fp8_llm": spec.models.fp8_llm,
    }


def _normalise(value: Any) -> Any:
    return json.loads(json.dumps(value))


def read_stamp(cache_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((cache_dir / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_stamp(spec: Spec, index: int) -> None:
    cache_dir = spec.cache_directory(index)
    cache_dir.mkdir(parents=True, exist_ok=True)
    (cache_dir / STAMP).write_text(json.dumps(stamp_for(spec, index), indent=2) + "\n", encoding="utf-8")


def stamp_matches(spec: Spec, index: int) -> bool:
    return read_stamp(spec.cache_directory(index)) == _normalise(stamp_for(spec, index))


@dataclass(frozen=True)
class CacheState:
    dataset: int
    directory: Path
    records: int
    missing_latents: int
    missing_text: int
    stamp_ok: bool

    @property
    def complete(self) -> bool:
        return self.stamp_ok and not self.missing_latents and not self.missing_text


def state_of(spec: Spec, index: int, records: Records) -> CacheState:
    """Count records without a latent or text-encoder cache file (one directory listing)."""
    cache_dir = spec.cache_directory(index)
    names = {p.name for p in cache_dir.iterdir()} if cache_dir.is_dir() else set()
    latent_stems = {latent_cache_stem(n) for n in names}
    missing_latents = missing_text = 0
    for record in records.items:
        if record.image is None:
            continue
        stem = record.image.stem
        missing_latents += stem not in latent_stems
        missing_text += text_encoder_cache_file(record.image) not in names
    return CacheState(
        index, cache_dir, len(records.items), missing_latents, missing_text, stamp_matches(spec, index)
    )


def problems(spec: Spec, records: Callable[[int], Records]) -> list[Problem]:
    """Missing, incomplete or stale caches: training would fail (or train on stale latents)."""
    found = []
    for index in range(len(spec.datasets)):
        state = state_of(spec, index, records(index))
        if state.complete:
            continue
        if not state.stamp_ok and state.missing_latents < state.records:
            what = "was made with other settings (or not by fplora cache)"
        else:
            what = f"misses {state.missing_latents} latent and {state.missing_text} text-encoder files"
        found.append(
            Problem(
                display_path(state.directory),
                None,
                f"datasets[{index}]",
                f"cache of {state.records} records {what}",
                "run `fplora cache` first, or `fplora train --cache`",
            )
        )
    return found
