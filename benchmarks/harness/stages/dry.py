"""Local stage without a GPU: spec writing, `fplora check` and the --dry-run commands."""

from __future__ import annotations

import re
from typing import Any

from harness import state
from harness.asserts import Checks
from harness.proc import fplora
from harness.specs import write_specs
from harness.state import INFER_PROMPTS, NETWORK_DIM, Stage


def stage_dry(stage: dict[str, Any], checks: Checks) -> None:
    """Local: spec writing, `fplora check` (--skip-models, then with the stand-in models) and dry runs."""
    write_specs()
    for version in ("e2e", state.CFG.g_version, "timing"):
        ran = fplora(stage, "check", str(state.CFG.spec(version)), "--skip-models")
        checks.rc(ran, what=f"fplora check {version}.yaml --skip-models")
        ran = fplora(stage, "check", str(state.CFG.spec(version)))
        checks.rc(ran, what=f"fplora check {version}.yaml (stand-in models)")
        checks.ok(
            not re.search(r"^warning:", ran.text, re.MULTILINE),
            f"check {version}: no warnings",
            ran.text[-300:],
        )
    ran = fplora(stage, "cache", str(state.CFG.spec("e2e")), "--dry-run")
    checks.rc(ran, what="fplora cache --dry-run")
    for want in (
        "musubi_tuner.fpack_cache_latents",
        "--one_frame",
        "musubi_tuner.fpack_cache_text_encoder_outputs",
    ):
        checks.ok(want in ran.text, f"cache command has {want}")
    ran = fplora(stage, "train", str(state.CFG.spec("e2e")), "--dry-run", extra_env={"E2E_MAX_STEPS": "2"})
    checks.rc(ran, what="fplora train e2e.yaml --dry-run")
    config = (state.CFG.configs / "e2e" / "config.toml").read_text()
    for want in (
        "max_train_steps = 2",
        "save_every_n_steps = 1",
        "sample_at_first = true",
        "sample_every_n_steps = 1",
        f"blocks_to_swap = {state.CFG.e2e_swap}",
        'log_with = "tensorboard"',
        "logging_dir = ",
        'save_precision = "bf16"',
        "one_frame = true",
        f"network_dim = {NETWORK_DIM}",
    ):
        checks.ok(want in config, f"e2e config.toml: {want}")
    dataset = (state.CFG.configs / "e2e" / "dataset.toml").read_text()
    checks.ok(
        f'cache_directory = "{state.CFG.cache}"' in dataset, "dataset.toml uses the shared cache folder"
    )
    checks.ok(
        f"batch_size = {state.CFG.e2e_batch}" in dataset, f"dataset.toml batch_size {state.CFG.e2e_batch}"
    )
    prompts = (state.CFG.configs / "e2e" / "prompts.txt").read_text()
    checks.ok("--of target_index=5,control_index=0;10,no_post" in prompts, "sample prompt has --of")
    checks.ok("--s 4" in prompts, "sample prompt has --s 4")
    infer = [
        x for x in (state.CFG.configs / "e2e" / "infer-prompts.txt").read_text().splitlines() if x[:1] != "#"
    ]
    checks.ok(len(infer) == INFER_PROMPTS, f"{INFER_PROMPTS} infer prompt lines", infer)
    ran = fplora(stage, "train", str(state.CFG.spec(state.CFG.g_version)), "--dry-run")
    checks.rc(ran, what=f"fplora train {state.CFG.g_version}.yaml --dry-run")
    checks.ok(f"--multi_gpu --num_processes {state.CFG.gpus}" in ran.text, "g spec launches --multi_gpu")
    ran = fplora(stage, "train", str(state.CFG.spec("timing")), "--dry-run")
    checks.rc(ran, what="fplora train timing.yaml --dry-run")
    timing = (state.CFG.configs / "timing" / "config.toml").read_text()
    checks.ok("blocks_to_swap = 20" in timing, "timing config.toml: blocks_to_swap = 20")
    checks.ok(
        "batch_size = 16" in (state.CFG.configs / "timing" / "dataset.toml").read_text(), "timing batch 16"
    )
    checks.ok("sample_prompts" not in timing, "timing config.toml: no sampling")


STAGES = {"dry": Stage(stage_dry, 0)}
