"""Does FramePack-Studio's way of loading a LoRA give musubi-tuner's weights for fplora's diffusers export?

Run by a Python with torch, diffusers (>= 0.34, which has `HunyuanVideoFramepackTransformer3DModel`) and
peft; the musubi-tuner Python has diffusers 0.32.1, too old, so docs/export.md says how to make one.
For each module of a musubi-tuner LoRA (on the tiny DiT of tests/fixtures/musubi_export_merge.py:
2 double and 2 single blocks, one head) it compares:
- the weight change FramePack-Studio's loader makes from the exported file: diffusers'
  `_convert_hunyuan_video_lora_to_diffusers`, `load_lora_adapter(..., network_alphas=None)`, then
  `fuse_lora`, on diffusers' own FramePack transformer;
- musubi-tuner's merge formula on the original file: `(alpha / rank) · up @ down`.
Prints one JSON line: modules compared, keys the converter renamed (must be none), the largest
difference, modules the load left unchanged (must be none).

Usage: python benchmarks/export_diffusers.py <musubi-tuner lora.safetensors> <exported -diffusers.safetensors>
"""

import json
import sys

import torch
from diffusers import HunyuanVideoFramepackTransformer3DModel
from diffusers.loaders.lora_conversion_utils import _convert_hunyuan_video_lora_to_diffusers
from safetensors.torch import load_file

TINY = {
    "num_attention_heads": 1,
    "num_layers": 2,
    "num_single_layers": 2,
    "num_refiner_layers": 1,
    "mlp_ratio": 1.0,
}


def main(original_path: str, exported_path: str) -> None:
    original, exported = load_file(original_path), load_file(exported_path)
    torch.manual_seed(0)
    model = HunyuanVideoFramepackTransformer3DModel(
        attention_head_dim=128, has_image_proj=True, image_proj_dim=1152, has_clean_x_embedder=True, **TINY
    ).float()
    before = {
        n: m.weight.detach().clone() for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)
    }
    state = _convert_hunyuan_video_lora_to_diffusers(dict(exported))
    renamed = sorted(set(exported) ^ set(state))
    model.load_lora_adapter(state, network_alphas=None, adapter_name="export", prefix="transformer")
    model.fuse_lora(lora_scale=1.0)
    after = {n: model.get_submodule(n).weight.detach().clone() for n in before}
    path_of = {"lora_unet_" + p.replace(".", "_"): p for p in before}
    worst, compared, unchanged = 0.0, 0, []
    for key, down in original.items():
        if not key.endswith(".lora_down.weight"):
            continue
        name = key.split(".")[0]
        path = path_of[name]
        up = original[f"{name}.lora_up.weight"].float()
        scale = float(original[f"{name}.alpha"].float()) / down.shape[0]
        change = after[path] - before[path]
        if not change.any():
            unchanged.append(path)
        worst = max(worst, (change - up @ down.float() * scale).abs().max().item())
        compared += 1
    print(json.dumps({"modules": compared, "renamed": renamed, "max_diff": worst, "unchanged": unchanged}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
