"""spec.rules.combinations: each combination that failed on the GPU (or that musubi-tuner's source shows
fails) is refused at the line that causes it, and its working neighbour from the same matrix is not.

The conftest project has batch 2 and split_attn true (configs/base.yaml); each case writes v1.yaml
over it. Cell names refer to benchmarks/gpu_matrix.py and docs/gpu-matrix.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fplora.cli import app
from fplora.problems import Problem
from fplora.spec import load_spec
from fplora.spec.rules.combinations import check_combinations

runner = CliRunner()


def problems(project, text: str) -> list[Problem]:
    return check_combinations(load_spec(project(text)))


def errors(found: list[Problem]) -> list[str]:
    return [str(p) for p in found if p.severity == "error"]


def warnings(found: list[Problem]) -> list[str]:
    return [str(p) for p in found if p.severity == "warning"]


# (case id, v1.yaml body that fails on the GPU, the problem's start, its working neighbour)
REFUSED = [
    (
        "sdpa, batch 2, no split_attn (att-sdpa-b2)",
        "train:\n  split_attn: false\n",
        "configs/base.yaml:11: data.batch_size: batch 2 with attention sdpa and no split_attn fails on the GPU",
        "train:\n  split_attn: true\n",
    ),
    (
        "a dataset's own batch_size (att-sdpa-dsb2)",
        "data:\n  batch_size: 1\ntrain:\n  split_attn: false\n"
        "datasets:\n  - jsonl: ../data/dataset-v1/metadata-v1.jsonl\n    batch_size: 4\n",
        "configs/v1.yaml:8: datasets[0].batch_size: batch 4 with attention sdpa and no split_attn",
        "data:\n  batch_size: 1\ntrain:\n  split_attn: false\n"
        "datasets:\n  - jsonl: ../data/dataset-v1/metadata-v1.jsonl\n    batch_size: 1\n",
    ),
    (
        "xformers, batch 2, no split_attn (source: no var-len kernel)",
        "train:\n  attention: xformers\n  split_attn: false\n",
        "configs/base.yaml:11: data.batch_size: batch 2 with attention xformers and no split_attn",
        "train:\n  attention: xformers\n  split_attn: true\n",
    ),
    (
        "flash3, batch 2 (att-flash3-b2)",
        "train:\n  attention: flash3\n  split_attn: false\n",
        "configs/base.yaml:11: data.batch_size: batch 2 with attention flash3",
        "train:\n  attention: flash_attn\n  split_attn: false\n",  # flash_attn has the var-len kernel
    ),
    (
        "flash3 with split_attn (att-flash3-b1-split)",
        "data:\n  batch_size: 1\ntrain:\n  attention: flash3\n",
        "configs/base.yaml:21: train.split_attn: split_attn with attention flash3 fails on the GPU",
        "data:\n  batch_size: 1\ntrain:\n  attention: sdpa\n",
    ),
    (
        "blocks_to_swap 39 (swap-over)",
        "train:\n  blocks_to_swap: 39\n",
        "configs/v1.yaml:5: train.blocks_to_swap: 39 fails on the GPU when the DiT loads",
        "train:\n  blocks_to_swap: 20\n",
    ),
    (
        "blocks_to_swap 38 (swap-max)",
        "train:\n  blocks_to_swap: 38\n",
        "configs/v1.yaml:5: train.blocks_to_swap: 38 fails on the GPU in the first backward pass",
        "train:\n  blocks_to_swap: 20\n",
    ),
    (
        "blocks_to_swap 37 (39 single blocks swapped: the backward hook's arithmetic)",
        "train:\n  blocks_to_swap: 37\n",
        "configs/v1.yaml:5: train.blocks_to_swap: 37 fails on the GPU in the first backward pass",
        "train:\n  blocks_to_swap: 36\n",
    ),
    (
        "infer.blocks_to_swap 40 (source)",
        "infer:\n  blocks_to_swap: 40\n",
        "configs/v1.yaml:5: infer.blocks_to_swap: 40 fails on the GPU when the DiT loads",
        "infer:\n  blocks_to_swap: 38\n",
    ),
    (
        "warmup with the default constant scheduler (sched-constant-warmup)",
        "train:\n  optimizer: {lr_warmup_steps: 10}\n",
        "configs/v1.yaml:5: train.optimizer.lr_warmup_steps: a warmup with no lr_scheduler",
        "train:\n  optimizer: {lr_warmup_steps: 10, lr_scheduler: cosine}\n",
    ),
    (
        "a warmup share is steps of the run: 0.25 of 4 is one, 0.2 of 4 none (sched-constant-ratio-*)",
        "train:\n  optimizer: {lr_warmup_steps: 0.25}\n",
        "configs/v1.yaml:5: train.optimizer.lr_warmup_steps: a warmup with no lr_scheduler",
        "train:\n  optimizer: {lr_warmup_steps: 0.2}\n",
    ),
    (
        "an unknown scheduler (sched-unknown)",
        "train:\n  optimizer: {lr_scheduler: cosine_anealing}\n",
        "configs/v1.yaml:5: train.optimizer.lr_scheduler: musubi-tuner has no lr_scheduler 'cosine_anealing'",
        "train:\n  optimizer: {lr_scheduler: cosine_with_restarts}\n",
    ),
    (
        "adafactor's own schedule with a warmup (opt-adafactor-warmup)",
        "train:\n  optimizer: {type: adafactor, lr_warmup_steps: 5}\n",
        "configs/v1.yaml:5: train.optimizer.lr_warmup_steps: adafactor with relative_step",
        "train:\n  optimizer: {type: adafactor, lr_warmup_steps: 5, lr_scheduler: constant_with_warmup,"
        " args: [relative_step=False, scale_parameter=False, warmup_init=False]}\n",
    ),
    (
        "the adafactor scheduler without the adafactor optimizer (source)",
        "train:\n  optimizer: {type: adamw, lr_scheduler: adafactor}\n",
        "configs/v1.yaml:5: train.optimizer.lr_scheduler: the adafactor scheduler needs the adafactor optimizer",
        "train:\n  optimizer: {type: adafactor, lr_scheduler: adafactor}\n",
    ),
    (
        "an fp32 LoRA for generate (inf-float-scaled)",
        "train:\n  save_precision: float\n",
        "configs/v1.yaml:5: train.save_precision: `fplora infer` cannot use a float LoRA",
        "train:\n  save_precision: bf16\n",
    ),
    (
        "an fp16 LoRA for generate (inf-fp16-noscaled)",
        "train:\n  save_precision: fp16\n",
        "configs/v1.yaml:5: train.save_precision: `fplora infer` cannot use a fp16 LoRA",
        "train:\n  save_precision: bf16\n",
    ),
    (
        "generate --fp8 without fp8_scaled (inf-fp8-noscaled)",
        "infer:\n  fp8_scaled: false\nmusubi:\n  generate: {fp8: true}\n",
        "configs/v1.yaml:7: musubi.generate.fp8: fp8 without fp8_scaled fails when the DiT loads",
        "infer:\n  fp8_scaled: true\nmusubi:\n  generate: {fp8: true}\n",
    ),
    (
        "a caching debug mode (cl-debug-* in rehearse_matrix_data)",
        "musubi:\n  cache_latents: {debug_mode: video}\n",
        "configs/v1.yaml:5: musubi.cache_latents.debug_mode: debug_mode video only shows the dataset (as"
        " preview files) and writes no latent cache",
        "musubi:\n  cache_latents: {batch_size: 1}\n",
    ),
    (
        "generate's LoRA include patterns (gen-include in rehearse_matrix_data)",
        "musubi:\n  generate: {include_patterns: ['.*single.*']}\n",
        "configs/v1.yaml:5: musubi.generate.include_patterns: fpack_generate_video hands the whole list",
        "musubi:\n  generate: {include_patterns: ['.*single.*'], lycoris: true}\n",
    ),
    (
        "reduce_lr_on_plateau (source: trainer_base.py's generic call)",
        "train:\n  optimizer: {lr_scheduler: reduce_lr_on_plateau}\n",
        "configs/v1.yaml:5: train.optimizer.lr_scheduler: musubi-tuner calls reduce_lr_on_plateau with step counts",
        "train:\n  optimizer: {lr_scheduler: cosine}\n",
    ),
    (
        "cosine_warmup_with_min_lr (source: trainer_base.py's generic call)",
        "train:\n  optimizer: {lr_scheduler: cosine_warmup_with_min_lr}\n",
        "configs/v1.yaml:5: train.optimizer.lr_scheduler: musubi-tuner calls cosine_warmup_with_min_lr",
        "train:\n  optimizer: {lr_scheduler: cosine_with_min_lr}\nmusubi:\n  config: {lr_scheduler_min_lr_ratio: 0.1}\n",
    ),
    (
        "cosine_with_min_lr without a floor (source: trainer_base.py:390-398)",
        "train:\n  optimizer: {lr_scheduler: cosine_with_min_lr}\n",
        "configs/v1.yaml:5: train.optimizer.lr_scheduler: cosine_with_min_lr needs a floor",
        "train:\n  optimizer: {lr_scheduler: cosine_with_min_lr}\nmusubi:\n  config: {lr_scheduler_args: ['min_lr=1e-5']}\n",
    ),
    (
        "piecewise_constant without step_rules (source: trainer_base.py:347-350)",
        "train:\n  optimizer: {lr_scheduler: piecewise_constant}\n",
        "configs/v1.yaml:5: train.optimizer.lr_scheduler: piecewise_constant needs its step_rules",
        "train:\n  optimizer: {lr_scheduler: piecewise_constant}\nmusubi:\n  config: {lr_scheduler_args: [\"step_rules='1:10,0.1'\"]}\n",
    ),
    (
        "an optimizer arg that is not key=value (source: trainer_base.py:170-174)",
        "train:\n  optimizer: {args: [weight_decay 0.01]}\n",
        "configs/v1.yaml:5: train.optimizer.args[0]: 'weight_decay 0.01' is not one key=value",
        "train:\n  optimizer: {args: [weight_decay=0.01]}\n",
    ),
    (
        "an unquoted string value (source: ast.literal_eval)",
        "train:\n  optimizer: {type: AdamW, args: [foreach=yes]}\n",
        "configs/v1.yaml:5: train.optimizer.args[0]: the value of 'foreach=yes' is not a Python literal",
        "train:\n  optimizer: {type: AdamW, args: [foreach=True]}\n",
    ),
    (
        "a network arg without '=' (source: trainer_base.py:1561-1563)",
        "train:\n  network: {args: [loraplus_lr_ratio]}\n",
        "configs/v1.yaml:5: train.network.args[0]: 'loraplus_lr_ratio' is not one key=value",
        "train:\n  network: {args: [loraplus_lr_ratio=4]}\n",
    ),
    (
        "an argument adamw8bit does not take",
        "train:\n  optimizer: {args: [relative_step=False]}\n",
        "configs/v1.yaml:5: train.optimizer.args[0]: adamw8bit takes no argument 'relative_step'",
        "train:\n  optimizer: {args: [weight_decay=0.01, 'betas=(0.9,0.99)']}\n",
    ),
    (
        "a typo in an adafactor argument",
        "train:\n  optimizer: {type: adafactor, args: [relative_stp=False]}\n",
        "configs/v1.yaml:5: train.optimizer.args[0]: adafactor takes no argument 'relative_stp'",
        "train:\n  optimizer: {type: adafactor, args: [relative_step=True]}\n",
    ),
    (
        "another model's network module (source: networks/lora.py's target blocks)",
        "train:\n  network: {module: networks.lora}\n",
        "configs/v1.yaml:5: train.network.module: networks.lora is musubi-tuner's network for another model",
        "train:\n  network: {module: networks.lokr}\n",
    ),
    (
        "a resolution that is not a multiple of 16, without buckets (source: dataset/bucket.py)",
        "data:\n  resolution: [500, 750]\n",
        "configs/v1.yaml:5: data.resolution: 500x750 is not a multiple of 16",
        "data:\n  resolution: [496, 752]\n",
    ),
    (
        "an infer prompt size generate refuses (source: fpack_generate_video.py:435)",
        "infer:\n  prompts:\n    - {record: 1, width: 500}\n",
        "configs/v1.yaml:6: infer.prompts[0].width: `fplora infer` renders infer prompt 1 at 500x96",
        "infer:\n  prompts:\n    - {record: 1, width: 512}\n",
    ),
    (
        "compile_fullgraph with split_attn (source: musubi-tuner's docs/torch_compile.md)",
        "train:\n  compile: true\nmusubi:\n  config: {compile_fullgraph: true}\n",
        "configs/v1.yaml:7: musubi.config.compile_fullgraph: compile_fullgraph cannot be used with split_attn",
        "train:\n  compile: true\n",
    ),
]


@pytest.mark.parametrize(
    ("body", "expected", "neighbour"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_refuses_the_failing_combination_and_accepts_its_neighbour(
    project, body: str, expected: str, neighbour: str
) -> None:
    found = errors(problems(project, body))
    assert len(found) == 1, found
    assert found[0].startswith(expected), found[0]
    assert " — " in found[0]  # every refusal says what to do
    assert errors(problems(project, neighbour)) == []


def test_the_issue_case_says_exactly_what_to_write(project) -> None:
    """The first configuration from outside the memo: sdpa, batch 4, no split_attn, two datasets."""
    body = (
        "data:\n  batch_size: 4\ntrain:\n  split_attn: false\ndatasets:\n"
        "  - {jsonl: ../data/dataset-v1/metadata-v1.jsonl, cache_directory: ../cache-a}\n"
        "  - {jsonl: ../data/dataset-v1/metadata-v1.jsonl, cache_directory: ../cache-b}\n"
    )
    (found,) = errors(problems(project, body))
    assert found.startswith(
        "configs/v1.yaml:3: data.batch_size: batch 4 with attention sdpa and no split_attn"
    )
    assert "No Attn Installed" in found
    assert found.endswith("— set train.split_attn: true")


def test_fplora_check_prints_the_refusal(project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = project("train:\n  split_attn: false\n")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["check", str(spec), "--skip-models"])
    assert result.exit_code == 1
    assert "configs/base.yaml:11: data.batch_size: batch 2 with attention sdpa" in result.output
    assert result.output.splitlines()[-1].startswith("configs/v1.yaml: 1 error")


def test_flash3_at_batch_1_runs_but_is_sdpa(project) -> None:
    """Cell att-flash3-b1 passed: a warning, not an error."""
    found = problems(project, "data:\n  batch_size: 1\ntrain:\n  attention: flash3\n  split_attn: false\n")
    assert errors(found) == []
    (warning,) = warnings(found)
    assert "train.attention: FramePack has no flash3 kernel" in warning


def test_no_checkpointing_with_a_batch_warns_with_the_measured_figures(project) -> None:
    """Cells mem-nogc-b1 (80,776 MiB) and mem-nogc-b4 (out of memory on an H200): a warning only."""
    found = problems(project, "train:\n  gradient_checkpointing: false\n")
    assert errors(found) == []
    (warning,) = warnings(found)
    assert warning.startswith(
        "configs/v1.yaml:5: train.gradient_checkpointing: without gradient checkpointing"
    )
    assert "80,776 MiB" in warning and "H200" in warning
    one = problems(project, "data:\n  batch_size: 1\ntrain:\n  gradient_checkpointing: false\n")
    assert one == []


def test_the_memo_settings_pass(project) -> None:
    """The memo's house settings (batch 16, split_attn, swap 20, checkpointing) ran: cell mem-memo."""
    body = "data:\n  batch_size: 16\ntrain:\n  blocks_to_swap: 20\n  gradient_checkpointing: true\n"
    assert problems(project, body) == []


def test_a_scheduler_class_of_its_own_skips_the_scheduler_rules(project) -> None:
    body = "train:\n  optimizer: {lr_warmup_steps: 10}\nmusubi:\n  config: {lr_scheduler_type: CosineAnnealingLR}\n"
    assert errors(problems(project, body)) == []


def test_an_attention_kernel_is_probed_before_launch(project) -> None:
    """Cells att-xformers-b1, att-flash-b1, inf-flash: without the package musubi-tuner calls None at
    the first step; fplora makes musubi-tuner's Python import it before launching instead."""
    from fplora.runtime import needed_modules

    assert "xformers" in needed_modules(load_spec(project("train:\n  attention: xformers\n")))
    assert "flash_attn" in needed_modules(load_spec(project("infer:\n  attention: flash\n")))
    assert not {"xformers", "flash_attn"} & set(needed_modules(load_spec(project())))


def test_buckets_take_any_resolution_but_infer_prompts_still_need_multiples_of_8(project) -> None:
    found = errors(problems(project, "data:\n  resolution: [500, 750]\n  enable_bucket: true\n"))
    assert len(found) == 1, found
    assert "renders sample prompt 1 at 500x750" in found[0]


def test_an_unquoted_tuple_in_a_yaml_flow_list_is_caught(project) -> None:
    """YAML splits `[a=1, betas=(0.9,0.99)]` at the comma inside the parentheses."""
    found = errors(problems(project, "train:\n  optimizer: {args: [weight_decay=0.01, betas=(0.9,0.99)]}\n"))
    assert any("'betas=(0.9' is not a Python literal" in line for line in found), found
    assert all("quote items that hold commas" in line for line in found)


def test_compile_with_block_swap_or_fp8_warns_with_the_h100_run(project) -> None:
    """benchmarks/results/2026-12-06-h100-preset-matrix.json: compiled with split_attn, 6 swapped
    blocks and fp8_base each failed in the first step; compiled without them it trained. A warning:
    one run each, on one torch version."""
    found = problems(project, "train:\n  compile: true\n  blocks_to_swap: 6\n  fp8_base: true\n")
    assert errors(found) == []
    swap, fp8 = warnings(found)
    assert swap.startswith(
        "configs/v1.yaml:6: train.blocks_to_swap: torch.compile with split_attn and blocks_to_swap 6 failed"
        " in the first training step on an H100"
    )
    assert fp8.startswith("configs/v1.yaml:7: train.fp8_base: torch.compile with split_attn and fp8_base")
    assert swap.endswith(
        "— set compile: false, or drop the swap / fp8 (fplora's presets compile only without them)"
    )
    assert warnings(problems(project, "train:\n  compile: true\n")) == []
    assert (
        warnings(problems(project, "train:\n  compile: true\n  blocks_to_swap: 6\n  split_attn: false\n"))
        == []
    )
