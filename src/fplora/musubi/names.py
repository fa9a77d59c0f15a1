"""Every name musubi-tuner uses that fplora must match: modules, output files, prompt-line options.

Kept in one place so that a new musubi-tuner version means editing this module and the bundled
schema, nothing else. The patterns mirror `schema.json`'s `output_names` (tests check that).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

SCRIPTS = {
    "cache_latents": "fpack_cache_latents",
    "cache_text_encoder": "fpack_cache_text_encoder_outputs",
    "train": "fpack_train_network",
    "generate": "fpack_generate_video",
}
"""fplora's step → the musubi-tuner script that does it (its name in the bundled schema)."""

MODULES = {step: f"musubi_tuner.{script}" for step, script in SCRIPTS.items()}
"""fplora's step → the `python -m` module that does the work."""

PASS_THROUGH_SCRIPT = {
    "config": SCRIPTS["train"],
    "cache_latents": SCRIPTS["cache_latents"],
    "cache_text_encoder": SCRIPTS["cache_text_encoder"],
    "generate": SCRIPTS["generate"],
}
"""A pass-through section of the spec (`musubi.<section>`) → the script that takes its options."""

ACCELERATE_LAUNCH_MODULE = "accelerate.commands.launch"
"""Run as `<python> -m accelerate.commands.launch` so accelerate comes from musubi-tuner's Python."""

LORA_NETWORK_MODULE = "networks.lora_framepack"

FRAMEPACK_NETWORK_MODULES = frozenset({"lora_framepack", "loha", "lokr"})
"""musubi-tuner's network modules that find FramePack's blocks: its own LoRA
(`networks/lora_framepack.py`, FRAMEPACK_TARGET_REPLACE_MODULES), and LoHa and LoKr, which detect
the architecture from the DiT's block classes (`networks/network_arch.py`)."""

OTHER_ARCH_NETWORK_MODULES = frozenset(
    {
        "lora",
        "lora_flux",
        "lora_flux_2",
        "lora_hidream_o1",
        "lora_hv_1_5",
        "lora_ideogram4",
        "lora_kandinsky",
        "lora_krea2",
        "lora_qwen_image",
        "lora_wan",
        "lora_zimage",
    }
)
"""musubi-tuner's network modules for other models: their target block classes (e.g. `networks/lora.py`,
HunyuanVideo's MMDoubleStreamBlock) do not exist in FramePack's DiT, so they wrap nothing."""

# Prompt-line option letters, by spec field. Both parsers split a line on ' --' and read these
# letters the same way (training: training/sampling_prompts.py:14 `line_to_prompt_dict`; generate:
# fpack_generate_video.py:313 `parse_prompt_line`), with three exceptions fplora works around:
# - `--g` is the distilled guidance in training samples (sampling_prompts.py:47 → `guidance_scale`,
#   fpack_train_network.py:319 `distilled_guidance_scale`) but real CFG in generate
#   (fpack_generate_video.py:350 `g` or `l` → `guidance_scale`, :1418 `real_guidance_scale`), which takes
#   the distilled guidance only from its command line (`--embedded_cfg_scale`, :185, used at :1419);
# - `--l` is real CFG in both (sampling_prompts.py:57 → `cfg_scale`, fpack_train_network.py:318;
#   generate as above), so the spec's `cfg_scale` is `--l` in both files;
# - `--fs` is read by both but used only by generate (:353 → `flow_shift`, :1421 `shift`): the training
#   sampler takes it (trainer_base.py:882) and never passes it on (fpack_train_network.py:321 and :450
#   leave `shift` commented out), so training samples always use FramePack's dynamic shift
#   (frame_pack/k_diffusion_hunyuan.py:74, `shift=None`), as generate does without `--fs` (:218, default
#   None). fplora writes `--fs` only into infer lines, and only when `infer.flow_shift` is set.
# `--f` (frames vs seconds) is never written.
PROMPT_OPTION = {
    "image": "i",
    "control_image": "ci",
    "one_frame": "of",
    "width": "w",
    "height": "h",
    "seed": "d",
    "steps": "s",
    "cfg_scale": "l",
    "negative_prompt": "n",
}
"""Letters that mean the same in training sample prompts and in `fpack_generate_video --from_file`."""

TRAINING_PROMPT_OPTION = {**PROMPT_OPTION, "guidance_scale": "g"}
"""Training sample prompt lines: `--g` is FramePack's distilled guidance there."""

GENERATE_PROMPT_OPTION = {**PROMPT_OPTION, "flow_shift": "fs"}
"""`--from_file` lines: `--fs` is honoured there (infer only)."""

GENERATE_DISTILLED_GUIDANCE = "embedded_cfg_scale"
"""generate's dest for the distilled guidance: a command-line option, one value for the whole run."""

DISTILLED_GUIDANCE_DEFAULT = 10.0
"""Both scripts' default distilled guidance: `default_guidance_scale` (fpack_train_network.py:58) for a
sample line without `--g`, and `--embedded_cfg_scale` (fpack_generate_video.py:186)."""

LATENT_WINDOW_SIZE = {
    "dataset": "fp_latent_window_size",
    "train": "latent_window_size",
    "generate": "latent_window_size",
}
"""Where each step takes FramePack's latent window size (default 9 in all three): caching places the
post and 2x/4x clean latents after it (fpack_cache_latents.py:295, :307, :313), and so do training
samples (fpack_train_network.py:185 from the training args, :382, :412, :421) and generate
(fpack_generate_video.py:184, :1538, :1577, :1586). A window set for caching alone would sample with
other indices than the model was trained on."""

MAX_TRAIN_EPOCHS_LINE = "training/trainer_base.py:1640"
"""Where `max_train_epochs` replaces `max_train_steps`, the command line's included."""


def lora_step_file(output_name: str, step: int) -> str:
    return f"{output_name}-step{step:08d}.safetensors"


def state_step_dir(output_name: str, step: int) -> str:
    return f"{output_name}-step{step:08d}-state"


def lora_final_file(output_name: str) -> str:
    return f"{output_name}.safetensors"


STATE_STEP_SUFFIX = re.compile(r"-step(\d{8})-state$")
"""The step in any step state folder's name, whatever its output name."""


STATE_SUFFIX = "-state"


def state_final_dir(output_name: str) -> str:
    return f"{output_name}{STATE_SUFFIX}"


def lora_of_state(state_dir_name: str) -> str | None:
    """The LoRA file saved with a state folder (`x-step00000100-state` → `x-step00000100.safetensors`),
    or None for a name that is not a state folder's."""
    if not state_dir_name.endswith(STATE_SUFFIX):
        return None
    return state_dir_name.removesuffix(STATE_SUFFIX) + ".safetensors"


LORA_WEIGHTS_HASH_KEY = "sshs_model_hash"
"""In a LoRA's safetensors metadata: sha256 of the tensor data (`model_utils.precalculate_safetensors_hashes`,
written by every `save_weights`), so the step file and the final file of one step share it."""


@dataclass(frozen=True)
class Output:
    """One training output found on disk, parsed from its musubi-tuner name."""

    path: Path
    kind: str  # "lora" or "state"
    step: int | None  # None for the final file/state written at the end of training
    epoch: int | None = None


def parse_output(name: str, output_name: str, path: Path) -> Output | None:
    """Parse a file or folder name written by `fpack_train_network` for `output_name`."""
    base = re.escape(output_name)
    patterns = (
        (rf"^{base}-step(\d{{8}})\.safetensors$", "lora", "step"),
        (rf"^{base}-step(\d{{8}})-state$", "state", "step"),
        (rf"^{base}-(\d{{6}})\.safetensors$", "lora", "epoch"),
        (rf"^{base}-(\d{{6}})-state$", "state", "epoch"),
        (rf"^{base}\.safetensors$", "lora", None),
        (rf"^{base}-state$", "state", None),
    )
    for pattern, kind, unit in patterns:
        match = re.match(pattern, name)
        if match:
            number = int(match.group(1)) if unit else None
            return Output(
                path=path,
                kind=kind,
                step=number if unit == "step" else None,
                epoch=number if unit == "epoch" else None,
            )
    return None


LATENT_CACHE_SUFFIX = "_fp.safetensors"
"""How every `fpack_cache_latents` file name ends, after the image stem and the bucket size."""

TEXT_ENCODER_CACHE_SUFFIX = "_fp_te.safetensors"
"""How every `fpack_cache_text_encoder_outputs` file name ends, after the image stem."""


def latent_cache_file(image: Path, width: int, height: int) -> str:
    """`fpack_cache_latents` output for one image (the bucketed size, width x height)."""
    return f"{image.stem}_{width:04d}x{height:04d}{LATENT_CACHE_SUFFIX}"


_LATENT_CACHE = re.compile(r"^(.*)_\d{4}x\d{4}_fp\.safetensors$")


def latent_cache_stem(name: str) -> str | None:
    """The image stem a latent cache file belongs to, or None for other files."""
    match = _LATENT_CACHE.match(name)
    return match.group(1) if match else None


def text_encoder_cache_file(image: Path) -> str:
    return f"{image.stem}{TEXT_ENCODER_CACHE_SUFFIX}"


_SHARD = re.compile(r"^(?P<prefix>.*-)(?P<index>\d+)-of-(?P<count>\d+)(?P<suffix>\.[^.]+)$")


def shard_names(name: str) -> list[str]:
    """Every shard's file name when `name` is one shard of a split model file, else `[]`.

    Mirrors musubi-tuner's `load_split_weights`, which rebuilds every shard's name with five-digit
    numbers (`{prefix}{k:05d}-of-{count:05d}`) whatever shard the user named.
    """
    match = _SHARD.match(name)
    if match is None:
        return []
    count = int(match["count"])
    return [f"{match['prefix']}{k:05d}-of-{count:05d}{match['suffix']}" for k in range(1, count + 1)]


TRAINING_SAMPLE_DIR = "sample"
"""Training samples go to `{output_dir}/sample/{output_name}_{step:06d}_{index:02d}_{time}_{seed}_000.png`."""

GENERATE_IMAGE_GLOB = "*__000.png"
"""One-frame `--from_file` images: `{save_path}/{YYYYmmdd-HHMMSS-mmm}_{seed}__000.png`."""

GENERATE_SEED_RE = re.compile(r"^\d{8}-\d{6}-\d{3}_(-?\d+)__000\.png$")
"""A one-frame image's seed: as generate prints it (`_-3__000.png` for `--d -3`: torch takes any seed)."""

GENERATE_LATENT_GLOB = "*_latent.safetensors"
"""`save_latent`: `{save_path}/{time_flag}_{seed}_latent.safetensors` (output_type latent, latent_images,
both); seen on an H100 as `20261125-224354-309_42_latent.safetensors`."""

GENERATE_LATENT_SEED_RE = re.compile(r"^\d{8}-\d{6}-\d{3}_(-?\d+)_latent\.safetensors$")

GENERATE_VIDEO_GLOB = "*_.mp4"
"""`save_video` from `--from_file` (output_type video, both): `{save_path}/{time_flag}_{seed}_.mp4`; batch
mode passes an empty original base name, which still adds its `_` (read at 30c658c4, not run)."""

GENERATE_VIDEO_SEED_RE = re.compile(r"^\d{8}-\d{6}-\d{3}_(-?\d+)_\.mp4$")


@dataclass(frozen=True)
class GenerateOutput:
    """One kind of file `fpack_generate_video --from_file` writes per prompt."""

    noun: str  # for messages, through problems.plural: "image"
    glob: str
    seed_re: re.Pattern[str]


GENERATE_IMAGES = GenerateOutput("image", GENERATE_IMAGE_GLOB, GENERATE_SEED_RE)
GENERATE_LATENTS = GenerateOutput("latent", GENERATE_LATENT_GLOB, GENERATE_LATENT_SEED_RE)
GENERATE_VIDEOS = GenerateOutput("video", GENERATE_VIDEO_GLOB, GENERATE_VIDEO_SEED_RE)

GENERATE_OUTPUTS: dict[str, tuple[GenerateOutput, ...]] = {
    "video": (GENERATE_VIDEOS,),
    "images": (GENERATE_IMAGES,),
    "latent": (GENERATE_LATENTS,),
    "both": (GENERATE_LATENTS, GENERATE_VIDEOS),
    "latent_images": (GENERATE_LATENTS, GENERATE_IMAGES),
}
"""`--output_type` → the files each prompt gives, in the order written (every latent is saved before
any is decoded). The last is the one to show the user."""

TRAIN_STEP_RE = re.compile(
    r"steps:\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)\s+\[[^\]]*?avr_loss=([-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|nan|inf))\]"
)
"""tqdm bar of `fpack_train_network` (main process only): step, total, running average loss.
Each step is drawn twice (old loss, then new): keep the last match per step."""

GENERATE_PROMPT_ERROR = "Error generating latent for prompt"
"""Logged by `fpack_generate_video` when one prompt fails; the process still exits 0."""

_PROMPT_TRAP = re.compile(r"^(?:(?:w|h|f|d|s) \d|(?:g|fs|l) [\d.]|(?:n|i|ei|cn|ci|of) .)", re.IGNORECASE)
"""The training sample parser's option patterns (`re.match`, case-insensitive, one space), which it
also tries on the prompt text itself (training/sampling_prompts.py:14-100)."""

ADDED_PROMPT_OPTIONS = frozenset({"ci"})
"""Options the training sample parser adds to a list rather than replaces: one read off the text stays
however many the line sets after it (an extra control image)."""


def option_value_problem(text: str) -> str | None:
    """Why a value written into a prompt line (the text, `--n <negative prompt>`) would be misread."""
    if " --" in text:
        return "contains ' --', which musubi-tuner reads as the start of an option"
    if "\n" in text or "\r" in text:
        return "contains a line break; a prompt file holds one prompt per line"
    return None


def prompt_text_problem(text: str, set_later: Collection[str] | None = ()) -> str | None:
    """Why musubi-tuner's prompt-line parsers would misread this prompt text, or None.

    Lines are split on ' --', and the training parser matches its option patterns against the
    prompt part too: a caption starting with "L 2" sets the real CFG scale to 2. `set_later`: the
    options the line sets itself after its text (its letters, lower case), whose values replace what
    the training parser read off the text ("I like ..." gives the start image "like ...", which the
    line's own `--i` replaces), except one it adds to a list (`ADDED_PROMPT_OPTIONS`); None for a line
    that only generate reads (`--from_file`), whose parser takes options only after the first ' --'.
    """
    if not text.strip():
        return "is empty: the line would start with its first option, which musubi-tuner reads as the prompt"
    if text.strip().startswith("#"):
        return "starts with '#': musubi-tuner skips such lines of a prompt file as comments"
    value = option_value_problem(text)
    if value:
        return value
    match = _PROMPT_TRAP.match(text)
    if match is None or set_later is None:
        return None
    word = match.group(0).split()[0]
    option = word.lower()
    if option in set_later and option not in ADDED_PROMPT_OPTIONS:
        return None
    return f"starts with '{word} ', which musubi-tuner's prompt parser reads as the --{option} option"


# How `fpack_train_network` turns optimizer_type into a class (`NetworkTrainer.get_optimizer` in
# training/trainer_base.py): these lower-cased names first, then any other name without a dot is
# `getattr(torch.optim, name)` (case-sensitive), and `a.b.Class` is `import a.b` + `getattr(.., "Class")`.
# A name that resolves to nothing fails only after the models are loaded.
OPTIMIZER_BUILT_IN = ("adamw", "adamw8bit", "adafactor")
"""Matched case-insensitively: torch's AdamW, bitsandbytes' AdamW8bit, transformers' Adafactor."""

TORCH_OPTIMIZERS = (
    "ASGD",
    "Adadelta",
    "Adafactor",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "Muon",
    "NAdam",
    "RAdam",
    "RMSprop",
    "Rprop",
    "SGD",
)
"""`torch.optim` classes musubi-tuner can train with (Adafactor since torch 2.5, Muon since 2.9)."""

TORCH_OPTIMIZERS_UNUSABLE = {
    "LBFGS": "needs a closure in step(), which musubi-tuner's training loop does not pass",
    "SparseAdam": "works only with sparse gradients, and LoRA's are dense",
    "Optimizer": "is torch's abstract base class, not an optimizer",
}
"""`torch.optim` names that resolve but fail on the first step (or at construction)."""

OPTIMIZER_CLASS_PATHS = {
    **{
        name.lower(): f"bitsandbytes.optim.{name}"
        for name in (
            "Adam8bit",
            "Adagrad8bit",
            "AdEMAMix8bit",
            "LAMB8bit",
            "LARS8bit",
            "Lion8bit",
            "PagedAdam8bit",
            "PagedAdamW8bit",
            "PagedAdEMAMix8bit",
            "PagedLion8bit",
            "RMSprop8bit",
            "SGD8bit",
        )
    },
    "prodigy": "prodigyopt.Prodigy",
    "lion": "lion_pytorch.Lion",
    "dadaptadam": "dadaptation.DAdaptAdam",
    "adamwschedulefree": "schedulefree.AdamWScheduleFree",
}
"""Names other trainers (kohya-ss/sd-scripts) accept that musubi-tuner needs as a class path."""


_TEXT_ENCODER_CACHE = re.compile(r"^(.+)_fp_te\.safetensors$")


def text_encoder_cache_stem(name: str) -> str | None:
    """The image stem a text-encoder cache file belongs to, or None for other files."""
    match = _TEXT_ENCODER_CACHE.match(name)
    return match.group(1) if match else None


PASS_THROUGH_INPUTS = {
    "config": ("network_weights", "base_weights"),
    "generate": (
        "latent_path",
        "image_path",
        "end_image_path",
        "control_image_path",
        "control_image_mask_path",
    ),
}
"""Pass-through options (by `musubi:` section) that name files musubi-tuner reads: a missing one fails
only after the models are loaded."""


CONTROL_KEY_RE = re.compile(r"^control_path(?:_(\d+))?$")
"""A dataset JSONL record's control-image keys: `control_path` (musubi-tuner renames it to
`control_path_0`) and `control_path_N`."""


# The tokenizers musubi-tuner loads from the Hugging Face hub at run time (not model files the spec
# names): `frame_pack/framepack_utils.py` calls `LlamaTokenizerFast.from_pretrained(TOKENIZER_REPO,
# subfolder="tokenizer")` and `CLIPTokenizer.from_pretrained(TOKENIZER_REPO, subfolder="tokenizer_2")`
# whenever a text encoder is loaded (text-encoder caching, sample prompts, inference). Without
# tokenizer.json the fast tokenizer falls back to the sentencepiece one and fails ("Either model_file
# or model_proto must be specified", docs/gpu-e2e.md). The SigLIP feature extractor is built from a
# config in code and downloads nothing.
TOKENIZER_REPO = "hunyuanvideo-community/HunyuanVideo"
TOKENIZER_FILES = ("tokenizer/tokenizer.json", "tokenizer_2/vocab.json", "tokenizer_2/merges.txt")

# The optional attention kernels, by the module musubi-tuner imports for each spec choice
# (train.attention / infer.attention): without it, it calls None at the first step ("'NoneType' object
# is not callable", GPU matrix cells att-xformers-b1, att-flash-b1, inf-flash). sdpa and torch need
# none; nor does flash3, which FramePack's DiT runs as sdpa (cell att-flash3-b1 passed without it).
ATTENTION_MODULES = {
    "flash_attn": "flash_attn",
    "flash": "flash_attn",
    "xformers": "xformers",
    "sage_attn": "sageattention",
    "sageattn": "sageattention",
}


def split_prompt_line(line: str) -> tuple[str, dict[str, list[str]]]:
    """A prompt line as musubi-tuner's parsers read it: the text before the first ' --', then each
    `--<letter> <value>` (repeatable ones, like `--ci`, in order). Used to read back the lines fplora
    rendered and recorded, so the letters are those of `PROMPT_OPTION`."""
    parts = line.strip().split(" --")
    options: dict[str, list[str]] = {}
    for part in parts[1:]:
        name, _, value = part.strip().partition(" ")
        if name:
            options.setdefault(name, []).append(value.strip())
    return parts[0].strip(), options
