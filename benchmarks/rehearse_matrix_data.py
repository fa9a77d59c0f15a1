"""Data- and inference-side settings through `fplora check` and `fplora rehearse`: does the
rehearsal's verdict match what musubi-tuner would do on a GPU?

Each row is a one-line change of the repo's example project (configs/example.yaml, datasets/example)
as a child spec (`extends: example.yaml`): dataset.toml keys, the caching scripts' options, sample and
infer prompts, generate's options and the evaluation split. The expected verdict comes from reading
musubi-tuner 30c658c4's source: `pass` (it runs and writes what it should on a GPU), `fail:<stage>`
(it dies there, or writes nothing while exiting 0: the rehearsal must fail at that stage; `check`
refusing it is a match too), `machine` (valid on a GPU, but this machine cannot run that code path:
the rehearsal must say so as the machine's, never as a spec mistake).

Rows run one after another (each rehearsal is ~35-60 s of a 2-core CPU); results are kept in
`--state` (default /tmp/fplora-rehearse-matrix-data/state.json) and a row runs again only when its
spec text or fplora's rehearsal code changed, or with `--rerun`. Prints a table; `--write` records
the matrix in benchmarks/results/rehearse-matrix-data-<date>.json.

    uv run python benchmarks/rehearse_matrix_data.py [--only ID[,ID]] [--rerun] [--write]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rehearse_matrix import _fplora, _project  # the training side's runner: same project, same calls

REPO = Path(__file__).resolve().parents[1]
CODE = [
    "jobs/rehearse.py",
    "worker/rehearse.py",
    "worker/rehearse_standins.py",
    "spec/rules/__init__.py",
    "render/prompts.py",
    "render/commands.py",
]
"""fplora's files (under src/fplora) whose change makes a recorded row stale."""
JSONL = "../datasets/example/dataset-v1/metadata-v1.jsonl"


@dataclass(frozen=True)
class Row:
    id: str
    spec: str  # YAML lines added to `extends: example.yaml`
    expected: str  # pass | fail:<stage> | machine
    why: str  # what musubi-tuner's source says (pinned commit)


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
    # --- evaluation split
    Row("eval-records", "eval: {records: [4], timesteps: [0.5]}", "pass", ""),
    Row("eval-fraction", "eval: {fraction: 0.5, batch_size: 2}", "pass", ""),
]


def _verdict(code: int, output: str) -> str:
    if code == 0 and ("rehearsal passed" in output or "not run again" in output):
        return "machine" if "not rehearsed" in output else "pass"
    if "not a mistake in the spec" in output or "not rehearsed" in output:
        return "machine"
    stage = re.search(r"rehearsal failed at stage (\S+)", output)
    return f"fail:{stage.group(1)}" if stage else "fail"


def _first_error(output: str) -> str:
    for pattern in (
        r"rehearsal failed at stage \S+ \([^)]*\): (.*)",
        r"musubi-tuner: (.*)",
        r"not rehearsed: (.*)",
        r"^(.*(?:error|Error).*)$",
    ):
        found = re.search(pattern, output, re.MULTILINE)
        if found:
            return found.group(1).strip()[:160]
    return ""


def _code_key(src: Path) -> str:
    digest = hashlib.sha256()
    for name in CODE:
        digest.update((src / "fplora" / name).read_bytes())
    return digest.hexdigest()[:16]


def _matches(verdict: str, expected: str) -> bool:
    return verdict == expected or (verdict == "refused" and expected.startswith("fail"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--python", default=os.environ.get("FPLORA_MUSUBI_PYTHON", "/tmp/fplora-musubi-venv/bin/python")
    )
    parser.add_argument("--state", type=Path, default=Path("/tmp/fplora-rehearse-matrix-data/state.json"))
    parser.add_argument("--only", default="", help="comma-separated row ids")
    parser.add_argument("--rerun", action="store_true", help="run the chosen rows even when recorded")
    parser.add_argument("--write", action="store_true", help="record the matrix in benchmarks/results/")
    parser.add_argument(
        "--src",
        type=Path,
        default=REPO / "src",
        help="the fplora source to run (e.g. an unpacked older commit, for the verdicts before a fix)",
    )
    parser.add_argument(
        "--time-limit", type=int, default=150, help="seconds a stage may take (a hang costs this much)"
    )
    parser.add_argument("--before", action="store_true", help="record the verdicts as those before the fixes")
    options = parser.parse_args()
    only = {s for s in options.only.split(",") if s}
    rows = [r for r in ROWS if not only or r.id in only]
    state: dict[str, dict[str, object]] = {}
    if options.state.exists():
        state = json.loads(options.state.read_text(encoding="utf-8"))
    root = options.state.parent / "project"
    configs = _project(root)
    env = {**os.environ, "FPLORA_MUSUBI_PYTHON": options.python, "HF_HUB_OFFLINE": "1"}
    env["FPLORA_MODELS_DIR"] = str(root / "no-models")
    env["PYTHONPATH"] = str(options.src.resolve())
    code = _code_key(options.src)
    field = "before" if options.before else "verdict"
    for row in rows:
        text = f"extends: example.yaml\n{row.spec}\n"
        key = hashlib.sha256(f"{text}{code}".encode()).hexdigest()[:16]
        recorded = state.setdefault(row.id, {})
        if not options.rerun and recorded.get(f"{field}_key") == key:
            continue
        spec = configs / f"{row.id}.yaml"
        spec.write_text(text, encoding="utf-8")
        check_code, output, _ = _fplora(["check", str(spec), "--skip-models"], root, env)
        seconds = 0.0
        if check_code != 0:
            verdict = "refused"
        else:
            limit = ["--time-limit", str(options.time_limit)]
            rcode, output, seconds = _fplora(["rehearse", str(spec), "--force", *limit], root, env)
            verdict = _verdict(rcode, output)
        (options.state.parent / f"{row.id}-{field}.log").write_text(output, encoding="utf-8")
        recorded.update(
            {"spec": row.spec, "expected": row.expected, "check": "ok" if check_code == 0 else "refused"}
        )
        recorded.update({field: verdict, f"{field}_key": key, f"{field}_error": _first_error(output)})
        recorded[f"{field}_seconds"] = round(seconds, 1)
        options.state.parent.mkdir(parents=True, exist_ok=True)
        options.state.write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")
        print(f"{row.id}: check {recorded['check']}, {verdict} ({seconds:.0f} s)", flush=True)
    print()
    print(f"{'setting':20} {'check':8} {'before':18} {'now':18} {'expected':18} match  first error line")
    mismatches = 0
    for row in ROWS:
        got = state.get(row.id, {})
        if "verdict" not in got and "before" not in got:
            continue
        verdict = str(got.get("verdict", "-"))
        match = _matches(verdict, row.expected)
        mismatches += "verdict" in got and not match
        error = got.get("verdict_error" if "verdict" in got else "before_error") or ""
        print(
            f"{row.id:20} {got['check']!s:8} {got.get('before', '-')!s:18} {verdict:18} {row.expected:18}"
            f" {'yes' if match else 'NO':5}  {error}"
        )
    print(f"\n{mismatches} mismatch(es) of {sum('verdict' in state.get(r.id, {}) for r in ROWS)} rows")
    if options.write:
        _write(options, state)
    return 0


def _write(options: argparse.Namespace, state: dict[str, dict[str, object]]) -> None:
    sys.path.insert(0, str(REPO / "src"))
    from harness.provenance import measured_on

    rows = []
    for row in ROWS:
        got = state.get(row.id)
        if got is not None:
            fields = {k: v for k, v in got.items() if not k.endswith("_key")}
            match = _matches(str(got.get("verdict")), row.expected)
            rows.append({"id": row.id, "why": row.why, **fields, "expected": row.expected, "match": match})
    result = {
        **measured_on(options.python),
        "rows": rows,
    }
    out = REPO / "benchmarks" / "results" / f"rehearse-matrix-data-{datetime.now(UTC):%Y%m%d}.json"
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"written {out.relative_to(REPO)}")


if __name__ == "__main__":
    sys.exit(main())
