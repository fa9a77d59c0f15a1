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
    Row(
        "dl-no-workers",
        "train: {max_data_loader_n_workers: 0, persistent_data_loader_workers: false}",
        "pass",
        "torch DataLoader in the main process",
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
        "pass",
        "accelerator_setup.py imports wandb itself: this musubi-tuner Python has had wandb since"
        " 2026-12-06 12:14, so it runs (offline in a rehearsal); where wandb is missing the ImportError"
        " 'No wandb' is the machine's (expected: machine)",
    ),
    Row("launch-two", "launch: {num_processes: 2}", "pass", "rehearsed in one process"),
    Row("launch-dynamo", "launch: {dynamo_backend: inductor}", "pass", "accelerate's dynamo plugin"),
    Row(
        "launch-fp8",
        "launch: {mixed_precision: fp8}",
        "fail",
        "accelerate's launcher (utils/launch.py prepare_simple_launcher_cmd_env) refuses fp8 unless"
        " Transformer Engine, MS-AMP or torchao is installed, none of them among musubi-tuner's"
        " dependencies: a GPU box set up from its pins fails the same way, at the first stage",
    ),
    Row("launch-debug", "launch: {extra: {debug: true}}", "pass", "accelerate's debug checks (one process)"),
    # --- options no row above reached (read from musubi-tuner 30c658c4) ---------------------------
    Row(
        "mem-h2d-only",
        "musubi: {config: {block_swap_h2d_only: true}}",
        "machine",
        "custom_offloading_utils.create_offloader: LoRAStreamOffloader, whose __init__ asserts a CUDA device"
        " (the example swaps 20 blocks with gradient checkpointing: valid on a GPU)",
    ),
    Row(
        "mem-h2d-no-gc",
        "train: {gradient_checkpointing: false}\nmusubi: {config: {block_swap_h2d_only: true}}",
        "fail",
        "BlockSwapConfig.from_args: H2D-only swap needs gradient checkpointing for training (ValueError)",
    ),
    Row(
        "mem-ring-zero",
        "musubi: {config: {block_swap_h2d_only: true, block_swap_ring_size: 0}}",
        "fail",
        "BlockSwapConfig.from_args: ring size must be >= 1 (ValueError)",
    ),
    Row(
        "mem-cuda-flags",
        "musubi: {config: {cuda_allow_tf32: true, cuda_cudnn_benchmark: true, disable_numpy_memmap: true}}",
        "pass",
        "trainer_base._validate_args_and_init sets torch's CUDA flags; memmap off in load_packed_model",
    ),
    Row(
        "comp-options",
        "train: {compile: true}\nmusubi: {config: {compile_mode: max-autotune-no-cudagraphs,"
        ' compile_dynamic: "false", compile_cache_size_limit: 32}}',
        "pass",
        "model_utils.compile_transformer: torch.compile per block with these",
    ),
    Row(
        "comp-backend-typo",
        "train: {compile: true}\nmusubi: {config: {compile_backend: inductr}}",
        "fail",
        "model_utils.compile_transformer: torch.compile(backend='inductr') raises InvalidBackend at once",
    ),
    Row(
        "ts-show-console",
        "musubi: {config: {show_timesteps: console}}",
        "fail:train",
        "trainer_base._validate_args_and_init: show_timesteps prints the distribution and returns before"
        " training: exit 0, no LoRA written",
    ),
    Row(
        "ts-show-no-sampling",
        "sample: {at_first: false, every_n_steps: null}\nmusubi: {config: {show_timesteps: console}}",
        "fail:train",
        "as ts-show-console, in a spec that never samples: the missing LoRA alone must fail training",
    ),
    Row(
        "ts-mode-weighting",
        "musubi: {config: {weighting_scheme: mode, mode_scale: 1.29, logit_std: 2.0}}",
        "pass",
        "timesteps.compute_density_for_timestep_sampling, mode branch",
    ),
    Row(
        "sched-min-lr",
        "train: {optimizer: {lr_scheduler: cosine_with_min_lr, lr_warmup_steps: 2}}\n"
        "musubi: {config: {lr_scheduler_min_lr_ratio: 0.1}}",
        "pass",
        "get_lr_scheduler: transformers' cosine_with_min_lr with min_lr_rate",
    ),
    Row(
        "sched-min-lr-missing",
        "train: {optimizer: {lr_scheduler: cosine_with_min_lr, lr_warmup_steps: 2}}",
        "fail",
        "get_lr_scheduler passes min_lr_rate=None: transformers raises 'One of min_lr or min_lr_rate'",
    ),
    Row(
        "sched-inverse-sqrt",
        "train: {optimizer: {lr_scheduler: inverse_sqrt, lr_warmup_steps: 2}}\n"
        "musubi: {config: {lr_scheduler_timescale: 50}}",
        "pass",
        "get_lr_scheduler: INVERSE_SQRT with timescale",
    ),
    Row(
        "sched-piecewise",
        "train: {optimizer: {lr_scheduler: piecewise_constant}}\n"
        "musubi: {config: {lr_scheduler_args: [\"step_rules='1:5,0.1'\"]}}",
        "pass",
        "get_lr_scheduler: diffusers' piecewise_constant, step_rules from lr_scheduler_args",
    ),
    Row(
        "net-exclude-unquoted",
        'train: {network: {args: ["exclude_patterns=.*refiner.*"]}}',
        "fail",
        "lora_framepack.create_arch_network: ast.literal_eval of a bare regex (SyntaxError)",
    ),
    Row(
        "net-conv-dim",
        'train: {network: {args: ["conv_dim=4", "conv_alpha=1"]}}',
        "pass",
        "lora.create_network: conv LoRA only for 3x3 convolutions, which FramePack's blocks lack",
    ),
    Row(
        "opt-betas",
        'train: {optimizer: {type: AdamW, args: ["betas=(0.9,0.99)", "eps=1e-6"]}}',
        "pass",
        "get_optimizer: ast.literal_eval of each value",
    ),
    Row(
        "meta-fields",
        "musubi: {config: {training_comment: first try, metadata_title: t, metadata_author: me,"
        ' metadata_tags: "a,b", metadata_license: MIT, metadata_description: d}}',
        "pass",
        "trainer_base: metadata written into the LoRA",
    ),
    Row(
        "meta-none",
        "musubi: {config: {no_metadata: true}}",
        "pass",
        "trainer_base saves the minimum metadata only; generate needs none",
    ),
    Row(
        "ddp-options",
        "musubi: {config: {ddp_timeout: 30, ddp_gradient_as_bucket_view: true, ddp_static_graph: true}}",
        "pass",
        "accelerator_setup.prepare_accelerator: DDP kwargs, unused in one process",
    ),
    Row(
        "seed-negative",
        "train: {seed: -1}",
        "fail",
        "trainer_base._init_session: accelerate's set_seed seeds numpy, which refuses a negative seed",
    ),
    Row(
        "out-name-slash",
        "train: {output_name: loras/v1}",
        "fail",
        "the sample at first (sample/loras/v1_...png) and trainer_base's save_model write into folders"
        " under output_dir that nothing makes (only output_dir and sample/ are): FileNotFoundError",
    ),
    Row(
        "hf-upload",
        "musubi: {config: {huggingface_repo_id: someone/fplora-test, async_upload: true,"
        " save_state_to_huggingface: true}}",
        "pass",
        "huggingface_utils.upload logs a failed upload and goes on (the rehearsal is offline: nothing sent)",
    ),
    Row(
        "launch-precision-no",
        "launch: {mixed_precision: 'no'}",
        "pass",
        "accelerator_setup.prepare_accelerator hands the trainer's bf16 to Accelerator over the launcher's",
    ),
    Row(
        "att-flash3",
        "train: {attention: flash3}",
        "fail",
        "hunyuan_video_packed.attn_varlen_func: flash3 has no FramePack kernel; a batch of two meets the"
        " assert (split_attn) or NotImplementedError (without)",
    ),
    Row(
        "launch-deepspeed",
        "launch: {extra: {use_deepspeed: true}}",
        "fail",
        "accelerate's launch_command takes deepspeed_launcher, which raises ImportError without deepspeed"
        " (not among musubi-tuner's dependencies; accelerator_setup says DeepSpeed is not supported)",
    ),
    Row(
        "log-prefix",
        "train: {logging: {with: tensorboard}}\nmusubi: {config: {log_prefix: v1-}}",
        "pass",
        "accelerator_setup.prepare_accelerator: logging_dir/<prefix><time>",
    ),
    # --- held-out rows, session 2026-12-06 evening (predicted from musubi-tuner 30c658c4 first) ------
    Row(
        "net-exclude-string",
        "train: {network: {args: [\"exclude_patterns='.*attn.*'\"]}}",
        "fail",
        "lora_framepack.create_arch_network: literal_eval of a quoted string gives a str, and its"
        " .append of the norm pattern raises AttributeError",
    ),
    Row(
        "net-include-bad-regex",
        "train: {network: {args: [\"include_patterns=['(']\"]}}",
        "pass",
        "LoRANetwork.__init__ logs an invalid include pattern and skips it; nothing is excluded",
    ),
    Row(
        "net-verbose-lower",
        'train: {network: {args: ["verbose=true"]}}',
        "pass",
        "lora.create_network: only the text 'True' turns verbose on; anything else is False",
    ),
    Row(
        "net-rank-dropout-text",
        'train: {network: {args: ["rank_dropout=high"]}}',
        "fail",
        "lora.create_network: float('high') raises ValueError",
    ),
    Row(
        "net-loha-loraplus",
        'train: {network: {module: networks.loha, args: ["loraplus_lr_ratio=4", "module_dropout=0.1"]}}',
        "pass",
        "LoHa goes through lora.create_network; prepare_optimizer_params warns that LoRA+ finds no lora_up",
    ),
    Row(
        "sched-torch-no-args",
        "musubi: {config: {lr_scheduler_type: StepLR}}",
        "fail",
        "get_lr_scheduler: torch.optim.lr_scheduler.StepLR(optimizer) without its step_size (TypeError)",
    ),
    Row(
        "sched-torch-dotted",
        "musubi: {config: {lr_scheduler_type: torch.optim.lr_scheduler.OneCycleLR,"
        ' lr_scheduler_args: ["max_lr=0.001", "total_steps=20"]}}',
        "pass",
        "get_lr_scheduler: a dotted class path is imported from its module",
    ),
    Row(
        "opt-fused",
        'train: {optimizer: {type: AdamW, args: ["fused=True"]}}',
        "pass",
        "get_optimizer: torch AdamW with its fused kernel (CUDA; torch has a CPU one too)",
    ),
    Row(
        "opt-8bit-paged-arg",
        'train: {optimizer: {type: adamw8bit, args: ["is_paged=True"]}}',
        "pass",
        "get_optimizer: bitsandbytes AdamW8bit(is_paged=True)",
    ),
    Row(
        "seed-2-32",
        "train: {seed: 4294967296}",
        "fail",
        "trainer_base._init_session: accelerate's set_seed seeds numpy, which takes at most 2**32 - 1",
    ),
    Row(
        "meta-reso-x",
        "musubi: {config: {metadata_reso: 512x768}}",
        "fail:train",
        "sai_model_spec.build_metadata: int('512x768') when the first checkpoint is saved (ValueError)",
    ),
    Row(
        "meta-reso-comma",
        'musubi: {config: {metadata_reso: "512,768"}}',
        "pass",
        "sai_model_spec.build_metadata: the width,height form",
    ),
    Row(
        "resume-from-hf",
        "musubi: {config: {resume_from_huggingface: true}}",
        "fail:resume",
        "trainer_base.resume_from_local_or_hf_if_specified reads the local state folder fplora passes as"
        " <repo>/<path> on the Hub: listing it fails; training without resume never reads the flag",
    ),
    Row(
        "ts-sigma",
        "train: {timestep_sampling: sigma}",
        "pass",
        "get_noisy_model_input_and_timesteps: the weighting-scheme branch (uniform u, scheduler sigmas)",
    ),
    Row(
        "ts-preserve-impossible",
        "musubi: {config: {min_timestep: 999, max_timestep: 1000, preserve_distribution_shape: true}}",
        "pass",
        "1000 loops without enough timesteps in range: a warning, and the last sample is used",
    ),
    Row(
        "launch-gpu-ids-one",
        'launch: {num_processes: 2, gpu_ids: "0"}',
        "fail",
        "accelerate's multi_gpu_launcher: CUDA_VISIBLE_DEVICES=0 and 2 processes per node; PartialState"
        " gives each GPU local_rank % 1 = 0, and NCCL refuses two ranks on one GPU (Duplicate GPU"
        " detected) at DDP's first broadcast",
    ),
    Row(
        "launch-tpu",
        "launch: {extra: {tpu: true}}",
        "fail",
        "accelerate's launch_command takes tpu_launcher, which imports torch_xla (not among musubi-tuner's"
        " dependencies): ImportError on a GPU box set up from its pins",
    ),
    Row(
        "opt-dadapt",
        "train: {optimizer: {type: dadaptation.DAdaptAdam, learning_rate: 1.0}}",
        "machine",
        "get_optimizer's any-class branch imports dadaptation: a package to install, not a spec error",
    ),
    Row(
        "mem-h2d-ring-4",
        "musubi: {config: {block_swap_h2d_only: true, block_swap_ring_size: 4}}",
        "machine",
        "LoRAStreamOffloader with a ring of 4: asserts a CUDA device",
    ),
    Row(
        "gpu-h100",
        "gpu: h100-80g",
        "pass",
        "the H100 preset: batch 1 x 2 accumulation, no swap or checkpointing, torch.compile, no split_attn",
    ),
    Row(
        "gpu-h100-eval-b2",
        "gpu: h100-80g\neval: {records: [3, 4], batch_size: 2}",
        "pass",
        "the preset would turn split_attn off for its batch of 1, and the evaluation's batch of 2 would"
        " then meet sdpa's attn_varlen_func without a var-len path (NotImplementedError: the rehearsal"
        " failed at eval before); the presets now keep split_attn on for an evaluation batch above 1",
    ),
    # --- held-out round 4: warmup shares, presets of every card with other settings
    Row(
        "sched-constant-ratio-none",
        "train: {optimizer: {lr_warmup_steps: 0.01}}",
        "pass",
        "get_lr_scheduler: int(0.01 x 20 steps) = 0 warmup steps, which constant takes",
    ),
    Row(
        "sched-constant-ratio-one",
        "train: {optimizer: {lr_warmup_steps: 0.05}}",
        "fail:train",
        "int(0.05 x 20) = 1 warmup step: 'constant does not require num_warmup_steps'",
    ),
    Row(
        "opt-adafactor-warmup-ratio",
        "train: {optimizer: {type: adafactor, lr_warmup_steps: 0.01}}",
        "pass",
        "relative_step's adafactor:<lr> scheduler with int(0.01 x 20) = 0 warmup steps",
    ),
    Row(
        "gpu-h200",
        "gpu: h200",
        "pass",
        "the H200 preset: batch 1 x 2 accumulation, no swap or checkpointing, torch.compile, no split_attn",
    ),
    Row("gpu-a6000", "gpu: a6000-48g", "pass", "modelled: batch 1 x 2, no swap or checkpointing"),
    Row("gpu-4090", "gpu: 4090-24g", "pass", "modelled: batch 2, blocks_to_swap 9, checkpointing"),
    Row(
        "gpu-4090-xformers",
        "gpu: 4090-24g\ntrain: {attention: xformers}",
        "pass",
        "batch 2 with split_attn: xformers' per-sample path",
    ),
    Row(
        "gpu-4090-split-off",
        "gpu: 4090-24g\ntrain: {split_attn: false}",
        "fail:train",
        "the preset's batch 2 with sdpa and split_attn written off: attn_varlen_func has no var-len"
        " path (NotImplementedError)",
    ),
    Row(
        "gpu-4090-fp8-base",
        "gpu: 4090-24g\ntrain: {fp8_base: true}",
        "machine",
        "fp8_base written without fp8_scaled: the preset leaves fp8 alone; CUDA autocast's fp8 path",
    ),
    Row(
        "gpu-h200-flash-eval-b2",
        "gpu: h200\ntrain: {attention: flash_attn}\neval: {records: [3, 4], batch_size: 2}",
        "pass",
        "the preset's split_attn off at batch 1; flash_attn's var-len kernel takes the evaluation's"
        " batch of 2",
    ),
    Row(
        "gpu-a6000-swap-compile",
        "gpu: a6000-48g\ntrain: {blocks_to_swap: 6, compile: true}",
        "pass",
        "swap 6 and torch.compile pinned, split_attn off at batch 1 (the compiled crash needs split_attn)",
    ),
    Row(
        "train-short-run",
        "train: {max_train_steps: 5}",
        "pass",
        "save_every_n_steps 10 past the run's 5 steps: no step checkpoint, the LoRA and state at the end",
    ),
    Row(
        "opt-adafactor-lr-high",
        "train: {optimizer: {type: adafactor, learning_rate: 10}}",
        "pass",
        "relative_step (its default) computes its own step size: the rate is only the logged initial_lr",
    ),
]

if __name__ == "__main__":
    sys.exit(main("rehearse-matrix", __doc__, ROWS))
