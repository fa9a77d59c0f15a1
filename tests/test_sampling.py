"""A training sample and `fplora infer` of one prompt sample the same way.

The rendered files and command lines are read back as each musubi-tuner script reads them: training
sample lines with the training parser's letters (schema `training_sample_prompts`) and its defaults,
infer lines with generate's (`generate_from_file`) over generate's parsed command line. What comes
out is what reaches FramePack's sampler (`sample_hunyuan`): guidance, CFG, shift, steps, seed, size,
images, one-frame modes and latent window. The `musubi` test does the same with musubi-tuner's own
parsers.
"""

from __future__ import annotations

import json
import struct
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fplora import plan
from fplora.check import check_spec
from fplora.musubi import schema
from fplora.musubi.names import (
    DISTILLED_GUIDANCE_DEFAULT,
    MODULES,
    split_prompt_line,
)
from fplora.problems import UserError
from fplora.render import commands
from fplora.spec import load_spec

GENERATE = "fpack_generate_video"
TRAIN = "fpack_train_network"
TRAINING_SAMPLE_STEPS_DEFAULT = 20
"""Steps of a training sample line without `--s` (trainer_base.py:877); generate's `--infer_steps` is 25."""


@dataclass(frozen=True)
class Sampled:
    """What one prompt hands FramePack's sampler, as one script reads fplora's files."""

    prompt: str
    image: str
    controls: tuple[str, ...]
    one_frame: str
    width: int
    height: int
    seed: int
    steps: int
    distilled_guidance: float
    cfg: float
    shift: float | None  # None: FramePack's dynamic shift
    negative_prompt: str
    latent_window_size: int


def _convert(value: str, kind: str | None) -> Any:
    return {"int": int, "float": float}.get(kind or "str", str)(value)


def training_samples(prompts_txt: str, config_toml: str) -> list[Sampled]:
    """Each line as `fpack_train_network` samples it: the training parser's letters, its defaults
    (steps 20, distilled guidance 10, CFG off), the window from the training config, and never a
    shift (fpack_train_network.py:321 and :450 do not pass one)."""
    config = tomllib.loads(config_toml)
    window = config.get("latent_window_size", schema.script_options(TRAIN)["latent_window_size"].default)
    letters = schema.prompt_options("training_sample_prompts")
    out = []
    for line in prompts_txt.splitlines():
        if not line or line[0] == "#":
            continue
        text, options = split_prompt_line(line)
        got: dict[str, Any] = {}
        for letter, values in options.items():
            option = letters[letter]
            kind = option["value_type"]
            got[option["key"]] = values if kind == "list" else _convert(values[-1], kind)
        out.append(
            Sampled(
                prompt=text,
                image=got["image_path"],
                controls=tuple(got.get("control_image_path", ())),
                one_frame=got["one_frame"],
                width=got.get("width", 256),
                height=got.get("height", 256),
                seed=got["seed"],
                steps=got.get("sample_steps", TRAINING_SAMPLE_STEPS_DEFAULT),
                distilled_guidance=got.get("guidance_scale", DISTILLED_GUIDANCE_DEFAULT),
                cfg=got.get("cfg_scale") or 1.0,
                shift=None,
                negative_prompt=got.get("negative_prompt", ""),
                latent_window_size=window,
            )
        )
    return out


def generate_args(argv: list[str]) -> dict[str, Any]:
    """generate's options after its module in `argv`, over the schema's defaults."""
    options = schema.script_options(GENERATE)
    by_flag = {flag: option for option in options.values() for flag in option.flags}
    values = {dest: option.default for dest, option in options.items()}
    rest = argv[argv.index(MODULES["generate"]) + 1 :]
    index = 0
    while index < len(rest):
        option = by_flag[rest[index]]
        index += 1
        if option.store_true:
            values[option.dest] = True
            continue
        items = []
        while index < len(rest) and not rest[index].startswith("--"):
            items.append(rest[index])
            index += 1
        values[option.dest] = items if option.is_list else _convert(items[0], option.type)
    return values


def infer_samples(prompts_txt: str, argv: list[str]) -> list[Sampled]:
    """Each `--from_file` line as generate samples it: the line's options over its command line."""
    base = generate_args(argv)
    letters = schema.prompt_options("generate_from_file")
    out = []
    for line in prompts_txt.splitlines():
        if not line.strip() or line.strip().startswith("#"):
            continue
        text, options = split_prompt_line(line)
        args = dict(base, video_size=list(base["video_size"]))
        for letter, values in options.items():
            option = letters[letter]
            dest, kind = option["args_dest"], option["value_type"]
            if dest.startswith("video_size["):
                args["video_size"][int(dest[-2])] = int(values[-1])
            else:
                args[dest] = values if kind == "list" else _convert(values[-1], kind)
        out.append(
            Sampled(
                prompt=text,
                image=args["image_path"],
                controls=tuple(args.get("control_image_path") or ()),
                one_frame=args["one_frame_inference"],
                width=args["video_size"][1],
                height=args["video_size"][0],
                seed=args["seed"],
                steps=args["infer_steps"],
                distilled_guidance=args["embedded_cfg_scale"],
                cfg=args["guidance_scale"],
                shift=args["flow_shift"],
                negative_prompt=args.get("negative_prompt") or "",
                latent_window_size=args["latent_window_size"],
            )
        )
    return out


def rendered(spec_path: Path, out: Path) -> tuple[str, str, str, list[str]]:
    """prompts.txt, config.toml, infer-prompts.txt and generate's argv for one LoRA."""
    spec = load_spec(spec_path)
    built = plan.build(spec, out)
    argv = commands.generate(
        spec, built.paths, "python", lora=out / "x.safetensors", multiplier=1.0, save_path=out / "s"
    )
    files = built.files
    return (
        files[built.paths.sample_prompts],
        files[built.paths.config],
        files[built.paths.infer_prompts],
        argv,
    )


def both(spec_path: Path, out: Path) -> tuple[list[Sampled], list[Sampled]]:
    prompts, config, infer, argv = rendered(spec_path, out)
    return training_samples(prompts, config), infer_samples(infer, argv)


SAME_WAY = {
    "defaults": "",
    "every option": """
        one_frame: {clean_indices: [0, 10], target_index: 5, no_post: true, latent_window_size: 11}
        sample:
          steps: 8
          seed: 7
          prompts:
            - record: 1
              guidance_scale: 6.5
              cfg_scale: 3
              negative_prompt: blurry, extra limbs
              width: 128
              height: 192
            - record: 2
              guidance_scale: 6.5
              steps: 3
              seed: 99
        """,
}


@pytest.mark.parametrize("text", SAME_WAY.values(), ids=SAME_WAY.keys())
def test_a_training_sample_and_infer_sample_the_same_way(text: str, project, tmp_path: Path) -> None:
    training, infer = both(project(text), tmp_path / "r")
    assert len(training) == len(load_spec(project(text)).sample.prompts) == len(infer)
    assert infer == training


def test_infer_prompts_of_its_own_sample_as_the_same_prompts_would_in_training(
    project, tmp_path: Path
) -> None:
    prompts = (
        "  prompts:\n"
        "    - {record: 2, guidance_scale: 0.00001}\n"
        "    - {record: 1, guidance_scale: 0.00001, cfg_scale: 1.5, negative_prompt: dark}\n"
    )
    _, infer = both(project("infer:\n  seed: 5\n  steps: 4\n" + prompts), tmp_path / "a")
    training, _ = both(project("sample:\n  seed: 5\n  steps: 4\n" + prompts), tmp_path / "b")
    assert infer == training
    assert [s.distilled_guidance for s in infer] == [0.00001, 0.00001]  # `1e-05` would read as 1


def test_the_defaults_are_musubi_tuners_own(project, tmp_path: Path) -> None:
    """No `--fs` anywhere: both sample with FramePack's dynamic shift, as musubi-tuner's training
    samples always do and generate does by default; distilled guidance 10, no CFG, 20 steps."""
    prompts, config, infer, argv = rendered(project(), tmp_path / "r")
    assert " --fs " not in prompts + infer and "--flow_shift" not in argv
    (training,) = training_samples(prompts, config)
    assert (training.shift, training.distilled_guidance, training.cfg, training.steps) == (
        None,
        10.0,
        1.0,
        20,
    )


def test_an_infer_flow_shift_is_for_infer_alone(project, tmp_path: Path) -> None:
    training, infer = both(project("infer: {flow_shift: 3}\n"), tmp_path / "r")
    assert [s.shift for s in infer] == [3.0] and [s.shift for s in training] == [None]


def test_guidance_and_window_go_where_each_script_takes_them(project, tmp_path: Path) -> None:
    text = """
        one_frame: {clean_indices: [0, 10], target_index: 5, latent_window_size: 11}
        sample:
          prompts:
            - {record: 1, guidance_scale: 6, cfg_scale: 2.5, negative_prompt: blurry}
        """
    prompts, config, infer, argv = rendered(project(text), tmp_path / "r")
    line = prompts.splitlines()[-1]
    assert line.endswith(" --g 6 --l 2.5 --n blurry")
    assert infer.splitlines()[-1].endswith(" --l 2.5 --n blurry")  # generate would read --g as CFG
    assert argv[argv.index("--embedded_cfg_scale") + 1] == "6.0"
    assert argv[argv.index("--latent_window_size") + 1] == "11"
    assert tomllib.loads(config)["latent_window_size"] == 11
    assert generate_args(argv)["guidance_scale"] == 1.0  # the command line leaves CFG to the lines


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "sample:\n  flow_shift: 14.5\n  prompts: [{record: 1}]\n",
            "configs/v1.yaml:5: sample.flow_shift: musubi-tuner's FramePack training sampler ignores a"
            " flow shift: it never passes one on (fpack_train_network.py:321 and :450), so training"
            " samples always use FramePack's dynamic shift, as `fplora infer` does by default — remove it"
            " (infer.flow_shift sets a fixed shift for `fplora infer` alone)",
        ),
        (
            "sample:\n  prompts:\n    - {record: 1, guidance_scale: 6}\n    - {record: 2}\n",
            "configs/v1.yaml:7: sample.prompts[1].guidance_scale: 10 differs from sample.prompts[0]'s 6:"
            " fpack_generate_video takes the distilled guidance once per run (--embedded_cfg_scale,"
            " fpack_generate_video.py:185), so `fplora infer` cannot give each prompt its own — use one"
            " guidance_scale for every prompt infer uses (or give infer prompts of its own)",
        ),
        (
            "musubi:\n  config: {max_train_epochs: 3}\n",
            "configs/v1.yaml:5: musubi.config.max_train_epochs: replaces train.max_train_steps in"
            " musubi-tuner, and the steps a resumed segment is given on the command line too"
            " (training/trainer_base.py:1640), so fplora's step counts and resume maths would be wrong"
            " — remove it; set train.max_train_steps (epochs × steps per epoch) instead",
        ),
        (
            "musubi:\n  generate: {embedded_cfg_scale: 3}\n",
            "configs/v1.yaml:5: musubi.generate.embedded_cfg_scale: set by infer.prompts[].guidance_scale"
            " — set it there",
        ),
        (
            "musubi:\n  config: {latent_window_size: 5}\n",
            "configs/v1.yaml:5: musubi.config.latent_window_size: set by one_frame.latent_window_size"
            " — set it there",
        ),
    ],
    ids=["sample flow shift", "guidance per infer prompt", "max_train_epochs", "embedded cfg", "window"],
)
def test_what_musubi_tuner_cannot_honour_is_refused(text: str, expected: str, project) -> None:
    with pytest.raises(UserError) as error:
        load_spec(project(text))
    assert str(error.value) == expected


def test_max_train_epochs_never_reaches_a_command(project, tmp_path: Path) -> None:
    """The one step count: config.toml's, and a resumed segment's on its command line, from
    train.max_train_steps alone (max_train_epochs, which would replace both, is refused above)."""
    spec = load_spec(project())
    built = plan.build(spec, tmp_path / "r")
    config = tomllib.loads(built.files[built.paths.config])
    assert config["max_train_steps"] == 4 and "max_train_epochs" not in config
    argv = commands.train(spec, built.paths, "py", output_name="x", resume=tmp_path, max_train_steps=2)
    assert argv[argv.index("--max_train_steps") + 1] == "2" and "--max_train_epochs" not in argv


def test_a_negative_prompt_without_cfg_is_a_warning(project) -> None:
    spec = load_spec(project("sample:\n  prompts:\n    - {record: 1, negative_prompt: blurry}\n"))
    warnings = [str(p) for p in check_spec(spec, skip_models=True) if p.severity == "warning"]
    assert warnings == [
        "configs/v1.yaml:6: sample.prompts[0].negative_prompt: has no effect: musubi-tuner uses a negative"
        " prompt only with real CFG (cfg_scale above 1), in training samples and in `fplora infer` alike"
        " — set cfg_scale (e.g. 3; it doubles the sampling work), or remove it"
    ]


def lora(path: Path, rank: int, alpha: float, dtype: str = "BF16") -> Path:
    """A LoRA as musubi-tuner saves one: lora_down/lora_up per module and a scalar alpha."""
    sizes = {"BF16": 2, "F32": 4, "F16": 2}
    packed = {
        "BF16": struct.pack("<f", alpha)[2:],
        "F32": struct.pack("<f", alpha),
        "F16": struct.pack("<e", alpha),
    }[dtype]
    header: dict[str, Any] = {"__metadata__": {"ss_network_dim": str(rank)}}
    data = b""
    for module in ("lora_unet_a", "lora_unet_b"):
        for name, shape in ((".lora_down.weight", [rank, 8]), (".lora_up.weight", [8, rank])):
            size = shape[0] * shape[1] * sizes[dtype]
            header[module + name] = {
                "dtype": dtype,
                "shape": shape,
                "data_offsets": [len(data), len(data) + size],
            }
            data += bytes(size)
        header[module + ".alpha"] = {
            "dtype": dtype,
            "shape": [],
            "data_offsets": [len(data), len(data) + len(packed)],
        }
        data += packed
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


@pytest.mark.parametrize("dtype", ["BF16", "F32", "F16"])
def test_network_weights_of_another_rank_or_alpha_are_refused(dtype: str, project, tmp_path: Path) -> None:
    text = (
        "train:\n  network: {dim: 32, alpha: 16}\nmusubi:\n  config: {network_weights: start.safetensors}\n"
    )
    spec_path = project(text)
    lora(tmp_path / "start.safetensors", 32, 16, dtype)
    assert check_spec(load_spec(spec_path), skip_models=True) == []
    lora(tmp_path / "start.safetensors", 16, 8, dtype)
    assert [str(p) for p in check_spec(load_spec(spec_path), skip_models=True)] == [
        "configs/v1.yaml:7: musubi.config.network_weights: start.safetensors is a LoRA of dim 16,"
        " alpha 8; the spec trains dim 32, alpha 16: musubi-tuner would stop on the size mismatch after"
        " loading the models — set train.network.dim: 16 and train.network.alpha: 8"
    ]
    lora(tmp_path / "start.safetensors", 32, 4, dtype)
    (problem,) = check_spec(load_spec(spec_path), skip_models=True)
    assert str(problem).endswith(
        "start.safetensors is a LoRA of dim 32, alpha 4; the spec trains dim 32, alpha 16: musubi-tuner"
        " would train at the spec's scale and save the file's alpha, so the LoRA would be applied at"
        " another strength than it was trained at — set train.network.alpha: 4"
    )


def test_dim_from_weights_is_refused_with_the_starting_loras_dim_and_alpha(project, tmp_path: Path) -> None:
    """musubi-tuner (the pinned commit) passes the flag's value to load_file as a file name, then
    unpacks the one network it builds as a pair: `dim_from_weights` stops training after the models
    loaded, whatever it is given. The spec's dim and alpha do what it means to."""
    text = (
        "train:\n  network: {dim: 32, alpha: 16}\nmusubi:\n"
        "  config: {network_weights: start.safetensors, dim_from_weights: true}\n"
    )
    spec_path = project(text)
    lora(tmp_path / "start.safetensors", 32, 16, "BF16")
    assert [str(p) for p in check_spec(load_spec(spec_path), skip_models=True)] == [
        "configs/v1.yaml:7: musubi.config.dim_from_weights: musubi-tuner cannot take it: training reads"
        " the flag's value as the LoRA file to load (true is no file name; a path then fails building"
        " the network), and stops after the models loaded — remove it and set train.network.dim: 32 and"
        " train.network.alpha: 16 (start.safetensors's own)"
    ]
    without = project("musubi:\n  config: {dim_from_weights: true}\n")
    (problem,) = check_spec(load_spec(without), skip_models=True)
    assert str(problem).endswith(
        "— remove it and give train.network.dim and train.network.alpha the starting LoRA's rank and alpha"
    )
    assert (
        check_spec(load_spec(project("musubi:\n  config: {dim_from_weights: false}\n")), skip_models=True)
        == []
    )


_REAL_PARSERS = r"""
import json, sys, torch
torch.cuda.current_device = lambda: 0  # imported modules ask for a device at import time
prompts, config, infer, argv = json.loads(open(sys.argv[1]).read())
from musubi_tuner.training.sampling_prompts import load_prompts
from musubi_tuner import fpack_train_network as train, fpack_generate_video as generate
from musubi_tuner.training.parser_common import read_config_from_file, setup_parser_common
parser = train.framepack_setup_parser(setup_parser_common())
sys.argv = ["train", "--config_file", config]  # the config reader parses sys.argv again
args = read_config_from_file(parser.parse_args(), parser)
trainer = train.FramePackNetworkTrainer()
trainer.handle_model_specific_args(args)
out = {"train": [], "generate": []}
for p in load_prompts(prompts):
    out["train"].append({
        "steps": p.get("sample_steps", 20), "distilled": p.get("guidance_scale", trainer.default_guidance_scale),
        "cfg": p.get("cfg_scale") or 1.0, "shift": None, "seed": p.get("seed"),
        "size": [p.get("height", 256), p.get("width", 256)], "window": args.latent_window_size,
        "of": p.get("one_frame"), "i": p.get("image_path"), "ci": p.get("control_image_path"),
        "n": p.get("negative_prompt", ""), "prompt": p["prompt"]})
sys.argv = ["generate", *argv]
gargs = generate.parse_args()
for line in open(infer, encoding="utf-8"):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    a = generate.apply_overrides(gargs, generate.parse_prompt_line(line))
    out["generate"].append({
        "steps": a.infer_steps, "distilled": a.embedded_cfg_scale, "cfg": a.guidance_scale,
        "shift": a.flow_shift, "seed": a.seed, "size": list(a.video_size), "window": a.latent_window_size,
        "of": a.one_frame_inference, "i": a.image_path, "ci": a.control_image_path,
        "n": a.negative_prompt or "", "prompt": a.prompt})
print("RESULT " + json.dumps(out))
"""


@pytest.mark.musubi
def test_musubi_tuners_own_parsers_read_both_files_alike(musubi_python, project, tmp_path: Path) -> None:
    """The pinned musubi-tuner's `load_prompts`, trainer defaults, config reader, generate's
    `parse_args`, `parse_prompt_line` and `apply_overrides` on what fplora rendered."""
    spec_path = project(SAME_WAY["every option"])
    spec = load_spec(spec_path)
    built = plan.build(spec, tmp_path / "r")
    plan.write(built)
    argv = commands.generate(
        spec, built.paths, "py", lora=tmp_path / "x.safetensors", multiplier=1.0, save_path=tmp_path / "s"
    )
    argv = argv[argv.index(MODULES["generate"]) + 1 :]
    files = [str(built.paths.sample_prompts), str(built.paths.config), str(built.paths.infer_prompts), argv]
    (tmp_path / "in.json").write_text(json.dumps(files), encoding="utf-8")
    script = tmp_path / "parsers.py"
    script.write_text(_REAL_PARSERS, encoding="utf-8")
    done = subprocess.run(
        [musubi_python.python, str(script), str(tmp_path / "in.json")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**musubi_python.env, "PATH": "/usr/bin:/bin"},
        check=False,
    )
    result = next((line for line in done.stdout.splitlines() if line.startswith("RESULT ")), None)
    assert result is not None, (done.stdout + done.stderr)[-3000:]
    parsed = json.loads(result.removeprefix("RESULT "))
    assert parsed["train"] == parsed["generate"]
    first = parsed["train"][0]
    assert (first["distilled"], first["cfg"], first["shift"], first["window"], first["steps"]) == (
        6.5,
        3.0,
        None,
        11,
        8,
    )
