"""fplora's sweep worker: many (LoRA, multiplier) cells from one load of the models.

Runs inside the musubi-tuner Python, started by `fplora infer` as
`<python> -m accelerate.commands.launch <options> <this file> --plan <plan.json>`.

Why it exists: `fpack_generate_video` takes one LoRA set per process, and each process spends most
of its time loading models (on an H100: ~55 s for text encoder 1 with fp8_llm, ~15 s of start-up,
~5 s for the VAE and image encoder) to generate a few images in seconds. Comparing 3 checkpoints at
3 multipliers paid for nine loads. Here the VAE, the image encoder and both text encoders are loaded
once and every prompt is encoded once; then, for each cell, the DiT is loaded with that cell's LoRA
merged in, by musubi-tuner's own `load_dit_model`, exactly as a separate generate run would load it
(the merge happens while the weights stream in, before fp8 quantisation, so a cell's weights are
bit-for-bit those of a separate run), and each prompt is generated with the same seed, saved and
decoded by musubi-tuner's own functions into the cell's folder under generate's own file names.

Protocol (fplora's side: `fplora/runs/sweep.py`):
- in: a JSON plan, `{"protocol": 1, "generate_args": [...], "cells": [{"id", "lora", "multiplier",
  "save_path", "label"}, ...]}`; `generate_args` are `fpack_generate_video`'s options for a
  `--from_file` run without `--lora_weight`, `--lora_multiplier` and `--save_path`;
- out: one JSON object per line on stdout, each line starting with `EVENT_PREFIX`: `started`,
  `phase`, `ready`, `cell_started`, `cell_done` / `cell_failed` (with the files the cell wrote and
  why it failed), `finished`, or `error` when the models cannot be prepared;
- exit code: 0 when every cell wrote its files, 1 when a cell failed (the others still ran), 2 when
  the plan could not be read or the models not prepared.

Only the standard library is imported at module level, so that fplora's tests can run this file
with a stand-in backend where torch is not installed.
"""

from __future__ import annotations

import copy
import gc
import importlib.util
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

PROTOCOL = 1
EVENT_PREFIX = "fplora-sweep-event "
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
class Cell:
    id: str
    lora: str
    multiplier: float
    save_path: str
    label: str


@dataclass(frozen=True)
class Plan:
    generate_args: list[str]
    cells: list[Cell]


def read_plan(path: Path) -> Plan:
    raw = common.read_plan_json(path, PROTOCOL)
    try:
        cells = [
            Cell(str(c["id"]), str(c["lora"]), float(c["multiplier"]), str(c["save_path"]), str(c["label"]))
            for c in raw["cells"]
        ]
        args = [str(a) for a in raw["generate_args"]]
    except (KeyError, TypeError, ValueError) as error:
        raise common.PlanError(f"malformed plan {path}: {error!r}") from None
    return Plan(args, cells)


class Backend(Protocol):
    """What generates: musubi-tuner's models here, a stand-in in fplora's tests."""

    def prepare(self, generate_args: list[str], emit: Emit) -> int:
        """Load what every cell shares and encode the prompts; the number of prompts."""
        ...

    def run_cell(self, cell: Cell, emit: Emit) -> list[str]:
        """Generate every prompt into `cell.save_path`; why prompts failed (empty: none did)."""
        ...


def _files(folder: str) -> set[str]:
    try:
        return set(os.listdir(folder))
    except OSError:
        return set()


def prepare_args(plan: Plan) -> list[str]:
    """The options `prepare` parses: the plan's, plus the first cell's `--save_path`, which the
    generate parser requires (every cell then sets its own)."""
    return [*plan.generate_args, "--save_path", plan.cells[0].save_path]


def run(plan: Plan, backend: Backend) -> int:
    """Prepare once, then every cell; a failing cell is reported and the next one runs."""
    started = time.monotonic()
    emit("started", protocol=PROTOCOL, cells=len(plan.cells), pid=os.getpid())
    if not plan.cells:
        emit("finished", done=0, failed=0, seconds=0.0)
        return 0
    try:
        prompts = backend.prepare(prepare_args(plan), emit)
    except SystemExit as exit_:  # the generate script's parser refused the options (argparse exits 2)
        emit(
            "error",
            error=f"the generate parser refused the plan's options (exit {exit_.code}): see the log",
        )
        return 2
    except Exception as error:
        traceback.print_exc()
        emit("error", error=common.reason(error))
        return 2
    emit("ready", prompts=prompts, seconds=round(time.monotonic() - started, 3))
    failed = 0
    for index, cell in enumerate(plan.cells):
        emit("cell_started", cell=cell.id, index=index, label=cell.label, multiplier=cell.multiplier)
        cell_start = time.monotonic()
        before = _files(cell.save_path)
        try:
            errors = backend.run_cell(cell, emit)
        except Exception as error:  # a broken LoRA, out of memory: this cell only
            traceback.print_exc()
            errors = [common.reason(error)]
        files = sorted(_files(cell.save_path) - before)
        seconds = round(time.monotonic() - cell_start, 3)
        if errors:
            failed += 1
            emit("cell_failed", cell=cell.id, error="; ".join(errors), files=files, seconds=seconds)
        else:
            emit("cell_done", cell=cell.id, files=files, seconds=seconds)
    total = round(time.monotonic() - started, 3)
    emit("finished", done=len(plan.cells) - failed, failed=failed, seconds=total)
    return 1 if failed else 0


class MusubiBackend:
    """musubi-tuner's own functions from `fpack_generate_video`, called in the order its batch mode
    calls them, with the text and image work done once instead of once per process."""

    def __init__(self) -> None:
        self.calls: Any = None  # musubi_calls.py
        self.torch: Any = None
        self.args: Any = None
        self.device: Any = None
        self.settings: Any = None
        self.vae: Any = None
        self.prompts: list[dict[str, Any]] = []
        self.image_data: list[dict[str, Any]] = []
        self.text_data: list[dict[str, Any]] = []

    def prepare(self, generate_args: list[str], emit: Emit) -> int:
        import torch

        calls = common.musubi_calls()
        calls.require_pinned_calls()
        self.calls, self.torch = calls, torch
        args = calls.generate_args(generate_args)  # the script's own parser, on the separate run's options
        if not args.from_file:
            raise ValueError("the plan's generate_args have no --from_file")
        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        args.device = device
        with open(args.from_file, encoding="utf-8") as handle:
            self.prompts = calls.prompts_for_batch(handle.readlines(), args)
        if not self.prompts:
            raise ValueError(f"no prompt lines in {args.from_file}")
        self.args, self.device = args, device
        self.settings = calls.generation_settings(args)
        per_prompt = [calls.with_overrides(args, prompt) for prompt in self.prompts]

        emit("phase", phase="image encoder and VAE: encoding the start and control images")
        vae = calls.load_vae(args, "cpu")
        encoders = calls.load_image_encoders(args)
        vae.to(device)
        encoders.image_encoder.to(device)
        self.image_data = [calls.image_inputs(a, device, vae, encoders) for a in per_prompt]
        del encoders
        vae.to("cpu")
        calls.clean_memory(device)
        self.vae = vae

        emit("phase", phase="text encoders: encoding the prompts")
        encoder1 = calls.load_text_encoder1(args, args.fp8_llm, device)
        encoder2 = calls.load_text_encoder2(args)
        encoder2.model.to(device)
        self.text_data = [calls.text_inputs(a, device, encoder1, encoder2) for a in per_prompt]
        del encoder1, encoder2
        gc.collect()
        calls.clean_memory(device)
        return len(self.prompts)

    def _cell_args(self, cell: Cell) -> list[Any]:
        """One args object per prompt, as the separate run with `--lora_weight <lora>
        --lora_multiplier <m> --save_path <folder>` would build them."""
        base = copy.deepcopy(self.args)
        base.lora_weight = [cell.lora]
        base.lora_multiplier = [cell.multiplier]
        base.save_path = cell.save_path
        return [self.calls.with_overrides(base, prompt) for prompt in self.prompts]

    def _release(self, shared: dict[str, Any]) -> None:
        """Free the DiT as the generate script does after its prompts."""
        calls, device = self.calls, self.device
        if shared and self.args.blocks_to_swap > 0:
            time.sleep(5)  # as the generate script does: let block swap's transfers finish
        shared.clear()
        gc.collect()
        calls.clean_memory(device)
        calls.synchronize(device)

    def run_cell(self, cell: Cell, emit: Emit) -> list[str]:
        calls, torch, device = self.calls, self.torch, self.device
        per_prompt = self._cell_args(cell)
        errors: list[str] = []
        latents: list[tuple[Any, Any]] = []
        shared: dict[str, Any] = {}
        # musubi-tuner 30c658c4 reuses a loaded DiT for the next prompt only without block swap: with
        # swapped blocks the second prompt fails ("mat2 is on cpu", fpack_generate_video.py:1220, seen
        # on an H200), as in its own --from_file mode. With swap, each prompt gets a fresh load.
        reload_per_prompt = self.args.blocks_to_swap > 0
        try:
            with torch.no_grad():
                for index, args in enumerate(per_prompt):
                    if "model" not in shared:
                        emit(
                            "phase",
                            phase=f"{cell.label} x{cell.multiplier}: loading the DiT with the LoRA merged",
                        )
                        shared["model"] = calls.load_dit(args, device)
                    # generate() appends to a one-frame prompt's control latents: give it a fresh list
                    image = dict(self.image_data[index])
                    if image.get("control_latents") is not None:
                        image["control_latents"] = list(image["control_latents"])
                    try:
                        latent = calls.generate(
                            args, self.settings, shared, image, self.text_data[index]
                        ).latent
                        if args.output_type in ("latent", "both", "latent_images"):
                            calls.save_latent(latent, args, image["height"], image["width"])
                    except Exception as error:
                        traceback.print_exc()
                        errors.append(f"prompt {index + 1}: {common.reason(error)}")
                        continue
                    finally:
                        if reload_per_prompt and index < len(per_prompt) - 1:
                            self._release(shared)
                    latents.append((args, latent))
        finally:
            self._release(shared)
        if self.args.output_type != "latent" and latents:
            self.vae.to(device)
            try:
                for args, latent in latents:
                    # the latent is saved above: the decode step writes only the image or video
                    args.output_type = {"both": "video", "latent_images": "images"}.get(
                        args.output_type, args.output_type
                    )
                    calls.save_output(args, self.vae, latent[0], device)
            finally:
                self.vae.to("cpu")
                calls.clean_memory(device)
        return errors


def main(argv: Sequence[str] | None = None, backend: Backend | None = None) -> int:
    return int(
        common.main(
            argv,
            "fplora's sweep worker (started by fplora infer)",
            read_plan,
            lambda plan: run(plan, backend if backend is not None else MusubiBackend()),
            emit,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
