"""Every musubi-tuner call fplora's workers make, by name, against the commit they were written for.

The workers (`sweep.py`, `eval.py`) drive musubi-tuner's internals, private methods among them, whose
signatures and tuple results are not an interface musubi-tuner keeps. So they call nothing of
musubi-tuner directly: each call goes through a function here, which names it in `CALLS` (where it
lives and the parameters it had at `PINNED_COMMIT`), passes arguments by those names where it can,
and turns a positional tuple result into a named one. `check()` compares `CALLS` with the
musubi-tuner that is installed; a worker runs it before loading any model, and the test marked
`musubi` runs it in the CPU musubi-tuner Python (tests/test_musubi_calls.py), so a new pin that
renames a parameter or a method fails there, not ten minutes into a GPU call.

Runs only in the musubi-tuner Python (torch and musubi-tuner are imported lazily, the standard library
at the top); a worker loads this file by its path, since that Python need not have fplora installed.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

PINNED_COMMIT = "30c658c4f4b0bf05038b3346eff9670259b10fc7"  # = src/fplora/musubi/schema.json's

GENERATE = "musubi_tuner.fpack_generate_video"
TRAIN = "musubi_tuner.fpack_train_network"
TRAINER = f"{TRAIN}:FramePackNetworkTrainer"
NETWORK = "musubi_tuner.networks.lora:LoRANetwork"
DIT = "musubi_tuner.frame_pack.hunyuan_video_packed:HunyuanVideoTransformer3DModelPacked"


class Call(NamedTuple):
    where: str  # "module:attribute[.attribute]"
    params: tuple[str, ...]  # its parameters at PINNED_COMMIT, without self


# name used here -> where it lives in musubi-tuner and its parameters at the pinned commit
CALLS: dict[str, Call] = {
    # the generate script's batch mode (the sweep worker)
    "parse_generate_args": Call(f"{GENERATE}:parse_args", ()),
    "preprocess_prompts_for_batch": Call(
        f"{GENERATE}:preprocess_prompts_for_batch", ("prompt_lines", "base_args")
    ),
    "get_generation_settings": Call(f"{GENERATE}:get_generation_settings", ("args",)),
    "apply_overrides": Call(f"{GENERATE}:apply_overrides", ("args", "overrides")),
    "load_vae": Call(
        f"{GENERATE}:load_vae",
        ("vae_path", "vae_chunk_size", "vae_spatial_tile_sample_min_size", "vae_tiling", "device"),
    ),
    "load_image_encoders": Call(f"{GENERATE}:load_image_encoders", ("args",)),
    "prepare_image_inputs": Call(
        f"{GENERATE}:prepare_image_inputs", ("args", "device", "vae", "shared_models")
    ),
    "load_text_encoder1": Call(f"{GENERATE}:load_text_encoder1", ("args", "fp8_llm", "device")),
    "load_text_encoder2": Call(f"{GENERATE}:load_text_encoder2", ("args",)),
    "prepare_text_inputs": Call(f"{GENERATE}:prepare_text_inputs", ("args", "device", "shared_models")),
    "load_dit_model": Call(f"{GENERATE}:load_dit_model", ("args", "device")),
    "generate": Call(
        f"{GENERATE}:generate",
        ("args", "gen_settings", "shared_models", "precomputed_image_data", "precomputed_text_data"),
    ),
    "save_latent": Call(f"{GENERATE}:save_latent", ("latent", "args", "height", "width")),
    "save_output": Call(
        f"{GENERATE}:save_output", ("args", "vae", "latent", "device", "original_base_names")
    ),
    "clean_memory_on_device": Call(f"{GENERATE}:clean_memory_on_device", ("device",)),
    "synchronize_device": Call(f"{GENERATE}:synchronize_device", ("device",)),
    # the training script's trainer, through the seams its train() uses (the evaluation worker)
    "setup_parser_common": Call(f"{TRAIN}:setup_parser_common", ()),
    "framepack_setup_parser": Call(f"{TRAIN}:framepack_setup_parser", ("parser",)),
    "read_config_from_file": Call(f"{TRAIN}:read_config_from_file", ("args", "parser")),
    "trainer": Call(TRAINER, ()),  # the class: its constructor's parameters
    "handle_model_specific_args": Call(f"{TRAINER}.handle_model_specific_args", ("args",)),
    "build_dataset": Call(f"{TRAINER}._build_dataset", ("args",)),
    "prepare_accelerator_and_dtypes": Call(f"{TRAINER}._prepare_accelerator_and_dtypes", ("args",)),
    "load_dit_and_swap": Call(f"{TRAINER}._load_dit_and_swap", ("args", "accelerator", "dit_weight_dtype")),
    "compile_transformer": Call(f"{TRAINER}.compile_transformer", ("args", "transformer")),
    "scale_shift_latents": Call(f"{TRAINER}.scale_shift_latents", ("latents",)),
    "process_batch": Call(
        f"{TRAINER}.process_batch",
        (
            "args",
            "accelerator",
            "transformer",
            "network",
            "batch",
            "latents",
            "noise",
            "noise_scheduler",
            "dit_dtype",
            "network_dtype",
            "vae",
            "global_step",
        ),
    ),
    "flow_match_scheduler": Call(
        "musubi_tuner.modules.scheduling_flow_match_discrete:FlowMatchDiscreteScheduler",
        ("num_train_timesteps", "shift", "reverse", "solver", "n_tokens"),
    ),
    "create_arch_network": Call(
        "musubi_tuner.networks.lora_framepack:create_arch_network",
        (
            "multiplier",
            "network_dim",
            "network_alpha",
            "vae",
            "text_encoders",
            "unet",
            "neuron_dropout",
            "kwargs",
        ),
    ),
    "apply_to": Call(f"{NETWORK}.apply_to", ("text_encoders", "unet", "apply_text_encoder", "apply_unet")),
    "set_multiplier": Call(f"{NETWORK}.set_multiplier", ("multiplier",)),
    "load_weights": Call(f"{NETWORK}.load_weights", ("file",)),
    "move_to_device_except_swap_blocks": Call(f"{DIT}.move_to_device_except_swap_blocks", ("device",)),
    "switch_block_swap_for_inference": Call(f"{DIT}.switch_block_swap_for_inference", ()),
}


def resolve(name: str) -> Any:
    """The musubi-tuner object `CALLS[name]` names (imports its module)."""
    module, _, path = CALLS[name].where.partition(":")
    found: Any = importlib.import_module(module)
    for part in path.split("."):
        found = getattr(found, part)
    return found


def check() -> list[str]:
    """The installed musubi-tuner against `CALLS`: one line per call that is gone or whose parameters
    changed since the pinned commit; empty when every call fits. A function that takes only `*args,
    **kwargs` fits any call: that is a wrapper, such as the CPU rehearsal's stand-in model loaders."""
    problems = []
    for name, call in CALLS.items():
        try:
            target = resolve(name)
        except (ImportError, AttributeError) as error:
            problems.append(f"{call.where}: gone ({type(error).__name__}: {error})")
            continue
        signature = inspect.signature(target)
        if _takes_anything(signature):
            continue  # a wrapper that passes everything on (as stand-in models are patched in)
        params = tuple(p for p in signature.parameters if p != "self")
        if params != call.params:
            problems.append(f"{call.where}: parameters {params}, written for {call.params}")
    return problems


def _takes_anything(signature: inspect.Signature) -> bool:
    kinds = {p.kind for p in signature.parameters.values()}
    return kinds == {inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD}


def require_pinned_calls() -> None:
    """Raise before any model is loaded when the installed musubi-tuner no longer fits `CALLS`."""
    problems = check()
    if problems:
        raise RuntimeError(
            f"this musubi-tuner differs from {PINNED_COMMIT[:8]}, the commit fplora's workers were written"
            f" for: {'; '.join(problems)} — install musubi-tuner at {PINNED_COMMIT[:8]} (README)"
        )


@contextmanager
def _argv(argv: list[str]) -> Iterator[None]:
    """musubi-tuner's parsers read sys.argv (read_config_from_file parses it again, parser_common.py:807):
    it must hold the script's own command line while they run, not the worker's --plan."""
    saved = sys.argv
    sys.argv = argv
    try:
        yield
    finally:
        sys.argv = saved


def _call(name: str, *args: Any, **kwargs: Any) -> Any:
    target: Callable[..., Any] = resolve(name)
    return target(*args, **kwargs)


# ------------------------------------------------------------------------------ generate (sweep worker)
class ImageEncoders(NamedTuple):
    feature_extractor: Any
    image_encoder: Any


class TextEncoder(NamedTuple):
    tokenizer: Any
    model: Any


class Generated(NamedTuple):
    vae: Any  # generate() returns the VAE it loaded, or None when given the shared one
    latent: Any


def generate_args(argv: list[str]) -> Any:
    """fpack_generate_video's own parser and checks on a separate run's options."""
    with _argv(["fpack_generate_video", *argv]):
        return _call("parse_generate_args")


def prompts_for_batch(lines: list[str], args: Any) -> list[dict[str, Any]]:
    return list(_call("preprocess_prompts_for_batch", prompt_lines=lines, base_args=args))


def generation_settings(args: Any) -> Any:
    return _call("get_generation_settings", args=args)


def with_overrides(args: Any, prompt: dict[str, Any]) -> Any:
    """One prompt line's args, as batch mode makes them."""
    return _call("apply_overrides", args=args, overrides=prompt)


def load_vae(args: Any, device: str) -> Any:
    return _call(
        "load_vae",
        vae_path=args.vae,
        vae_chunk_size=args.vae_chunk_size,
        vae_spatial_tile_sample_min_size=args.vae_spatial_tile_sample_min_size,
        vae_tiling=args.vae_tiling,
        device=device,
    )


def load_image_encoders(args: Any) -> ImageEncoders:
    return ImageEncoders(*_call("load_image_encoders", args=args))


def image_inputs(args: Any, device: Any, vae: Any, encoders: ImageEncoders) -> dict[str, Any]:
    shared = {"feature_extractor": encoders.feature_extractor, "image_encoder": encoders.image_encoder}
    return dict(_call("prepare_image_inputs", args=args, device=device, vae=vae, shared_models=shared))


def load_text_encoder1(args: Any, fp8_llm: bool, device: Any) -> TextEncoder:
    return TextEncoder(*_call("load_text_encoder1", args=args, fp8_llm=fp8_llm, device=device))


def load_text_encoder2(args: Any) -> TextEncoder:
    return TextEncoder(*_call("load_text_encoder2", args=args))


def text_inputs(args: Any, device: Any, encoder1: TextEncoder, encoder2: TextEncoder) -> dict[str, Any]:
    shared = {
        "tokenizer1": encoder1.tokenizer,
        "text_encoder1": encoder1.model,
        "tokenizer2": encoder2.tokenizer,
        "text_encoder2": encoder2.model,
        "conds_cache": {},
    }
    return dict(_call("prepare_text_inputs", args=args, device=device, shared_models=shared))


def load_dit(args: Any, device: Any) -> Any:
    """The DiT with the args' LoRA merged while the weights stream in, as a separate run loads it."""
    return _call("load_dit_model", args=args, device=device)


def generate(
    args: Any, settings: Any, shared: dict[str, Any], image: dict[str, Any], text: dict[str, Any]
) -> Generated:
    return Generated(
        *_call(
            "generate",
            args=args,
            gen_settings=settings,
            shared_models=shared,
            precomputed_image_data=image,
            precomputed_text_data=text,
        )
    )


def save_latent(latent: Any, args: Any, height: int, width: int) -> str:
    return str(_call("save_latent", latent=latent, args=args, height=height, width=width))


def save_output(args: Any, vae: Any, latent: Any, device: Any) -> None:
    _call("save_output", args=args, vae=vae, latent=latent, device=device)


def clean_memory(device: Any) -> None:
    _call("clean_memory_on_device", device=device)


def synchronize(device: Any) -> None:
    _call("synchronize_device", device=device)


# ------------------------------------------------------------------------------ training (eval worker)
class Dataset(NamedTuple):
    group: Any
    collator: Any
    epoch: Any


class Dtypes(NamedTuple):
    accelerator: Any
    weight_dtype: Any
    dit_dtype: Any
    dit_weight_dtype: Any
    vae_dtype: Any


class BatchLoss(NamedTuple):
    loss: Any
    logs: dict[str, float]


def training_args(config_file: str) -> Any:
    """fpack_train_network's parser with the run's config file read, as its main() does."""
    parser = _call("framepack_setup_parser", parser=_call("setup_parser_common"))
    argv = ["fpack_train_network", "--config_file", config_file]
    with _argv(argv):
        args = parser.parse_args(argv[1:])
        return _call("read_config_from_file", args=args, parser=parser)


def trainer(args: Any) -> Any:
    """A FramePackNetworkTrainer with the model-specific args handled, as main() makes it."""
    made = _call("trainer")
    made.handle_model_specific_args(args=args)
    return made


def build_dataset(made: Any, args: Any) -> Dataset:
    return Dataset(*made._build_dataset(args))


def accelerator_and_dtypes(made: Any, args: Any) -> Dtypes:
    return Dtypes(*made._prepare_accelerator_and_dtypes(args))


def load_dit_and_swap(made: Any, args: Any, accelerator: Any, dit_weight_dtype: Any) -> Any:
    return made._load_dit_and_swap(args=args, accelerator=accelerator, dit_weight_dtype=dit_weight_dtype)


def blocks_to_swap(made: Any) -> int:
    """How many blocks the trainer swaps (set by _load_dit_and_swap)."""
    return int(made.blocks_to_swap or 0)


def swap_for_inference(transformer: Any, device: Any) -> None:
    """Forwards only, many of them: the way training's own sampling runs a swapping DiT."""
    transformer.move_to_device_except_swap_blocks(device=device)
    transformer.switch_block_swap_for_inference()


def compile_transformer(made: Any, args: Any, transformer: Any) -> Any:
    return made.compile_transformer(args=args, transformer=transformer)


def scale_shift_latents(made: Any, latents: Any) -> Any:
    return made.scale_shift_latents(latents=latents)


def batch_loss(
    made: Any,
    args: Any,
    accelerator: Any,
    transformer: Any,
    network: Any,
    batch: dict[str, Any],
    latents: Any,
    noise: Any,
    scheduler: Any,
    dit_dtype: Any,
    network_dtype: Any,
) -> BatchLoss:
    """Training's loss on one batch at the batch's own timesteps (no VAE, step 0)."""
    loss, logs = made.process_batch(
        args=args,
        accelerator=accelerator,
        transformer=transformer,
        network=network,
        batch=batch,
        latents=latents,
        noise=noise,
        noise_scheduler=scheduler,
        dit_dtype=dit_dtype,
        network_dtype=network_dtype,
        vae=None,
        global_step=0,
    )
    return BatchLoss(loss, logs)


def flow_match_scheduler(shift: float) -> Any:
    """Training's noise scheduler (reverse, euler), as the trainer builds it."""
    return _call("flow_match_scheduler", shift=shift, reverse=True, solver="euler")


def network_module(name: str) -> Any:
    """The run's network module, found as training finds it: short names like `networks.lora_framepack`
    resolve inside the musubi_tuner package, whose folder training puts on sys.path
    (training/trainer_base.py:1536, one level below the package)."""
    package = os.path.dirname(os.path.abspath(importlib.import_module(TRAIN).__file__ or ""))
    if package not in sys.path:
        sys.path.append(package)
    return importlib.import_module(name)


def create_network(module: Any, args: Any, transformer: Any) -> Any:
    """The run's LoRA network at multiplier 1, applied to the DiT only, as training creates it."""
    kwargs = dict(arg.split("=", 1) for arg in args.network_args or [])
    network = module.create_arch_network(
        multiplier=1.0,
        network_dim=args.network_dim,
        network_alpha=args.network_alpha,
        vae=None,
        text_encoders=None,
        unet=transformer,
        neuron_dropout=None,
        **kwargs,
    )
    network.apply_to(text_encoders=None, unet=transformer, apply_text_encoder=False, apply_unet=True)
    return network


def set_multiplier(network: Any, multiplier: float) -> None:
    network.set_multiplier(multiplier=multiplier)


def load_weights(network: Any, path: str) -> Any:
    """musubi-tuner's loader (load_state_dict, not strict): the missing and unexpected keys."""
    return network.load_weights(file=path)
