"""Prompt files: training sample prompts and `fpack_generate_video --from_file` lines.

One prompt of the spec must sample the same way in both, but the two parsers read some letters
differently (`musubi/names.py` has the source lines): the distilled guidance is `--g` in a training
sample line and `--embedded_cfg_scale` on generate's command line (`render/commands.py`), real CFG is
`--l` in both, and a flow shift is honoured by generate alone, so `--fs` appears only in infer lines
and only when `infer.flow_shift` asks for one. Without it both sample with FramePack's dynamic shift.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Literal

from fplora.musubi.names import GENERATE_PROMPT_OPTION, TRAINING_PROMPT_OPTION
from fplora.spec.models import Spec

Script = Literal["train", "generate"]


@dataclass(frozen=True)
class PromptLine:
    """A prompt with everything resolved (record captions and images looked up)."""

    text: str
    image: Path
    control_images: tuple[Path, ...]
    width: int
    height: int
    seed: int
    steps: int | None
    flow_shift: float | None = None  # infer lines only
    guidance_scale: float | None = None  # distilled; training lines only (generate: command line)
    cfg_scale: float | None = None
    negative_prompt: str | None = None


def one_frame_modes(spec: Spec) -> str:
    """The `--of` value: target and control indices plus the spec's modes."""
    one_frame = spec.one_frame
    if one_frame.inference_modes:
        return one_frame.inference_modes
    tokens = [
        f"target_index={one_frame.target_index}",
        "control_index=" + ";".join(str(i) for i in one_frame.clean_indices),
    ]
    tokens += [name for name in ("no_2x", "no_4x", "no_post") if getattr(one_frame, name)]
    return ",".join(tokens)


def number(value: float) -> str:
    """A number as both parsers read it: digits and a dot only (the training parser's `[\\d\\.]+`
    would read `1e-05` as 1), no trailing zeros."""
    text = format(Decimal(repr(float(value))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def prompt_line(line: PromptLine, modes: str, script: Script) -> str:
    """One line, `text --i start --ci c0 --ci c1 --of modes --w W --h H --d seed ...`, in the letters
    of `script`'s parser (training samples or generate's `--from_file`)."""
    opt = TRAINING_PROMPT_OPTION if script == "train" else GENERATE_PROMPT_OPTION
    parts = [line.text, f"--{opt['image']} {line.image}"]
    parts += [f"--{opt['control_image']} {path}" for path in line.control_images]
    parts += [
        f"--{opt['one_frame']} {modes}",
        f"--{opt['width']} {line.width}",
        f"--{opt['height']} {line.height}",
        f"--{opt['seed']} {line.seed}",
    ]
    if line.steps is not None:
        parts.append(f"--{opt['steps']} {line.steps}")
    if script == "generate" and line.flow_shift is not None:
        parts.append(f"--{opt['flow_shift']} {number(line.flow_shift)}")
    if script == "train" and line.guidance_scale is not None:
        parts.append(f"--{opt['guidance_scale']} {number(line.guidance_scale)}")
    if line.cfg_scale is not None:
        parts.append(f"--{opt['cfg_scale']} {number(line.cfg_scale)}")
    if line.negative_prompt:
        parts.append(f"--{opt['negative_prompt']} {line.negative_prompt}")
    return " ".join(parts)


def options_after_text(line: PromptLine, script: Script) -> set[str]:
    """The option letters `prompt_line` writes after the line's text, in `script`'s parser."""
    rendered = prompt_line(dataclasses.replace(line, text="x"), "modes", script)
    return {part.split(" ", 1)[0] for part in rendered.split(" --")[1:]}


def prompts_file(header: str, spec: Spec, lines: Sequence[PromptLine], script: Script) -> str:
    """A prompt file: the header (comment lines start in column 1), then one prompt per line."""
    modes = one_frame_modes(spec)
    return header + "".join(prompt_line(line, modes, script) + "\n" for line in lines)
