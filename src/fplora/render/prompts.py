"""Prompt files: training sample prompts and `fpack_generate_video --from_file` lines.

The two parsers differ (`--f` is frames in one and seconds in the other, `--l` CFG vs guidance),
so fplora writes only the options that mean the same in both, and always writes `--fs` because
training samples otherwise use musubi-tuner's 14.5 rather than what the spec says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fplora.musubi.names import PROMPT_OPTION
from fplora.spec.models import Spec


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
    flow_shift: float
    guidance_scale: float | None = None
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


def _number(value: float) -> str:
    return f"{value:g}"


def prompt_line(line: PromptLine, modes: str) -> str:
    """One line, `text --i start --ci c0 --ci c1 --of modes --w W --h H --d seed ...`."""
    opt = PROMPT_OPTION
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
    parts.append(f"--{opt['flow_shift']} {_number(line.flow_shift)}")
    if line.guidance_scale is not None:
        parts.append(f"--{opt['guidance_scale']} {_number(line.guidance_scale)}")
    if line.negative_prompt:
        parts.append(f"--{opt['negative_prompt']} {line.negative_prompt}")
    return " ".join(parts)


def prompts_file(header: str, spec: Spec, lines: Sequence[PromptLine]) -> str:
    """A prompt file: the header (comment lines start in column 1), then one prompt per line."""
    modes = one_frame_modes(spec)
    return header + "".join(prompt_line(line, modes) + "\n" for line in lines)
