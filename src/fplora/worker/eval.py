"""fplora's evaluation worker: the training loss of many checkpoints on held-out records, one load.

Runs inside the musubi-tuner Python, started by `fplora eval` as
`<python> -m accelerate.commands.launch <options> <this file> --plan <plan.json>`.

Why it exists: musubi-tuner has no validation loss. This worker computes the one-frame
flow-matching loss that training minimises, on the evaluation split's cached latents and
text-encoder outputs, for each checkpoint in turn: the DiT is loaded once, a LoRA network is applied
to it once, and each checkpoint's weights are loaded into that network. Every number comes from
musubi-tuner's own code: its argument parser and config reader on the run's `config.toml`, its
`FramePackNetworkTrainer` to load the DiT (block swap and fp8 as configured) and to compute the loss
(`process_batch`: noisy input, `call_dit`, `compute_loss`), its dataset reader on
`eval-dataset.toml`, and the run's network module to build and load the LoRA.

What makes the numbers comparable between checkpoints: every record is scored at the same noise levels t
(the plan's `timesteps`, used as they are: timestep sampling is set to `uniform` so that musubi-tuner
takes a given t unchanged, without shift) with the same noise (drawn once per record and t from
`noise_seed`, in the records' order, before any checkpoint: a record's noise does not depend on how many
records share a forward pass, so `eval.batch_size` changes the speed, not the question). The loss at
each t is a band; the checkpoint's loss is the mean over bands. `untrained` is the network with its
up-projections zeroed, as musubi-tuner initialises a LoRA: the DiT alone. The multiplier stays 1 for
every checkpoint, so that a compiled DiT (`compile` in the plan, as training's `--compile`) is
compiled once.

Protocol (fplora's side: `fplora/runs/evaluation.py`):
- in: a JSON plan, `{"protocol": 1, "config_file", "dataset_config", "timesteps": [t...],
  "noise_seed", "compile" (optional, false), "checkpoints": [{"id", "label", "lora" (a path, or null for
  untrained)}]}`;
- out: one JSON object per line on stdout, each starting with `EVENT_PREFIX`: `started`, `phase`,
  `ready` (records, batches, seconds), `checkpoint_started`, `checkpoint_done` (loss, bands,
  seconds) / `checkpoint_failed` (error), `finished`, or `error` when the models cannot be prepared;
- exit code: 0 when every checkpoint was scored, 1 when one failed (the others still ran), 2 when
  the plan could not be read or the models not prepared.

Only the standard library is imported at module level, so that fplora's tests can run this file
with a stand-in backend where torch is not installed.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

PROTOCOL = 1
EVENT_PREFIX = "fplora-eval-event "
"""Marks the worker's event lines among musubi-tuner's own output on the same stream."""

Emit = Callable[..., None]


def _load_common() -> Any:
    """`common.py` beside this file (what the workers share), loaded by its path: the musubi-tuner
    Python that runs this file need not have fplora installed."""
    name = "fplora_worker_common"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("common.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


common = _load_common()
emit: Emit = common.emitter(EVENT_PREFIX)


@dataclass(frozen=True)
class Checkpoint:
    id: str
    label: str
    lora: str | None  # None: the untrained network


@dataclass(frozen=True)
class Plan:
    config_file: str
    dataset_config: str
    timesteps: list[float]
    noise_seed: int
    checkpoints: list[Checkpoint]
    compile: bool = False  # torch.compile the DiT's blocks, as training does with --compile


def read_plan(path: Path) -> Plan:
    raw = common.read_plan_json(path, PROTOCOL)
    try:
        checkpoints = [
            Checkpoint(str(c["id"]), str(c["label"]), None if c["lora"] is None else str(c["lora"]))
            for c in raw["checkpoints"]
        ]
        timesteps = [float(t) for t in raw["timesteps"]]
        plan = Plan(
            str(raw["config_file"]),
            str(raw["dataset_config"]),
            timesteps,
            int(raw["noise_seed"]),
            checkpoints,
            bool(raw.get("compile", False)),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise common.PlanError(f"malformed plan {path}: {error!r}") from None
    if not timesteps or not all(0.0 < t < 1.0 for t in timesteps):
        raise common.PlanError(f"malformed plan {path}: timesteps must be in (0, 1), got {timesteps}")
    return plan


class Backend(Protocol):
    """What computes the loss: musubi-tuner's trainer here, a stand-in in fplora's tests."""

    def prepare(self, plan: Plan, emit: Emit) -> tuple[int, int]:
        """Load the DiT and the network, read the records and draw the noise: (records, batches)."""
        ...

    def score(self, checkpoint: Checkpoint, emit: Emit) -> list[float]:
        """The mean loss over the records at each of the plan's timesteps, in order."""
        ...


def run(plan: Plan, backend: Backend) -> int:
    """Prepare once, then score every checkpoint; a failing checkpoint is reported, the next runs."""
    started = time.monotonic()
    emit("started", protocol=PROTOCOL, checkpoints=len(plan.checkpoints), pid=os.getpid())
    try:
        records, batches = backend.prepare(plan, emit)
    except SystemExit as exit_:  # musubi-tuner's parser or config reader gave up (argparse exits 2)
        emit("error", error=f"musubi-tuner's training parser stopped (exit {exit_.code}): see the log")
        return 2
    except Exception as error:
        traceback.print_exc()
        emit("error", error=common.reason(error))
        return 2
    emit("ready", records=records, batches=batches, seconds=round(time.monotonic() - started, 3))
    failed = 0
    for index, checkpoint in enumerate(plan.checkpoints):
        emit("checkpoint_started", id=checkpoint.id, index=index, label=checkpoint.label)
        begin = time.monotonic()
        try:
            bands = [float(loss) for loss in backend.score(checkpoint, emit)]
            if len(bands) != len(plan.timesteps) or not all(math.isfinite(b) for b in bands):
                raise ValueError(f"not a finite loss per timestep: {bands}")
        except Exception as error:  # a LoRA of another shape, out of memory: this checkpoint only
            traceback.print_exc()
            failed += 1
            seconds = round(time.monotonic() - begin, 3)
            emit("checkpoint_failed", id=checkpoint.id, error=common.reason(error), seconds=seconds)
            continue
        seconds = round(time.monotonic() - begin, 3)
        bands_out = [{"t": t, "loss": b} for t, b in zip(plan.timesteps, bands, strict=True)]
        loss = sum(bands) / len(bands)
        emit("checkpoint_done", id=checkpoint.id, loss=loss, bands=bands_out, seconds=seconds)
    emit(
        "finished",
        done=len(plan.checkpoints) - failed,
        failed=failed,
        seconds=round(time.monotonic() - started, 3),
    )
    return 1 if failed else 0


class MusubiBackend:
    """musubi-tuner's `FramePackNetworkTrainer`, driven through the seams its `train` uses."""

    def __init__(self) -> None:
        self.calls: Any = None  # musubi_calls.py
        self.torch: Any = None
        self.trainer: Any = None
        self.args: Any = None
        self.accelerator: Any = None
        self.transformer: Any = None
        self.network: Any = None
        self.scheduler: Any = None
        self.dit_dtype: Any = None
        self.network_dtype: Any = None
        self.timesteps: list[float] = []
        self.batches: list[dict[str, Any]] = []
        self.noise: list[list[Any]] = []  # [batch][timestep]
        self.compiling = False  # until the first checkpoint's forward passes have compiled the blocks

    def _args(self, plan: Plan) -> Any:
        args = self.calls.training_args(plan.config_file)
        # as fpack_train_network.main fixes them
        args.vae_dtype, args.dit_dtype, args.sample_solver = "float16", "bfloat16", "unipc"
        args.dataset_config = plan.dataset_config
        # a given t is used unchanged only by uniform sampling without a [min, max] range
        args.timestep_sampling = "uniform"
        args.min_timestep = args.max_timestep = None
        args.preserve_distribution_shape = False
        args.num_timestep_buckets = None
        args.gradient_checkpointing = False  # no backward pass here
        args.sample_prompts = None
        # no tracker: musubi-tuner's prepare_accelerator turns a logging_dir into tensorboard, and an
        # evaluation's events must not land among the run's training logs
        args.log_with = args.logging_dir = None
        # the collator reads the dataset itself only when loading happens in this process
        args.max_data_loader_n_workers = 0
        args.compile = plan.compile  # with the run's compile_backend, _mode, _dynamic, ...
        return args

    def prepare(self, plan: Plan, emit: Emit) -> tuple[int, int]:
        import torch

        calls = common.musubi_calls()
        calls.require_pinned_calls()
        self.calls, self.torch, self.timesteps = calls, torch, plan.timesteps
        args = self._args(plan)
        trainer = calls.trainer(args)
        self.trainer, self.args = trainer, args

        emit("phase", phase="reading the evaluation records' caches")
        dataset = calls.build_dataset(trainer, args)
        loader = torch.utils.data.DataLoader(
            dataset.group, batch_size=1, shuffle=False, collate_fn=dataset.collator, num_workers=0
        )
        records = 0
        for batch in loader:
            kept = {k: (v.to("cpu") if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
            self.batches.append(kept)
            records += int(kept["latents"].shape[0])

        emit("phase", phase="loading the DiT")
        dtypes = calls.accelerator_and_dtypes(trainer, args)
        accelerator, dit_dtype, dit_weight_dtype = (
            dtypes.accelerator,
            dtypes.dit_dtype,
            dtypes.dit_weight_dtype,
        )
        transformer = calls.load_dit_and_swap(trainer, args, accelerator, dit_weight_dtype)
        if dit_weight_dtype != dit_dtype and dit_weight_dtype is not None:
            transformer.to(dit_weight_dtype)  # as training casts it
        if calls.blocks_to_swap(trainer):
            # forwards only, many of them: the way training's own sampling runs a swapping DiT
            # (trainer_base.sample_images), not the training loop's forward-and-backward setup
            calls.swap_for_inference(transformer, accelerator.device)
        self.accelerator, self.transformer, self.dit_dtype = accelerator, transformer, dit_dtype

        emit("phase", phase="applying the LoRA network")
        network = calls.create_network(calls.network_module(args.network_module), args, transformer)
        self.network_dtype = torch.float32  # training's network dtype (full_bf16 is off there)
        network.to(accelerator.device, dtype=self.network_dtype)
        network.eval()
        network.requires_grad_(False)
        # the multiplier stays 1 (untrained is a zero up-projection, see _load): a compiled block
        # guards on it, and changing it would compile every block again
        calls.set_multiplier(network, 1.0)
        self.network = network
        if args.compile:
            # as training does, after the network is applied, so that the LoRA is in the graphs; the
            # compiling itself happens in the first forward pass (see score)
            self.transformer = calls.compile_transformer(trainer, args, transformer)
            self.compiling = True
        self.scheduler = calls.flow_match_scheduler(args.discrete_flow_shift)

        # the same noise for every checkpoint: drawn once, per record and timestep, from the seed, in
        # the records' order (musubi-tuner's buckets are consecutive slices, so that order is the
        # same for every batch size); a batch's noise is its records' noise stacked
        generator = torch.Generator(device="cpu").manual_seed(plan.noise_seed)
        for batch in self.batches:
            latents = batch["latents"]
            one = (1, *latents.shape[1:])
            records_noise = [
                [torch.randn(one, generator=generator, dtype=torch.float32) for _ in plan.timesteps]
                for _ in range(int(latents.shape[0]))
            ]
            self.noise.append(
                [torch.cat([noise[band] for noise in records_noise]) for band in range(len(plan.timesteps))]
            )
        return records, len(self.batches)

    def _load(self, checkpoint: Checkpoint) -> None:
        network = self.network
        if checkpoint.lora is None:
            # what a fresh LoRA is (musubi-tuner initialises lora_up to zero): the DiT's own output
            ups = [p for name, p in network.named_parameters() if "lora_up" in name]
            with self.torch.no_grad():
                for parameter in ups:
                    parameter.zero_()
            # a network module without LoRA up-projections is switched off instead (a compiled DiT
            # then compiles again for the next checkpoint, at multiplier 1)
            self.calls.set_multiplier(network, 1.0 if ups else 0.0)
            return
        info = self.calls.load_weights(network, checkpoint.lora)
        missing = [k for k in info.missing_keys if "lora_" in k]
        if missing or info.unexpected_keys:
            example = (missing or info.unexpected_keys)[0]
            raise ValueError(
                f"{checkpoint.lora} does not fit the network of this run's config: {len(missing)} missing,"
                f" {len(info.unexpected_keys)} unexpected weights (e.g. {example})"
            )
        self.calls.set_multiplier(network, 1.0)

    def score(self, checkpoint: Checkpoint, emit: Emit) -> list[float]:
        torch, device = self.torch, self.accelerator.device
        self._load(checkpoint)
        if self.compiling:
            emit("phase", phase=f"scoring {checkpoint.label}, compiling the DiT's blocks first (once)")
            self.compiling = False
        totals = [0.0 for _ in self.timesteps]
        count = 0
        with torch.no_grad():
            for index, stored in enumerate(self.batches):
                batch = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in stored.items()}
                latents = self.calls.scale_shift_latents(self.trainer, batch["latents"])
                size = int(latents.shape[0])
                for band, t in enumerate(self.timesteps):
                    batch["timesteps"] = [t] * size
                    noise = self.noise[index][band].to(device=device, dtype=latents.dtype)
                    loss = self.calls.batch_loss(
                        self.trainer,
                        self.args,
                        self.accelerator,
                        self.transformer,
                        self.network,
                        batch,
                        latents,
                        noise,
                        self.scheduler,
                        self.dit_dtype,
                        self.network_dtype,
                    ).loss
                    totals[band] += float(loss.item()) * size
                count += size
        return [total / max(count, 1) for total in totals]


def main(argv: Sequence[str] | None = None, backend: Backend | None = None) -> int:
    return int(
        common.main(
            argv,
            "fplora's evaluation worker (started by fplora eval)",
            read_plan,
            lambda plan: run(plan, backend if backend is not None else MusubiBackend()),
            emit,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
