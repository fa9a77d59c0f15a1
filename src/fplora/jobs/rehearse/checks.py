"""What each stage must leave behind besides exit code 0: musubi-tuner's scripts can exit 0 having
written nothing (a cache script in a debug mode, generate after every prompt failed), and such a
stage fails here rather than later in training."""

from __future__ import annotations

import contextlib
import glob
import json
import tomllib
from collections.abc import Callable
from pathlib import Path

from fplora.musubi.names import (
    TRAINING_SAMPLE_DIR,
    GenerateOutput,
    latent_cache_stem,
    text_encoder_cache_stem,
)
from fplora.problems import display_path, plural
from fplora.protocol import eval as eval_protocol
from fplora.runs.sweep import judge


def expected_caches(files: dict[Path, str], dataset_config: Path) -> list[tuple[Path, set[str]]]:
    """(cache folder, the image stems it must hold caches of) of each dataset the cache scripts
    read: musubi-tuner names a cache by its image's stem."""
    text = files.get(dataset_config)
    if text is None:
        return []
    expected = []
    for entry in tomllib.loads(text).get("datasets", []):
        jsonl, folder = entry.get("image_jsonl_file"), entry.get("cache_directory")
        if not jsonl or not folder or Path(jsonl) not in files:
            continue
        stems = set()
        for line in files[Path(jsonl)].splitlines():
            with contextlib.suppress(json.JSONDecodeError, AttributeError, TypeError):
                stems.add(Path(json.loads(line).get("image_path")).stem)
        expected.append((Path(folder), stems))
    return expected


def caches_check(expected: list[tuple[Path, set[str]]], *, latents: bool) -> Callable[[str], str | None]:
    """A cache script that exits 0 without writing its caches (a debug mode that only shows the
    data, a batch size that makes an empty loop) fails here, not later in training."""
    noun = "latent caches" if latents else "text-encoder caches"

    def check(_log: str) -> str | None:
        for folder, stems in expected:
            names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
            stem_of = latent_cache_stem if latents else text_encoder_cache_stem
            found = {stem_of(name) for name in names} & stems
            if len(found) < len(stems):
                return (
                    f"wrote {len(found)} of {len(stems)} {noun} in {display_path(folder)} (exit code 0"
                    " notwithstanding): training would find no data"
                )
        return None

    return check


def outputs_missing(patterns: list[str]) -> str | None:
    """Why a stage that exited 0 failed all the same: none of its `outputs` globs (what the stages
    after it need, the LoRA of a training stage) matched. A trainer that returns before its loop
    (`show_timesteps`) exits 0 having saved nothing; without this, the stage passed and the stages
    that needed it were reported as not run for no stated reason. None when one matched, or when the
    stage names no outputs."""
    if not patterns or any(glob.glob(pattern) for pattern in patterns):
        return None
    return f"wrote no {display_path(patterns[0])} (exit code 0 notwithstanding)"


def samples_check(folder: Path, prompts: int) -> Callable[[str], str | None]:
    def check(_log: str) -> str | None:
        samples = folder / TRAINING_SAMPLE_DIR
        found = list(samples.glob("*.png")) if samples.is_dir() else []
        if len(found) < prompts:
            return f"sampling at first wrote {len(found)} of {prompts} sample images"
        return None

    return check


def outputs_check(
    folder: Path, kinds: tuple[GenerateOutput, ...], seeds: list[int]
) -> Callable[[str], str | None]:
    """generate exits 0 even when every prompt failed: judge the files it wrote instead, as `fplora
    infer` judges them (`runs.sweep.judge`): each prompt (by its seed) needs a file of each kind,
    matched by the seed in the file's name."""

    def check(_log: str) -> str | None:
        names = [path.name for path in folder.iterdir()] if folder.is_dir() else []
        written = judge(folder, names, kinds, seeds)
        for kind in kinds:
            missing = written.missing[kind]
            if not missing:
                continue
            made = len(list(folder.glob(kind.glob))) if folder.is_dir() else 0
            have = len(seeds) - missing
            unmatched = (
                f"; {made - have} of the {plural(made, kind.noun)} it wrote match no prompt's seed"
                " (`fplora infer` finds a prompt's files by the seed in their names)"
                if made > have
                else ""
            )
            return f"wrote {have} of {plural(len(seeds), kind.noun)} (exit code 0 notwithstanding){unmatched}"
        return None

    return check


def eval_worker_check(log: str) -> str | None:
    events = [e for e in map(eval_protocol.parse_event, log.splitlines()) if e is not None]
    failed = [e.get("error") for e in events if e["event"] in ("checkpoint_failed", "error")]
    done = [e for e in events if e["event"] == "checkpoint_done"]
    if failed:
        return str(failed[0])
    if len(done) < 2:
        return f"scored {len(done)} of 2 checkpoints"
    return None
