"""Spec → argument lists for `accelerate launch` and musubi-tuner's four entry points.

Everything goes through one launcher, `<python> -m accelerate.commands.launch`, with every launch
option given explicitly: accelerate otherwise fills missing options from a user's default config
file, which would let a file outside the spec change the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fplora.musubi import schema
from fplora.musubi.names import (
    ACCELERATE_LAUNCH_MODULE,
    GENERATE_DISTILLED_GUIDANCE,
    LATENT_WINDOW_SIZE,
    MODULES,
    SCRIPTS,
)
from fplora.render.files import RenderedPaths
from fplora.spec.models import Spec, infer_distilled_guidance


def flags(options: Mapping[str, Any], step: str | None) -> list[str]:
    """`{dest: value}` → argv for `step`'s script (`None`: accelerate launch): for an option without
    a value (store_true), true → bare flag and false → nothing; None → nothing; list → flag + items;
    a boolean for an option that reads a value goes as its word (`--compile_dynamic false`), as
    `schema.argv_value_problem` judges it."""
    known = schema.accelerate_options() if step is None else schema.script_options(SCRIPTS[step])
    argv: list[str] = []
    for dest, value in options.items():
        option = known.get(dest)
        flag = option.flag if option else f"--{dest}"
        valued = option is not None and option.takes_value
        if value is None or (value is False and not valued):
            continue
        if value is True and not valued:
            argv.append(flag)
        elif isinstance(value, list | tuple):
            argv += [flag, *(schema.argv_text(v) for v in value)]
        else:
            argv += [flag, schema.argv_text(value)]
    return argv


def launch_options(spec: Spec, *, training: bool) -> dict[str, Any]:
    """accelerate options: the spec's for training, one process for caching and inference."""
    launch = spec.launch
    if not training:
        return {
            "num_processes": 1,
            "num_machines": 1,
            "mixed_precision": launch.mixed_precision,
            "dynamo_backend": "no",
            "num_cpu_threads_per_process": launch.num_cpu_threads_per_process,
        }
    options: dict[str, Any] = {
        "multi_gpu": launch.num_processes > 1,
        "num_processes": launch.num_processes,
        "num_machines": launch.num_machines,
        "mixed_precision": launch.mixed_precision,
        "dynamo_backend": launch.dynamo_backend,
        "num_cpu_threads_per_process": launch.num_cpu_threads_per_process,
        "gpu_ids": launch.gpu_ids,
    }
    if launch.num_machines > 1:
        options["machine_rank"] = launch.machine_rank
        options["main_process_ip"] = launch.main_process_ip
        options["main_process_port"] = launch.main_process_port
    options.update(launch.extra)
    return options


def _launch(python: str, spec: Spec, *, training: bool, step: str) -> list[str]:
    accel = flags(launch_options(spec, training=training), None)
    return [python, "-m", ACCELERATE_LAUNCH_MODULE, *accel, "-m", MODULES[step]]


def _cache_config(spec: Spec, paths: RenderedPaths) -> Path:
    """The cache scripts fill the evaluation split with the datasets, in one load of the encoders."""
    return paths.cache_dataset if spec.eval is not None else paths.dataset


def cache_latents(
    spec: Spec, paths: RenderedPaths, python: str, *, dataset_config: Path | None = None
) -> list[str]:
    """`dataset_config`: the file to cache from (default the rendered one; `fplora cache` gives its
    staging file, see `jobs.cache`)."""
    models, one_frame = spec.models, spec.one_frame
    options: dict[str, Any] = {
        "dataset_config": dataset_config or _cache_config(spec, paths),
        "vae": models.vae,
        "image_encoder": models.image_encoder,
        "vae_chunk_size": models.vae_chunk_size,
        "vae_spatial_tile_sample_min_size": models.vae_spatial_tile_sample_min_size,
        "one_frame": True,
        "one_frame_no_2x": one_frame.no_2x,
        "one_frame_no_4x": one_frame.no_4x,
        **spec.musubi.cache_latents,
    }
    return _launch(python, spec, training=False, step="cache_latents") + flags(options, "cache_latents")


def cache_text_encoder(
    spec: Spec, paths: RenderedPaths, python: str, *, dataset_config: Path | None = None
) -> list[str]:
    models = spec.models
    options: dict[str, Any] = {
        "dataset_config": dataset_config or _cache_config(spec, paths),
        "text_encoder1": models.text_encoder1,
        "text_encoder2": models.text_encoder2,
        "fp8_llm": models.fp8_llm,
        **spec.musubi.cache_text_encoder,
    }
    return _launch(python, spec, training=False, step="cache_text_encoder") + flags(
        options, "cache_text_encoder"
    )


def train(
    spec: Spec,
    paths: RenderedPaths,
    python: str,
    *,
    output_name: str | None = None,
    resume: Path | None = None,
    max_train_steps: int | None = None,
    log_tracker_config: Path | None = None,
) -> list[str]:
    """Training reads the rendered config; a resumed segment's own name, state, remaining steps and
    wandb run (`render/tracker.py`) go on the command line, which wins over the TOML."""
    options: dict[str, Any] = {
        "config_file": paths.resume_config if resume else paths.config,
        "output_name": output_name,
        "resume": resume,
        "max_train_steps": max_train_steps,
        "log_tracker_config": log_tracker_config,
    }
    return _launch(python, spec, training=True, step="train") + flags(options, "train")


SWEEP_WORKER = Path(__file__).resolve().parents[1] / "worker" / "sweep.py"
"""fplora's sweep worker, package data run by the musubi-tuner Python as a file (it need not have
fplora installed); no module of fplora imports it."""


def infer_blocks_to_swap(spec: Spec) -> int:
    """The DiT blocks generate swaps: `infer.blocks_to_swap`, else training's."""
    infer, train = spec.infer, spec.train
    blocks = infer.blocks_to_swap if infer.blocks_to_swap is not None else train.blocks_to_swap
    return blocks or 0


def _generate_options(spec: Spec, paths: RenderedPaths) -> dict[str, Any]:
    """generate's options that every (LoRA, multiplier) of one infer shares."""
    models, infer = spec.models, spec.infer
    blocks = infer_blocks_to_swap(spec)
    return {
        "fp8_scaled": infer.fp8_scaled,
        "fp8_llm": models.fp8_llm,
        "from_file": paths.infer_prompts,
        "output_type": infer.output_type,
        "dit": models.dit,
        "vae": models.vae,
        "text_encoder1": models.text_encoder1,
        "text_encoder2": models.text_encoder2,
        "image_encoder": models.image_encoder,
        "vae_spatial_tile_sample_min_size": models.vae_spatial_tile_sample_min_size,
        "vae_chunk_size": models.vae_chunk_size,
        "blocks_to_swap": blocks or None,
        "attn_mode": infer.attention,
        # as many steps as training samples take unless infer says otherwise (a prompt's own `steps`
        # is on its line); seeds, CFG and flow shift are on each line (render/prompts.py), the
        # distilled guidance and the latent window are whole-run options of generate
        "infer_steps": infer.steps or spec.sample.steps,
        GENERATE_DISTILLED_GUIDANCE: infer_distilled_guidance(spec),
        LATENT_WINDOW_SIZE["generate"]: spec.one_frame.latent_window_size,
    }


def generate(
    spec: Spec,
    paths: RenderedPaths,
    python: str,
    *,
    lora: Path,
    multiplier: float,
    save_path: Path,
) -> list[str]:
    options: dict[str, Any] = {
        **_generate_options(spec, paths),
        # one multiplier per weight: without it the pinned generate script crashes
        "lora_weight": [lora],
        "lora_multiplier": [multiplier],
        "save_path": save_path,
        **spec.musubi.generate,
    }
    return _launch(python, spec, training=False, step="generate") + flags(options, "generate")


def sweep_generate_args(spec: Spec, paths: RenderedPaths) -> list[str]:
    """generate's options for the sweep worker's plan: those of `generate` without the LoRA and the
    folder, which the worker sets per cell. The worker hands them to generate's own parser, so a cell
    runs with exactly the options of the separate run."""
    return flags({**_generate_options(spec, paths), **spec.musubi.generate}, "generate")


EVAL_WORKER = Path(__file__).resolve().parents[1] / "worker" / "eval.py"
"""fplora's evaluation worker, package data run by the musubi-tuner Python as a file."""


def eval_worker(spec: Spec, python: str, plan_file: Path) -> list[str]:
    """`accelerate launch <eval worker file> --plan <file>`, with one process (as caching)."""
    accel = flags(launch_options(spec, training=False), None)
    return [python, "-m", ACCELERATE_LAUNCH_MODULE, *accel, str(EVAL_WORKER), "--plan", str(plan_file)]


def sweep(spec: Spec, python: str, plan_file: Path) -> list[str]:
    """`accelerate launch <worker file> --plan <file>`, with inference's launch options."""
    accel = flags(launch_options(spec, training=False), None)
    return [python, "-m", ACCELERATE_LAUNCH_MODULE, *accel, str(SWEEP_WORKER), "--plan", str(plan_file)]
