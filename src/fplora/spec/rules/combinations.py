"""Option combinations that fail on the GPU: refused (or warned about) before any GPU time is spent.

Every spec here is valid on its own; what fails is a combination that musubi-tuner (at the pinned
commit) only finds out on the GPU, after the models are loaded, or a setting that ran out of memory
at the memo's size. Each rule comes from a cell of the GPU option matrix (`benchmarks/gpu_matrix.py`,
results in `benchmarks/gpu_matrix.json` and `docs/gpu-matrix.md`) or from a line of musubi-tuner's
source; its comment names which. A setting that only ran out of memory is a warning with the
measured figure and the GPU it was measured on, never an error: the user's GPU may be larger.

Missing attention kernels (flash-attn, xformers, sageattention on the GPU box) are not decided here:
`fplora.runtime.needed_modules` makes every command that launches musubi-tuner import them first.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from fplora.musubi.names import FRAMEPACK_NETWORK_MODULES, LORA_NETWORK_MODULE, OTHER_ARCH_NETWORK_MODULES
from fplora.problems import Problem
from fplora.spec.learning_rate import relative_step
from fplora.spec.models import Spec, width_height
from fplora.spec.source import KeyPath
from fplora.suggest import did_you_mean

__all__ = ["check_combinations"]

# FramePack's DiT has 20 double and 40 single blocks; `enable_block_swap` swaps n // 2 double and
# (n - n // 2) * 2 + 1 single blocks and asserts at most 19 and 39
# (frame_pack/hunyuan_video_packed.py:1665-1675), so 38 is the largest value it accepts.
MAX_BLOCKS_TO_SWAP = 38
# Training with 38 passed that assertion, then failed in the first backward pass (cell swap-max:
# "RuntimeError: Expected all tensors to be on the same device ... mat2 is on cpu"). The cause is in
# the backward hook (modules/custom_offloading_utils.py:473-485): block b's hook brings block
# b - (N - 1 - S) back to the GPU for S of N blocks swapped, so with S = N - 1 (19 double or 39
# single blocks) it brings back block b itself and block b - 1 stays on the CPU. 37 swaps 39 single
# blocks too (18 double), so training takes at most 36 (18 double, 37 single); 20 ran (swap-20).
MAX_TRAIN_BLOCKS_TO_SWAP = 36

# Attention modes whose batch > 1 path without split_attn has no var-len kernel: attn_varlen_func
# serves that path only with sageattn_varlen or flash_attn_varlen_func, else raises
# NotImplementedError (frame_pack/hunyuan_video_packed.py:817-828; the batch-1 shortcut that avoids
# it is taken only when `batch_size == 1 and not split_attn`, :1880).
NO_VARLEN = {"sdpa": "sdpa", "xformers": "xformers", "flash3": "flash3"}

# lr_scheduler names musubi-tuner resolves (training/trainer_base.py get_lr_scheduler, :279-370):
# diffusers' SchedulerType values (the list its ValueError printed in cell sched-unknown, diffusers
# 0.32.1), its piecewise_constant, musubi-tuner's own rex, and adafactor (Adafactor optimizer only).
SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "reduce_lr_on_plateau",
    "cosine_with_min_lr",
    "cosine_warmup_with_min_lr",
    "warmup_stable_decay",
    "piecewise_constant",
    "rex",
)

H200 = "an H200 (139.8 GiB)"
NO_CHECKPOINTING_B1_MIB = 80_776  # cell mem-nogc-b1: 512x768, two controls, batch 1, H200


def _batch_key(spec: Spec, index: int) -> KeyPath:
    """Where dataset `index`'s batch size was written: its own batch_size, else data.batch_size."""
    if spec.datasets[index].batch_size is not None:
        return ("datasets", index, "batch_size")
    return ("data", "batch_size")


def _batches(spec: Spec) -> list[tuple[int, KeyPath]]:
    """(batch size, key) of every dataset whose batch is above 1."""
    found = []
    for index in range(len(spec.datasets)):
        batch = spec.dataset_value(index, "batch_size")
        if batch > 1:
            found.append((batch, _batch_key(spec, index)))
    return found


def eval_batch(spec: Spec) -> list[tuple[int, KeyPath]]:
    """`fplora eval`'s batch where above 1: its worker runs the DiT at that batch with training's
    attention settings, so it takes the same attention path as a training batch of that size."""
    if spec.eval is not None and spec.eval.batch_size > 1:
        return [(spec.eval.batch_size, ("eval", "batch_size"))]
    return []


def _attention(spec: Spec) -> Iterator[Problem]:
    train = spec.train
    attention = train.attention
    seen: set[KeyPath] = set()
    for batch, key in [*_batches(spec), *eval_batch(spec)]:
        if train.split_attn or attention not in NO_VARLEN or key in seen:
            continue
        seen.add(key)
        # cells att-sdpa-b2, att-sdpa-dsb2 (a dataset's own batch_size) and att-flash3-b2
        failure = (
            f"batch {batch} with attention {attention} and no split_attn fails on the GPU at the first step:"
            " musubi-tuner's NotImplementedError 'No Attn Installed or batch_size > 1 is not supported"
            " in this configuration' (only flash_attn has a var-len kernel there)"
        )
        if attention == "flash3":
            fix = "use attention: sdpa with split_attn: true (FramePack has no flash3 kernel)"
        else:
            fix = "set train.split_attn: true"
        if key == ("eval", "batch_size"):
            fix += ", or eval.batch_size: 1 (the scores do not depend on it)"
        yield spec.problem(key, failure, fix)
    if attention == "flash3" and train.split_attn:
        # cell att-flash3-b1-split; frame_pack/hunyuan_video_packed.py:798-800 asserts the mode
        yield spec.problem(
            ("train", "split_attn"),
            "split_attn with attention flash3 fails on the GPU at the first step: musubi-tuner's"
            " AssertionError 'Unsupported attention mode: flash3'",
            "use attention: sdpa (FramePack has no flash3 kernel)",
        )
    elif attention == "flash3" and not _batches(spec):
        # cell att-flash3-b1 ran; frame_pack/hunyuan_video_packed.py:747-763 has no flash3 branch
        yield spec.problem(
            ("train", "attention"),
            "FramePack has no flash3 kernel: musubi-tuner runs PyTorch's sdpa instead",
            "write attention: sdpa",
            severity="warning",
        )


def _block_swap(spec: Spec) -> Iterator[Problem]:
    train, infer = spec.train, spec.infer
    swap = train.blocks_to_swap or 0
    if swap > MAX_BLOCKS_TO_SWAP:
        # cell swap-over (39); frame_pack/hunyuan_video_packed.py:1672
        yield spec.problem(
            ("train", "blocks_to_swap"),
            f"{swap} fails on the GPU when the DiT loads: FramePack's block swap takes at most"
            f" {MAX_BLOCKS_TO_SWAP} (AssertionError 'Cannot swap more than 19 double blocks and 39 single"
            " blocks')",
            f"use at most {MAX_TRAIN_BLOCKS_TO_SWAP} for training",
        )
    elif swap > MAX_TRAIN_BLOCKS_TO_SWAP:
        # cell swap-max (38); 37 by the backward hook's arithmetic above (39 single blocks swapped)
        yield spec.problem(
            ("train", "blocks_to_swap"),
            f"{swap} fails on the GPU in the first backward pass (RuntimeError 'Expected all tensors to"
            " be on the same device ... mat2 is on cpu'): block swap in training leaves at least two"
            " blocks of each kind on the GPU",
            f"use at most {MAX_TRAIN_BLOCKS_TO_SWAP}",
        )
    if infer.blocks_to_swap is not None and infer.blocks_to_swap > MAX_BLOCKS_TO_SWAP:
        # the inference DiT inherits the same enable_block_swap (hunyuan_video_packed_inference.py:20)
        yield spec.problem(
            ("infer", "blocks_to_swap"),
            f"{infer.blocks_to_swap} fails on the GPU when the DiT loads: FramePack's block swap takes"
            f" at most {MAX_BLOCKS_TO_SWAP}",
            f"use at most {MAX_BLOCKS_TO_SWAP}",
        )


def warmup_steps(spec: Spec) -> int:
    """The warmup steps musubi-tuner builds the scheduler with (training/trainer_base.py:288-291):
    an int as written, a float as that share of the run's steps (its max_train_steps × processes),
    cut to a whole number, so that 0.01 of a 20-step run is none. A resumed segment is given fewer
    steps (those left), never more: its warmup is never longer than the first segment's."""
    written = spec.train.optimizer.lr_warmup_steps or 0
    if isinstance(written, float):
        return int(written * spec.train.max_train_steps * spec.launch.num_processes)
    return written


def _scheduler(spec: Spec) -> Iterator[Problem]:
    if "lr_scheduler_type" in spec.musubi.config:
        return  # any torch/other scheduler class: musubi-tuner then ignores lr_scheduler and warmup
    optimizer = spec.train.optimizer
    name = optimizer.lr_scheduler
    warmup = warmup_steps(spec)
    adafactor = optimizer.type.lower() == "adafactor"
    relative = relative_step(spec)
    if name is not None and name not in SCHEDULERS and not name.startswith("adafactor"):
        # cell sched-unknown: ValueError 'cosine_annealing is not a valid SchedulerType'
        yield spec.problem(
            ("train", "optimizer", "lr_scheduler"),
            f"musubi-tuner has no lr_scheduler '{name}' and fails on the GPU before the first step",
            did_you_mean(name, set(SCHEDULERS)) or f"use one of {', '.join(SCHEDULERS)}",
        )
    elif name is not None and name.startswith("adafactor") and not adafactor:
        # training/trainer_base.py:327-330 asserts an Adafactor optimizer
        yield spec.problem(
            ("train", "optimizer", "lr_scheduler"),
            f"the adafactor scheduler needs the adafactor optimizer, not {optimizer.type}",
            "use another lr_scheduler (e.g. constant_with_warmup or cosine)",
        )
    yield from _scheduler_arguments(spec, name)
    if warmup <= 0:
        return
    if relative:
        # cell opt-adafactor-warmup: with relative_step (Adafactor's default) musubi-tuner replaces the
        # scheduler by Adafactor's own, which takes no warmup (trainer_base.py:201-210, :308-310)
        yield spec.problem(
            ("train", "optimizer", "lr_warmup_steps"),
            "adafactor with relative_step (its default) uses its own schedule, and musubi-tuner fails"
            " before the first step: 'does not require `num_warmup_steps`'",
            "remove lr_warmup_steps, or add args relative_step=False, scale_parameter=False,"
            " warmup_init=False and lr_scheduler: constant_with_warmup",
        )
    elif name in (None, "constant"):
        # cell sched-constant-warmup: musubi-tuner's default scheduler is constant (trainer_base.py:308-310,
        # :354-355): ValueError 'SchedulerType.CONSTANT does not require `num_warmup_steps`'
        which = (
            "no lr_scheduler (musubi-tuner's default is constant)"
            if name is None
            else "lr_scheduler constant"
        )
        yield spec.problem(
            ("train", "optimizer", "lr_warmup_steps"),
            f"a warmup with {which} fails on the GPU before the first step: 'constant does not require"
            " `num_warmup_steps`'",
            "set train.optimizer.lr_scheduler: constant_with_warmup (or another scheduler with warmup)",
        )


def _scheduler_arg_items(spec: Spec) -> list[str]:
    """`musubi.config.lr_scheduler_args` as a list of items (one string is one item)."""
    items = spec.musubi.config.get("lr_scheduler_args") or []
    return [str(item) for item in ([items] if isinstance(items, str) else items)]


def _scheduler_args(spec: Spec) -> dict[str, str]:
    """`musubi.config.lr_scheduler_args` (`key=value` items) as musubi-tuner splits them."""
    return dict(item.partition("=")[::2] for item in _scheduler_arg_items(spec))


def _scheduler_arguments(spec: Spec, name: str | None) -> Iterator[Problem]:
    """Schedulers that musubi-tuner calls with arguments they do not take, or without ones they need."""
    where = ("train", "optimizer", "lr_scheduler")
    kwargs = _scheduler_args(spec)
    if name in ("reduce_lr_on_plateau", "cosine_warmup_with_min_lr"):
        # training/trainer_base.py:423-429: every scheduler without a branch of its own is called with
        # num_warmup_steps, num_training_steps and num_decay_steps, which these two do not take
        # (transformers' ReduceLROnPlateau wrapper and get_cosine_with_min_lr_schedule_with_warmup_lr_rate):
        # TypeError before the first step
        yield spec.problem(
            where,
            f"musubi-tuner calls {name} with step counts it does not take and fails before the first step"
            " (TypeError: unexpected keyword argument)",
            "use cosine_with_min_lr (with musubi.config.lr_scheduler_min_lr_ratio), cosine or linear",
        )
    elif name == "cosine_with_min_lr":
        # training/trainer_base.py:390-398 passes min_lr_rate=lr_scheduler_min_lr_ratio (default None);
        # transformers' get_cosine_with_min_lr_schedule_with_warmup needs exactly one of min_lr and
        # min_lr_rate: ValueError 'One of min_lr or min_lr_rate should be set'
        ratio = spec.musubi.config.get("lr_scheduler_min_lr_ratio") is not None
        if ratio == ("min_lr" in kwargs):
            message = (
                "needs a floor: musubi-tuner fails before the first step with 'One of min_lr or"
                " min_lr_rate should be set'"
                if not ratio
                else "has both lr_scheduler_min_lr_ratio and min_lr: 'Only one of min_lr or min_lr_rate"
                " should be set'"
            )
            yield spec.problem(
                where,
                f"cosine_with_min_lr {message}",
                "set musubi.config.lr_scheduler_min_lr_ratio: 0.1 alone",
            )
    elif name == "piecewise_constant" and "step_rules" not in kwargs:
        # training/trainer_base.py:347-350 calls diffusers' get_piecewise_constant_schedule with the
        # lr_scheduler_args alone; its step_rules argument has no default: TypeError
        yield spec.problem(
            where,
            "piecewise_constant needs its step_rules, and musubi-tuner fails before the first step without"
            " them (TypeError: missing argument 'step_rules')",
            "add musubi.config.lr_scheduler_args: ['step_rules=\"1:10,0.1:20,0.01\"']",
        )


# Keyword arguments the built-in optimizers take (musubi-tuner passes optimizer_args as keywords,
# training/trainer_base.py:170-236): torch.optim.AdamW (torch 2.5-2.11), bitsandbytes' AdamW8bit
# (0.45-0.50, the union: newer ones dropped percentile_clipping and block_wise) and transformers'
# Adafactor. Any other name is a TypeError when the optimizer is built, after the models load.
OPTIMIZER_KEYWORDS = {
    "adamw": ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "foreach", "capturable",
              "differentiable", "fused"),
    "adamw8bit": ("lr", "betas", "eps", "weight_decay", "amsgrad", "optim_bits", "args", "min_8bit_size",
                  "percentile_clipping", "block_wise", "is_paged"),
    "adafactor": ("lr", "eps", "clip_threshold", "decay_rate", "beta1", "weight_decay", "scale_parameter",
                  "relative_step", "warmup_init"),
}  # fmt: skip


def _key_value_problem(item: str, *, literal: bool) -> str | None:
    """Why musubi-tuner cannot read an args item: it does `key, value = item.split("=")` and, for
    optimizer and scheduler args, `ast.literal_eval(value)`."""
    if item.count("=") != 1:
        return f"'{item}' is not one key=value (musubi-tuner splits it at '=' into exactly two parts)"
    if literal:
        value = item.partition("=")[2]
        try:
            ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return (
                f"the value of '{item}' is not a Python literal (musubi-tuner reads it with ast.literal_eval)"
            )
    return None


def _args(spec: Spec) -> Iterator[Problem]:
    """`args` items musubi-tuner fails to read before the first step, and optimizer keywords the
    optimizer does not take."""
    fix = (
        "write key=value with strings quoted, e.g. decay_type='cosine'; in a YAML [a, b] list, quote"
        ' items that hold commas: "betas=(0.9,0.99)"'
    )
    # training/trainer_base.py:170-174 (optimizer, literal_eval), :1561-1563 (network, split only)
    sources: list[tuple[KeyPath, list[str], bool]] = [
        (("train", "optimizer", "args"), spec.train.optimizer.args, True),
        (("train", "network", "args"), spec.train.network.args, False),
    ]
    # trainer_base.py:301-305, literal_eval too
    sources.append((("musubi", "config", "lr_scheduler_args"), _scheduler_arg_items(spec), True))
    for key, items, literal in sources:
        for index, item in enumerate(items):
            if found := _key_value_problem(item, literal=literal):
                yield spec.problem((*key, index), f"{found}: musubi-tuner fails before the first step", fix)
    optimizer = spec.train.optimizer
    known = OPTIMIZER_KEYWORDS.get(optimizer.type.lower(), ())
    for index, item in enumerate(optimizer.args if known else []):
        name = item.partition("=")[0].strip()
        if "=" in item and name not in known:
            hint = did_you_mean(name, set(known))
            yield spec.problem(
                ("train", "optimizer", "args", index),
                f"{optimizer.type} takes no argument '{name}': musubi-tuner fails with a TypeError when it"
                " builds the optimizer, after loading the models",
                hint or f"its arguments are {', '.join(known)}",
            )


def _network(spec: Spec) -> Iterator[Problem]:
    module = spec.train.network.module
    short = module.removeprefix("musubi_tuner.")
    name = short.removeprefix("networks.")
    if short.startswith("networks.") and name in OTHER_ARCH_NETWORK_MODULES:
        # training/trainer_base.py:1532-1538 imports it; its create_arch_network targets another model's
        # block classes, so no LoRA module is made for FramePack's DiT and the optimizer gets no
        # parameters (torch: 'optimizer got an empty parameter list') after the models load
        yield spec.problem(
            ("train", "network", "module"),
            f"{module} is musubi-tuner's network for another model: it finds none of FramePack's blocks,"
            " and training fails after the models load with an empty parameter list",
            f"write {LORA_NETWORK_MODULE} (LoHa and LoKr also fit: "
            + ", ".join(f"networks.{m}" for m in sorted(FRAMEPACK_NETWORK_MODULES))
            + ")",
        )


def _memory(spec: Spec) -> Iterator[Problem]:
    if spec.train.gradient_checkpointing:
        return
    batches = _batches(spec)
    if batches:
        batch = max(batch for batch, _ in batches)
        # cells mem-nogc-b1 (80,776 MiB) and mem-nogc-b4 (out of memory), 512x768, two controls, H200
        yield spec.problem(
            ("train", "gradient_checkpointing"),
            f"without gradient checkpointing, batch {batch} may not fit: at 512x768 with two controls"
            f" batch 1 peaked at {NO_CHECKPOINTING_B1_MIB:,} MiB and batch 4 ran out of memory on {H200}",
            "set gradient_checkpointing: true, or lower the batch",
            severity="warning",
        )


def _precision(spec: Spec) -> Iterator[Problem]:
    precision = spec.train.save_precision
    if precision != "bf16" and "lycoris" not in spec.musubi.generate:
        # cells inf-float-noscaled, inf-float-scaled, inf-fp16-noscaled: the pinned
        # fpack_generate_video merges the LoRA into the bf16 DiT, every prompt fails, it still exits 0
        yield spec.problem(
            ("train", "save_precision"),
            f"`fplora infer` cannot use a {precision} LoRA: musubi-tuner's generate fails every prompt"
            " with 'self and mat2 must have the same dtype, but got BFloat16 and Float' (fp8_scaled or not)",
            "set train.save_precision: bf16",
        )


_SHOWN = {"video": "as preview files", "image": "waiting for a key per picture"}
_SHOWN["console"] = _SHOWN["image"]


def _caching(spec: Spec) -> Iterator[Problem]:
    mode = spec.musubi.cache_latents.get("debug_mode")
    if mode is not None:
        # matrix rows cl-debug-*: fpack_cache_latents.py:404-408 shows the dataset and returns before
        # the VAE loads (console and image wait for a key per picture), exit 0 and no cache at all
        yield spec.problem(
            ("musubi", "cache_latents", "debug_mode"),
            f"debug_mode {mode} only shows the dataset ({_SHOWN.get(str(mode), 'a preview')}) and writes no"
            " latent cache, so training would find no data",
            "remove it (`fplora dataset stats` and `--plot` show the data)",
        )


def _generate(spec: Spec) -> Iterator[Problem]:
    generate = spec.musubi.generate
    for key in ("include_patterns", "exclude_patterns"):
        if generate.get(key) and not generate.get("lycoris"):
            # matrix row gen-include (benchmarks/rehearse_matrix_data.py): the nargs="*" list goes to
            # re.compile as one pattern, before any prompt runs
            yield spec.problem(
                ("musubi", "generate", key),
                "fpack_generate_video hands the whole list to re.compile (utils/lora_utils.py:45, from"
                " fpack_generate_video.py:467), which fails with `TypeError: unhashable type: 'list'`",
                "remove it (train a LoRA on the modules you want with train.network.args instead)",
            )
    fp8 = generate.get("fp8")
    if fp8 and not spec.infer.fp8_scaled:
        # cell inf-fp8-noscaled; fpack_generate_video.py:532-533 reads torch.float8e4m3fn
        yield spec.problem(
            ("musubi", "generate", "fp8"),
            "fp8 without fp8_scaled fails when the DiT loads: AttributeError 'module torch has no"
            " attribute float8e4m3fn' (a typo in musubi-tuner)",
            "remove musubi.generate.fp8 and set infer.fp8_scaled: true",
        )


def _compile(spec: Spec) -> Iterator[Problem]:
    train = spec.train
    if train.compile and train.split_attn and spec.musubi.config.get("compile_fullgraph"):
        # not run here: musubi-tuner's docs/torch_compile.md lists the pair as incompatible (split_attn
        # loops over the samples in Python, which one graph cannot hold)
        yield spec.problem(
            ("musubi", "config", "compile_fullgraph"),
            "compile_fullgraph cannot be used with split_attn: split_attn runs attention one sample at a"
            " time in a Python loop, which a full graph cannot hold (musubi-tuner's torch.compile notes)",
            "remove musubi.config.compile_fullgraph (train.compile alone compiles each block)",
        )
    if train.compile and train.split_attn:
        # benchmarks/results/2026-12-06-h100-preset-matrix.json (H100, torch 2.11.0), variants fp8 and
        # b1-swap6c: batch 1 x 16, no recomputation, compiled, each failed in the first step with
        # "RuntimeError: shape '[139997969932968, 2049723325592109125, 3072]' is invalid" from the compiled
        # graph's view replay inside split attention's per-sample loop (attn_varlen_func); the same
        # setting without swap and fp8 trained at 1.364 samples/s. A warning: one run each, on one torch.
        crashed: list[tuple[KeyPath, str]] = []
        if train.blocks_to_swap:
            crashed.append((("train", "blocks_to_swap"), f"blocks_to_swap {train.blocks_to_swap}"))
        if train.fp8_base:
            crashed.append((("train", "fp8_base"), "fp8_base"))
        for key, what in crashed:
            yield spec.problem(
                key,
                f"torch.compile with split_attn and {what} failed in the first training step on an H100"
                " (torch 2.11.0: an invalid shape out of a compiled graph in split attention's loop);"
                " compiled without swap and fp8 it trained",
                "set compile: false, or drop the swap / fp8 (fplora's presets compile only without them)",
                severity="warning",
            )


# FramePack's latents are the image / 8 (the VAE) cut into 2x2 patches by the DiT, so training sizes
# must be multiples of 16: musubi-tuner's own FramePack buckets step by 16 (dataset/bucket.py,
# RESOLUTION_STEPS_FRAMEPACK), but with enable_bucket false it takes `resolution` as the one bucket,
# verbatim (BucketSelector.__init__), and an odd latent does not tile into patches.
TRAIN_SIZE_STEP = 16
# fpack_generate_video.py:435-436 raises "`height` and `width` have to be divisible by 8".
GENERATE_SIZE_STEP = 8


def _multiple(value: int, step: int) -> int:
    return max(step, round(value / step) * step)


def _sizes(spec: Spec) -> Iterator[Problem]:
    said: set[KeyPath] = set()
    for index in range(len(spec.datasets)):
        if spec.dataset_value(index, "enable_bucket"):
            continue  # buckets are multiples of 16 whatever the resolution
        width, height = width_height(spec.dataset_value(index, "resolution"))
        own = spec.datasets[index].resolution is not None
        key: KeyPath = ("datasets", index, "resolution") if own else ("data", "resolution")
        if (width % TRAIN_SIZE_STEP or height % TRAIN_SIZE_STEP) and key not in said:
            said.add(key)
            yield spec.problem(
                key,
                f"{width}x{height} is not a multiple of {TRAIN_SIZE_STEP}: without enable_bucket musubi-tuner"
                " trains at exactly this size, whose latent the DiT's 2x2 patches cannot tile",
                f"write [{_multiple(width, TRAIN_SIZE_STEP)}, {_multiple(height, TRAIN_SIZE_STEP)}],"
                " or set enable_bucket: true",
            )
    section, prompts = spec.prompts_of("infer")
    for index, prompt in enumerate(prompts):
        width, height = width_height(spec.dataset_value(prompt.dataset, "resolution"))
        own = (
            spec.datasets[prompt.dataset].resolution is not None
            if prompt.dataset < len(spec.datasets)
            else False
        )
        key = ("datasets", prompt.dataset, "resolution") if own else ("data", "resolution")
        if prompt.width and prompt.width % GENERATE_SIZE_STEP:
            key = (section, "prompts", index, "width")
        elif prompt.height and prompt.height % GENERATE_SIZE_STEP:
            key = (section, "prompts", index, "height")
        width, height = prompt.width or width, prompt.height or height
        if (width % GENERATE_SIZE_STEP or height % GENERATE_SIZE_STEP) and key not in said:
            said.add(key)
            yield spec.problem(
                key,
                f"`fplora infer` renders {section} prompt {index + 1} at {width}x{height}, and musubi-tuner's"
                f" generate refuses sizes that are not multiples of {GENERATE_SIZE_STEP}",
                f"use {_multiple(width, TRAIN_SIZE_STEP)}x{_multiple(height, TRAIN_SIZE_STEP)}",
            )


RULES = (
    _attention,
    _block_swap,
    _scheduler,
    _args,
    _network,
    _memory,
    _precision,
    _generate,
    _caching,
    _sizes,
    _compile,
)


def check_combinations(spec: Spec) -> list[Problem]:
    """Every combination of `spec`'s options that fails (errors) or ran out of memory (warnings)."""
    return [problem for rule in RULES for problem in rule(spec)]
