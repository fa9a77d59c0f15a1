"""Training-side settings through `fplora check` and `fplora rehearse`: does the rehearsal's verdict
match what musubi-tuner would do on a GPU?

Each row is a one-line change of the repo's example project (optimizers and their arguments,
schedulers, network modules and arguments, timestep sampling, precision, memory options, attention,
data loader, saving, logging, launch options) with the verdict expected from reading musubi-tuner
30c658c4's source: `pass`, `fail` (at any stage) or `machine`. rehearse_rows.py runs them (it says how)
and `--write` records the matrix in benchmarks/results/rehearse-matrix-<date>.json.

    uv run python benchmarks/rehearse_matrix.py [--only ID[,ID]] [--rerun] [--src DIR --before] [--write]
"""

from __future__ import annotations

import sys

from rehearse_rows import Row, main

ROWS = [
    # --- optimizers (training/trainer_base.py get_optimizer) -----------------------------------
    Row("opt-adamw", "train: {optimizer: {type: AdamW, args: [weight_decay=0.01]}}", "pass", "torch AdamW"),
    Row(
        "opt-adafactor-relative",
        'train: {optimizer: {type: adafactor, args: ["relative_step=True", "scale_parameter=True",'
        ' "warmup_init=False"]}}',
        "pass",
        "relative_step: the scheduler becomes adafactor:<lr>",
    ),
    Row(
        "opt-adafactor-fixed",
        'train: {optimizer: {type: adafactor, args: ["relative_step=False", "scale_parameter=False",'
        ' "warmup_init=False"], lr_scheduler: constant_with_warmup, lr_warmup_steps: 5}}',
        "pass",
        "transformers Adafactor with a fixed lr",
    ),
    Row(
        "opt-paged8bit",
        "train: {optimizer: {type: bitsandbytes.optim.PagedAdamW8bit}}",
        "pass",
        "ends with 8bit but is not AdamW8bit: the any-class branch imports bitsandbytes.optim",
    ),
    Row("opt-lion8bit", "train: {optimizer: {type: bitsandbytes.optim.Lion8bit}}", "pass", "any class"),
    Row("opt-sgd", "train: {optimizer: {type: SGD, args: [momentum=0.9]}}", "pass", "torch.optim.SGD"),
    Row(
        "opt-prodigy",
        "train: {optimizer: {type: prodigyopt.Prodigy, learning_rate: 1.0}}",
        "machine",
        "prodigyopt is not among musubi-tuner's dependencies: a package to install, not a spec error",
    ),
    Row(
        "opt-schedulefree",
        "train: {optimizer: {type: schedulefree.AdamWScheduleFree}}",
        "machine",
        "schedulefree: a package to install; its dummy scheduler path",
    ),
    Row("opt-typo", "train: {optimizer: {type: AdamWW}}", "fail", "getattr(torch.optim, 'AdamWW')"),
    # --- schedulers (get_lr_scheduler) ---------------------------------------------------------
    Row(
        "sched-restarts",
        "train: {optimizer: {lr_scheduler: cosine_with_restarts, lr_warmup_steps: 2}}\n"
        "musubi: {config: {lr_scheduler_num_cycles: 3}}",
        "pass",
        "transformers cosine_with_restarts",
    ),
    Row(
        "sched-polynomial-ratio",
        "train: {optimizer: {lr_scheduler: polynomial, lr_warmup_steps: 0.1}}\n"
        "musubi: {config: {lr_scheduler_power: 2.0}}",
        "pass",
        "a float lr_warmup_steps is a ratio of the steps",
    ),
    Row(
        "sched-wsd",
        "train: {optimizer: {lr_scheduler: warmup_stable_decay, lr_warmup_steps: 5}}\n"
        "musubi: {config: {lr_decay_steps: 5}}",
        "pass",
        "20 steps: 5 warmup, 10 stable, 5 decay (the rehearsal's 2 steps must not make it negative)",
    ),
    Row(
        "sched-torch-class",
        'musubi: {config: {lr_scheduler_type: CosineAnnealingLR, lr_scheduler_args: ["T_max=20"]}}',
        "pass",
        "torch.optim.lr_scheduler class",
    ),
    Row("sched-rex", "train: {optimizer: {lr_scheduler: rex, lr_warmup_steps: 2}}", "pass", "musubi's RexLR"),
    # --- network (networks/lora_framepack.py, networks/lora.py) -------------------------------
    Row(
        "net-loraplus-dropouts",
        'train: {network: {alpha: 0.5, args: ["loraplus_lr_ratio=4", "rank_dropout=0.1",'
        ' "module_dropout=0.1", "verbose=True"]}}\nmusubi: {config: {network_dropout: 0.1}}',
        "pass",
        "lora.create_arch_network kwargs",
    ),
    Row(
        "net-include-exclude",
        "train: {network: {args: [\"exclude_patterns=['.*']\","
        " \"include_patterns=['single_transformer_blocks.*proj_mlp']\"]}}",
        "pass",
        "include wins over exclude (lora.py create_modules; FramePack's single blocks have proj_mlp)",
    ),
    Row(
        "net-include-flux-name",
        "train: {network: {args: [\"exclude_patterns=['.*']\", \"include_patterns=['.*linear1.*']\"]}}",
        "fail",
        "linear1 is Flux's name: no module left, RuntimeError 'No LoRA modules found'",
    ),
    Row("net-loha", "train: {network: {module: networks.loha}}", "pass", "LoHa has create_arch_network"),
    Row("net-lokr", "train: {network: {module: networks.lokr, args: [factor=4]}}", "pass", "LoKr"),
    Row(
        "net-dim-from-weights",
        "musubi: {config: {dim_from_weights: true}}",
        "fail",
        "load_file(True): dim_from_weights is a flag, but the trainer passes it to load_file",
    ),
    Row("net-scale-norms", "musubi: {config: {scale_weight_norms: 1.0}}", "pass", "max-norm regularisation"),
    # --- timesteps and loss (training/timesteps.py, trainer_base) -----------------------------
    Row(
        "ts-sigmoid",
        "train: {timestep_sampling: sigmoid}\nmusubi: {config: {sigmoid_scale: 2.0}}",
        "pass",
        "",
    ),
    Row("ts-logsnr", "train: {timestep_sampling: logsnr}", "pass", "logsnr with logit_mean/std"),
    Row("ts-qinglong", "train: {timestep_sampling: qinglong_flux}", "pass", ""),
    Row("ts-flux-shift", "train: {timestep_sampling: flux_shift}", "pass", ""),
    Row(
        "ts-range-buckets",
        "musubi: {config: {min_timestep: 100, max_timestep: 900, preserve_distribution_shape: true,"
        " num_timestep_buckets: 4, weighting_scheme: logit_normal, guidance_scale: 10.0}}",
        "pass",
        "",
    ),
    # --- precision and memory --------------------------------------------------------------------
    Row(
        "prec-fp8-base",
        "train: {fp8_base: true}",
        "machine",
        "fp8 e4m3 weights that CUDA's autocast casts per operation; a CPU's does not",
    ),
    Row("prec-fp8-scaled", "train: {fp8_base: true, fp8_scaled: true}", "pass", "fp8 scaled weights"),
    Row(
        "prec-fp16",
        "train: {mixed_precision: fp16}\nlaunch: {mixed_precision: fp16}",
        "machine",
        "fp16 autocast and a grad scaler on CUDA; accelerate gives a CPU no fp16 autocast",
    ),
    Row(
        "prec-no",
        "train: {mixed_precision: 'no'}\nlaunch: {mixed_precision: 'no'}",
        "fail",
        "no autocast anywhere: call_dit hands fp32 inputs to the bf16 DiT (fpack_train_network.py:544-549)",
    ),
    Row(
        "mem-gc-offload",
        "train: {gradient_checkpointing: true}\nmusubi: {config: {gradient_checkpointing_cpu_offload: true}}",
        "pass",
        "activations to CPU",
    ),
    Row(
        "mem-swap-pinned",
        "train: {blocks_to_swap: 10}\nmusubi: {config: {use_pinned_memory_for_block_swap: true}}",
        "pass",
        "pinned host memory for swapped blocks",
    ),
    Row("mem-compile", "train: {compile: true}", "pass", "torch.compile of the DiT's blocks"),
    Row(
        "att-xformers",
        "train: {attention: xformers, split_attn: true}\ninfer: {attention: xformers}",
        "pass",
        "xformers: CUDA-only, stood in for on a CPU (said in a note)",
    ),
    Row(
        "att-flash",
        "train: {attention: flash_attn, split_attn: false}\ninfer: {attention: flash}",
        "pass",
        "flash_attn's var-len kernel takes batch 2 without split_attn",
    ),
    Row(
        "att-xformers-batch",
        "train: {attention: xformers, split_attn: false}",
        "fail",
        "hunyuan_video_packed attn_varlen_func: only sage/flash have a var-len path (NotImplementedError)",
    ),
    Row(
        "att-sage",
        "train: {attention: sage_attn}",
        "fail",
        "trainer_base: SageAttention refused for training",
    ),
    # --- data loader, steps, saving ----------------------------------------------------------------
    Row(
        "dl-no-workers-persistent",
        "train: {max_data_loader_n_workers: 0, persistent_data_loader_workers: true}",
        "fail",
        "torch DataLoader: persistent_workers needs num_workers > 0",
    ),
    Row("dl-accum", "train: {gradient_accumulation_steps: 2, max_data_loader_n_workers: 2}", "pass", ""),
    Row(
        "save-epochs-last",
        "musubi: {config: {save_every_n_epochs: 1, save_last_n_epochs: 2, save_last_n_epochs_state: 1,"
        " save_last_n_steps: 20, save_last_n_steps_state: 10, sample_every_n_epochs: 1}}",
        "pass",
        "epoch-based saving and pruning (max_train_epochs: refused by check on purpose, issue 20)",
    ),
    Row(
        "log-tensorboard",
        "train: {logging: {with: tensorboard}}",
        "pass",
        "accelerate leaves out a tracker whose package is missing (a warning), on a GPU too",
    ),
    Row(
        "log-wandb",
        "train: {logging: {with: wandb}}",
        "machine",
        "accelerator_setup.py imports wandb itself: ImportError 'No wandb' where it is not installed",
    ),
    Row("launch-two", "launch: {num_processes: 2}", "pass", "rehearsed in one process"),
    Row("launch-dynamo", "launch: {dynamo_backend: inductor}", "pass", "accelerate's dynamo plugin"),
]

if __name__ == "__main__":
    sys.exit(main("rehearse-matrix", __doc__, ROWS))
