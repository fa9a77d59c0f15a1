"""`fplora infer` against the fake `fpack_generate_video`: folders, images, and the exit-0 failure trap.

The pinned generate script exits 0 even when no prompt produced an image (an fp32 LoRA merged into
the bf16 DiT), so fplora judges a run by the images it finds; the fake reproduces that trap.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fakes import fake
from fakes.fixtures import Workspace
from PIL import Image

from fplora.musubi import names, schema

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
        "infer",
        str(trained.spec_path),
        "--lora",
        "step2",
        "--multiplier",
        "1.0",
        "--multiplier",
        "1.2",
        "--no-sweep",
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
    assert "multiplier 1.2: 2 images, 2 latents in outputs/sample/v1-step00000002-lm1.2" in result.stderr


def test_multipliers_default_to_the_spec(trained: Workspace) -> None:
    trained.write_spec(infer={"multipliers": [0.5, 1.5]})
    result = trained.cli("infer", str(trained.spec_path), "--lora", "step1")
    assert result.exit_code == 0, result.output
    assert pngs(trained, "v1-step00000001-lm0.5") and pngs(trained, "v1-step00000001-lm1.5")


def test_failed_prompts_fail_the_command_although_generate_exits_0(trained: Workspace) -> None:
    result = trained.cli("infer", str(trained.spec_path), "--lora", "step2", env={"FAKE_GENERATE_FAIL": "1"})
    assert result.exit_code == 1
    assert "multiplier 1.0: 0 of 2 images, 0 of 2 latents written (exit 0)" in result.stderr
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


def test_an_fp32_lora_fails_like_the_real_trap(cached: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """save_precision: fp32 trains fine, then every generate prompt fails (the fake reads the LoRA).
    `fplora check` refuses the spec (spec.rules.combinations); switched off here to reach the trap itself,
    as a LoRA trained elsewhere would."""
    monkeypatch.setattr("fplora.check.check_combinations", lambda spec: [])
    cached.write_spec(train={"save_precision": "fp32"})
    # the rehearsal trains and generates first, so it meets the trap before any GPU time
    rehearsed = cached.cli("train", str(cached.spec_path))
    assert rehearsed.exit_code == 1
    assert "rehearsal failed at stage generate" in rehearsed.stderr
    assert cached.cli("train", str(cached.spec_path), "--no-rehearse").exit_code == 0
    result = cached.cli("infer", str(cached.spec_path), "--lora", "latest", "--no-rehearse")
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
        "--no-sweep",
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
    assert (
        "step3 multiplier 1.2: 2 images, 2 latents in outputs/sample/v1-step00000003-lm1.2" in result.stderr
    )
    assert "4 of 4 generate runs wrote every file" in result.stderr


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
    """FAKE_GENERATE_FAIL makes every prompt fail; the summary counts the runs that wrote every file."""
    result = trained.cli(
        "infer",
        str(trained.spec_path),
        *("--lora", "step1", "--lora", "step2"),
        "--no-sweep",
        env={"FAKE_GENERATE_FAIL": "1"},
    )
    assert result.exit_code == 1
    assert "step1 multiplier 1.0: 0 of 2 images, 0 of 2 latents written (exit 0)" in result.stderr
    assert "step2 multiplier 1.0: 0 of 2 images, 0 of 2 latents written (exit 0)" in result.stderr
    assert "0 of 2 generate runs wrote every file" in result.stderr


# --- one LoRA per folder: the folder's record, refusals, notes, the log's run headers ---------------


def folder_record(workspace: Workspace, folder: str) -> dict[str, Any]:
    return json.loads((workspace.output_dir / "sample" / folder / "fplora-infer.json").read_text("utf-8"))


def test_each_folder_records_its_lora_and_every_run(trained: Workspace) -> None:
    result = trained.cli("infer", str(trained.spec_path), "--lora", "step2", "--multiplier", "1.2")
    assert result.exit_code == 0, result.output
    record = folder_record(trained, "v1-step00000002-lm1.2")
    lora = trained.output_dir / "fake-v1-step00000002.safetensors"
    assert record["lora"]["path"] == str(lora.resolve())
    assert record["lora"]["size"] == lora.stat().st_size and record["lora"]["label"] == "step2"
    assert record["lora"]["weights"]  # musubi-tuner's sshs_model_hash
    assert record["multiplier"] == 1.2
    (run,) = record["runs"]
    assert run["command"] == "fplora infer configs/v1.yaml --lora step2 --multiplier 1.2"
    assert run["exit_code"] == 0
    folder = trained.output_dir / "sample" / "v1-step00000002-lm1.2"
    assert sorted(run["files"]) == sorted(
        p.name for p in folder.iterdir() if p.name.endswith(("__000.png", "_latent.safetensors"))
    )
    assert run["settings"]["options"]["--output_type"] == ["latent_images"]
    assert "--save_path" not in run["settings"]["options"] and len(run["settings"]["prompts"]) == 2


def test_generate_log_starts_each_run_with_a_header(trained: Workspace) -> None:
    for _ in range(2):
        assert trained.cli("infer", str(trained.spec_path), "--lora", "step2").exit_code == 0
    log = (trained.output_dir / "sample" / "v1-step00000002-lm1.0" / "generate.log").read_text("utf-8")
    headers = [line for line in log.splitlines() if line.startswith("===== ")]
    assert len(headers) == 4  # command, then LoRA and multiplier, per run
    assert headers[0].endswith("): fplora infer configs/v1.yaml --lora step2")
    assert "fplora " in headers[0] and "(pid " in headers[0]
    lora = trained.output_dir / "fake-v1-step00000002.safetensors"
    assert headers[1] == f"===== LoRA {lora} (step2), multiplier 1.0"
    assert "\n\n===== " in log  # a blank line before the second run
    assert log.index("INFO:__main__:Done!") > log.index(headers[1])


def test_a_new_branch_step_is_refused_into_the_old_branch_folder(trained: Workspace) -> None:
    """After resuming from an older state, step4 is the new branch's file; its folder holds the old one's."""
    assert trained.cli("infer", str(trained.spec_path), "--lora", "step4").exit_code == 0
    assert trained.cli("train", str(trained.spec_path), "--resume", "step2").exit_code == 0
    trained.forget_calls()
    before = pngs(trained, "v1-step00000004-lm1.0")
    result = trained.cli("infer", str(trained.spec_path), "--lora", "step4")
    assert result.exit_code == 1
    assert (
        "error: outputs/sample/v1-step00000004-lm1.0: holds files made from"
        " outputs/fake-v1-step00000004.safetensors (step4), not from"
        " outputs/fake-v1-r1-step00000002.safetensors (step4)"
    ) in result.stderr
    assert "move that folder away, or set infer.save_dir to generate somewhere else" in result.stderr
    assert trained.calls() == [] and pngs(trained, "v1-step00000004-lm1.0") == before
    # the fix works: infer.save_dir
    trained.write_spec(infer={"save_dir": "../branch-samples"})
    again = trained.cli("infer", str(trained.spec_path), "--lora", "step4")
    assert again.exit_code == 0, again.output
    assert len(list((trained.root / "branch-samples" / "v1-step00000004-lm1.0").glob("*__000.png"))) == 2


def test_two_files_of_one_step_in_one_command_are_refused_before_any_generate(trained: Workspace) -> None:
    assert trained.cli("train", str(trained.spec_path), "--resume", "step2").exit_code == 0
    trained.forget_calls()
    old = "outputs/fake-v1-step00000004.safetensors"
    result = trained.cli("infer", str(trained.spec_path), "--lora", "step4", "--lora", old)
    assert result.exit_code == 1
    assert (
        "command line: --lora: outputs/fake-v1-r1-step00000002.safetensors (step4) and"
        f" {old} (step4) would both write to outputs/sample/v1-step00000004-lm1.0"
        " — give one of them per command, with infer.save_dir set for the other"
    ) in result.stderr
    assert trained.calls() == []
    dry = trained.cli("infer", str(trained.spec_path), "--lora", "step4", "--lora", old, "--dry-run")
    assert dry.exit_code == 1 and "would both write to" in dry.stderr


def test_latest_and_final_with_the_same_weights_run_once(trained: Workspace) -> None:
    """The step-4 file and the final file hold the same weights (musubi-tuner's sshs_model_hash)."""
    result = trained.cli("infer", str(trained.spec_path), "--lora", "latest", "--lora", "final")
    assert result.exit_code == 0, result.output
    assert len(trained.calls("fpack_generate_video")) == 1
    assert (
        "note: outputs/fake-v1.safetensors (step4, final) holds the same weights as"
        " outputs/fake-v1-step00000004.safetensors (step4): running it once"
    ) in result.stderr
    # and final alone may add to the folder step4 made: same weights
    assert trained.cli("infer", str(trained.spec_path), "--lora", "final").exit_code == 0


def test_latest_and_final_with_other_weights_are_refused(trained: Workspace) -> None:
    final = trained.output_dir / "fake-v1.safetensors"
    final.write_bytes(fake.safetensors_bytes(step=4, final=True, sshs_model_hash="other"))
    result = trained.cli("infer", str(trained.spec_path), "--lora", "latest", "--lora", "final")
    assert result.exit_code == 1
    assert "(step4, final) would both write to outputs/sample/v1-step00000004-lm1.0" in result.stderr
    assert trained.calls() == []


def test_a_replaced_lora_file_is_refused_into_its_old_folder(trained: Workspace) -> None:
    assert trained.cli("infer", str(trained.spec_path), "--lora", "step2").exit_code == 0
    lora = trained.output_dir / "fake-v1-step00000002.safetensors"
    lora.write_bytes(fake.safetensors_bytes(step=2, sshs_model_hash="retrained"))
    trained.forget_calls()
    result = trained.cli("infer", str(trained.spec_path), "--lora", "step2")
    assert result.exit_code == 1
    assert (
        "holds files made from outputs/fake-v1-step00000002.safetensors (step2), since replaced by"
        " another file of that name, not from outputs/fake-v1-step00000002.safetensors (step2)"
    ) in result.stderr
    assert trained.calls() == []


def test_a_copy_of_the_lora_may_add_to_its_folder(trained: Workspace) -> None:
    """Same weights, another path (a copied run): the same LoRA."""
    assert trained.cli("infer", str(trained.spec_path), "--lora", "step2").exit_code == 0
    lora = trained.output_dir / "fake-v1-step00000002.safetensors"
    copy = trained.root / "copy.safetensors"
    copy.write_bytes(lora.read_bytes())
    lora.unlink()
    lora.symlink_to(copy)
    result = trained.cli("infer", str(trained.spec_path), "--lora", "step2")
    assert result.exit_code == 0, result.output
    assert len(pngs(trained, "v1-step00000002-lm1.0")) == 4


def test_other_infer_settings_are_noted_and_recorded_not_refused(trained: Workspace) -> None:
    """Images are new files, never overwritten; the record says which run wrote which."""
    assert trained.cli("infer", str(trained.spec_path), "--lora", "step2").exit_code == 0
    trained.write_spec(infer={"steps": 7, "seed": 100})
    result = trained.cli("infer", str(trained.spec_path), "--lora", "step2")
    assert result.exit_code == 0, result.output
    assert (
        "note: outputs/sample/v1-step00000002-lm1.0 holds files of step2 made with other infer"
        " settings (--infer_steps 2 → 7, the prompt lines); the new ones go beside them, and"
        " fplora-infer.json lists which run wrote which (set infer.save_dir to keep them apart)"
    ) in result.stderr
    record = folder_record(trained, "v1-step00000002-lm1.0")
    first, second = record["runs"]
    assert {n.split("_")[1] for n in first["files"]} == {"42", "43"}
    assert {n.split("_")[1] for n in second["files"]} == {"100", "101"}
    assert second["settings"]["options"]["--infer_steps"] == ["7"]
    same = trained.cli("infer", str(trained.spec_path), "--lora", "step2")
    assert same.exit_code == 0 and "other infer settings" not in same.stderr


def test_a_folder_from_before_records_is_noted(trained: Workspace) -> None:
    folder = trained.output_dir / "sample" / "v1-step00000002-lm1.0"
    folder.mkdir(parents=True)
    (folder / "20250101-120000-000_42__000.png").write_bytes(fake.png_bytes())
    result = trained.cli("infer", str(trained.spec_path), "--lora", "step2")
    assert result.exit_code == 0, result.output
    assert (
        "note: outputs/sample/v1-step00000002-lm1.0 already holds 1 generate output file from before fplora"
        " kept a record of which LoRA made a folder's files; they may be of another checkpoint than"
        " outputs/fake-v1-step00000002.safetensors (step2)"
    ) in result.stderr
    assert folder_record(trained, "v1-step00000002-lm1.0")["lora"]["label"] == "step2"


def test_an_unreadable_record_is_refused(trained: Workspace) -> None:
    folder = trained.output_dir / "sample" / "v1-step00000002-lm1.0"
    folder.mkdir(parents=True)
    (folder / "fplora-infer.json").write_text("{not json", encoding="utf-8")
    result = trained.cli("infer", str(trained.spec_path), "--lora", "step2")
    assert result.exit_code == 1
    assert "outputs/sample/v1-step00000002-lm1.0: its fplora-infer.json cannot be read" in result.stderr
    assert trained.calls() == []


# --- multipliers ---------------------------------------------------------------------------------


def test_equal_multipliers_run_once(trained: Workspace) -> None:
    result = trained.cli(
        "infer", str(trained.spec_path), "--lora", "step1", "--multiplier", "1.2", "--multiplier", "1.20"
    )
    assert result.exit_code == 0, result.output
    (call,) = trained.calls("fpack_generate_video")
    assert fake.validate(call["args"]).given["lora_multiplier"] == [1.2]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_non_finite_multiplier_is_refused(trained: Workspace, value: str) -> None:
    result = trained.cli("infer", str(trained.spec_path), "--lora", "step1", "--multiplier", value)
    assert result.exit_code == 1
    assert f"command line: --multiplier: {float(value)} is not a finite number" in result.stderr
    assert trained.calls() == []
    assert not list((trained.output_dir / "sample").glob("v1-*"))


def test_non_finite_spec_multiplier_is_refused(trained: Workspace) -> None:
    trained.write_spec(infer={"multipliers": [float("inf")]})
    result = trained.cli("infer", str(trained.spec_path), "--lora", "step1")
    assert result.exit_code == 1
    assert "configs/v1.yaml:11: infer.multipliers[0]: should be a finite number" in result.stderr
    assert trained.calls() == []


# --- judged by the files of the output type -------------------------------------------------------


@pytest.mark.parametrize(
    ("output_type", "counts", "globs"),
    [
        ("latent", "2 latents", {"*_latent.safetensors": 2, "*.png": 0, "*.mp4": 0}),
        ("images", "2 images", {"*_latent.safetensors": 0, "*__000.png": 2, "*.mp4": 0}),
        ("latent_images", "2 images, 2 latents", {"*_latent.safetensors": 2, "*__000.png": 2}),
        ("both", "2 videos, 2 latents", {"*_latent.safetensors": 2, "*_.mp4": 2, "*.png": 0}),
    ],
)
def test_success_is_judged_by_the_output_types_files(
    trained: Workspace, output_type: str, counts: str, globs: dict[str, int]
) -> None:
    trained.write_spec(infer={"output_type": output_type})
    result = trained.cli("infer", str(trained.spec_path), "--lora", "step2")
    assert result.exit_code == 0, result.output
    assert f"multiplier 1.0: {counts} in outputs/sample/v1-step00000002-lm1.0" in result.stderr
    folder = trained.output_dir / "sample" / "v1-step00000002-lm1.0"
    for glob, count in globs.items():
        assert len(list(folder.glob(glob))) == count, glob
    for path in folder.iterdir():
        if path.suffix in (".png", ".mp4", ".safetensors"):
            assert any(kind.seed_re.match(path.name) for kind in names.GENERATE_OUTPUTS[output_type])


def test_latents_without_images_fail_latent_images(trained: Workspace) -> None:
    """Decoding crashed after every latent was saved: the images are what is missing."""
    result = trained.cli(
        "infer", str(trained.spec_path), "--lora", "step2", env={"FAKE_GENERATE_DECODE_FAIL": "1"}
    )
    assert result.exit_code == 1
    assert "multiplier 1.0: 0 of 2 images, 2 of 2 latents written (exit 1)" in result.stderr
    assert "CUDA out of memory" in result.stderr


def test_generate_output_names_match_musubi_tuner() -> None:
    """schema.json's generate files (from the real save functions) and a name seen on an H100."""
    files = schema.schema()["output_names"]["generate_one_frame_output"]["files"]
    for name in (Path(f.replace("{time_flag}", "20261125-224354-309")).name for f in files):
        (kind,) = [k for k in names.GENERATE_OUTPUTS["latent_images"] if Path(name).match(k.glob)]
        assert kind.seed_re.match(name).group(1) == "42"
    assert names.GENERATE_LATENT_SEED_RE.match("20261125-224354-309_42_latent.safetensors").group(1) == "42"
    assert names.GENERATE_VIDEO_SEED_RE.match("20261125-224354-309_42_.mp4").group(1) == "42"
    assert not Path("20261125-224354-309_42__000.png").match(names.GENERATE_VIDEO_GLOB)


# --- what --lora accepts ----------------------------------------------------------------------------


def _text_file(workspace: Workspace) -> str:
    path = workspace.root / "notes.txt"
    path.write_text("not a LoRA\n", encoding="utf-8")
    return "notes.txt"


def _junk_safetensors(workspace: Workspace) -> str:
    path = workspace.root / "junk.safetensors"
    path.write_text("hello world, no header here", encoding="utf-8")
    return "junk.safetensors"


def _truncated(workspace: Workspace) -> str:
    whole = (workspace.output_dir / "fake-v1-step00000001.safetensors").read_bytes()
    (workspace.root / "cut.safetensors").write_bytes(whole[: len(whole) // 2])
    return "cut.safetensors"


def _empty(workspace: Workspace) -> str:
    (workspace.root / "empty.safetensors").write_bytes(b"")
    return "empty.safetensors"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            lambda w: "outputs/fake-v1-step00000002-state",
            "outputs/fake-v1-step00000002-state: is a training state, not a LoRA — use the LoRA step"
            " file: --lora step2, outputs/fake-v1-step00000002.safetensors",
        ),
        (
            lambda w: "outputs/fake-v1-state",
            "outputs/fake-v1-state: is a training state, not a LoRA — use the LoRA step file:"
            " --lora step4, outputs/fake-v1.safetensors",
        ),
        (lambda w: "/dev/null", "/dev/null: is not a regular file — give a LoRA .safetensors file"),
        (lambda w: "data", "data: is a folder, not a LoRA file — give a LoRA .safetensors file"),
        (_text_file, "notes.txt: is not a .safetensors file — give a LoRA .safetensors file"),
        (_junk_safetensors, "junk.safetensors: is not a safetensors file (starts with 'hello')"),
        (_truncated, "cut.safetensors: is truncated"),
        (_empty, "empty.safetensors: is empty"),
    ],
    ids=["step-state", "final-state", "dev-null", "folder", "txt", "junk", "truncated", "empty"],
)
def test_lora_that_is_not_a_lora_file_is_refused_before_any_generate(
    trained: Workspace, given: Callable[[Workspace], str], message: str
) -> None:
    result = trained.cli("infer", str(trained.spec_path), "--lora", "step1", "--lora", given(trained))
    assert result.exit_code == 1
    assert f"error: {message}" in result.stderr
    assert trained.calls() == []
    assert not (trained.output_dir / "sample" / "v1-step00000001-lm1.0").exists()


# --- while training runs ------------------------------------------------------------------------------


def test_latest_while_training_runs_is_noted(trained: Workspace) -> None:
    (trained.output_dir / "fake-v1.lock").write_text(f"{os.getpid()}\n", encoding="utf-8")
    result = trained.cli("infer", str(trained.spec_path), "--lora", "latest")
    assert result.exit_code == 0, result.output
    assert (
        f"note: training of fake-v1 is running (pid {os.getpid()}, outputs/fake-v1.lock):"
        " outputs/fake-v1-step00000004.safetensors (step4) is its newest save and may be only half written"
    ) in result.stderr
    older = trained.cli("infer", str(trained.spec_path), "--lora", "step2")
    assert older.exit_code == 0 and "is running" not in older.stderr


def test_a_half_written_latest_says_training_may_still_be_writing_it(trained: Workspace) -> None:
    (trained.output_dir / "fake-v1.lock").write_text(f"{os.getpid()}\n", encoding="utf-8")
    lora = trained.output_dir / "fake-v1-step00000004.safetensors"
    lora.write_bytes(lora.read_bytes()[:-10])
    result = trained.cli("infer", str(trained.spec_path), "--lora", "latest")
    assert result.exit_code == 1
    assert "outputs/fake-v1-step00000004.safetensors: is truncated" in result.stderr
    assert (
        f"training (pid {os.getpid()}) may still be writing it: wait for the save and run again"
        in result.stderr
    )
    assert trained.calls() == []


def test_a_stale_lock_is_no_running_training(trained: Workspace) -> None:
    (trained.output_dir / "fake-v1.lock").write_text("999999999\n", encoding="utf-8")
    result = trained.cli("infer", str(trained.spec_path), "--lora", "latest")
    assert result.exit_code == 0 and "is running" not in result.stderr


def test_dry_run_refuses_a_state_folder_but_checks_no_file_content(trained: Workspace) -> None:
    """Dry runs check no model file's content; the kind of path they do check."""
    state = trained.cli(
        "infer", str(trained.spec_path), "--lora", "outputs/fake-v1-step00000002-state", "--dry-run"
    )
    assert state.exit_code == 1 and "is a training state, not a LoRA" in state.stderr
    result = trained.cli("infer", str(trained.spec_path), "--lora", _junk_safetensors(trained), "--dry-run")
    assert result.exit_code == 0, result.output
    assert trained.calls() == []


def test_several_prompts_on_a_swapping_dit_go_through_the_worker(trained: Workspace) -> None:
    """musubi-tuner's generate loses every prompt after the first when blocks are swapped (seen on
    an H200; the fake does the same). One cell with two prompts and a swapping DiT therefore runs in
    fplora's worker, which loads the DiT again for each prompt; `--no-sweep` keeps the script and
    warns at the line that set the swap."""
    trained.write_spec(train={"blocks_to_swap": 20})
    result = trained.cli("infer", str(trained.spec_path), "--lora", "step2")
    assert result.exit_code == 0, result.output
    assert not trained.calls("fpack_generate_video")
    assert "1 cell × 2 prompts in one process" in result.stderr
    assert [name.split("_")[1] for name in pngs(trained, "v1-step00000002-lm1.0")] == ["42", "43"]
    again = trained.cli("infer", str(trained.spec_path), "--lora", "step2")  # one cell runs as asked
    assert again.exit_code == 0 and len(pngs(trained, "v1-step00000002-lm1.0")) == 4, again.output

    result = trained.cli("infer", str(trained.spec_path), "--lora", "step1", "--no-sweep")
    assert result.exit_code == 1
    (warning,) = [line for line in result.stderr.splitlines() if "loses every prompt after the first" in line]
    assert "train.blocks_to_swap" in warning and "only prompt 1 of 2 is expected" in warning
    assert "1 of 2 images" in result.stderr and "mat2 is on cpu" in result.stderr

    trained.write_spec(infer={"blocks_to_swap": 0})  # the DiT fits: the script, both prompts
    result = trained.cli("infer", str(trained.spec_path), "--lora", "step1", "--redo")
    assert result.exit_code == 0, result.output
    assert len(trained.calls("fpack_generate_video")) == 2  # the --no-sweep run above, and this one
    assert "loses every prompt" not in result.stderr


def test_one_infer_reads_the_run_folder_once(trained: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """Several words (a selection, latest, a step), the lock, the foreign-run note and the folders'
    checks are all answered by one catalogue: the folder is listed and the manifest read once."""
    from fplora.runs import catalogue
    from fplora.runs.manifest import Manifest

    reads: list[str] = []
    scan, load, holder = catalogue.scan, Manifest.load.__func__, catalogue.holder  # type: ignore[attr-defined]

    def counted(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any) -> Any:
            reads.append(name)
            return real(*args)

        return wrapper

    monkeypatch.setattr(catalogue, "scan", counted("scan", scan))
    monkeypatch.setattr(catalogue, "holder", counted("lock", holder))
    monkeypatch.setattr(Manifest, "load", classmethod(counted("manifest", load)))
    words = ("--lora", "step1..step2", "--lora", "latest", "--lora", "step3")
    result = trained.cli("infer", str(trained.spec_path), *words, "--no-sweep")
    assert result.exit_code == 0, result.output
    assert len(trained.calls("fpack_generate_video")) == 4
    assert sorted(reads) == ["lock", "manifest", "scan"]


def test_one_prompt_is_counted_as_one_image(trained: Workspace) -> None:
    """'multiplier 1.2: 1 images, 1 latents in ...' read as machine-made to a new user."""
    trained.write_spec(infer={"multipliers": [1.0], "prompts": [{"record": 1}]})
    result = trained.cli("infer", str(trained.spec_path), "--lora", "step2", "--no-rehearse")
    assert result.exit_code == 0, result.output
    assert "multiplier 1.0: 1 image, 1 latent in outputs/sample/v1-step00000002-lm1.0" in result.stderr


def test_multipliers_separated_by_commas_are_several(trained: Workspace) -> None:
    """`--lora` combines with commas, so `--multiplier 1.0,1.2` is what a user types next: it was
    typer's "Input should be a valid number, unable to parse string as a number"."""
    result = trained.cli(
        "infer", str(trained.spec_path), "--lora", "step1", "--multiplier", "1.0,1.2", "--no-sweep"
    )
    assert result.exit_code == 0, result.output
    given = [fake.validate(c["args"]).given["lora_multiplier"] for c in trained.calls("fpack_generate_video")]
    assert given == [[1.0], [1.2]]
    trained.forget_calls()
    bad = trained.cli("infer", str(trained.spec_path), "--lora", "step1", "--multiplier", "1.2x")
    assert bad.exit_code == 1
    assert bad.stderr.splitlines()[-1] == (
        "error: command line: --multiplier: '1.2x' is not a number — e.g. --multiplier 1.2; for several,"
        " repeat it or separate them with commas (--multiplier 1.0,1.2)"
    )
    assert "Traceback" not in bad.output and trained.calls() == []
