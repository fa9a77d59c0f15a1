"""The model card (`README.md`) written beside an exported LoRA, for the Hugging Face Hub and for
whoever downloads the file: what it was trained on, the one-frame settings inference must match,
example prompts, its evaluation loss, and how each FramePack front end loads it.

Front-end facts (read in their sources; re-check when a front end changes):
- ComfyUI-FramePackWrapper (kijai) and FramePack-eichi take musubi-tuner's layout as it is
  (`lora_unet_…`, with alpha); the wrapper also reads the diffusers layout.
- FramePack-Studio and neph1/FramePack load through diffusers' `load_lora_adapter(…,
  network_alphas=None)`: `transformer.<module>.lora_A/B.weight` keys, no alpha, so alpha must be
  folded in (the `-diffusers` file).
- musubi-tuner's `fpack_generate_video` reads both: a file whose keys start `transformer.` with
  `lora_A` is renamed to its own layout with alpha = rank (scale 1), right for a folded file.
"""

from __future__ import annotations

from dataclasses import dataclass

from fplora.lora.facts import Facts
from fplora.problems import plural


@dataclass(frozen=True)
class Exported:
    """One written file and the layout it holds."""

    file: str
    layout: str  # "musubi" or "diffusers"


@dataclass(frozen=True)
class Picture:
    """A contact sheet of this checkpoint for one prompt, beside the card."""

    file: str
    prompt: int  # 1-based


TAGS = ("lora", "framepack", "framepack-1f", "one-frame", "hunyuan-video", "musubi-tuner", "fplora")


def _words(facts: Facts) -> str:
    controls = facts.control_count
    places = ", ".join(str(i) for i in facts.clean_indices)
    post = (
        "no zero latent after the target (no_post)"
        if facts.no_post
        else f"a zero latent at index {1 + facts.latent_window_size} after the target"
    )
    left_out = [name for name, on in (("2x", facts.no_2x), ("4x", facts.no_4x)) if on]
    clean = (
        f"without the {' and '.join(left_out)} clean latents"
        if left_out
        else "with the 2x and 4x clean latents"
    )
    return (
        f"It generates one frame, the target at latent index {facts.target_index}, from"
        f" {plural(controls, 'control image')} at clean-latent {'index' if controls == 1 else 'indices'}"
        f" {places}, with {post},"
        f" {clean}, latent window {facts.latent_window_size}, at {facts.resolution} (width x height)."
        " Inference must use the same settings and the same number of control images."
    )


def _header(facts: Facts) -> str:
    tags = "".join(f"- {tag}\n" for tag in TAGS)
    return (
        "---\n"
        f"base_model: {facts.base_model}\n"
        "base_model_relation: adapter\n"
        "# license: set the licence you publish this LoRA under"
        " (https://huggingface.co/docs/hub/repositories-licenses)\n"
        "pipeline_tag: image-to-image\n"
        f"tags:\n{tags}"
        "---\n"
    )


def _files(facts: Facts, files: list[Exported]) -> str:
    rows = []
    for exported in files:
        if exported.layout == "musubi":
            what = "musubi-tuner's (`lora_unet_…`, alpha kept)"
            where = "musubi-tuner, FramePack-eichi, ComfyUI-FramePackWrapper (kijai)"
        else:
            what = "diffusers/PEFT (`transformer.….lora_A/B.weight`, alpha folded in)"
            where = "FramePack-Studio, neph1/FramePack, musubi-tuner"
        rows.append(f"| `{exported.file}` | {what} | {where} |\n")
    return (
        "## Files\n\n"
        f"Rank {facts.rank}, alpha {facts.alpha:g}, 440 modules of the DiT's 20 double and 40 single"
        " blocks (norms left out). Both layouts hold the same weights.\n\n"
        "| file | layout | load it in |\n|---|---|---|\n" + "".join(rows)
    )


def _prompts(facts: Facts, pictures: list[Picture]) -> str:
    if not facts.prompts:
        return ""
    out = ["## Example prompts\n\n", "The spec's prompts, each the caption of a training-style record:\n\n"]
    sheets = {picture.prompt: picture.file for picture in pictures}
    for number, prompt in enumerate(facts.prompts, start=1):
        controls = ", ".join(f"`{c}`" for c in prompt.get("controls", []))
        out.append(f"{number}. {prompt['text']}\n")
        if controls:
            out.append(f"   - control images: {controls}; seed {prompt.get('seed')}\n")
        if number in sheets:
            out.append(f"\n   ![prompt {number}]({sheets[number]})\n")
        out.append("\n")
    if pictures:
        out.append(
            "The pictures are contact sheets of this checkpoint (`fplora infer`),"
            " one column per multiplier.\n\n"
        )
    return "".join(out)


def _evaluation(facts: Facts) -> str:
    if facts.eval_loss is None:
        return ""
    scored = (
        "on records also trained on (eval.allow_training_records): a check of the training objective, not"
        " of unseen records;"
        if facts.eval_trained_on
        else "held-out records,"
    )
    lines = [f"Evaluation loss (`fplora eval`, {scored} fixed noise): **{facts.eval_loss:.5f}**"]
    if facts.eval_untrained is not None:
        lines.append(f"; the untrained network scores {facts.eval_untrained:.5f}")
    if facts.eval_best is not None:
        label, loss = facts.eval_best
        lines.append(f"; the run's best is {label} at {loss:.5f}")
    return "## Evaluation\n\n" + "".join(lines) + ".\n\n"


def _loading(facts: Facts, files: list[Exported]) -> str:
    by_layout = {exported.layout: exported.file for exported in files}
    stem = facts.name
    musubi = by_layout.get("musubi", f"{stem}.safetensors (fplora export --to musubi)")
    diffusers = by_layout.get("diffusers", f"{stem}-diffusers.safetensors (fplora export --to diffusers)")
    of = facts.inference
    return (
        "## Load it\n\n"
        "**musubi-tuner** (`fpack_generate_video`, either file):\n\n"
        "```\n"
        f"python -m musubi_tuner.fpack_generate_video --dit <FramePack DiT> ... --lora_weight {musubi}"
        f" --lora_multiplier 1.0 --one_frame_inference {of} --image_path <start image>"
        " --control_image_path <control 1> ...\n"
        "```\n\n"
        f"In a `--from_file` prompt line the same is `--of {of}` with one `--ci` per control image.\n\n"
        "**ComfyUI-FramePackWrapper (kijai)**: copy"
        f" `{musubi}` into `ComfyUI/models/loras/`, pick it in the *Select Lora* node"
        " (FramePackLoraSelect) and connect that to *Load FramePackModel*'s `lora` input (fusing needs"
        " the bf16 model, not fp8). For one-frame generation use its *Single Frame Sampler* with the"
        f" target index {facts.target_index} and the control images at indices"
        f" {', '.join(str(i) for i in facts.clean_indices)}.\n\n"
        f"**FramePack-eichi**: give `{musubi}` as the LoRA file in its one-frame UI (oneframe_ichi,"
        f" `run_oneframe_ichi.bat`) and set the target (latent) index to {facts.target_index} and the"
        " control images' clean indices to"
        f" {', '.join(str(i) for i in facts.clean_indices)}.\n\n"
        f"**FramePack-Studio**: copy `{diffusers}` into its LoRA folder (`loras/` by default) and select"
        " it in the LoRA list; the musubi-tuner layout does not load there.\n\n"
        f"**neph1/FramePack**: `python demo_gradio.py --lora path/to/{diffusers}`.\n\n"
        "These front ends generate video by default; the LoRA was trained for one-frame inference, so"
        " use their one-frame (single frame) mode where they have one.\n"
    )


def card(facts: Facts, files: list[Exported], pictures: list[Picture]) -> str:
    """The whole `README.md`."""
    step = f"global step {facts.step}" if facts.step is not None else "its last step"
    mt = facts.musubi_tuner
    musubi = f"musubi-tuner {mt.get('version', '?')} (commit {mt.get('commit', '?')[:12]})"
    return (
        _header(facts) + f"\n# {facts.name}\n\n"
        f"A FramePack one-frame LoRA for [{facts.base_model}](https://huggingface.co/{facts.base_model}),"
        f" trained with {musubi} through fplora, from the spec `{facts.spec_file}`"
        f" (sha256 `{facts.spec_sha256[:16]}…`), saved at {step}.\n\n"
        "## One-frame settings\n\n"
        f"{_words(facts)}\n\n"
        f"As musubi-tuner's one-frame option: `--of {facts.inference}`"
        f" (`--one_frame_inference {facts.inference}`).\n\n"
        f"Training: clean indices {facts.clean_indices}, target index {facts.target_index},"
        f" no_post {str(facts.no_post).lower()},"
        f" {plural(facts.control_count, 'control image')} per record, resolution {facts.resolution}.\n\n"
        + _files(facts, files)
        + "\n"
        + _prompts(facts, pictures)
        + _evaluation(facts)
        + _loading(facts, files)
    )
