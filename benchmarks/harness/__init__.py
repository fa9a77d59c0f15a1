"""The GPU end-to-end harness: fplora's own CLI driving the real musubi-tuner on a GPU machine
(docs/gpu-e2e.md). Stdlib only: it runs in the GPU image's Python before anything is installed.

state (paths, Config, CFG/GPU/SUMMARY) <- proc (commands, deadline, nvidia-smi) <- asserts, timings,
specs, fake <- stages/* (one module per stage family) <- driver (the stage loop, summary, $OUT) <-
the drivers in benchmarks/ (gpu_e2e.py, preset_speed.py, sweep_speed.py, eval_check.py, gpu_matrix.py).
"""
