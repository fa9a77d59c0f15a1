"""No GPU: stand-in model files and a tiny dataset (--local-dry), and a stand-in for the musubi-tuner
Python (--local-fake) that writes the files musubi-tuner 0.3.4 writes, under its names, in seconds."""

from __future__ import annotations

import json
import math
import os
import shlex
import struct
import sys
import time
import zlib
from pathlib import Path
from typing import Any

from harness import state
from harness.state import FAKE_SAMPLE_S, FAKE_STEP_S, HEIGHT, MODEL_FILES, WIDTH


def write_png(path: Path, width: int, height: int, rgb: tuple[int, int, int]) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    raw = (b"\x00" + bytes(rgb) * width) * height
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 1))
    path.write_bytes(data + chunk(b"IEND", b""))


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]], meta: dict[str, str]) -> None:
    sizes = {"BF16": 2, "F16": 2, "F32": 4}
    header: dict[str, Any] = {"__metadata__": meta}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = sizes[dtype] * math.prod(shape)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + bytes(offset))


def local_models() -> None:
    for name in MODEL_FILES:
        path = state.CFG.models / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file():
            write_safetensors(path, {}, {"stand_in": "gpu_e2e --local"})  # check reads headers
    (state.CFG.models / "weights.json").write_text("{}\n")


def local_dataset() -> None:
    images = state.CFG.data / "images"
    width, height = state.CFG.width, state.CFG.height
    lines = []
    for i in range(state.CFG.records):
        record = {"image_path": str(images / f"img{i:03d}.png")}
        write_png(Path(record["image_path"]), width, height, (40 * i % 256, 90, 160))
        for c in range(state.CFG.controls):
            control = state.CFG.data / "control" / f"img{i:03d}_{c}.png"
            write_png(control, width, height, (90, 40 * i % 256, 60 * c))
            record[f"control_path_{c}"] = str(control)
        record["caption"] = (
            f"a synthetic test card number {i}, the character changes clothes, plain background"
        )
        lines.append(json.dumps(record))
    state.CFG.jsonl.write_text("\n".join(lines) + "\n")


def write_fake_python() -> None:
    script = state.CFG.root / "bin" / "fake-python"
    script.parent.mkdir(parents=True, exist_ok=True)
    here = str(Path(__file__).resolve().parents[1])  # benchmarks/, which holds this package
    code = f"import sys; sys.path.insert(0, {here!r}); from harness.fake import fake_python; "
    code += "sys.exit(fake_python(sys.argv[1:]))"
    script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -c {shlex.quote(code)} "$@"\n')
    script.chmod(0o755)


def _options(args: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    key = None
    for arg in args:
        if arg.startswith("--"):
            key = arg[2:].split("=", 1)[0]
            out[key] = [arg.split("=", 1)[1]] if "=" in arg else []
        elif key is not None:
            out[key].append(arg)
    return out


PROFILE_PROOF = Path(__file__).resolve().parents[1] / "results" / "2026-12-06-cpu-profile-raw.json"


def _fake_profile(steps: int) -> None:
    """What benchmarks/profile_hook/sitecustomize.py writes when its environment asks for a profile
    (preset_speed.py's `profile-*` stages): the CPU proof's real export, as the profiled step's."""
    folder, step = os.environ.get("FPLORA_PROFILE_OUT"), int(os.environ.get("FPLORA_PROFILE_STEP") or 3)
    if not folder or steps < step:
        return
    raw = json.loads(PROFILE_PROOF.read_text())
    raw.update(step=step, trace={"written": False, "why": "--local-fake"})
    # the hook's sitecustomize ran in this process: the environment reached it through fplora
    raw["fake"] = {"hook_installed": "fplora_profile" in sys.modules}
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / "profile-raw.json").write_text(json.dumps(raw))


def fake_python(argv: list[str]) -> int:
    """A stand-in for the musubi-tuner Python: `-c` (fplora's import probe) and
    `-m accelerate.commands.launch [opts] -m musubi_tuner.<script> [args]`, writing outputs named
    and shaped as musubi-tuner 0.3.4 writes them (see shared/musubi-tuner/README.md)."""
    import tomllib  # the fake runs here, on Python >= 3.11

    if argv[:1] == ["-c"]:
        return 0
    if argv[:2] != ["-m", "accelerate.commands.launch"] or "-m" not in argv[2:]:
        print(f"fake-python: unexpected {argv}", file=sys.stderr)
        return 2
    rest = argv[2:]
    cut = rest.index("-m")
    accel, module, args = _options(rest[:cut]), rest[cut + 1], _options(rest[cut + 2 :])
    processes = int(accel.get("num_processes", ["1"])[0])
    if processes > 1 and "multi_gpu" not in accel:
        print("fake-python: several processes without --multi_gpu", file=sys.stderr)
        return 2

    def one(key: str, default: Any = None) -> Any:
        return args[key][0] if args.get(key) else default

    def log(text: str) -> None:
        print(f"INFO:fake:{text}", flush=True)

    if module in ("musubi_tuner.fpack_cache_latents", "musubi_tuner.fpack_cache_text_encoder_outputs"):
        dataset = tomllib.loads(Path(one("dataset_config")).read_text())
        log(f"Load dataset config from {one('dataset_config')}")
        latents = module.endswith("latents")
        if latents and "one_frame" not in args:
            print("fake-python: one-frame caching needs --one_frame", file=sys.stderr)
            return 2
        log("Encoding dataset [0]" if latents else "Encoding with Text Encoders")
        for entry in dataset["datasets"]:
            width, height = entry.get("resolution", dataset["general"]["resolution"])
            cache = Path(entry["cache_directory"])
            records = [json.loads(x) for x in Path(entry["image_jsonl_file"]).read_text().splitlines() if x]
            for n, rec in enumerate(records, 1):
                stem = Path(rec["image_path"]).stem
                name = (
                    f"{stem}_{width:04d}x{height:04d}_fp.safetensors"
                    if latents
                    else f"{stem}_fp_te.safetensors"
                )
                if not ("skip_existing" in args and (cache / name).exists()):  # as musubi-tuner does
                    write_safetensors(cache / name, {"latents": ("BF16", [16, 1, 2, 2])}, {})
                print(f"\r{n}it [00:00, 100.00it/s]", end="", flush=True)
            print(flush=True)
        return 0

    if module == "musubi_tuner.fpack_train_network":
        config = tomllib.loads(Path(one("config_file")).read_text())
        name = one("output_name", config["output_name"])
        steps = int(one("max_train_steps", config["max_train_steps"]))
        out = Path(config["output_dir"])
        resume = one("resume")
        if resume and not Path(resume).is_dir():
            print(f"fake-python: no state {resume}", file=sys.stderr)
            return 1
        if config.get("log_with") in ("tensorboard", "all"):
            if not config.get("logging_dir"):
                print("ValueError: logging_dir is required when log_with is tensorboard", file=sys.stderr)
                return 1
            (Path(config["logging_dir"]) / time.strftime("%Y%m%d%H%M%S")).mkdir(parents=True, exist_ok=True)
        dtype = {"bf16": "BF16", "fp16": "F16"}.get(config.get("save_precision", ""), "F32")
        dim = int(config["network_dim"])
        lora = {}
        for block in range(3):
            key = f"lora_unet_transformer_blocks_{block}_attn_to_q"
            lora[f"{key}.lora_down.weight"] = (dtype, [dim, 64])
            lora[f"{key}.lora_up.weight"] = (dtype, [64, dim])
            lora[f"{key}.alpha"] = ("F32", [])
        meta = {"ss_network_dim": str(dim)}
        sample_dir = out / "sample"
        prompts = config.get("sample_prompts")
        seed = 42

        size = (WIDTH, HEIGHT)
        if prompts and Path(prompts).is_file():  # the first prompt line's --w/--h, as the sampler reads them
            line = next((x for x in Path(prompts).read_text().splitlines() if x and x[0] != "#"), "")
            found = _options(line.split(" "))
            size = (int(found.get("w", [WIDTH])[0]), int(found.get("h", [HEIGHT])[0]))

        def sample(tag: str) -> None:
            time.sleep(FAKE_SAMPLE_S)  # so that a s/step which counted sampling would show it
            stamp = time.strftime("%Y%m%d%H%M%S")
            write_png(sample_dir / f"{name}_{tag}_00_{stamp}_{seed}_000.png", *size, (1, 2, 3))

        def state(folder: Path) -> None:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "optimizer.bin").write_bytes(os.urandom(64))
            (folder / f"random_states_{0}.pkl").write_bytes(os.urandom(16))

        log(f"Loading DiT model from {config['dit']}, device=cpu")
        time.sleep(0.05)
        log(f"Loaded DiT model from {config['dit']}, info=<All keys matched successfully>")
        # musubi-tuner's tqdm bar (smoothing=0): reset when step 1 is done, then per step an update draw,
        # the step's sample and saves, and a set_postfix draw; the rate is n / elapsed since the reset
        bar_t0 = time.time()

        def draw(n: int, post: str = "") -> None:
            elapsed = time.time() - bar_t0
            if n == 0 or elapsed <= 0:
                rate = "?it/s"
            elif elapsed / n >= 1:
                rate = f"{elapsed / n:5.2f}s/it"
            else:
                rate = f"{n / elapsed:5.2f}it/s"
            clock = f"{int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}"
            print(
                f"\rsteps: {100 * n // steps:3d}%|###       | {n}/{steps} [{clock}<00:00, {rate}{post}]",
                end="",
                flush=True,
            )

        draw(0)
        if prompts and config.get("sample_at_first"):
            sample("e000000")
        loss = 0.1
        every = config.get("save_every_n_steps")
        for step in range(1, steps + 1):
            time.sleep(FAKE_STEP_S)
            if step == 1:
                bar_t0 = time.time()
                draw(0)  # tqdm's reset draws 0/N; the update right after it is not drawn (mininterval)
            else:
                draw(step, f", avr_loss={loss:.4g}")
            loss = 0.1 + 0.01 * step
            if every and step % every == 0:
                write_safetensors(out / f"{name}-step{step:08d}.safetensors", lora, meta)
                if config.get("save_state"):
                    state(out / f"{name}-step{step:08d}-state")
            if prompts and config.get("sample_every_n_steps") and step % config["sample_every_n_steps"] == 0:
                sample(f"{step:06d}")
            draw(step, f", avr_loss={loss:.4g}")
        write_safetensors(out / f"{name}.safetensors", lora, meta)
        _fake_profile(steps)
        if config.get("save_state") or config.get("save_state_on_train_end"):
            state(out / f"{name}-state")
        draw(steps, f", avr_loss={loss:.4g}")
        print(flush=True)
        log("model saved.")
        return 0

    if module == "musubi_tuner.fpack_generate_video":
        weights, multipliers = args.get("lora_weight", []), args.get("lora_multiplier", [])
        if len(weights) != len(multipliers) or not all(Path(w).is_file() for w in weights):
            print(
                "fake-python: --lora_weight needs existing files, one --lora_multiplier each", file=sys.stderr
            )
            return 1
        save = Path(one("save_path"))
        save.mkdir(parents=True, exist_ok=True)
        lines = [x.strip() for x in Path(one("from_file")).read_text().splitlines()]
        lines = [x for x in lines if x and not x.startswith("#")]
        log("Loading VAE and Image Encoders for batch image preprocessing...")
        log("Loading DiT model for batch generation...")
        log("Generating latents for all prompts...")
        for i, line in enumerate(lines, 1):
            log(f"Generating latent for prompt {i}/{len(lines)}: {line.split(' --')[0]}")
            opts = _options(line.split(" ", 1)[1].split(" ")) if " " in line else {}
            seed = int(opts.get("d", ["0"])[0])
            width, height = int(opts.get("w", ["256"])[0]), int(opts.get("h", ["256"])[0])
            now = time.time()
            flag = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f"-{int(now * 1000) % 1000:03d}"
            write_safetensors(save / f"{flag}_{seed}_latent.safetensors", {"l": ("BF16", [1])}, {})
            write_png(save / f"{flag}_{seed}__000.png", width, height, (9, 9, 9))
            time.sleep(0.01)
        log("Releasing DiT model from memory...")
        return 0
    print(f"fake-python: unknown module {module}", file=sys.stderr)
    return 2
