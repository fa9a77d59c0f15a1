#!/usr/bin/env python3
"""Write random, full-size FramePack model files in the layout of the practitioner's memo.

  python3 make_weights.py [--root /tmp/models] [--device cuda] [--list]

Tensor names and shapes are not written down here: each model is built on the meta device from
musubi-tuner's own classes and configs (musubi_tuner must be importable), and only its state_dict
keys/shapes are used.  Values: std 0.02 normal for matrices/convs, 1 for norm scales, 0 for biases.
Generated on the GPU, written with safetensors.  --list prints names/shapes/bytes without writing.

Files (relative to --root), dtypes as the real checkpoints use them:
  diffusion_models/FramePackI2V_HY/diffusion_pytorch_model-0000{1..3}-of-00003.safetensors  bf16 (~13B params)
  vae/diffusion_pytorch_model.safetensors          fp16  HunyuanVideo causal 3D VAE
  text_encoder/model-0000{1..4}-of-00004.safetensors fp16 LLaMA-3-8B-sized LlamaModel (no lm_head)
  text_encoder_2/model.safetensors                 fp16  CLIP-L text model
  image_encoder/model.safetensors                  bf16  SigLIP vision model
A file that already exists with the expected size is kept (delete it to regenerate).
"""

import argparse
import json
import math
import os
import time

import torch

DIT_SHARDS = 3
TE1_SHARDS = 4


class _Built(Exception):
    def __init__(self, model):
        self.model = model


def dit_meta():
    from musubi_tuner.frame_pack import hunyuan_video_packed as hvp

    # Build exactly what load_packed_model builds (its own constructor arguments): record the model
    # when it is constructed and stop the call before any file is read.
    orig = hvp.load_safetensors_with_lora_and_fp8
    captured = {}

    class _Stop(Exception):
        pass

    def stop(*a, **k):
        raise _Stop()

    orig_init = hvp.HunyuanVideoTransformer3DModelPacked.__init__

    def init_and_capture(self, *a, **k):
        orig_init(self, *a, **k)
        captured["model"] = self

    hvp.HunyuanVideoTransformer3DModelPacked.__init__ = init_and_capture
    hvp.load_safetensors_with_lora_and_fp8 = stop
    try:
        hvp.load_packed_model("cpu", "/nonexistent.safetensors", "sdpa", "cpu")
    except _Stop:
        pass
    finally:
        hvp.load_safetensors_with_lora_and_fp8 = orig
        hvp.HunyuanVideoTransformer3DModelPacked.__init__ = orig_init
    return captured["model"]


def vae_meta():
    from musubi_tuner.hunyuan_model import autoencoder_kl_causal_3d as akl
    from musubi_tuner.hunyuan_model import vae as hvae

    # Let musubi's load_vae build the model from its own fixed config, then stop it before loading.
    cls = akl.AutoencoderKLCausal3D
    bound = cls.from_config  # inherited classmethod, bound to cls

    def from_config(klass, config, **kw):
        with torch.device("meta"):
            raise _Built(bound(config, **kw))

    cls.from_config = classmethod(from_config)
    try:
        hvae.load_vae(vae_dtype=torch.float16, device="cpu", vae_path=__file__)
    except _Built as b:
        return b.model
    finally:
        del cls.from_config
    raise RuntimeError("VAE was not built")


def te1_meta():
    from accelerate import init_empty_weights
    from musubi_tuner.frame_pack.framepack_utils import LLAMA_CONFIG
    from transformers import LlamaConfig, LlamaModel

    with init_empty_weights():
        return LlamaModel._from_config(LlamaConfig(**LLAMA_CONFIG), torch_dtype=torch.float16)


def te2_meta():
    from accelerate import init_empty_weights
    from musubi_tuner.frame_pack.framepack_utils import CLIP_CONFIG
    from transformers import CLIPConfig, CLIPTextModel

    with init_empty_weights():
        return CLIPTextModel._from_config(CLIPConfig(**CLIP_CONFIG), torch_dtype=torch.float16)


def siglip_meta():
    from accelerate import init_empty_weights
    from musubi_tuner.frame_pack.framepack_utils import IMAGE_ENCODER_CONFIG
    from transformers import SiglipVisionConfig, SiglipVisionModel

    with init_empty_weights():
        return SiglipVisionModel._from_config(
            SiglipVisionConfig(**IMAGE_ENCODER_CONFIG), torch_dtype=torch.float16
        )


def shapes(model):
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def fill(name, shape, dtype, device, gen):
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "bias" or leaf.endswith("_bias"):
        return torch.zeros(shape, dtype=dtype, device=device)
    if len(shape) == 1 and ("norm" in name or leaf in ("weight", "scale")):
        return torch.ones(shape, dtype=dtype, device=device)
    t = torch.empty(shape, dtype=torch.float32 if dtype.itemsize < 2 else dtype, device=device)
    t.normal_(0.0, 0.02, generator=gen)
    return t.to(dtype)


def split(items, n):
    total = sum(math.prod(s) for _, s in items)
    per = total / n
    out, cur, acc = [], [], 0
    for it in items:
        cur.append(it)
        acc += math.prod(it[1])
        if acc >= per * (len(out) + 1) and len(out) < n - 1:
            out.append(cur)
            cur = []
    out.append(cur)
    return out


def write(path_fmt, items, n_files, dtype, device, gen, listing):
    from safetensors.torch import save_file

    groups = split(items, n_files) if n_files > 1 else [items]
    nbytes = sum(math.prod(s) for _, s in items) * dtype.itemsize
    paths = []
    for i, group in enumerate(groups):
        path = path_fmt.format(i=i + 1, n=n_files)
        paths.append(path)
        gbytes = sum(math.prod(s) for _, s in group) * dtype.itemsize
        if listing:
            print(f"  {path}: {len(group)} tensors, {gbytes / 2**30:.2f} GiB")
            continue
        if os.path.exists(path) and abs(os.path.getsize(path) - gbytes) < 16 * 2**20:
            print(f"  keep {path}")
            continue
        t0 = time.time()
        sd = {k: fill(k, s, dtype, device, gen).cpu() for k, s in group}
        t1 = time.time()
        os.makedirs(os.path.dirname(path), exist_ok=True)
        save_file(
            sd, path + ".part", metadata={"format": "pt", "note": "random weights for an end-to-end test"}
        )
        os.replace(path + ".part", path)
        del sd
        print(
            f"  wrote {path}: {len(group)} tensors, {gbytes / 2**30:.2f} GiB"
            f" (gen {t1 - t0:.1f}s, save {time.time() - t1:.1f}s)",
            flush=True,
        )
    return paths, nbytes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="/tmp/models")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--only", nargs="*", default=None, help="subset of: dit vae te1 te2 image_encoder")
    args = ap.parse_args()
    gen = torch.Generator(device=args.device)
    gen.manual_seed(0)
    r = args.root
    plan = [
        (
            "dit",
            dit_meta,
            r + "/diffusion_models/FramePackI2V_HY/diffusion_pytorch_model-{i:05d}-of-{n:05d}.safetensors",
            DIT_SHARDS,
            torch.bfloat16,
        ),
        ("vae", vae_meta, r + "/vae/diffusion_pytorch_model.safetensors", 1, torch.float16),
        (
            "te1",
            te1_meta,
            r + "/text_encoder/model-{i:05d}-of-{n:05d}.safetensors",
            TE1_SHARDS,
            torch.float16,
        ),
        ("te2", te2_meta, r + "/text_encoder_2/model.safetensors", 1, torch.float16),
        ("image_encoder", siglip_meta, r + "/image_encoder/model.safetensors", 1, torch.bfloat16),
    ]
    summary = {}
    for name, build, fmt, n, dtype in plan:
        if args.only and name not in args.only:
            continue
        t0 = time.time()
        items = shapes(build())
        params = sum(math.prod(s) for _, s in items)
        print(f"{name}: {len(items)} tensors, {params / 1e9:.3f} B params, {dtype}", flush=True)
        paths, nbytes = write(fmt, items, n, dtype, args.device, gen, args.list)
        summary[name] = {
            "first_file": paths[0],
            "files": len(paths),
            "tensors": len(items),
            "params": params,
            "bytes": nbytes,
            "seconds": round(time.time() - t0, 1),
        }
    print(json.dumps(summary, indent=1))
    if not args.list:
        with open(os.path.join(r, "weights.json"), "w") as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
