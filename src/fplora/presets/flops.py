"""FLOPs per training sample of FramePack's packed DiT, for the model FLOPs utilisation (MFU) of a
measured row: how close a setting runs to what the card can do, which samples per second alone
cannot say.

Counted from the shapes of musubi-tuner 30c658c4's `frame_pack/hunyuan_video_packed.py`
(`HunyuanVideoTransformer3DModelPacked` defaults): hidden 3072 (24 heads of 128), 20 double-stream
and 40 single-stream blocks, MLP ratio 4, patch 1x2x2 on the VAE's /8 latent, 16 latent channels.
One-frame training feeds the DiT, per sample:

- the noisy target: one latent frame, (h/16)(w/16) tokens;
- the clean latents: one frame per control image (`clean_indices`), plus one zero frame unless
  `no_post`, each (h/16)(w/16) tokens (`clean_x_embedder.proj`, the same patch);
- the 2x and 4x history latents (zeros in one-frame training, still computed unless `no_2x`/`no_4x`):
  2 frames under a 2x4x4 patch and 16 frames under a 4x8x8 patch, each a quarter of a frame's tokens;
- the context: 729 SigLIP image-embedding tokens (`image_projection`) and the caption's LLaMA tokens.

A block costs, per token, 12 d² multiply-adds in its linear layers (double: q, k, v, out and a 4x MLP
on each stream; single: q, k, v, the 4x MLP in and the (d + 4d) -> d out), and 2 L² d in attention
over the L tokens of the sample. Counted: the blocks, the embedders, the context refiner, the image
projection, the output layer, the per-sample modulation linears, and the LoRA's own matmuls. Not
counted: norms, RoPE, activations and other element-wise work (well under 1 %).

Training FLOPs, two ways (docs/presets.md gives both):

- `convention`: 3x the forward (forward + a backward of twice the forward), the figure MFU is
  usually quoted with (PaLM's definition), as if every weight took a gradient;
- `lora`: what LoRA training must compute: the forward; in the blocks, the gradient of each linear's
  input (once the forward: the frozen base weights take no weight gradient) and attention's backward
  (twice its forward); the LoRA's weight and input gradients. The embedders, refiner and image
  projection are frozen and their inputs need no gradient: no backward.

Neither counts the forward that gradient checkpointing runs again in the backward (`recompute`): that
is hardware work, not model work, so MFU leaves it out (hardware FLOPs utilisation would include it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

HIDDEN = 3072  # 24 heads x 128
DOUBLE_BLOCKS = 20
SINGLE_BLOCKS = 40
LATENT_CHANNELS = 16
IMAGE_TOKENS = 729  # SigLIP so400m at 384 px: 27 x 27 patch tokens
IMAGE_EMBED = 1152
TEXT_EMBED = 4096  # LLaMA hidden size
REFINER_BLOCKS = 2
# LoRA-wrapped linears' (in + out) per token, in units of HIDDEN: double q,k,v,out + MLP, per stream;
# single q,k,v + proj_mlp (d -> 4d) + proj_out (5d -> d)
_LORA_DOUBLE = 3 * 2 + 2 + 5 + 5
_LORA_SINGLE = 3 * 2 + 5 + 6

# dense bf16 tensor-core peak, FLOP/s (NVIDIA's datasheets quote 1,979 TFLOPS "with sparsity" for
# the H100 SXM and the H200, the same GH100 chip at the same clocks; dense is half). The H100 PCIe is
# 756 dense.
PEAK_BF16 = {"h100-80g": 989.4e12, "h200": 989.4e12}


@dataclass(frozen=True)
class Tokens:
    """Tokens one sample puts through the DiT."""

    target: int
    clean: int
    history_2x: int
    history_4x: int
    context: int  # image embeddings + caption

    @property
    def history(self) -> int:
        return self.history_2x + self.history_4x

    @property
    def image(self) -> int:
        return self.target + self.clean + self.history

    @property
    def total(self) -> int:
        return self.image + self.context


def tokens(
    width: int,
    height: int,
    controls: int,
    *,
    no_post: bool = True,
    no_2x: bool = False,
    no_4x: bool = False,
    text_tokens: int = 20,
) -> Tokens:
    """Token counts at a bucket of `width` x `height` pixels (multiples of 16, as musubi-tuner's
    FramePack buckets are)."""
    lat_h, lat_w = height // 8, width // 8
    frame = (lat_h // 2) * (lat_w // 2)
    clean = (controls + (0 if no_post else 1)) * frame
    # 2 frames under a 2x4x4 patch, 16 under a 4x8x8 one, each padded up to its patch
    two = 0 if no_2x else math.ceil(lat_h / 4) * math.ceil(lat_w / 4)
    four = 0 if no_4x else 4 * math.ceil(lat_h / 8) * math.ceil(lat_w / 8)
    return Tokens(frame, clean, two, four, IMAGE_TOKENS + text_tokens)


@dataclass(frozen=True)
class Flops:
    """FLOPs of one sample's forward, by part, and the training totals built from them."""

    block_linear: float
    block_attention: float
    block_lora: float
    other: float  # embedders, refiner, image projection, output layer, modulation

    @property
    def forward(self) -> float:
        return self.block_linear + self.block_attention + self.block_lora + self.other

    @property
    def convention(self) -> float:
        """Forward + backward as 3x the forward: the usual MFU numerator."""
        return 3 * self.forward

    @property
    def lora(self) -> float:
        """What LoRA training computes: forward, input gradients of the frozen linears, attention's
        backward, and the LoRA's input and weight gradients."""
        return self.forward + self.block_linear + 2 * self.block_attention + 2 * self.block_lora

    def hardware(self, recompute: bool) -> float:
        """LoRA training's FLOPs with gradient checkpointing's second forward of the blocks."""
        again = self.block_linear + self.block_attention + self.block_lora if recompute else 0.0
        return self.lora + again


def per_sample(tok: Tokens, *, lora_dim: int = 32) -> Flops:
    """FLOPs (2 per multiply-add) of one sample's forward through FramePack's DiT."""
    d = HIDDEN
    blocks = DOUBLE_BLOCKS + SINGLE_BLOCKS
    linear = blocks * 2 * 12 * d * d * tok.total
    attention = blocks * 2 * 2 * tok.total**2 * d
    lora = 2 * lora_dim * d * tok.total * (DOUBLE_BLOCKS * _LORA_DOUBLE + SINGLE_BLOCKS * _LORA_SINGLE)
    patch = LATENT_CHANNELS * 2 * 2
    text = tok.context - IMAGE_TOKENS
    other = 2 * (
        (tok.target + tok.clean) * patch * d
        + tok.history_2x * LATENT_CHANNELS * 2 * 4 * 4 * d
        + tok.history_4x * LATENT_CHANNELS * 4 * 8 * 8 * d
        + IMAGE_TOKENS * (IMAGE_EMBED * 3 * d + 3 * d * d)  # ClipVisionProjection: up, down
        + text * (TEXT_EMBED * d + REFINER_BLOCKS * 12 * d * d)  # refiner: proj_in, attention + MLP
        + REFINER_BLOCKS * 2 * text**2 * d
        + tok.target * d * patch  # proj_out on the target's tokens
        + d * d * (DOUBLE_BLOCKS * 12 + SINGLE_BLOCKS * 3 + 2)  # adaLN modulation, per sample
    )
    return Flops(float(linear), float(attention), float(lora), float(other))


def mfu(samples_per_s: float, flops_per_sample: float, gpu: str) -> float | None:
    """Model FLOPs utilisation against the card's dense bf16 peak; None for a card without one here."""
    peak = PEAK_BF16.get(gpu)
    return samples_per_s * flops_per_sample / peak if peak else None
