"""Tiny stand-ins for FramePack's five models, for `fplora rehearse` (runs in the musubi-tuner Python).

Why: a rehearsal runs musubi-tuner's own scripts on the commands fplora renders, on a laptop or a CPU
CI machine, before GPU time is paid for. Everything musubi-tuner computes *with* the models stays its
own code; only what needs the real weights (tens of GB) or downloads (tokenizers) is replaced, at the
narrowest seam:

- DiT: the real class and its real loader (safetensors shards, LoRA merged while the weights stream
  in, fp8 optimisation) on a real weights file that `write_dit` makes. The architecture keeps its
  block counts and module names (20 double-stream, 40 single-stream and 2 refiner blocks), so that
  `blocks_to_swap`, network arguments that pick modules by name, and LoRA key names behave as on the
  real model; only the widths shrink (one attention head of the real 128 channels, MLP ratio 1), by
  wrapping the class's `__init__`.
- VAE: HunyuanVideo's real class and its real loaders (framepack's, then hunyuan's from a weights
  file that `write_vae` makes), at 32 channels instead of 128-512: chunked causal convolutions
  (`vae_chunk_size`) and spatial tiling (`vae_spatial_tile_sample_min_size`, `vae_tiling`) run their
  own code, so a setting that makes them loop forever or give the wrong size shows here. In bf16
  without CUDA (CPU autocast cannot mix fp16 into bf16 regions); fp16 as the real one on a GPU.
- SigLIP image encoder and both text encoders: the loaders return placeholders (their tokenizers
  would be downloaded), and the encode functions return seeded tensors of the real widths and dtypes,
  seeded by the input's bytes, so every process gets the same output for the same input. The image
  encoder gives 16 tokens instead of 729: the DiT's image projection takes any count.
- LoRA files the spec names (`network_weights`, `base_weights`) were made for the real DiT: a
  stand-in of each (`write_lora`) keeps its keys, ranks, alphas, dtypes and metadata, shaped for the
  stand-in DiT, so that musubi-tuner's own loading of them (names matched to modules, ranks read
  off the weights, alphas, size checks) runs as on the GPU.
- Without CUDA, FramePack's attention kernels (flash_attn, xformers, sageattention: CUDA-only
  packages) are PyTorch attention on the same tensors (`stand_in_attention_kernels`), so that the
  options that pick one are rehearsed everywhere else.
- Without CUDA, `torch.compile` returns the model as it is (`_no_compile_without_cuda`).
- musubi-tuner's fixed 5 s waits for block swaps to finish (and the sweep worker's copy of them) are
  skipped without CUDA (its CPU swap path copies synchronously, there is nothing to wait for) and
  shortened with CUDA to a device synchronize and a brief pause: the stand-in's blocks are ~0.5 MB,
  their transfers take milliseconds, and the waits cost a rehearsal ~15 s on a GPU. Its caching's
  0.1 s polls of its encoding threads become 5 ms ones (the stand-ins encode in milliseconds).
- Without CUDA, `torch.cuda.current_device` answers 0 and `torch.cuda.set_device` does nothing:
  musubi-tuner's `wan/modules/t5.py` calls the first in a default argument while being imported
  (every training script does), and the block-swap offloader calls the second before each move; the
  moves themselves take musubi-tuner's own path for devices without CUDA streams.

- Training length: the config keeps the run's real `max_train_steps` (or `max_train_epochs`), so that
  the learning-rate scheduler is built for the real run (a warmup, decay or cycle count that fits 10,000
  steps but not 2 is no error); once it is built, the trainer is told to stop after the rehearsal's
  few steps (`STEPS_ENV`, set by the worker per stage). Saving, sampling and states then run as at
  the end of a real run.

`PATCHES` maps a module name to (before, after) hooks that run around the module's first import.
"""

from __future__ import annotations

import functools
import json
import struct
import types
import zlib
from collections.abc import Callable
from typing import Any

DIT_SHRINK = {"num_attention_heads": 1, "mlp_ratio": 1.0}
"""What the stand-in DiT changes of the real one's size: widths only, never the block counts."""

IMAGE_TOKENS = 16
STEPS_ENV = "FPLORA_REHEARSE_STEPS"


def _torch() -> Any:
    import torch

    return torch


def _generator(*parts: bytes) -> Any:
    seed = 0
    for part in parts:
        seed = zlib.crc32(part, seed)
    return _torch().Generator().manual_seed(seed)


class _Placeholder:
    """Stands for a loaded model object that only has to be moved around. A move is checked as torch
    checks the real model's: to a device this machine lacks (`musubi.cache_text_encoder.device:
    cuda` without CUDA) it fails with torch's own error, which the rehearsal reports as the
    machine's, instead of passing a code path that never ran there."""

    def __init__(self, dtype_name: str) -> None:
        torch = _torch()
        self.device, self.dtype = torch.device("cpu"), getattr(torch, dtype_name)

    def to(self, *args: Any, **kwargs: Any) -> _Placeholder:
        _torch().empty(0).to(*args, **kwargs)
        return self

    def eval(self) -> _Placeholder:
        return self

    def requires_grad_(self, *args: Any) -> _Placeholder:
        return self


VAE_SHRINK = {"block_out_channels": (32, 32, 32, 32)}
"""What the stand-in VAE changes of HunyuanVideo's: its widths only (the real 128-512 channels);
blocks, layers, group norms, causal convolutions, 8x spatial compression to 16 channels kept."""


def shrink_vae(module: types.ModuleType) -> None:
    """HunyuanVideo's VAE class at the stand-in's widths, made by its own loader from the weights
    file `write_vae` writes: chunked convolutions and spatial tiling then run their real code."""
    cls = module.AutoencoderKLCausal3D
    original = cls.__init__

    @functools.wraps(original)  # diffusers' from_config reads the parameters off the signature
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **{**kwargs, **VAE_SHRINK})

    cls.__init__ = __init__


def _vae_dtype_for_cpu(module: types.ModuleType) -> None:
    """Without CUDA the VAE loads in bf16 instead of fp16, and decodes to fp32: torch's CPU autocast
    cannot mix fp16 tensors into bf16 regions (`torch.cat` raises in the training sampler), and
    numpy, which saves generate's images, has no bf16; on CUDA both work in fp16."""
    torch = _torch()
    if torch.cuda.is_available():
        return
    load = module.load_vae

    def load_vae(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("vae_dtype") in (torch.float16, "float16", "fp16"):
            kwargs["vae_dtype"] = torch.bfloat16
        loaded = load(*args, **kwargs)
        decode = loaded[0].decode

        def decode_fp32(*args: Any, **kwargs: Any) -> Any:
            out = decode(*args, **kwargs)
            if isinstance(out, tuple):
                return tuple(x.float() for x in out)
            out.sample = out.sample.float()
            return out

        loaded[0].decode = decode_fp32
        return loaded

    _patch(module, load_vae=load_vae)


def write_vae(path: str) -> None:
    """The stand-in VAE's fp16 weights, seeded, as a safetensors file the real loader reads."""
    import re

    from musubi_tuner.hunyuan_model import vae as vae_module
    from musubi_tuner.hunyuan_model.autoencoder_kl_causal_3d import AutoencoderKLCausal3D
    from safetensors.torch import save_file

    torch = _torch()
    source = open(vae_module.__file__, encoding="utf-8").read()  # noqa: SIM115
    config = json.loads(re.search(r'CONFIG_JSON = """(.*?)"""', source, re.S).group(1))  # type: ignore[union-attr]
    torch.manual_seed(0)
    model = AutoencoderKLCausal3D.from_config(config)
    save_file({k: v.to(torch.float16).contiguous() for k, v in model.state_dict().items()}, path)


def load_image_encoders(args: Any) -> tuple[Any, Any]:
    return None, _Placeholder("float16")


def load_text_encoder1(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
    return _Placeholder("float16"), _Placeholder("float16")


def load_text_encoder2(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
    return _Placeholder("float16"), _Placeholder("float16")


def hf_clip_vision_encode(image: Any, feature_extractor: Any, image_encoder: Any) -> Any:
    """SigLIP so400m's width (1152), fp16, fewer tokens."""
    import numpy as np

    torch = _torch()
    g = _generator(np.ascontiguousarray(image).tobytes())
    state = torch.randn(1, IMAGE_TOKENS, 1152, generator=g).to(torch.float16)
    return types.SimpleNamespace(last_hidden_state=state)


def encode_prompt_conds(prompt: str, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """Llama hidden states (n tokens of 4096) and the CLIP-L pooler (768), fp16."""
    torch = _torch()
    system = kwargs.get("custom_system_prompt") or ""
    g = _generator(prompt.encode(), system.encode())
    tokens = 5 + len(prompt) % 5
    llama = torch.randn(1, tokens, 4096, generator=g).to(torch.float16)
    pooler = torch.randn(1, 768, generator=g).to(torch.float16)
    return llama, pooler


def shrink_dit(module: types.ModuleType) -> None:
    cls = module.HunyuanVideoTransformer3DModelPacked
    original = cls.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **{**kwargs, **DIT_SHRINK})

    cls.__init__ = __init__


def _sdpa(q: Any, k: Any, v: Any) -> Any:
    """Attention on [batch, tokens, heads, dim] tensors (the kernels' layout) with PyTorch's sdpa."""
    torch = _torch()
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    return torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2)


def _dense_attention(q: Any, k: Any, v: Any, *args: Any, **kwargs: Any) -> Any:
    """Stands for flash_attn_func, xformers' memory_efficient_attention and sageattn (NHD)."""
    return _sdpa(q, k, v)


def _varlen_attention(q: Any, k: Any, v: Any, cu_q: Any, cu_k: Any, *args: Any, **kwargs: Any) -> Any:
    """Stands for flash_attn_varlen_func and sageattn_varlen: [tokens, heads, dim] with the sequences'
    boundaries in `cu_q`/`cu_k`, each sequence attending to itself."""
    torch = _torch()
    out = torch.zeros_like(q)
    bounds = zip(cu_q.tolist()[:-1], cu_q.tolist()[1:], cu_k.tolist()[:-1], cu_k.tolist()[1:], strict=True)
    for q0, q1, k0, k1 in bounds:
        if q1 > q0:
            out[q0:q1] = _sdpa(q[None, q0:q1], k[None, k0:k1], v[None, k0:k1])[0]
    return out


ATTENTION_STANDINS = {
    "xformers_attn_func": _dense_attention,
    "flash_attn_func": _dense_attention,
    "flash_attn_varlen_func": _varlen_attention,
    "sageattn": _dense_attention,
    "sageattn_varlen": _varlen_attention,
}
"""FramePack's attention kernels (module names in `frame_pack/hunyuan_video_packed.py`) and what
stands for each on a machine without CUDA, where none of them can be installed."""


def stand_in_attention_kernels(module: types.ModuleType) -> None:
    """Without CUDA, the kernels FramePack found missing (it sets their names to None when their import
    fails) become PyTorch attention on the same tensors, in the kernel's layout: the code around the
    kernel (the attention mode the options choose, split_attn's per-sample loop, the var-len path and
    its refusals) runs as on the GPU box; only the kernel itself does not. fplora says so per stage.
    FramePack always passes its attention mode, so a stand-in never replaces the mode a spec chose."""
    if _torch().cuda.is_available():
        return
    for name, standin in ATTENTION_STANDINS.items():
        if getattr(module, name, standin) is None:
            setattr(module, name, standin)


def tiny_dit(seed: int = 0) -> Any:
    """The stand-in DiT with seeded weights, non-zero everywhere: the real model's zero-initialised
    output layers would make every LoRA invisible."""
    from musubi_tuner.frame_pack.hunyuan_video_packed import HunyuanVideoTransformer3DModelPacked

    torch = _torch()
    torch.manual_seed(seed)
    model = HunyuanVideoTransformer3DModelPacked(
        attention_head_dim=128,
        guidance_embeds=True,
        has_clean_x_embedder=True,
        has_image_proj=True,
        image_proj_dim=1152,
        in_channels=16,
        out_channels=16,
        patch_size=2,
        patch_size_t=1,
        pooled_projection_dim=768,
        qk_norm="rms_norm",
        rope_axes_dim=(16, 56, 56),
        rope_theta=256.0,
        text_embed_dim=4096,
        num_layers=20,
        num_single_layers=40,
        num_refiner_layers=2,
    )
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2 or name.endswith("bias"):
                p.copy_(torch.randn(p.shape) * (0.02 if p.dim() < 2 else p.shape[-1] ** -0.5))
    return model.to(torch.bfloat16)


def write_dit(shards: list[str]) -> None:
    """The stand-in DiT's bf16 weights over `shards`, round robin, as a sharded checkpoint."""
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in tiny_dit().state_dict().items()}
    for index, path in enumerate(shards):
        part = {k: v for i, (k, v) in enumerate(sorted(state.items())) if i % len(shards) == index}
        save_file(part, path)


def _header(path: str) -> dict[str, Any]:
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header: dict[str, Any] = json.loads(handle.read(length))
    return header


LORA_DOWN = (".lora_down.weight", ".lora_A.weight")  # musubi-tuner's names, diffusers/PEFT's
LORA_UP = (".lora_up.weight", ".lora_B.weight")
_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
}
_KEPT_AS_IS = 4096  # elements: alphas and other small tensors are copied from the file as they are


def _linear_shapes(shards: list[str]) -> dict[str, tuple[int, int]]:
    """The stand-in DiT's Linear weight shapes (out, in), by each name a LoRA gives the module:
    musubi-tuner's `lora_unet_<path, "." as "_">`, diffusers' `transformer.<path>` and the bare path."""
    shapes: dict[str, tuple[int, int]] = {}
    for shard in shards:
        for name, info in _header(shard).items():
            if not (name.endswith(".weight") and isinstance(info, dict) and len(info["shape"]) == 2):
                continue
            path, shape = name[: -len(".weight")], (info["shape"][0], info["shape"][1])
            for alias in ("lora_unet_" + path.replace(".", "_"), "transformer." + path, path):
                shapes[alias] = shape
    return shapes


def _standin_shape(name: str, shape: list[int], shapes: dict[str, tuple[int, int]]) -> list[int] | None:
    """The shape a LoRA tensor gets for the stand-in DiT (rank kept), or None to copy it as it is."""
    for suffixes, rank_axis in ((LORA_DOWN, 0), (LORA_UP, 1)):
        suffix = next((s for s in suffixes if name.endswith(s)), None)
        if suffix is None or len(shape) != 2:
            continue
        module = shapes.get(name[: -len(suffix)])
        if module is None:  # no such module: musubi-tuner's loaders pass it by; kept small
            return [shape[0], min(shape[1], 8)] if rank_axis == 0 else [min(shape[0], 8), shape[1]]
        return [shape[0], module[1]] if rank_axis == 0 else [module[0], shape[1]]
    count = 1
    for size in shape:
        count *= size
    return None if count <= _KEPT_AS_IS else [min(size, 8) for size in shape]


def write_lora(source: str, target: str, shards: list[str]) -> None:
    """A stand-in of the LoRA file `source` (made for the real DiT) at `target`: the same tensor
    names, ranks, dtypes and metadata, the alphas (and other small tensors) copied, and each
    down/up matrix shaped for the stand-in DiT's module of that name, with small seeded values.
    A rank or an alpha that disagrees with the spec, a key that names no module, a dtype: all reach
    musubi-tuner as the real file would bring them; only the DiT widths differ."""
    import os

    from safetensors import safe_open
    from safetensors.torch import save_file

    torch = _torch()
    header = _header(source)
    metadata = header.pop("__metadata__", None)
    shapes = _linear_shapes(shards)
    tensors = {}
    with safe_open(source, framework="pt") as real:
        for name, info in sorted(header.items()):
            shape = _standin_shape(name, list(info["shape"]), shapes)
            if shape is None:
                tensors[name] = real.get_tensor(name)
                continue
            dtype = getattr(torch, _DTYPES.get(info["dtype"], "float32"))
            values = torch.randn(shape, generator=_generator(name.encode())) * 0.01
            tensors[name] = values.to(dtype)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    save_file(tensors, target, metadata=metadata)


def _cuda_current_device(module: types.ModuleType) -> None:
    """Without CUDA: device 0 is "current", and choosing it does nothing. Besides t5.py's import, the
    block-swap offloader selects the device before each move; its moves themselves have a path
    without CUDA streams (CPU to CPU here), so the swap code runs, only without its memory effect."""
    torch = _torch()
    if not torch.cuda.is_available():
        torch.cuda.current_device = lambda: 0
        torch.cuda.set_device = lambda device: None


SWAP_WAIT = 5
"""Seconds of musubi-tuner's fixed "wait until block swap is done" sleeps."""
SWAP_WAIT_CUDA = 0.05
"""What a swap wait becomes with CUDA, after a device synchronize: the stand-in's blocks (~0.5 MB)
copy in well under a millisecond once the swap thread issues them."""
_WAITERS = ("/musubi_tuner/", "/fplora/worker/")
CACHE_POLL = 0.1
"""Seconds musubi-tuner's caching sleeps between looks at its encoding threads' futures
(`dataset/image_video_dataset.py`, while it collects batches to encode or save)."""
CACHE_POLL_SHORT = 0.005
"""What such a look's sleep becomes: the stand-ins' encodings finish in milliseconds, and every poll
but the last was a wait for nothing (~0.3 s of a rehearsal's caching, on a CPU and on a GPU alike)."""
_POLLERS = ("/musubi_tuner/dataset/",)


def _shorten_fixed_waits() -> None:
    """musubi-tuner's fixed 5 s waits "until block swap is done" (four in generate, one per training
    sample, always) and the sweep worker's copy of them: skipped without CUDA, where its swap path
    copies synchronously; with CUDA a synchronize of the device and a 0.05 s pause, which the stand-in
    DiT's tiny blocks need (their copies take milliseconds). The caching scripts' 0.1 s polls of
    their worker threads become 5 ms ones: the same loop and checks, looking more often. Only these
    sleeps, called from musubi-tuner's or fplora's worker code, change; every other sleep is left
    alone."""
    import sys
    import time

    torch = _torch()
    cuda = torch.cuda.is_available()
    sleep = time.sleep

    def short_sleep(seconds: Any) -> None:
        caller = sys._getframe(1).f_code.co_filename.replace("\\", "/")
        if seconds == CACHE_POLL and any(part in caller for part in _POLLERS):
            sleep(CACHE_POLL_SHORT)
        elif seconds != SWAP_WAIT or not any(part in caller for part in _WAITERS):
            sleep(seconds)
        elif cuda:
            torch.cuda.synchronize()
            sleep(SWAP_WAIT_CUDA)

    time.sleep = short_sleep


def _stop_after_rehearsal_steps(module: types.ModuleType) -> None:
    """The scheduler is built for the run's real length, then the loop stops after `STEPS_ENV` steps:
    `get_lr_scheduler` is the last place before the loop that reads `max_train_steps` for the run's
    length (the data group's copy and the epoch override come before it, as in a real run)."""
    import os

    trainer = module.NetworkTrainer
    original = trainer.get_lr_scheduler

    def get_lr_scheduler(self: Any, args: Any, *rest: Any, **kwargs: Any) -> Any:
        scheduler = original(self, args, *rest, **kwargs)
        steps = os.environ.get(STEPS_ENV)
        if steps:
            args.max_train_steps = min(int(args.max_train_steps), int(steps))
        return scheduler

    trainer.get_lr_scheduler = get_lr_scheduler


def _packed_dit(module: types.ModuleType) -> None:
    shrink_dit(module)
    stand_in_attention_kernels(module)


def _no_compile_without_cuda() -> None:
    """Without CUDA, `torch.compile` hands back what it is given: on a CPU, inductor would generate and
    build C++ kernels for every block (minutes on a laptop, and not the GPU's Triton kernels either).
    musubi-tuner's own compile code (its options, the blocks it picks, what it excludes for block
    swap) and accelerate's dynamo plugin still run; fplora says the compile itself was not rehearsed.

    torch's own call is still made, and its wrapper thrown away: `torch.compile` checks its arguments
    when it is called (a backend name it does not know, such as `compile_backend: inductr`, raises
    InvalidBackend there on the GPU box too), while the compile itself waits for the first call of
    what it returns, which never comes."""
    torch = _torch()
    if torch.cuda.is_available():
        return
    real = torch.compile

    def compile(model: Any = None, **options: Any) -> Any:
        if model is None:  # the decorator form: `@torch.compile(...)`
            real(**options)
            return lambda function: function
        real(model, **options)
        return model

    torch.compile = compile


def _patch(module: types.ModuleType, **names: Any) -> None:
    for name, value in names.items():
        setattr(module, name, value)


Hook = Callable[[types.ModuleType], None]
_LOADERS = {
    "load_image_encoders": load_image_encoders,
    "load_text_encoder1": load_text_encoder1,
    "load_text_encoder2": load_text_encoder2,
}
PATCHES: dict[str, tuple[Hook | None, Hook | None]] = {
    "musubi_tuner.wan.modules.t5": (_cuda_current_device, None),
    "musubi_tuner.training.trainer_base": (None, _stop_after_rehearsal_steps),
    "musubi_tuner.frame_pack.hunyuan_video_packed": (None, _packed_dit),
    "musubi_tuner.hunyuan_model.autoencoder_kl_causal_3d": (None, shrink_vae),
    "musubi_tuner.hunyuan_model.vae": (None, _vae_dtype_for_cpu),
    "musubi_tuner.frame_pack.framepack_utils": (None, lambda m: _patch(m, **_LOADERS)),
    "musubi_tuner.frame_pack.clip_vision": (
        None,
        lambda m: _patch(m, hf_clip_vision_encode=hf_clip_vision_encode),
    ),
    "musubi_tuner.frame_pack.hunyuan": (None, lambda m: _patch(m, encode_prompt_conds=encode_prompt_conds)),
}


def install() -> None:
    """Run `PATCHES` around the named modules' first import, in this process (and in the processes it
    forks, such as data loader workers). Nothing is imported up front: a script binds the stand-ins
    when it does `from ... import load_vae`, exactly where it would bind the real ones."""
    import importlib.abc
    import importlib.machinery
    import sys

    class _PatchingFinder(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
            if name not in PATCHES:
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None or spec.loader is None:
                return None
            before, after = PATCHES[name]
            exec_module = spec.loader.exec_module

            def exec_and_patch(module: Any) -> None:
                if before:
                    before(module)
                exec_module(module)
                if after:
                    after(module)

            spec.loader.exec_module = exec_and_patch  # type: ignore[method-assign]
            return spec

    sys.meta_path.insert(0, _PatchingFinder())
    _shorten_fixed_waits()
    _no_compile_without_cuda()
