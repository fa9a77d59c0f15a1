"""The rehearsal of a spec, planned from its Plan: the rendered files and commands with stand-in
model paths, a few records of every dataset (each once), few steps, smaller images where there is no
GPU and a folder of its own, as the stages the worker runs (caching, training, resume, generate, a
sweep cell, evaluation) and the fingerprint a pass is remembered by. Pure apart from reading the
records."""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from fplora import __version__
from fplora import plan as plans
from fplora.jobs.rehearse.checks import (
    caches_check,
    eval_worker_check,
    expected_caches,
    outputs_check,
    samples_check,
)
from fplora.musubi import schema
from fplora.musubi.names import GENERATE_OUTPUTS, PROMPT_OPTION, lora_final_file, shard_names, state_final_dir
from fplora.plan import Plan
from fplora.protocol import eval as eval_protocol
from fplora.protocol import sweep as sweep_protocol
from fplora.render import commands, tracker
from fplora.render.files import RenderedPaths, header
from fplora.render.prompts import PromptLine, prompts_file
from fplora.runs import evaluation
from fplora.runs.manifest import segment_name
from fplora.spec.models import MODEL_KEYS, Spec

WORKER = Path(__file__).resolve().parents[2] / "worker" / "rehearse.py"
STANDINS = WORKER.with_name("rehearse_standins.py")
RECORDS = 2
"""Records of each dataset (and of the evaluation split) a rehearsal uses, each once (`num_repeats`
1): a batch of two, whatever the spec's batch size."""
TRAIN_STEPS, RESUME_STEPS, SAMPLE_STEPS = 2, 1, 2


@dataclass
class Stage:
    name: str
    what: str
    argv: list[str]
    section: str  # which rendered-options table names its options: config, generate, cache_latents...
    options: dict[str, Any]  # the options it was given, by dest (flags and config keys)
    outputs: list[str] = field(default_factory=list)  # globs: at least one must match afterwards
    needs: list[str] = field(default_factory=list)
    check: Callable[[str], str | None] | None = None  # reads the stage's log: why it failed, or None
    steps: int | None = None  # a training stage stops after this many optimizer steps


@dataclass
class Rehearsal:
    spec: Spec
    root: Path
    stages: list[Stage]
    skipped: list[tuple[str, str]]
    notes: list[str]
    files: dict[Path, str]
    dit_shards: list[Path]
    fingerprint: str
    loras: dict[Path, Path] = field(default_factory=dict)  # the spec's LoRA files → their stand-ins

    @property
    def log(self) -> Path:
        """The worker's log (every stage's output), written afresh by each run of the rehearsal."""
        return self.root / "rehearsal.log"


LORA_INPUTS = ("network_weights", "base_weights")
"""Training options that name LoRA files made for the real DiT, which the stand-in DiT cannot load:
the rehearsal hands musubi-tuner a stand-in of each (`rehearse_standins.write_lora`)."""


def _standin_loras(config: dict[str, Any], models: Path) -> dict[str, tuple[Path, Path]]:
    """Each LoRA file the training config names, as rendered → (the file, its stand-in). A file that
    is not there is left as written: musubi-tuner's own error then names it."""
    found: dict[str, tuple[Path, Path]] = {}
    for key in LORA_INPUTS:
        value = config.get(key)
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, str) or not item or item in found:
                continue
            source = Path(item).expanduser().absolute()
            if source.is_file():
                found[item] = (source, models / "loras" / f"{len(found)}-{source.name}")
    return found


def _walk_replace(value: Any, mapping: dict[str, str]) -> Any:
    if isinstance(value, str):
        return mapping.get(value, value)
    if isinstance(value, list):
        return [_walk_replace(v, mapping) for v in value]
    if isinstance(value, dict):
        return {k: _walk_replace(v, mapping) for k, v in value.items()}
    return value


def _argv(argv: list[str], mapping: dict[str, str]) -> list[str]:
    return [mapping.get(a, a) for a in argv]


def _records_subset(text: str) -> str:
    """The first `RECORDS` records of a JSONL text (their lines as they are)."""
    kept = [line for line in text.splitlines() if line.strip()][:RECORDS]
    return "\n".join(kept) + "\n"


def _step_counts(config: dict[str, Any], steps: int, *, sample: bool) -> dict[str, Any]:
    """A training config changed only in how often it saves and samples: sampling once, at first, and
    a checkpoint and a state (as the spec asks) by step every `steps` steps besides the one at the
    end. Its length (`max_train_steps`, `max_train_epochs`) stays the run's: the scheduler is built
    for it, and the worker stops the stage after the stage's own `steps`.

    Why every `steps` (the training stage's length) rather than every step: training then saves once
    by step (at its last step) and once at its end, and the 1-step resume (its steps count from 1
    again) only at its end, after the step-save code has run in training. Saving at every step also
    saved at step 1 of both, two states more (~0.5 s each on a 2-core CPU) through the same code.
    A spec that keeps only the last N saves still saves at every step, so that removing the old ones
    runs as well."""
    config = dict(config)
    removes = any(key.startswith("save_last_n_") for key in config)
    if "save_every_n_steps" in config:
        config["save_every_n_steps"] = 1 if removes else steps
    if "save_every_n_epochs" in config:
        config["save_every_n_epochs"] = 1 if steps > 1 else steps
    for key in ("sample_every_n_steps", "sample_every_n_epochs"):
        config.pop(key, None)
    if sample and config.get("sample_prompts"):
        config["sample_at_first"] = True
    return config


_STEPS_OPTION = re.compile(rf"(?<=\s--{PROMPT_OPTION['steps']} )\d+")


def _fewer_steps(text: str) -> str:
    """A prompt file with every `--s N` at most `SAMPLE_STEPS` (a step count, nothing else)."""
    return _STEPS_OPTION.sub(lambda m: str(min(int(m.group(0)), SAMPLE_STEPS)), text)


SMALLER = (4, 2)
"""Without a GPU, how many times smaller each side of every image a rehearsal makes (the first that
`smaller_by` allows): the stand-in DiT keeps the real block counts, and its attention costs the
square of the tokens, so a batch of two at 512x768 took ~50-70 s a step on the 2-core CPU (322 s for
`fplora init`'s spec in all, with sampling, resume, generate and a sweep cell)."""
SIDE_STEP, SIDE_MIN = 16, 64
"""A smaller side stays a multiple of 16 (the DiT's 8x VAE and 2x2 patches) and at least 64 pixels
(the example project's 64x96 is rehearsed as it is)."""


def smaller_side(side: int, factor: int) -> int:
    """A side of a multiple of `SIDE_STEP` made `factor` times smaller, down to a multiple of
    `SIDE_STEP` again: 720 is 176 at a quarter (not 180, which the DiT's patches cannot tile). A side
    that is a multiple of 16 × `factor` is exactly `factor` times smaller; the others change their
    aspect a little, which buckets and resizing take as they take any size of whole steps. At
    `factor` 1 every side stays as written, a multiple of 16 or not (72 must fail as it would)."""
    return side if factor == 1 else side // factor // SIDE_STEP * SIDE_STEP


_SIZE_OPTION = re.compile(rf"(?<=\s--(?:{PROMPT_OPTION['width']}|{PROMPT_OPTION['height']}) )\d+")


def _sides(value: Any) -> list[int]:
    """The pixel sides a dataset `resolution` (an int, or [width, height]) names."""
    return [value] if isinstance(value, int) else [int(side) for side in value]


def _all_sides(datasets: list[dict[str, Any]], prompts: list[str]) -> list[int]:
    """Every image side the rehearsal's datasets (general and per entry) and prompt files name."""
    sides: list[int] = []
    for data in datasets:
        for table in [data.get("general", {}), *data.get("datasets", [])]:
            if "resolution" in table:
                sides += _sides(table["resolution"])
    for text in prompts:
        sides += [int(m.group(0)) for m in _SIZE_OPTION.finditer(text)]
    return sides


_WIDTH = re.compile(rf"\s--{PROMPT_OPTION['width']} (\d+)")
_HEIGHT = re.compile(rf"\s--{PROMPT_OPTION['height']} (\d+)")


def _all_sizes(datasets: list[dict[str, Any]], prompts: list[str]) -> list[tuple[int, int]]:
    """Every (width, height) the rehearsal's datasets and prompt lines name (a prompt line that gives
    only one of its sides is left out)."""
    sizes: list[tuple[int, int]] = []
    for data in datasets:
        for table in [data.get("general", {}), *data.get("datasets", [])]:
            if "resolution" in table:
                sides = _sides(table["resolution"])
                sizes.append((sides[0], sides[-1]))
    for text in prompts:
        for line in text.splitlines():
            width, height = _WIDTH.search(line), _HEIGHT.search(line)
            if width and height:
                sizes.append((int(width.group(1)), int(height.group(1))))
    return sizes


TILE_OVERLAP = 0.25
"""The share of a spatial tile that HunyuanVideo's VAE overlaps with the next (a tile starts every
3/4 of the tile size)."""


def tiling_kept(sizes: list[tuple[int, int]], tile: int | None, factor: int) -> bool:
    """Whether images `factor` times smaller meet the VAE's spatial tiling (`tile`:
    `vae_spatial_tile_sample_min_size`) as the spec's sizes do: tiled or not (an image with a side
    above the tile size is) and, when tiled, each side in one tile or in several. The size of the
    tiled latents, right or wrong for a tile size that keeps more rows than its tiles advance (208 px
    tiles give 98 latent rows for 768 px), follows from that; smaller images that the VAE would not
    tile pass where the GPU's fail."""
    if tile is None:
        return True
    step = int(tile * (1 - TILE_OVERLAP))
    for size in sizes:
        smaller = [smaller_side(side, factor) for side in size]
        tiled = max(size) > tile
        if tiled != (max(smaller) > tile):
            return False
        if tiled and any((side > step) != (small > step) for side, small in zip(size, smaller, strict=True)):
            return False
    return True


def smaller_by(sides: list[int], sizes: list[tuple[int, int]] | None = None, tile: int | None = None) -> int:
    """How many times smaller a rehearsal without a GPU makes every image: the first of `SMALLER`
    that leaves each side at least `SIDE_MIN` (`smaller_side`: a multiple of `SIDE_STEP`), and the
    VAE's spatial tiling of `sizes` as it is (`tiling_kept`), else 1. Every side must be a multiple of
    `SIDE_STEP` to shrink: a size that is not (72, which the DiT's patches cannot tile) is rehearsed
    as the spec wrote it, so that its own failure is what runs. A multiple of 16 that is not one of 64
    (480x720) shrinks too: at full size on a CPU its training stage alone ran past 150 s."""
    for factor in SMALLER:
        if (
            sides
            and all(side % SIDE_STEP == 0 and smaller_side(side, factor) >= SIDE_MIN for side in sides)
            and tiling_kept(sizes or [], tile, factor)
        ):
            return factor
    return 1


def _shrink_dataset(data: dict[str, Any], factor: int) -> dict[str, Any]:
    """A dataset.toml's tables with every `resolution` `factor` times smaller."""
    for table in [data.get("general", {}), *data.get("datasets", [])]:
        if "resolution" in table:
            sides = [smaller_side(side, factor) for side in _sides(table["resolution"])]
            table["resolution"] = sides[0] if isinstance(table["resolution"], int) else sides
    return data


def _shrink_prompts(text: str, factor: int) -> str:
    """A prompt file with every `--w N` and `--h N` `factor` times smaller."""
    return _SIZE_OPTION.sub(lambda m: str(smaller_side(int(m.group(0)), factor)), text)


def _has_alpha(path: Path) -> bool | None:
    """Whether an image carries an alpha channel (musubi-tuner turns it into a mask: another code
    path); None when it cannot be read (the rehearsal then shows musubi-tuner's own error)."""
    from PIL import Image  # here: only a rehearsal that runs reads image headers

    try:
        with Image.open(path) as image:
            return "A" in image.getbands() or "transparency" in image.info
    except Exception:  # an unreadable image is musubi-tuner's to report, in the stage that reads it
        return None


def _distinct(lines: list[PromptLine]) -> list[PromptLine]:
    """One prompt line per distinct option set: every field of the line but its text, seed and
    image paths (the number of control images, and which images carry an alpha mask, count)."""
    seen, kept = set(), []
    for line in lines:
        options = {k: v for k, v in dataclasses.asdict(line).items() if k not in _NOT_OPTIONS}
        images = (line.image, *line.control_images)
        key = (tuple(sorted(options.items())), len(line.control_images), tuple(map(_has_alpha, images)))
        if key not in seen:
            seen.add(key)
            kept.append(line)
    return kept


_NOT_OPTIONS = {"text", "seed", "image", "control_images"}
"""PromptLine fields that choose what is generated, not how: lines differing only in these are
rehearsed once."""


def _infer_steps(argv: list[str]) -> list[str]:
    """generate's argv with its denoising steps at most `SAMPLE_STEPS` (musubi-tuner's default, 25,
    when the spec renders none)."""
    argv = list(argv)
    if "--infer_steps" in argv:
        index = argv.index("--infer_steps") + 1
        argv[index] = str(min(int(argv[index]), SAMPLE_STEPS))
    else:
        argv += ["--infer_steps", str(SAMPLE_STEPS)]
    return argv


def _config_options(text: str) -> dict[str, Any]:
    return tomllib.loads(text)


def flag_options(argv: list[str]) -> dict[str, Any]:
    """`--dest value...` pairs of a command line, by dest (values as text)."""
    options: dict[str, Any] = {}
    dest = None
    for item in argv:
        if item.startswith("--"):
            dest = item[2:]
            options[dest] = True
        elif dest is not None:
            options[dest] = item if options[dest] is True else f"{options[dest]} {item}"
    return options


def _hash_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path).encode())
        try:
            stat = path.stat()
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
        except OSError:
            digest.update(b"missing")
    return digest.hexdigest()


def _record_files(jsonl_text: str) -> list[Path]:
    found = []
    for line in jsonl_text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            found += [Path(v) for k, v in sorted(record.items()) if k != "caption" and isinstance(v, str)]
    return found


def build(spec: Spec, python: str, real: Plan | None = None, *, gpu: bool = True) -> Rehearsal:
    """The rehearsal of `spec`: its Plan's files and commands with stand-in models, a few records,
    few steps and a folder of their own; without a `gpu`, every image `smaller_by` times smaller on
    each side. Pure apart from reading the records; writes nothing."""
    real = real or plans.build(spec)
    paths = real.paths
    root = paths.dir / "rehearsal"
    out, models = root / "out", root / "models"
    mine = RenderedPaths(root / "rendered")
    notes: list[str] = []
    mapping: dict[str, str] = {}
    for key in MODEL_KEYS:
        original = Path(getattr(spec.models, key))
        mapping[str(original)] = str(models / key / original.name)
    dit = Path(spec.models.dit)
    shards = [models / "dit" / name for name in shard_names(dit.name) or [dit.name]]
    for name in ("config", "resume_config", "dataset", "cache_dataset", "eval_dataset"):
        mapping[str(getattr(paths, name))] = str(getattr(mine, name))
    mapping[str(paths.sample_prompts)] = str(mine.sample_prompts)
    mapping[str(paths.infer_prompts)] = str(mine.infer_prompts)
    mapping[str(spec.train.output_dir)] = str(out / "train")
    loras = _standin_loras(_config_options(real.files[paths.config]), models)
    mapping.update({rendered: str(standin) for rendered, (_, standin) in loras.items()})

    files: dict[Path, str] = {}
    datasets: dict[Path, dict[str, Any]] = {}
    record_files: list[Path] = []
    # datasets: each JSONL cut to a few records, each cache folder the rehearsal's own
    for source in (paths.dataset, paths.cache_dataset, paths.eval_dataset):
        if source not in real.files:
            continue
        data = tomllib.loads(real.files[source])
        for entry in data.get("datasets", []):
            jsonl = entry.get("image_jsonl_file")
            if jsonl and jsonl not in mapping:
                text = real.files.get(Path(jsonl))
                if text is None:
                    try:
                        text = Path(jsonl).read_text(encoding="utf-8")
                    except OSError:
                        text = ""
                subset = root / "data" / f"{len(files)}-{Path(jsonl).name}"
                files[subset] = _records_subset(text)
                record_files += _record_files(files[subset])
                mapping[jsonl] = str(subset)
            if entry.get("num_repeats", 1) > 1:
                # each record once: its few records make one batch of at most RECORDS samples
                # (musubi-tuner cuts a bucket into ceil(len / batch_size) batches), not a batch of
                # the spec's size, whose cost on a CPU (a batch of 16 at 512x768: minutes a step and
                # ~17 GB) says nothing a batch of two does not
                entry["num_repeats"] = 1
            cache = entry.get("cache_directory")
            if cache and cache not in mapping:
                mapping[cache] = str(root / "cache" / f"{len(mapping)}-{Path(cache).name}")
        datasets[Path(mapping[str(source)])] = _walk_replace(data, mapping)
    train_config = _config_options(real.files[paths.config])
    # what training samples is what the rendered config asks for: prompts with neither `at_first`
    # nor `every_n_steps` render no `sample_prompts`, and musubi-tuner then never samples
    sampling = bool(spec.sample.prompts) and "sample_prompts" in train_config
    train_config = _step_counts(_walk_replace(train_config, mapping), TRAIN_STEPS, sample=sampling)
    if "logging_dir" in train_config:
        train_config["logging_dir"] = str(out / "logs")
    if spec.train.logging.to_wandb:
        notes.append("train.logging.with: wandb runs offline in a rehearsal (nothing is sent)")
    resume_config = _config_options(real.files[paths.resume_config])
    resume_config = _step_counts(_walk_replace(resume_config, mapping), TRAIN_STEPS, sample=False)
    if "logging_dir" in resume_config:
        resume_config["logging_dir"] = str(out / "logs")
    for config in (train_config, resume_config):
        # the wandb run file: `fplora train` writes it when the run starts, so the real one need not
        # exist yet; musubi-tuner reads it (toml.load) before the first step
        if "log_tracker_config" in config:
            real_file = Path(str(config["log_tracker_config"]))
            text = real.files.get(real_file) or header(spec) + tracker.tracker_toml(spec)
            files[mine.tracker] = text
            config["log_tracker_config"] = str(mine.tracker)
    files[mine.config] = header(spec) + tomli_w.dumps(train_config)
    files[mine.resume_config] = header(spec) + tomli_w.dumps(resume_config)
    distinct = _distinct(real.infer_prompts)
    prompts = {
        mine.sample_prompts: _fewer_steps(real.files[paths.sample_prompts]),
        mine.infer_prompts: _fewer_steps(prompts_file(header(spec), spec, distinct, "generate")),
    }
    named = (list(datasets.values()), list(prompts.values()))
    tile = spec.models.vae_spatial_tile_sample_min_size
    factor = 1 if gpu else smaller_by(_all_sides(*named), _all_sizes(*named), tile)
    if factor > 1:
        notes.append(
            f"no GPU here: every image {factor} times smaller on each side (the stand-ins' attention"
            " costs the square of the tokens on a CPU); on a GPU machine the rehearsal runs at the"
            " spec's sizes"
        )
    for where, data in datasets.items():
        files[where] = header(spec) + tomli_w.dumps(_shrink_dataset(data, factor))
    for where, text in prompts.items():
        files[where] = _shrink_prompts(text, factor)

    py = python
    stages: list[Stage] = []
    skipped: list[tuple[str, str]] = []
    cache_latents = _argv(commands.cache_latents(spec, paths, py), mapping)
    cache_text = _argv(commands.cache_text_encoder(spec, paths, py), mapping)
    expected = expected_caches(files, Path(flag_options(cache_latents)["dataset_config"]))
    stages.append(
        Stage(
            "cache-latents",
            "latent caches",
            cache_latents,
            "cache_latents",
            flag_options(cache_latents),
            check=caches_check(expected, latents=True),
        )
    )
    stages.append(
        Stage(
            "cache-text",
            "text-encoder caches",
            cache_text,
            "cache_text_encoder",
            flag_options(cache_text),
            check=caches_check(expected, latents=False),
        )
    )
    name = str(train_config.get("output_name", spec.output_name))
    train_out = Path(str(train_config.get("output_dir", out / "train")))
    train_argv = _argv(commands.train(spec, paths, py), mapping)
    what = f"{TRAIN_STEPS} training steps" + (", sampling at first" if sampling else "")
    stages.append(
        Stage(
            "train",
            what,
            train_argv,
            "config",
            train_config,
            outputs=[glob.escape(str(train_out / name)) + "*.safetensors"],
            needs=["cache-latents", "cache-text"],
            check=samples_check(train_out, len(real.sample_prompts)) if sampling else None,
            steps=TRAIN_STEPS,
        )
    )
    lora = train_out / lora_final_file(name)
    saves_state = bool(train_config.get("save_state") or train_config.get("save_state_on_train_end"))
    if saves_state:
        state = train_out / state_final_dir(name)
        resumed = segment_name(name, 1)
        remaining = max(spec.train.max_train_steps - TRAIN_STEPS, RESUME_STEPS)
        resume_argv = _argv(
            # as `fplora train --resume` passes the steps left (here: after a state at TRAIN_STEPS)
            commands.train(spec, paths, py, output_name=resumed, resume=state, max_train_steps=remaining),
            mapping,
        )
        stages.append(
            Stage(
                "resume",
                f"resume {RESUME_STEPS} step from the state",
                resume_argv,
                "config",
                resume_config,
                outputs=[glob.escape(str(train_out / resumed)) + "*.safetensors"],
                needs=["train"],
                steps=RESUME_STEPS,
            )
        )
    else:
        skipped.append(("resume", "the spec saves no training state (train.save_state)"))
    generate_out = out / "generate"
    multiplier = spec.infer.multipliers[0] if spec.infer.multipliers else 1.0
    generate_argv = _infer_steps(
        _argv(
            commands.generate(spec, paths, py, lora=lora, multiplier=multiplier, save_path=generate_out),
            mapping,
        )
    )
    kinds = GENERATE_OUTPUTS[spec.infer.output_type]
    seeds = [line.seed for line in distinct]
    stages.append(
        Stage(
            "generate",
            f"generate, {len(distinct)} of {len(real.infer_prompts)} infer prompts (one per setting)",
            generate_argv,
            "generate",
            flag_options(generate_argv),
            needs=["train"],
            check=outputs_check(generate_out, kinds, seeds),
        )
    )
    sweep_out = out / "sweep" / "c0"
    sweep_plan = root / "rendered" / "sweep-plan.json"
    sweep_args = _infer_steps(_argv(commands.sweep_generate_args(spec, paths), mapping))
    cell = {"id": "c0", "lora": str(lora), "multiplier": multiplier, "save_path": str(sweep_out)}
    files[sweep_plan] = json.dumps(
        {
            "protocol": sweep_protocol.PROTOCOL,
            "generate_args": sweep_args,
            "cells": [{**cell, "label": name}],
        },
        indent=1,
    )
    stages.append(
        Stage(
            "sweep",
            "one sweep-worker cell",
            commands.sweep(spec, py, sweep_plan),
            "generate",
            flag_options(sweep_args),
            needs=["train"],
            check=outputs_check(sweep_out, kinds, seeds),
        )
    )
    if spec.eval is not None:
        eval_plan = root / "rendered" / "eval-plan.json"
        files[eval_plan] = json.dumps(
            {
                "protocol": eval_protocol.PROTOCOL,
                "config_file": str(mine.config),
                "dataset_config": str(mine.eval_dataset),
                "timesteps": list(spec.eval.timesteps),
                "noise_seed": spec.eval.noise_seed,
                # as `fplora eval` compiles: without CUDA the stand-ins' torch.compile still checks
                # its options (a backend name it does not know fails here as on the GPU box)
                "compile": spec.eval_compiles,
                "checkpoints": [
                    {"id": "k0", "label": evaluation.UNTRAINED, "lora": None},
                    {"id": "k1", "label": name, "lora": str(lora)},
                ],
            },
            indent=1,
        )
        stages.append(
            Stage(
                "eval",
                "the evaluation worker on one checkpoint",
                commands.eval_worker(spec, py, eval_plan),
                "config",
                {**train_config, "compile": spec.eval_compiles},
                needs=["train"],
                check=eval_worker_check,
            )
        )
    else:
        skipped.append(("eval", "the spec has no eval: section"))

    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(str(path).encode() + b"\0" + files[path].encode() + b"\0")
    for stage in stages:
        digest.update(json.dumps(stage.argv).encode())
    for path in sorted(real.files):
        digest.update(str(path).encode() + b"\0" + real.files[path].encode() + b"\0")
    digest.update(_hash_files(sorted(set(record_files))).encode())
    digest.update(_hash_files(sorted(source for source, _ in loras.values())).encode())
    digest.update(f"{__version__} {schema.pinned_commit()} {python}".encode())
    for code in (WORKER, STANDINS):
        digest.update(code.read_bytes())
    return Rehearsal(
        spec, root, stages, skipped, notes, files, shards, digest.hexdigest(), dict(loras.values())
    )
