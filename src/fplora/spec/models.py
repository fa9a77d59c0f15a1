"""The experiment spec: one Pydantic model per concern, unknown keys forbidden.

A spec names each fact once (the five model paths, the datasets, the one-frame settings, ...);
rendering turns it into musubi-tuner's files and command lines. Field names follow musubi-tuner's
option names where one exists, so that a user who knows musubi-tuner reads the spec at a glance.
Cross-field rules that need more than one section live in `spec.rules`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    PrivateAttr,
    field_validator,
    model_validator,
)

from fplora.musubi.names import LORA_NETWORK_MODULE
from fplora.problems import Problem, display_path, yaml_value
from fplora.spec.source import KeyPath, Loaded, dotted


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, populate_by_name=True)


class Models(Section):
    """The five model files. A sharded file (`-00001-of-00003`) implies its siblings."""

    dir: Path | None = Field(
        None, description="Folder that relative model paths below resolve against (else the spec's folder)."
    )
    dit: Path = Field(description="FramePack DiT (first shard when split).")
    vae: Path = Field(description="HunyuanVideo VAE.")
    text_encoder1: Path = Field(description="LLaMA text encoder (first shard when split).")
    text_encoder2: Path = Field(description="CLIP-L text encoder.")
    image_encoder: Path = Field(description="SigLIP image encoder.")
    fp8_llm: bool = Field(False, description="Load text encoder 1 in fp8 (caching, training, inference).")
    vae_chunk_size: PositiveInt | None = None
    vae_spatial_tile_sample_min_size: PositiveInt | None = None


MODEL_KEYS = ("dit", "vae", "text_encoder1", "text_encoder2", "image_encoder")
"""The model files of `Models`, in musubi-tuner's order; each is also its option name there."""


def _whole(value: Any) -> Any:
    """`"512"` → 512, as the other int fields coerce (a `${VAR}` expands to text)."""
    if isinstance(value, str) and value.strip().isdecimal():
        return int(value.strip())
    return value


def _resolution(value: Any) -> Any:
    """One error for a bad resolution, instead of one per branch of the union; numbers written as
    text (`"${W:-512}"`) are numbers, as in the other int fields."""
    value = [_whole(v) for v in value] if isinstance(value, list | tuple) else _whole(value)
    ok_int = isinstance(value, int) and not isinstance(value, bool) and value > 0
    pair = isinstance(value, list | tuple) and len(value) == 2
    if ok_int or (pair and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        return value
    raise ValueError("expects one positive int or [width, height] — write e.g. [512, 768]")


Resolution = Annotated[PositiveInt | tuple[PositiveInt, PositiveInt], BeforeValidator(_resolution)]


def width_height(resolution: int | tuple[int, int]) -> tuple[int, int]:
    """musubi-tuner's resolution, one int (square) or [width, height], as (width, height)."""
    return (resolution, resolution) if isinstance(resolution, int) else (resolution[0], resolution[1])


class DataDefaults(Section):
    """musubi-tuner's dataset.toml `[general]`: defaults for every dataset."""

    resolution: Resolution = Field((960, 544), description="[width, height] or one int.")
    batch_size: PositiveInt = 1
    num_repeats: PositiveInt = 1
    enable_bucket: bool = False
    bucket_no_upscale: bool = False
    caption_extension: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_cache_directory(cls, data: Any) -> Any:
        if isinstance(data, dict) and "cache_directory" in data:
            raise ValueError(
                "cache_directory cannot be set for all datasets (musubi-tuner rejects it in [general])"
                " — set it per dataset under datasets[], or leave it out and fplora derives one"
            )
        return data


class Dataset(Section):
    """One image dataset given as a JSONL metadata file (one record per line)."""

    jsonl: Path = Field(description="Metadata file: image_path, control_path_0..N, caption per line.")
    cache_directory: Path | None = Field(
        None, description="Latent/text-encoder cache; default: <render dir>/cache/<dataset dir>/<jsonl stem>."
    )
    resolution: Resolution | None = None
    batch_size: PositiveInt | None = None
    num_repeats: PositiveInt | None = None
    enable_bucket: bool | None = None
    bucket_no_upscale: bool | None = None
    caption_extension: str | None = None


class OneFrame(Section):
    """One-frame (1f) training: which latent indices the control images and the target take."""

    clean_indices: list[int] = Field(
        min_length=1, description="fp_1f_clean_indices: one index per control image every record must have."
    )
    target_index: int = Field(description="fp_1f_target_index.")
    no_post: bool = Field(False, description="fp_1f_no_post.")
    latent_window_size: PositiveInt | None = Field(None, description="fp_latent_window_size (default 9).")
    no_2x: bool = Field(False, description="Leave out 2x clean latents in caching and inference.")
    no_4x: bool = Field(False, description="Leave out 4x clean latents in caching and inference.")
    inference_modes: str | None = Field(
        None, description="Override the derived `--of` value (target_index=..,control_index=..,no_post)."
    )


Fraction = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]


class Evaluation(Section):
    """An evaluation split: records held out of training, scored per checkpoint by `fplora eval`.

    Exactly one of `records`, `fraction` or `jsonl` says which records. Held-out records get their
    own cache folder and dataset entry (musubi-tuner's trainer trains on every cache file in a
    dataset's folder), and the training dataset is handed to musubi-tuner as a filtered copy.
    """

    dataset: int = Field(0, ge=0, description="datasets[] entry that `records`/`fraction` hold out of.")
    records: list[PositiveInt] | None = Field(None, min_length=1, description="Lines held out (1-based).")
    fraction: Fraction | None = Field(
        None, description="Hold out about this share of records, by a hash of each image path and `seed`."
    )
    seed: int = Field(0, description="Which records `fraction` picks; a record never changes sides.")
    jsonl: Path | None = Field(None, description="A separate JSONL of evaluation records (none held out).")
    cache_directory: Path | None = Field(None, description="Default: <render dir>/cache/eval/<jsonl stem>.")
    timesteps: list[Fraction] = Field(
        default_factory=lambda: [0.1, 0.3, 0.5, 0.7, 0.9],
        min_length=1,
        description="Noise levels t in (0, 1) every record is scored at; one loss band each.",
    )
    noise_seed: int = Field(42, description="Seed of the fixed noise, the same for every checkpoint.")
    batch_size: PositiveInt = Field(
        1,
        description="Records per forward pass in `fplora eval`: memory and speed, not the scores (each"
        " record's noise is its own). On an H200 at 512x768, 8 per pass was no faster than 1.",
    )
    compile: bool | None = Field(
        None,
        description="torch.compile the DiT's blocks for scoring; default: as train.compile. On an H200"
        " (8 records) the first checkpoint took ~20 s longer to compile, later ones 7.6 s instead of"
        " 11.7: worth it from about six checkpoints.",
    )
    allow_training_records: bool = Field(
        False,
        description="Let evaluation records also be training records (a warning, not an error): for checking"
        " that the evaluation computes the training objective, never for choosing a checkpoint.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Evaluation:
        given = [key for key in ("records", "fraction", "jsonl") if getattr(self, key) is not None]
        if len(given) != 1:
            said = f"{' and '.join(given)} are both set" if given else "none is set"
            raise ValueError(
                f"give exactly one of records, fraction or jsonl ({said}) — e.g. `records: [3, 17]`,"
                " `fraction: 0.1` or `jsonl: eval.jsonl`"
            )
        return self


class Network(Section):
    module: str = LORA_NETWORK_MODULE
    dim: PositiveInt = 32
    alpha: PositiveFloat = 16
    args: list[str] = Field(default_factory=list)


class Optimizer(Section):
    type: str = Field("adamw8bit", min_length=1, description="musubi-tuner's optimizer_type.")
    args: list[str] = Field(default_factory=list)
    learning_rate: PositiveFloat = Field(
        1e-3, description="The learning rate at tuned_at_batch; without it, the value rendered as written."
    )
    tuned_at_batch: PositiveInt | None = Field(
        None,
        description="Effective batch the learning rate was tuned at; the rendered value follows the"
        " effective batch (batch × processes × accumulation) by lr_rule.",
    )
    lr_rule: Literal["sqrt", "linear", "none"] = Field(
        "sqrt", description="How the learning rate follows the batch: sqrt (the memo's), linear or none."
    )
    lr_scheduler: str | None = None
    lr_warmup_steps: Annotated[int, Field(ge=0)] | Annotated[float, Field(ge=0, lt=1)] | None = Field(
        None,
        description="Warmup steps, or a share of the run's steps below 1 (0.05: the first 5%), as"
        " musubi-tuner reads a float.",
    )
    max_grad_norm: float | None = None


class Logging(Section):
    log_with: Literal["wandb", "tensorboard", "all"] | None = Field("wandb", alias="with")
    tracker_name: str | None = Field(None, description="Default: the project name.")
    run_name: str | None = Field(None, description="wandb run name; default: the output name.")
    log_config: bool = True
    logging_dir: Path | None = None

    @property
    def to_wandb(self) -> bool:
        """Whether the run logs to wandb (`with: wandb`, or `all` beside tensorboard)."""
        return self.log_with in ("wandb", "all")


Attention = Literal["sdpa", "flash_attn", "xformers", "flash3", "sage_attn"]


class Train(Section):
    output_dir: Path = Field(description="Where checkpoints, states and training samples go.")
    output_name: str | None = Field(None, description="Default: <project>-<version>.")
    network: Network = Field(default_factory=Network)
    optimizer: Optimizer = Field(default_factory=Optimizer)
    max_train_steps: PositiveInt = 10000
    save_every_n_steps: PositiveInt | None = 100
    save_state: bool = True
    save_state_on_train_end: bool = True
    save_precision: Literal["bf16", "fp16", "float", "fp32"] = Field(
        "bf16", description="bf16 so that the pinned fpack_generate_video can merge the LoRA."
    )
    seed: int = 42
    mixed_precision: Literal["bf16", "fp16", "no"] = "bf16"
    attention: Attention = "sdpa"
    split_attn: bool = False
    gradient_checkpointing: bool = True
    gradient_accumulation_steps: PositiveInt = 1
    compile: bool = Field(
        False,
        description="torch.compile the DiT's blocks (musubi-tuner's --compile): the first step takes ~45 s"
        " longer, every later one less (10.8 against 15.3 s on an H200 at batch 1 × 16; docs/presets.md).",
    )
    blocks_to_swap: int | None = Field(None, ge=0)
    fp8_base: bool = False
    fp8_scaled: bool = False
    img_in_txt_in_offloading: bool = False
    timestep_sampling: str = "shift"
    discrete_flow_shift: float = 6.0
    max_data_loader_n_workers: int = Field(1, ge=0)
    persistent_data_loader_workers: bool = True
    logging: Logging = Field(default_factory=Logging)


PRESET_CHOSEN = (
    "gradient_accumulation_steps",
    "blocks_to_swap",
    "gradient_checkpointing",
    "fp8_base",
    "fp8_scaled",
    "compile",
    "split_attn",
)
"""`train` keys a GPU preset chooses unless the spec writes them; `null` in a spec that extends
another gives one back to the preset ("let fplora choose"), whatever its base wrote."""


class WithoutPreset(Section):
    """What a run gets where no GPU preset applies (no `gpu:`, or `gpu: auto` on a machine without a
    GPU), for the keys a preset would choose and `train:` leaves unwritten. A preset replaces these;
    a value written under `train:` pins the setting for every GPU instead."""

    blocks_to_swap: int | None = Field(None, ge=0)
    gradient_checkpointing: bool | None = None
    fp8_base: bool | None = None
    fp8_scaled: bool | None = None
    compile: bool | None = None
    split_attn: bool | None = None


class Prompt(Section):
    """One one-frame prompt: taken from a dataset record, or written out in full."""

    record: PositiveInt | None = Field(None, description="Line number (1-based) in the dataset's JSONL.")
    dataset: int = Field(0, ge=0, description="Index into datasets[] for `record`.")
    text: str | None = Field(None, description="Prompt text; default: the record's caption, verbatim.")
    image: Path | None = Field(None, description="Start image; default: the record's first control image.")
    control_images: list[Path] | None = Field(None, description="Default: the record's control images.")
    width: PositiveInt | None = None
    height: PositiveInt | None = None
    seed: int | None = None
    steps: PositiveInt | None = None
    guidance_scale: float | None = Field(
        None,
        ge=0,
        description="FramePack's distilled guidance (musubi-tuner's default 10): --g in training samples,"
        " --embedded_cfg_scale for `fplora infer` (one value per run).",
    )
    cfg_scale: float | None = Field(
        None,
        ge=0,
        description="Real classifier-free guidance with negative_prompt (default 1 = off; above 1 doubles"
        " the sampling work): --l in both prompt files.",
    )
    negative_prompt: str | None = Field(None, description="Used only with cfg_scale above 1.")

    @model_validator(mode="after")
    def _complete(self) -> Prompt:
        if self.record is None and (self.text is None or self.image is None or self.control_images is None):
            raise ValueError("a prompt needs `record:` or all of `text`, `image` and `control_images`")
        return self


class Sample(Section):
    """Sampling during training (musubi-tuner's sample_* options)."""

    at_first: bool = True
    every_n_steps: PositiveInt | None = 100
    seed: int = 42
    steps: PositiveInt = 20
    flow_shift: float | None = Field(
        None,
        description="Refused: FramePack's training sampler ignores a flow shift (see infer.flow_shift).",
        json_schema_extra={"refused": True},
    )
    prompts: list[Prompt] = Field(default_factory=list)

    @property
    def during_training(self) -> bool:
        """Whether training samples the prompts (its config then names the prompt file): at first or
        every n steps."""
        return bool(self.prompts) and bool(self.at_first or self.every_n_steps)

    @field_validator("flow_shift")
    @classmethod
    def _no_flow_shift(cls, value: float | None) -> None:
        if value is not None:
            raise ValueError(
                "musubi-tuner's FramePack training sampler ignores a flow shift: it never passes one on"
                " (fpack_train_network.py:321 and :450), so training samples always use FramePack's"
                " dynamic shift, as `fplora infer` does by default — remove it (infer.flow_shift sets a"
                " fixed shift for `fplora infer` alone)"
            )
        return None


class Infer(Section):
    """Batch inference with fpack_generate_video --from_file."""

    prompts: list[Prompt] | None = Field(None, description="Default: the sample prompts.")
    multipliers: list[Annotated[PositiveFloat, Field(allow_inf_nan=False)]] = Field(
        default_factory=lambda: [1.0], min_length=1
    )
    output_type: Literal["latent_images", "images", "latent", "both"] = "latent_images"
    save_dir: Path | None = Field(None, description="Default: <output_dir>/sample.")
    attention: Literal["sdpa", "flash", "torch", "sageattn", "xformers"] = "sdpa"
    blocks_to_swap: int | None = Field(None, ge=0, description="Default: train.blocks_to_swap.")
    fp8_scaled: bool = True
    seed: int | None = Field(None, description="Default: sample.seed, as training samples use.")
    steps: PositiveInt | None = Field(None, description="Default: sample.steps, as training samples use.")
    flow_shift: float | None = Field(
        None,
        gt=0,
        description="A fixed flow shift (--fs) for `fplora infer` only; default: FramePack's dynamic shift,"
        " the one training samples use.",
    )


class Launch(Section):
    """`accelerate launch` options for training (caching and inference always use one process)."""

    num_processes: PositiveInt = 1
    num_machines: PositiveInt = 1
    machine_rank: int = Field(0, ge=0)
    main_process_ip: str | None = None
    main_process_port: int | None = Field(None, ge=1, le=65535)
    mixed_precision: Literal["no", "fp16", "bf16", "fp8"] = "bf16"
    dynamo_backend: str = "no"
    num_cpu_threads_per_process: PositiveInt | None = 1
    gpu_ids: str | None = None
    extra: dict[str, Any] = Field(
        default_factory=dict, description="Any other `accelerate launch` option, by its dest name."
    )


class Musubi(Section):
    """Where musubi-tuner lives, and pass-through options fplora has no field for."""

    python: str | None = Field(
        None, description="Python that has musubi-tuner; env FPLORA_MUSUBI_PYTHON; default: this one."
    )
    config: dict[str, Any] = Field(default_factory=dict, description="Extra fpack_train_network keys.")
    cache_latents: dict[str, Any] = Field(default_factory=dict)
    cache_text_encoder: dict[str, Any] = Field(default_factory=dict)
    generate: dict[str, Any] = Field(default_factory=dict)


class RunPod(Section):
    stop_pod: Literal["never", "success", "always"] = Field(
        "never", description="Run `runpodctl stop pod $RUNPOD_POD_ID` when training ends."
    )


def _last_folders(jsonl: Path, depth: int) -> Path:
    """The JSONL's last `depth` folders joined by `-`, then its stem."""
    return Path("-".join(jsonl.parent.parts[-depth:])) / jsonl.stem


class Spec(Section):
    """A whole experiment version. `version` defaults to the spec file's stem (`v8`)."""

    project: str = Field(min_length=1, pattern=r"^[^/\\\s]+$", description="Project name, no spaces.")
    version: str = Field(min_length=1, pattern=r"^[^/\\\s]+$")
    models: Models
    data: DataDefaults = Field(default_factory=DataDefaults)
    datasets: list[Dataset] = Field(min_length=1)
    one_frame: OneFrame
    train: Train
    sample: Sample = Field(default_factory=Sample)
    infer: Infer = Field(default_factory=Infer)
    launch: Launch = Field(default_factory=Launch)
    musubi: Musubi = Field(default_factory=Musubi)
    runpod: RunPod = Field(default_factory=RunPod)
    gpu: str | None = Field(
        None,
        description="GPU preset (auto, h200, h100-80g, a6000-48g, 4090-24g): batch split, block swap,"
        " checkpointing and fp8 for this GPU; settings written in the spec win. See docs/presets.md.",
    )
    without_preset: WithoutPreset = Field(
        default_factory=WithoutPreset,
        description="train settings where no GPU preset applies; a preset chooses its own instead.",
    )
    price_per_hour: PositiveFloat | None = Field(
        None, description="What the GPU machine costs per hour, for `fplora train --dry-run`'s estimate."
    )
    eval: Evaluation | None = Field(None, description="An evaluation split for `fplora eval`.")

    _path: Path = PrivateAttr(default=Path("spec.yaml"))
    _sources: Loaded | None = PrivateAttr(default=None)  # where each key was written

    @classmethod
    def from_file(cls, data: dict[str, Any], loaded: Loaded) -> Spec:
        """Validate `data` (merged and resolved from `loaded`) into a spec that remembers its file and
        where each key was written, so that later problems point at the line. Raises ValidationError."""
        spec = cls.model_validate(data)
        spec._path = loaded.path
        spec._sources = loaded
        return spec

    @property
    def path(self) -> Path:
        """The spec file this was loaded from."""
        return self._path

    @property
    def load_warnings(self) -> list[Problem]:
        """What loading the spec file found odd but allowed (`spec.load`), shown by `fplora check`."""
        return list(self._sources.warnings) if self._sources is not None else []

    def problem(self, key_path: KeyPath, message: str, fix: str = "", severity: str = "error") -> Problem:
        """A problem about the spec itself, at the line that set `key_path` (no line for a spec built
        in code, which has no source map)."""
        if self._sources is not None:
            return self._sources.problem(key_path, message, fix, severity)
        return Problem(display_path(self._path), None, dotted(key_path), message, fix, severity)

    def prompts_of(self, section: str) -> tuple[str, list[Prompt]]:
        """The prompts `sample` or `infer` uses, with the section that holds them: `infer` without
        prompts of its own takes the sample prompts."""
        if section == "infer" and self.infer.prompts is not None:
            return "infer", self.infer.prompts
        return "sample", self.sample.prompts

    @property
    def render_dir(self) -> Path:
        """`configs/v8.yaml` renders into `configs/v8/`, the memo's layout."""
        return self._path.parent / self._path.stem

    @property
    def output_name(self) -> str:
        return self.train.output_name or f"{self.project}-{self.version}"

    @property
    def eval_index(self) -> int | None:
        """The index the evaluation split takes after the datasets, for cache and record functions
        that work per dataset entry (`dataset_entry`); None without an `eval:` section."""
        return len(self.datasets) if self.eval is not None else None

    @property
    def eval_compiles(self) -> bool:
        """Whether `fplora eval`'s worker compiles the DiT: `eval.compile`, else as training does
        (`train.compile`); False without an `eval:` section."""
        if self.eval is None:
            return False
        return self.train.compile if self.eval.compile is None else self.eval.compile

    @property
    def cache_entries(self) -> range:
        """The dataset entries `fplora cache` fills: every dataset, then the evaluation split."""
        return range(len(self.datasets) + (self.eval is not None))

    def dataset_entry(self, index: int) -> Dataset:
        """`datasets[index]`, or at `eval_index` the evaluation split as a dataset of its own: the
        settings of the dataset it is held out of (or `data:` for a separate JSONL), its own cache
        folder, every record once."""
        if index < len(self.datasets) or self.eval is None:
            return self.datasets[index]
        evaluation = self.eval
        source = self.datasets[evaluation.dataset] if evaluation.dataset < len(self.datasets) else None
        jsonl = evaluation.jsonl or (source.jsonl if source else Path("eval.jsonl"))
        inherited: dict[str, Any] = {}
        if evaluation.jsonl is None and source is not None:
            inherited = source.model_dump(exclude={"jsonl", "cache_directory"})
        inherited.update(num_repeats=1, batch_size=evaluation.batch_size)
        directory = evaluation.cache_directory or self.render_dir / "cache" / "eval" / jsonl.stem
        return Dataset(jsonl=jsonl, cache_directory=directory, **inherited)

    def cache_directory(self, index: int) -> Path:
        dataset = self.dataset_entry(index)
        if dataset.cache_directory is not None:
            return dataset.cache_directory
        return self.render_dir / "cache" / self._cache_name(dataset.jsonl)

    def _cache_name(self, jsonl: Path) -> Path:
        """`<folder>/<stem>` of the JSONL; where another dataset's JSONL gives the same
        (`x/data/metadata.jsonl` and `y/data/metadata.jsonl`), as many folders joined by `-` as tell
        them apart (`x-data/metadata`). Two such datasets were refused for sharing a cache_directory
        that neither spec wrote."""
        mine = jsonl.absolute()
        others = {d.jsonl.absolute() for d in self.datasets if d.cache_directory is None} - {mine}
        for depth in range(1, len(mine.parent.parts)):
            name = _last_folders(mine, depth)
            if all(_last_folders(other, depth) != name for other in others):
                return name
        return _last_folders(mine, 1)  # the same JSONL twice: a problem of its own (spec.rules)

    def dataset_value(self, index: int, key: str) -> Any:
        """A dataset setting with `data:` as the fallback, as musubi-tuner resolves it."""
        value = getattr(self.dataset_entry(index), key)
        return getattr(self.data, key) if value is None else value

    def effective_batch(self) -> int | None:
        """Samples per optimizer step (batch × processes × accumulation), or None when the datasets
        have batch sizes of their own that differ (each then has its own figure)."""
        per_process = {self.dataset_value(i, "batch_size") for i in range(len(self.datasets))}
        if len(per_process) != 1:
            return None
        (batch,) = per_process
        return int(batch) * self.launch.num_processes * self.train.gradient_accumulation_steps

    def written(self, key_path: KeyPath) -> bool:
        """Whether the spec (or a file it extends) wrote `key_path` itself rather than leaving it to
        the default: a GPU preset changes only what the user did not write."""
        return self._sources is not None and tuple(key_path) in self._sources.sources

    def written_in(self, key_path: KeyPath) -> Path | None:
        """The file that wrote `key_path` itself, or None where it is fplora's default."""
        return self._sources.sources[key_path].file if self.written(key_path) and self._sources else None

    def written_at(self, key_path: KeyPath) -> str:
        """Where the spec (or a file it extends) wrote `key_path`: `configs/base.yaml:40`."""
        source = self._sources.where(key_path) if self._sources is not None else None
        return display_path(self._path) if source is None else source.shown

    @property
    def unpinned(self) -> dict[KeyPath, str]:
        """Preset settings a spec gave back with `null`: key path → what the null replaced and where,
        `20 (configs/base.yaml:40), null at configs/v1.yaml:5`."""
        if self._sources is None:
            return {}
        found = {}
        for key_path, null in self._sources.unpinned.items():
            at = f"null at {null.shown}"
            if (was := self._sources.nulled.get(key_path)) is not None:
                value, source = was
                at = f"{yaml_value(value)} ({source.shown}), {at}"
            found[key_path] = at
        return found

    def written_keys(self) -> list[KeyPath]:
        """Every key path the spec (or a file it extends) wrote, in no particular order."""
        return list(self._sources.sources) if self._sources is not None else []

    def effective_batch_text(self) -> str:
        """Samples per optimizer step, as `fplora check` states it: the batch is per process and per
        dataset, so two GPUs double it and a dataset's own batch_size gives it its own figure. The
        memo's learning-rate rule of thumb is in terms of this number."""
        per_process = sorted({self.dataset_value(i, "batch_size") for i in range(len(self.datasets))})
        factor = self.launch.num_processes * self.train.gradient_accumulation_steps
        total = "/".join(str(batch * factor) for batch in per_process)
        if factor == 1:
            return f"effective batch {total}"
        parts = ["/".join(map(str, per_process))]
        if self.launch.num_processes > 1:
            parts.append(f"{self.launch.num_processes} processes")
        if self.train.gradient_accumulation_steps > 1:
            parts.append(f"{self.train.gradient_accumulation_steps} accumulation steps")
        return f"effective batch {total} ({' × '.join(parts)})"


def infer_distilled_guidance(spec: Spec) -> float | None:
    """The distilled guidance `fplora infer` gives generate (`--embedded_cfg_scale`, one value per
    run): the infer prompts' `guidance_scale`, which `spec.rules` holds equal; None when no prompt
    sets one, leaving generate's default, which is also the training samples' (10)."""
    _, prompts = spec.prompts_of("infer")
    values = [prompt.guidance_scale for prompt in prompts if prompt.guidance_scale is not None]
    return values[0] if values else None
