"""configs/v8.yaml reproduces the memo's config.toml, dataset.toml and inference command.

The fixtures in tests/fixtures/memo/ are transcribed key by key from the memo. Every difference
between them and what fplora renders is listed below with its reason; any other difference fails.
"""

from __future__ import annotations

import shlex
import tomllib
from pathlib import Path
from typing import Any

from fplora.render import commands
from fplora.render.files import RenderedPaths, config_toml, dataset_toml
from fplora.spec import load_spec

REPO = Path(__file__).resolve().parents[1]
MEMO = Path(__file__).parent / "fixtures" / "memo"
SPEC = load_spec(REPO / "configs/v8.yaml")
RENDER_DIR = REPO / "configs" / "v8"

# key → (what fplora renders, why it differs from the memo)
CONFIG_DIFFERENCES: dict[str, tuple[Any, str]] = {
    "dataset_config": (
        str(RENDER_DIR / "dataset.toml"),
        "derived: rendered beside the spec (configs/v8/), wherever the project is checked out",
    ),
    "sample_prompts": (
        str(RENDER_DIR / "prompts.txt"),
        "derived: rendered beside the spec, from `sample.prompts` (the memo's prompts.txt is not shown)",
    ),
    "save_precision": (
        "bf16",
        "added: the pinned musubi-tuner saves fp32 LoRAs otherwise, and its own fpack_generate_video then "
        "fails on every prompt ('self and mat2 must have the same dtype') while exiting 0",
    ),
    "log_tracker_config": (
        str(RENDER_DIR / "tracker.toml"),
        "added: the wandb run's name, id, tags and the resolved spec as its config (render/tracker.py);"
        " it replaces wandb_run_name, which it holds",
    ),
}
DATASET_DIFFERENCES: dict[tuple[str, ...], tuple[Any, str]] = {
    ("datasets", "0", "cache_directory"): (
        str(RENDER_DIR / "cache/dataset-v1/metadata-v1"),
        "derived per spec and dataset version (<spec>/cache/<dataset dir>/<jsonl stem>) when the spec "
        "names none; the memo's path sits in another project folder (framepack-lora)",
    ),
}


def _same(expected: Any, actual: Any) -> bool:
    """Equal in value and TOML kind (an int where musubi-tuner wants a float counts as the same)."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    return expected == actual


def _flatten(value: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flatten(item, (*prefix, key)).items()}
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return {k: v for i, item in enumerate(value) for k, v in _flatten(item, (*prefix, str(i))).items()}
    return {prefix: value}


def test_config_toml_reproduces_the_memo() -> None:
    memo = tomllib.loads((MEMO / "config.toml").read_text(encoding="utf-8"))
    rendered = tomllib.loads(config_toml(SPEC, RenderedPaths(RENDER_DIR)))
    for key, value in memo.items():
        if key in CONFIG_DIFFERENCES:
            continue
        assert key in rendered, f"memo key {key} is not rendered"
        assert _same(value, rendered[key]), f"{key}: memo {value!r}, fplora {rendered[key]!r}"
    for key, (value, _why) in CONFIG_DIFFERENCES.items():
        assert rendered[key] == value, key
    extra = set(rendered) - set(memo) - set(CONFIG_DIFFERENCES)
    assert not extra, f"rendered keys the memo does not have and no listed reason: {extra}"


def test_dataset_toml_reproduces_the_memo() -> None:
    memo = _flatten(tomllib.loads((MEMO / "dataset.toml").read_text(encoding="utf-8")))
    rendered = _flatten(tomllib.loads(dataset_toml(SPEC)))
    assert set(memo) == set(rendered)
    for key, value in memo.items():
        if key in DATASET_DIFFERENCES:
            assert rendered[key] == DATASET_DIFFERENCES[key][0]
        else:
            assert _same(value, rendered[key]), f"{key}: memo {value!r}, fplora {rendered[key]!r}"


def _options(argv: list[str]) -> dict[str, list[str]]:
    options: dict[str, list[str]] = {}
    flag = ""
    for arg in argv:
        if arg.startswith("--"):
            flag = arg
            options[flag] = []
        else:
            options[flag].append(arg)
    return options


def test_inference_command_reproduces_the_memo() -> None:
    """`fplora infer --lora step5000` with multiplier 1.2 runs the memo's generate flags."""
    memo = _options(shlex.split((MEMO / "generate-command.txt").read_text(encoding="utf-8")))
    out = SPEC.train.output_dir
    argv = commands.generate(
        SPEC,
        RenderedPaths(RENDER_DIR),
        "python",
        lora=out / "my-framepack-project-v8-step00005000.safetensors",
        multiplier=1.2,
        save_path=out / "sample/v8-step00005000-lm1.2",
    )
    script = argv[argv.index("musubi_tuner.fpack_generate_video") + 1 :]
    rendered = _options(script)
    # the memo reuses the training prompts file; fplora renders inference lines of their own
    # (`--f`/`--l` differ between the two parsers), so only --from_file's path differs
    assert rendered.pop("--from_file") == [str(RENDER_DIR / "infer-prompts.txt")]
    memo.pop("--from_file")
    # the memo's lines (the training prompts) carried the sample step count; fplora's infer lines
    # leave it to --infer_steps, which defaults to sample.steps for the same effect
    assert rendered.pop("--infer_steps") == [str(SPEC.sample.steps)]
    assert rendered == memo
