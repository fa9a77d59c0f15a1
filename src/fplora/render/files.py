"""Spec → musubi-tuner's `config.toml` and `dataset.toml`, as pure functions returning text.

Only `fpack_train_network` reads a config file; its keys are argparse dest names and its values
skip argparse's conversion, so every value is written with its real TOML type. Booleans are
written only when true (every boolean option is a store_true flag that defaults to false).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from fplora import __version__
from fplora.musubi.names import LATENT_WINDOW_SIZE
from fplora.spec.learning_rate import derive
from fplora.spec.models import MODEL_KEYS, Spec

HEADER_MARK = "# fplora-spec: "


@dataclass(frozen=True)
class RenderedPaths:
    """Where the rendered files of one spec live (`configs/v8/` for `configs/v8.yaml`)."""

    dir: Path

    @property
    def config(self) -> Path:
        return self.dir / "config.toml"

    @property
    def resume_config(self) -> Path:
        return self.dir / "config-resume.toml"

    @property
    def tracker(self) -> Path:
        """musubi-tuner's `log_tracker_config`: the wandb run (`render/tracker.py`)."""
        return self.dir / "tracker.toml"

    def segment_tracker(self, segment: int) -> Path:
        """A resumed segment's own `log_tracker_config` (its own wandb run)."""
        return self.dir / f"tracker-r{segment}.toml"

    @property
    def dataset(self) -> Path:
        return self.dir / "dataset.toml"

    @property
    def cache_dataset(self) -> Path:
        """The datasets and the evaluation split, for the cache scripts: one load of the encoders."""
        return self.dir / "cache-dataset.toml"

    @property
    def eval_dataset(self) -> Path:
        """The evaluation split alone, for `fplora eval`; never given to the trainer."""
        return self.dir / "eval-dataset.toml"

    @property
    def sample_prompts(self) -> Path:
        return self.dir / "prompts.txt"

    @property
    def infer_prompts(self) -> Path:
        return self.dir / "infer-prompts.txt"


def header(spec: Spec) -> str:
    """First lines of every rendered file: who wrote it, from which spec (used by the clobber guard)."""
    return (
        f"# Rendered by fplora {__version__} from {spec.path.name}. Edit the spec, not this file.\n"
        f"{HEADER_MARK}{spec.path}\n"
    )


def _put(table: dict[str, Any], key: str, value: Any) -> None:
    """Set a key unless it is None or False (store_true options default to false)."""
    if value is None or value is False or value == []:
        return
    table[key] = value


def _path(value: Path | None) -> str | None:
    return None if value is None else str(value)


def config_dict(spec: Spec, paths: RenderedPaths, *, resume: bool = False) -> dict[str, Any]:
    """The `--config_file` mapping for `fpack_train_network` (pass-through keys win).

    `resume` leaves out `sample_at_first`: a store_true flag cannot be switched off from the
    command line, and a resumed segment would otherwise sample its starting state again.
    """
    models, train = spec.models, spec.train
    sample, logging = spec.sample, train.logging
    config: dict[str, Any] = {}
    for key in MODEL_KEYS:
        config[key] = str(getattr(models, key))
    config["dataset_config"] = str(paths.dataset)
    _put(config, "blocks_to_swap", train.blocks_to_swap)
    _put(config, "split_attn", train.split_attn)
    _put(config, "img_in_txt_in_offloading", train.img_in_txt_in_offloading)
    config["seed"] = train.seed
    config["mixed_precision"] = train.mixed_precision
    config[train.attention] = True
    config["network_module"] = train.network.module
    config["network_dim"] = train.network.dim
    config["network_alpha"] = float(train.network.alpha)
    _put(config, "network_args", train.network.args)
    config["optimizer_type"] = train.optimizer.type
    _put(config, "optimizer_args", train.optimizer.args)
    config["learning_rate"] = derive(spec).value  # follows the effective batch (spec/learning_rate.py)
    _put(config, "lr_scheduler", train.optimizer.lr_scheduler)
    _put(config, "lr_warmup_steps", train.optimizer.lr_warmup_steps)
    _put(config, "max_grad_norm", train.optimizer.max_grad_norm)
    _put(config, "gradient_checkpointing", train.gradient_checkpointing)
    _put(config, "compile", train.compile)
    if train.gradient_accumulation_steps != 1:
        config["gradient_accumulation_steps"] = train.gradient_accumulation_steps
    config["max_data_loader_n_workers"] = train.max_data_loader_n_workers
    _put(config, "persistent_data_loader_workers", train.persistent_data_loader_workers)
    config["max_train_steps"] = train.max_train_steps
    config["timestep_sampling"] = train.timestep_sampling
    config["discrete_flow_shift"] = float(train.discrete_flow_shift)
    _put(config, "fp8_base", train.fp8_base)
    _put(config, "fp8_scaled", train.fp8_scaled)
    _put(config, "save_every_n_steps", train.save_every_n_steps)
    _put(config, "save_state", train.save_state)
    _put(config, "save_state_on_train_end", train.save_state_on_train_end)
    config["save_precision"] = train.save_precision
    config["output_dir"] = str(train.output_dir)
    config["output_name"] = spec.output_name
    if logging.log_with:
        config["log_with"] = logging.log_with
        config["log_tracker_name"] = logging.tracker_name or spec.project
        _put(config, "wandb_run_name", logging.run_name)
        if logging.to_wandb:
            # the run's name, id, tags and the spec as config; replaces wandb_run_name (render/tracker.py)
            config["log_tracker_config"] = str(paths.tracker)
        _put(config, "log_config", logging.log_config)
    logging_dir = logging.logging_dir
    if logging_dir is None and logging.log_with in ("tensorboard", "all"):
        logging_dir = train.output_dir / "logs"  # musubi-tuner refuses tensorboard without one
    _put(config, "logging_dir", _path(logging_dir))
    if sample.during_training:
        _put(config, "sample_at_first", sample.at_first and not resume)
        _put(config, "sample_every_n_steps", sample.every_n_steps)
        config["sample_prompts"] = str(paths.sample_prompts)
    _put(config, "fp8_llm", models.fp8_llm)
    _put(config, "vae_chunk_size", models.vae_chunk_size)
    _put(config, "vae_spatial_tile_sample_min_size", models.vae_spatial_tile_sample_min_size)
    config["one_frame"] = True
    # training samples place the clean latents after the window the caches were made with
    _put(config, LATENT_WINDOW_SIZE["train"], spec.one_frame.latent_window_size)
    config.update(spec.musubi.config)
    return config


def _resolution(value: int | tuple[int, int]) -> int | list[int]:
    return value if isinstance(value, int) else list(value)


def dataset_dict(
    spec: Spec, jsonls: list[Path] | None = None, entries: Sequence[int] | None = None
) -> dict[str, Any]:
    """dataset.toml: `[general]` from `data:`, one `[[datasets]]` per dataset with the one-frame keys.

    `jsonls` replaces the JSONL paths, by entry index (fplora's copies: absolute paths, without
    held-out records). `entries` picks dataset entries (`Spec.dataset_entry`; default: the datasets),
    so the evaluation split gets a file of its own and one with the datasets for caching.
    """
    data, one_frame = spec.data, spec.one_frame
    general: dict[str, Any] = {"resolution": _resolution(data.resolution)}
    _put(general, "caption_extension", data.caption_extension)
    general["batch_size"] = data.batch_size
    if data.num_repeats != 1:
        general["num_repeats"] = data.num_repeats
    general["enable_bucket"] = data.enable_bucket
    general["bucket_no_upscale"] = data.bucket_no_upscale
    datasets = []
    for index in range(len(spec.datasets)) if entries is None else entries:
        dataset = spec.dataset_entry(index)
        entry: dict[str, Any] = {
            "image_jsonl_file": str(jsonls[index] if jsonls else dataset.jsonl),
            "cache_directory": str(spec.cache_directory(index)),
        }
        for key in ("resolution", "batch_size", "num_repeats", "enable_bucket", "bucket_no_upscale"):
            value = getattr(dataset, key)
            if value is not None:
                entry[key] = _resolution(value) if key == "resolution" else value
        _put(entry, "caption_extension", dataset.caption_extension)
        entry["fp_1f_clean_indices"] = list(one_frame.clean_indices)
        entry["fp_1f_target_index"] = one_frame.target_index
        entry["fp_1f_no_post"] = one_frame.no_post
        _put(entry, LATENT_WINDOW_SIZE["dataset"], one_frame.latent_window_size)
        datasets.append(entry)
    return {"general": general, "datasets": datasets}


def config_toml(spec: Spec, paths: RenderedPaths, *, resume: bool = False) -> str:
    return header(spec) + tomli_w.dumps(config_dict(spec, paths, resume=resume))


def dataset_toml(spec: Spec, jsonls: list[Path] | None = None, entries: Sequence[int] | None = None) -> str:
    return header(spec) + tomli_w.dumps(dataset_dict(spec, jsonls, entries))
