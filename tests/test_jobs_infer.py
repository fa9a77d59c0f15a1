"""`fplora infer` against the fake `fpack_generate_video`: folders, images, and the exit-0 failure trap.

The pinned generate script exits 0 even when no prompt produced an image (an fp32 LoRA merged into
the bf16 DiT), so fplora judges a run by the images it finds; the fake reproduces that trap.
"""

from __future__ import annotations

import pytest
from fakes import fake
from fakes.fixtures import Workspace
from PIL import Image

pytest_plugins = ["fakes.fixtures"]


@pytest.fixture
def trained(cached: Workspace) -> Workspace:
    """A finished 4-step run with checkpoints at every step."""
    result = cached.cli("train", str(cached.spec_path))
    assert result.exit_code == 0, result.output
    cached.forget_calls()
    return cached


def pngs(workspace: Workspace, folder: str) -> list[str]:
    return sorted(p.name for p in (workspace.output_dir / "sample" / folder).glob("*__000.png"))


def test_one_folder_per_multiplier_with_one_image_per_prompt(trained: Workspace) -> None:
    result = trained.cli(
        "infer", str(trained.spec_path), "--lora", "step2", "--multiplier", "1.0", "--multiplier", "1.2"
    )
    assert result.exit_code == 0, result.output
    calls = trained.calls("fpack_generate_video")
    assert len(calls) == 2
    lora = trained.output_dir / "fake-v1-step00000002.safetensors"
    for call, multiplier in zip(calls, (1.0, 1.2), strict=True):
        given = fake.validate(call["args"]).given
        assert given["lora_weight"] == [str(lora)]
        assert given["lora_multiplier"] == [multiplier]
    for folder in ("v1-step00000002-lm1.0", "v1-step00000002-lm1.2"):
        images = pngs(trained, folder)
        assert [name.split("_")[1] for name in images] == ["42", "43"]  # infer.seed + prompt index
        with Image.open(trained.output_dir / "sample" / folder / images[0]) as image:
            assert image.format == "PNG"
        assert (trained.output_dir / "sample" / folder / "generate.log").is_file()
    assert "multiplier 1.2: 2 images in outputs/sample/v1-step00000002-lm1.2" in result.stderr


def test_multipliers_default_to_the_spec(trained: Workspace) -> None:
    trained.write_spec(infer={"multipliers": [0.5, 1.5]})
    result = trained.cli("infer", str(trained.spec_path), "--lora", "step1")
    assert result.exit_code == 0, result.output
    assert pngs(trained, "v1-step00000001-lm0.5") and pngs(trained, "v1-step00000001-lm1.5")


def test_failed_prompts_fail_the_command_although_generate_exits_0(trained: Workspace) -> None:
    result = trained.cli("infer", str(trained.spec_path), "--lora", "step2", env={"FAKE_GENERATE_FAIL": "1"})
    assert result.exit_code == 1
    assert "multiplier 1.0: 0 of 2 images written (exit 0)" in result.stderr
    reason = [line for line in result.stderr.splitlines() if "Error generating latent for prompt" in line]
    assert reason and "BFloat16 and Float" in reason[0]


def test_the_reason_shown_comes_from_this_run_not_an_earlier_one(trained: Workspace) -> None:
    """generate.log collects every run into the folder; an old failure must not explain a new one."""
    failed = trained.cli("infer", str(trained.spec_path), "--lora", "step2", env={"FAKE_GENERATE_FAIL": "1"})
    assert "Error generating latent" in failed.stderr
    again = trained.cli("infer", str(trained.spec_path), "--lora", "step2", env={"FAKE_EXIT": "5"})
    assert again.exit_code == 1
    assert "(exit 5)" in again.stderr
    assert "Error generating latent" not in again.stderr
    assert "failing with exit 5 (FAKE_EXIT)" in again.stderr


def test_an_fp32_lora_fails_like_the_real_trap(cached: Workspace) -> None:
    """save_precision: fp32 trains fine, then every generate prompt fails (the fake reads the LoRA)."""
    cached.write_spec(train={"save_precision": "fp32"})
    assert cached.cli("train", str(cached.spec_path)).exit_code == 0
    result = cached.cli("infer", str(cached.spec_path), "--lora", "latest")
    assert result.exit_code == 1
    assert "Error generating latent for prompt" in result.stderr


@pytest.mark.parametrize(
    ("which", "file", "folder"),
    [
        ("latest", "fake-v1-step00000004.safetensors", "v1-step00000004-lm1.0"),
        ("final", "fake-v1.safetensors", "v1-step00000004-lm1.0"),
        ("step3", "fake-v1-step00000003.safetensors", "v1-step00000003-lm1.0"),
    ],
)
def test_lora_words(trained: Workspace, which: str, file: str, folder: str) -> None:
    result = trained.cli("infer", str(trained.spec_path), "--lora", which)
    assert result.exit_code == 0, result.output
    (call,) = trained.calls("fpack_generate_video")
    given = fake.validate(call["args"]).given
    assert given["lora_weight"] == [str(trained.output_dir / file)]
    assert len(pngs(trained, folder)) == 2


def test_a_lora_path_outside_the_run(trained: Workspace) -> None:
    other = trained.root / "other.safetensors"
    other.write_bytes((trained.output_dir / "fake-v1-step00000001.safetensors").read_bytes())
    result = trained.cli("infer", str(trained.spec_path), "--lora", str(other))
    assert result.exit_code == 0, result.output
    assert len(pngs(trained, "v1-other-lm1.0")) == 2


def test_unknown_step_lists_the_available_steps(trained: Workspace) -> None:
    result = trained.cli("infer", str(trained.spec_path), "--lora", "step7")
    assert result.exit_code == 1
    assert "no LoRA at global step 7 — available: step1, step2, step3, step4" in result.stderr
    assert trained.calls() == []


def test_infer_before_training_says_train_first(cached: Workspace) -> None:
    result = cached.cli("infer", str(cached.spec_path), "--lora", "latest")
    assert result.exit_code == 1
    assert "no LoRA of fake-v1 found — train first" in result.stderr


def test_dry_run_before_training_names_the_future_step_file(cached: Workspace) -> None:
    result = cached.cli("infer", str(cached.spec_path), "--lora", "step2", "--dry-run")
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    assert str(cached.output_dir / "fake-v1-step00000002.safetensors") in line
    assert cached.calls() == []


def test_non_positive_multiplier_is_refused(trained: Workspace) -> None:
    result = trained.cli("infer", str(trained.spec_path), "--lora", "step1", "--multiplier", "0")
    assert result.exit_code == 1
    assert "--multiplier: must be positive" in result.stderr


def test_several_loras_run_every_lora_with_every_multiplier(trained: Workspace) -> None:
    """The memo compares checkpoints by step and multiplier: one generate process per pair."""
    result = trained.cli(
        "infer",
        str(trained.spec_path),
        *("--lora", "step1", "--lora", "step3"),
        *("--multiplier", "1.0", "--multiplier", "1.2"),
    )
    assert result.exit_code == 0, result.output
    pairs = [
        (
            fake.validate(call["args"]).given["lora_weight"],
            fake.validate(call["args"]).given["lora_multiplier"],
        )
        for call in trained.calls("fpack_generate_video")
    ]
    step1 = str(trained.output_dir / "fake-v1-step00000001.safetensors")
    step3 = str(trained.output_dir / "fake-v1-step00000003.safetensors")
    assert pairs == [([step1], [1.0]), ([step1], [1.2]), ([step3], [1.0]), ([step3], [1.2])]
    for folder in (
        "v1-step00000001-lm1.0",
        "v1-step00000001-lm1.2",
        "v1-step00000003-lm1.0",
        "v1-step00000003-lm1.2",
    ):
        assert len(pngs(trained, folder)) == 2
    assert "step3 multiplier 1.2: 2 images in outputs/sample/v1-step00000003-lm1.2" in result.stderr
    assert "4 of 4 generate runs wrote every image" in result.stderr


def test_a_bad_lora_among_several_stops_before_any_generate(trained: Workspace) -> None:
    result = trained.cli("infer", str(trained.spec_path), "--lora", "step1", "--lora", "step9")
    assert result.exit_code == 1
    assert "no LoRA at global step 9" in result.stderr
    assert trained.calls() == []


def test_two_words_for_one_checkpoint_run_it_once(trained: Workspace) -> None:
    result = trained.cli("infer", str(trained.spec_path), "--lora", "latest", "--lora", "step4")
    assert result.exit_code == 0, result.output
    assert len(trained.calls("fpack_generate_video")) == 1


def test_one_failing_pair_fails_the_command_and_says_which(trained: Workspace) -> None:
    """FAKE_GENERATE_FAIL makes every prompt fail; the summary counts the runs that wrote every image."""
    result = trained.cli(
        "infer",
        str(trained.spec_path),
        *("--lora", "step1", "--lora", "step2"),
        env={"FAKE_GENERATE_FAIL": "1"},
    )
    assert result.exit_code == 1
    assert "step1 multiplier 1.0: 0 of 2 images written (exit 0)" in result.stderr
    assert "step2 multiplier 1.0: 0 of 2 images written (exit 0)" in result.stderr
    assert "0 of 2 generate runs wrote every image" in result.stderr
