"""Data- and inference-side settings through `fplora check` and `fplora rehearse`: does the
rehearsal's verdict match what musubi-tuner would do on a GPU?

Each row is a one-line change of the repo's example project: dataset.toml keys, the caching scripts'
options, sample and infer prompts, generate's options and the evaluation split, with the verdict
expected from reading musubi-tuner 30c658c4's source: `pass`, `fail:<stage>` (the rehearsal must fail
at that stage) or `machine`. rehearse_rows.py runs them (it says how) and `--write` records the matrix
in benchmarks/results/rehearse-matrix-data-<date>.json.

    uv run python benchmarks/rehearse_matrix_data.py [--only ID[,ID]] [--rerun] [--src DIR --before] [--write]
"""

from __future__ import annotations

import sys

from rehearse_rows import Row, main

JSONL = "../datasets/example/dataset-v1/metadata-v1.jsonl"

ROWS = [
    # --- dataset.toml ([general] and [[datasets]]; dataset/config_utils.py, image_video_dataset.py)
    Row("data-res-int", "data: {resolution: 64}", "pass", "an int resolution is a square"),
    Row("data-no-bucket", "data: {enable_bucket: false}", "pass", "every image resized to the resolution"),
    Row("data-no-upscale", "data: {bucket_no_upscale: true}", "pass", "buckets no larger than the image"),
    Row(
        "data-res-72",
        "data: {resolution: [72, 96], enable_bucket: false}",
        "fail:train",
        "without buckets the exact size: a 9x12 latent the DiT's 2x2 patches cannot tile",
    ),
    Row("data-repeats-batch", "data: {num_repeats: 3, batch_size: 3}", "pass", ""),
    Row(
        "data-caption-ext",
        "data: {caption_extension: .caption}",
        "pass",
        "a JSONL dataset reads captions inline",
    ),
    Row(
        "ds-own-settings",
        f"datasets: [{{jsonl: {JSONL}, resolution: [96, 64], batch_size: 1, num_repeats: 2}}]",
        "pass",
        "per-dataset keys win over [general]",
    ),
    Row(
        "ds-two",
        f"datasets: [{{jsonl: {JSONL}}},"
        f" {{jsonl: {JSONL}, resolution: [96, 64], cache_directory: ../cache-b}}]",
        "pass",
        "the same records at a second resolution, in a cache of its own",
    ),
    Row(
        "of-window",
        "one_frame: {latent_window_size: 5}",
        "pass",
        "fp_latent_window_size and --latent_window_size",
    ),
    Row("of-post", "one_frame: {no_post: false}", "pass", "a zero latent at 1 + window"),
    Row("of-no-2x-4x", "one_frame: {no_2x: true, no_4x: true}", "pass", "caching and --of without 2x/4x"),
    Row(
        "of-one-control",
        "one_frame: {clean_indices: [0], target_index: 5}",
        "fail:cache-latents",
        "each record has 2 control images but fp_1f_clean_indices names 1",
    ),
    Row(
        "of-modes",
        "one_frame: {inference_modes: 'target_index=5,control_index=0;10,no_post,no_2x'}",
        "pass",
        "inference-only modes in --of",
    ),
    # --- caching options (fpack_cache_latents.py, cache_latents.py, cache_text_encoder_outputs.py)
    Row("cl-batch-workers", "musubi: {cache_latents: {batch_size: 1, num_workers: 1}}", "pass", ""),
    Row("cl-keep-tiling", "musubi: {cache_latents: {keep_cache: true, vae_tiling: true}}", "pass", ""),
    Row("cl-f1", "musubi: {cache_latents: {f1: true}}", "pass", "one-frame caching ignores vanilla sampling"),
    Row(
        "cl-batch-negative",
        "musubi: {cache_latents: {batch_size: -1}}",
        "fail:cache-latents",
        "range(0, n, -1) is empty: no latent cache written, exit 0",
    ),
    Row(
        "cl-debug-video",
        "musubi: {cache_latents: {debug_mode: video}}",
        "fail:cache-latents",
        "debug_mode shows the dataset and returns before the VAE loads: no latent cache written, exit 0",
    ),
    Row(
        "cl-debug-console",
        "musubi: {cache_latents: {debug_mode: console}}",
        "fail:cache-latents",
        "ascii_magic (a dev dependency), then input() per image: no cache written",
    ),
    Row(
        "cl-tile-16",
        "models: {vae_spatial_tile_sample_min_size: 16}",
        "fail:train",
        "tiles of 16 px overlap by 12: the tiled latent of a 96x64 image is 16x11, not 12x8; training's"
        " RoPE cannot match it",
    ),
    Row(
        "cl-chunk-1",
        "models: {vae_chunk_size: 1}",
        "fail:cache-latents",
        "CausalConv3d: a chunk of 1 minus 1 % stride 2 is 0, and its chunking loop never advances: a hang",
    ),
    Row(
        "cl-tile-208-full-size",
        "data: {resolution: [512, 768]}\nmodels: {vae_spatial_tile_sample_min_size: 208}",
        "fail:train",
        "tiles of 208 px overlap by 156 but keep 20 latent rows (160 px): 512x768 is tiled into latents of"
        " 66x98, not 64x96, which training's RoPE cannot match; a CPU rehearsal's smaller images must"
        " still be tiled",
    ),
    Row("cl-chunk-tile-32", "models: {vae_chunk_size: 16, vae_spatial_tile_sample_min_size: 32}", "pass", ""),
    Row(
        "te-batch-zero",
        "musubi: {cache_text_encoder: {batch_size: 0}}",
        "fail:cache-text",
        "range(0, n, 0): ValueError",
    ),
    Row("te-no-fp8", "models: {fp8_llm: false}", "pass", "the LLM in fp16"),
    Row(
        "cl-device-cuda",
        "musubi: {cache_latents: {device: cuda}}",
        "machine",
        "valid on a GPU; this machine has no CUDA",
    ),
    # --- training sample prompts (training sampler, one-frame inference)
    Row(
        "smp-cfg",
        "sample: {prompts: [{record: 1, cfg_scale: 2.0, negative_prompt: blurry}]}",
        "pass",
        "real CFG with a negative prompt",
    ),
    Row(
        "smp-sizes",
        "sample: {prompts: [{record: 1}, {record: 2, width: 96, height: 64, seed: 3, guidance_scale: 6.0}]}\n"
        "infer: {prompts: [{record: 1}]}",
        "pass",
        "",
    ),
    # --- fplora infer: generate's options and prompt lines (fpack_generate_video.py)
    Row("inf-images", "infer: {output_type: images}", "pass", ""),
    Row("inf-latent", "infer: {output_type: latent}", "pass", ""),
    Row("inf-both", "infer: {output_type: both}", "pass", "a one-frame video"),
    Row("inf-attn-torch", "infer: {attention: torch}", "pass", ""),
    Row(
        "inf-attn-flash",
        "infer: {attention: flash}",
        "pass",
        "CUDA-only kernel: on a CPU the rehearsal's stand-in kernel takes its place (said in a note)",
    ),
    Row("inf-attn-sage", "infer: {attention: sageattn}", "pass", "as flash"),
    Row("inf-swap-38", "infer: {blocks_to_swap: 38}", "pass", "19 double and 39 single blocks: the most"),
    Row(
        "inf-swap-39",
        "infer: {blocks_to_swap: 39}",
        "fail:generate",
        "enable_block_swap: 41 single blocks asked, at most 39",
    ),
    Row(
        "inf-plain",
        "infer: {fp8_scaled: false, flow_shift: 3.0, steps: 3, seed: 7, multipliers: [0.5, 1.0]}",
        "pass",
        "",
    ),
    Row(
        "inf-cfg-second",
        "infer: {prompts: [{record: 1}, {record: 2, cfg_scale: 2.0}]}",
        "pass",
        "two option sets: both must be generated",
    ),
    Row(
        "gen-solver",
        "musubi: {generate: {sample_solver: dpm++}}",
        "fail:generate",
        "k_diffusion_hunyuan: only unipc; every prompt fails inside the loop and generate exits 0",
    ),
    Row(
        "gen-pinned-swap",
        "infer: {blocks_to_swap: 10}\nmusubi: {generate: {use_pinned_memory_for_block_swap: true}}",
        "pass",
        "pinned host memory for the swapped blocks (CUDA)",
    ),
    Row(
        "gen-misc",
        "musubi: {generate: {one_frame_auto_resize: true, vae_tiling: true, bulk_decode: true,"
        " no_metadata: true}}",
        "pass",
        "",
    ),
    Row(
        "gen-include",
        "musubi: {generate: {include_patterns: ['.*single.*']}}",
        "fail:generate",
        "filter_lora_state_dict compiles the nargs='*' list as one pattern: TypeError (lycoris path aside)",
    ),
    Row(
        "gen-fp8-plain",
        "infer: {fp8_scaled: false}\nmusubi: {generate: {fp8: true}}",
        "fail:generate",
        "load_dit_model casts to torch.float8e4m3fn, which torch does not have: AttributeError",
    ),
    Row(
        "gen-lycoris",
        "musubi: {generate: {lycoris: true}}",
        "fail:generate",
        "fpack_generate_video.py:307 raises 'install lycoris' where the package is missing (not among"
        " musubi-tuner's dependencies): a GPU box set up from its pins fails the same way",
    ),
    Row(
        "gen-device-cuda",
        "musubi: {generate: {device: cuda}}",
        "machine",
        "valid on a GPU; this machine has no CUDA",
    ),
    # --- options no row above reached (read from musubi-tuner 30c658c4)
    Row(
        "cl-vae-dtype",
        "musubi: {cache_latents: {vae_dtype: float16}}",
        "fail:cache-latents",
        "fpack_cache_latents.main raises 'VAE dtype is not supported in FramePack' for any value",
    ),
    Row(
        "cl-workers-zero",
        "musubi: {cache_latents: {num_workers: 0}}",
        "fail:cache-latents",
        "image_video_dataset retrieve_latent_cache_batches: ThreadPoolExecutor(max_workers=0), ValueError",
    ),
    Row(
        "te-workers-zero",
        "musubi: {cache_text_encoder: {num_workers: 0}}",
        "fail:cache-text",
        "_default_retrieve_text_encoder_output_cache_batches: ThreadPoolExecutor(max_workers=0), ValueError",
    ),
    Row(
        "cl-no-cudnn",
        "musubi: {cache_latents: {disable_cudnn_backend: true}}",
        "pass",
        "fpack_cache_latents.main turns cuDNN off",
    ),
    Row(
        "gen-interactive",
        "musubi: {generate: {interactive: true}}",
        "fail:generate",
        "fpack_generate_video.parse_args: from_file and interactive together, ValueError",
    ),
    Row(
        "gen-save-merged",
        "musubi: {generate: {save_merged_model: ../merged.safetensors}}",
        "fail:generate",
        "fpack_generate_video.main asserts save_merged_model is not used with fp8_scaled (infer's default);"
        " without fp8_scaled it saves and generates nothing",
    ),
    Row(
        "gen-system-prompt",
        "musubi: {generate: {custom_system_prompt: Describe the picture.}}",
        "pass",
        "prepare_i2v_inputs hands it to encode_prompt_conds",
    ),
    Row(
        "gen-rope-scaling",
        "musubi: {generate: {rope_scaling_timestep_threshold: 800, rope_scaling_factor: 0.5}}",
        "pass",
        "load_dit_model: enable_rope_scaling; the DiT's forward scales RoPE above the threshold",
    ),
    Row(
        "gen-magcache",
        "musubi: {generate: {magcache_mag_ratios: '0', magcache_k: 2, magcache_threshold: 0.5}}",
        "pass",
        "initialize_magcache with the default ratios, interpolated to the step count",
    ),
    Row(
        "gen-magcache-calibrate",
        "musubi: {generate: {magcache_calibration: true}}",
        "pass",
        "postprocess_magcache prints the ratios",
    ),
    Row(
        "gen-compile-typo",
        "musubi: {generate: {compile: true, compile_backend: inductr}}",
        "fail:generate",
        "load_dit_model: model_utils.compile_transformer, torch.compile raises InvalidBackend at once",
    ),
    Row("gen-compile", "musubi: {generate: {compile: true}}", "pass", "load_dit_model compiles the blocks"),
    Row(
        "gen-rescale-sections",
        "musubi: {generate: {guidance_rescale: 0.7, video_sections: 2, fps: 15, latent_paddings: '1,0'}}",
        "pass",
        "the section options are the video path's; one-frame ignores them",
    ),
    Row(
        "inf-size-not-8",
        "infer: {prompts: [{record: 1, width: 100, height: 60}]}",
        "fail:generate",
        "fpack_generate_video.check_inputs: height and width must be divisible by 8",
    ),
    Row(
        "smp-size-not-16",
        "sample: {prompts: [{record: 1, width: 72, height: 40}]}",
        "fail:train",
        "do_inference: a 9x5 latent that the DiT's 2x2 patches cannot tile",
    ),
    Row(
        "smp-text-hash",
        "sample: {prompts: [{record: 1, text: '# a girl turns around'}]}",
        "fail:train",
        "training's prompt file skips a line whose first character is '#' (sampling_prompts): no sample"
        " for it; generate skips it as well",
    ),
    Row("inf-steps-one", "infer: {steps: 1}", "pass", "one unipc step in sample_hunyuan"),
    Row(
        "data-res-256-noupscale",
        "data: {resolution: 256, bucket_no_upscale: true}",
        "pass",
        "BucketSelector without upscaling: buckets no larger than the images",
    ),
    Row(
        "of-window-1",
        "one_frame: {latent_window_size: 1}",
        "pass",
        "fpack_cache_latents: one-frame caching returns before the section maths; indices as given",
    ),
    Row(
        "smp-negative-only",
        "sample: {prompts: [{record: 1, negative_prompt: blurry}]}",
        "pass",
        "without cfg_scale above 1 the negative prompt is encoded and unused",
    ),
    # --- held-out rows, session 2026-12-06 evening (predicted from musubi-tuner 30c658c4 first)
    Row(
        "data-res-200",
        "data: {resolution: 200}",
        "fail:train",
        "buckets are multiples of 16, but the prompts render 200x200: the training sampler keeps 200"
        " (a multiple of 8), a 25x25 latent the DiT's 2x2 patches cannot tile, at the sample at first",
    ),
    Row(
        "of-modes-comma",
        "one_frame: {inference_modes: 'target_index=5,control_index=0,10,no_post'}",
        "pass",
        "the --of parsers split at commas: '10' is a token of its own and ignored (the second control"
        " index stays 0): wrong, but images are written",
    ),
    Row(
        "of-modes-bad-int",
        "one_frame: {inference_modes: 'target_index=five,control_index=0;10,no_post'}",
        "fail:train",
        "fpack_train_network.do_inference: int('five') in the sample at first, outside any try",
    ),
    Row(
        "of-target-negative",
        "one_frame: {target_index: -1}",
        "pass",
        "the target index only feeds the DiT's RoPE frame positions, which take any integer",
    ),
    Row(
        "gen-f1",
        "musubi: {generate: {f1: true}}",
        "pass",
        "fpack_generate_video.generate: f1 only picks the video sections' sampling; one-frame ignores it",
    ),
    Row(
        "gen-end-image",
        "musubi: {generate: {end_image_path: datasets/example/dataset-v1/controls/0001_0.png}}",
        "pass",
        "prepare_image_inputs encodes the end image; generate_with_one_frame_inference never reads it",
    ),
    Row(
        "gen-mask-global",
        "musubi: {generate: {control_image_mask_path: [datasets/example/dataset-v1/controls/0001_0.png]}}",
        "pass",
        "generate_with_one_frame_inference: the first control latent times the mask (converted to L)",
    ),
    Row(
        "gen-latent-path",
        "musubi: {generate: {latent_path: [missing_latent.safetensors]}}",
        "fail:generate",
        "fpack_generate_video.main: latent_path switches to decoding that file, which is missing",
    ),
    Row(
        "te-device-cuda",
        "musubi: {cache_text_encoder: {device: cuda}}",
        "machine",
        "valid on a GPU; this machine has no CUDA",
    ),
    Row(
        "eval-compile",
        "eval: {records: [4], compile: true}",
        "pass",
        "fplora's evaluation worker compiles the DiT's blocks with training's compile options",
    ),
    Row(
        "eval-compile-typo",
        "train: {compile: false}\neval: {records: [4], compile: true}\n"
        "musubi: {config: {compile_backend: inductr}}",
        "fail:eval",
        "training does not compile, so it never meets the backend; `fplora eval` compiles with it"
        " (model_utils.compile_transformer): torch.compile raises InvalidBackend",
    ),
    Row(
        "eval-all-records",
        "eval: {records: [1, 2, 3, 4]}",
        "fail",
        "nothing left to train on: caching writes no training cache, training finds no items (ValueError)",
    ),
    Row(
        "eval-jsonl-own",
        "eval: {jsonl: ../datasets/example/dataset-v1/metadata-v1.jsonl, allow_training_records: true}",
        "pass",
        "a separate evaluation JSONL (here the training one, allowed with a warning), cached on its own",
    ),
    Row(
        "eval-batch-no-split",
        "data: {batch_size: 1}\ntrain: {split_attn: false}\neval: {records: [3, 4], batch_size: 2}",
        "fail:eval",
        "training runs batch 1 without split_attn; the evaluation's batch of 2 meets sdpa's"
        " attn_varlen_func, which has no var-len path (NotImplementedError)",
    ),
    Row(
        "eval-loha",
        "train: {network: {module: networks.loha}}\neval: {records: [4]}",
        "pass",
        "fplora's evaluation worker builds the run's network (LoHa: no lora_up, the untrained"
        " checkpoint is the multiplier 0) and loads each checkpoint into it",
    ),
    Row(
        "eval-lokr",
        'train: {network: {module: networks.lokr, args: ["factor=4"]}}\neval: {records: [4]}',
        "pass",
        "as eval-loha, with LoKr",
    ),
    Row(
        "eval-dropout",
        'train: {network: {args: ["rank_dropout=0.1", "module_dropout=0.1"]}}\n'
        "musubi: {config: {network_dropout: 0.1}}\neval: {records: [4]}",
        "pass",
        "the evaluation worker's network is in eval mode: LoRAModule skips its dropouts",
    ),
    Row(
        "eval-flash-b2",
        "train: {attention: flash_attn, split_attn: false}\neval: {records: [3, 4], batch_size: 2}",
        "pass",
        "flash_attn's var-len kernel takes the evaluation's batch of 2 without split_attn",
    ),
    Row(
        "eval-fp8-scaled",
        "train: {fp8_base: true, fp8_scaled: true}\neval: {records: [4]}",
        "pass",
        "the evaluation worker loads the DiT as training does (scaled fp8 weights, no cast)",
    ),
    Row(
        "eval-include",
        "train: {network: {args: [\"exclude_patterns=['.*']\","
        " \"include_patterns=['single_transformer_blocks.*proj_mlp']\"]}}\neval: {records: [4]}",
        "pass",
        "the evaluation worker builds the network from the run's config: the same modules, so each"
        " checkpoint loads without missing or unexpected weights",
    ),
    Row(
        "eval-h2d",
        "musubi: {config: {block_swap_h2d_only: true}}\neval: {records: [4]}",
        "machine",
        "LoRAStreamOffloader asserts a CUDA device (training and the evaluation's DiT load)",
    ),
    # --- evaluation split
    Row("eval-records", "eval: {records: [4], timesteps: [0.5]}", "pass", ""),
    Row("eval-fraction", "eval: {fraction: 0.5, batch_size: 2}", "pass", ""),
    # --- held-out round 4: command-line pass-through values, as argparse converts them
    Row(
        "pt-gen-fps-text",
        "musubi: {generate: {fps: '30'}}",
        "pass",
        "generate's --fps 30 on its command line: argparse's type=int converts the text",
    ),
    Row(
        "pt-cl-batch-text",
        "musubi: {cache_latents: {batch_size: '1'}}",
        "pass",
        "fpack_cache_latents' --batch_size 1: argparse converts the text",
    ),
    Row(
        "pt-gen-magcache-int",
        "musubi: {generate: {magcache_mag_ratios: 0, magcache_k: 2}}",
        "pass",
        "--magcache_mag_ratios 0 is the text '0' to generate's parser, as gen-magcache's quoted '0'",
    ),
    Row(
        "pt-gen-dynamic-false",
        "musubi: {generate: {compile: true, compile_dynamic: false}}",
        "pass",
        "--compile_dynamic false: one of its choices (true, false, auto)",
    ),
    Row(
        "pt-gen-fps-float",
        "musubi: {generate: {fps: 30.5}}",
        "fail:generate",
        "argparse's int('30.5') fails: generate exits 2 before any prompt",
    ),
    Row(
        "pt-launch-restarts-text",
        "launch: {extra: {max_restarts: '0'}}",
        "pass",
        "accelerate launch --max_restarts 0: its parser converts the text (type=int)",
    ),
    # --- held-out round 4: prompt texts the training sample parser reads as options
    Row(
        "smp-text-i",
        "sample: {prompts: [{record: 1, text: 'I turn to face the camera'}]}",
        "pass",
        "line_to_prompt_dict reads the start image 'turn to ...' off the text, then the line's own --i"
        " replaces it (the last match wins): the sample asked for",
    ),
    Row(
        "inf-text-l",
        "infer: {prompts: [{record: 1, text: 'L 2 characters turn'}]}",
        "pass",
        "generate's parse_prompt_line reads options only after the first ' --'",
    ),
    Row(
        "smp-text-ci",
        "sample: {prompts: [{record: 1, text: 'Ci turns around'}]}",
        "fail:train",
        "the training parser adds the control image 'turns around' before the line's own two: the"
        " sampler cannot open it",
    ),
    # --- held-out round 4: seeds and sizes of prompts
    Row(
        "smp-seed-negative",
        "sample: {seed: -1}",
        "pass",
        "training lines' --d -1 does not match the sampler's 'd (\\d+)' (a random seed); generate's"
        " int('-1') seeds torch's generator and names its files ..._-1__000.png",
    ),
    Row(
        "inf-seed-negative",
        "infer: {seed: -5}",
        "pass",
        "generate: --d -5 and --d -4, files named by them (fplora infer read only digits before)",
    ),
    Row(
        "inf-size-72x40",
        "infer: {prompts: [{record: 1, width: 72, height: 40}]}",
        "fail:generate",
        "multiples of 8 pass generate's check, but the 9x5 latent does not tile into the DiT's 2x2"
        " patches: every prompt fails, generate exits 0",
    ),
    Row(
        "data-res-480x720",
        "data: {resolution: [480, 720]}",
        "pass",
        "buckets of whole steps of 16 (the 64x96 images upscaled); on a CPU rehearsed at 112x176",
    ),
]

if __name__ == "__main__":
    sys.exit(main("rehearse-matrix-data", __doc__, ROWS))
