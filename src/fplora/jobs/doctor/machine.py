"""`fplora doctor`: what will fail on this machine, before the first paid minute.

Facts come from three places: this process (fplora's version, files and environment variables: the
Hugging Face cache, accelerate's default config, wandb's login, free disk), a probe script run in the
musubi-tuner Python (`musubi_probe.py.txt`: its Python, musubi-tuner's version and commit, its own
argparse options, torch, CUDA, the GPUs, the optional kernels), and the spec when one is given, with its
GPU preset applied (which attention kernel, torch.compile, wandb or not, how much it will save). Each
check returns `Problem`s (`finding`); nothing here prints. A missing GPU or musubi-tuner is a finding like any
other, so the doctor runs anywhere.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from fplora import __version__
from fplora.jobs.models import hf_home, hub_cache
from fplora.jobs.tracking import no_wandb_login, wandb_login
from fplora.musubi import schema
from fplora.musubi.names import ATTENTION_MODULES, SCRIPTS, TOKENIZER_FILES, TOKENIZER_REPO
from fplora.problems import Problem
from fplora.process import capture
from fplora.runtime import MUSUBI_INFO, commit_finding, install_hint
from fplora.spec.models import Spec, width_height

PROBE_MARK = "FPLORA-DOCTOR-PROBE "
LORA_MB_DIM32_FP32 = 551  # measured on an H100 (docs/gpu-e2e.md): LoRA dim 32, fp32
STATE_MB_DIM32 = 832  # a -state folder at dim 32 (weights + adamw8bit state), same source
_TRAIN_EXTRA = "install fplora's train extra beside musubi-tuner (README: Install on the GPU box)"


# doctor's words for how a check came out, and the severity of the problem that carries it
SEVERITY = {"ok": "ok", "warn": "warning", "fail": "error"}
STATUS = {severity: status for status, severity in SEVERITY.items()}


def finding(status: str, topic: str, detail: str, fix: str = "") -> Problem:
    """A check's outcome as fplora's one finding type: `status` ok, warn or fail; the topic is the
    key (no file: the machine is the place). An ok is kept too: the report lists what passed."""
    return Problem("", None, topic, detail, fix, SEVERITY[status])


Probe = dict[str, Any]


def run_probe(python: str) -> tuple[Probe | None, str]:
    """The probe's answer from `python`, or None and why not."""
    probe = resources.files(__package__).joinpath("musubi_probe.py.txt").read_text(encoding="utf-8")
    script = MUSUBI_INFO + probe  # the commit is found as before a worker's launch
    code, output = capture([python, "-c", script, *SCRIPTS.values()], timeout=300)
    for line in reversed(output.splitlines()):
        if line.startswith(PROBE_MARK):
            try:
                answer: Probe = json.loads(line[len(PROBE_MARK) :])
            except json.JSONDecodeError:
                break
            return answer, ""
    last = output.strip().splitlines()[-1] if output.strip() else f"exit {code}"
    return None, last


def _versions(probe: Probe | None, python: str, why: str) -> Iterator[Problem]:
    yield finding("ok", "fplora", f"{__version__} on Python {platform.python_version()}")
    if probe is None:
        yield finding(
            "fail", "musubi-tuner Python", f"cannot run the probe in {python}: {why}", install_hint()
        )
        return
    version = probe.get("python", "?")
    major_minor = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    status = "ok" if major_minor >= (3, 10) else "fail"
    yield finding(
        status, "musubi-tuner Python", f"{python}: Python {version}", "" if status == "ok" else "use 3.10+"
    )
    musubi = probe.get("musubi_tuner")
    if not musubi:
        error = probe.get("errors", {}).get("musubi_tuner", "")
        yield finding("fail", "musubi-tuner", f"not importable in {python} {error}".strip(), install_hint())
        return
    yield commit_finding(musubi)


def _drift(probe: Probe) -> Iterator[Problem]:
    """The installed scripts' real options against the bundled snapshot fplora checks specs with."""
    parsers = probe.get("parsers") or {}
    errors = probe.get("errors", {})
    for script in SCRIPTS.values():
        if script not in parsers:
            why = errors.get(f"parser {script}", "not probed")
            yield finding("warn", f"options of {script}", f"could not read its parser: {why}", "")
            continue
        real = {o["dest"]: o for o in parsers[script]}
        bundled = {o["dest"]: o for o in schema.schema()["scripts"][script]["options"]}
        gone = sorted(set(bundled) - set(real))
        new = sorted(set(real) - set(bundled))
        changed = sorted(
            dest
            for dest in set(real) & set(bundled)
            if (real[dest].get("choices") or None) != (bundled[dest].get("choices") or None)
            or real[dest].get("type") != bundled[dest].get("type")
            or bool(real[dest].get("store_true")) != bool(bundled[dest].get("store_true"))
        )
        if not (gone or new or changed):
            yield finding("ok", f"options of {script}", f"{len(real)} options, as in the bundled schema")
            continue
        parts = [
            f"{label}: {', '.join(items[:6])}"
            for label, items in (("gone", gone), ("new", new), ("changed", changed))
            if items
        ]
        yield finding(
            "fail" if gone else "warn",
            f"options of {script}",
            "; ".join(parts),
            f"install musubi-tuner at {schema.pinned_commit()[:8]} (the README's install line):"
            " fplora checks specs against that commit's options",
        )


def _gpu(probe: Probe | None) -> Iterator[Problem]:
    torch = (probe or {}).get("torch")
    if not torch:
        if probe is not None:
            error = probe.get("errors", {}).get("torch", "not probed")
            yield finding(
                "fail", "torch", f"not importable in the musubi-tuner Python ({error})", install_hint()
            )
        from fplora.presets import detect

        found = detect()  # nvidia-smi alone: what the machine has, even without a working torch
        if found is None:
            yield finding(
                "fail",
                "GPU",
                "none found (no nvidia-smi, and no torch to ask): caching, training and inference need one",
                "run on the GPU machine",
            )
        else:
            yield finding(
                "ok", "GPU", f"{found.count} × {found.name} ({found.memory_mib:,} MiB), by nvidia-smi"
            )
        return
    yield finding("ok", "torch", f"{torch['version']}, CUDA {torch.get('cuda') or 'none (CPU build)'}")
    gpus = torch.get("gpus") or []
    if not torch.get("cuda_available") or not gpus:
        yield finding(
            "fail",
            "GPU",
            "no CUDA GPU visible to torch: caching, training and inference need one",
            "run on the GPU machine (check CUDA_VISIBLE_DEVICES and the driver: nvidia-smi)",
        )
        return
    names = ", ".join(f"{g['name']} ({g['memory_mib']:,} MiB)" for g in gpus)
    yield finding("ok", "GPU", f"{len(gpus)}: {names}")


def _offline() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes")
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _tokenizers() -> Iterator[Problem]:
    repo = hub_cache() / f"models--{TOKENIZER_REPO.replace('/', '--')}"
    snapshots = sorted((repo / "snapshots").glob("*")) if (repo / "snapshots").is_dir() else []
    ref = repo / "refs" / "main"
    if ref.is_file():
        preferred = repo / "snapshots" / ref.read_text(encoding="utf-8").strip()
        snapshots = [preferred, *[s for s in snapshots if s != preferred]]
    for snapshot in snapshots:
        missing = [name for name in TOKENIZER_FILES if not (snapshot / name).is_file()]
        if not missing:
            yield finding("ok", "tokenizers", f"{TOKENIZER_REPO} {', '.join(TOKENIZER_FILES)} in {snapshot}")
            return
    have = f"missing from {hub_cache()}"
    fix = (
        "run `fplora models fetch` where there is network: it puts the tokenizers into HF_HUB_CACHE"
        f" ({TOKENIZER_REPO}: {', '.join(TOKENIZER_FILES)}) beside the models"
    )
    if _offline():
        yield finding(
            "fail", "tokenizers", f"{TOKENIZER_REPO} tokenizer files {have}, and HF_HUB_OFFLINE is set", fix
        )
    else:
        yield finding(
            "warn",
            "tokenizers",
            f"{TOKENIZER_REPO} tokenizer files {have}: downloaded at the first run (needs network)",
            fix,
        )


def accelerate_config_path() -> Path:
    return hf_home() / "accelerate" / "default_config.yaml"


def _accelerate(probe: Probe | None, spec: Spec | None) -> Iterator[Problem]:
    if probe is not None:
        version = (probe.get("versions") or {}).get("accelerate")
        if version:
            yield finding("ok", "accelerate", f"{version} in the musubi-tuner Python")
        else:
            yield finding("fail", "accelerate", "not installed in the musubi-tuner Python", _TRAIN_EXTRA)
    path = accelerate_config_path()
    if not path.is_file():
        yield finding(
            "ok", "accelerate config", f"no default config ({path}): fplora's launch options are all there is"
        )
        return
    from ruamel.yaml import YAML

    try:
        config = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
    except Exception as exc:
        yield finding("warn", "accelerate config", f"{path} unreadable ({exc})", "fix or remove it")
        return
    changes = list(_config_changes(config, spec))
    if changes:
        yield finding(
            "warn",
            "accelerate config",
            f"{path} sets {'; '.join(changes)}, which fplora's launch does not override",
            f"remove those keys (or the file: mv {path} {path}.bak)",
        )
    else:
        yield finding(
            "ok", "accelerate config", f"{path}: nothing in it that fplora's launch options leave open"
        )


def _config_changes(config: dict[str, Any], spec: Spec | None) -> Iterator[str]:
    processes = spec.launch.num_processes if spec is not None else 1
    if str(config.get("distributed_type", "NO")).upper() not in (
        "NO",
        "MULTI_GPU" if processes > 1 else "NO",
    ):
        yield f"distributed_type {config['distributed_type']}"
    if config.get("use_cpu"):
        yield "use_cpu true (training on the CPU)"
    if config.get("gpu_ids") not in (None, "all", "") and not (spec and spec.launch.gpu_ids):
        yield f"gpu_ids {config['gpu_ids']}"
    if str(config.get("downcast_bf16", "no")).lower() not in ("no", "false"):
        yield f"downcast_bf16 {config['downcast_bf16']}"
    for key in ("deepspeed_config", "fsdp_config", "megatron_lm_config"):
        if config.get(key):
            yield key
    if config.get("enable_cpu_affinity"):
        yield "enable_cpu_affinity true"


def _attention(probe: Probe | None, spec: Spec | None) -> Iterator[Problem]:
    modules = (probe or {}).get("modules") or {}
    installed = [
        name
        for name in ("flash_attn", "flash_attn_interface", "xformers", "sageattention")
        if modules.get(name)
    ]
    asked = {}
    if spec is not None:
        asked = {"train.attention": spec.train.attention, "infer.attention": spec.infer.attention}
    for key, choice in asked.items():
        module = ATTENTION_MODULES.get(choice)
        if module is None:
            continue
        if probe is None:
            yield finding(
                "warn", "attention", f"{key} {choice} needs {module}; not checked (no musubi-tuner Python)"
            )
        elif not modules.get(module):
            yield finding(
                "fail",
                "attention",
                f"{key} {choice} needs {module}, which the musubi-tuner Python does not have",
                f"install {module} there, or set {key}: sdpa",
            )
    if probe is not None:
        extra = (
            f"; installed: {', '.join(installed)}"
            if installed
            else "; no optional kernel installed (sdpa only)"
        )
        chosen = ", ".join(f"{k} {v}" for k, v in asked.items()) or "no spec"
        yield finding("ok", "attention", f"{chosen}{extra}")


def _compile(probe: Probe | None, spec: Spec | None) -> Iterator[Problem]:
    """torch.compile (train.compile, which the h200 preset sets) generates its GPU kernels with
    triton: without it the first step fails, after the models have loaded."""
    if spec is None or not spec.train.compile:
        return
    if probe is None:
        yield finding("warn", "compile", "train.compile needs triton; not checked (no musubi-tuner Python)")
        return
    if (probe.get("modules") or {}).get("triton"):
        yield finding("ok", "compile", "train.compile: triton is installed in the musubi-tuner Python")
        return
    yield finding(
        "fail",
        "compile",
        "train.compile needs triton, which the musubi-tuner Python does not have",
        "install triton there (Linux CUDA wheels of torch bring it), or set train.compile: false",
    )


def _wandb(probe: Probe | None, spec: Spec | None) -> Iterator[Problem]:
    if spec is None or not spec.train.logging.to_wandb:
        return
    if probe is not None and not (probe.get("modules") or {}).get("wandb"):
        yield finding(
            "fail",
            "wandb",
            "the spec logs to wandb, which the musubi-tuner Python lacks",
            "pip install wandb there, or set train.logging.with: tensorboard",
        )
        return
    login = wandb_login()
    if login is not None:
        yield finding("ok", "wandb", login)
        return
    # `fplora train`'s own refusal, word for word: one message and one fix wherever the user meets it
    yield no_wandb_login(spec)


def disk_need(spec: Spec, records: Callable[[int], Any] | None = None) -> tuple[float, float]:
    """(checkpoint MB, cache MB) the spec will write. Checkpoints from the sizes measured on an H100
    (LoRA dim 32 fp32 551 MB, halved in bf16; a state 832 MB), scaled by dim; caches from tensor
    shapes (latents of the target and each control image at 1/8 size, 16 channels, bf16; SigLIP
    image features; the LLaMA text embedding), for caches not made yet."""
    train = spec.train
    scale = train.network.dim / 32
    lora = LORA_MB_DIM32_FP32 * scale * (1.0 if train.save_precision in ("float", "fp32") else 0.5)
    state = STATE_MB_DIM32 * scale
    saves = train.max_train_steps // train.save_every_n_steps if train.save_every_n_steps else 0
    checkpoints = (saves + 1) * lora + (saves * state if train.save_state else 0)
    checkpoints += state if train.save_state_on_train_end else 0
    caches = 0.0
    if records is not None:
        width, height = width_height(spec.data.resolution)
        controls = len(spec.one_frame.clean_indices)
        per_record = (1 + controls) * 16 * (width // 8) * (height // 8) * 2 / 1e6 + 1.7 + 4.2
        for index in range(len(spec.datasets)):
            if (spec.cache_directory(index) / "fplora-cache.json").is_file():
                continue
            caches += len(records(index).items) * per_record
    return checkpoints, caches


def _existing(path: Path) -> Path:
    for folder in (path, *path.parents):
        if folder.exists():
            return folder
    return Path("/")


def _disk(spec: Spec | None, records: Callable[[int], Any] | None) -> Iterator[Problem]:
    if spec is None:
        return
    checkpoints, caches = disk_need(spec, records)
    need = {}
    out = _existing(spec.train.output_dir)
    need[out] = checkpoints
    cache_at = _existing(spec.cache_directory(0))
    if os.stat(cache_at).st_dev == os.stat(out).st_dev:
        need[out] += caches
    else:
        need[cache_at] = caches
    for folder, mb in need.items():
        free = shutil.disk_usage(folder).free / 1e6
        detail = (
            f"{free / 1000:,.1f} GB free at {folder}; the run needs ~{mb / 1000:,.1f} GB"
            " (checkpoints and states to max_train_steps, caches not yet made)"
        )
        if free < mb:
            yield finding(
                "fail", "disk", detail, "free space, raise save_every_n_steps, or set save_state: false"
            )
        elif free < 1.2 * mb:
            yield finding("warn", "disk", detail + ", less than 20 % to spare", "free some space")
        else:
            yield finding("ok", "disk", detail)


def diagnose(spec: Spec | None, python: str, records: Callable[[int], Any] | None = None) -> list[Problem]:
    """Every finding, in the order the doctor prints them."""
    probe, why = run_probe(python)
    findings = list(_versions(probe, python, why))
    if probe is not None and probe.get("musubi_tuner"):
        findings += _drift(probe)
    findings += _gpu(probe)
    findings += _accelerate(probe, spec)
    findings += _tokenizers()
    findings += _attention(probe, spec)
    findings += _compile(probe, spec)
    findings += _wandb(probe, spec)
    findings += _disk(spec, records)
    return findings
