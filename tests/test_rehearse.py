"""`fplora rehearse`: the spec's rendered commands and files, run by musubi-tuner's real code on
stand-in models. Tests marked `musubi` run it for real in the CPU musubi-tuner Python; the others
check what the rehearsal is built from."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fplora.cli import app
from fplora.jobs.rehearse import checks, machine, remembered, report, stages
from fplora.jobs.rehearse import watch as watching
from fplora.musubi.framepack import DOWN, UP, musubi_name
from fplora.plan import build as build_plan
from fplora.spec import load_spec

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture
def example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The repo's example project (configs/example.yaml, datasets/example) copied into tmp_path."""
    (tmp_path / "configs").mkdir()
    for name in ("base.yaml", "example.yaml"):
        shutil.copy(REPO / "configs" / name, tmp_path / "configs" / name)
    shutil.copytree(REPO / "datasets" / "example", tmp_path / "datasets" / "example")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FPLORA_MODELS_DIR", str(tmp_path / "no-models-here"))
    return tmp_path / "configs" / "example.yaml"


def test_the_rehearsal_changes_only_models_records_steps_and_folders(example: Path) -> None:
    spec = load_spec(example)
    real = build_plan(spec)
    built = stages.build(spec, "python", real)
    ours = tomllib.loads(built.files[built.root / "rendered" / "config.toml"])
    theirs = tomllib.loads(real.files[real.paths.config])
    changed = {k for k in theirs.keys() | ours.keys() if theirs.get(k) != ours.get(k)}
    assert changed == {
        "dit",
        "vae",
        "text_encoder1",
        "text_encoder2",
        "image_encoder",
        "dataset_config",
        "output_dir",
        "sample_prompts",
        "save_every_n_steps",
        "sample_every_n_steps",
    }
    # the run's length stays, so that the scheduler is built for it; the worker stops after 2 steps
    assert ours["max_train_steps"] == theirs["max_train_steps"] == 20 and "sample_every_n_steps" not in ours
    assert ours["sample_at_first"] is True
    # one save by step (at the training stage's last step) and one at the end; the 1-step resume
    # saves only at its end (its step 1 is no multiple of 2)
    resumed = tomllib.loads(built.files[built.root / "rendered" / "config-resume.toml"])
    assert ours["save_every_n_steps"] == resumed["save_every_n_steps"] == 2
    assert Path(ours["dit"]).name == Path(theirs["dit"]).name
    data = tomllib.loads(built.files[Path(ours["dataset_config"])])
    (entry,) = data["datasets"]
    assert len(built.files[Path(entry["image_jsonl_file"])].splitlines()) == 2
    names = [s.name for s in built.stages]
    assert names == ["cache-latents", "cache-text", "train", "resume", "generate", "sweep"]
    assert built.skipped == [("eval", "the spec has no eval: section")]
    train = next(s for s in built.stages if s.name == "train")
    resume = next(s for s in built.stages if s.name == "resume")
    assert (train.steps, resume.steps) == (2, 1)
    assert resume.argv[resume.argv.index("--max_train_steps") + 1] == "18"  # the steps left, as a resume
    assert train.argv[train.argv.index("--config_file") + 1] == str(built.root / "rendered" / "config.toml")


def test_a_split_dit_gets_a_stand_in_for_every_shard_musubi_tuner_opens(example: Path) -> None:
    """The spec names the first of three shards; musubi-tuner opens all three from the same folder."""
    spec = load_spec(example)
    built = stages.build(spec, "python", build_plan(spec))
    names = [f"diffusion_pytorch_model-{k:05d}-of-00003.safetensors" for k in (1, 2, 3)]
    assert [p.name for p in built.dit_shards] == names
    assert {p.parent for p in built.dit_shards} == {built.root / "models" / "dit"}


def test_each_record_is_rehearsed_once_in_a_batch_of_two_whatever_the_batch_size(example: Path) -> None:
    """`fplora init`'s spec (10 repeats, batch 16 at 512x768) rehearsed a batch of 16 on a laptop's
    CPU for minutes a step in ~17 GB: its few records now go in once, so musubi-tuner makes one batch
    of them; the batch size itself, the resolution and the rest of the dataset entry are the spec's."""
    spec = load_spec(_full_size(example))
    real = build_plan(spec)
    built = stages.build(spec, "python", real)
    config = tomllib.loads(built.files[built.root / "rendered" / "config.toml"])
    (ours,) = tomllib.loads(built.files[Path(config["dataset_config"])])["datasets"]
    (theirs,) = tomllib.loads(real.files[real.paths.dataset])["datasets"]
    assert theirs["num_repeats"] == 10 and ours["num_repeats"] == 1
    general = tomllib.loads(built.files[Path(config["dataset_config"])])["general"]
    assert general == tomllib.loads(real.files[real.paths.dataset])["general"]
    assert (general["batch_size"], general["resolution"]) == (16, [512, 768])
    changed = {k for k in theirs.keys() | ours.keys() if theirs.get(k) != ours.get(k)}
    assert changed == {"num_repeats", "image_jsonl_file", "cache_directory"}


def _full_size(example: Path) -> Path:
    """The example at `fplora init`'s size: 512x768, batch 16, each record 10 times."""
    big = example.with_name("big.yaml")
    big.write_text(
        "extends: example.yaml\ndatasets:\n  - jsonl: ../datasets/example/dataset-v1/metadata-v1.jsonl\n"
        "    num_repeats: 10\ndata: {resolution: [512, 768], batch_size: 16}\n",
        encoding="utf-8",
    )
    return big


def test_without_a_gpu_every_image_is_four_times_smaller_on_each_side(example: Path) -> None:
    """On a CPU the stand-ins' attention costs the square of the tokens: `fplora init`'s 512x768 spec
    rehearsed in 322 s on the 2-core CPU at its own size, 21 s at 128x192. The datasets' resolution
    and every prompt's --w/--h shrink alike; nothing else changes, and the rehearsal is another one
    (its fingerprint), so a pass on a laptop does not stand for the GPU box's full-size one."""
    spec = load_spec(_full_size(example))
    real = build_plan(spec)
    on_gpu, on_cpu = stages.build(spec, "python", real), stages.build(spec, "python", real, gpu=False)
    assert on_cpu.fingerprint != on_gpu.fingerprint
    assert [n for n in on_cpu.notes if "4 times smaller" in n] and not on_gpu.notes
    changed = {p for p in on_gpu.files if on_gpu.files[p] != on_cpu.files[p]}
    rendered = on_cpu.root / "rendered"
    assert changed == {rendered / "dataset.toml", rendered / "prompts.txt", rendered / "infer-prompts.txt"}
    assert tomllib.loads(on_cpu.files[rendered / "dataset.toml"])["general"]["resolution"] == [128, 192]
    for name in ("prompts.txt", "infer-prompts.txt"):
        assert re.findall(r"--w (\d+) --h (\d+)", on_gpu.files[rendered / name]) == [("512", "768")]
        assert re.findall(r"--w (\d+) --h (\d+)", on_cpu.files[rendered / name]) == [("128", "192")]
    # the example's own 64x96 cannot shrink and stay 64 pixels a side: rehearsed as it is
    small = load_spec(example)
    assert stages.build(small, "python", gpu=False).files == stages.build(small, "python").files


@pytest.mark.parametrize(
    ("sides", "factor"),
    [
        ([512, 768], 4),
        ([256, 384], 4),
        ([512, 768, 608], 4),  # 608 is 144 at a quarter, down to a whole step of 16
        ([480, 720], 4),
        ([192, 128], 2),
        ([520, 776], 1),  # no whole steps of 16: rehearsed as written (the DiT cannot tile it)
        ([512, 72], 1),
        ([96], 1),
        ([], 1),
    ],
)
def test_an_image_shrinks_only_to_whole_steps_of_16_and_at_least_64_pixels(
    sides: list[int], factor: int
) -> None:
    assert stages.smaller_by(sides) == factor


def test_a_side_that_is_no_whole_step_of_16_keeps_every_size_as_written(example: Path) -> None:
    """An infer prompt 72 pixels wide (which the DiT cannot tile) leaves the whole rehearsal at the
    spec's sizes, that prompt's 72 included: its failure is what the generate stage must show."""
    spec_file = example.with_name("w72.yaml")
    spec_file.write_text(
        "extends: example.yaml\ninfer: {prompts: [{record: 1, width: 72}]}\n", encoding="utf-8"
    )
    spec = load_spec(spec_file)
    on_cpu = stages.build(spec, "python", build_plan(spec), gpu=False)
    rendered = on_cpu.root / "rendered"
    assert re.findall(r"--w (\d+) --h (\d+)", on_cpu.files[rendered / "infer-prompts.txt"]) == [("72", "96")]
    assert stages.smaller_side(72, 1) == 72 and stages.smaller_side(720, 4) == 176


def test_sides_of_whole_steps_of_16_but_not_of_64_shrink_to_whole_steps(example: Path) -> None:
    """480x720 (a multiple of 16, not of 64) rehearsed at its full size on the 2-core CPU: minutes of
    training stage, near the time limit. It shrinks to 112x176, whole steps of 16 again, the
    datasets and every prompt alike."""
    spec_file = example.with_name("r480.yaml")
    spec_file.write_text("extends: example.yaml\ndata: {resolution: [480, 720]}\n", encoding="utf-8")
    spec = load_spec(spec_file)
    on_cpu = stages.build(spec, "python", build_plan(spec), gpu=False)
    rendered = on_cpu.root / "rendered"
    assert tomllib.loads(on_cpu.files[rendered / "dataset.toml"])["general"]["resolution"] == [112, 176]
    for name in ("prompts.txt", "infer-prompts.txt"):
        assert re.findall(r"--w (\d+) --h (\d+)", on_cpu.files[rendered / name]) == [("112", "176")]
    assert [n for n in on_cpu.notes if "4 times smaller" in n]


@pytest.mark.parametrize(
    ("tile", "factor"),
    [
        (128, 4),  # base.yaml's: 128x192 is still tiled, each side in several tiles
        (208, 2),  # 192 px would not be tiled at all; 256x384 is, as 512x768 is
        (400, 1),  # tiles every 300 px: 512 in 2 tiles, but 256 in 1 and 128x192 not tiled: full size
        (1024, 4),  # nothing is tiled at either size
        (None, 4),
    ],
)
def test_shrinking_keeps_the_vaes_spatial_tiling_as_the_specs_sizes_meet_it(
    tile: int | None, factor: int
) -> None:
    """A tile size the spec's images are tiled with must tile the smaller images too, each side in
    one tile or several as at full size: tiles of 208 px make wrong latent sizes at 512x768 (a
    failure on the GPU), and 128x192 would not be tiled at all."""
    assert stages.smaller_by([512, 768], [(512, 768)], tile) == factor


def test_a_spec_that_keeps_the_last_saves_saves_at_every_step(example: Path) -> None:
    """With save_last_n_steps, musubi-tuner removes older saves as it saves: saving at every step
    of the rehearsal runs that removal code too."""
    keeps = example.with_name("keeps.yaml")
    keeps.write_text("extends: example.yaml\nmusubi: {config: {save_last_n_steps: 1}}\n", encoding="utf-8")
    built = stages.build(load_spec(keeps), "python")
    ours = tomllib.loads(built.files[built.root / "rendered" / "config.toml"])
    assert ours["save_last_n_steps"] == 1 and ours["save_every_n_steps"] == 1


def test_a_spec_that_never_samples_in_training_is_not_expected_to(example: Path) -> None:
    """Prompts with `at_first: false` and no `every_n_steps` render no `sample_prompts`: training
    never samples, so the train stage must not wait for sample images (it failed every such spec on
    the GPU machine, 2026-12-06, with "sampling at first wrote 0 of 1 sample images")."""
    never = example.with_name("never.yaml")
    never.write_text("extends: example.yaml\nsample:\n  at_first: false\n  every_n_steps: null\n")
    spec = load_spec(never)
    built = stages.build(spec, "python", build_plan(spec))
    ours = tomllib.loads(built.files[built.root / "rendered" / "config.toml"])
    assert "sample_prompts" not in ours and "sample_at_first" not in ours
    train = next(s for s in built.stages if s.name == "train")
    assert train.check is None and "sampling" not in train.what


def test_infer_prompts_are_rehearsed_once_per_option_set_whatever_option_differs(example: Path) -> None:
    """Lines that differ only in text, seed or images run once; any option (here the real CFG
    scale, which takes generate's other code path) makes a line of its own."""
    probe = example.with_name("probe.yaml")
    probe.write_text(
        "extends: example.yaml\n"
        "infer: {prompts: [{record: 1}, {record: 2, seed: 3}, {record: 3, cfg_scale: 2.0}]}\n",
        encoding="utf-8",
    )
    built = stages.build(load_spec(probe), "python")
    generate = next(s for s in built.stages if s.name == "generate")
    assert generate.what == "generate, 2 of 3 infer prompts (one per setting)"
    lines = built.files[built.root / "rendered" / "infer-prompts.txt"].splitlines()
    prompts = [line for line in lines if line and not line.startswith("#")]
    assert len(prompts) == 2 and "--l 2" in prompts[1]


@pytest.mark.musubi
def test_the_example_rehearses_and_a_repeat_is_remembered(example: Path, musubi_python, monkeypatch) -> None:
    for key, value in musubi_python.env.items():
        monkeypatch.setenv(key, value)
    first = runner.invoke(app, ["rehearse", str(example)])
    assert first.exit_code == 0, first.output
    assert "rehearsal passed" in first.output
    for stage in ("cache-latents", "cache-text", "train", "resume", "generate", "sweep"):
        assert f"ok   {stage}" in first.output
    out = example.parent / "example" / "rehearsal" / "out"
    assert list((out / "train" / "sample").glob("*.png"))
    assert list((out / "generate").glob("*.png")) and list((out / "sweep" / "c0").glob("*.png"))
    again = runner.invoke(app, ["rehearse", str(example)])
    assert again.exit_code == 0 and "not run again" in again.output
    # the stand-in DiT and VAE are kept per machine: the next spec's rehearsal copies them instead
    # of making them
    models = example.parent / "example" / "rehearsal" / "models"
    kept = sorted((Path(musubi_python.env["XDG_CACHE_HOME"]) / "fplora" / "rehearsal-standins").iterdir())
    assert [folder.name.split("-")[0] for folder in kept] == ["dit", "vae"]
    for folder, made in zip(kept, (models / "dit", models / "vae"), strict=True):
        assert [(p.name, p.read_bytes()) for p in sorted(made.iterdir())] == [
            (p.name, p.read_bytes()) for p in sorted(folder.iterdir())
        ]


@pytest.mark.musubi
def test_a_full_size_spec_rehearses_shrunk_on_a_cpu(example: Path, musubi_python, monkeypatch) -> None:
    """musubi-tuner's own code takes the shrunk datasets and prompts: every stage passes at 128x192."""
    for key, value in musubi_python.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(report, "has_gpu", lambda spec, python: False)  # as on CI: also on a GPU box
    big = _full_size(example)
    result = runner.invoke(app, ["rehearse", str(big)])
    assert result.exit_code == 0, result.output
    assert "every image 4 times smaller" in result.output
    for stage in ("cache-latents", "cache-text", "train", "resume", "generate", "sweep"):
        assert f"ok   {stage}" in result.output
    from PIL import Image

    (sample,) = (big.parent / "big" / "rehearsal" / "out" / "generate").glob("*.png")
    assert Image.open(sample).size == (128, 192)


CONTROLS = {
    # network creation: a pattern that leaves the real DiT's module names nothing to adapt
    "network": (
        "train: {network: {args: [\"exclude_patterns=['.*']\"]}}",
        "train",
        "RuntimeError: No LoRA modules found",
        "configs/probe.yaml:2: train.network.args",
    ),
    # optimizer creation: bitsandbytes' AdamW8bit takes betas as a pair
    "optimizer": (
        'train: {optimizer: {type: adamw8bit, args: ["betas=0.9"]}}',
        "train",
        "TypeError: object of type 'float' has no len()",
        "configs/probe.yaml:2: train.optimizer.args",
    ),
    # the training sampler: a width the packed DiT's rotary embedding cannot take
    "sampler": (
        "sample: {prompts: [{record: 1, width: 72}]}",
        "train",
        "RuntimeError: The size of tensor a",
        "configs/probe.yaml:2: sample.prompts",
    ),
    # caching's argument handling: its thread pool needs at least one worker
    "cache": (
        "musubi: {cache_latents: {num_workers: 0}}",
        "cache-latents",
        "ValueError: max_workers must be greater than 0",
        "configs/probe.yaml:2: musubi.cache_latents.num_workers",
    ),
    # generate: every prompt fails inside its loop and the script still exits 0
    "generate": (
        "infer: {prompts: [{record: 1, width: 72}]}",
        "generate",
        "wrote 0 of 1 latent (exit code 0 notwithstanding)",
        "configs/probe.yaml:2: infer.prompts",
    ),
}


def _probe(example: Path, line: str) -> Path:
    probe = example.with_name("probe.yaml")
    probe.write_text(f"extends: example.yaml\n{line}\n", encoding="utf-8")
    return probe


@pytest.mark.musubi
@pytest.mark.parametrize("name", sorted(CONTROLS))
def test_a_setting_check_accepts_but_musubi_tuner_rejects_fails_the_rehearsal(
    name: str, example: Path, musubi_python, monkeypatch
) -> None:
    line, stage, error, spec_line = CONTROLS[name]
    for key, value in musubi_python.env.items():
        monkeypatch.setenv(key, value)
    probe = _probe(example, line)
    assert runner.invoke(app, ["check", str(probe), "--skip-models"]).exit_code == 0
    result = runner.invoke(app, ["rehearse", str(probe)])
    assert result.exit_code == 1, result.output
    assert f"rehearsal failed at stage {stage} " in result.output
    assert error in result.output
    assert f"spec: {spec_line}" in result.output
    assert "Traceback" not in result.output


@pytest.mark.musubi
def test_a_stage_past_its_time_limit_is_stopped_as_a_hang(example: Path, musubi_python, monkeypatch) -> None:
    """The limit is the same mechanism whatever hangs: here one second, which training outlasts
    (caching may or may not: with the stand-ins already made it can take under a second)."""
    for key, value in musubi_python.env.items():
        monkeypatch.setenv(key, value)
    result = runner.invoke(app, ["rehearse", str(example), "--time-limit", "1"])
    assert result.exit_code == 1, result.output
    found = re.search(
        r"rehearsal failed at stage (cache-latents|train) \(.*?\): no result after 1 s: it hangs",
        result.output,
    )
    assert found, result.output
    assert re.search(rf"--   (train|resume|sweep): not run: {found.group(1)}", result.output), result.output
    assert "Traceback" not in result.output


@pytest.mark.musubi
def test_a_vae_chunk_size_whose_loop_never_ends_is_a_hang_at_caching(
    example: Path, musubi_python, monkeypatch
) -> None:
    """The stand-in VAE is HunyuanVideo's own class: with chunks of 1 its stride-2 convolutions get
    chunks of 0 and musubi-tuner's chunking loop never advances, as on a GPU."""
    for key, value in musubi_python.env.items():
        monkeypatch.setenv(key, value)
    probe = _probe(example, "models: {vae_chunk_size: 1}")
    assert runner.invoke(app, ["check", str(probe), "--skip-models"]).exit_code == 0
    result = runner.invoke(app, ["rehearse", str(probe), "--time-limit", "45"])
    assert result.exit_code == 1, result.output
    assert "rehearsal failed at stage cache-latents (latent caches): no result after 45 s: it hangs" in (
        result.output
    )
    assert "spec: configs/probe.yaml:2: models.vae_chunk_size: set here" in result.output


@pytest.mark.musubi
def test_valid_variants_of_the_same_settings_pass(example: Path, musubi_python, monkeypatch) -> None:
    for key, value in musubi_python.env.items():
        monkeypatch.setenv(key, value)
    probe = _probe(
        example,
        "train: {network: {args: [\"exclude_patterns=['.*single_transformer_blocks.*']\"]},"
        ' optimizer: {type: adamw8bit, args: ["betas=(0.9, 0.99)"]}}\n'
        "sample: {prompts: [{record: 1, width: 80}]}\n"
        "infer: {prompts: [{record: 1, width: 80}, {record: 2, width: 64}]}\n"
        "models: {vae_chunk_size: 16, vae_spatial_tile_sample_min_size: 32}",
    )
    result = runner.invoke(app, ["rehearse", str(probe)])
    assert result.exit_code == 0, result.output
    assert "generate, 2 of 2 infer prompts" in result.output


REAL_SHAPES = {  # (out, in) of two Linears of the real FramePack DiT (hidden 3072, MLP 4 x 3072)
    "transformer_blocks.0.attn.to_q": (3072, 3072),
    "single_transformer_blocks.39.proj_out": (3072, 3072 + 4 * 3072),
}


def real_lora(path: Path, rank: int, alpha: float) -> Path:
    """A LoRA as musubi-tuner saves one for the real DiT (two of its 440 modules, zero weights:
    only the names, shapes, dtypes and alphas matter to loading)."""
    header: dict[str, object] = {"__metadata__": {"ss_network_dim": str(rank)}}
    data = b""
    for module, (out, inner) in REAL_SHAPES.items():
        for suffix, shape, dtype, raw in (
            (DOWN, [rank, inner], "BF16", bytes(2 * rank * inner)),
            (UP, [out, rank], "BF16", bytes(2 * rank * out)),
            ("alpha", [], "F32", struct.pack("<f", alpha)),
        ):
            header[f"{musubi_name(module)}.{suffix}"] = {
                "dtype": dtype,
                "shape": shape,
                "data_offsets": [len(data), len(data) + len(raw)],
            }
            data += raw
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def test_the_specs_lora_files_are_handed_over_as_stand_ins(example: Path) -> None:
    """network_weights and base_weights name LoRAs of the real DiT, which the stand-in DiT cannot
    load: the rehearsed configs (training and resume) name stand-ins, which the worker makes from
    the files; a file that is not there is left as written, for musubi-tuner to name."""
    start = real_lora(example.parents[1] / "start.safetensors", 4, 2)
    probe = _probe(
        example,
        "musubi: {config: {network_weights: start.safetensors,"
        " base_weights: [start.safetensors, gone.safetensors]}}",
    )
    spec = load_spec(probe)
    built = stages.build(spec, "python")
    (standin,) = built.loras.values()
    assert built.loras == {start.absolute(): standin}
    assert standin.parent == built.root / "models" / "loras"
    for name in ("config.toml", "config-resume.toml"):
        config = tomllib.loads(built.files[built.root / "rendered" / name])
        assert config["network_weights"] == str(standin)
        assert config["base_weights"] == [str(standin), "gone.safetensors"]
    real_lora(start, 8, 4)  # another file: another rehearsal
    assert stages.build(spec, "python").fingerprint != built.fingerprint


@pytest.mark.musubi
def test_a_lora_made_for_the_real_dit_is_loaded_through_its_stand_in(
    example: Path, musubi_python, monkeypatch
) -> None:
    """musubi-tuner's own loading of the spec's LoRA files runs: merged into the DiT first
    (base_weights), then loaded into the new network (network_weights), with the file's ranks and
    alphas; the stand-in keeps its names, ranks, alphas and dtypes, shaped for the stand-in DiT."""
    for key, value in musubi_python.env.items():
        monkeypatch.setenv(key, value)
    real_lora(example.parents[1] / "start.safetensors", 4, 2)
    probe = _probe(
        example,
        "train: {network: {dim: 4, alpha: 2}}\n"
        "musubi: {config: {network_weights: start.safetensors, base_weights: [start.safetensors]}}",
    )
    result = runner.invoke(app, ["rehearse", str(probe)])
    assert result.exit_code == 0, result.output
    (standin,) = (example.parent / "probe" / "rehearsal" / "models" / "loras").glob("*.safetensors")
    (length,) = struct.unpack("<Q", standin.read_bytes()[:8])
    header = json.loads(standin.read_bytes()[8 : 8 + length])
    assert header.pop("__metadata__") == {"ss_network_dim": "4"}
    q, out = (
        musubi_name("transformer_blocks.0.attn.to_q"),
        musubi_name("single_transformer_blocks.39.proj_out"),
    )
    shapes = {name: (info["dtype"], info["shape"]) for name, info in header.items()}
    assert shapes == {
        f"{q}.{DOWN}": ("BF16", [4, 128]),
        f"{q}.{UP}": ("BF16", [128, 4]),
        f"{q}.alpha": ("F32", []),
        f"{out}.{DOWN}": ("BF16", [4, 256]),
        f"{out}.{UP}": ("BF16", [128, 4]),
        f"{out}.alpha": ("F32", []),
    }
    log = (example.parent / "probe" / "rehearsal" / "rehearsal.log").read_text(encoding="utf-8")
    assert f"merging module: {standin}" in log
    loaded = [line for line in log.splitlines() if line.startswith(f"load network weights from {standin}")]
    assert len(loaded) == 2  # training, then the resume
    assert all(line.endswith("unexpected_keys=[])") for line in loaded)  # each key found its module


def test_a_cache_check_finds_the_caches_of_an_image_with_dots_in_its_name(tmp_path: Path) -> None:
    """musubi-tuner names a cache after the image's name without its last suffix (`a.v2.png` →
    `a.v2_fp_te.safetensors`): the check reads each cache's stem back, as for the latents."""
    for name in ("a.v2_0512x0512_fp.safetensors", "a.v2_fp_te.safetensors", "b_fp_te.safetensors"):
        (tmp_path / name).write_bytes(b"")
    expected = [(tmp_path, {"a.v2", "b"})]
    assert checks.caches_check(expected, latents=False)("") is None
    latents = checks.caches_check(expected, latents=True)("") or ""
    assert latents.startswith("wrote 1 of 2 latent caches")


def _outcome(error: str, **options: object) -> watching.Outcome:
    stage = stages.Stage("train", "2 training steps", ["python"], "config", dict(options))
    return watching.Outcome(stage, code=1, error=error)


def test_a_package_this_python_lacks_is_the_machines_not_the_specs() -> None:
    watch = watching._Watch(stages.build(load_spec(REPO / "configs" / "example.yaml"), "p"), 1.0, print)
    note = "(the package prodigyopt is not installed in this musubi-tuner Python: ...)"
    missing = machine.machine_reason("/venv/bin/python", _outcome(f"ModuleNotFoundError: {note}"), watch)
    assert missing is not None and missing.startswith("the package prodigyopt is not installed")
    wandb = _outcome("ImportError: No wandb / wandb がインストールされていないようです")
    assert "the package wandb is not installed" in (machine.machine_reason("/p", wandb, watch) or "")
    # a part missing from a package that exists is the spec's (the worker adds no note for it)
    typo = _outcome("ModuleNotFoundError: No module named 'networks.lora_framepak'")
    assert machine.machine_reason("/p", typo, watch) is None
    # an attention kernel the options select, missing where no stand-in replaces it (a CUDA machine)
    watch.missing_kernels = ["xformers"]
    kernel = machine.machine_reason("/p", _outcome("TypeError: 'NoneType'", xformers=True), watch)
    assert kernel == "the attention kernel xformers is not installed in this musubi-tuner Python"
    assert machine.machine_reason("/p", _outcome("TypeError: 'NoneType'", sdpa=True), watch) is None


def test_musubi_tuners_own_refusal_of_a_device_without_cuda_is_the_machines() -> None:
    """`block_swap_h2d_only` swaps through LoRAStreamOffloader, which asserts a CUDA device: valid on
    the GPU box, so without CUDA the stage is not rehearsed rather than failed. The same words in the
    stage's log (an import-time warning) are not enough, and with CUDA the error is the spec's."""
    watch = watching._Watch(stages.build(load_spec(REPO / "configs" / "example.yaml"), "p"), 1.0, print)
    error = "AssertionError: LoRAStreamOffloader currently supports CUDA only"
    reason = machine.machine_reason("/p", _outcome(error, block_swap_h2d_only=True), watch)
    assert reason is not None and reason.startswith("its code path needs CUDA")
    logged = _outcome("ValueError: --block_swap_ring_size must be >= 1")
    logged.log = ["WARNING: this kernel requires CUDA"]
    assert machine.machine_reason("/p", logged, watch) is None
    watch.cuda = True
    assert machine.machine_reason("/p", _outcome(error, block_swap_h2d_only=True), watch) is None


def test_a_dtype_error_of_a_path_that_relies_on_cudas_autocast_is_the_cpus() -> None:
    """fp16 mixed precision and fp8_base without fp8_scaled run under CUDA's autocast, which casts
    for them; a CPU has none for fp16 and casts no fp8 weight. Without CUDA their dtype errors are
    the machine's; the same error with bf16 (or on a CUDA machine) stays the spec's."""
    watch = watching._Watch(stages.build(load_spec(REPO / "configs" / "example.yaml"), "p"), 1.0, print)
    error = "RuntimeError: Input type (float) and bias type (c10::BFloat16) should be the same"
    fp16 = machine.machine_reason("/p", _outcome(error, mixed_precision="fp16"), watch)
    assert fp16 is not None and fp16.startswith("mixed_precision fp16 runs under autocast")
    mixed = "RuntimeError: mixed dtype (CPU): expect parameter to have scalar type of Float"
    fp8 = machine.machine_reason("/p", _outcome(mixed, mixed_precision="bf16", fp8_base=True), watch)
    assert fp8 is not None and fp8.startswith("fp8_base without fp8_scaled")
    scaled = _outcome(mixed, mixed_precision="bf16", fp8_base=True, fp8_scaled=True)
    assert machine.machine_reason("/p", scaled, watch) is None
    assert machine.machine_reason("/p", _outcome(error, mixed_precision="no"), watch) is None
    watch.cuda = True
    assert machine.machine_reason("/p", _outcome(error, mixed_precision="fp16"), watch) is None


def test_a_warmup_share_of_the_steps_renders_as_musubi_tuner_reads_it(example: Path) -> None:
    probe = _probe(example, "train: {optimizer: {lr_scheduler: polynomial, lr_warmup_steps: 0.05}}")
    assert runner.invoke(app, ["check", str(probe), "--skip-models"]).exit_code == 0
    real = build_plan(load_spec(probe))
    assert tomllib.loads(real.files[real.paths.config])["lr_warmup_steps"] == 0.05
    refused = _probe(example, "train: {optimizer: {lr_scheduler: polynomial, lr_warmup_steps: 1.5}}")
    result = runner.invoke(app, ["check", str(refused), "--skip-models"])
    assert result.exit_code == 1 and "train.optimizer.lr_warmup_steps: should be less than 1" in result.output


@pytest.mark.musubi
def test_the_scheduler_is_built_for_the_real_run_and_missing_kernels_are_stood_in_for(
    example: Path, musubi_python, monkeypatch
) -> None:
    """RexLR refuses a warmup longer than the steps it is built for: 5 of the run's 20 is fine (it
    failed while the rehearsal built it for its own 2 steps). xformers, CUDA-only, is stood in for
    on a CPU and said so; training and generate still run the options that chose it."""
    for key, value in musubi_python.env.items():
        monkeypatch.setenv(key, value)
    probe = _probe(
        example,
        "train: {attention: xformers, optimizer: {lr_scheduler: rex, lr_warmup_steps: 5}}\n"
        "infer: {attention: xformers}",
    )
    result = runner.invoke(app, ["rehearse", str(probe)])
    assert result.exit_code == 0, result.output
    assert "rehearsal passed" in result.output
    assert "note: attention kernel xformers (train, resume, generate, sweep): not installed here" in (
        result.output
    )


@pytest.mark.musubi
def test_an_optimizer_package_missing_here_is_not_rehearsed_rather_than_failed(
    example: Path, musubi_python, monkeypatch
) -> None:
    for key, value in musubi_python.env.items():
        monkeypatch.setenv(key, value)
    probe = _probe(example, "train: {optimizer: {type: fplora_no_such_package.Prodigy}}")
    result = runner.invoke(app, ["rehearse", str(probe)])
    assert result.exit_code == 0, result.output
    assert (
        "-- train: not rehearsed: the package fplora_no_such_package is not installed in this"
        " musubi-tuner Python" in " ".join(result.output.split())
    )
    assert "--   generate: not rehearsed: it needs train, which could not run here" in result.output
    assert "not rehearsed on this machine: train, resume, generate, sweep" in result.output


def test_the_worker_and_fplora_agree_on_the_protocol() -> None:
    """The rehearsal worker is package data that imports nothing of fplora: its version and event
    prefix are written again there, and must stay those of `fplora/protocol/rehearse.py`."""
    import importlib.util

    from fplora.protocol import rehearse as protocol

    spec = importlib.util.spec_from_file_location("rehearse_worker_under_test", stages.WORKER)
    assert spec is not None and spec.loader is not None
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    assert (worker.PROTOCOL, worker.EVENT_PREFIX) == (protocol.PROTOCOL, protocol.EVENT_PREFIX)
    line = "INFO musubi " + protocol.EVENT_PREFIX + json.dumps({"event": "stage_done", "stage": "train"})
    assert protocol.parse_event(line) == {"event": "stage_done", "stage": "train"}
    assert protocol.parse_event("a progress bar 3/10") is None


def test_the_stand_in_dit_is_made_once_per_machine_and_copied_for_the_next_spec(tmp_path: Path) -> None:
    from fplora.worker import rehearse as worker

    made: list[list[str]] = []

    def write_dit(paths: list[str]) -> None:
        made.append(paths)
        for index, path in enumerate(paths):
            Path(path).write_bytes(b"shard %d" % index)

    standins = type("Standins", (), {"__file__": str(stages.STANDINS), "write_dit": staticmethod(write_dit)})
    names = [f"dit-0000{i}-of-00002.safetensors" for i in (1, 2)]
    first = [tmp_path / "one" / "models" / "dit" / name for name in names]
    second = [tmp_path / "two" / "models" / "dit" / name for name in names]
    worker._stand_in_dit(standins, first, tmp_path / "cache")
    worker._stand_in_dit(standins, second, tmp_path / "cache")
    assert made == [[str(p) for p in first]]  # made once, for the first spec
    assert [p.read_bytes() for p in second] == [b"shard 0", b"shard 1"]
    (kept,) = (tmp_path / "cache").iterdir()  # no .part folder left
    assert kept.name.startswith("dit-") and sorted(p.name for p in kept.iterdir()) == names
    # without a usable cache folder it is made each time, and the rehearsal goes on
    (tmp_path / "file").write_text("")
    worker._stand_in_dit(standins, [tmp_path / "three" / n for n in names], tmp_path / "file" / "cache")
    assert len(made) == 2 and (tmp_path / "three" / names[1]).read_bytes() == b"shard 1"


def test_the_stand_in_vae_is_made_once_per_machine_and_copied_for_the_next_spec(tmp_path: Path) -> None:
    from fplora.worker import rehearse as worker

    made: list[str] = []

    def write_vae(path: str) -> None:
        made.append(path)
        Path(path).write_bytes(b"vae weights")

    standins = type("Standins", (), {"__file__": str(stages.STANDINS), "write_vae": staticmethod(write_vae)})
    first, second = (tmp_path / name / "models" / "vae" / "vae.safetensors" for name in ("one", "two"))
    second.parent.mkdir(parents=True)
    second.write_bytes(b"")  # the empty placeholder fplora leaves for the worker
    worker._stand_in_vae(standins, first, tmp_path / "cache")
    worker._stand_in_vae(standins, second, tmp_path / "cache")
    assert made == [str(first)]
    assert second.read_bytes() == b"vae weights"
    (kept,) = (tmp_path / "cache").iterdir()
    assert kept.name.startswith("vae-") and [p.name for p in kept.iterdir()] == ["vae.safetensors"]
    worker._stand_in_vae(standins, tmp_path / "three" / "vae.safetensors", None)  # no cache: made
    assert len(made) == 2


def test_a_logged_warning_is_not_taken_for_a_stages_error() -> None:
    """A hung stage has no error of its own: a package's import warning in its log (bitsandbytes'
    `Failed to load CPU gemm_4bit_forward`, printed when caching imports it; musubi-tuner's `Failed to
    import sageattention`, where that kernel is not installed) must not stand for one,
    so that the report names the spec lines that rendered the stage instead."""
    from fplora.jobs.rehearse import blame

    log = [
        "INFO:musubi_tuner.hunyuan_model.vae:Loading 3D VAE model",
        "WARNING:bitsandbytes.backends.cpu.ops:Failed to load CPU gemm_4bit_forward from kernels-community",
        "Trying to import sageattention",
        "Failed to import sageattention",  # musubi-tuner's print where the optional kernel is absent
        "  0%|          | 0/2",
    ]
    assert blame._last_error_line(log) is None
    assert blame._last_error_line([*log, "ValueError: chunk size 0"]) == "ValueError: chunk size 0"


def test_an_evaluation_or_sweep_stage_tells_the_error_its_worker_reported() -> None:
    """fplora's evaluation and sweep workers report a failure as an event's `error`, then a
    `finished` event counting the failures: the stage's error is the reported one, not that count
    (which the report showed as musubi-tuner's error line before)."""
    from fplora.jobs.rehearse import blame

    error = "NotImplementedError: No Attn Installed or batch_size > 1 is not supported"
    log = [
        "Traceback (most recent call last):",
        f"NotImplementedError: {error}",
        "fplora-eval-event " + json.dumps({"event": "checkpoint_failed", "id": "k0", "error": error}),
        'fplora-eval-event {"event": "finished", "done": 0, "failed": 2, "seconds": 0.4}',
    ]
    assert blame._last_error_line(log) == error
    sweep = ['fplora-sweep-event {"event": "error", "error": "FileNotFoundError: end.png"}']
    assert blame._last_error_line(["ValueError: earlier", *sweep]) == "FileNotFoundError: end.png"
    assert blame._last_error_line(["ValueError: earlier", log[-1]]) == "ValueError: earlier"


def test_a_partial_pass_holds_only_on_the_machine_that_made_it(
    example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stages a laptop could not run (no CUDA, a package missing) must run on the GPU box even when
    the project and the Python path are the same there; a complete pass holds everywhere."""
    spec = load_spec(example)
    built = stages.build(spec, "python", build_plan(spec))
    monkeypatch.setattr(remembered.socket, "gethostname", lambda: "laptop")
    remembered.remember_pass(built, 1.0, ["train", "resume"])
    assert remembered.passed_before(built) is not None
    monkeypatch.setattr(remembered.socket, "gethostname", lambda: "gpu-box")
    assert remembered.passed_before(built) is None
    remembered.remember_pass(built, 1.0, [])
    monkeypatch.setattr(remembered.socket, "gethostname", lambda: "laptop")
    assert remembered.passed_before(built) is not None


def test_a_wandb_run_file_is_part_of_the_rehearsal(example: Path) -> None:
    """`fplora train` writes the wandb run file when the run starts; the rehearsal writes its own, or
    musubi-tuner's toml.load of it fails before the first step (base.yaml logs to wandb)."""
    logged = example.with_name("logged.yaml")
    logged.write_text("extends: example.yaml\ntrain:\n  logging: {with: wandb, log_config: true}\n")
    spec = load_spec(logged)
    built = stages.build(spec, "python", build_plan(spec))
    for name in ("config.toml", "config-resume.toml"):
        rendered = built.root / "rendered" / name
        ours = tomllib.loads(built.files[rendered])
        run_file = Path(ours["log_tracker_config"])
        assert run_file.is_relative_to(built.root)
        assert "wandb" in tomllib.loads(built.files[run_file])


POLLS = """
import sys, time
sys.path.insert(0, sys.argv[1])
slept = []
time.sleep = slept.append  # the sleep the stand-ins wrap: recorded, not slept
import rehearse_standins
rehearse_standins.install()
for where in ("/x/musubi_tuner/dataset/image_video_dataset.py", "/x/elsewhere.py"):
    code = compile("import time\\ndef poll():\\n    time.sleep(0.1)\\n", where, "exec")
    scope = {}
    exec(code, scope)
    scope["poll"]()
print(slept[-2:])
"""


COMPILES = """
import sys
sys.path.insert(0, sys.argv[1])
import rehearse_standins
rehearse_standins.install()
import torch
if torch.cuda.is_available():
    print("cuda")
    sys.exit()
block = torch.nn.Linear(2, 2)
kept = torch.compile(block, backend="inductor", mode="max-autotune-no-cudagraphs", dynamic=False)
decorated = torch.compile(backend="eager")(len)
try:
    torch.compile(block, backend="inductr")
    refused = "no"
except Exception as error:
    refused = type(error).__name__
print(kept is block, decorated is len, refused)
"""


def _last_line_in_musubi(musubi_python, code: str) -> str:
    """The last line `code` prints, run in the musubi-tuner Python with the stand-ins' folder as its
    argument (it must exit 0)."""
    done = subprocess.run(
        [musubi_python.python, "-c", code, str(stages.STANDINS.parent)],
        env={**musubi_python.env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.musubi
def test_without_cuda_compile_checks_its_arguments_as_torch_does_but_compiles_nothing(musubi_python) -> None:
    """On a CPU the stand-ins hand back the block uncompiled, after torch's own call has checked
    the arguments: a backend torch does not know (`compile_backend: inductr`) raises there, as it
    does on the GPU box when musubi-tuner compiles its blocks."""
    last = _last_line_in_musubi(musubi_python, COMPILES)
    if last == "cuda":
        pytest.skip("torch.compile is not stood in for where CUDA is available")
    assert last == "True True InvalidBackend"


@pytest.mark.musubi
def test_caching_polls_its_threads_more_often_and_other_sleeps_are_left_alone(musubi_python) -> None:
    """musubi-tuner's caching sleeps 0.1 s between looks at its encoding threads: 5 ms in a
    rehearsal; the same 0.1 s sleep from any other code is slept as asked."""
    assert _last_line_in_musubi(musubi_python, POLLS) == "[0.005, 0.1]"


MOVES = """
import sys
sys.path.insert(0, sys.argv[1])
import rehearse_standins
import torch
if torch.cuda.is_available():
    print("cuda")
    sys.exit()
encoder = rehearse_standins.load_text_encoder2()[1]
kept = encoder.to("cpu") is encoder and encoder.to(torch.float16) is encoder
try:
    encoder.to(torch.device("cuda"))
    refused = "no"
except Exception as error:
    refused = type(error).__name__
print(kept, refused)
"""


@pytest.mark.musubi
def test_a_stand_in_encoder_moves_where_the_machine_has_the_device_and_fails_where_not(musubi_python) -> None:
    """The stand-in encoders are moved as the real ones are, and a move to a device this machine
    lacks fails with torch's own error (`musubi.cache_text_encoder.device: cuda` on a CPU), which
    the rehearsal reports as the machine's: before, the move was ignored and the stage passed."""
    last = _last_line_in_musubi(musubi_python, MOVES)
    if last == "cuda":
        pytest.skip("the move succeeds where CUDA is available")
    assert last == "True RuntimeError"


def test_a_batch_error_in_the_evaluation_stage_points_at_the_evaluation_batch(example: Path) -> None:
    """The evaluation worker's dataset is the evaluation split, batched by `eval.batch_size`: an
    error that names batch_size there points at that line, not at `data.batch_size` (which the
    training stages' errors point at)."""
    from fplora.jobs.rehearse import blame

    child = example.with_name("evalb2.yaml")
    child.write_text("extends: example.yaml\neval: {records: [3, 4], batch_size: 2}\n", encoding="utf-8")
    spec = load_spec(child)
    error = "NotImplementedError: No Attn Installed or batch_size > 1 is not supported"
    evaluation = stages.Stage("eval", "the evaluation worker", ["python"], "config", {})
    shown = [str(p) for p in blame.spec_lines(spec, evaluation, error)]
    assert any("configs/evalb2.yaml:2: eval.batch_size" in line for line in shown), shown
    assert not any("data.batch_size" in line for line in shown), shown
    training = stages.Stage("train", "training", ["python"], "config", {})
    assert any("data.batch_size" in str(p) for p in blame.spec_lines(spec, training, error))


def test_an_error_from_accelerates_launch_points_at_the_launch_lines(example: Path) -> None:
    """`launch: {mixed_precision: fp8}`: accelerate's launcher refuses it before any script starts,
    with an error that names no option (`FP8 is not available on this machine`); the lines the user
    wrote under `launch:` are where to look."""
    from fplora.jobs.rehearse import blame

    child = example.with_name("fp8.yaml")
    child.write_text("extends: example.yaml\nlaunch: {mixed_precision: fp8}\n", encoding="utf-8")
    spec = load_spec(child)
    stage = stages.Stage("cache-latents", "latent caches", ["python"], "cache_latents", {})
    shown = [
        str(p)
        for p in blame.area_lines(spec, stage, ["accelerate/utils/launch.py:prepare_simple_launcher_cmd_env"])
    ]
    assert any("configs/fp8.yaml:2: launch.mixed_precision" in line for line in shown), shown
    assert not any("launch" in line for line in blame.area_lines(spec, stage, []))


def test_generate_outputs_are_judged_by_the_prompts_seeds_as_infer_judges_them(tmp_path: Path) -> None:
    """A generate or sweep stage passes only where `fplora infer` would find each prompt's files: by
    the seed in their names (a negative seed as generate prints it), not by counting files."""
    from fplora.musubi.names import GENERATE_OUTPUTS

    kinds = GENERATE_OUTPUTS["latent_images"]
    for name in ("20261206-120000-001_-1__000.png", "20261206-120000-001_-1_latent.safetensors"):
        (tmp_path / name).write_bytes(b"x")
    assert checks.outputs_check(tmp_path, kinds, [-1])("") is None
    assert checks.outputs_check(tmp_path, kinds, [-1, 42])("") == (
        "wrote 1 of 2 latents (exit code 0 notwithstanding)"
    )
    assert checks.outputs_check(tmp_path, kinds, [7])("") == (
        "wrote 0 of 1 latent (exit code 0 notwithstanding); 1 of the 1 latent it wrote match no prompt's"
        " seed (`fplora infer` finds a prompt's files by the seed in their names)"
    )
    assert checks.outputs_check(tmp_path / "none", kinds, [7])("") == (
        "wrote 0 of 1 latent (exit code 0 notwithstanding)"
    )
