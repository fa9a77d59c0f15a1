"""The FramePack DiT modules a musubi-tuner LoRA wraps, and the key names each layout gives them.

musubi-tuner's FramePack network (`networks/lora_framepack.py`) wraps every Linear inside the DiT's
double blocks (`HunyuanVideoTransformerBlock`, `transformer_blocks.N`) and single blocks
(`HunyuanVideoSingleTransformerBlock`, `single_transformer_blocks.N`) except those whose path holds
`norm`: 12 per double block, 5 per single block, 440 for the 20 + 40 blocks of FramePackI2V_HY.
It saves each as `lora_unet_<path with every "." turned into "_">.lora_down.weight` /
`.lora_up.weight` / `.alpha`.

That name cannot be turned back into the path by replacing `_` (`ff_context_net_0_proj` is
`ff_context.net.0.proj`, `attn_add_q_proj` is `attn.add_q_proj`): musubi-tuner's
`convert_lora.py --target other` guesses and gets 280 of the 440 wrong. So the paths are listed
here, read off `frame_pack/hunyuan_video_packed.py` at the pinned commit, and the diffusers/PEFT
name of each (`transformer.<path>.lora_A.weight` / `.lora_B.weight`) comes from its path.
`tests/test_export_musubi.py` checks the list against the real DiT's `named_modules()`.
"""

from __future__ import annotations

DOUBLE_BLOCKS = 20
SINGLE_BLOCKS = 40

DOUBLE_BLOCK_LINEARS = (
    "attn.to_q",
    "attn.to_k",
    "attn.to_v",
    "attn.add_k_proj",
    "attn.add_v_proj",
    "attn.add_q_proj",
    "attn.to_out.0",
    "attn.to_add_out",
    "ff.net.0.proj",
    "ff.net.2",
    "ff_context.net.0.proj",
    "ff_context.net.2",
)
"""A double block's Linears without `norm` in their path (`norm1.linear`, `norm1_context.linear` are
left out by musubi-tuner's FramePack network)."""

SINGLE_BLOCK_LINEARS = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp", "proj_out")
"""A single block's Linears without `norm` in their path (`norm.linear` is left out)."""

MUSUBI_PREFIX = "lora_unet_"
DIFFUSERS_PREFIX = "transformer."
DOWN, UP, ALPHA = "lora_down.weight", "lora_up.weight", "alpha"
PEFT_A, PEFT_B = "lora_A.weight", "lora_B.weight"


def lora_modules(double_blocks: int = DOUBLE_BLOCKS, single_blocks: int = SINGLE_BLOCKS) -> list[str]:
    """Every module path a FramePack LoRA wraps, in the DiT's order (440 for FramePackI2V_HY)."""
    paths = [f"transformer_blocks.{i}.{name}" for i in range(double_blocks) for name in DOUBLE_BLOCK_LINEARS]
    paths += [
        f"single_transformer_blocks.{i}.{name}" for i in range(single_blocks) for name in SINGLE_BLOCK_LINEARS
    ]
    return paths


def musubi_name(path: str) -> str:
    """`transformer_blocks.0.attn.to_q` → `lora_unet_transformer_blocks_0_attn_to_q`."""
    return MUSUBI_PREFIX + path.replace(".", "_")


def diffusers_name(path: str) -> str:
    """`transformer_blocks.0.attn.to_q` → `transformer.transformer_blocks.0.attn.to_q`."""
    return DIFFUSERS_PREFIX + path
