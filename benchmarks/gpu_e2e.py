#!/usr/bin/env python3
"""End-to-end test of fplora on a GPU machine: every stage goes through fplora's own CLI
(`python3 -m fplora check|cache|train|infer`), which drives the real musubi-tuner underneath.

Run on the GPU machine from the repo root (stdlib only; a copy of the repo that carries the folders
`bash benchmarks/gpu_setup/prepare.sh` makes: .whl .whl2 .whl3 .musubi .hf):

    python3 benchmarks/gpu_e2e.py --deadline 560 install weights? data? check? cache? train? ...

A stage written `STAGE?` is skipped when its outputs are already on the machine, so several 600-s
commands can continue on a warm machine (and a fresh machine rebuilds what a later stage needs).
A stage that cannot finish before --deadline (estimated from COST) is not started; one still running
at the deadline is stopped with everything it started. A failed stage does not stop later ones.

Stages:
  install  gpu_setup/install.sh (musubi-tuner's wheels -> /tmp/site, its source -> /tmp/musubi/src),
           then .whl3 (fplora's own deps: pydantic, ruamel.yaml, tomli-w, ...) -> /tmp/site
  weights  gpu_setup/make_weights.py: random full-size models in /tmp/models (memo layout)
  data     gpu_setup/make_dataset.py: 32 records (512x768 target + control_path_0/1 + caption)
  check    fplora check on every spec, with the model files
  cache    fplora cache (latents one-frame + text encoder), shared cache folder
  train    fplora train e2e.yaml: steps 1-2 (E2E_MAX_STEPS=2), LoRA + state every step, samples
           at first and every step; then a second `fplora train` must refuse the existing run
  resume   fplora train e2e.yaml --resume latest with E2E_MAX_STEPS=4: steps 3-4 as segment -r1;
           first-run files must be untouched; then a further resume must refuse (max steps reached)
  infer    fplora infer e2e.yaml --lora step3 --multiplier 1.0 --multiplier 1.2 (latest if no resume)
  train2   fplora train g<N>.yaml: launch.num_processes = --gpus (DDP), samples/s
  timing   fplora train timing.yaml: the memo's batch 16 / blocks_to_swap 20, s/step
  recache  edits the dataset after caching (a caption, an image, a removed record): train must refuse,
           fplora cache must recompute exactly those files; then a caption-only edit runs only the
           text-encoder script. Changes the dataset for good: run it last

Specs are written to <root>/configs/{base,e2e,g<N>,timing}.yaml (root /tmp/fpe2e); outputs go to
<root>/runs. $OUT (or --out) gets summary.json after every stage, and at the end logs.tgz (stage
logs, rendered configs, fplora logs, nvidia-smi samples), images.tgz (sample/inference PNGs, capped)
and each run's manifest.

Without a GPU:
  --local-dry   writes the specs under /tmp/fpe2e-local with stand-in model files and a tiny
                dataset, runs `fplora check` (--skip-models and full) and the --dry-run commands,
                and checks what they render (stage `dry`).
  --local-fake  the real stage list against a fake musubi-tuner (this script, standing in for
                FPLORA_MUSUBI_PYTHON) that writes files named like musubi-tuner's: tests the stages,
                fplora's run bookkeeping and every assert here, in seconds.

The stages live in benchmarks/harness/ (one module per stage family); this file is their command line.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import driver

if __name__ == "__main__":
    sys.exit(driver.main(__doc__ or ""))
