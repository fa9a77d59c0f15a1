"""`fplora export`: both layouts, the metadata, the card, and what it refuses.

The LoRA files here are written by the test in musubi-tuner's layout (bf16, alpha per module) with
numpy; that musubi-tuner's own code merges the two layouts to the same weights is
tests/test_export_musubi.py's job, in the musubi-tuner Python.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fplora.cli import app
from fplora.lora import tensors
from fplora.lora.tensors import Tensor, from_float32, to_float32
from fplora.musubi.framepack import lora_modules, musubi_name

runner = CliRunner()

DIFFUSERS_RENAMES = (
    # diffusers' `_convert_hunyuan_video_lora_to_diffusers` (FramePack-Studio and neph1/FramePack
    # run every LoRA through it) renames any key holding one of these substrings: none of the
    # exported names may hold one, or the front end would load the weights into another module
    "img_in", "time_in.mlp", "guidance_in.mlp", "vector_in", "double_blocks", "img_attn", "txt_attn",
    "img_mod.linear", "img_norm", "img_mlp", "txt_mod.linear", "txt_norm", "txt_mlp", "self_attn_proj",
    "modulation.linear", "pre_norm", "final_layer", "fc1", "fc2", "input_embedder", "txt_in",
    "single_blocks", "linear1", "linear2", "q_norm", "k_norm",
)  # fmt: skip


def musubi_lora(path: Path, *, rank: int = 4, alpha: float = 2.0, blocks: tuple[int, int] = (20, 40)) -> Path:
    """A musubi-tuner-layout FramePack LoRA (bf16 weights, bf16 alpha), small widths."""
    rng = np.random.default_rng(0)
    weights = {}
    for module in lora_modules(*blocks):
        name = musubi_name(module)
        weights[f"{name}.lora_down.weight"] = Tensor(
            "BF16", from_float32(rng.standard_normal((rank, 8), np.float32))
        )
        weights[f"{name}.lora_up.weight"] = Tensor(
            "BF16", from_float32(rng.standard_normal((6, rank), np.float32))
        )
        weights[f"{name}.alpha"] = Tensor("BF16", from_float32(np.array(alpha, np.float32)))
    entries, chunks = tensors.data(weights)
    metadata = {
        "ss_network_dim": str(rank),
        "ss_network_alpha": str(alpha),
        "modelspec.resolution": "1280x720",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors.write(path, entries, chunks, metadata)
    return path


def read_header(path: Path) -> dict:
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + length])


@pytest.fixture
def run(project: Callable[..., Path]) -> Path:
    spec = project()
    musubi_lora(spec.parent.parent / "out" / "demo-v1-step00000002.safetensors")
    return spec


def test_both_layouts_and_the_card_are_written(run: Path) -> None:
    result = runner.invoke(app, ["export", str(run), "--lora", "step2"])
    assert result.exit_code == 0, result.output
    folder = run.parent.parent / "out" / "export" / "demo-v1-step00000002"
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "demo-v1-step00000002-diffusers.safetensors",
        "demo-v1-step00000002.safetensors",
    ]
    assert "note: diffusers layout: alpha/rank 0.5 folded into lora_B exactly, bf16" in result.output


def test_the_musubi_layout_keeps_every_tensor_byte(run: Path) -> None:
    runner.invoke(app, ["export", str(run), "--lora", "step2", "--to", "musubi"])
    source = run.parent.parent / "out" / "demo-v1-step00000002.safetensors"
    copy = run.parent.parent / "out" / "export" / "demo-v1-step00000002" / source.name
    a, b = source.read_bytes(), copy.read_bytes()
    assert a[8 + struct.unpack("<Q", a[:8])[0] :] == b[8 + struct.unpack("<Q", b[:8])[0] :]
    meta = read_header(copy)["__metadata__"]
    assert meta["fplora.layout"] == "musubi" and meta["fplora.alpha_folded"] == "false"
    assert meta["ss_network_dim"] == "4"  # musubi-tuner's own metadata stays


def test_the_diffusers_layout_names_every_module_by_its_path_and_folds_alpha(run: Path) -> None:
    runner.invoke(app, ["export", str(run), "--lora", "step2", "--to", "diffusers"])
    out = run.parent.parent / "out"
    source, _ = tensors.read(out / "demo-v1-step00000002.safetensors")
    exported, meta = tensors.read(
        out / "export" / "demo-v1-step00000002" / "demo-v1-step00000002-diffusers.safetensors"
    )
    modules = lora_modules()
    assert len(modules) == 440
    assert set(exported) == {f"transformer.{m}.lora_{ab}.weight" for m in modules for ab in "AB"}
    assert not [m for m in modules if any(s in m for s in DIFFUSERS_RENAMES)]
    for module in modules:
        down = source[f"{musubi_name(module)}.lora_down.weight"]
        up = source[f"{musubi_name(module)}.lora_up.weight"]
        a, b = (
            exported[f"transformer.{module}.lora_A.weight"],
            exported[f"transformer.{module}.lora_B.weight"],
        )
        assert a.dtype == b.dtype == "BF16"
        assert np.array_equal(a.array, down.array)
        # alpha 2 at rank 4: B = 0.5 · up, exactly (a power of two only moves the exponent)
        assert np.array_equal(to_float32(b.array), to_float32(up.array) * np.float32(0.5))
    assert "sshs_legacy_hash" not in meta
    assert meta["fplora.layout"] == "diffusers" and meta["fplora.alpha_folded"] == "true"


def test_metadata_holds_the_one_frame_settings_and_the_real_resolution(run: Path) -> None:
    runner.invoke(app, ["export", str(run), "--lora", "step2", "--to", "musubi"])
    path = run.parent.parent / "out" / "export" / "demo-v1-step00000002" / "demo-v1-step00000002.safetensors"
    meta = read_header(path)["__metadata__"]
    assert {k: v for k, v in meta.items() if k.startswith("fplora.one_frame.")} == {
        "fplora.one_frame.clean_indices": "[0, 10]",
        "fplora.one_frame.target_index": "5",
        "fplora.one_frame.no_post": "true",
        "fplora.one_frame.control_count": "2",
        "fplora.one_frame.no_2x": "false",
        "fplora.one_frame.no_4x": "false",
        "fplora.one_frame.latent_window_size": "9",
        "fplora.one_frame.inference": "target_index=5,control_index=0;10,no_post",
    }
    assert meta["modelspec.resolution"] == "64x96"  # not musubi-tuner's 1280x720 placeholder
    assert meta["fplora.resolution"] == "64x96"
    assert meta["fplora.global_step"] == "2"
    assert meta["fplora.base_model"] == "lllyasviel/FramePackI2V_HY"
    assert meta["fplora.musubi_tuner_version"] == "0.3.4"
    assert len(meta["fplora.spec_sha256"]) == 64
    assert meta["fplora.network_dim"] == "4" and meta["fplora.network_alpha"] == "2"


def test_the_card_has_the_hub_header_settings_prompts_and_front_ends(run: Path) -> None:
    runner.invoke(app, ["export", str(run), "--lora", "step2"])
    text = (run.parent.parent / "out" / "export" / "demo-v1-step00000002" / "README.md").read_text()
    header = text.split("---\n")[1]
    assert "base_model: lllyasviel/FramePackI2V_HY\n" in header
    assert "base_model_relation: adapter\n" in header
    assert "pipeline_tag: image-to-image\n" in header
    assert "# license:" in header  # left for the user
    assert "`--of target_index=5,control_index=0;10,no_post`" in text
    assert "from 2 control images at clean-latent indices 0, 10" in text
    assert "1. a character turns, take 1\n" in text  # the sample prompt's record caption
    for front_end in (
        "ComfyUI-FramePackWrapper (kijai)",
        "FramePack-eichi",
        "FramePack-Studio",
        "neph1/FramePack",
    ):
        assert f"**{front_end}**" in text
    assert "## Evaluation" not in text  # not scored


def test_the_card_tells_control_images_of_one_name_apart(project: Callable[..., Path]) -> None:
    """`dataset init`'s targets/ + control_<k>/ layout gives every control of a record the target's
    file name: the card listed `a.png`, `a.png`, not which is which."""
    data = Path("data/layered")
    for folder in ("targets", "control_0", "control_1"):
        (data / folder).mkdir(parents=True)
        Image.new("RGB", (64, 96), "white").save(data / folder / "a.png")
    (data / "metadata.jsonl").write_text(
        json.dumps(
            {
                "image_path": "targets/a.png",
                "control_path_0": "control_0/a.png",
                "control_path_1": "control_1/a.png",
                "caption": "a character turns",
            }
        )
        + "\n"
    )
    spec = project("datasets:\n  - jsonl: ../data/layered/metadata.jsonl\n")
    musubi_lora(spec.parent.parent / "out" / "demo-v1-step00000002.safetensors")
    result = runner.invoke(app, ["export", str(spec), "--lora", "step2", "--to", "musubi"])
    assert result.exit_code == 0, result.output
    text = (spec.parent.parent / "out" / "export" / "demo-v1-step00000002" / "README.md").read_text()
    assert "control images: `control_0/a.png`, `control_1/a.png`;" in text


def test_the_evaluation_loss_goes_into_the_card_and_the_metadata(run: Path) -> None:
    out = run.parent.parent / "out"
    lora = out / "demo-v1-step00000002.safetensors"
    points = [
        {"label": "untrained", "step": 0, "lora": None, "loss": 0.2, "bands": []},
        {"label": "step2", "step": 2, "lora": str(lora), "loss": 0.125, "bands": []},
    ]
    (out / "demo-v1.eval.json").write_text(json.dumps({"format": 1, "points": points}))
    runner.invoke(app, ["export", str(run), "--lora", "best", "--to", "musubi"])
    folder = out / "export" / "demo-v1-step00000002"
    assert read_header(folder / lora.name)["__metadata__"]["fplora.eval_loss"] == "0.125"
    assert "**0.12500**; the untrained network scores 0.20000" in (folder / "README.md").read_text()


def test_a_loss_on_records_also_trained_on_is_not_called_held_out(project: Callable[..., Path]) -> None:
    """With eval.allow_training_records the scored records were trained on: the card must not tell
    the readers of a published LoRA that its loss is a held-out one."""
    spec = project("eval: {records: [2], allow_training_records: true}\n")
    out = spec.parent.parent / "out"
    lora = musubi_lora(out / "demo-v1-step00000002.safetensors")
    points = [{"label": "step2", "step": 2, "lora": str(lora), "loss": 0.125, "bands": []}]
    (out / "demo-v1.eval.json").write_text(json.dumps({"format": 1, "points": points}))
    result = runner.invoke(app, ["export", str(spec), "--lora", "step2", "--to", "musubi"])
    assert result.exit_code == 0, result.output
    card = (out / "export" / "demo-v1-step00000002" / "README.md").read_text()
    assert "held-out records" not in card
    assert (
        "Evaluation loss (`fplora eval`, on records also trained on (eval.allow_training_records): a check"
        " of the training objective, not of unseen records; fixed noise): **0.12500**"
    ) in card


def test_an_earlier_export_is_replaced_only_with_force(run: Path) -> None:
    assert runner.invoke(app, ["export", str(run), "--lora", "step2"]).exit_code == 0
    again = runner.invoke(app, ["export", str(run), "--lora", "step2", "--to", "diffusers"])
    assert again.exit_code == 1
    assert (
        "out/export/demo-v1-step00000002: holds an earlier export (demo-v1-step00000002-diffusers.safetensors,"
        " README.md) — replace it with --force" in again.output
    )
    assert runner.invoke(app, ["export", str(run), "--lora", "step2", "--force"]).exit_code == 0


def test_the_same_export_twice_is_one_line_naming_the_folder(run: Path) -> None:
    """Run twice, every file of the first export was its own error line: one cause, one line."""
    assert runner.invoke(app, ["export", str(run), "--lora", "step2"]).exit_code == 0
    again = runner.invoke(app, ["export", str(run), "--lora", "step2"])
    assert again.exit_code == 1
    errors = [line for line in again.output.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: out/export/demo-v1-step00000002: holds an earlier export (demo-v1-step00000002.safetensors,"
        " demo-v1-step00000002-diffusers.safetensors, README.md) — replace it with --force, or give"
        " another --out"
    ]


def test_out_with_a_tilde_after_equals_goes_home_not_into_a_folder_named_tilde(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shell expands `~` only at a word's start: `--out=~/loras/turn` reached fplora as written,
    and the export went into ./~/loras/turn."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    result = runner.invoke(
        app, ["export", str(run), "--lora", "step2", "--to", "musubi", "--out=~/loras/turn"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "home" / "loras" / "turn" / "demo-v1-step00000002.safetensors").is_file()
    assert not Path("~").exists()


def test_the_run_s_own_checkpoint_is_never_overwritten(run: Path) -> None:
    out = run.parent.parent / "out"
    result = runner.invoke(
        app, ["export", str(run), "--lora", "step2", "--to", "musubi", "--out", str(out), "--force"]
    )
    assert result.exit_code == 1
    assert (
        "out/demo-v1-step00000002.safetensors: --out: is a file of the run itself; an export never replaces it — give another --out folder"
        in result.output
    )


def test_out_naming_a_file_is_one_line_not_a_traceback(run: Path) -> None:
    """`--out` is a folder; a LoRA's own file name given there crashed in mkdir."""
    lora = run.parent.parent / "out" / "demo-v1-step00000002.safetensors"
    before = lora.read_bytes()
    result = runner.invoke(app, ["export", str(run), "--lora", "step2", "--out", str(lora)])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert (
        "out/demo-v1-step00000002.safetensors: --out: is a file; --out names the folder the export goes"
        " into — give a folder, e.g. --out out/demo-v1-step00000002" in result.output
    )
    assert lora.read_bytes() == before


def test_a_lora_of_another_run_given_by_path_is_warned_about(run: Path, tmp_path: Path) -> None:
    """musubi-tuner names the run in `ss_output_name`: a file of another version exported with this
    spec got this spec's settings in its card and metadata without a word."""
    other = tmp_path / "elsewhere" / "other-v3-step00000010.safetensors"
    musubi_lora(other)
    weights, meta = tensors.read(other)
    entries, chunks = tensors.data(weights)
    tensors.write(other, entries, chunks, {**meta, "ss_output_name": "other-v3"})
    result = runner.invoke(app, ["export", str(run), "--lora", str(other), "--to", "musubi"])
    assert result.exit_code == 0, result.output
    assert (
        "warning: elsewhere/other-v3-step00000010.safetensors: saved by the run other-v3 (its"
        " ss_output_name), not demo-v1: the card and metadata give the settings of configs/v1.yaml"
        " — export it with the spec that trained it" in result.output
    )
    own = run.parent.parent / "out" / "demo-v1-step00000002.safetensors"
    weights, meta = tensors.read(own)
    entries, chunks = tensors.data(weights)
    tensors.write(own, entries, chunks, {**meta, "ss_output_name": "demo-v1"})
    quiet = runner.invoke(app, ["export", str(run), "--lora", "step2", "--to", "musubi"])
    assert quiet.exit_code == 0, quiet.output
    assert "warning" not in quiet.output


def test_a_key_of_no_framepack_module_is_refused(project: Callable[..., Path]) -> None:
    spec = project()
    out = spec.parent.parent / "out"
    path = musubi_lora(out / "demo-v1-step00000002.safetensors", blocks=(1, 0))
    weights, meta = tensors.read(path)
    weights["lora_unet_transformer_blocks_0_norm1_linear.lora_down.weight"] = weights[
        "lora_unet_transformer_blocks_0_attn_to_q.lora_down.weight"
    ]
    entries, chunks = tensors.data(weights)
    tensors.write(path, entries, chunks, meta)
    result = runner.invoke(app, ["export", str(spec), "--lora", "step2"])
    assert result.exit_code == 1
    assert (
        "lora_unet_transformer_blocks_0_norm1_linear.lora_down.weight: names no FramePack DiT module — export a FramePack LoRA"
        in result.output
    )


def test_a_partial_lora_is_exported_with_a_note(project: Callable[..., Path]) -> None:
    spec = project()
    musubi_lora(spec.parent.parent / "out" / "demo-v1-step00000002.safetensors", blocks=(1, 2))
    result = runner.invoke(app, ["export", str(spec), "--lora", "step2", "--to", "diffusers"])
    assert result.exit_code == 0, result.output
    assert "holds 22 of the DiT's 440 LoRA modules" in result.output


def test_an_alpha_that_is_not_a_power_of_two_is_folded_exactly_in_float32(
    project: Callable[..., Path],
) -> None:
    spec = project()
    out = spec.parent.parent / "out"
    musubi_lora(out / "demo-v1-step00000002.safetensors", alpha=3.0)
    result = runner.invoke(app, ["export", str(spec), "--lora", "step2", "--to", "diffusers"])
    assert "note: diffusers layout: alpha/rank 0.75 folded into lora_B exactly, float32" in result.output
    assert (
        "musubi-tuner's fpack_generate_video cannot merge a float32 LoRA into its bf16 DiT" in result.output
    )
    source, _ = tensors.read(out / "demo-v1-step00000002.safetensors")
    path = out / "export" / "demo-v1-step00000002" / "demo-v1-step00000002-diffusers.safetensors"
    exported, _ = tensors.read(path)
    name = "transformer_blocks.3.ff.net.2"
    b = exported[f"transformer.{name}.lora_B.weight"]
    assert b.dtype == "F32"
    assert np.array_equal(
        b.array, to_float32(source[f"{musubi_name(name)}.lora_up.weight"].array) * np.float32(0.75)
    )


def test_dtype_bf16_keeps_bf16_and_says_how_far_it_rounded(project: Callable[..., Path]) -> None:
    spec = project()
    musubi_lora(spec.parent.parent / "out" / "demo-v1-step00000002.safetensors", alpha=3.0)
    result = runner.invoke(
        app, ["export", str(spec), "--lora", "step2", "--to", "diffusers", "--dtype", "bf16"]
    )
    assert "alpha/rank 0.75 folded into lora_B rounded to bf16, largest change" in result.output
    change = float(result.output.split("largest change ")[1].split()[0])
    assert 0 < change <= 2**-8  # half a unit in the last place of bf16 (8 significant bits)


def test_bf16_rounding_is_to_nearest_even() -> None:
    values = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, -(2**-130), np.inf], np.float32)
    assert [hex(v) for v in from_float32(values)] == ["0x3f80", "0x3f80", "0x3f82", "0x8008", "0x7f80"]
    assert np.isnan(to_float32(from_float32(np.array([np.nan], np.float32))))[0]


def test_the_card_shows_this_checkpoint_s_contact_sheet(run: Path) -> None:
    """`fplora infer` folders of step 2 (two multipliers) and of another step: the card gets step 2's row."""
    from PIL import Image

    out = run.parent.parent / "out"
    start = run.parent.parent / "data" / "dataset-v1" / "c" / "1_0.png"
    line = f"a character turns, take 1 --i {start} --ci {start} --of target_index=5 --w 64 --h 96 --d 42"
    for step, multiplier, colour in ((2, 1.0, "red"), (2, 1.2, "blue"), (4, 1.0, "green")):
        folder = out / "sample" / f"v1-step{step:08d}-lm{multiplier}"
        folder.mkdir(parents=True)
        name = "20260101-000000-000_42__000.png"
        Image.new("RGB", (64, 96), colour).save(folder / name)
        run_record = {"settings": {"options": {}, "prompts": [line]}, "files": [name]}
        record = {"lora": {"label": f"step{step}"}, "multiplier": multiplier, "runs": [run_record]}
        (folder / "fplora-infer.json").write_text(json.dumps(record))
    result = runner.invoke(app, ["export", str(run), "--lora", "step2", "--to", "musubi"])
    assert result.exit_code == 0, result.output
    folder = out / "export" / "demo-v1-step00000002"
    sheet = Image.open(folder / "sheet-prompt01.png").convert("RGB")
    colours = {colour for _, colour in sheet.getcolors(1 << 20) or []}
    assert (255, 0, 0) in colours and (0, 0, 255) in colours  # step 2 at both multipliers
    assert (0, 128, 0) not in colours  # not step 4's row
    assert "![prompt 1](sheet-prompt01.png)" in (folder / "README.md").read_text()


def test_a_front_end_named_for_the_layout_is_told_which_layout_it_loads(tmp_path: Path) -> None:
    """The README's section is "for ComfyUI, FramePack-eichi, FramePack-Studio": those are the names
    a user types; the refusal comes before any spec or file is read."""
    result = CliRunner().invoke(app, ["export", str(tmp_path / "v1.yaml"), "--to", "comfyui"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: command line: --to: comfyui is not a layout — use musubi (musubi-tuner, FramePack-eichi,"
        " ComfyUI's FramePackWrapper) or diffusers (FramePack-Studio, neph1/FramePack)"
    ]
