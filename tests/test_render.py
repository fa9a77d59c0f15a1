"""Rendering: golden files for the bundled example, and conformance of everything rendered with the
musubi-tuner schema (TOML keys, value types and choices, dataset keys, prompt-line options)."""

from __future__ import annotations

import argparse
import os
import re
import tomllib
from pathlib import Path

import pytest

from fplora import plan
from fplora.musubi import schema
from fplora.musubi.names import GENERATE_PROMPT_OPTION, PROMPT_OPTION, TRAINING_PROMPT_OPTION
from fplora.render.files import RenderedPaths, config_dict, config_toml, dataset_dict, dataset_toml
from fplora.render.prompts import one_frame_modes
from fplora.spec import load_spec

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden" / "example"
SPECS = ["configs/example.yaml", "configs/v8.yaml"]


def _rendered(spec_name: str, out: Path) -> dict[str, str]:
    spec = load_spec(REPO / spec_name)
    built = plan.build(spec, out)
    return {
        path.name: text.replace(str(REPO), "<repo>").replace(str(out), "<out>")
        for path, text in built.files.items()
    }


def test_example_matches_golden_files(tmp_path: Path) -> None:
    """A change in rendering shows up here as a diff; refresh with FPLORA_UPDATE_GOLDEN=1."""
    rendered = _rendered("configs/example.yaml", tmp_path)
    if os.environ.get("FPLORA_UPDATE_GOLDEN"):
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for name, text in rendered.items():
            (GOLDEN / name).write_text(text, encoding="utf-8")
    assert sorted(rendered) == sorted(p.name for p in GOLDEN.iterdir())
    for name, text in rendered.items():
        assert text == (GOLDEN / name).read_text(encoding="utf-8"), name


@pytest.mark.parametrize("spec_name", SPECS)
def test_config_keys_values_and_choices_fit_the_trainer(spec_name: str, tmp_path: Path) -> None:
    spec = load_spec(REPO / spec_name)
    config = tomllib.loads(config_toml(spec, RenderedPaths(tmp_path)))
    options = schema.script_options("fpack_train_network")
    for key, value in config.items():
        assert key in options, f"{key} is not an fpack_train_network option"
        assert schema.value_problem(options[key], value) is None, key
    # the trainer's own rules: dataset_config and dit set, an optimizer, one_frame for 1f samples
    assert config["dataset_config"] and config["dit"]
    assert config["optimizer_type"]
    assert config["one_frame"] is True
    assert config["save_precision"] == "bf16"


@pytest.mark.parametrize("spec_name", SPECS)
def test_dataset_toml_fits_the_dataset_schema(spec_name: str, tmp_path: Path) -> None:
    spec = load_spec(REPO / spec_name)
    dataset = tomllib.loads(dataset_toml(spec))
    assert set(dataset) <= {"general", "datasets"}
    general_keys = schema.dataset_keys("general")
    image_keys = schema.dataset_keys("image_dataset")
    for key, value in dataset["general"].items():
        assert key in general_keys, key
        assert schema.dataset_value_problem(general_keys[key], value) is None, key
    for entry in dataset["datasets"]:
        assert entry["cache_directory"]  # a JSONL dataset has no default cache directory
        for key, value in entry.items():
            assert key in image_keys, key
            assert schema.dataset_value_problem(image_keys[key], value) is None, key


def test_prompt_lines_use_only_options_their_parser_reads_alike(tmp_path: Path) -> None:
    """Letters that mean one thing in both parsers, plus `--g` (distilled guidance) in training lines
    only and `--fs` in infer lines only (tests/test_sampling.py reads both back).
    (The memo's own dataset lives on the GPU box, so the example's records stand in.)"""
    spec = load_spec(REPO / "configs/example.yaml")
    files = plan.build(spec, tmp_path).files
    training = schema.prompt_options("training_sample_prompts")
    generate = schema.prompt_options("generate_from_file")
    for name in ("prompts.txt", "infer-prompts.txt"):
        lines = [line for line in files[tmp_path / name].splitlines() if not line.startswith("#")]
        assert lines
        for line in lines:
            text, *parts = line.split(" --")
            assert text.strip()
            letters = [part.split(" ", 1)[0] for part in parts]
            own = TRAINING_PROMPT_OPTION if name == "prompts.txt" else GENERATE_PROMPT_OPTION
            for letter in letters:
                assert letter in own.values(), letter
                assert letter in training and letter in generate, letter
                assert letter != "f"  # frames in one parser, seconds in the other
            # FramePack one-frame needs a start image and the one-frame modes on every line
            assert "i" in letters and "of" in letters
            assert letters.count("ci") == len(spec.one_frame.clean_indices)


def test_one_frame_modes_are_known_tokens() -> None:
    spec = load_spec(REPO / "configs/v8.yaml")
    tokens = {t.split("=")[0] for t in schema.one_frame_tokens()}
    for token in one_frame_modes(spec).split(","):
        assert token.split("=")[0] in tokens
    assert one_frame_modes(spec) == "target_index=5,control_index=0;10,no_post"


def test_prompt_option_letters_exist_in_both_parsers() -> None:
    training = schema.prompt_options("training_sample_prompts")
    generate = schema.prompt_options("generate_from_file")
    assert set(PROMPT_OPTION.values()) <= set(training) & set(generate)


def test_relative_dataset_paths_get_an_absolute_copy_for_musubi(tmp_path: Path) -> None:
    spec = load_spec(REPO / "configs/example.yaml")
    built = plan.build(spec, tmp_path)
    dataset = tomllib.loads(built.files[tmp_path / "dataset.toml"])
    copy = Path(dataset["datasets"][0]["image_jsonl_file"])
    assert copy == tmp_path / "data/0-metadata-v1.jsonl"
    for line in built.files[copy].splitlines():
        assert all(os.path.isabs(v) for k, v in __import__("json").loads(line).items() if k != "caption")


def test_pass_through_keys_are_rendered(project, tmp_path: Path) -> None:
    spec = load_spec(project("musubi:\n  config: {network_dropout: 0.1, max_timestep: 900}\n"))
    config = config_dict(spec, RenderedPaths(tmp_path))
    assert config["network_dropout"] == 0.1
    assert config["max_timestep"] == 900


def _argv_dests(argv: list[str], script: str | None) -> set[str]:
    """The options an argv sets (after its module, or accelerate's before it), by dest name."""
    known = schema.accelerate_options() if script is None else schema.script_options(script)
    dests = {flag: option.dest for option in known.values() for flag in option.flags}
    part = _accelerate_part(argv) if script is None else argv[argv.index("-m", argv.index("-m") + 1) + 2 :]
    return {dests[arg] for arg in part if arg.startswith("--")}


@pytest.mark.parametrize("spec_name", [*SPECS, "multi"])
def test_every_rendered_option_is_refused_as_pass_through(spec_name: str, project, tmp_path: Path) -> None:
    """The pass-through check reads what fplora renders off the render functions; whatever real specs
    render must be in it, so a pass-through option can never silently replace a spec field."""
    from fplora.musubi.names import PASS_THROUGH_SCRIPT as SCRIPTS
    from fplora.render import commands
    from fplora.render.owned import rendered_options

    if spec_name == "multi":
        text = (
            "launch: {num_processes: 2, num_machines: 2, main_process_ip: 10.0.0.1, main_process_port: 1}\n"
        )
        spec = load_spec(project(text + "train: {blocks_to_swap: 4, fp8_base: true, fp8_scaled: true}\n"))
    else:
        spec = load_spec(REPO / spec_name)
    owners = rendered_options()
    paths = RenderedPaths(tmp_path)
    assert set(config_dict(spec, paths)) <= set(owners["config"])
    lora = tmp_path / "x.safetensors"
    argvs = {
        "config": commands.train(spec, paths, "py", output_name="x", resume=tmp_path, max_train_steps=3),
        "cache_latents": commands.cache_latents(spec, paths, "py"),
        "cache_text_encoder": commands.cache_text_encoder(spec, paths, "py"),
        "generate": commands.generate(spec, paths, "py", lora=lora, multiplier=1.0, save_path=tmp_path),
    }
    for section, argv in argvs.items():
        assert _argv_dests(argv, SCRIPTS[section]) <= set(owners[section]), section
        assert _argv_dests(argv, None) <= set(owners["launch"])
    assert set(commands.launch_options(spec, training=True)) <= set(owners["launch"])


def test_rendered_options_name_the_spec_field_that_sets_them() -> None:
    from fplora.render.owned import rendered_options

    owners = rendered_options()
    assert owners["config"]["max_train_steps"] == "train.max_train_steps"
    assert owners["config"]["network_dim"] == "train.network.dim"
    assert owners["config"]["log_with"] == "train.logging.with"  # the key as written (alias)
    assert owners["config"]["log_config"] == "train.logging.log_config"
    assert owners["config"]["sage_attn"] == "train.attention"
    assert owners["config"]["output_dir"] == "train.output_dir"
    assert owners["cache_latents"]["one_frame_no_2x"] == "one_frame.no_2x"
    assert owners["generate"]["output_type"] == "infer.output_type"
    assert owners["generate"]["blocks_to_swap"] == "infer.blocks_to_swap"
    assert owners["launch"]["multi_gpu"] == "launch.num_processes"
    for section, dest in [("config", "dataset_config"), ("config", "resume"), ("config", "config_file"),
                          ("cache_latents", "one_frame"), ("generate", "lora_weight"), ("generate", "save_path"),
                          ("generate", "from_file"), ("config", "sample_prompts")]:  # fmt: skip
        assert owners[section][dest] is None, dest  # fplora's own


def test_booleans_are_written_only_when_true(project, tmp_path: Path) -> None:
    spec = load_spec(project("train:\n  split_attn: false\n"))
    config = config_dict(spec, RenderedPaths(tmp_path))
    assert "fp8_base" not in config and "split_attn" not in config
    assert all(value is not False for value in config.values())


def test_per_dataset_overrides_go_into_its_table(project) -> None:
    text = "datasets:\n  - {jsonl: ../data/dataset-v1/metadata-v1.jsonl, num_repeats: 3, resolution: 256}\n"
    entry = dataset_dict(load_spec(project(text)))["datasets"][0]
    assert entry["num_repeats"] == 3 and entry["resolution"] == 256


def test_header_names_the_spec_in_every_file(tmp_path: Path) -> None:
    spec = load_spec(REPO / "configs/example.yaml")
    for path, text in plan.build(spec, tmp_path).files.items():
        if path.suffix != ".jsonl":
            assert re.search(r"^# fplora-spec: .*configs/example\.yaml$", text, re.MULTILINE), path


def _accelerate_part(argv: list[str]) -> list[str]:
    start = argv.index("accelerate.commands.launch") + 1
    return argv[start : argv.index("-m", start)]


def test_multi_node_launch_renders_accelerate_flags(project, tmp_path: Path) -> None:
    """Two pods as one job: same spec, RANK=1 on the second (README, "Several GPUs, several machines")."""
    from fplora.render import commands

    text = (
        "launch:\n  num_processes: 4\n  num_machines: 2\n  machine_rank: ${RANK:-0}\n"
        "  main_process_ip: 10.0.0.1\n  main_process_port: 29500\n"
    )
    os.environ["RANK"] = "1"
    try:
        spec = load_spec(project(text))
    finally:
        del os.environ["RANK"]
    argv = commands.train(spec, RenderedPaths(tmp_path), "python")
    launch = _accelerate_part(argv)
    assert launch == [
        "--multi_gpu",
        "--num_processes", "4",
        "--num_machines", "2",
        "--mixed_precision", "bf16",
        "--dynamo_backend", "no",
        "--num_cpu_threads_per_process", "1",
        "--machine_rank", "1",
        "--main_process_ip", "10.0.0.1",
        "--main_process_port", "29500",
    ]  # fmt: skip
    options = {flag: o for o in schema.accelerate_options().values() for flag in o.flags}
    for arg in launch:
        if arg.startswith("--"):
            assert arg in options, arg  # accelerate refuses abbreviations: exact names only


def test_caching_and_inference_always_launch_one_process(project, tmp_path: Path) -> None:
    from fplora.render import commands

    spec = load_spec(project("launch:\n  num_processes: 2\n"))
    paths = RenderedPaths(tmp_path)
    for argv in (
        commands.cache_latents(spec, paths, "python"),
        commands.cache_text_encoder(spec, paths, "python"),
    ):
        launch = _accelerate_part(argv)
        assert launch[launch.index("--num_processes") + 1] == "1"
        assert "--multi_gpu" not in launch


def test_the_table_spec_validation_reads_is_what_the_renderers_render() -> None:
    """spec/ reads the rendered-options table as data (it must not import render/); it must stay
    what render/owned.py derives from the render functions now."""
    from fplora.render.owned import rendered_options as derived
    from fplora.spec.rules.pass_through import rendered_options as bundled

    assert bundled() == derived(), "refresh it: uv run python -m fplora.render.owned"


def _argparse_of(script: str | None) -> argparse.ArgumentParser:
    """A real argparse parser with the script's options as the schema records them (types by name),
    to read back what fplora puts on its command line."""
    parser = argparse.ArgumentParser(exit_on_error=False, add_help=False)
    known = schema.accelerate_options() if script is None else schema.script_options(script)
    types = {"int": int, "float": float}
    for option in known.values():
        if not option.takes_value:
            parser.add_argument(*option.flags, dest=option.dest, action="store_true")
        else:
            parser.add_argument(
                *option.flags,
                dest=option.dest,
                type=types.get(str(option.type), str),
                nargs=option.nargs,
                choices=option.choices,
            )
    return parser


def test_command_line_pass_through_values_are_taken_as_argparse_converts_them(
    project, tmp_path: Path
) -> None:
    """A pass-through option of a command-line script goes through argparse's conversion (unlike the
    training config's TOML): `"30"` for an int option is 30, 0 for a text option "0", `false` for an
    option of words is the word. Check accepts them, and the argv parses back to those values."""
    from fplora.render import commands

    spec = load_spec(
        project(
            "musubi:\n"
            "  generate: {fps: '30', magcache_mag_ratios: 0, compile_dynamic: false, video_seconds: '1.5',"
            " compile: true}\n"
            "  cache_latents: {batch_size: '1', keep_cache: false}\n"
            "launch:\n  extra: {max_restarts: '0'}\n"
        )
    )
    paths = RenderedPaths(tmp_path)
    generate = commands.generate(
        spec, paths, "py", lora=tmp_path / "x.safetensors", multiplier=1.0, save_path=tmp_path
    )
    parsed, _ = _argparse_of("fpack_generate_video").parse_known_args(generate[generate.index("-m", 3) + 2 :])
    assert (parsed.fps, parsed.magcache_mag_ratios, parsed.compile_dynamic) == (30, "0", "false")
    assert (parsed.video_seconds, parsed.compile) == (1.5, True)
    latents = commands.cache_latents(spec, paths, "py")
    parsed, _ = _argparse_of("fpack_cache_latents").parse_known_args(latents[latents.index("-m", 3) + 2 :])
    assert (parsed.batch_size, parsed.keep_cache) == (1, False)
    train = commands.train(spec, paths, "py")
    parsed, _ = _argparse_of(None).parse_known_args(train[3 : train.index("-m", 3)])
    assert parsed.max_restarts == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("generate: {fps: 30.5}", "musubi.generate.fps: expects int, got '30.5'"),
        ("generate: {fps: true}", "musubi.generate.fps: expects int, got 'true'"),
        ("generate: {fps: [30, 31]}", "musubi.generate.fps: expects 1 value, got 2: [30, 31]"),
        ("generate: {sample_solver: Unipc}", "musubi.generate.sample_solver: must be one of unipc, dpm++, vanilla, got 'Unipc'"),
        ("generate: {f1: 'yes'}", "musubi.generate.f1: expects true or false"),
        ("generate: {custom_system_prompt: -x}", "musubi.generate.custom_system_prompt: '-x' would be read as an option, not as its value"),
        ("config: {max_timestep: '900'}", "musubi.config.max_timestep: expects int, got str '900'"),
    ],
)  # fmt: skip
def test_pass_through_values_argparse_or_toml_would_refuse_are_refused(
    project, text: str, expected: str
) -> None:
    from fplora.problems import UserError

    with pytest.raises(UserError) as refused:
        load_spec(project(f"musubi:\n  {text}\n"))
    assert [f"{p.key}: {p.message}" for p in refused.value.problems if p.severity == "error"] == [expected]
