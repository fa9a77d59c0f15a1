"""`fplora rehearse`: the spec's rendered commands and files, run by musubi-tuner's own code on tiny
stand-in models, in seconds, before any GPU time.

Why: `fplora check` knows the mistakes someone wrote a rule for; musubi-tuner's four scripts have
hundreds of options, and a setting check accepts can still kill a run minutes in, after the models
loaded. A rehearsal runs the real code path instead: the Plan that `train`, `cache` and `infer` would
run, changed only in the model paths (stand-ins fplora makes: `worker/rehearse_standins.py`), the
records (a few real ones of every dataset and of the evaluation split, with their images and
captions), the step counts and the output folders. Stages: caching, 2 training steps with sampling
at first, a 1-step resume from the state, generate with each distinct prompt setting once, one
sweep-worker cell and the evaluation worker on one checkpoint. They run in one worker process
(`worker/rehearse.py`) that imports musubi-tuner once; each stage has a time limit.

A failure names the stage, the command, musubi-tuner's own last error line and the spec lines that
rendered the options involved. A pass is remembered (`.fplora/rehearsed/`) with a fingerprint of what
was rehearsed (rendered files and commands, records, fplora version, musubi-tuner commit), so that
`train`, `cache`, `infer` and `eval` rehearse again only when that changed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
from rich.markup import escape

from fplora import __version__, process
from fplora import plan as plans
from fplora.atomic import write_atomic
from fplora.check import check_spec
from fplora.datasets.records import RecordCache
from fplora.jobs.context import Job
from fplora.musubi import schema
from fplora.musubi.names import GENERATE_OUTPUTS, latent_cache_stem, text_encoder_cache_file
from fplora.plan import Plan
from fplora.problems import Problem, UserError, display_path
from fplora.protocol import eval as eval_protocol
from fplora.protocol import rehearse as rehearse_protocol
from fplora.protocol import sweep as sweep_protocol
from fplora.render import commands, tracker
from fplora.render.files import RenderedPaths, header
from fplora.render.prompts import PromptLine, prompts_file
from fplora.runs import evaluation
from fplora.runtime import ensure_musubi, python_for
from fplora.spec.load import dotted
from fplora.spec.models import Spec
from fplora.spec.rules import rendered_options
from fplora.state import user_cache

WORKER = Path(__file__).resolve().parents[1] / "worker" / "rehearse.py"
STANDINS = WORKER.with_name("rehearse_standins.py")
RECORDS = 2
"""Records of each dataset (and of the evaluation split) a rehearsal uses: a batch of two."""
TRAIN_STEPS, RESUME_STEPS, SAMPLE_STEPS = 2, 1, 2
STAGE_LIMIT = 300.0
"""Seconds a stage may take before it counts as hung (the slowest, training, takes ~15 s on a 2-core
CPU; a data loader or a cache script waiting forever must not hold the rehearsal)."""
SKIP_ENV = "FPLORA_REHEARSE"
"""`FPLORA_REHEARSE=0`: no rehearsal before `train`/`cache`/`infer`/`eval`, as `--no-rehearse` on every
command (a scripted pipeline that drives its own stand-in musubi-tuner, like the GPU harness's local mode)."""
MODEL_KEYS = ("dit", "vae", "text_encoder1", "text_encoder2", "image_encoder")
ATTENTION_KERNELS = {"flash_attn": "flash_attn", "xformers": "xformers"}
"""Training's attention options → the kernel package FramePack imports for each (flash3 has no FramePack
kernel at all, and training refuses sage_attn whatever is installed: both are the spec's failures)."""
GENERATE_KERNELS = {"flash": "flash_attn", "sageattn": "sageattention", "xformers": "xformers"}
"""generate's `--attn_mode` values → their kernel package."""
MISSING_MODULE = re.compile(r"\(the package (\w+) is not installed|ImportError: No (\w+) /")
"""A package the code imports that this Python lacks: the worker's note on a top-level module that
is not installed at all (a missing part of an installed package is the spec's mistake), or
musubi-tuner's own `ImportError: No wandb / ...`."""

DATASET_KEYS = {
    "resolution": "data.resolution",
    "batch_size": "data.batch_size",
    "num_repeats": "data.num_repeats",
    "enable_bucket": "data.enable_bucket",
    "bucket_no_upscale": "data.bucket_no_upscale",
    "caption_extension": "data.caption_extension",
    "fp_1f_clean_indices": "one_frame.clean_indices",
    "fp_1f_target_index": "one_frame.target_index",
    "fp_1f_no_post": "one_frame.no_post",
    "fp_latent_window_size": "one_frame.latent_window_size",
}
"""dataset.toml keys and the spec fields that render them."""


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


@dataclass
class Outcome:
    stage: Stage
    code: int | None = None
    error: str | None = None
    where: str | None = None
    seconds: float = 0.0
    problem: str | None = None  # why the stage failed, None when it passed
    not_rehearsed: str | None = None  # why this machine cannot run the stage's code path at all
    frames: list[str] = field(default_factory=list)  # musubi-tuner functions the error passed through
    log: list[str] = field(default_factory=list)


# --- building the rehearsal from the Plan ------------------------------------------------------


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


_STEPS_OPTION = re.compile(r"(?<=\s--s )\d+")


def _fewer_steps(text: str) -> str:
    """A prompt file with every `--s N` at most `SAMPLE_STEPS` (a step count, nothing else)."""
    return _STEPS_OPTION.sub(lambda m: str(min(int(m.group(0)), SAMPLE_STEPS)), text)


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


def _flag_options(argv: list[str]) -> dict[str, Any]:
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


def state_dir(spec: Spec) -> Path:
    """`.fplora/` of the spec's project (the folder holding `configs/`)."""
    folder = spec.path.resolve().parent
    root = folder.parent if folder.name == "configs" else folder
    return root / ".fplora"


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


def build(spec: Spec, python: str, real: Plan | None = None) -> Rehearsal:
    """The rehearsal of `spec`: its Plan's files and commands with stand-in models, a few records,
    few steps and a folder of their own. Pure apart from reading the records; writes nothing."""
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
    match = re.search(r"-(\d{5})-of-(\d{5})", dit.name)
    shards = [models / "dit" / dit.name]
    if match:
        count = int(match.group(2))
        shards = [
            models / "dit" / dit.name.replace(match.group(0), f"-{i:05d}-of-{count:05d}")
            for i in range(1, count + 1)
        ]
    for name in ("config", "resume_config", "dataset", "cache_dataset", "eval_dataset"):
        mapping[str(getattr(paths, name))] = str(getattr(mine, name))
    mapping[str(paths.sample_prompts)] = str(mine.sample_prompts)
    mapping[str(paths.infer_prompts)] = str(mine.infer_prompts)
    mapping[str(spec.train.output_dir)] = str(out / "train")
    loras = _standin_loras(_config_options(real.files[paths.config]), models)
    mapping.update({rendered: str(standin) for rendered, (_, standin) in loras.items()})

    files: dict[Path, str] = {}
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
            cache = entry.get("cache_directory")
            if cache and cache not in mapping:
                mapping[cache] = str(root / "cache" / f"{len(mapping)}-{Path(cache).name}")
        files[Path(mapping[str(source)])] = header(spec) + tomli_w.dumps(_walk_replace(data, mapping))
    train_config = _config_options(real.files[paths.config])
    # what training samples is what the rendered config asks for: prompts with neither `at_first`
    # nor `every_n_steps` render no `sample_prompts`, and musubi-tuner then never samples
    sampling = bool(spec.sample.prompts) and "sample_prompts" in train_config
    train_config = _step_counts(_walk_replace(train_config, mapping), TRAIN_STEPS, sample=sampling)
    if "logging_dir" in train_config:
        train_config["logging_dir"] = str(out / "logs")
    log_with = train_config.get("log_with")
    if log_with in ("wandb", "all"):
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
    files[mine.sample_prompts] = _fewer_steps(real.files[paths.sample_prompts])
    distinct = _distinct(real.infer_prompts)
    files[mine.infer_prompts] = _fewer_steps(prompts_file(header(spec), spec, distinct, "generate"))

    py = python
    stages: list[Stage] = []
    skipped: list[tuple[str, str]] = []
    cache_latents = _argv(commands.cache_latents(spec, paths, py), mapping)
    cache_text = _argv(commands.cache_text_encoder(spec, paths, py), mapping)
    expected = _expected_caches(files, Path(_flag_options(cache_latents)["dataset_config"]))
    stages.append(
        Stage(
            "cache-latents",
            "latent caches",
            cache_latents,
            "cache_latents",
            _flag_options(cache_latents),
            check=_caches_check(expected, latents=True),
        )
    )
    stages.append(
        Stage(
            "cache-text",
            "text-encoder caches",
            cache_text,
            "cache_text_encoder",
            _flag_options(cache_text),
            check=_caches_check(expected, latents=False),
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
            outputs=[str(train_out / f"{name}*.safetensors")],
            needs=["cache-latents", "cache-text"],
            check=_samples_check(train_out, len(real.sample_prompts)) if sampling else None,
            steps=TRAIN_STEPS,
        )
    )
    lora = train_out / f"{name}.safetensors"
    saves_state = bool(train_config.get("save_state") or train_config.get("save_state_on_train_end"))
    if saves_state:
        state = train_out / f"{name}-state"
        resumed = f"{name}-r1"
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
                outputs=[str(train_out / f"{resumed}*.safetensors")],
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
    stages.append(
        Stage(
            "generate",
            f"generate, {len(distinct)} of {len(real.infer_prompts)} infer prompts (one per setting)",
            generate_argv,
            "generate",
            _flag_options(generate_argv),
            needs=["train"],
            check=_outputs_check(generate_out, kinds, len(distinct)),
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
            _flag_options(sweep_args),
            needs=["train"],
            check=_outputs_check(sweep_out, kinds, len(distinct)),
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
                "compile": False,
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
                train_config,
                needs=["train"],
                check=_eval_check,
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


def _expected_caches(files: dict[Path, str], dataset_config: Path) -> list[tuple[Path, set[str]]]:
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


def _caches_check(expected: list[tuple[Path, set[str]]], *, latents: bool) -> Callable[[str], str | None]:
    """A cache script that exits 0 without writing its caches (a debug mode that only shows the
    data, a batch size that makes an empty loop) fails here, not later in training."""
    noun = "latent caches" if latents else "text-encoder caches"

    def check(_log: str) -> str | None:
        for folder, stems in expected:
            names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
            if latents:
                found = {latent_cache_stem(name) for name in names} & stems
            else:
                found = {s for s in stems if text_encoder_cache_file(Path(s)) in names}
            if len(found) < len(stems):
                return (
                    f"wrote {len(found)} of {len(stems)} {noun} in {display_path(folder)} (exit code 0"
                    " notwithstanding): training would find no data"
                )
        return None

    return check


def _samples_check(folder: Path, prompts: int) -> Callable[[str], str | None]:
    def check(_log: str) -> str | None:
        found = list((folder / "sample").glob("*.png")) if (folder / "sample").is_dir() else []
        if len(found) < prompts:
            return f"sampling at first wrote {len(found)} of {prompts} sample images"
        return None

    return check


def _outputs_check(folder: Path, kinds: tuple[Any, ...], prompts: int) -> Callable[[str], str | None]:
    """generate exits 0 even when every prompt failed: count the files it wrote instead."""

    def check(_log: str) -> str | None:
        for kind in kinds:
            found = list(folder.glob(kind.glob)) if folder.is_dir() else []
            if len(found) < prompts:
                return f"wrote {len(found)} of {prompts} {kind.noun} (exit code 0 notwithstanding)"
        return None

    return check


def _eval_check(log: str) -> str | None:
    events = [e for e in map(eval_protocol.parse_event, log.splitlines()) if e is not None]
    failed = [e.get("error") for e in events if e["event"] in ("checkpoint_failed", "error")]
    done = [e for e in events if e["event"] == "checkpoint_done"]
    if failed:
        return str(failed[0])
    if len(done) < 2:
        return f"scored {len(done)} of 2 checkpoints"
    return None


# --- running it ---------------------------------------------------------------------------------


_ERROR_LINE = re.compile(r"(Error|Exception|error:|ERROR|Traceback|failed|Failed)")


def _last_error_line(lines: list[str]) -> str | None:
    for line in reversed(lines):
        text = line.strip()
        if text and _ERROR_LINE.search(text) and not text.startswith(rehearse_protocol.EVENT_PREFIX):
            return text
    return None


class _Watch:
    """Reads the worker's events as they stream, splits its log by stage, and stops the worker
    when a stage runs past its time limit."""

    def __init__(self, rehearsal: Rehearsal, limit: float, say: Callable[[str], None]) -> None:
        self.by_name = {s.name: Outcome(s) for s in rehearsal.stages}
        self.current: Outcome | None = None
        self.limit, self.say = limit, say
        self.missing_kernels: list[str] = []
        self.notes: list[str] = []
        self.pid: int | None = None
        self.timer: threading.Timer | None = None
        self.hung: Outcome | None = None
        self.preamble: list[str] = []
        self.cuda = False

    def started(self, pid: int) -> None:
        self.pid = pid

    def _stop(self, outcome: Outcome) -> None:
        self.hung = outcome
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)

    def __call__(self, line: str) -> None:
        event = rehearse_protocol.parse_event(line)
        if event is None:
            (self.current.log if self.current else self.preamble).append(line)
            return
        kind = event["event"]
        if kind == "kernels":
            self.missing_kernels = list(event.get("missing", []))
            self.cuda = bool(event.get("cuda"))
        elif kind == "note":
            self.notes.append(str(event.get("text")))
        elif kind == "stage_started":
            outcome = self.by_name.get(event["stage"])
            self.current = outcome
            if outcome is not None:
                self.say(f"  {outcome.stage.name}: {outcome.stage.what} …")
                self.timer = threading.Timer(self.limit, self._stop, args=(outcome,))
                self.timer.daemon = True
                self.timer.start()
        elif kind == "stage_done":
            if self.timer:
                self.timer.cancel()
            outcome = self.by_name.get(event["stage"])
            if outcome is not None:
                outcome.code = int(event.get("code", 1))
                outcome.error, outcome.where = event.get("error"), event.get("where")
                outcome.frames = [str(f) for f in event.get("frames") or []]
                outcome.seconds = float(event.get("seconds", 0.0))
            self.current = None


def _pass_through_key(section: str, dest: str) -> tuple[str | int, ...] | None:
    sections = {
        "config": ("musubi", "config"),
        "generate": ("musubi", "generate"),
        "cache_latents": ("musubi", "cache_latents"),
        "cache_text_encoder": ("musubi", "cache_text_encoder"),
        "launch": ("launch", "extra"),
    }
    prefix = sections.get(section)
    return (*prefix, dest) if prefix else None


def _key_path(dotted_key: str) -> tuple[str | int, ...]:
    """`train.optimizer.type` → ('train', 'optimizer', 'type'); `infer.prompts[].width (…)` →
    ('infer', 'prompts')."""
    key = dotted_key.split(" ")[0].split("[")[0]
    return tuple(key.split("."))


def spec_lines(spec: Spec, stage: Stage, text: str) -> list[Problem]:
    """The spec lines that rendered the options `text` (an error and where it was raised) names:
    an option's name, or a value of it that the message quotes."""
    owners = rendered_options()
    found: dict[str, Problem] = {}
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_.\-]*", text))
    candidates: list[tuple[str, str, Any]] = [(stage.section, k, v) for k, v in stage.options.items()]
    candidates += [("launch", k, v) for k, v in spec.launch.extra.items()]
    for section, dest, value in candidates:
        named = dest in words
        shown = str(value)
        quoted = (
            isinstance(value, str)
            and len(shown) >= 3
            and "/" not in shown
            and (shown in words or f"'{shown}'" in text)
        )
        if not (named or quoted):
            continue
        table = owners.get(section, {})
        owner = table.get(dest)
        key: tuple[str | int, ...] | None
        if owner:
            key = _key_path(owner)
        elif spec.written(_pass_through_key(section, dest) or ()):
            key = _pass_through_key(section, dest)
        elif dest in DATASET_KEYS:
            key = _key_path(DATASET_KEYS[dest])
        else:
            key = None
        if key is None or dotted(key) in found:
            continue
        problem = spec.problem(key, f"renders {dest} = {shown}")
        found[dotted(key)] = problem
    for dest, owner in DATASET_KEYS.items():
        if dest in words and owner not in found:
            found[owner] = spec.problem(_key_path(owner), f"renders dataset key {dest}")
    return list(found.values())


AREAS: tuple[tuple[re.Pattern[str], tuple[tuple[str | int, ...], ...]], ...] = (
    (
        re.compile(r"networks/|:(create_arch_network|create_network|apply_to|prepare_optimizer_params)"),
        (("train", "network"), ("musubi", "config", "network_weights"), ("musubi", "config", "network_args")),
    ),
    (re.compile(r":get_optimizer|:get_scheduler|:get_lr_scheduler"), (("train", "optimizer"),)),
    (
        re.compile(r":(sample_images|sample_image_inference|do_inference|process_sample_prompts)"),
        (("sample",),),
    ),
    (re.compile(r"dataset/"), (("data",), ("datasets",), ("one_frame",))),
    (re.compile(r"fpack_generate_video.py:(generate|main|process_batch_prompts)"), (("infer",),)),
)
"""Where in musubi-tuner an error was raised → the spec sections that configure that part: an error
that quotes no option name (a network module that matched nothing, an optimizer argument of the
wrong kind, a prompt the sampler cannot run) still points at the lines the user wrote there."""


def _written_under(spec: Spec, prefix: tuple[str | int, ...]) -> list[tuple[str | int, ...]]:
    """The deepest keys the spec (or a file it extends) wrote under `prefix`, lists as a whole."""
    found = []
    for key in spec.written_keys():
        if key[: len(prefix)] == prefix and not any(isinstance(part, int) for part in key):
            found.append(key)
    leaves = [k for k in found if not any(o != k and o[: len(k)] == k for o in found)]
    return sorted(leaves, key=str)


def area_lines(spec: Spec, stage: Stage, frames: list[str]) -> list[Problem]:
    """The spec lines of the part of musubi-tuner the error came from, and the pass-through options
    of the failing script (settings fplora passes on unchecked)."""
    keys: list[tuple[str | int, ...]] = []
    if not frames and stage.section == "generate":
        frames = ["fpack_generate_video.py:generate"]  # a prompt failed inside generate's own loop
    for pattern, prefixes in AREAS:
        if any(pattern.search(frame) for frame in frames):
            for prefix in prefixes:
                keys += _written_under(spec, prefix)
    through = _pass_through_key(stage.section, "")
    if through is not None:
        keys += _written_under(spec, through[:-1])
    shown: list[Problem] = []
    for key in dict.fromkeys(keys):
        shown.append(spec.problem(key, "set here"))
    return shown


def _stage_kernels(stage: Stage) -> list[str]:
    """The attention kernel packages a stage's options select."""
    found = [module for option, module in ATTENTION_KERNELS.items() if stage.options.get(option) is True]
    mode = GENERATE_KERNELS.get(str(stage.options.get("attn_mode")))
    return found + ([mode] if mode else [])


def _compiles(stage: Stage) -> bool:
    """Whether a stage asks for torch.compile: musubi-tuner's `compile`, or accelerate's dynamo."""
    launch = _flag_options(stage.argv[: stage.argv.index("-m", 3)] if "-m" in stage.argv[3:] else [])
    dynamo = str(launch.get("dynamo_backend", "no")).lower()
    return stage.options.get("compile") is True or dynamo not in ("no", "true")


def _missing_package(text: str) -> str | None:
    """The package a failed stage's code imported and this Python lacks, from the worker's note on a
    missing top-level module or musubi-tuner's own `ImportError: No <package> / ...`."""
    found = MISSING_MODULE.search(text)
    return (found.group(1) or found.group(2)) if found else None


_NO_CUDA = re.compile(
    r"Torch not compiled with CUDA|Found no NVIDIA driver|No CUDA GPUs are available|CUDA driver version is"
    r" insufficient|CUDA driver initialization failed|torch\.cuda\.is_available\(\) is False"
)
"""torch's errors when code asks for CUDA on a machine without it."""

_DTYPE_MIX = re.compile(r"mixed dtype|should be the same|expected scalar type|Float8|same dtype")
"""torch's errors for tensors of two dtypes meeting in one operation."""
_CUDA_AUTOCAST = (
    (
        lambda o: o.get("mixed_precision") == "fp16",
        "mixed_precision fp16 runs under autocast, which accelerate gives fp16 only on a GPU (on a CPU it"
        " runs without, and the bf16 DiT meets fp32 inputs)",
    ),
    (
        lambda o: bool(o.get("fp8_base")) and not o.get("fp8_scaled"),
        "fp8_base without fp8_scaled keeps fp8 weights that CUDA's autocast casts for each operation;"
        " a CPU's autocast does not",
    ),
)
"""Training options whose code path relies on CUDA's autocast: without CUDA, a dtype error there is
the machine's (the rehearsal on the GPU box runs it)."""


def _machine_reason(python: str, outcome: Outcome, watch: _Watch) -> str | None:
    """Why this machine, not the spec, stopped a failed stage: an attention kernel that is not
    installed, (without CUDA) a code path that only runs on CUDA, or a package the code imports (an
    optimizer's, a logger's) that this Python lacks. None when it was the spec."""
    kernels = [m for m in _stage_kernels(outcome.stage) if m in watch.missing_kernels]
    if kernels:
        return f"the attention kernel {kernels[0]} is not installed in this musubi-tuner Python"
    text = f"{outcome.error or ''} {' '.join(outcome.log[-40:])}"
    if not watch.cuda and (found := _NO_CUDA.search(text)):
        return f"its code path needs CUDA, which this machine lacks ({found.group(0)})"
    if not watch.cuda and _DTYPE_MIX.search(outcome.error or ""):
        for needs_cuda, why in _CUDA_AUTOCAST:
            if needs_cuda(outcome.stage.options):
                return why
    if package := _missing_package(outcome.error or ""):
        return (
            f"the package {package} is not installed in this musubi-tuner Python ({display_path(python)});"
            " not a mistake in the spec if the machine that trains has it"
        )
    return None


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


@dataclass
class Result:
    passed: bool
    outcomes: list[Outcome]
    log: Path
    seconds: float
    notes: list[str]


def compile_cache() -> dict[str, str]:
    """torch.compile's caches for the worker, kept in the user's cache folder (inductor's default is
    under /tmp): a spec that compiles pays inductor's code generation for the stand-in DiT (~45 s on
    an H100) once per machine, and later rehearsals load the compiled graphs and kernels (what is
    left is tracing, ~10 s). Settings the user made are left as they are."""
    cache = user_cache()
    wanted = {
        "TORCHINDUCTOR_CACHE_DIR": str(cache / "torchinductor-rehearsal"),
        "TORCHINDUCTOR_FX_GRAPH_CACHE": "1",
        "TORCHINDUCTOR_AUTOGRAD_CACHE": "1",
    }
    return {key: value for key, value in wanted.items() if key not in os.environ}


def run(
    rehearsal: Rehearsal,
    python: str,
    *,
    say: Callable[[str], None],
    limit: float = STAGE_LIMIT,
) -> Result:
    """Write the rehearsal's files, run the worker, judge each stage."""
    root = rehearsal.root
    for folder in ("out", "cache", "data", "rendered"):
        shutil.rmtree(root / folder, ignore_errors=True)
    for path, text in rehearsal.files.items():
        write_atomic(path, text)
    for key in MODEL_KEYS[1:]:
        standin = root / "models" / key
        standin.mkdir(parents=True, exist_ok=True)
        target = standin / Path(getattr(rehearsal.spec.models, key)).name
        if not target.exists():
            target.write_bytes(b"")  # the stand-in loaders do not read it (the VAE's: the worker writes it)
    plan_file = root / "rendered" / "rehearsal-plan.json"
    stages = [
        {"name": s.name, "argv": s.argv, "needs": s.needs, "outputs": s.outputs, "steps": s.steps}
        for s in rehearsal.stages
    ]
    vae = root / "models" / "vae" / Path(rehearsal.spec.models.vae).name
    plan = {
        "protocol": rehearse_protocol.PROTOCOL,
        "dit_shards": [str(p) for p in rehearsal.dit_shards],
        "standin_cache": str(user_cache() / "rehearsal-standins"),
        "standin_loras": [{"source": str(s), "target": str(t)} for s, t in rehearsal.loras.items()],
        "vae": str(vae),
        "stages": stages,
    }
    write_atomic(plan_file, json.dumps(plan, indent=1) + "\n")
    log = root / "rehearsal.log"
    log.unlink(missing_ok=True)
    watch = _Watch(rehearsal, limit, say)
    env = {
        "WANDB_MODE": "offline",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        **compile_cache(),
    }
    started = time.monotonic()
    with open(os.devnull, "wb") as quiet:
        result = process.run(
            [python, str(WORKER), "--plan", str(plan_file)],
            env=env,
            log=log,
            on_line=watch,
            echo=quiet,
            on_start=watch.started,
            cwd=root,
        )
    if watch.timer:
        watch.timer.cancel()
    seconds = time.monotonic() - started
    swapped = sorted({s.name for s in rehearsal.stages if _int(s.options.get("blocks_to_swap")) > 0})
    if swapped and not watch.cuda:
        watch.notes.append(
            f"block swap ({', '.join(swapped)}): no CUDA here, so the block count was checked by"
            " musubi-tuner's own code and the swap ran its CPU-to-CPU path; the GPU's streams and the"
            " memory it saves are not exercised"
        )
    compiled = sorted({s.name for s in rehearsal.stages if _compiles(s)})
    if compiled and not watch.cuda:
        watch.notes.append(
            f"torch.compile ({', '.join(compiled)}): not rehearsed here (on a CPU it would build C++"
            " kernels for minutes, not the GPU's); musubi-tuner's compile options and code ran with the"
            " compile itself left out"
        )
    outcomes = [watch.by_name[s.name] for s in rehearsal.stages]
    selected = {k for s in rehearsal.stages for k in _stage_kernels(s)}
    for kernel in sorted(selected & set(watch.missing_kernels)):
        if not watch.cuda:
            users = ", ".join(s.name for s in rehearsal.stages if kernel in _stage_kernels(s))
            watch.notes.append(
                f"attention kernel {kernel} ({users}): not installed here (it needs CUDA); PyTorch's"
                " attention on the same tensors stood in for it, so everything around the kernel was"
                " rehearsed, the kernel itself runs only on the GPU box (install it there)"
            )
    failed_names: set[str] = set()
    unrehearsed: set[str] = set()
    for outcome in outcomes:
        stage = outcome.stage
        blocked = [n for n in stage.needs if n in failed_names]
        if watch.hung is outcome:
            outcome.problem = f"no result after {limit:.0f} s: it hangs (stopped)"
        elif outcome.code is None:
            waiting = [n for n in stage.needs if n in unrehearsed]
            if waiting and not blocked:
                outcome.not_rehearsed = f"it needs {', '.join(waiting)}, which could not run here"
                unrehearsed.add(stage.name)
                continue
            outcome.problem = (
                f"not run: {', '.join(blocked)} failed"
                if blocked
                else "not run (the rehearsal stopped before it)"
            )
        elif outcome.code != 0:
            outcome.problem = f"exit {outcome.code}"
        elif stage.check is not None:
            outcome.problem = stage.check("\n".join(outcome.log))
        if outcome.problem is None:
            continue
        machine = _machine_reason(python, outcome, watch) if outcome.code is not None else None
        if machine is not None and not watch.cuda:
            # without a GPU this code path cannot run at all: said, not failed (the GPU box's own
            # rehearsal, with CUDA and its kernels, runs it)
            outcome.problem, outcome.not_rehearsed = None, machine
            unrehearsed.add(stage.name)
            continue
        if machine is not None:
            outcome.problem = f"{machine}: install it here (the real run would fail the same way)"
        failed_names.add(stage.name)
    if result.interrupted and watch.hung is None:
        raise KeyboardInterrupt
    failures = [o for o in outcomes if o.problem is not None]
    return Result(
        passed=not failures,
        outcomes=outcomes,
        log=log,
        seconds=seconds,
        notes=rehearsal.notes + watch.notes,
    )


def describe_failure(rehearsal: Rehearsal, outcome: Outcome) -> list[str]:
    """What a failed stage prints: the stage, its command, musubi-tuner's last error line, where it
    was raised, and the spec lines that rendered the options involved."""
    stage = outcome.stage
    lines = [f"rehearsal failed at stage {stage.name} ({stage.what}): {outcome.problem}"]
    lines.append("  command: " + " ".join(_shown(a) for a in stage.argv))
    error = outcome.error or _last_error_line(outcome.log)
    if error:
        lines.append(f"  musubi-tuner: {error}")
    if outcome.where:
        lines.append(f"  raised at: {outcome.where}")
    text = " ".join([error or "", outcome.where or ""])
    named = spec_lines(rehearsal.spec, stage, text)
    if not named and not error and not outcome.frames:
        named = given_lines(rehearsal.spec, stage)  # a hang, or nothing written: no error to read
    for problem in named or area_lines(rehearsal.spec, stage, outcome.frames):
        lines.append(f"  spec: {problem}")
    return lines


def given_lines(spec: Spec, stage: Stage) -> list[Problem]:
    """The spec lines the user wrote that rendered the stage's options (model paths aside: the
    rehearsal replaces them) and, for caching, its dataset keys: where to look when a stage hangs
    or writes nothing, and so names no option in an error."""
    table = rendered_options().get(stage.section, {})
    keys: list[tuple[str | int, ...]] = []
    for dest in stage.options:
        owner = table.get(dest)
        key = _key_path(owner) if owner else _pass_through_key(stage.section, dest)
        if key and key[-1] not in MODEL_KEYS and spec.written(key):
            keys.append(key)
    if stage.section.startswith("cache"):
        keys += [_key_path(owner) for owner in DATASET_KEYS.values() if spec.written(_key_path(owner))]
    return [spec.problem(key, "set here") for key in dict.fromkeys(keys)]


def _shown(arg: str) -> str:
    return display_path(arg) if os.sep in arg and Path(arg).is_absolute() else arg


# --- remembering a pass -------------------------------------------------------------------------


def stamp_path(spec: Spec) -> Path:
    key = hashlib.sha256(str(spec.path.resolve()).encode()).hexdigest()[:12]
    return state_dir(spec) / "rehearsed" / f"{spec.path.stem}-{key}.json"


def passed_before(rehearsal: Rehearsal) -> str | None:
    """When this exact rehearsal last passed, or None."""
    try:
        data = json.loads(stamp_path(rehearsal.spec).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("fingerprint") != rehearsal.fingerprint:
        return None
    if data.get("not_rehearsed") and data.get("host") != socket.gethostname():
        return None  # a pass with stages this machine could not run: another machine may run them
    return str(data.get("passed", "?"))


def remember_pass(rehearsal: Rehearsal, seconds: float, not_rehearsed: list[str]) -> None:
    """A pass, with the stages this machine could not run (`not_rehearsed`): such a partial pass
    holds only on the host that made it, so the same project on the GPU box rehearses again there."""
    data = {
        "spec": str(rehearsal.spec.path),
        "fingerprint": rehearsal.fingerprint,
        "host": socket.gethostname(),
        "not_rehearsed": not_rehearsed,
        "passed": time.strftime("%Y-%m-%d %H:%M:%S"),
        "seconds": round(seconds, 1),
        "fplora": __version__,
        "musubi_tuner": schema.pinned_commit(),
    }
    write_atomic(stamp_path(rehearsal.spec), json.dumps(data, indent=1) + "\n")


def rehearse(
    spec: Spec,
    python: str,
    *,
    say: Callable[[str], None],
    force: bool = False,
    limit: float = STAGE_LIMIT,
    real: Plan | None = None,
    quiet_unchanged: bool = False,
) -> int:
    """`fplora rehearse`: build, skip when this exact rehearsal passed before (unless `force`), run,
    print the verdict. 0 when it passed, 1 when a stage failed. `quiet_unchanged`: the gate before
    another verb says nothing when it skips an unchanged rehearsal, so that verb's own output (and
    its one-line errors) stay as they were; `fplora rehearse` says it."""
    rehearsal = build(spec, python, real)
    when = None if force else passed_before(rehearsal)
    if when is not None:
        if not quiet_unchanged:
            say(f"rehearsal: unchanged since it passed at {when}: not run again (--force runs it)")
        return 0
    log = display_path(rehearsal.root / "rehearsal.log")
    say(f"rehearsal of {display_path(spec.path)} on stand-in models (log: {log})")
    for name, why in rehearsal.skipped:
        say(f"  {name}: skipped: {why}")
    result = run(rehearsal, python, say=say, limit=limit)
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
    remember_pass(rehearsal, result.seconds, unrehearsed)
    if unrehearsed:
        say(
            f"rehearsal passed in {result.seconds:.0f} s; not rehearsed on this machine:"
            f" {', '.join(unrehearsed)} (their code paths need what it lacks; see above)"
        )
        return 0
    say(f"rehearsal passed in {result.seconds:.0f} s")
    return 0


def run_rehearse(spec: Spec, *, force: bool = False, limit: float = STAGE_LIMIT) -> int:
    """`fplora rehearse SPEC`: the spec checked (model files aside: the rehearsal brings its own),
    then the rehearsal, unless this exact one passed before; the musubi-tuner Python is probed only
    when the rehearsal runs, so that an unchanged spec costs no process start."""
    from fplora.jobs.context import console, report

    out = console()
    records = RecordCache(spec)
    problems = check_spec(spec, skip_models=True, records=records)
    if any(p.severity == "error" for p in problems):
        raise UserError(problems)
    report(out, problems)
    python = python_for(spec)
    real = plans.build(spec, records=records)

    def say(text: str) -> None:
        out.print(escape(text), highlight=False)

    if force or passed_before(build(spec, python, real)) is None:
        ensure_musubi(python, ["musubi_tuner", "accelerate"])
    return rehearse(spec, python, say=say, force=force, limit=limit, real=real)


def gate(job: Job, *, skip: bool) -> int:
    """Before `train`, `cache`, `infer` or `eval` spend GPU time: rehearse what they render, unless
    `--no-rehearse`, a dry run, or nothing changed since the last passed rehearsal (then it costs a
    fingerprint: well under a second). 0 to go on, 1 when the rehearsal failed (it said why)."""
    if skip or job.dry_run or os.environ.get(SKIP_ENV) == "0":
        return 0
    return rehearse(job.plan.spec, job.python, say=job.say, real=job.plan, quiet_unchanged=True)
