#!/usr/bin/env python3
"""Make a tiny synthetic one-frame (1f) dataset: N records of smooth random RGB PNGs, each with a
target image, control images and a caption, listed in a JSONL metadata file with the keys
image_path, control_path_0 (, control_path_1, ...), caption (absolute paths).

  python3 make_dataset.py [--root /tmp/e2e/data] [--n 32] [--width 512] [--height 768] [--controls 2]

Images are bicubic up-samplings of 12x8-ish random grids (smooth, so VAE/SigLIP see plausible
statistics). Needs numpy and pillow only. Prints the JSONL path.
"""

import argparse
import json
import os

import numpy as np
from PIL import Image


def smooth(rng, w, h):
    small = rng.integers(0, 256, size=(max(2, h // 64), max(2, w // 64), 3), dtype=np.uint8)
    return Image.fromarray(small).resize((w, h), Image.BICUBIC)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="/tmp/e2e/data")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--height", type=int, default=768)
    ap.add_argument("--controls", type=int, default=2, help="control images per record")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    img_dir = os.path.join(args.root, "images")
    ctl_dir = os.path.join(args.root, "control")
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(ctl_dir, exist_ok=True)
    jsonl = os.path.join(args.root, "metadata-v1.jsonl")
    with open(jsonl, "w") as f:
        for i in range(args.n):
            rec = {"image_path": os.path.join(img_dir, f"img{i:03d}.png")}
            smooth(rng, args.width, args.height).save(rec["image_path"], compress_level=1)
            for c in range(args.controls):
                p = os.path.join(ctl_dir, f"img{i:03d}_{c}.png")
                smooth(rng, args.width, args.height).save(p, compress_level=1)
                rec[f"control_path_{c}"] = p
            rec["caption"] = (
                f"a synthetic test card number {i}, the character changes clothes, plain background"
            )
            f.write(json.dumps(rec) + "\n")
    print(jsonl)


if __name__ == "__main__":
    main()
