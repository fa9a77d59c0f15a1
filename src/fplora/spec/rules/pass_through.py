"""The pass-through options (`musubi.*`, `launch.extra`), one of the rules `check_rules` runs when a
spec loads: each must be an option of its script (or of accelerate launch) in the bundled schemas,
with a "did you mean" for a typo, and hold a value of its type; one that fplora renders from a spec
field, owns, or that would overrule what it renders is refused.

Its own module because it holds the table of what fplora renders or owns (`rendered_options`, derived
by `render/owned.py`, which the rehearsal's blame reads too) and judges the sections fplora passes on
unread, where the other rules judge the spec's own fields. The files these options name are checked on
disk by `check.passthrough`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from importlib import resources

from fplora.musubi import schema
from fplora.musubi.names import MAX_TRAIN_EPOCHS_LINE, PASS_THROUGH_SCRIPT
from fplora.problems import Problem
from fplora.spec.models import Spec
from fplora.suggest import did_you_mean

LAUNCH = "launch"  # the section of `launch.extra` in the table below


@cache
def rendered_options() -> dict[str, dict[str, str | None]]:
    """{pass-through section: {option dest: the spec field that sets it, or None when fplora owns
    it}}, as `render/owned.py` reads it off the render functions (kept as data: spec/ must not
    import render/, which imports spec/)."""
    table = resources.files("fplora.spec").joinpath("rendered-options.json").read_text(encoding="utf-8")
    owners: dict[str, dict[str, str | None]] = json.loads(table)
    return owners


DATASET_KEYS = {
    "resolution": "data.resolution",
    "batch_size": "data.batch_size",
    "num_repeats": "data.num_repeats",
    "enable_bucket": "data.enable_bucket",
    "bucket_no_upscale": "data.bucket_no_upscale",
    "caption_extension": "data.caption_extension",
    "fp_1f_clean_indices": "one_frame.clean_indices",
    "fp_1f_target_index": "one_frame.target_index",
    "fp_1f_no_post": "one_frame.no_post",
    "fp_latent_window_size": "one_frame.latent_window_size",
}
"""dataset.toml keys and the spec fields that render them."""


# Options `rendered_options` cannot see that fplora still keeps to itself: `--skip_existing` trusts
# any file that exists, and `fplora cache` decides what to compute from the store (jobs/cache.py).
OWNED_ELSEWHERE = {
    "cache_latents": {"skip_existing"},
    "cache_text_encoder": {"skip_existing"},
}

# What to do instead, for options fplora owns that a user may reach for.
OWNED_FIX = {
    "lora_weight": "remove it; choose the LoRA with `fplora infer --lora`",
    "resume": "remove it; use `fplora train --resume`",
    "skip_existing": "remove it; `fplora cache` computes only what the project's cache store lacks",
}


# Pass-through options fplora does not render but that would overrule what it does render.
OVERRULING = {
    ("config", "max_train_epochs"): (
        "replaces train.max_train_steps in musubi-tuner, and the steps a resumed segment is given on"
        f" the command line too ({MAX_TRAIN_EPOCHS_LINE}), so fplora's step counts and resume maths"
        " would be wrong",
        "remove it; set train.max_train_steps (epochs × steps per epoch) instead",
    ),
}


def _rendered_problem(section: str, key: str) -> tuple[str, str] | None:
    """(message, fix) when fplora renders or owns pass-through option `key` of `section`: passing it
    through would replace the spec's value behind fplora's back (resume maths, manifest, stamps)."""
    if (section, key) in OVERRULING:
        return OVERRULING[section, key]
    owners = rendered_options()[section]
    if key in owners and owners[key] is not None:
        return f"set by {owners[key]}", "set it there"
    if key in owners or key in OWNED_ELSEWHERE.get(section, ()):
        return "fplora owns it", OWNED_FIX.get(key, "remove it")
    return None


CONFIG = "config"
"""The one pass-through section that goes into a TOML file (`--config_file`) rather than on a
command line: musubi-tuner reads it without argparse's conversion."""
_TYPE_FIX = {True: "write a TOML-typed value", False: "write a value its command-line option takes"}


def _value_problem(section: str, option: schema.Option, value: object) -> str | None:
    """The training config's TOML skips argparse (the value must have the option's type already);
    the other sections go on the command line as text, which argparse converts (`"30"` is an int)."""
    if section == CONFIG:
        return schema.value_problem(option, value)
    return schema.argv_value_problem(option, value)


def pass_through(spec: Spec) -> Iterator[Problem]:
    """Every pass-through option of `spec` that musubi-tuner or accelerate would not take as written,
    or that fplora sets itself."""
    for section, script in PASS_THROUGH_SCRIPT.items():
        options = schema.script_options(script)
        for key, value in getattr(spec.musubi, section).items():
            where = ("musubi", section, key)
            if found := _rendered_problem(section, key):
                yield spec.problem(where, *found)
            elif key not in options:
                hint = did_you_mean(key, set(options)) or f"see `{script} --help` for valid options"
                yield spec.problem(where, f"not an option of {script}", hint)
            elif problem := _value_problem(section, options[key], value):
                yield spec.problem(where, problem, _TYPE_FIX[section == CONFIG])
    accel = schema.accelerate_options()
    for key, value in spec.launch.extra.items():
        where = ("launch", "extra", key)
        if found := _rendered_problem(LAUNCH, key):
            yield spec.problem(where, *found)
        elif key not in accel:
            yield spec.problem(where, "not an option of accelerate launch", did_you_mean(key, set(accel)))
        elif problem := schema.argv_value_problem(accel[key], value):
            yield spec.problem(where, problem, "")
