"""FLOPs per training sample of FramePack's DiT (presets/flops.py), against a count by hand."""

from __future__ import annotations

import pytest

from fplora.presets import flops


def test_tokens_at_the_house_shape() -> None:
    """512x768: a 64x96 latent, 32x48 = 1,536 tokens a frame under the 2x2 patch; the target and 2
    controls (no_post) are 3 frames; the 2x latents (2 frames, 2x4x4 patch) 16x24 = 384; the 4x
    latents (16 frames, 4x8x8) 4x8x12 = 384; the context 729 SigLIP tokens + 20 caption tokens."""
    tok = flops.tokens(512, 768, 2, text_tokens=20)
    assert (tok.target, tok.clean, tok.history_2x, tok.history_4x, tok.context) == (1536, 3072, 384, 384, 749)
    assert tok.total == 6125
    with_post = flops.tokens(512, 768, 2, no_post=False, no_2x=True, no_4x=True, text_tokens=0)
    assert (with_post.clean, with_post.history, with_post.total) == (3 * 1536, 0, 4 * 1536 + 729)


def test_a_small_shape_counted_by_hand() -> None:
    """256x256, one control, no_post, no 2x/4x latents, no caption, no LoRA: a 32x32 latent, 16x16 =
    256 tokens for the target and 256 for the control, 729 for the image embedding: 1,241 tokens.

    Blocks (60 of them), per token 12 d² multiply-adds in linears, per sample 2 L² d in attention:
      linear    = 60 x 2 x 12 x 3072² x 1241 = 16,864,625,295,360
      attention = 60 x 2 x 2 x 1241² x 3072  =  1,135,470,919,680
    Other (x2 for FLOPs): patch embeds 512 x 64 x 3072 = 100,663,296; image projection
    729 x (1152 x 9216 + 9216 x 3072) = 28,378,791,936; proj_out 256 x 3072 x 64 = 50,331,648;
    modulation 3072² x (20 x 12 + 40 x 3 + 2) = 3,416,260,608: sum 31,946,047,488, x2 = 63,892,094,976.
    """
    tok = flops.tokens(256, 256, 1, no_2x=True, no_4x=True, text_tokens=0)
    assert tok.total == 1241
    f = flops.per_sample(tok, lora_dim=0)
    assert f.block_linear == 16_864_625_295_360
    assert f.block_attention == 1_135_470_919_680
    assert f.block_lora == 0
    assert f.other == 63_892_094_976
    forward = 16_864_625_295_360 + 1_135_470_919_680 + 63_892_094_976
    assert f.forward == forward
    assert f.convention == 3 * forward
    # LoRA training: no weight gradients for the frozen base, attention's backward twice its forward
    assert f.lora == forward + 16_864_625_295_360 + 2 * 1_135_470_919_680
    # checkpointing runs the blocks' forward once more: hardware work, not in the MFU
    assert f.hardware(recompute=True) == f.lora + 16_864_625_295_360 + 1_135_470_919_680
    assert f.hardware(recompute=False) == f.lora


def test_lora_adds_its_low_rank_matmuls() -> None:
    """Rank r on every linear of a block: r (in + out) multiply-adds a token. The (in + out) of a
    double block's linears, per stream: q, k, v, out 4 x 2d, MLP 5d + 5d: 18 d; of a single block's:
    q, k, v 3 x 2d, MLP in 5d, out (5d + d): 17 d."""
    tok = flops.tokens(256, 256, 1, no_2x=True, no_4x=True, text_tokens=0)
    f = flops.per_sample(tok, lora_dim=32)
    assert f.block_lora == 2 * 32 * 3072 * 1241 * (20 * 18 + 40 * 17)


def test_mfu_of_the_h200_preset_row() -> None:
    """The compiled h200 preset, 1.483 samples/s at the house shape: about half the dense bf16 peak
    by the 3x convention."""
    f = flops.per_sample(flops.tokens(512, 768, 2))
    assert f.convention == pytest.approx(336.7e12, rel=1e-3)
    assert flops.mfu(1.483, f.convention, "h200") == pytest.approx(0.505, abs=0.001)
    assert flops.mfu(1.0, f.convention, "4090-24g") is None
