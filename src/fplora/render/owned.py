"""Which musubi-tuner and accelerate options fplora renders, and from which spec field.

A pass-through option (`musubi.config`, `musubi.cache_latents`, `musubi.cache_text_encoder`,
`musubi.generate`, `launch.extra`) that fplora also renders would silently replace the spec's value
while fplora's bookkeeping (resume maths, manifest, cache stamps, output folders) keeps using the
spec's. Rather than a hand-kept list, the set is read off the render functions themselves:

1. a probe spec is built with a distinct value in every field (every flag on);
2. it is rendered (config.toml, the cache/train/generate command lines, the accelerate options, an
   inference prompt line) and each option's value is traced back to the field holding that value;
3. options whose value is no field's (flags, `--multi_gpu`, the attention key) are traced by changing
   one field at a time (a flag off, another choice, its default) and seeing which options change;
4. what is still unclaimed is fplora's own (`dataset_config`, `save_path`, `--one_frame`, ...).

The spec's validation needs the result but must not import `render/` (render depends on spec), so
the result is kept as data beside the rules that use it (`spec/rendered-options.json`), and a test
fails when it drifts from what the renderers produce. Refresh it with
`uv run python -m fplora.render.owned`.
"""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from fplora.musubi import schema
from fplora.musubi.names import GENERATE_PROMPT_OPTION, MODULES, PASS_THROUGH_SCRIPT
from fplora.render import commands
from fplora.render.files import RenderedPaths, config_dict
from fplora.render.prompts import PromptLine, prompt_line
from fplora.spec.fields import unwrap
from fplora.spec.models import Infer, Prompt, Spec

LAUNCH = "launch"
TABLE = Path(__file__).resolve().parents[1] / "spec" / "rendered-options.json"

Values = tuple[str, ...]
Rendered = dict[tuple[str, str], Values]  # (section, option dest) → its value, as text


@dataclass(frozen=True)
class _Leaf:
    path: tuple[str | int, ...]  # attribute path into a Spec
    dotted: str  # as the user writes it: `train.logging.with`, `sample.prompts[].seed`
    name: str  # the key itself (`with`, `seed`)
    value: Any  # the probe's value
    variants: tuple[Any, ...]  # other values that may change what is rendered


NOT_RENDERED = {"eval"}
"""Spec sections that set no musubi-tuner option (the evaluation split writes dataset files only),
left out of the probe: their rules (one of records, fraction or jsonl) would refuse a probe value."""


class _Probe:
    """Builds a probe spec with a distinct value in every field."""

    def __init__(self) -> None:
        self.counter = 7000
        self.used: set[str] = set()
        self.leaves: list[_Leaf] = []

    def _next(self) -> int:
        self.counter += 1
        return self.counter

    def model(self, model: type[BaseModel], path: tuple[str | int, ...], dotted: str) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name, field in model.model_fields.items():
            if not path and name in NOT_RENDERED:
                continue
            extra = field.json_schema_extra
            if isinstance(extra, dict) and extra.get("refused"):
                continue  # a key kept only to explain why it is refused (sample.flow_shift)
            key = field.alias or name
            here_dotted = f"{dotted}.{key}" if dotted else key
            value = self.field(field, (*path, name), here_dotted, key)
            if value is not None:
                data[name] = value
        return data

    def field(self, field: Any, path: tuple[str | int, ...], dotted: str, key: str) -> Any:
        kinds = unwrap(field.annotation)
        nullable = type(None) in kinds
        kind = next(k for k in kinds if k is not type(None))
        origin = typing.get_origin(kind)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            return self.model(kind, path, dotted)
        if origin is list:
            item = unwrap(typing.get_args(kind)[0])[0]
            if isinstance(item, type) and issubclass(item, BaseModel):
                return [self.model(item, (*path, 0), f"{dotted}[]")]
            value = [self.scalar(item)]
        elif origin is dict:
            return {}  # pass-through options: none in the probe
        else:
            value = self.scalar(kind)
        variants: list[Any] = []
        if value is True:
            variants.append(False)
        if origin is Literal:
            variants += [choice for choice in typing.get_args(kind) if choice != value]
        if nullable:
            variants.append(None)
        default = field.default
        if default is not PydanticUndefined and default is not None and default != value:
            variants.append(default)
        self.leaves.append(_Leaf(path, dotted, key, value, tuple(variants)))
        return value

    def scalar(self, kind: Any) -> Any:
        if kind is bool:
            return True
        if typing.get_origin(kind) is Literal:
            choices = typing.get_args(kind)
            value = next((c for c in choices if str(c) not in self.used), choices[0])
            self.used.add(str(value))
            return value
        if kind is int:
            return self._next()
        if kind is float:
            return self._next() + 0.5
        if kind is Path:
            return Path(f"/fplora-probe/{self._next()}")
        return f"probe{self._next()}"  # str, and anything else that takes text


def _text(value: Any) -> Values:
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    return (str(value),)


def _argv_options(argv: list[str], module: str) -> dict[str, Values]:
    """`... -m <module> --flag v1 v2 --bare` → {flag: (v1, v2), bare: ('True',)} (flags as written)."""
    rest = argv[argv.index(module) + 1 :]
    options: dict[str, list[str]] = {}
    current: list[str] | None = None
    for token in rest:
        if token.startswith("--"):
            current = options.setdefault(token, [])
        elif current is not None:
            current.append(token)
    return {flag: tuple(values) or ("True",) for flag, values in options.items()}


@cache
def _dests(script: str) -> dict[str, str]:

    return {flag: o.dest for o in schema.script_options(script).values() for flag in o.flags}


def _by_dest(options: dict[str, Values], script: str) -> Iterator[tuple[str, Values]]:
    dests = _dests(script)
    for flag, value in options.items():
        yield dests.get(flag, flag.removeprefix("--")), value


def _render(spec: Spec) -> Rendered:
    """Every option fplora's render functions set for `spec`, by pass-through section."""

    paths = RenderedPaths(Path("/fplora-probe/render"))
    out: Rendered = {}
    for key, value in config_dict(spec, paths).items():
        out["config", key] = _text(value)
    train = commands.train(
        spec,
        paths,
        "python",
        output_name=spec.output_name,
        resume=Path("/fplora-probe/state"),
        max_train_steps=spec.train.max_train_steps,
    )
    argvs = {
        "config": (train, "train"),
        "cache_latents": (commands.cache_latents(spec, paths, "python"), "cache_latents"),
        "cache_text_encoder": (commands.cache_text_encoder(spec, paths, "python"), "cache_text_encoder"),
        "generate": (
            commands.generate(
                spec,
                paths,
                "python",
                lora=Path("/fplora-probe/lora.safetensors"),
                multiplier=spec.infer.multipliers[0],  # `fplora infer` defaults to infer.multipliers
                save_path=Path("/fplora-probe/samples"),
            ),
            "generate",
        ),
    }
    for section, (argv, step) in argvs.items():
        for dest, value in _by_dest(_argv_options(argv, MODULES[step]), PASS_THROUGH_SCRIPT[section]):
            out.setdefault((section, dest), value)
    for key, value in commands.launch_options(spec, training=True).items():
        if value is not None and value is not False:
            out[LAUNCH, key] = _text(value)
    return out


def _with(model: BaseModel, path: tuple[str | int, ...], value: Any) -> BaseModel:
    """A copy of `model` with the field at `path` set to `value` (no validation: a probe)."""
    head, *rest = path
    assert isinstance(head, str)
    if not rest:
        return model.model_copy(update={head: value})
    child = getattr(model, head)
    if isinstance(child, list):
        index, *below = rest
        assert isinstance(index, int)
        items = list(child)
        items[index] = _with(items[index], tuple(below), value)
        return model.model_copy(update={head: items})
    return model.model_copy(update={head: _with(child, tuple(rest), value)})


def _named_like(dest: str, leaves: list[_Leaf]) -> _Leaf:
    """Of several fields that change an option, the one named like it (`log_config`, `no_2x` for
    `one_frame_no_2x`), else the first."""
    for test in (lambda leaf: leaf.name == dest, lambda leaf: dest.endswith(leaf.name)):
        for leaf in leaves:
            if test(leaf):
                return leaf
    return leaves[0]


def _prompt_line_options() -> dict[str, str]:
    """Generate options that every line of infer-prompts.txt sets, which win over the command line
    (generate dest → the spec field), read off a rendered prompt line."""

    line = PromptLine(
        text="probe",
        image=Path("/fplora-probe/i.png"),
        control_images=(Path("/fplora-probe/c.png"),),
        width=1,
        height=1,
        seed=1,
        steps=1,
        flow_shift=1.0,
        guidance_scale=1.0,
        cfg_scale=1.0,
        negative_prompt="probe",
    )
    rendered = prompt_line(line, "probe", "generate")
    letters = {part.split(" ", 1)[0] for part in rendered.split(" --")[1:]}
    options = schema.prompt_options("generate_from_file")
    letter_field = {letter: name for name, letter in GENERATE_PROMPT_OPTION.items()}
    out: dict[str, str] = {}
    for letter in sorted(letters):
        dest = re.sub(r"\[\d+\]$", "", options[letter]["args_dest"])
        name = letter_field.get(letter, letter)
        if name not in Prompt.model_fields and f"{name}s" in Prompt.model_fields:
            name = f"{name}s"  # control_image → control_images
        if name in Infer.model_fields:
            out[dest] = f"infer.{name} (on every line of infer-prompts.txt)"
        elif name in Prompt.model_fields:
            out[dest] = f"infer.prompts[].{name} (on every line of infer-prompts.txt)"
        else:
            out[dest] = f"{name} (on every line of infer-prompts.txt)"
    return out


@cache
def rendered_options() -> dict[str, dict[str, str | None]]:
    """{pass-through section: {option dest: the spec field that sets it, or None when fplora owns
    it}}; sections are `config`, `cache_latents`, `cache_text_encoder`, `generate` and `launch`."""
    probe = _Probe()
    spec = Spec.model_validate(probe.model(Spec, (), ""))
    base = _render(spec)
    changed_by: dict[tuple[str, str], list[_Leaf]] = {}
    seen = dict(base)
    for leaf in probe.leaves:
        for variant in leaf.variants:
            rendered = _render(_with(spec, leaf.path, variant))  # type: ignore[arg-type]
            for key in set(base) | set(rendered):
                if base.get(key) != rendered.get(key):
                    claimed = changed_by.setdefault(key, [])
                    if leaf not in claimed:
                        claimed.append(leaf)
            for key, value in rendered.items():
                seen.setdefault(key, value)
    by_value: dict[Values, list[_Leaf]] = {}
    for leaf in probe.leaves:
        if not isinstance(leaf.value, bool):
            by_value.setdefault(_text(leaf.value), []).append(leaf)
    out: dict[str, dict[str, str | None]] = {section: {} for section in (*PASS_THROUGH_SCRIPT, LAUNCH)}
    for (section, dest), value in seen.items():
        holders = by_value.get(value) if base.get((section, dest)) == value else None
        holders = holders or changed_by.get((section, dest))
        out[section][dest] = _named_like(dest, holders).dotted if holders else None
    for dest, field in _prompt_line_options().items():
        out["generate"].setdefault(dest, field)
    return out


def main() -> None:
    """Write the table that spec validation reads (`TABLE`)."""
    TABLE.write_text(json.dumps(rendered_options(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {TABLE}")


if __name__ == "__main__":
    main()
