"""The fplora specs the stages run: the memo's house settings on this machine's paths (base.yaml) and
the versions that extend it (e2e, g<N>, timing)."""

from __future__ import annotations

from pathlib import Path

from harness import state
from harness.state import NETWORK_DIM, PROJECT

# The sections every GPU driver's base spec shares (gpu_e2e's here, gpu_matrix.py's own base): the
# models benchmarks/gpu_setup fetches, one sample at most and one process; each base adds the rest.
SAMPLE = """\
sample:
  at_first: false
  every_n_steps: null
  steps: 4
  prompts:
    - record: 1
"""
LAUNCH = """\
launch:
  num_processes: 1
  mixed_precision: bf16
  dynamo_backend: "no"
"""


def models_section(models: Path) -> str:
    """The models: section, for the weights benchmarks/gpu_setup puts under `models`."""
    return f"""\
models:
  dir: {models}
  dit: diffusion_models/FramePackI2V_HY/diffusion_pytorch_model-00001-of-00003.safetensors
  vae: vae/diffusion_pytorch_model.safetensors
  text_encoder1: text_encoder/model-00001-of-00004.safetensors
  text_encoder2: text_encoder_2/model.safetensors
  image_encoder: image_encoder/model.safetensors
  fp8_llm: true
  vae_chunk_size: 32
  vae_spatial_tile_sample_min_size: 128
"""


def write_if_changed(path: Path, text: str) -> None:
    """Write a spec (or data file) only when its text differs: a warm machine's files keep their
    mtimes, and fplora sees no change where there is none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)


def spec_texts() -> dict[str, str]:
    c = state.CFG
    # the memo's kisekaeichi (2 controls), or one control image with the target at the window's end
    one_frame = (
        "  clean_indices: [0, 10]\n  target_index: 5"
        if c.controls == 2
        else "  clean_indices: [0]\n  target_index: 9"
    )
    base = f"""\
# Written by benchmarks/gpu_e2e.py: the memo's house settings (configs/base.yaml) on this machine.
project: {PROJECT}

{models_section(c.models)}
data:
  resolution: [{c.width}, {c.height}]
  caption_extension: .txt
  batch_size: 16
  enable_bucket: true
  bucket_no_upscale: false

datasets:
  - jsonl: {c.jsonl}
    cache_directory: {c.cache}   # one cache for every spec here: same data, same one-frame settings
    num_repeats: 10

one_frame:
{one_frame}
  no_post: true

train:
  output_dir: {c.runs}
  seed: 42
  mixed_precision: bf16
  attention: sdpa
  split_attn: true
  blocks_to_swap: 20
  img_in_txt_in_offloading: true
  gradient_checkpointing: true
  network: {{module: networks.lora_framepack, dim: {NETWORK_DIM}, alpha: 16}}
  optimizer: {{type: adamw8bit, learning_rate: 1.0e-3}}
  max_data_loader_n_workers: 1
  persistent_data_loader_workers: true
  timestep_sampling: shift
  discrete_flow_shift: 6.0
  save_state: true
  save_state_on_train_end: true
  logging: {{with: null}}

{SAMPLE}
{LAUNCH}
infer:
  fp8_scaled: true
  attention: sdpa
  output_type: latent_images
  steps: 8
  multipliers: [1.0, 1.2]
  prompts:
    - record: 1
    - record: 2
"""
    e2e = f"""\
# The end-to-end run: `fplora train` (steps 1-2), then `fplora train --resume latest` with
# E2E_MAX_STEPS=4 (steps 3-4, segment -r1), then `fplora infer --lora step3`.
extends: base.yaml

data:
  batch_size: {c.e2e_batch}

train:
  blocks_to_swap: {c.e2e_swap}
  max_train_steps: "${{E2E_MAX_STEPS:-2}}"
  save_every_n_steps: 1
  logging: {{with: tensorboard, logging_dir: {c.runs}/logs, log_config: true}}

sample:
  at_first: true
  every_n_steps: 1
"""
    g = f"""\
# Data-parallel training on {c.gpus} GPUs (accelerate --multi_gpu), batch {c.e2e_batch} per GPU.
extends: base.yaml

data:
  batch_size: {c.e2e_batch}

train:
  blocks_to_swap: {c.e2e_swap}
  max_train_steps: {c.train2_steps}
  save_every_n_steps: null
  save_state: false
  save_state_on_train_end: false

launch:
  num_processes: {c.gpus}
"""
    timing = f"""\
# The memo's training settings (batch 16, blocks_to_swap 20), a few steps, for seconds per step.
extends: base.yaml

train:
  max_train_steps: {c.timing_steps}
  save_every_n_steps: null
  save_state: false
  save_state_on_train_end: false
"""
    return {"base": base, "e2e": e2e, c.g_version: g, "timing": timing}


def write_specs() -> None:
    for version, text in spec_texts().items():
        write_if_changed(state.CFG.spec(version), text)
