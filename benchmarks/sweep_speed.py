#!/usr/bin/env python3
"""Sweep vs separate generate processes on a GPU: the 3 x 3 grid (3 checkpoints x 3 multipliers, 2
prompts), once in fplora's sweep worker and once as nine `fpack_generate_video` processes, same
prompts and seeds, side by side. Reports the speed ratio and, per cell and prompt, the largest pixel
difference between the two images (0-255; the goal is bf16 noise, and every cell must differ from
the other multipliers' so that the LoRA is known to be applied).

Built on benchmarks/harness/ as gpu_e2e.py is (same harness, same random full-size weights, same 600-s command
rules, same `STAGE?` skipping and --deadline). Stdlib only, like it. Run from the repo root with
$OUT set, carrying `.whl .whl3 .musubi .hf` (benchmarks/gpu_setup/prepare.sh; no video is written,
so `.whl2` stays behind: the install stage puts a PyAV stub in its place). On one `nvidia-h200`, three calls:

    python3 benchmarks/sweep_speed.py --deadline 560 install? weights? data? loras? sweep? separate
    python3 benchmarks/sweep_speed.py --deadline 560 install? weights? data? loras? sweep? separate
    python3 benchmarks/sweep_speed.py --deadline 560 install? weights? data? loras? sweep? separate \
        again compare swapcell?

`separate` makes the cells not made yet, one `fplora infer --no-sweep` process each (~100 s), and
starts none that cannot end before the deadline, so the nine spread over the calls; `compare` needs
all eighteen folders. Stages:

  loras     three LoRA files with random bf16 weights (rank 32, every Linear of the DiT blocks, as
            networks.lora_framepack names them) at runs/fpe2e-bench-step0000000{1,2,3}.safetensors,
            written by the musubi-tuner Python (torch); no training needed, and unlike a 3-step LoRA
            their effect is large enough to see
  sweep     fplora infer bench-sweep.yaml --lora step1..step3 --multiplier 1.0 1.2 1.4 --sweep
  separate  fplora infer bench-sep.yaml --lora stepN --multiplier M --no-sweep, per cell
  again     the first cell once more in a separate process (bench-again.yaml): the noise floor, what
            two runs of the same script on the same GPU differ by
  swapcell  one cell with two prompts and 20 swapped blocks (bench-swap.yaml): fplora must run it in
            the worker (musubi-tuner's --from_file mode would make only the first prompt)
  compare   the ratio, pixel differences, the sweep's per-cell seconds from its events; writes
            $OUT/sweep-speed.json and copies the contact sheets to $OUT

Without a GPU: `--local-fake` runs every stage against tests/fakes/fake_python (which runs the real
worker file with a stand-in backend), in seconds: it tests this script and the plumbing, not speed.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import asserts, driver, proc, specs, state

OUTPUT_NAME = "fpe2e-bench"
STEPS = (1, 2, 3)
MULTIPLIERS = ("1.0", "1.2", "1.4")
RANK, ALPHA = 32, 16
SEPARATE_CELL_S = 110  # one generate process on an H100: ~96-101 s measured, plus fplora
IMAGE = re.compile(r"^\d{8}-\d{6}-\d{3}_(\d+)__000\.png$")

LORA_SCRIPT = r"""
import json, struct, sys, torch
from safetensors.torch import save_file
models, out = sys.argv[1], sys.argv[2]
rank, alpha, seed = int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
from pathlib import Path
dit = Path(models, "diffusion_models/FramePackI2V_HY")
shards = sorted(dit.glob("diffusion_pytorch_model-*.safetensors"))
shapes = {}
for shard in shards:
    with open(shard, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    for key, meta in header.items():
        if key == "__metadata__" or not key.endswith(".weight") or len(meta["shape"]) != 2:
            continue
        if key.startswith(("transformer_blocks.", "single_transformer_blocks.")):
            shapes[key] = meta["shape"]
g = torch.Generator().manual_seed(seed)
tensors = {}
for key, (rows, cols) in sorted(shapes.items()):
    name = "lora_unet_" + key[: -len(".weight")].replace(".", "_")
    down = torch.randn(rank, cols, generator=g) / cols**0.5
    tensors[name + ".lora_down.weight"] = down.to(torch.bfloat16)
    tensors[name + ".lora_up.weight"] = (torch.randn(rows, rank, generator=g) * 0.02).to(torch.bfloat16)
    tensors[name + ".alpha"] = torch.tensor(alpha)
save_file(tensors, out, metadata={"ss_network_dim": str(rank), "ss_network_alpha": str(alpha)})
print(f"LORA {out} {len(shapes)} modules")
"""


def bench() -> Path:
    return state.CFG.root / "bench"


def lora_path(step: int) -> Path:
    return state.CFG.runs / f"{OUTPUT_NAME}-step{step:08d}.safetensors"


def spec_texts() -> dict[str, str]:
    texts = {}
    for version, save in (("bench-sweep", "sweep"), ("bench-sep", "separate"), ("bench-again", "again")):
        texts[version] = (
            f"# benchmarks/sweep_speed.py: the 3 x 3 grid, made by the {save} path.\n"
            "extends: ../../base.yaml\n"
            f"train:\n  output_name: {OUTPUT_NAME}\n"
            f"infer:\n  save_dir: {bench() / save}\n"
            # base.yaml swaps 20 blocks (the memo's training setting, inherited by infer); the H200
            # holds the fp8 DiT, and musubi-tuner's --from_file mode loses every prompt after the
            # first when blocks are swapped (the first GPU run of this script)
            "  blocks_to_swap: 0\n"
        )
    texts["bench-swap"] = (
        "# benchmarks/sweep_speed.py: one cell, two prompts, 20 swapped blocks (inherited from base.yaml):\n"
        "# fplora infer must route it through the worker, which loads the DiT again for each prompt.\n"
        "extends: ../../base.yaml\n"
        f"train:\n  output_name: {OUTPUT_NAME}\n"
        f"infer:\n  save_dir: {bench() / 'swap'}\n"
    )
    return texts


def spec_path(version: str) -> Path:
    """configs/bench/<version>/<version>.yaml: the four specs share one run (the LoRA files of
    `loras`) on purpose, and fplora refuses two specs in one folder that name the same run."""
    return state.CFG.configs / "bench" / version / f"{version}.yaml"


def write_specs() -> None:
    specs.write_specs()
    for version, text in spec_texts().items():
        specs.write_if_changed(spec_path(version), text)


def folder(mode: str, step: int, multiplier: str) -> Path:
    version = {"sweep": "bench-sweep", "separate": "bench-sep", "again": "bench-again", "swap": "bench-swap"}[
        mode
    ]
    return bench() / mode / f"{version}-step{step:08d}-lm{float(multiplier)}"


def images(path: Path) -> dict[int, Path]:
    """seed → newest image in a cell's folder."""
    found: dict[int, Path] = {}
    for png in sorted(path.glob("*__000.png")) if path.is_dir() else []:
        match = IMAGE.match(png.name)
        if match:
            found[int(match[1])] = png
    return found


def cell_made(mode: str, step: int, multiplier: str) -> bool:
    return len(images(folder(mode, step, multiplier))) >= state.INFER_PROMPTS


def _marks_file(path: str) -> Path:
    return state.CFG.marks / f"sweep-speed-{path}.json"


def marks() -> dict[str, Any]:
    """Both paths' timings. Each path keeps its own file, so that the sweep and the separate cells
    can run at once on two GPUs (benchmarks/gpu_pair.sh) without one overwriting the other's."""
    sweep, separate = _marks_file("sweep"), _marks_file("separate")
    data: dict[str, Any] = json.loads(sweep.read_text()) if sweep.is_file() else {}
    data["separate_s"] = json.loads(separate.read_text()) if separate.is_file() else {}
    return data


def save_sweep_s(seconds: float) -> None:
    _marks_file("sweep").write_text(json.dumps({"sweep_s": seconds}))


def save_separate_s(separate: dict[str, float]) -> None:
    _marks_file("separate").write_text(json.dumps(separate, indent=1))


def stage_loras(stage: dict[str, Any], checks: asserts.Checks) -> None:
    write_specs()
    state.CFG.runs.mkdir(parents=True, exist_ok=True)
    for step in STEPS:
        out = lora_path(step)
        if state.CFG.local:
            sys.path.insert(0, str(state.REPO / "tests"))
            from fakes import fake

            out.write_bytes(fake.safetensors_bytes(save_precision="bf16", step=step))
            continue
        argv = [
            sys.executable,
            "-c",
            LORA_SCRIPT,
            str(state.CFG.models),
            str(out),
            str(RANK),
            str(ALPHA),
            str(step),
        ]
        checks.rc(proc.run(stage, argv), what=f"random LoRA step{step}")
    checks.ok(all(lora_path(s).is_file() for s in STEPS), "three LoRA files")


def _args(spec: str, *more: str) -> list[str]:
    return ["infer", str(spec_path(spec)), *more]


def stage_sweep(stage: dict[str, Any], checks: asserts.Checks) -> None:
    write_specs()
    args = _args("bench-sweep", "--lora", "step1..step3", "--sweep", "--redo")
    for m in MULTIPLIERS:
        args += ["--multiplier", m]
    ran = proc.fplora(stage, *args)
    checks.rc(ran, what="fplora infer --sweep (3 x 3)")
    save_sweep_s(round(ran.t1 - ran.t0, 1))
    made = [(s, m) for s in STEPS for m in MULTIPLIERS if cell_made("sweep", s, m)]
    checks.ok(len(made) == 9, "the sweep made all nine cells", made)


def stage_separate(stage: dict[str, Any], checks: asserts.Checks) -> None:
    write_specs()
    separate = marks()["separate_s"]
    for step in STEPS:
        for m in MULTIPLIERS:
            key = f"step{step}-lm{m}"
            if key in separate and cell_made("separate", step, m):
                continue
            if state.CFG.left() - state.PACK_MARGIN < SEPARATE_CELL_S and not state.CFG.local:
                print(f"=== separate: {key} left for the next call (deadline)", flush=True)
                return
            ran = proc.fplora(
                stage, *_args("bench-sep", "--lora", f"step{step}", "--multiplier", m, "--no-sweep")
            )
            checks.rc(ran, what=f"fplora infer --no-sweep {key}")
            separate[key] = round(ran.t1 - ran.t0, 1)
            save_separate_s(separate)


def stage_again(stage: dict[str, Any], checks: asserts.Checks) -> None:
    """The noise floor: the first cell made by a second separate process. Two runs of the same
    script on the same GPU need not agree to the bit (kernel choices, bf16 accumulation order), and
    random full-size weights amplify any difference; the sweep is judged against this."""
    write_specs()
    step, m = STEPS[0], MULTIPLIERS[0]
    ran = proc.fplora(stage, *_args("bench-again", "--lora", f"step{step}", "--multiplier", m, "--no-sweep"))
    checks.rc(ran, what=f"fplora infer --no-sweep step{step}-lm{m} again")
    checks.ok(cell_made("again", step, m), "the second separate run made both images")


def stage_swapcell(stage: dict[str, Any], checks: asserts.Checks) -> None:
    """musubi-tuner's --from_file mode makes only the first prompt when DiT blocks are swapped (the
    first GPU run); `fplora infer` sends such a cell through the worker, which reloads the DiT per
    prompt. One cell, both prompts, 20 blocks swapped: both images must be made."""
    write_specs()
    step, m = STEPS[0], MULTIPLIERS[0]
    ran = proc.fplora(stage, *_args("bench-swap", "--lora", f"step{step}", "--multiplier", m))
    checks.rc(ran, what="fplora infer, one cell, two prompts, 20 blocks swapped")
    checks.ok("in one process" in ran.text, "it ran in the worker", ran.text[-300:])
    checks.ok(cell_made("swap", step, m), "both prompts made with swapped blocks")
    stage["timings"] = {"wall_s": round(ran.t1 - ran.t0, 1)}


def _pixels(path: Path) -> tuple[tuple[int, int], list[int]]:
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
        return rgb.size, list(rgb.tobytes())


def difference(a: Path, b: Path) -> dict[str, float] | None:
    """Largest and mean per-channel difference (0-255), and the share of channels that differ by
    more than 4; None when the sizes differ."""
    size_a, pa = _pixels(a)
    size_b, pb = _pixels(b)
    if size_a != size_b:
        return None
    diffs = [abs(x - y) for x, y in zip(pa, pb, strict=True)]
    if not diffs:
        return {"max": 0, "mean": 0.0, "over_4": 0.0}
    return {
        "max": max(diffs),
        "mean": round(sum(diffs) / len(diffs), 3),
        "over_4": round(sum(d > 4 for d in diffs) / len(diffs), 4),
    }


def sweep_events() -> dict[str, Any]:
    """The sweep's own timings, from the event lines of its newest log."""
    logs = sorted((bench() / "sweep" / "bench-sweep-sweeps").glob("*.log"))
    found: dict[str, Any] = {"cells_s": []}
    if not logs:
        return found
    prefix = "fplora-sweep-event "
    for line in logs[-1].read_text(errors="replace").splitlines():
        if prefix in line:
            event = json.loads(line[line.index(prefix) + len(prefix) :])
            if event["event"] == "ready":
                found["load_and_encode_s"] = event["seconds"]
            elif event["event"] in ("cell_done", "cell_failed"):
                found["cells_s"].append(event["seconds"])
            elif event["event"] == "finished":
                found["worker_s"] = event["seconds"]
    return found


def stage_compare(stage: dict[str, Any], checks: asserts.Checks) -> None:
    data = marks()
    separate = data.get("separate_s", {})
    ok = checks.ok(len(separate) == 9 and "sweep_s" in data, "both paths timed", sorted(separate))
    cells: dict[str, Any] = {}
    for step in STEPS:
        for m in MULTIPLIERS:
            a, b = images(folder("sweep", step, m)), images(folder("separate", step, m))
            diffs = {str(seed): difference(a[seed], b[seed]) if seed in b else None for seed in sorted(a)}
            cells[f"step{step}-lm{m}"] = diffs
            checks.ok(sorted(a) == sorted(b) == [42, 43], f"step{step} lm{m}: both made seeds 42 and 43")
    effect: dict[str, Any] = {}  # the LoRA is applied: another multiplier gives another image
    for step in STEPS:
        a, b = images(folder("sweep", step, MULTIPLIERS[0])), images(folder("sweep", step, MULTIPLIERS[-1]))
        if 42 in a and 42 in b:
            moved = effect[f"step{step}"] = difference(a[42], b[42])
            label = f"step{step}: lm{MULTIPLIERS[0]} and lm{MULTIPLIERS[-1]} differ"
            checks.ok(bool(moved and moved["max"]), label, moved)
    result: dict[str, Any] = {
        "cells_pixel_difference": cells,
        # the same seed at the first and last multiplier inside the sweep (which encodes the images
        # once): the LoRA's own effect, to set beside the pixel differences and the noise floor
        "multiplier_effect": effect,
        "sweep": sweep_events(),
    }
    if ok:
        total = sum(separate.values())
        result.update(
            sweep_s=data["sweep_s"], separate_s=separate, separate_total_s=round(total, 1),
            speed_ratio=round(total / data["sweep_s"], 2),
        )  # fmt: skip
        checks.ok(result["speed_ratio"] >= 3.0, "the sweep is at least 3x faster", result["speed_ratio"])
    worst = [d["max"] for diffs in cells.values() for d in diffs.values() if d is not None]
    result["largest_pixel_difference"] = max(worst) if worst else None
    first, again = (
        images(folder("separate", STEPS[0], MULTIPLIERS[0])),
        images(folder("again", STEPS[0], MULTIPLIERS[0])),
    )
    result["noise_floor"] = {  # separate against separate: what "equal" can mean on this GPU
        str(seed): difference(first[seed], again[seed]) for seed in sorted(first) if seed in again
    } or None
    stage["result"] = result
    print("SWEEP_SPEED " + json.dumps(result), flush=True)
    (state.CFG.out / "sweep-speed.json").write_text(json.dumps(result, indent=1))
    for log in sorted((bench() / "sweep" / "bench-sweep-sweeps").glob("*.log"))[-1:]:
        shutil.copy(log, state.CFG.logs / "sweep-worker.log")  # into logs.tgz
    sheets = bench() / "sweep" / "bench-sweep-sheet"
    for png in sorted(sheets.glob("prompt*.png")):
        shutil.copy(png, state.CFG.out / f"sheet-{png.name}")


STAGES = {
    "loras": state.Stage(stage_loras, 40, lambda: all(lora_path(s).is_file() for s in STEPS)),
    "sweep": state.Stage(
        stage_sweep,
        300,
        lambda: all(cell_made("sweep", s, m) for s in STEPS for m in MULTIPLIERS) and "sweep_s" in marks(),
    ),
    "separate": state.Stage(stage_separate, SEPARATE_CELL_S, lambda: len(marks()["separate_s"]) == 9),
    "again": state.Stage(stage_again, SEPARATE_CELL_S, lambda: cell_made("again", STEPS[0], MULTIPLIERS[0])),
    "swapcell": state.Stage(stage_swapcell, 180, lambda: cell_made("swap", STEPS[0], MULTIPLIERS[0])),
    "compare": state.Stage(stage_compare, 10),
}


def main() -> int:
    return driver.run_extension(
        __doc__ or "",
        stages=STAGES,
        local_stages=[
            "install",
            "weights",
            "data",
            "loras",
            "sweep",
            "separate",
            "again",
            "swapcell",
            "compare",
        ],
        local_root="/tmp/fpe2e-sweep-local",
        local_records=4,
    )


if __name__ == "__main__":
    sys.exit(main())
