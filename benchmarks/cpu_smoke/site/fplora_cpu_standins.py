"""Tiny, deterministic stand-ins for the five FramePack models, for the CPU smoke test only.

Why: the smoke test runs fplora's workers and musubi-tuner's own scripts on a machine without a GPU
and without the ~40 GB of weights. Everything musubi-tuner computes *with* the models stays its own
code; only what would need the real weights or CUDA is replaced, at the narrowest seam found:

- DiT: the real loader (`load_packed_model`: safetensors shards, LoRA merge while streaming, fp8
  optimisation) runs unchanged on a real weights file that `make_tiny_dit` writes. Only the model's
  hard-coded size is shrunk, by wrapping the class's `__init__` (one transformer block, two single
  blocks, one head) so that the tiny file fits it.
- VAE: `load_vae` returns `TinyVAE`, whose `encode` returns musubi-tuner's own
  `DiagonalGaussianDistribution`, so `vae_encode` samples from the global torch generator exactly as
  the real VAE does (the spread, std 0.018, is this stand-in's choice); `decode` is a fixed
  projection, so images depend on the latents only.
- SigLIP image encoder and both text encoders: their loaders return placeholders and the encode
  functions return seeded random tensors of the real shapes and dtypes, seeded by the input's bytes
  (crc32, never Python's per-process `hash`), so every process gets the same outputs for the same
  input, as the real (pure) encoders would.

`PATCHES` maps a module name to (before, after) hooks that `sitecustomize.py` runs around the
module's first import.
"""

from __future__ import annotations

import os
import types
import zlib
from collections.abc import Callable
from typing import Any

TINY_DIT = {
    "num_attention_heads": 1,
    "num_layers": 1,
    "num_single_layers": 2,
    "num_refiner_layers": 1,
    "mlp_ratio": 1.0,
}
"""Overrides for the packed DiT's hard-coded size; head size (128), channels, text and image
embedding widths stay real so that every cache and input keeps its real shape."""


def _torch() -> Any:
    import torch

    return torch


def _generator(*parts: bytes) -> Any:
    seed = 0
    for part in parts:
        seed = zlib.crc32(part, seed)
    return _torch().Generator().manual_seed(seed)


def _projection(rows: int, cols: int, seed: int) -> Any:
    torch = _torch()
    return torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed)) / cols**0.5


class _Placeholder:
    """Stands for a loaded model object that only has to be moved around."""

    device = None
    dtype = None

    def __init__(self, dtype_name: str) -> None:
        torch = _torch()
        self.device, self.dtype = torch.device("cpu"), getattr(torch, dtype_name)

    def to(self, *args: Any, **kwargs: Any) -> _Placeholder:
        return self

    def eval(self) -> _Placeholder:
        return self

    def requires_grad_(self, *args: Any) -> _Placeholder:
        return self


class TinyVAE(_Placeholder):
    """8x spatial compression to 16 channels, like HunyuanVideo's VAE, one frame per latent frame."""

    config = types.SimpleNamespace(scaling_factor=0.476986)
    LOGVAR = -8.0  # a small posterior spread, so that sampling is visible in the latents

    def __init__(self) -> None:
        super().__init__("float16")
        seed = os.environ.get("FPLORA_CPU_SMOKE_VAE_SEED")
        if seed is not None:
            # the fidelity check's controlled run: musubi-tuner samples the VAE posterior from the
            # global generator, which torch seeds at random in every process; seeding it here, once
            # per process and before any image is encoded, gives the sweep worker and a separate
            # run the same draws when (and only when) they encode in the same order
            _torch().manual_seed(int(seed))

    def encode(self, image: Any) -> Any:
        from musubi_tuner.hunyuan_model.vae import DiagonalGaussianDistribution

        torch = _torch()
        x = torch.nn.functional.avg_pool3d(image.float(), (1, 8, 8))  # (B, 3, T, H/8, W/8)
        mean = torch.einsum("oc,bcthw->bothw", _projection(16, 3, 1), x)
        moments = torch.cat([mean, torch.full_like(mean, self.LOGVAR)], dim=1).to(self.dtype)
        return types.SimpleNamespace(latent_dist=DiagonalGaussianDistribution(moments))

    def decode(self, latents: Any) -> Any:
        torch = _torch()
        x = torch.einsum("oc,bcthw->bothw", _projection(3, 16, 2), latents.float())
        x = torch.nn.functional.interpolate(x, scale_factor=(1, 8, 8), mode="nearest")
        return types.SimpleNamespace(sample=torch.tanh(x).to(self.dtype))


def load_vae(*args: Any, **kwargs: Any) -> TinyVAE:
    return TinyVAE()


def load_image_encoders(args: Any) -> tuple[Any, Any]:
    return None, _Placeholder("float16")


def load_text_encoder1(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
    return _Placeholder("float16"), _Placeholder("float16")


def load_text_encoder2(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
    return _Placeholder("float16"), _Placeholder("float16")


def hf_clip_vision_encode(image: Any, feature_extractor: Any, image_encoder: Any) -> Any:
    """SigLIP so400m: 729 tokens of 1152, fp16."""
    import numpy as np

    torch = _torch()
    g = _generator(np.ascontiguousarray(image).tobytes())
    state = torch.randn(1, 729, 1152, generator=g).to(torch.float16)
    return types.SimpleNamespace(last_hidden_state=state)


def encode_prompt_conds(prompt: str, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """Llama hidden states (n tokens of 4096) and the CLIP-L pooler (768), fp16."""
    torch = _torch()
    system = kwargs.get("custom_system_prompt") or ""
    g = _generator(prompt.encode(), system.encode())
    tokens = 17 + len(prompt) % 5
    llama = torch.randn(1, tokens, 4096, generator=g).to(torch.float16)
    pooler = torch.randn(1, 768, generator=g).to(torch.float16)
    return llama, pooler


def shrink_dit(module: types.ModuleType) -> None:
    cls = module.HunyuanVideoTransformer3DModelPacked
    original = cls.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **{**kwargs, **TINY_DIT})

    cls.__init__ = __init__


def tiny_dit(seed: int = 0) -> Any:
    """The tiny DiT with seeded weights, non-zero everywhere: the real model's zero-initialised
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
        **TINY_DIT,
    )
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2 or name.endswith("bias"):
                p.copy_(torch.randn(p.shape) * (0.02 if p.dim() < 2 else p.shape[-1] ** -0.5))
    return model.to(torch.bfloat16)


def write_tiny_dit(shards: list[str]) -> None:
    """The tiny DiT's bf16 weights over `shards`, round robin, as a sharded checkpoint."""
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in tiny_dit().state_dict().items()}
    for index, path in enumerate(shards):
        save_file({k: v for i, (k, v) in enumerate(sorted(state.items())) if i % len(shards) == index}, path)


def _patch(module: types.ModuleType, **names: Any) -> None:
    for name, value in names.items():
        setattr(module, name, value)


def _cuda_current_device(module: types.ModuleType) -> None:
    """musubi_tuner/wan/modules/t5.py evaluates `torch.cuda.current_device()` in a default argument
    while it is imported (every training script imports it), which raises without an NVIDIA driver."""
    torch = _torch()
    if not torch.cuda.is_available():
        torch.cuda.current_device = lambda: 0


Hook = Callable[[types.ModuleType], None]
_LOADERS = {
    "load_vae": load_vae,
    "load_image_encoders": load_image_encoders,
    "load_text_encoder1": load_text_encoder1,
    "load_text_encoder2": load_text_encoder2,
}
PATCHES: dict[str, tuple[Hook | None, Hook | None]] = {
    "musubi_tuner.wan.modules.t5": (_cuda_current_device, None),
    "musubi_tuner.frame_pack.hunyuan_video_packed": (None, shrink_dit),
    "musubi_tuner.frame_pack.framepack_utils": (None, lambda m: _patch(m, **_LOADERS)),
    "musubi_tuner.frame_pack.clip_vision": (
        None,
        lambda m: _patch(m, hf_clip_vision_encode=hf_clip_vision_encode),
    ),
    "musubi_tuner.frame_pack.hunyuan": (None, lambda m: _patch(m, encode_prompt_conds=encode_prompt_conds)),
}
