"""musubi/names.py agrees with the names the real musubi-tuner produced (schema.json's output_names)."""

from __future__ import annotations

from pathlib import Path

from fplora.musubi import names, schema

OUT = schema.schema()["output_names"]
STEP, EPOCH = OUT["examples_above_use"]["step"], OUT["examples_above_use"]["epoch"]


def _name(template: str) -> str:
    return template.replace("{output_name}", "run")


def test_checkpoint_and_state_names() -> None:
    assert names.lora_step_file("run", STEP) == _name(OUT["lora_step"])
    assert names.state_step_dir("run", STEP) == _name(OUT["state_step"])
    assert names.lora_final_file("run") == _name(OUT["lora_final"])
    assert names.state_final_dir("run") == _name(OUT["state_final"])


def test_parse_output_reads_every_name_back() -> None:
    cases = {
        "lora_step": ("lora", STEP, None),
        "state_step": ("state", STEP, None),
        "lora_epoch": ("lora", None, EPOCH),
        "state_epoch": ("state", None, EPOCH),
        "lora_final": ("lora", None, None),
        "state_final": ("state", None, None),
    }
    for key, (kind, step, epoch) in cases.items():
        name = _name(OUT[key])
        parsed = names.parse_output(name, "run", Path(name))
        assert parsed is not None, key
        assert (parsed.kind, parsed.step, parsed.epoch) == (kind, step, epoch), key
    assert names.parse_output("run-r1-step00000001.safetensors", "run", Path("x")) is None


def test_cache_names() -> None:
    image = Path("images/img001.png")  # schema: img001.png of 512x768 (width x height)
    latent = OUT["cache_latent"].removeprefix("{cache_directory}/")
    assert names.latent_cache_file(image, 512, 768) == latent
    assert names.latent_cache_stem(latent) == "img001"
    text = OUT["cache_text_encoder"].removeprefix("{cache_directory}/")
    assert names.text_encoder_cache_file(image) == text
    assert names.text_encoder_cache_stem(text) == "img001"
    assert names.latent_cache_stem(text) is None and names.text_encoder_cache_stem(latent) is None


def test_state_step_suffix_and_generate_images() -> None:
    assert names.STATE_STEP_SUFFIX.search(_name(OUT["state_step"])).group(1) == f"{STEP:08d}"
    png = "20260101-120000-123_42__000.png"  # {time_flag}_{seed}__000.png
    assert Path(png).match(names.GENERATE_IMAGE_GLOB)
    assert names.GENERATE_SEED_RE.match(png).group(1) == "42"


def test_modules_are_the_snapshot_scripts() -> None:
    scripts = set(schema.schema()["scripts"])
    assert {m.rsplit(".", 1)[1] for m in names.MODULES.values()} == scripts


def test_a_state_folder_names_the_lora_saved_with_it() -> None:
    for step in (1, 5000):
        assert names.lora_of_state(names.state_step_dir("run", step)) == names.lora_step_file("run", step)
    assert names.lora_of_state(names.state_final_dir("run")) == names.lora_final_file("run")
    assert names.lora_of_state("run-step00000001.safetensors") is None
