#!/usr/bin/env python3
"""The GPU option matrix: short real jobs through fplora's CLI, one combination of options per cell.

Each cell is a spec that extends one of the matrix's data specs (`base.yaml` + a dataset variant) and
changes a few options; it runs `fplora train` (1-3 steps, no sampling unless the cell is about it) or
`fplora infer` on a LoRA an earlier cell trained, and records pass/fail, musubi-tuner's first error
line, peak GPU memory (per GPU and, where nvidia-smi lists processes, per cell), s/step and wall time.
`fplora check`'s own verdict is recorded beside it, so a rerun shows whether check refuses exactly
the cells that fail. The GPU side runs fplora with `spec.rules.combinations` switched off (`--fplora`), so
a cell that check would refuse still reaches musubi-tuner and the matrix keeps measuring it.

On the GPU machine (stdlib only; the folders benchmarks/gpu_setup/prepare.sh makes, `.whl2` (PyAV)
replaced by a stub: no cell writes video), from the repo root, with fplora's committed snapshot in
`.matrix/` (see docs/gpu-matrix.md):

    python3 .matrix/benchmarks/gpu_matrix.py --deadline 560 [CELL|FAMILY ...]

The setup stages of gpu_e2e.py (install, weights) and its own (data, cache: every dataset variant,
the text encoder loaded once) run first and are skipped on a warm machine. Cells then run in the
order of CELLS (most likely to fail first), up to two light cells per GPU at a time; a cell marked
heavy has its GPU(s) to itself. A cell that would not finish before the deadline is not started.
Results go to $OUT/matrix.json after every cell (and /tmp/fpmatrix/results.json, so the next
command on a warm machine skips what is done). Then, here:

    python3 benchmarks/gpu_matrix.py --merge <files_at>/matrix.json   # into benchmarks/gpu_matrix.json
    uv run python benchmarks/gpu_matrix.py --check-verdicts            # fplora check on every cell, here
    uv run python benchmarks/gpu_matrix.py --table                     # the table for docs/gpu-matrix.md

Without a GPU: `--local-fake` runs the whole thing against the harness's fake musubi-tuner (which
also fails the way musubi-tuner does for the known combinations), in seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from harness import asserts, driver, fake, proc, specs, state, timings  # noqa: E402  (the harness)
from harness.stages import setup as setup_stages  # noqa: E402

MATRIX_JSON = HERE / "gpu_matrix.json"
PROJECT = "fpm"
RECORDS = 8
WIDTH, HEIGHT = state.WIDTH, state.HEIGHT
MAX_SWAP = 38  # FramePack: 20 double + 40 single blocks; enable_block_swap allows at most 38
UNITS_PER_GPU = 2  # light cells that share one GPU


# ------------------------------------------------------------------------------------------ cells
@dataclass
class Cell:
    name: str
    family: str
    settings: str  # what the cell changes, in words, for the table
    spec: dict[str, Any] = field(default_factory=dict)  # spec sections merged over the variant
    variant: str = "c2"  # dataset variant (data spec) it extends
    kind: str = "train"  # train | infer
    gpus: int = 1
    heavy: bool = False  # has its GPU(s) to itself (memory figures, DDP)
    lora_from: str | None = None  # infer: the cell whose final LoRA it loads
    cost: int = 60  # seconds, for the deadline
    batch: int = 1  # samples per step per process (s/step -> samples/s)
    skip: str | None = None  # why it is not run on the GPU machine (source-derived)


def _t(**train: Any) -> dict[str, Any]:
    return {"train": train}


CELLS: list[Cell] = [
    Cell("ref", "reference", "sdpa, batch 1, no split_attn, swap 0, adamw8bit, 3 steps", {}),
    # attention x split_attn x batch: the class of the issue's failure first
    Cell("att-sdpa-b2", "attention", "sdpa, data.batch_size 2, no split_attn",
         {"data": {"batch_size": 2}}, batch=2),
    Cell("att-sdpa-dsb2", "attention", "sdpa, datasets[0].batch_size 2 (data 1), no split_attn",
         {"datasets": "BATCH2"}, batch=2),
    Cell("att-sdpa-b2-split", "attention", "sdpa, batch 2, split_attn",
         {"data": {"batch_size": 2}, **_t(split_attn=True)}, batch=2),
    Cell("att-flash3-b1", "attention", "flash3, batch 1, no split_attn", _t(attention="flash3")),
    Cell("att-flash3-b1-split", "attention", "flash3, batch 1, split_attn",
         _t(attention="flash3", split_attn=True)),
    Cell("att-flash3-b2", "attention", "flash3, batch 2, no split_attn",
         {"data": {"batch_size": 2}, **_t(attention="flash3")}, batch=2),
    Cell("att-xformers-b1", "attention", "xformers, batch 1 (xformers not on the image)",
         _t(attention="xformers")),
    Cell("att-flash-b1", "attention", "flash_attn, batch 1 (flash-attn not on the image)",
         _t(attention="flash_attn")),
    # schedulers and optimizers whose failures the source shows
    Cell("sched-constant-warmup", "scheduler", "lr_warmup_steps 1, no lr_scheduler (musubi: constant)",
         _t(optimizer={"type": "adamw8bit", "learning_rate": 1e-3, "lr_warmup_steps": 1})),
    Cell("sched-cosine-warmup", "scheduler", "cosine, lr_warmup_steps 1",
         _t(optimizer={"type": "adamw8bit", "learning_rate": 1e-3, "lr_scheduler": "cosine",
                       "lr_warmup_steps": 1})),
    Cell("sched-unknown", "scheduler", "lr_scheduler cosine_annealing (not a diffusers name)",
         _t(optimizer={"type": "adamw8bit", "learning_rate": 1e-3, "lr_scheduler": "cosine_annealing"})),
    Cell("opt-adafactor", "optimizer", "adafactor, no args (relative_step), lr 1e-3",
         _t(optimizer={"type": "adafactor", "learning_rate": 1e-3})),
    Cell("opt-adafactor-warmup", "optimizer", "adafactor, no args, lr_warmup_steps 1",
         _t(optimizer={"type": "adafactor", "learning_rate": 1e-3, "lr_warmup_steps": 1})),
    Cell("opt-adafactor-args", "optimizer",
         "adafactor relative_step/scale_parameter/warmup_init False, constant_with_warmup 1",
         _t(optimizer={"type": "adafactor", "learning_rate": 1e-3,
                       "args": ["relative_step=False", "scale_parameter=False", "warmup_init=False"],
                       "lr_scheduler": "constant_with_warmup", "lr_warmup_steps": 1})),
    Cell("opt-adamw", "optimizer", "adamw (torch AdamW), max_grad_norm 1.0",
         _t(optimizer={"type": "adamw", "learning_rate": 1e-4, "max_grad_norm": 1.0})),
    Cell("opt-torch-sgd", "optimizer", "a torch.optim class by bare name: SGD, momentum=0.9",
         _t(optimizer={"type": "SGD", "learning_rate": 1e-3, "args": ["momentum=0.9"]})),
    Cell("opt-module-class", "optimizer", "module.Class: bitsandbytes.optim.Lion8bit",
         _t(optimizer={"type": "bitsandbytes.optim.Lion8bit", "learning_rate": 1e-4})),
    # block swap, fp8, memory at the memo's size (512x768, two controls)
    Cell("swap-max", "blocks_to_swap", f"blocks_to_swap {MAX_SWAP} (musubi-tuner's maximum)",
         _t(blocks_to_swap=MAX_SWAP), cost=90),
    Cell("swap-over", "blocks_to_swap", f"blocks_to_swap {MAX_SWAP + 1}", _t(blocks_to_swap=MAX_SWAP + 1)),
    Cell("swap-20", "blocks_to_swap", "blocks_to_swap 20", _t(blocks_to_swap=20), cost=75),
    Cell("fp8-base", "fp8", "fp8_base", _t(fp8_base=True)),
    Cell("fp8-scaled", "fp8", "fp8_base + fp8_scaled", _t(fp8_base=True, fp8_scaled=True), cost=70),
    Cell("mem-memo", "memory", "memo: batch 16, split_attn, swap 20, checkpointing",
         {"data": {"batch_size": 16}, **_t(split_attn=True, blocks_to_swap=20, max_train_steps=3)},
         heavy=True, cost=150, batch=16),
    Cell("mem-b16-swap0", "memory", "batch 16, split_attn, swap 0, checkpointing",
         {"data": {"batch_size": 16}, **_t(split_attn=True)}, heavy=True, cost=110, batch=16),
    Cell("mem-nogc-b1", "memory", "no gradient checkpointing, batch 1", _t(gradient_checkpointing=False),
         heavy=True),
    Cell("mem-nogc-b4", "memory", "no gradient checkpointing, batch 4, split_attn",
         {"data": {"batch_size": 4}, **_t(gradient_checkpointing=False, split_attn=True)},
         heavy=True, batch=4),
    Cell("mem-gc-offload", "memory", "gradient checkpointing + CPU offload (musubi.config), batch 4",
         {"data": {"batch_size": 4}, **_t(split_attn=True),
          "musubi": {"config": {"gradient_checkpointing_cpu_offload": True}}}, heavy=True, batch=4),
    # one-frame variants (each its own cache)
    Cell("of-c1", "one-frame", "1 control, clean_indices [0], target 5", variant="c1"),
    Cell("of-c3", "one-frame", "3 controls, clean_indices [0, 2, 10], target 5", variant="c3"),
    Cell("of-post-t9", "one-frame", "no_post false, target_index 9", variant="post-t9"),
    Cell("of-t1", "one-frame", "target_index 1", variant="t1"),
    Cell("of-no2x", "one-frame", "no_2x", variant="no2x"),
    Cell("of-no4x", "one-frame", "no_4x", variant="no4x"),
    Cell("of-lws5", "one-frame", "latent_window_size 5", variant="lws5"),
    Cell("bucket-mixed", "bucketing", "mixed image sizes, enable_bucket", variant="mixed"),
    Cell("bucket-mixed-noup", "bucketing", "mixed sizes, bucket_no_upscale, batch 2, split_attn",
         {"data": {"batch_size": 2}, **_t(split_attn=True)}, variant="mixed-noup", batch=2),
    # LoRAs of other precisions for the inference cells
    Cell("save-fp16", "save_precision", "save_precision fp16", _t(save_precision="fp16")),
    Cell("save-float", "save_precision", "save_precision float (fp32 LoRA)", _t(save_precision="float")),
    # generate
    Cell("inf-fp8-noscaled", "generate", "--fp8 without fp8_scaled (musubi.generate.fp8)",
         {"infer": {"fp8_scaled": False}, "musubi": {"generate": {"fp8": True}}},
         kind="infer", lora_from="ref", cost=110),
    Cell("inf-float-noscaled", "generate", "fp32 LoRA, fp8_scaled false",
         {"infer": {"fp8_scaled": False}}, kind="infer", lora_from="save-float", cost=110),
    Cell("inf-float-scaled", "generate", "fp32 LoRA, fp8_scaled true", {}, kind="infer",
         lora_from="save-float", cost=110),
    Cell("inf-fp16-noscaled", "generate", "fp16 LoRA, fp8_scaled false",
         {"infer": {"fp8_scaled": False}}, kind="infer", lora_from="save-fp16", cost=110),
    Cell("inf-base", "generate", "bf16 LoRA, fp8_scaled, latent_images, sdpa", {}, kind="infer",
         lora_from="ref", cost=110),
    Cell("inf-images-torch-swap", "generate", "output images, attention torch, blocks_to_swap 20, no fp8",
         {"infer": {"output_type": "images", "attention": "torch", "blocks_to_swap": 20,
                    "fp8_scaled": False}}, kind="infer", lora_from="ref", cost=130),
    Cell("inf-latent", "generate", "output latent", {"infer": {"output_type": "latent"}}, kind="infer",
         lora_from="ref", cost=110),
    Cell("inf-flash", "generate", "attention flash (flash-attn not on the image)",
         {"infer": {"attention": "flash"}}, kind="infer", lora_from="ref", cost=110),
    Cell("inf-both", "generate", "output both (video)", {"infer": {"output_type": "both"}}, kind="infer",
         lora_from="ref", skip="writes video through PyAV, which the matrix does not carry (64 MiB)"),
    # sampling during training
    Cell("sample-guidance", "sampling", "sample at first + step 1, guidance_scale 1.5 + negative prompt",
         {"sample": {"at_first": True, "every_n_steps": 1, "steps": 4,
                     "prompts": [{"record": 1, "guidance_scale": 1.5, "negative_prompt": "blurry"}]},
          **_t(max_train_steps=1)}, cost=150),
    Cell("sample-c3", "sampling", "sample at first with 3 control images", {
        "sample": {"at_first": True, "every_n_steps": None, "steps": 4, "prompts": [{"record": 2}]},
        **_t(max_train_steps=1)}, variant="c3", cost=150),
    # DDP on two GPUs
    Cell("ddp-swap-fp8-sample", "ddp", "2 processes, swap 20, fp8_base+scaled, sample at first, 2 prompts",
         {"launch": {"num_processes": 2}, **_t(blocks_to_swap=20, fp8_base=True, fp8_scaled=True),
          "sample": {"at_first": True, "every_n_steps": None, "steps": 4,
                     "prompts": [{"record": 1}, {"record": 2}]}}, gpus=2, heavy=True, cost=180),
    Cell("ddp-b2-split", "ddp", "2 processes, batch 2, split_attn", {
        "launch": {"num_processes": 2}, "data": {"batch_size": 2}, **_t(split_attn=True)},
         gpus=2, heavy=True, cost=80, batch=2),
    # the rest of the option families
    Cell("net-args", "network", "dim 64, alpha 64, loraplus_lr_ratio=4, rank/module dropout, network_dropout",
         {**_t(network={"dim": 64, "alpha": 64,
                        "args": ["loraplus_lr_ratio=4", "rank_dropout=0.1", "module_dropout=0.1"]}),
          "musubi": {"config": {"network_dropout": 0.1}}}),
    Cell("net-weights", "network", "network_weights = the ref cell's LoRA (musubi.config)",
         {"musubi": {"config": {"network_weights": "LORA:ref"}}}, lora_from="ref"),
    Cell("accum-2", "accumulation", "gradient_accumulation_steps 2", _t(gradient_accumulation_steps=2)),
    Cell("ts-sigma", "timestep", "timestep_sampling sigma", _t(timestep_sampling="sigma")),
    Cell("ts-flux-shift", "timestep", "timestep_sampling flux_shift", _t(timestep_sampling="flux_shift")),
    Cell("ts-logsnr", "timestep", "timestep_sampling logsnr", _t(timestep_sampling="logsnr")),
    Cell("ts-qinglong", "timestep", "timestep_sampling qinglong_flux", _t(timestep_sampling="qinglong_flux")),
    Cell("ts-uniform", "timestep", "timestep_sampling uniform", _t(timestep_sampling="uniform")),
    Cell("ts-ideogram4", "timestep", "timestep_sampling ideogram4_shift",
         _t(timestep_sampling="ideogram4_shift")),
    Cell("compile", "compile", "compile (train.compile), swap 0", {"train": {"compile": True}},
         cost=240),
]  # fmt: skip

# dataset variants: (jsonl, one_frame, data, datasets extras)
VARIANTS: dict[str, dict[str, Any]] = {
    "c2": {"jsonl": "c2", "one_frame": {"clean_indices": [0, 10], "target_index": 5, "no_post": True}},
    "c1": {"jsonl": "c1", "one_frame": {"clean_indices": [0], "target_index": 5, "no_post": True}},
    "c3": {"jsonl": "c3", "one_frame": {"clean_indices": [0, 2, 10], "target_index": 5, "no_post": True}},
    "post-t9": {"jsonl": "c2", "one_frame": {"clean_indices": [0, 10], "target_index": 9, "no_post": False}},
    "t1": {"jsonl": "c2", "one_frame": {"clean_indices": [0, 10], "target_index": 1, "no_post": True}},
    "no2x": {"jsonl": "c2", "one_frame": {"clean_indices": [0, 10], "target_index": 5, "no_post": True,
                                          "no_2x": True}},
    "no4x": {"jsonl": "c2", "one_frame": {"clean_indices": [0, 10], "target_index": 5, "no_post": True,
                                          "no_4x": True}},
    "lws5": {"jsonl": "c2", "one_frame": {"clean_indices": [0, 10], "target_index": 5, "no_post": True,
                                          "latent_window_size": 5}},
    "mixed": {"jsonl": "mixed", "one_frame": {"clean_indices": [0, 10], "target_index": 5, "no_post": True}},
    "mixed-noup": {"jsonl": "mixed", "one_frame": {"clean_indices": [0, 10], "target_index": 5,
                                                   "no_post": True}, "bucket_no_upscale": True},
}  # fmt: skip
MIXED_SIZES = [(512, 768), (640, 640), (768, 512), (448, 704), (576, 832), (384, 512), (704, 448), (600, 600)]


# ------------------------------------------------------------------------------------------ paths
@dataclass
class Paths:
    root: Path
    models: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def configs(self) -> Path:
        return self.root / "configs"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def results(self) -> Path:
        return self.root / "results.json"

    def jsonl(self, name: str) -> Path:
        return self.data / f"{name}.jsonl"

    def cache(self, variant: str) -> Path:
        return self.root / "cache" / variant

    def spec(self, name: str) -> Path:
        return self.configs / f"{name}.yaml"

    def lora(self, cell: str) -> Path:
        return self.runs / f"{PROJECT}-{cell}.safetensors"


P: Paths


# ------------------------------------------------------------------------------------------ specs
def _yaml_map(data: dict[str, Any]) -> str:
    """Top-level keys in block style, values as JSON (valid YAML flow style)."""
    return "".join(f"{key}: {json.dumps(value)}\n" for key, value in data.items())


def base_spec() -> str:
    return f"""\
# Written by benchmarks/gpu_matrix.py: every cell extends a variant of this.
project: {PROJECT}
{specs.models_section(P.models)}data:
  resolution: [{WIDTH}, {HEIGHT}]
  caption_extension: .txt
  batch_size: 1
  enable_bucket: true
  bucket_no_upscale: false
train:
  output_dir: {P.runs}
  seed: 42
  mixed_precision: bf16
  attention: sdpa
  split_attn: false
  blocks_to_swap: 0
  gradient_checkpointing: true
  network: {{module: networks.lora_framepack, dim: 32, alpha: 16}}
  optimizer: {{type: adamw8bit, learning_rate: 1.0e-3}}
  max_train_steps: 3
  save_every_n_steps: null
  save_state: false
  save_state_on_train_end: false
  max_data_loader_n_workers: 1
  persistent_data_loader_workers: true
  timestep_sampling: shift
  discrete_flow_shift: 6.0
  logging: {{with: null}}
{specs.SAMPLE}{specs.LAUNCH}infer:
  fp8_scaled: true
  attention: sdpa
  output_type: latent_images
  steps: 4
  multipliers: [1.0]
  prompts:
    - record: 1
"""


def dataset_entry(variant: str, **extra: Any) -> dict[str, Any]:
    v = VARIANTS[variant]
    entry = {"jsonl": str(P.jsonl(v["jsonl"])), "cache_directory": str(P.cache(variant)), "num_repeats": 10}
    if v.get("bucket_no_upscale"):
        entry["bucket_no_upscale"] = True
    return {**entry, **extra}


def variant_spec(variant: str) -> str:
    v = VARIANTS[variant]
    return "extends: base.yaml\n" + _yaml_map(
        {"datasets": [dataset_entry(variant)], "one_frame": v["one_frame"]}
    )


def cell_spec(cell: Cell) -> str:
    spec = json.loads(json.dumps(cell.spec))
    if spec.get("datasets") == "BATCH2":
        spec["datasets"] = [dataset_entry(cell.variant, batch_size=2)]
    config = spec.get("musubi", {}).get("config", {})
    for key, value in config.items():
        if isinstance(value, str) and value.startswith("LORA:"):
            config[key] = str(P.lora(value[5:]))
    if cell.kind == "infer":
        spec.setdefault("infer", {})["save_dir"] = str(P.runs / f"infer-{cell.name}")
    head = f"# cell {cell.name} ({cell.family}): {cell.settings}\nextends: v-{cell.variant}.yaml\n"
    return head + _yaml_map(spec)


def write_specs() -> None:
    texts = {"base": base_spec(), **{f"v-{v}": variant_spec(v) for v in VARIANTS}}
    texts.update({c.name: cell_spec(c) for c in CELLS})
    for name, text in texts.items():
        specs.write_if_changed(P.spec(name), text)


# ------------------------------------------------------------------------------------------ data
def make_data(local: bool) -> None:
    """c2 (two controls, 512x768) from gpu_setup/make_dataset.py (or stand-ins); c1, c3 and mixed
    from it: c1 drops control 1, c3 adds the target as a third control, mixed re-sizes each record."""
    if not P.jsonl("c2").is_file():
        if local:
            saved = state.CFG.root, state.CFG.records
            state.CFG.root, state.CFG.records = P.root, RECORDS
            fake.local_dataset()
            state.CFG.root, state.CFG.records = saved
            (P.data / "metadata-v1.jsonl").replace(P.jsonl("c2"))
        else:
            argv = [sys.executable, str(state.SETUP / "make_dataset.py"), "--root", str(P.data), "--n"]
            subprocess.run([*argv, str(RECORDS), "--width", str(WIDTH), "--height", str(HEIGHT)], check=True)
            (P.data / "metadata-v1.jsonl").replace(P.jsonl("c2"))
    records = [json.loads(x) for x in P.jsonl("c2").read_text().splitlines() if x.strip()]
    c1 = [{k: v for k, v in r.items() if k != "control_path_1"} for r in records]
    c3 = [{**r, "control_path_2": r["image_path"]} for r in records]
    mixed = []
    for i, r in enumerate(records):
        w, h = MIXED_SIZES[i % len(MIXED_SIZES)]
        out = {"caption": r["caption"]}
        for key in ("image_path", "control_path_0", "control_path_1"):
            target = P.data / "mixed" / f"{Path(r[key]).stem}.png"
            if not target.is_file():
                resize(Path(r[key]), target, w, h, local)
            out[key] = str(target)
        mixed.append(out)
    for name, rows in (("c1", c1), ("c3", c3), ("mixed", mixed)):
        P.jsonl(name).write_text("".join(json.dumps(row) + "\n" for row in rows))


def resize(src: Path, dst: Path, w: int, h: int, local: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if local:
        fake.write_png(dst, w, h, (10, 20, 30))
        return
    from PIL import Image  # the GPU image has pillow

    Image.open(src).convert("RGB").resize((w, h)).save(dst, compress_level=1)


# ------------------------------------------------------------------------------------------ fplora
def fplora_unchecked(args: list[str]) -> int:
    """fplora's CLI with `spec.rules.combinations` switched off, so that a cell that check refuses still
    reaches musubi-tuner (the matrix measures musubi-tuner, check's verdict is recorded apart)."""
    import fplora.check as check

    if hasattr(check, "check_combinations"):
        check.check_combinations = lambda spec: []  # type: ignore[attr-defined]
    sys.argv = ["fplora", *args]
    from fplora.cli import main

    main()
    return 0


def fplora_run(
    stage: dict[str, Any],
    *args: str,
    gpu_ids: str | None = None,
    checked: bool = False,
    started: Any = None,
) -> proc.Ran:
    extra = {"CUDA_VISIBLE_DEVICES": gpu_ids} if gpu_ids is not None else {}
    head = [sys.executable, "-m", "fplora"] if checked else [sys.executable, str(Path(__file__)), "--fplora"]
    return proc.run(stage, [*head, *args], extra_env=extra, started=started)


# ------------------------------------------------------------------------------------------ results
RESULTS: dict[str, Any] = {"cells": {}}
LOCK = threading.Lock()

ERROR_LINE = re.compile(
    r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Interrupt|Exit)\b(?::.*)?$|"
    r"CUDA out of memory|Error generating|^Traceback"
)


def first_error(ran: proc.Ran) -> str | None:
    """musubi-tuner's first error line: a traceback's last line (`XError: ...`), else a logged
    generation error; fplora's own refusal (`file:line: key: ...`) when it stopped before launching."""
    lines = [text.strip() for _, text in ran.lines]
    for text in lines:
        if ERROR_LINE.search(text) and not text.startswith("Traceback") and "Error generating" not in text:
            return text[:400]
    for text in lines:
        if "Error generating" in text or "CUDA out of memory" in text:
            return text[:400]
    if ran.rc not in (0, None):
        tail = [t for t in lines if t and not proc.PROGRESS.search(t)]
        return (tail[-1] if tail else f"exit {ran.rc}")[:400]
    return None


def save_results() -> None:
    with LOCK:
        RESULTS["saved"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        text = json.dumps(RESULTS, indent=1, default=str)
        for path in (P.results, state.CFG.out / "matrix.json"):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text)
            tmp.replace(path)


# ---------------------------------------------------------------------------------------- per-process memory
class ProcMon(proc.SmiPoll):
    """nvidia-smi's compute processes every 500 ms: pid -> peak MiB, so that a cell that shares its GPU
    with another still gets its own peak (the sum over its processes)."""

    def __init__(self) -> None:
        self.peak: dict[int, int] = {}
        super().__init__("--query-compute-apps=pid,used_memory", 500)

    def take(self, key: int, mib: int) -> None:
        self.peak[key] = max(self.peak.get(key, 0), mib)

    def of(self, pids: set[int]) -> int | None:
        found = [self.peak[p] for p in pids if p in self.peak]
        return sum(found) if found else None


PROCS: ProcMon | None = None


# ------------------------------------------------------------------------------------------ running a cell
class Tracker(threading.Thread):
    """Collects the pids under a running command (to read their GPU memory)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.root: int | None = None
        self.pids: set[int] = set()
        self.done = threading.Event()

    def watch(self, pid: int) -> None:
        self.root = pid
        self.pids.add(pid)

    def run(self) -> None:
        while not self.done.wait(1.0):
            if self.root is not None:
                self.pids.update(proc._descendants(self.root))


def run_cell(cell: Cell, gpu_ids: list[int]) -> dict[str, Any]:
    stage: dict[str, Any] = {"stage": cell.name, "commands": [], "asserts": {"passed": [], "failed": []}}
    result: dict[str, Any] = {
        "family": cell.family,
        "settings": cell.settings,
        "kind": cell.kind,
        "gpus": gpu_ids,
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }
    if cell.lora_from and not P.lora(cell.lora_from).is_file():
        result.update(result="not run", error=f"no LoRA from cell {cell.lora_from}")
        return result
    if cell.kind == "train" and not cache_done(cell.variant):
        error = RESULTS.get("cache_errors", {}).get(cell.variant) or "cache missing"
        result.update(result="fail", error=f"caching (fplora cache v-{cell.variant}): {error}")
        return result
    ids = ",".join(map(str, gpu_ids))
    name = f"{PROJECT}-{cell.name}"
    for path in list(P.runs.glob(f"{name}*")) + list(P.runs.glob(f"infer-{cell.name}*")):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    spec = str(P.spec(cell.name))
    t0 = time.time()
    tracker = Tracker()
    tracker.start()

    if cell.kind == "train":
        args = ["train", spec]
    else:
        lora = P.lora(cell.lora_from or "ref")
        args = ["infer", spec, "--lora", str(lora), "--multiplier", "1.0"]
    ran = fplora_run(stage, *args, gpu_ids=ids, started=tracker.watch)
    tracker.done.set()
    t1 = time.time()
    result.update(rc=ran.rc, wall_s=round(t1 - t0, 1), killed_at_deadline=ran.killed, log=ran.log.name)
    error = first_error(ran)
    ok = ran.rc == 0
    if cell.kind == "train":
        ok = ok and P.lora(cell.name).is_file()
        timing = timings.guarded(asserts.Checks(stage), timings.step_timings, ran, cell.batch, cell.gpus)
        result["s_per_step"] = timing.get("s_per_step")
        result["s_per_step_each"] = timing.get("s_per_step_each")
        result["tqdm_s_per_it"] = timing.get("tqdm_last_s_per_it")
        result["start_to_step1_s"] = timing.get("start_to_step1_s")
    else:
        folder = P.runs / f"infer-{cell.name}"
        files = sorted(p.name for p in folder.rglob("*") if p.is_file() and p.suffix != ".log")
        made = [f for f in files if f.endswith((".png", ".safetensors", ".mp4"))]
        result["outputs"] = made[:6]
        ok = ok and bool(made) and not any("Error generating" in t for _, t in ran.lines)
        if ran.rc == 0 and not made and error is None:
            error = "exit 0 but no image or latent written"
    result["result"] = "killed" if ran.killed else ("pass" if ok else "fail")
    result["error"] = None if ok else error
    if state.GPU:
        peaks = state.GPU.peaks(t0, t1)
        result["peak_MiB_per_gpu"] = {k: v for k, v in peaks.items() if int(k) in gpu_ids}
    if PROCS:
        result["peak_MiB_own"] = PROCS.of(tracker.pids)
    return result


# ------------------------------------------------------------------------------------------ setup stages
def setup(stages: list[str], local: bool) -> bool:
    """install (gpu_e2e's, then the PyAV stub), weights (gpu_e2e's), data, cache; True when all ok."""
    ok = True
    for name in stages:
        t0 = time.time()
        stage = driver.new_stage(name)
        checks = asserts.Checks(stage)
        try:
            if name == "install":
                if not (state.CFG.marks / "install.ok").is_file():
                    setup_stages.stage_install(stage, checks)  # with the PyAV stub: .whl2 is not carried
            elif name == "weights":
                if not (P.models / "weights.json").is_file():
                    setup_stages.stage_weights(stage, checks)
            elif name == "data":
                make_data(local)
                write_specs()
                checks.ok(P.jsonl("mixed").is_file(), "dataset variants")
            elif name == "cache":
                cache_all(stage, checks)
        except Exception as exc:
            checks.ok(False, f"stage {name} raised", f"{type(exc).__name__}: {exc}")
        driver.finish(stage, t0)
        # a variant's failing cache fails its cells, not the run
        ok = ok and (cache_done("c2") if name == "cache" else not stage["asserts"]["failed"])
        RESULTS["setup"] = state.SUMMARY["stages"]
        if state.SUMMARY.get("versions"):  # a warm machine skips install: keep the first run's
            RESULTS["versions"] = state.SUMMARY["versions"]
        save_results()
    return ok


def cache_done(variant: str) -> bool:
    folder = P.cache(variant)
    latents = list(folder.glob("*_fp.safetensors"))
    return len(latents) >= RECORDS and all(p.is_symlink() and p.exists() for p in latents)


def cache_all(stage: dict[str, Any], checks: asserts.Checks) -> None:
    """c2 with both scripts; every other variant then finds c2's text-encoder outputs in the project's
    cache store (same captions, same encoders), so `fplora cache` runs only its latent script, all
    variants at once, spread over the GPUs."""
    if not cache_done("c2"):
        ran = fplora_run(stage, "cache", str(P.spec("v-c2")), gpu_ids="0", checked=True)
        checks.rc(ran, what="fplora cache v-c2")
        if ran.rc != 0:
            RESULTS.setdefault("cache_errors", {})["c2"] = first_error(ran)
    others = [v for v in VARIANTS if v != "c2" and not cache_done(v)]
    gpus = max(1, state.CFG.gpus_seen)
    threads = []
    results: dict[str, int | None] = {}

    def one(i: int, v: str) -> None:
        sub = {"stage": f"cache-{v}", "commands": []}
        ran = fplora_run(sub, "cache", str(P.spec(f"v-{v}")), gpu_ids=str(i % gpus), checked=True)
        results[v] = ran.rc
        if ran.rc != 0:
            RESULTS.setdefault("cache_errors", {})[v] = first_error(ran)
        stage["commands"].extend(sub["commands"])

    for i, v in enumerate(others):
        thread = threading.Thread(target=one, args=(i, v))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    for v in others:
        checks.ok(results.get(v) == 0 and cache_done(v), f"cache of variant {v}", results.get(v))


# ------------------------------------------------------------------------------------------ scheduler
class Gpus:
    """UNITS_PER_GPU light cells per GPU, or one heavy cell on its GPU(s) alone."""

    def __init__(self, count: int) -> None:
        self.free = [UNITS_PER_GPU] * count
        self.cond = threading.Condition()

    def take(self, cell: Cell) -> list[int] | None:
        need = UNITS_PER_GPU if cell.heavy else 1
        with self.cond:
            order = sorted(range(len(self.free)), key=lambda i: (-self.free[i], i))
            if cell.heavy or cell.gpus > 1:
                order = sorted(range(len(self.free)), key=lambda i: (self.free[i] != UNITS_PER_GPU, i))
            chosen = [i for i in order if self.free[i] >= need][: cell.gpus]
            if len(chosen) < cell.gpus:
                return None
            for i in chosen:
                self.free[i] -= need
            return chosen

    def give(self, cell: Cell, ids: list[int]) -> None:
        with self.cond:
            for i in ids:
                self.free[i] += UNITS_PER_GPU if cell.heavy else 1
            self.cond.notify_all()


def run_cells(cells: list[Cell], gpus: int) -> None:
    pool = Gpus(max(1, gpus))
    pending = [c for c in cells if c.gpus <= max(1, gpus)]
    for c in cells:
        if c.gpus > max(1, gpus):
            print(f"=== {c.name}: needs {c.gpus} GPUs, {gpus} here: not run", flush=True)
    threads: list[threading.Thread] = []

    def work(cell: Cell, ids: list[int]) -> None:
        try:
            result = run_cell(cell, ids)
        except Exception as exc:  # a driver bug must not lose the other cells
            result = {"result": "driver error", "error": f"{type(exc).__name__}: {exc}"}
        finally:
            pool.give(cell, ids)
        with LOCK:
            RESULTS["cells"][cell.name] = result
        save_results()
        print(
            f"=== CELL {cell.name}: {result.get('result')} rc={result.get('rc')} wall={result.get('wall_s')}"
            f" peak={result.get('peak_MiB_own') or result.get('peak_MiB_per_gpu')}"
            f" s/step={result.get('s_per_step')} err={result.get('error')}",
            flush=True,
        )

    while pending:
        left = state.CFG.left() - state.PACK_MARGIN
        fits = [c for c in pending if c.cost <= left]
        if not fits:
            break
        running = {c.name for c in cells if c not in pending and c.name not in RESULTS["cells"]}
        for c in [c for c in fits if c.lora_from and not P.lora(c.lora_from).is_file()]:
            if c.lora_from not in running and c.lora_from not in {p.name for p in pending}:
                pending.remove(c)  # its LoRA will not come: run_cell records "not run"
                work(c, [])
        ready = [c for c in pending if c.cost <= left]
        ready = [c for c in ready if c.lora_from is None or P.lora(c.lora_from).is_file()]
        started = False
        for cell in ready:
            ids = pool.take(cell)
            if ids is None:
                if cell.heavy:
                    break  # keep the order: a heavy cell waits for its GPUs to drain
                continue
            pending.remove(cell)
            print(f"=== start {cell.name} on GPU {ids} ({left:.0f} s left)", flush=True)
            thread = threading.Thread(target=work, args=(cell, ids), daemon=True)
            thread.start()
            threads.append(thread)
            started = True
            break
        if not started:
            with pool.cond:
                pool.cond.wait(timeout=2.0)
    for c in pending:
        print(f"=== {c.name}: not started (deadline)", flush=True)
    for thread in threads:
        thread.join()


def pack() -> None:
    out = state.CFG.out
    with tarfile.open(out / "matrix-logs.tgz", "w:gz") as tar:
        for folder in (state.CFG.logs, P.configs):
            if folder.is_dir():
                for path in sorted(folder.rglob("*")):
                    wanted = path.suffix in (".log", ".yaml", ".toml", ".txt", ".csv", ".json")
                    if wanted and path.is_file() and path.stat().st_size < 4 << 20:
                        tar.add(path, arcname=str(path.relative_to(P.root)))


# ------------------------------------------------------------------------------ here: merge, verdicts, table
def load_matrix() -> dict[str, Any]:
    try:
        return json.loads(MATRIX_JSON.read_text())
    except (OSError, ValueError):
        return {"cells": {}, "runs": []}


def write_matrix(matrix: dict[str, Any]) -> None:
    order = {c.name: i for i, c in enumerate(CELLS)}
    matrix["cells"] = dict(sorted(matrix["cells"].items(), key=lambda kv: order.get(kv[0], 999)))
    MATRIX_JSON.write_text(json.dumps(matrix, indent=1, ensure_ascii=False) + "\n")


VERSION_KEYS = ("torch", "accelerate", "transformers", "bitsandbytes", "python")


def merge(path: Path) -> None:
    """A returned matrix.json into benchmarks/gpu_matrix.json: a cell's newest finished result wins;
    each result keeps the GPU, date and versions of the run that made it."""
    run = json.loads(path.read_text())
    matrix = load_matrix()
    earlier = [r.get("versions") for r in matrix.get("runs", []) if any((r.get("versions") or {}).values())]
    versions = run.get("versions") or (earlier[-1] if earlier else {})
    meta = {
        "gpu": run.get("gpu_names"),
        "date": run.get("started"),
        "musubi_tuner": run.get("musubi_commit"),
        "fplora": run.get("fplora_commit"),
        "versions": {k: versions.get(k) for k in VERSION_KEYS},
    }
    matrix.setdefault("runs", []).append({**meta, "cells": sorted(run.get("cells", {}))})
    for name, result in run.get("cells", {}).items():
        if result.get("result") in ("killed", "not run") and name in matrix["cells"]:
            continue
        keep = {k: v for k, v in matrix["cells"].get(name, {}).items() if k == "check"}
        matrix["cells"][name] = {**result, **keep, "run": meta}
    write_matrix(matrix)
    print(f"merged {len(run.get('cells', {}))} cells into {MATRIX_JSON}")


def check_verdicts(root: Path) -> None:
    """`fplora check --skip-models` on every cell's spec, here, against stand-in data: the verdict
    recorded beside each GPU result (does check refuse what fails, and only that?)."""
    global P
    P = Paths(root, root / "models")
    state.CFG = _config(root, local="fake", deadline=3600, out=root / "out")
    make_data(local=True)
    write_specs()
    if not P.lora("ref").is_file():  # net-weights names the ref cell's LoRA
        fake.write_safetensors(P.lora("ref"), {}, {"stand_in": "gpu_matrix --check-verdicts"})
    matrix = load_matrix()
    for cell in CELLS:
        env = proc.env()
        done = subprocess.run(
            [sys.executable, "-m", "fplora", "check", "--skip-models", str(P.spec(cell.name))],
            capture_output=True, text=True, env=env, cwd=root, check=False,
        )  # fmt: skip
        lines = [x for x in done.stderr.splitlines() if x.strip()]
        problems = [x for x in lines if re.search(r"\.yaml:\d+: ", x)]
        warned = any(x.startswith("warning:") for x in lines)
        verdict = "refused" if done.returncode else ("warns" if warned else "ok")
        entry = matrix["cells"].setdefault(cell.name, {"family": cell.family, "settings": cell.settings})
        entry["check"] = {
            "verdict": verdict,
            "problems": [_short(x, root) for x in problems][:4],
        }
        print(f"{cell.name:24} {verdict:8} {(problems or [''])[0][:150]}")
    write_matrix(matrix)


def _short(line: str, root: Path) -> str:
    return line.replace(str(root) + "/", "")


def table() -> str:
    matrix = load_matrix()
    rows = ["| cell | family | settings | GPU result | check | error (first line) | peak MiB | s/step |",
            "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for cell in CELLS:
        r = matrix["cells"].get(cell.name, {})
        result = r.get("result") or (f"not run: {cell.skip}" if cell.skip else "not run")
        peak = r.get("peak_MiB_own") or max((r.get("peak_MiB_per_gpu") or {"": None}).values(), default=None)
        if r.get("peak_MiB_per_gpu") and len(r["peak_MiB_per_gpu"]) > 1:
            peak = " / ".join(str(v) for v in r["peak_MiB_per_gpu"].values())
        err = (r.get("error") or "").replace("|", "\\|")
        if len(err) > 140:
            err = err[:137] + "..."
        step = r.get("s_per_step")
        verdict = (r.get("check") or {}).get("verdict", "")
        rows.append(
            f"| {cell.name} | {cell.family} | {cell.settings} | {result} | {verdict} | {err} |"
            f" {peak if peak is not None else ''} | {step if step is not None else ''} |"
        )
    return "\n".join(rows) + "\n"


# ------------------------------------------------------------------------------------------ fake musubi
def fake_python(argv: list[str]) -> int:
    """The harness's fake musubi-tuner, which also fails as musubi-tuner does where the matrix knows it
    must (so that --local-fake exercises the error-line and failure paths)."""
    import tomllib

    if "musubi_tuner.fpack_train_network" in argv:
        config = tomllib.loads(Path(argv[argv.index("--config_file") + 1]).read_text())
        dataset = tomllib.loads(Path(config["dataset_config"]).read_text())
        batches = [d.get("batch_size", dataset["general"].get("batch_size", 1)) for d in dataset["datasets"]]
        if config.get("sdpa") and max(batches) > 1 and not config.get("split_attn"):
            print('Traceback (most recent call last):\n  File "hunyuan_video_packed.py", line 828')
            print("NotImplementedError: No Attn Installed or batch_size > 1 is not supported in this"
                  " configuration. Try `--split_attn`.", flush=True)  # fmt: skip
            return 1
        if config.get("blocks_to_swap", 0) > MAX_SWAP:
            print("AssertionError: Cannot swap more than 19 double blocks and 39 single blocks.", flush=True)
            return 1
    return fake.fake_python(argv)


def write_fake_python() -> None:
    script = state.CFG.root / "bin" / "fake-python"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(f'#!/bin/sh\nexec {sys.executable} {Path(__file__)} --fake-python "$@"\n')
    script.chmod(0o755)


# ------------------------------------------------------------------------------------------ main
def _config(root: Path, *, local: str | None, deadline: float, out: Path) -> state.Config:
    seen = proc.gpu_count()
    return state.Config(
        root=root,
        models=root / "models" if local else Path("/tmp/models"),
        out=out,
        deadline=deadline,
        gpus=max(1, seen),
        gpus_seen=seen,
        e2e_batch=1,
        e2e_swap=0,
        timing_steps=0,
        train2_steps=0,
        records=RECORDS,
        local=local,
    )


def _read(path: Path) -> str | None:
    return path.read_text().strip() if path.is_file() else None


def select(words: list[str]) -> list[Cell]:
    if not words or words == ["all"]:
        return [c for c in CELLS if not c.skip]
    chosen = []
    for word in words:
        found = [c for c in CELLS if word in (c.name, c.family) and not c.skip]
        if not found:
            raise SystemExit(f"no cell or family {word!r}")
        chosen += [c for c in found if c not in chosen]
    return chosen


def main() -> int:
    global P, PROCS
    if sys.argv[1:2] == ["--fake-python"]:
        return fake_python(sys.argv[2:])
    if sys.argv[1:2] == ["--fplora"]:
        return fplora_unchecked(sys.argv[2:])
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("cells", nargs="*", help="cells or families (default: all), in CELLS' order")
    parser.add_argument("--deadline", type=float, default=560, help="seconds from start to be packed by")
    parser.add_argument("--root", default=None, help="work folder (default /tmp/fpmatrix)")
    parser.add_argument("--out", default=None, help="results folder (default $OUT, else <root>/out)")
    parser.add_argument("--redo", action="store_true", help="run cells that already have a result here")
    parser.add_argument("--local-fake", action="store_true", help="no GPU: fake musubi-tuner")
    parser.add_argument("--merge", metavar="JSON", help="merge a returned matrix.json into gpu_matrix.json")
    parser.add_argument("--check-verdicts", action="store_true", help="fplora check on every cell, here")
    parser.add_argument("--table", action="store_true", help="print the markdown table of gpu_matrix.json")
    a = parser.parse_args()
    if a.merge:
        merge(Path(a.merge))
        return 0
    if a.table:
        print(table(), end="")
        return 0
    if a.check_verdicts:
        check_verdicts(Path(a.root or "/tmp/fpmatrix-check"))
        return 0
    local = "fake" if a.local_fake else None
    root = Path(a.root or ("/tmp/fpmatrix-local" if local else "/tmp/fpmatrix"))
    if local and a.root is None and root.exists() and not a.cells:
        shutil.rmtree(root)
    out = Path(a.out or os.environ.get("OUT") or root / "out")
    state.CFG = _config(root, local=local, deadline=a.deadline, out=out)
    repo = Path.cwd()
    state.REPO, state.SETUP, state.WHL3 = repo, HERE / "gpu_setup", repo / ".whl3"
    state.SRC = HERE.parent / "src"  # the committed snapshot (.matrix/src), never the work tree's src
    P = Paths(root, state.CFG.models)
    for folder in (root, state.CFG.logs, state.CFG.marks, out, P.runs):
        folder.mkdir(parents=True, exist_ok=True)
    if local:
        write_fake_python()
    else:
        state.GPU = proc.gpu_monitor()
        PROCS = ProcMon()
    with contextlib.suppress(OSError, ValueError):
        RESULTS.update(json.loads(P.results.read_text()))
    RESULTS.update(
        started=time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        argv=sys.argv[1:],
        mode=local or "gpu",
        gpus_seen=state.CFG.gpus_seen,
        gpu_names=driver.gpu_names(),
        musubi_commit=_read(repo / ".musubi" / "COMMIT"),
        fplora_commit=_read(HERE.parent / "COMMIT"),
    )  # fmt: skip
    try:
        cells = select(a.cells)
        if not a.redo:
            cells = [c for c in cells if RESULTS["cells"].get(c.name, {}).get("result") in (None, "killed")]
        ready = setup(["install", "weights", "data", "cache"], bool(local))
        if ready or local:
            run_cells(cells, state.CFG.gpus_seen if not local else 2)
        else:
            print("=== setup failed: no cells run", flush=True)
    finally:
        if state.GPU:
            state.GPU.stop()
        if PROCS:
            PROCS.stop()
        save_results()
        pack()
    done = RESULTS["cells"]
    passed = sum(r.get("result") == "pass" for r in done.values())
    failed = sum(r.get("result") == "fail" for r in done.values())
    print(f"=== {passed} pass, {failed} fail, {len(done)} cells", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
