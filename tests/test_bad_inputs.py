"""Bad input, table-driven: each case gives exactly one located, one-line error, exit code 1, no
traceback, and nothing written (no rendered folder, no outputs)."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fplora.cli import app

runner = CliRunner()
DATASET = "data/dataset-v1/metadata-v1.jsonl"


def _jsonl(root: Path, lines: list[str]) -> None:
    (root / DATASET).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _record(i: int, **changes: object) -> str:
    record: dict[str, object] = {
        "image_path": f"t/{i}.png",
        "control_path_0": f"c/{i}_0.png",
        "control_path_1": f"c/{i}_1.png",
        "caption": f"a character turns, take {i}",
    }
    record.update(changes)
    return json.dumps({k: v for k, v in record.items() if v is not None})


Setup = Callable[[Path], None]


# (case id, spec text for configs/v1.yaml, setup of the project, the one expected error line)
SPEC_CASES: list[tuple[str, str, str]] = [
    ("yaml syntax", "train: {output_dir: [\n", "configs/v1.yaml:5: YAML syntax error: expected the node content, but found '<stream end>' — fix the YAML"),
    ("key indented under a value", "train:\n  max_train_steps: 4\n    save_every_n_steps: 2\n", "configs/v1.yaml:6: YAML indentation: `save_every_n_steps:` is indented more than the key above it expects: `max_train_steps:` (line 5) already has a value, so nothing can go under it — align it with `max_train_steps:` (2 spaces)"),
    ("key between two indentations", "train:\n  max_train_steps: 4\n save_every_n_steps: 2\n", "configs/v1.yaml:6: YAML indentation: `save_every_n_steps:` is indented 1 space, which lines it up with no key above (`train:` on line 4 is at 0, `max_train_steps:` on line 5 at 2) — indent it 2 to put it beside `max_train_steps:`, or 0 to put it beside `train:`"),
    ("list item among keys", "sample:\n  seed: 1\n  - record: 1\n", "configs/v1.yaml:6: YAML indentation: a list item `- record: 1` among the keys under `sample:` (line 4): a block holds either keys or `- ` items, not both — put the items under a key of their own (that key, then the items indented below it)"),
    ("colon in a value", "project: a: b\n", "configs/v1.yaml:4: YAML indentation: a value holds ': ', which YAML reads as another key — quote the value, e.g. key: \"a: b\""),
    ("key without its colon, keys below", "train:\n  max_train_steps 4\n  seed: 1\n", "configs/v1.yaml:5: YAML syntax error: `max_train_steps 4` has no ': ' after its key, so YAML reads it as text — write `max_train_steps: 4`"),
    ("key without its colon, last of its block", "train:\n  seed: 1\n  max_train_steps 4\n", "configs/v1.yaml:6: YAML syntax error: `max_train_steps 4` has no ': ' after its key, so YAML reads it as text — write `max_train_steps: 4`"),
    ("list item without its colon", "sample:\n  prompts:\n    - record 1\n      seed: 3\n", "configs/v1.yaml:6: YAML syntax error: `- record 1` has no ': ' after its key, so YAML reads it as text — write `- record: 1`"),
    ("a section's one key without its colon", "train:\n  max_train_steps 4\n", "configs/v1.yaml:4: train: holds the text `max_train_steps 4`: a key without ': ' after it, which YAML does not read as a key — write `max_train_steps: 4` on its line"),
    ("no space after a colon", "train:\n  max_train_steps:4\n", "configs/v1.yaml:4: train: holds the text `max_train_steps:4`: a key without ': ' after it, which YAML does not read as a key — write `max_train_steps: 4` on its line"),
    ("tab indentation", "train:\n\tseed: 1\n", "configs/v1.yaml:5: YAML syntax error: a tab in the indentation (YAML indents with spaces only) — replace the tab with spaces"),
    ("mapping left open", "train:\n  network: {dim: 4, alpha: 2\n  seed: 1\n", "configs/v1.yaml:5: YAML syntax error: the `{` opened here is not closed — end it with `}` on this line"),
    ("list left open", "data:\n  resolution: [64, 96\n  batch_size: 2\n", "configs/v1.yaml:5: YAML syntax error: the `[` opened here is not closed — end it with `]` on this line"),
    ("duplicate key", "train: {}\ntrain: {}\n", "configs/v1.yaml:5: train: duplicate key, first written on line 4; YAML allows a key once per mapping — merge the two `train:` into one, keeping what both hold"),
    ("duplicate datasets", "datasets:\n  - jsonl: a.jsonl\ntrain: {}\ndatasets:\n  - jsonl: b.jsonl\n", "configs/v1.yaml:5: datasets: duplicate key, first written on line 2; YAML allows a key once per mapping — merge the two `datasets:` into one, keeping what both hold"),
    ("duplicate nested key", "train:\n  max_train_steps: 4\n  seed: 1\n  max_train_steps: 8\n", "configs/v1.yaml:7: train.max_train_steps: duplicate key, first written on line 5; YAML allows a key once per mapping — merge the two `max_train_steps:` into one, keeping what both hold"),
    ("unknown key, nested hint", "train:\n  learnig_rate: 1\n", "configs/v1.yaml:5: train.learnig_rate: unknown key — did you mean 'optimizer.learning_rate'?"),
    ("musubi-tuner's name for a spec field", "train:\n  network_dim: 16\n", "configs/v1.yaml:5: train.network_dim: unknown key — musubi-tuner's network_dim is train.network.dim in a spec: set it there"),
    ("musubi-tuner's name, learning rate", "train:\n  optimizer_type: AdamW8bit\n", "configs/v1.yaml:5: train.optimizer_type: unknown key — musubi-tuner's optimizer_type is train.optimizer.type in a spec: set it there"),
    ("musubi-tuner's name under infer", "infer:\n  infer_steps: 20\n", "configs/v1.yaml:5: infer.infer_steps: unknown key — musubi-tuner's infer_steps is infer.steps in a spec: set it there"),
    ("musubi-tuner option with no spec field", "train:\n  network_dropout: 0.1\n", "configs/v1.yaml:5: train.network_dropout: unknown key — musubi-tuner's network_dropout has no spec field: write it under musubi: config:"),
    ("musubi-tuner option straight under musubi", "musubi:\n  max_grad_norm: 0\n", "configs/v1.yaml:5: musubi.max_grad_norm: unknown key — musubi-tuner's max_grad_norm is train.optimizer.max_grad_norm in a spec: set it there"),
    ("musubi-tuner option fplora owns", "train:\n  resume: true\n", "configs/v1.yaml:5: train.resume: unknown key — musubi-tuner's resume is fplora's to set: remove it; use `fplora train --resume`"),
    ("musubi-tuner option fplora refuses to pass", "train:\n  max_train_epochs: 10\n", "configs/v1.yaml:5: train.max_train_epochs: unknown key — musubi-tuner's max_train_epochs is not taken: remove it; set train.max_train_steps (epochs × steps per epoch) instead"),
    ("unrendered option straight under musubi", "musubi:\n  network_dropout: 0.1\n", "configs/v1.yaml:5: musubi.network_dropout: unknown key — musubi-tuner's network_dropout has no spec field: write it under musubi: config:"),
    ("a kohya dataset folder instead of a JSONL", "datasets:\n  - jsonl: ../data/dataset-v1/metadata-v1.jsonl\n    image_directory: ../data/dataset-v1/t\n", "configs/v1.yaml:4: datasets[0].image_directory: unknown key — a spec names a JSONL of records, not musubi-tuner's image_directory: `fplora dataset init <folder of pictures>` writes one (targets with control_0/, control_1/ and <stem>.txt captions); name it in datasets[].jsonl"),
    ("a dataset without its JSONL", "datasets:\n  - num_repeats: 2\n", "configs/v1.yaml:3: datasets[0].jsonl: required key is missing — add it: the dataset's JSONL of records (`fplora dataset init <folder of pictures>` writes one)"),
    ("dataset.toml's one-frame key in a dataset", "datasets:\n  - jsonl: ../data/dataset-v1/metadata-v1.jsonl\n    fp_1f_target_index: 5\n", "configs/v1.yaml:4: datasets[0].fp_1f_target_index: unknown key — musubi-tuner's fp_1f_target_index is one_frame.target_index in a spec: set it there"),
    ("dataset.toml's one-frame key under data", "data:\n  fp_1f_clean_indices: [0, 10]\n", "configs/v1.yaml:5: data.fp_1f_clean_indices: unknown key — musubi-tuner's fp_1f_clean_indices is one_frame.clean_indices in a spec: set it there"),
    ("unknown section", "trian: {}\n", "configs/v1.yaml:4: trian: unknown key — did you mean 'train'?"),
    ("wrong type", "train:\n  max_train_steps: many\n", "configs/v1.yaml:5: train.max_train_steps: should be a whole number, not 'many' — write digits only, e.g. 16"),
    ("not a bool", "train:\n  gradient_checkpointing: maybe\n", "configs/v1.yaml:5: train.gradient_checkpointing: should be true or false, not 'maybe' — write true or false, without quotes"),
    ("negative learning rate", "train:\n  optimizer: {learning_rate: -1}\n", "configs/v1.yaml:5: train.optimizer.learning_rate: should be more than 0, not -1"),
    ("zero batch size", "data:\n  batch_size: 0\n", "configs/v1.yaml:5: data.batch_size: should be more than 0, not 0"),
    ("bad resolution", "data:\n  resolution: [1, 2, 3]\n", "configs/v1.yaml:5: data.resolution: expects one positive int or [width, height] — write e.g. [512, 768]"),
    ("fp8_scaled without fp8_base", "train:\n  fp8_scaled: true\n", "configs/v1.yaml:5: train.fp8_scaled: fp8_scaled needs fp8_base — add `fp8_base: true`"),
    ("sage attention for training", "train:\n  attention: sage_attn\n", "configs/v1.yaml:5: train.attention: musubi-tuner refuses sage_attn for training — use sdpa, flash_attn, xformers or flash3 (sage attention is for inference only)"),
    ("vae dtype", "musubi:\n  config: {vae_dtype: bfloat16}\n", "configs/v1.yaml:5: musubi.config.vae_dtype: FramePack's VAE runs only in float16 — remove vae_dtype (or set float16)"),
    ("cache_directory in general", "data:\n  cache_directory: x\n", "configs/v1.yaml:4: data: cache_directory cannot be set for all datasets (musubi-tuner rejects it in [general]) — set it per dataset under datasets[], or leave it out and fplora derives one"),
    ("pass-through typo", "musubi:\n  config: {blocks_to_swapp: 3}\n", "configs/v1.yaml:5: musubi.config.blocks_to_swapp: not an option of fpack_train_network — did you mean 'blocks_to_swap'?"),
    ("pass-through type", "musubi:\n  config: {max_timestep: '3'}\n", "configs/v1.yaml:5: musubi.config.max_timestep: expects int, got str '3' — write a TOML-typed value"),
    ("pass-through owned key", "musubi:\n  generate: {save_path: x}\n", "configs/v1.yaml:5: musubi.generate.save_path: fplora owns it — remove it"),
    ("pass-through rendered step count", "musubi:\n  config: {max_train_steps: 8}\n", "configs/v1.yaml:5: musubi.config.max_train_steps: set by train.max_train_steps — set it there"),
    ("pass-through rendered network dim", "musubi:\n  config: {network_dim: 64}\n", "configs/v1.yaml:5: musubi.config.network_dim: set by train.network.dim — set it there"),
    ("pass-through rendered attention", "musubi:\n  config: {flash_attn: true}\n", "configs/v1.yaml:5: musubi.config.flash_attn: set by train.attention — set it there"),
    ("pass-through LoRA weight", "musubi:\n  generate: {lora_weight: [x.safetensors]}\n", "configs/v1.yaml:5: musubi.generate.lora_weight: fplora owns it — remove it; choose the LoRA with `fplora infer --lora`"),
    ("pass-through LoRA multiplier", "musubi:\n  generate: {lora_multiplier: [1.2]}\n", "configs/v1.yaml:5: musubi.generate.lora_multiplier: set by infer.multipliers — set it there"),
    ("pass-through output type", "musubi:\n  generate: {output_type: images}\n", "configs/v1.yaml:5: musubi.generate.output_type: set by infer.output_type — set it there"),
    ("pass-through prompt-line option", "musubi:\n  generate: {seed: 3}\n", "configs/v1.yaml:5: musubi.generate.seed: set by infer.seed (on every line of infer-prompts.txt) — set it there"),
    ("pass-through one_frame off", "musubi:\n  cache_latents: {one_frame: false}\n", "configs/v1.yaml:5: musubi.cache_latents.one_frame: fplora owns it — remove it"),
    ("pass-through skip_existing", "musubi:\n  cache_text_encoder: {skip_existing: true}\n", "configs/v1.yaml:5: musubi.cache_text_encoder.skip_existing: fplora owns it — remove it; `fplora cache` computes only what the project's cache store lacks"),
    ("launch extra process count", "launch:\n  extra: {num_processes: 4}\n", "configs/v1.yaml:5: launch.extra.num_processes: set by launch.num_processes — set it there"),
    ("launch extra multi_gpu", "launch:\n  extra: {multi_gpu: true}\n", "configs/v1.yaml:5: launch.extra.multi_gpu: set by launch.num_processes — set it there"),
    ("unset variable", "train:\n  output_dir: ${FPLORA_TEST_UNSET}/x\n", "configs/v1.yaml:5: train.output_dir: environment variable FPLORA_TEST_UNSET is not set — export FPLORA_TEST_UNSET=..., or write ${FPLORA_TEST_UNSET:-default}"),
    ("timestep sampling typo", "train:\n  timestep_sampling: shfit\n", "configs/v1.yaml:5: train.timestep_sampling: not a timestep_sampling of musubi-tuner — did you mean 'shift'?"),
    ("abbreviated accelerate option", "launch:\n  extra: {num_process: 2}\n", "configs/v1.yaml:5: launch.extra.num_process: not an option of accelerate launch — did you mean 'num_processes'?"),
    ("multi-node without address", "launch:\n  num_machines: 2\n  num_processes: 2\n  main_process_port: 29500\n", "configs/v1.yaml:4: launch.main_process_ip: needed when num_machines > 1 — set the main node's address"),
    ("prompt control count", "sample:\n  prompts:\n    - {text: hi, image: a.png, control_images: [a.png]}\n", "configs/v1.yaml:6: sample.prompts[0].control_images: 1 control images, but one_frame.clean_indices has 2 — give exactly 2"),
    ("incomplete prompt", "sample:\n  prompts:\n    - {text: hi}\n", "configs/v1.yaml:6: sample.prompts[0]: a prompt needs `record:` or all of `text`, `image` and `control_images`"),
    ("sampling without prompts", "sample:\n  prompts: []\n", "configs/v1.yaml:4: sample: sampling is on but sample.prompts is empty — add a prompt (e.g. `- record: 1`) or set every_n_steps: null and at_first: false"),
    ("project with a space", "project: my project\n", "configs/v1.yaml:4: project: must be one word — use letters, digits, '-', '_' or '.', no spaces or slashes"),
    ("optimizer musubi-tuner cannot load", "train:\n  optimizer: {type: adamw9bit}\n", "configs/v1.yaml:5: train.optimizer.type: not an optimizer musubi-tuner can load (it takes adamw, adamw8bit, adafactor, a torch.optim class or a module.Class path) — did you mean 'adamw8bit'?"),
    ("torch optimizer in lower case", "train:\n  optimizer: {type: adam}\n", "configs/v1.yaml:5: train.optimizer.type: not an optimizer musubi-tuner can load (it takes adamw, adamw8bit, adafactor, a torch.optim class or a module.Class path) — did you mean 'Adam'? torch.optim names are case-sensitive"),
    ("bitsandbytes optimizer without its path", "train:\n  optimizer: {type: lion8bit}\n", "configs/v1.yaml:5: train.optimizer.type: not an optimizer musubi-tuner can load (it takes adamw, adamw8bit, adafactor, a torch.optim class or a module.Class path) — write 'bitsandbytes.optim.Lion8bit': musubi-tuner needs its class path"),
    ("pass-through optimizer_type", "musubi:\n  config: {optimizer_type: torch.optim.AdamW}\n", "configs/v1.yaml:5: musubi.config.optimizer_type: set by train.optimizer.type — set it there"),
    ("dataset as a bare path", "datasets:\n  - ../data/dataset-v1/metadata-v1.jsonl\n", 'configs/v1.yaml:3: datasets[0]: should be a mapping like {jsonl: ...}, not a string — write "- jsonl: ../data/dataset-v1/metadata-v1.jsonl"'),
    ("datasets without the list dash", "datasets:\n  jsonl: ../data/dataset-v1/metadata-v1.jsonl\n", 'configs/v1.yaml:2: datasets: should be a list of mappings like {jsonl: ...}, not a mapping — start each entry with "- ": "- jsonl: ../data/dataset-v1/metadata-v1.jsonl"'),
    ("section as a bare value", "train:\n  optimizer: adamw8bit\n", 'configs/v1.yaml:5: train.optimizer: should be a mapping like {type: ..., args: ...}, not a string — write "optimizer: {type: adamw8bit}"'),
    ("pass-through section as a list", "musubi:\n  config: [max_grad_norm]\n", "configs/v1.yaml:5: musubi.config: should be a mapping of fpack_train_network options, not a list — write `option: value` under it"),
    ("unquoted variable in flow style", "train:\n  network: {dim: ${DIM}}\n", "configs/v1.yaml:5: YAML syntax error: expected ',' or '}', but got '{' — quote it: \"${DIM}\" (inside [...] or {...}, an unquoted { starts a mapping)"),
    ("unquoted variable in a flow list", "data:\n  resolution: [${W:-64}, 96]\n", "configs/v1.yaml:5: YAML syntax error: expected ',' or ']', but got '{' — quote it: \"${W:-64}\" (inside [...] or {...}, an unquoted { starts a mapping)"),
    ("null for a required section", "train: null\n", "configs/v1.yaml:4: train: should be a mapping like {output_dir: ...}, not empty — give it keys: it is required"),
    ("misspelt extends target", "extends: bsae.yaml\n", "configs/v1.yaml:3: extends: base spec bsae.yaml not found (looked at configs/bsae.yaml) — did you mean 'base.yaml'? (paths in extends are relative to the file that writes them)"),
    ("misspelt extends target in a folder", "extends: ../configs/bsae.yaml\n", "configs/v1.yaml:3: extends: base spec ../configs/bsae.yaml not found (looked at configs/bsae.yaml) — did you mean '../configs/base.yaml'? (paths in extends are relative to the file that writes them)"),
    ("missing extends target", "extends: nope.yaml\n", "configs/v1.yaml:3: extends: base spec nope.yaml not found (looked at configs/nope.yaml) — paths in extends are relative to the file that writes them"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in SPEC_CASES], ids=[c[0] for c in SPEC_CASES])
def test_bad_spec(project, tmp_path: Path, text: str, expected: str) -> None:
    _one_error(project(text), tmp_path, expected)


# (case id, environment, spec text, the one expected error line): `${VAR}` problems name the variable
ENV_CASES: list[tuple[str, dict[str, str], str, str]] = [
    ("empty variable", {"STEPS": ""}, "train:\n  max_train_steps: ${STEPS}\n", "configs/v1.yaml:5: train.max_train_steps: environment variable STEPS is empty — export STEPS=..., or write ${STEPS:-default}"),
    ("empty variable in a path", {"OUT": ""}, "train:\n  output_dir: ${OUT}/x\n", "configs/v1.yaml:5: train.output_dir: environment variable OUT is empty — export OUT=..., or write ${OUT:-default}"),
    ("variable with a bad number", {"STEPS": "many"}, "train:\n  max_train_steps: ${STEPS}\n", "configs/v1.yaml:5: train.max_train_steps: should be a whole number, not 'many' (from ${STEPS} = 'many') — write digits only, e.g. 16"),
    ("bad default of an empty variable", {"STEPS": ""}, "train:\n  max_train_steps: ${STEPS:-lots}\n", "configs/v1.yaml:5: train.max_train_steps: should be a whole number, not 'lots' (from ${STEPS:-lots}: STEPS is empty) — write digits only, e.g. 16"),
    ("variable in a resolution", {"W": "0"}, "data:\n  resolution: ['${W}', 96]\n", "configs/v1.yaml:5: data.resolution: expects one positive int or [width, height] (from ${W} = '0') — write e.g. [512, 768]"),
    ("variable in a rule", {"SWAP": "39"}, "train:\n  blocks_to_swap: ${SWAP}\n", "configs/v1.yaml:5: train.blocks_to_swap: 39 fails on the GPU when the DiT loads: FramePack's block swap takes at most 38 (AssertionError 'Cannot swap more than 19 double blocks and 39 single blocks') (from ${SWAP} = '39') — use at most 36 for training"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("env", "text", "expected"), [c[1:] for c in ENV_CASES], ids=[c[0] for c in ENV_CASES]
)
def test_bad_variable(
    project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], text: str, expected: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    _one_error(project(text), tmp_path, expected)


def _one_error(spec: Path, tmp_path: Path, expected: str) -> None:
    """Check, render and a dry run each print exactly `expected` (check, as always, then its summary
    line), exit 1, and write nothing."""
    for command in (
        ["check", str(spec), "--skip-models"],
        ["render", str(spec)],
        ["train", str(spec), "--dry-run"],
    ):
        result = runner.invoke(app, command)
        assert result.exit_code == 1, result.output
        summary = "configs/v1.yaml: 1 error, 0 warnings\n" if command[0] == "check" else ""
        assert result.output == f"error: {expected}\n{summary}", command
        assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not (tmp_path / "configs/v1").exists()
    assert not (tmp_path / "out").exists()


def _break_shard(root: Path) -> None:
    (root / "models/dit/model-00002-of-00002.safetensors").unlink()


def _bad_json(root: Path) -> None:
    _jsonl(root, [_record(1), '{"image_path": "t/2.png", caption: oops}'])


def _missing_image(root: Path) -> None:
    (root / "data/dataset-v1/t/2.png").unlink()


def _one_control(root: Path) -> None:
    _jsonl(root, [_record(1), _record(2, control_path_1=None)])


def _empty_caption(root: Path) -> None:
    _jsonl(root, [_record(1), _record(2, caption="  ")])


def _unknown_record_key(root: Path) -> None:
    _jsonl(root, [_record(1), _record(2, captoin="x")])


def _not_an_image(root: Path) -> None:
    (root / "data/dataset-v1/c/2_1.png").write_text("not a png")


def _missing_unicode_path(root: Path) -> None:
    _jsonl(root, [_record(1), _record(2, image_path="t/データ 'two'.png")])


def _duplicate_stem(root: Path) -> None:
    (root / "data/dataset-v1/u").mkdir()
    (root / "data/dataset-v1/u/1.png").write_bytes((root / "data/dataset-v1/t/1.png").read_bytes())
    _jsonl(root, [_record(1), _record(2, image_path="u/1.png")])


def _html_model(root: Path) -> None:
    (root / "models/vae/vae.safetensors").write_text(
        "<!DOCTYPE html>\n<html><body>Access denied</body></html>\n"
    )


def _truncated_shard(root: Path) -> None:
    shard = root / "models/dit/model-00002-of-00002.safetensors"
    header = json.dumps({"w": {"dtype": "BF16", "shape": [1024, 1024], "data_offsets": [0, 2 * 1024 * 1024]}})
    full = struct.pack("<Q", len(header)) + header.encode() + bytes(2 * 1024 * 1024)
    shard.write_bytes(full[: len(full) // 3])


def _missing_dataset(root: Path) -> None:
    (root / DATASET).unlink()


def _control_gap(root: Path) -> None:
    _jsonl(root, [_record(1), _record(2, control_path_1=None, control_path_2="c/2_1.png")])


def _control_twice(root: Path) -> None:
    _jsonl(root, [_record(1), _record(2, control_path="c/2_0.png", control_path_1=None)])


def _caption_line_break(root: Path) -> None:
    _jsonl(root, [_record(1), _record(2, caption="she turns\naround").replace("\\n", "\n")])


# (case id, setup, the expected error line)  — checked by `fplora check` (with models)
DATA_CASES: list[tuple[str, Setup, str]] = [
    ("missing model shard", _break_shard, "configs/base.yaml:4: models.dit: missing shard models/dit/model-00002-of-00002.safetensors — all 2 shards must be in the same folder"),
    ("bad JSONL line", _bad_json, "data/dataset-v1/metadata-v1.jsonl:2: invalid JSON: Expecting property name enclosed in double quotes at col 27 — one JSON object per line"),
    ("missing image", _missing_image, "data/dataset-v1/metadata-v1.jsonl:2: image_path: data/dataset-v1/t/2.png not found — check the path; relative paths resolve against the JSONL file's folder"),
    ("wrong control count", _one_control, "data/dataset-v1/metadata-v1.jsonl:2: control_path: 2 control images expected (one_frame.clean_indices = [0, 10]), found 1 — give every record control_path_0..1, or change one_frame.clean_indices"),
    (
        "empty caption",
        _empty_caption,
        "data/dataset-v1/metadata-v1.jsonl:2: caption: empty — write the caption text (musubi-tuner's"
        " JSONL reader takes it from the record; caption_extension files are not read for JSONL datasets)",
    ),
    ("unknown record key", _unknown_record_key, "data/dataset-v1/metadata-v1.jsonl:2: captoin: unknown record key — did you mean 'caption'?"),
    ("not an image", _not_an_image, "data/dataset-v1/metadata-v1.jsonl:2: control_path_1: data/dataset-v1/c/2_1.png is not an image Pillow can read — use a PNG, JPEG, WEBP or BMP file"),
    ("unicode, spaces, quotes", _missing_unicode_path, "data/dataset-v1/metadata-v1.jsonl:2: image_path: data/dataset-v1/t/データ 'two'.png not found — check the path; relative paths resolve against the JSONL file's folder"),
    ("model is a web page", _html_model, "configs/base.yaml:5: models.vae: models/vae/vae.safetensors is not a safetensors file (starts with '<!DOCTYPE': a web page, not the model) — download it again"),
    ("truncated model shard", _truncated_shard, "configs/base.yaml:4: models.dit: models/dit/model-00002-of-00002.safetensors is truncated: the header says 2.1 MB, the file has 699.1 kB — download it again"),
    ("missing dataset JSONL", _missing_dataset, "configs/v1.yaml:3: datasets[0].jsonl: dataset JSONL file not found: data/dataset-v1/metadata-v1.jsonl — check the path; relative paths resolve against the folder of the spec file that writes them; not made yet? `fplora dataset init <folder of pictures>` writes one"),
    ("control keys with a gap", _control_gap, "data/dataset-v1/metadata-v1.jsonl:2: control_path_2: no control_path_1 before it: musubi-tuner renumbers control images in order, so control_path_2 would be control image 1 — number the control images control_path_0..1 without gaps"),
    ("control_path and control_path_0", _control_twice, "data/dataset-v1/metadata-v1.jsonl:2: control_path: control_path and control_path_0 both give control image 0: musubi-tuner uses control_path and drops control_path_0 — remove all but one"),
    ("raw line break in a caption", _caption_line_break, "data/dataset-v1/metadata-v1.jsonl:2: caption: invalid JSON: Unterminated string starting at col 100: the caption has a raw line break, so the record runs on into line 3 — write the line break as \\n (one JSON object per line)"),
    ("duplicate image stem", _duplicate_stem, "data/dataset-v1/metadata-v1.jsonl:2: image_path: same file stem '1' as line 1: musubi-tuner names caches by stem, so one record would train on the other's latents — rename one of the two images"),
]  # fmt: skip


@pytest.mark.parametrize(("setup", "expected"), [c[1:] for c in DATA_CASES], ids=[c[0] for c in DATA_CASES])
def test_bad_data(project, tmp_path: Path, setup: Setup, expected: str) -> None:
    spec = project()
    setup(tmp_path)
    result = runner.invoke(app, ["check", str(spec)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0] == f"error: {expected}"
    assert lines[-1] == "configs/v1.yaml: 1 error, 0 warnings"
    assert len(lines) == 2
    assert not (tmp_path / "configs/v1").exists()


def test_unicode_spaces_and_quotes_in_paths_work(project, tmp_path: Path) -> None:
    """Valid odd paths go through check and render, and survive TOML and prompt-line quoting."""
    odd = tmp_path / "データ set 'v1' \"q\""
    (tmp_path / "data/dataset-v1").rename(odd)
    spec = project(f"datasets:\n  - jsonl: '../{odd.name.replace(chr(39), chr(39) * 2)}/metadata-v1.jsonl'\n")
    assert runner.invoke(app, ["check", str(spec)]).exit_code == 0
    result = runner.invoke(app, ["render", str(spec)])
    assert result.exit_code == 0, result.output
    import tomllib

    dataset = tomllib.loads((tmp_path / "configs/v1/dataset.toml").read_text(encoding="utf-8"))
    assert Path(dataset["datasets"][0]["image_jsonl_file"]).parent == tmp_path / "configs/v1/data"
    prompts = (tmp_path / "configs/v1/prompts.txt").read_text(encoding="utf-8")
    assert f"--i {odd}/c/1_0.png --ci {odd}/c/1_0.png --ci {odd}/c/1_1.png" in prompts


def test_save_steps_beyond_the_run_warn_and_the_spec_runs(project, tmp_path: Path) -> None:
    """musubi-tuner runs a spec whose save_every_n_steps is past max_train_steps and saves the LoRA
    and state at its end only: a warning (no checkpoints to compare), not an error."""
    spec = project("train:\n  save_every_n_steps: 100\n")
    result = runner.invoke(app, ["check", str(spec), "--skip-models"])
    assert result.exit_code == 0, result.output
    assert (
        "warning: configs/v1.yaml:5: train.save_every_n_steps: 100 is more than max_train_steps (4): no step"
        " checkpoint is saved, only the final LoRA — lower save_every_n_steps or raise max_train_steps to"
        " compare checkpoints"
    ) in result.output
    assert runner.invoke(app, ["train", str(spec), "--dry-run"]).exit_code == 0
