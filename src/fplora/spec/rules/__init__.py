"""Cross-field rules, in one home: what musubi-tuner would only find out on the GPU, checked before it
starts. Every rule returns `Problem`s located by `Spec.problem` at the line that set the value.

Two moments: the rules here run when a spec is loaded and again after a GPU preset changed it
(`spec.revalidate`), and refuse the spec; `combinations` (option combinations the GPU matrix showed
to fail, memory warnings) runs in `fplora check` and before every job, on the spec as the preset
left it, since the preset chooses the very settings those rules judge.

Pass-through options (`musubi.*`, `launch.extra`) are one of the rules here, kept in `pass_through`:
they are judged against musubi-tuner's bundled schemas and the options fplora renders itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from fplora.musubi import schema
from fplora.musubi.names import (
    DISTILLED_GUIDANCE_DEFAULT,
    OPTIMIZER_BUILT_IN,
    OPTIMIZER_CLASS_PATHS,
    SCRIPTS,
    TORCH_OPTIMIZERS,
    TORCH_OPTIMIZERS_UNUSABLE,
)
from fplora.problems import Problem, display_path, plural
from fplora.spec import learning_rate
from fplora.spec.models import Spec
from fplora.spec.rules.pass_through import pass_through
from fplora.spec.source import KeyPath
from fplora.suggest import closest, did_you_mean

_DRIVE = re.compile(r"(?:^|/)([A-Za-z]:[\\/].*)$")


def windows_path(path: Path | str) -> str | None:
    """The part of `path` written for Windows (`C:\\Users\\me\\a.png`, `img\\a.png`), or None.

    musubi-tuner runs on Linux, where `\\` is an ordinary character of a file name and `C:` a folder
    name: such a path names a file that is not there, or makes a folder nobody meant. A relative
    value was joined onto a folder by fplora; what is shown starts where the user's text did (the
    drive, else the path component holding the first backslash)."""
    text = str(path)
    if ":" not in text and "\\" not in text:  # most paths: no regex search needed
        return None
    if (drive := _DRIVE.search(text)) is not None:
        return drive.group(1)
    if "\\" not in text:
        return None
    return text[text.rfind("/", 0, text.index("\\")) + 1 :]


_OPTIMIZER_TAKES = "adamw, adamw8bit, adafactor, a torch.optim class or a module.Class path"


def _optimizer_hint(name: str, prefix: str = "") -> str:
    """The closest optimizer name musubi-tuner resolves, as the user should write it."""
    lower = name.lower()
    if lower in OPTIMIZER_CLASS_PATHS and not prefix:
        return f"write '{OPTIMIZER_CLASS_PATHS[lower]}': musubi-tuner needs its class path"
    names = {n.lower(): prefix + n for n in TORCH_OPTIMIZERS}
    if lower in names:
        return f"did you mean '{names[lower]}'? torch.optim names are case-sensitive"
    if not prefix:
        names.update({n: n for n in OPTIMIZER_BUILT_IN})
        names.update({n: path for n, path in OPTIMIZER_CLASS_PATHS.items()})
    close = closest(lower, set(names))
    if close is not None:
        return f"did you mean '{names[close]}'?"
    return "use e.g. adamw8bit, AdamW or 'bitsandbytes.optim.Lion8bit'"


def optimizer_problem(name: str) -> tuple[str, str] | None:
    """(message, fix) when musubi-tuner could not turn `name` into an optimizer class.

    Mirrors `get_optimizer` (see `names.OPTIMIZER_BUILT_IN`) without importing anything: built-in
    names and `torch.optim` classes are checked against static lists; another module's class path is
    only checked for its form, since only musubi-tuner's Python can import it.
    """
    if name.lower() in OPTIMIZER_BUILT_IN:
        return None
    module, _, cls = name.rpartition(".")
    if module and not all(part.isidentifier() for part in name.split(".")):
        return "not a class path (module.Class)", "write e.g. 'bitsandbytes.optim.Lion8bit'"
    if module not in ("", "torch.optim"):
        return None
    if cls in TORCH_OPTIMIZERS:
        return None
    if cls in TORCH_OPTIMIZERS_UNUSABLE:
        return (
            f"torch.optim.{cls} {TORCH_OPTIMIZERS_UNUSABLE[cls]}",
            "use AdamW, adamw8bit or another optimizer",
        )
    if module:
        return f"torch.optim has no optimizer {cls}", _optimizer_hint(cls, "torch.optim.")
    return f"not an optimizer musubi-tuner can load (it takes {_OPTIMIZER_TAKES})", _optimizer_hint(name)


def _optimizer(spec: Spec) -> Iterator[Problem]:
    # (musubi.config.optimizer_type is refused: train.optimizer.type is the one place)
    if (found := optimizer_problem(spec.train.optimizer.type)) is not None:
        yield spec.problem(("train", "optimizer", "type"), *found)
    for where, message, fix in learning_rate.findings(spec):
        yield spec.problem(where, message, fix)


def _train(spec: Spec) -> Iterator[Problem]:
    train = spec.train
    if train.fp8_scaled and not train.fp8_base:
        yield spec.problem(("train", "fp8_scaled"), "fp8_scaled needs fp8_base", "add `fp8_base: true`")
    if train.attention == "sage_attn":
        yield spec.problem(
            ("train", "attention"),
            "musubi-tuner refuses sage_attn for training",
            "use sdpa, flash_attn, xformers or flash3 (sage attention is for inference only)",
        )
    choices = schema.script_options(SCRIPTS["train"])["timestep_sampling"].choices or ()
    if train.timestep_sampling not in choices:
        hint = did_you_mean(train.timestep_sampling, set(choices)) or f"use one of {', '.join(choices)}"
        yield spec.problem(("train", "timestep_sampling"), "not a timestep_sampling of musubi-tuner", hint)
    for section in ("config", "cache_latents"):
        dtype = getattr(spec.musubi, section).get("vae_dtype")
        if dtype not in (None, "float16"):
            yield spec.problem(
                ("musubi", section, "vae_dtype"),
                "FramePack's VAE runs only in float16",
                "remove vae_dtype (or set float16)",
            )


def _one_frame(spec: Spec) -> Iterator[Problem]:
    count = len(spec.one_frame.clean_indices)
    for section in ("sample", "infer"):
        prompts = getattr(spec, section).prompts or []
        for index, prompt in enumerate(prompts):
            where = (section, "prompts", index)
            if prompt.control_images is not None and len(prompt.control_images) != count:
                yield spec.problem(
                    (*where, "control_images"),
                    f"{len(prompt.control_images)} control images, but one_frame.clean_indices has {count}",
                    f"give exactly {count}",
                )
            if prompt.record is not None and prompt.dataset >= len(spec.datasets):
                yield spec.problem(
                    (*where, "dataset"),
                    f"there is no datasets[{prompt.dataset}]",
                    f"use 0..{len(spec.datasets) - 1}",
                )
    if (spec.sample.every_n_steps or spec.sample.at_first) and not spec.sample.prompts:
        yield spec.problem(
            ("sample",),
            "sampling is on but sample.prompts is empty",
            "add a prompt (e.g. `- record: 1`) or set every_n_steps: null and at_first: false",
        )


def _sampling(spec: Spec) -> Iterator[Problem]:
    """generate takes the distilled guidance once per run (`--embedded_cfg_scale`), training samples
    per line (`--g`): `fplora infer` can honour one value for all its prompts, not one each."""
    section, prompts = spec.prompts_of("infer")
    first: tuple[int, float] | None = None
    for index, prompt in enumerate(prompts):
        value = prompt.guidance_scale if prompt.guidance_scale is not None else DISTILLED_GUIDANCE_DEFAULT
        if first is None:
            first = (index, value)
        elif value != first[1]:
            yield spec.problem(
                (section, "prompts", index, "guidance_scale"),
                f"{value:g} differs from {section}.prompts[{first[0]}]'s {first[1]:g}: fpack_generate_video"
                " takes the distilled guidance once per run (--embedded_cfg_scale,"
                " fpack_generate_video.py:185), so `fplora infer` cannot give each prompt its own",
                "use one guidance_scale for every prompt infer uses"
                + (" (or give infer prompts of its own)" if section == "sample" else ""),
            )
            return


def _datasets(spec: Spec) -> Iterator[Problem]:
    seen: dict[Any, int] = {}
    listed: dict[Path, int] = {}
    for index, dataset in enumerate(spec.datasets):
        first = listed.setdefault(dataset.jsonl, index)
        cache = spec.cache_directory(index)
        if first != index and dataset.cache_directory is None and spec.cache_directory(first) == cache:
            # the cache folder fplora derives from the JSONL: the JSONL is the mistake (the same
            # JSONL with a cache of its own is a second resolution, and allowed)
            yield spec.problem(
                ("datasets", index, "jsonl"),
                f"the same JSONL as datasets[{first}], into the same cache: caching would delete the"
                " other's files",
                f"remove this entry (to weight the records, raise datasets[{first}].num_repeats), or give it"
                " its own cache_directory to train them at a second resolution",
            )
            seen.setdefault(cache, index)
            continue
        if cache in seen:
            yield spec.problem(
                ("datasets", index, "cache_directory"),
                f"same cache directory as datasets[{seen[cache]}]: caching would delete the other's files",
                "give each dataset its own cache_directory",
            )
        seen.setdefault(cache, index)
    if spec.eval is not None:
        yield from _evaluation(spec, seen)


def _evaluation(spec: Spec, caches: dict[Any, int]) -> Iterator[Problem]:
    """The evaluation split names a dataset that exists and caches into a folder of its own:
    caching would otherwise delete the training caches, or training would read evaluation records."""
    evaluation = spec.eval
    assert evaluation is not None
    if evaluation.jsonl is None and evaluation.dataset >= len(spec.datasets):
        yield spec.problem(
            ("eval", "dataset"),
            f"there is no datasets[{evaluation.dataset}] ({plural(len(spec.datasets), 'dataset')})",
            "give the index of the dataset the records are held out of",
        )
        return
    index = spec.eval_index
    assert index is not None
    cache = spec.cache_directory(index)
    if cache in caches:
        yield spec.problem(
            ("eval", "cache_directory"),
            f"same cache directory as datasets[{caches[cache]}]: training would read the evaluation records",
            "give the evaluation split its own cache_directory",
        )


def _launch(spec: Spec) -> Iterator[Problem]:
    launch = spec.launch
    if launch.num_machines > 1:
        for key in ("main_process_ip", "main_process_port"):
            if getattr(launch, key) is None:
                yield spec.problem(
                    ("launch", key), "needed when num_machines > 1", "set the main node's address"
                )
        if launch.machine_rank >= launch.num_machines:
            yield spec.problem(("launch", "machine_rank"), "must be below num_machines", "")
        if launch.num_processes < launch.num_machines:
            yield spec.problem(
                ("launch", "num_processes"),
                "is the total over all machines, so at least num_machines",
                "",
            )
    elif launch.machine_rank:
        yield spec.problem(("launch", "machine_rank"), "only meaningful with num_machines > 1", "")
    choices = schema.accelerate_options()["dynamo_backend"].choices or ()
    if launch.dynamo_backend not in choices:
        yield spec.problem(("launch", "dynamo_backend"), f"must be one of {', '.join(choices)}", "")


RULES = (pass_through, _train, _optimizer, _one_frame, _sampling, _datasets, _launch)


def check_rules(spec: Spec) -> list[Problem]:
    """Every cross-field problem of `spec` (all errors)."""
    return [finding for rule in RULES for finding in rule(spec)]


def _path_fields(model: BaseModel, where: KeyPath = ()) -> Iterator[tuple[KeyPath, Path]]:
    """Every path the spec holds, with its key path (`train.output_dir`, `datasets[0].jsonl`)."""
    for name, field in type(model).model_fields.items():
        here = (*where, field.alias or name)
        value = getattr(model, name)
        items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
        for index, item in items:
            at = here if index is None else (*here, index)
            if isinstance(item, Path):
                yield at, item
            elif isinstance(item, BaseModel):
                yield from _path_fields(item, at)


def spec_warnings(spec: Spec) -> list[Problem]:
    """What the spec allows but should say: keys left empty in a spec that extends another (from
    loading), a learning rate far from what LoRA training uses, a `tuned_at_batch` that datasets of
    different batch sizes leave without one batch to scale to, and paths written for Windows
    (`output_dir: C:\\Users\\...` would make a folder named that under the spec's folder on the
    Linux box)."""
    warnings = list(spec.load_warnings)
    rate = learning_rate.implausible(spec)
    if rate is not None and rate[0] == "warning":
        warnings.append(spec.problem(("train", "optimizer", "learning_rate"), rate[1], rate[2], "warning"))
    if (unscaled := learning_rate.unscaled(spec)) is not None:
        warnings.append(spec.problem(("train", "optimizer", "tuned_at_batch"), *unscaled, "warning"))
    for key_path, path in _path_fields(spec):
        if (shown := windows_path(path)) is not None:
            fix = (
                "write the Linux path on the GPU box (e.g. /workspace/...)"
                if ":" in shown
                else f"write '{shown.replace(chr(92), '/')}': paths use '/' on Linux"
            )
            warnings.append(
                spec.problem(
                    key_path,
                    f"'{shown}' looks like a Windows path: musubi-tuner runs on Linux, where '\\' is part"
                    " of a file name",
                    fix,
                    "warning",
                )
            )
    warnings.extend(_unused_negative_prompts(spec))
    warnings.extend(_output_among_specs(spec))
    warnings.extend(_saves_past_the_run(spec))
    return warnings


def _saves_past_the_run(spec: Spec) -> Iterator[Problem]:
    """A step interval past the run's end: musubi-tuner runs it and saves the LoRA (and the state)
    at the end only, so there are no checkpoints to compare (a warning, not a failure)."""
    train = spec.train
    if train.save_every_n_steps and train.save_every_n_steps > train.max_train_steps:
        yield spec.problem(
            ("train", "save_every_n_steps"),
            f"{train.save_every_n_steps} is more than max_train_steps ({train.max_train_steps}):"
            " no step checkpoint is saved, only the final LoRA",
            "lower save_every_n_steps or raise max_train_steps to compare checkpoints",
            "warning",
        )


def _output_among_specs(spec: Spec) -> Iterator[Problem]:
    """`output_dir: outputs` in configs/base.yaml resolves against the file that wrote it, so the
    run's checkpoints and states (gigabytes) would go into configs/, beside the specs, where a new
    user expected a folder beside configs/."""
    key = ("train", "output_dir")
    writer = spec.written_in(key)
    if writer is None or writer.parent.name != "configs":  # a project's layout, as `fplora init` makes
        return
    specs = writer.parent.resolve()
    out = spec.train.output_dir.resolve()
    if out != specs and specs not in out.parents:
        return
    relative = out.relative_to(specs).as_posix()
    yield spec.problem(
        key,
        f"{display_path(out)} is inside {display_path(specs)}, the specs' folder (relative paths resolve"
        " against the file that writes them): checkpoints and states would go beside the specs",
        f"write '../{relative}' for a folder beside it, or an absolute path"
        f" (e.g. /workspace/{spec.project}-models)",
        "warning",
    )


def _unused_negative_prompts(spec: Spec) -> Iterator[Problem]:
    """A negative prompt works only with real CFG: both scripts replace it with zeros while the CFG
    scale is 1 (fpack_train_network.py:301 and :432, fpack_generate_video.py:829)."""
    for section in ("sample", "infer"):
        for index, prompt in enumerate(getattr(spec, section).prompts or []):
            if prompt.negative_prompt and (prompt.cfg_scale is None or prompt.cfg_scale == 1):
                yield spec.problem(
                    (section, "prompts", index, "negative_prompt"),
                    "has no effect: musubi-tuner uses a negative prompt only with real CFG (cfg_scale"
                    " above 1), in training samples and in `fplora infer` alike",
                    "set cfg_scale (e.g. 3; it doubles the sampling work), or remove it",
                    "warning",
                )
