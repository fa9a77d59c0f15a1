"""The CPU smoke test's steps, each run by run.sh in the smoke venv (see README.md).

Why: fplora's workers (`fplora/worker/sweep.py`, `fplora/worker/eval.py`) call musubi-tuner's
internals, which no CPU test of fplora imports. A mismatch (a renamed function, an argument
order, a sys.argv assumption) otherwise shows only minutes into a paid GPU call. Here the workers
and musubi-tuner's own scripts run for real, started with the argv that fplora renders, against
the pinned musubi-tuner, with `fplora rehearse`'s stand-in models (`site/sitecustomize.py`).

    python smoke.py STEP --work DIR      STEP: setup, cache, sweep-args, eval, sweep, separate, compare

Each step exits 0 when its check holds and prints why not otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

SMOKE_SPEC = """\
# The CPU smoke test's spec: the repo's example on tiny stand-in models (benchmarks/cpu_smoke).
# No block swap: its forwards move blocks with CUDA streams, which a CPU does not have.
extends: example.yaml
train:
  blocks_to_swap: 0
infer:
  blocks_to_swap: 0
  steps: 3
  prompts:
    - {record: 1, seed: 1}
    - {record: 3, seed: 2}
eval:
  records: [2, 4]
  timesteps: [0.1, 0.5, 0.9]
  noise_seed: 42
"""
LORA_SEEDS = (1, 2)
OUTPUT_TYPE = "latent_images"  # the example spec's infer.output_type


class Failed(Exception):
    """The step's check does not hold."""


def _spec(work: Path) -> Any:
    from fplora.spec import load_spec

    return load_spec(work / "proj" / "configs" / "smoke.yaml")


def _job(work: Path) -> Any:
    from fplora.jobs.context import open_job

    return open_job(_spec(work), dry_run=True)  # renders config.toml, dataset tomls, prompts


def _run(argv: list[str], log: Path) -> int:
    """One child process, started as fplora starts it, its output into `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as out:
        out.write("$ " + " ".join(argv) + "\n")
        out.flush()
        return subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False).returncode


def _events(log: Path, parse: Any) -> list[dict[str, Any]]:
    """A worker's events in `log`, read by fplora's own parser for that worker's protocol."""
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    return [event for event in map(parse, lines) if event is not None]


def _loras(work: Path) -> list[Path]:
    return [work / "out" / "loras" / f"lora{seed}.safetensors" for seed in LORA_SEEDS]


def _cells(work: Path, kind: str) -> list[dict[str, Any]]:
    """2 LoRAs x the spec's multipliers, as fplora's sweep plan lists cells."""
    cells = []
    for lora in _loras(work):
        for multiplier in _spec(work).infer.multipliers:
            index = len(cells)
            folder = work / "out" / kind / f"c{index}"
            cells.append(
                {
                    "id": f"c{index}",
                    "lora": str(lora),
                    "multiplier": multiplier,
                    "save_path": str(folder),
                    "label": lora.stem,
                }
            )
    return cells


def setup(work: Path) -> None:
    """The project (the repo's example spec and dataset), the tiny DiT's weight shards and VAE
    weights, empty stand-in files for the other models (fplora only checks that they exist) and two
    LoRAs of the run's network module on the tiny DiT with non-zero up-projections (a fresh LoRA
    changes nothing)."""
    import torch
    from rehearse_standins import tiny_dit, write_dit, write_vae

    proj = work / "proj"
    shutil.rmtree(proj, ignore_errors=True)
    (proj / "configs").mkdir(parents=True)
    for name in ("base.yaml", "example.yaml"):
        shutil.copy(REPO / "configs" / name, proj / "configs" / name)
    shutil.copytree(REPO / "datasets" / "example", proj / "datasets" / "example")
    (proj / "configs" / "smoke.yaml").write_text(SMOKE_SPEC, encoding="utf-8")

    models = Path(os.environ["FPLORA_MODELS_DIR"])
    shutil.rmtree(models, ignore_errors=True)
    spec = _spec(work)
    dit = Path(spec.models.dit)
    dit.parent.mkdir(parents=True)
    shards = [str(dit).replace("00001-of-", f"{i:05d}-of-") for i in (1, 2, 3)]
    write_dit(shards)
    Path(spec.models.vae).parent.mkdir(parents=True, exist_ok=True)
    write_vae(str(spec.models.vae))
    for other in (
        spec.models.text_encoder1,
        spec.models.text_encoder2,
        spec.models.image_encoder,
    ):
        Path(other).parent.mkdir(parents=True, exist_ok=True)
        Path(other).write_bytes(b"")

    import importlib

    network = spec.train.network
    module = importlib.import_module("musubi_tuner." + network.module)
    for seed, path in zip(LORA_SEEDS, _loras(work), strict=True):
        model = tiny_dit()
        torch.manual_seed(seed)
        net = module.create_arch_network(
            1.0, network.dim, network.alpha, None, None, model, neuron_dropout=None
        )
        net.apply_to(None, model, apply_text_encoder=False, apply_unet=True)
        with torch.no_grad():
            for name, p in net.named_parameters():
                if "lora_up" in name:
                    p.normal_(0, 0.05)
        path.parent.mkdir(parents=True, exist_ok=True)
        net.save_weights(str(path), torch.bfloat16, {"ss_network_dim": str(network.dim)})
    _job(work)
    print(f"project {proj}, models {models}, LoRAs {[p.name for p in _loras(work)]}")


def cache(work: Path) -> None:
    """fplora's two cache commands, as rendered, through accelerate: musubi-tuner's cache scripts
    fill the training and evaluation caches with the stand-ins' outputs."""
    from fplora.render import commands

    job, python = _job(work), sys.executable
    paths = job.plan.paths
    for argv in (
        commands.cache_latents(job.plan.spec, paths, python),
        commands.cache_text_encoder(job.plan.spec, paths, python),
    ):
        if _run(argv, work / "logs" / "cache.log") != 0:
            raise Failed(f"{argv[argv.index('-m', 3) + 1]} failed")
    from fplora.musubi.names import text_encoder_cache_stem

    files = sorted(p.name for p in paths.dir.rglob("cache/**/*.safetensors"))
    latents = [n for n in files if text_encoder_cache_stem(n) is None]
    if not latents or len(latents) == len(files):
        raise Failed(f"expected latent and text-encoder caches, found {files}")
    print(f"{len(latents)} latent and {len(files) - len(latents)} text-encoder cache files")


def sweep_args(work: Path) -> None:
    """Without running a model: the sweep worker's per-cell options equal those generate's own
    parser gives a separate run of that cell, and every musubi-tuner function the worker calls
    exists and takes the arguments the worker passes."""
    import torch
    from musubi_tuner import fpack_generate_video as gv

    from fplora.render import commands
    from fplora.worker import sweep as worker

    job = _job(work)
    gargs = commands.sweep_generate_args(job.plan.spec, job.plan.paths)
    plan = worker.Plan(gargs, [worker.Cell(**c) for c in _cells(work, "sweep")])
    backend = worker.MusubiBackend()
    backend.calls, backend.torch = worker.common.musubi_calls(), torch

    def parse(argv: list[str]) -> Any:
        saved = sys.argv
        sys.argv = ["fpack_generate_video", *argv]
        try:
            return gv.parse_args()
        finally:
            sys.argv = saved

    args = parse(worker.prepare_args(plan))  # what prepare() parses, line for line
    args.device = torch.device("cpu")
    with open(args.from_file, encoding="utf-8") as handle:
        backend.prompts = gv.preprocess_prompts_for_batch(handle.readlines(), args)
    backend.args = args
    problems = []
    for cell in plan.cells:
        separate = parse(
            [
                *gargs,
                "--lora_weight",
                cell.lora,
                "--lora_multiplier",
                str(cell.multiplier),
                "--save_path",
                cell.save_path,
            ]
        )
        separate.device = args.device
        for got, ref in zip(
            backend._cell_args(cell), [gv.apply_overrides(separate, p) for p in backend.prompts], strict=True
        ):
            mine, theirs = vars(got), vars(ref)
            diff = {k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k)}
            if diff:
                problems.append(f"cell {cell.id}: options differ from a separate run: {sorted(diff)}")
    # every musubi-tuner call the workers make, against the pinned commit's parameters
    problems += backend.calls.check()
    if problems:
        raise Failed("; ".join(problems))
    cells, prompts = len(plan.cells), len(backend.prompts)
    calls = len(backend.calls.CALLS)
    print(f"{cells} cells x {prompts} prompts: options as separate runs; {calls} musubi-tuner calls fit")


def _score(work: Path, dataset_config: Path, name: str, compile_dit: bool = False) -> dict[str, float]:
    """The evaluation worker through `accelerate launch`, with fplora's argv and plan (untrained and
    the two LoRAs, every noise level) on `dataset_config`: each checkpoint's loss, by label."""
    from fplora.protocol import eval as eval_protocol
    from fplora.render import commands
    from fplora.runs import evaluation

    job = _job(work)
    spec, paths = job.plan.spec, job.plan.paths
    checkpoints = [{"id": "k0", "label": evaluation.UNTRAINED, "lora": None}] + [
        {"id": f"k{i}", "label": lora.stem, "lora": str(lora)} for i, lora in enumerate(_loras(work), 1)
    ]
    plan = {
        "protocol": eval_protocol.PROTOCOL,
        "config_file": str(paths.config),
        "dataset_config": str(dataset_config),
        "timesteps": list(spec.eval.timesteps),
        "noise_seed": spec.eval.noise_seed,
        "compile": compile_dit,
        "checkpoints": checkpoints,
    }
    plan_file = work / "out" / f"{name}-plan.json"
    plan_file.write_text(json.dumps(plan, indent=1) + "\n", encoding="utf-8")
    log = work / "logs" / f"{name}.log"
    log.unlink(missing_ok=True)
    code = _run(commands.eval_worker(spec, sys.executable, plan_file), log)
    events = _events(log, eval_protocol.parse_event)
    done = {e["id"]: e["loss"] for e in events if e["event"] == "checkpoint_done"}
    failed = [e["error"] for e in events if e["event"] in ("checkpoint_failed", "error")]
    if code != 0 or failed or len(done) != len(checkpoints):
        raise Failed(f"exit {code}, scored {sorted(done)}, errors {failed}")
    return done


def eval_(work: Path) -> None:
    """The evaluation worker as `fplora eval` starts it: the untrained network and two LoRAs are
    scored at every noise level, and the LoRAs change the loss."""
    done = _score(work, _job(work).plan.paths.eval_dataset, "eval")
    if len(set(done.values())) != len(done):
        raise Failed(f"a LoRA did not change the loss: {done}")
    (work / "out" / "eval-losses.json").write_text(json.dumps(done), encoding="utf-8")
    print("losses " + ", ".join(f"{k} {v:.5f}" for k, v in done.items()))


def _apart_from_eval(work: Path, done: dict[str, float]) -> tuple[float, dict[str, float]]:
    """The largest relative distance of `done` from `eval`'s losses, and those losses."""
    single = json.loads((work / "out" / "eval-losses.json").read_text(encoding="utf-8"))
    return max(abs(done[k] - single[k]) / abs(single[k]) for k in single), single


def eval_batched(work: Path) -> None:
    """The same evaluation with every held-out record in one forward pass: a record's noise is its own
    (drawn per record, in order), so the losses are the one-at-a-time ones within rounding."""
    import tomllib

    import tomli_w

    source = _job(work).plan.paths.eval_dataset
    config = tomllib.loads(source.read_text(encoding="utf-8"))
    records = len(_job(work).plan.spec.eval.records or [])
    config["general"]["batch_size"] = records
    for dataset in config.get("datasets", []):
        dataset.pop("batch_size", None)
    batched = work / "out" / "eval-dataset-batched.toml"
    batched.write_text(tomli_w.dumps(config), encoding="utf-8")
    done = _score(work, batched, "eval-batched")
    worst, single = _apart_from_eval(work, done)
    if worst > 1e-3:
        raise Failed(f"batch {records} {done} against one at a time {single}: {worst:.2e} apart")
    print(f"batch {records}: every loss within {worst:.1e} of one record at a time")


def eval_compiled(work: Path) -> None:
    """The evaluation with the DiT's blocks compiled (torch.compile's CPU backend here): the same
    losses as `eval` within rounding, and compiled once, since the multiplier never changes."""
    done = _score(work, _job(work).plan.paths.eval_dataset, "eval-compiled", compile_dit=True)
    log = (work / "logs" / "eval-compiled.log").read_text(encoding="utf-8", errors="replace")
    if "Compiling DiT model with torch.compile" not in log:
        raise Failed("the worker did not compile the DiT")
    worst, single = _apart_from_eval(work, done)
    if worst > 1e-2:
        raise Failed(f"compiled {done} against eager {single}: {worst:.2e} apart")
    print(f"compiled: every loss within {worst:.1e} of the eager ones")


def _by_prompt(folder: Path) -> dict[str, Path]:
    """A cell's files keyed by kind and prompt seed (`images seed 1`), matched by generate's own
    file-name patterns (`fplora.musubi.names`), so that two runs' files pair up whatever their time
    stamps."""
    from fplora.musubi.names import GENERATE_OUTPUTS

    found = {}
    for kind in GENERATE_OUTPUTS[OUTPUT_TYPE]:
        for path in sorted(folder.glob(kind.glob)):
            match = kind.seed_re.match(path.name)
            if match:
                found[f"{kind.noun} seed {match.group(1)}"] = path
    return found


def _expected(seeds: list[int]) -> list[str]:
    """The keys of `_by_prompt` for a complete cell."""
    from fplora.musubi.names import GENERATE_OUTPUTS

    return [f"{kind.noun} seed {seed}" for kind in GENERATE_OUTPUTS[OUTPUT_TYPE] for seed in seeds]


def _seeds(work: Path) -> list[int]:
    return [p.seed for p in _spec(work).infer.prompts]


def sweep(work: Path) -> None:
    """The sweep worker through `accelerate launch`, with fplora's argv and plan: 2 LoRAs x 2
    multipliers x 2 prompts, every cell writes each prompt's latent and image."""
    from fplora.protocol import sweep as protocol
    from fplora.render import commands

    job = _job(work)
    cells = _cells(work, "sweep")
    shutil.rmtree(work / "out" / "sweep", ignore_errors=True)
    plan = {
        "protocol": protocol.PROTOCOL,
        "generate_args": commands.sweep_generate_args(job.plan.spec, job.plan.paths),
        "cells": cells,
    }
    plan_file = work / "out" / "sweep-plan.json"
    plan_file.write_text(json.dumps(plan, indent=1) + "\n", encoding="utf-8")
    log = work / "logs" / "sweep.log"
    log.unlink(missing_ok=True)
    code = _run(commands.sweep(job.plan.spec, sys.executable, plan_file), log)
    events = _events(log, protocol.parse_event)
    done = [e["cell"] for e in events if e["event"] == "cell_done"]
    failed = [e["error"] for e in events if e["event"] in ("cell_failed", "error")]
    missing = [
        f"{c['id']}/{name}"
        for c in cells
        for name in _expected(_seeds(work))
        if name not in _by_prompt(Path(c["save_path"]))
    ]
    if code != 0 or failed or len(done) != len(cells) or missing:
        raise Failed(f"exit {code}, done {done}, errors {failed}, missing {missing}")
    print(f"{len(cells)} cells, {len(_seeds(work))} prompts each, latents and images written")


def separate(work: Path) -> None:
    """Each sweep cell as its own `fpack_generate_video` run, with fplora's argv for it."""
    from fplora.render import commands

    job = _job(work)
    shutil.rmtree(work / "out" / "separate", ignore_errors=True)
    log = work / "logs" / "separate.log"
    log.unlink(missing_ok=True)
    for cell in _cells(work, "separate"):
        argv = commands.generate(
            job.plan.spec,
            job.plan.paths,
            sys.executable,
            lora=Path(cell["lora"]),
            multiplier=cell["multiplier"],
            save_path=Path(cell["save_path"]),
        )
        if _run(argv, log) != 0:
            raise Failed(f"generate failed for cell {cell['id']}: see {log}")
    print(f"{len(_cells(work, 'separate'))} separate generate runs")


def compare(work: Path, strict: bool = True) -> None:
    """Sweep and separate runs, file by file: latents tensor by tensor, images pixel by pixel.
    Strict: any difference fails the check; otherwise the differences are only reported."""
    import numpy as np
    from PIL import Image
    from safetensors.torch import load_file

    report, different = [], 0
    for ours, theirs in zip(_cells(work, "sweep"), _cells(work, "separate"), strict=True):
        a, b = _by_prompt(Path(ours["save_path"])), _by_prompt(Path(theirs["save_path"]))
        for name in _expected(_seeds(work)):
            if name not in a or name not in b:
                raise Failed(f"{ours['id']}/{name} missing (sweep: {sorted(a)}, separate: {sorted(b)})")
            if name.startswith("images"):
                x = np.asarray(Image.open(a[name]), dtype=np.int16)
                y = np.asarray(Image.open(b[name]), dtype=np.int16)
                delta = np.abs(x - y)
                line = f"{ours['id']} {name}: max |diff| {delta.max()}, mean {delta.mean():.3f} levels"
            else:
                x_sd, y_sd = load_file(str(a[name])), load_file(str(b[name]))
                worst = max(float((x_sd[k].float() - y_sd[k].float()).abs().max()) for k in x_sd)
                delta = np.array([worst])
                line = f"{ours['id']} {name}: max |diff| {worst:.3g}"
            different += int(delta.max() > 0)
            report.append(line)
    name = "fidelity.txt" if strict else "fidelity-unseeded.txt"
    (work / "out" / name).write_text("\n".join(report) + "\n", encoding="utf-8")
    print("\n".join(report))
    if not different:
        print(f"all {len(report)} files bit-identical")
    elif strict:
        raise Failed(f"{different} of {len(report)} files differ between the sweep and separate runs")
    else:
        print(f"{different} of {len(report)} files differ (reported only: see README, 'Fidelity')")


STEPS = {
    "setup": setup,
    "cache": cache,
    "sweep-args": sweep_args,
    "eval": eval_,
    "eval-batched": eval_batched,
    "eval-compiled": eval_compiled,
    "sweep": sweep,
    "separate": separate,
    "compare": compare,
    "compare-report": lambda work: compare(work, strict=False),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=sorted(STEPS))
    parser.add_argument("--work", type=Path, required=True)
    options = parser.parse_args()
    try:
        STEPS[options.step](options.work.resolve())
    except Failed as error:
        print(f"check failed: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
