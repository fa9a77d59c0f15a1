"""`fplora dataset init`: the JSONL from a folder of pictures, pairs checked, the layout said.

Each test builds a small folder of real PNGs in one of the three layouts and runs the real CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner, Result

from fplora.cli import app


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def png(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (64, 96)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def pictures(root: Path, count: int = 3, *, layout: str = "subfolders", captions: bool = True) -> Path:
    """`count` records: a target and two controls each, with `<stem>.txt` captions."""
    for number in range(1, count + 1):
        stem = f"{number:04d}"
        colour = (40 * number, 100, 200 - 30 * number)
        if layout == "subfolders":
            png(root / "targets" / f"{stem}.png", colour)
            png(root / "control_0" / f"{stem}.png", (colour[0], 0, 0))
            png(root / "control_1" / f"{stem}.jpg", (0, colour[0], 0))
            caption = root / "targets" / f"{stem}.txt"
        elif layout == "controls":
            png(root / "targets" / f"{stem}.png", colour)
            png(root / "controls" / f"{stem}_0.png", (colour[0], 0, 0))
            png(root / "controls" / f"{stem}_1.png", (0, colour[0], 0))
            caption = root / "targets" / f"{stem}.txt"
        else:
            png(root / f"{stem}.png", colour)
            png(root / f"{stem}_0.png", (colour[0], 0, 0))
            png(root / f"{stem}_1.png", (0, colour[0], 0))
            caption = root / f"{stem}.txt"
        if captions:
            caption.write_text(f"character {number} turns to face the camera\n", encoding="utf-8")
    return root


@pytest.fixture(autouse=True)
def _here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_subfolders_become_records_with_relative_paths_and_the_layout_is_said(tmp_path: Path) -> None:
    folder = pictures(tmp_path / "pics")
    result = cli("dataset", "init", folder)
    assert result.exit_code == 0, result.output
    lines = (folder / "metadata.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0]) == {
        "image_path": "targets/0001.png",
        "control_path_0": "control_0/0001.png",
        "control_path_1": "control_1/0001.jpg",
        "caption": "character 1 turns to face the camera",
    }
    assert len(lines) == 3
    said = result.stderr
    assert "layout: targets/ + control_<k>/; 3 records" in said
    assert "latent index  0: control 0 (control_0/, control_path_0)" in said
    assert "latent index  5: the target" in said
    assert "latent index 10: control 1 (control_1/, control_path_1)" in said
    assert said.index("index  0") < said.index("index  5") < said.index("index 10")
    snippet = (folder / "fplora-dataset.yaml").read_text(encoding="utf-8")
    assert f"- jsonl: {(folder / 'metadata.jsonl').resolve()}" in snippet
    assert "clean_indices: [0, 10]" in snippet and "target_index: 5" in snippet
    assert "    num_repeats: 10" in snippet  # pasted over init's entry, the repeats stay as they were
    # `fplora init`'s v1.yaml has a datasets: key already: pasted below it, this one is a YAML error
    assert "replace the datasets:\n# entry with this one" in snippet
    assert (
        f"next: in your spec's datasets: entry, set `jsonl: {(folder / 'metadata.jsonl').resolve()}`" in said
    )


@pytest.mark.parametrize("layout", ["controls", "flat"])
def test_the_other_layouts_pair_by_stem(tmp_path: Path, layout: str) -> None:
    folder = pictures(tmp_path / "pics", layout=layout)
    result = cli("dataset", "init", folder)
    assert result.exit_code == 0, result.output
    first = json.loads((folder / "metadata.jsonl").read_text(encoding="utf-8").splitlines()[0])
    prefix = "controls/" if layout == "controls" else ""
    assert first["control_path_1"] == f"{prefix}0001_1.png"
    assert first["image_path"] == ("targets/0001.png" if layout == "controls" else "0001.png")


def test_dry_run_prints_the_records_and_writes_nothing(tmp_path: Path) -> None:
    folder = pictures(tmp_path / "pics", 2)
    result = cli("dataset", "init", folder, "--dry-run")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["image_path"] for line in result.stdout.splitlines()] == [
        "targets/0001.png",
        "targets/0002.png",
    ]
    assert not (folder / "metadata.jsonl").exists() and not (folder / "fplora-dataset.yaml").exists()


def test_missing_and_ambiguous_pairs_are_refused_naming_the_files(tmp_path: Path) -> None:
    folder = pictures(tmp_path / "pics", 4)
    (folder / "control_1" / "0002.jpg").unlink()
    png(folder / "control_0" / "0009.png", (1, 2, 3))
    png(folder / "targets" / "0003.jpg", (1, 2, 3))
    (folder / "targets" / "0004.txt").unlink()
    result = cli("dataset", "init", folder)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 4
    assert any("pics/targets/0002.png: no control 1 image (one-frame needs 2 controls" in e for e in errors)
    assert any("pics/targets/0003.png: two images for one record: 0003.jpg and 0003.png" in e for e in errors)
    assert any("pics/control_0/0009.png: control image without a target 0009.*" in e for e in errors)
    assert any("pics/targets/0004.png: no caption: pics/targets/0004.txt not found" in e for e in errors)
    assert "Traceback" not in result.output
    assert not (folder / "metadata.jsonl").exists()


def test_controls_beside_the_targets_in_targets_are_paired(tmp_path: Path) -> None:
    """targets/0001.png with targets/0001_0.png, targets/0001_1.png beside it: found "no target
    images" (targets/ without control folders fell through to the top folder, which has none)."""
    folder = pictures(tmp_path / "pics" / "targets", 2, layout="flat").parent
    result = cli("dataset", "init", folder)
    assert result.exit_code == 0, result.output
    first = json.loads((folder / "metadata.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first == {
        "image_path": "targets/0001.png",
        "control_path_0": "targets/0001_0.png",
        "control_path_1": "targets/0001_1.png",
        "caption": "character 1 turns to face the camera",
    }


def test_a_folder_of_dataset_folders_says_to_init_each(tmp_path: Path) -> None:
    """One folder per character (alice/targets/..., bob/targets/...): "put the targets in targets/"
    told the user to do what they had done."""
    pictures(tmp_path / "pics" / "alice")
    pictures(tmp_path / "pics" / "bob", layout="flat")
    result = cli("dataset", "init", tmp_path / "pics")
    assert result.exit_code == 1
    assert (
        "error: pics: no target images here, but pics/alice/, pics/bob/ hold pictures of their own"
        " — run `fplora dataset init` on each (e.g. fplora dataset init pics/alice)" in result.stderr
    )


def test_a_control_named_stem_k_in_its_control_folder_is_told_the_name_to_use(tmp_path: Path) -> None:
    folder = pictures(tmp_path / "pics", 1)
    (folder / "control_0" / "0001.png").rename(folder / "control_0" / "0001_0.png")
    result = cli("dataset", "init", folder)
    assert result.exit_code == 1
    assert (
        "pics/control_0/0001_0.png: control image without a target 0001_0.* — in control_0/ a control"
        " has its target's name: rename it 0001.png" in result.stderr
    )


def test_linked_pictures_are_named_by_the_link_and_a_broken_link_is_said(tmp_path: Path) -> None:
    """Pictures linked in from a pool: a problem named the pool's file, not the dataset's, and a link
    whose picture was gone was skipped without a word ("no control 1 image")."""
    pool = pictures(tmp_path / "pool", 1, layout="flat")
    folder = tmp_path / "pics"
    (folder / "targets").mkdir(parents=True)
    (folder / "controls").mkdir()
    (folder / "targets" / "0001.png").symlink_to(pool / "0001.png")
    (folder / "targets" / "0001.txt").write_text("a character\n", encoding="utf-8")
    (folder / "controls" / "0001_0.png").symlink_to(pool / "0001_0.png")
    (folder / "controls" / "0001_1.png").symlink_to(tmp_path / "gone.png")
    result = cli("dataset", "init", folder)
    assert result.exit_code == 1
    assert (
        f"error: pics/controls/0001_1.png: a link to {tmp_path / 'gone.png'}, which is not there"
        in result.stderr
    )
    assert "error: pics/targets/0001.png: no control 1 image" in result.stderr
    assert "pool/" not in result.stderr


def test_a_caption_file_written_txt_in_capitals_is_read(tmp_path: Path) -> None:
    """0001.TXT from a Windows folder was "no caption: pics/targets/0001.txt not found" on Linux."""
    folder = pictures(tmp_path / "pics", 1)
    (folder / "targets" / "0001.txt").rename(folder / "targets" / "0001.TXT")
    result = cli("dataset", "init", folder)
    assert result.exit_code == 0, result.output
    assert json.loads((folder / "metadata.jsonl").read_text(encoding="utf-8"))["caption"] == (
        "character 1 turns to face the camera"
    )


def test_a_folder_of_pictures_of_another_type_says_which_types_are_read(tmp_path: Path) -> None:
    folder = tmp_path / "pics"
    folder.mkdir()
    (folder / "IMG_0001.HEIC").write_bytes(b"\0" * 16)
    result = cli("dataset", "init", folder)
    assert result.exit_code == 1
    assert (
        "error: pics: no target images found: it holds .heic pictures, which dataset init does not read"
        " (it reads .bmp, .jpeg, .jpg, .png, .webp) — convert them, e.g. to PNG" in result.stderr
    )


def test_a_caption_of_several_lines_is_refused_at_its_file(tmp_path: Path) -> None:
    """Written into the record with its line break, it surfaced later as a check error about a
    sample prompt."""
    folder = pictures(tmp_path / "pics", 1)
    (folder / "targets" / "0001.txt").write_text("a character\nturns around\n", encoding="utf-8")
    result = cli("dataset", "init", folder)
    assert result.exit_code == 1
    assert (
        "error: pics/targets/0001.png: the caption in pics/targets/0001.txt has 2 lines; a caption is one"
        " line (prompt files hold one prompt per line) — join them into one line" in result.stderr
    )
    assert not (folder / "metadata.jsonl").exists()


def test_captions_from_a_csv(tmp_path: Path) -> None:
    folder = pictures(tmp_path / "pics", 2, captions=False)
    table = tmp_path / "captions.csv"
    table.write_text('image,caption\n0001.png,"a red one, turning"\n0002.png,a blue one\n', encoding="utf-8")
    result = cli("dataset", "init", folder, "--captions", table)
    assert result.exit_code == 0, result.output
    captions = [json.loads(x)["caption"] for x in (folder / "metadata.jsonl").read_text().splitlines()]
    assert captions == ["a red one, turning", "a blue one"]


def test_the_layout_comes_from_a_spec_when_given(tmp_path: Path) -> None:
    folder = tmp_path / "pics"
    for stem in ("a", "b"):
        png(folder / "targets" / f"{stem}.png", (9, 9, 9))
        png(folder / "control_0" / f"{stem}.png", (9, 0, 9))
        (folder / "targets" / f"{stem}.txt").write_text("x", encoding="utf-8")
    spec = tmp_path / "one.yaml"
    spec.write_text(
        "project: p\n"
        "models: {dit: d, vae: v, text_encoder1: t1, text_encoder2: t2, image_encoder: i}\n"
        "datasets: [{jsonl: pics/metadata.jsonl}]\n"
        "one_frame: {clean_indices: [0], target_index: 9}\n"
        "train: {output_dir: out, optimizer: {type: adamw8bit}}\n"
        "sample: {at_first: false, every_n_steps: null}\n",
        encoding="utf-8",
    )
    result = cli("dataset", "init", folder, "--spec", spec)
    assert result.exit_code == 0, result.output
    assert "latent index  9: the target" in result.stderr
    assert "control_path_1" not in (folder / "metadata.jsonl").read_text()


def test_an_existing_jsonl_is_not_overwritten_without_force(tmp_path: Path) -> None:
    folder = pictures(tmp_path / "pics", 1)
    (folder / "metadata.jsonl").write_text("mine\n", encoding="utf-8")
    refused = cli("dataset", "init", folder)
    assert refused.exit_code == 1 and "exists; not overwriting it — pass --force" in refused.stderr
    assert (folder / "metadata.jsonl").read_text() == "mine\n"
    assert cli("dataset", "init", folder, "--force").exit_code == 0


def test_a_byte_order_mark_stays_out_of_captions_and_the_csv_header(tmp_path: Path) -> None:
    """Windows editors save "UTF-8 with BOM" and Excel's "CSV UTF-8" starts with one: read as plain
    UTF-8, the mark went into the caption (and so into the text encoder) or the CSV's first column
    name, which then read as `columns \ufeffimage, caption; need image and caption`."""
    folder = pictures(tmp_path / "pics")
    (folder / "targets" / "0001.txt").write_text("\ufeffcharacter 1 waves\r\n", encoding="utf-8")
    result = cli("dataset", "init", folder)
    assert result.exit_code == 0, result.output
    first = json.loads((folder / "metadata.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first["caption"] == "character 1 waves"
    table = tmp_path / "captions.csv"
    table.write_bytes("\ufeffimage,caption\r\n0001.png,one\r\n0002.png,two\r\n0003.png,three\r\n".encode())
    result = cli("dataset", "init", folder, "--captions", table, "--force")
    assert result.exit_code == 0, result.output
    first = json.loads((folder / "metadata.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first["caption"] == "one"


def test_a_caption_that_is_not_utf8_is_one_located_line_not_a_traceback(tmp_path: Path) -> None:
    folder = pictures(tmp_path / "pics")
    (folder / "targets" / "0002.txt").write_bytes("キャラクター\n".encode("shift_jis"))
    result = cli("dataset", "init", folder)
    assert result.exit_code == 1
    assert "error: pics/targets/0002.txt:1: not UTF-8 text (byte 0x83) — save it as UTF-8" in result.output
    assert not (folder / "metadata.jsonl").exists()
    table = tmp_path / "captions.csv"
    table.write_bytes("image,caption\n0001.png,caf\xe9\n".encode("latin-1"))
    result = cli("dataset", "init", folder, "--captions", table)
    assert result.exit_code == 1
    assert "error: captions.csv:2: not UTF-8 text (byte 0xe9)" in result.output


def test_pictures_in_the_folder_fplora_init_made_give_the_file_its_spec_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`fplora init`, pictures into datasets/dataset-v1/, `fplora dataset init datasets/dataset-v1`:
    it wrote metadata.jsonl while configs/v1.yaml names metadata-v1.jsonl, and check then said the
    file was not found and that `fplora dataset init` writes one, which had just run."""
    assert cli("init", "proj").exit_code == 0
    project = tmp_path / "proj"
    pictures(project / "datasets" / "dataset-v1")
    monkeypatch.chdir(project)
    result = cli("dataset", "init", "datasets/dataset-v1")
    assert result.exit_code == 0, result.output
    assert (project / "datasets/dataset-v1/metadata-v1.jsonl").is_file()
    assert not (project / "datasets/dataset-v1/metadata.jsonl").exists()
    assert result.output.splitlines()[-1] == (
        "next: configs/v1.yaml names this file already: fplora check configs/v1.yaml"
    )
    check = cli("check", "configs/v1.yaml", "--skip-models")
    assert check.exit_code == 0, check.output


def test_a_folder_two_versions_name_by_files_of_their_own_names_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """v1 names metadata-v1.jsonl and v2 metadata-v2.jsonl in one folder (the dataset README's
    re-caption naming): init wrote metadata.jsonl and said "set jsonl:" as if no spec named any."""
    assert cli("init", "proj").exit_code == 0
    project = tmp_path / "proj"
    pictures(project / "datasets" / "dataset-v1")
    v1 = (project / "configs" / "v1.yaml").read_text(encoding="utf-8")
    (project / "configs" / "v2.yaml").write_text(v1.replace("metadata-v1", "metadata-v2"), encoding="utf-8")
    monkeypatch.chdir(project)
    result = cli("dataset", "init", "datasets/dataset-v1")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == (
        "next: configs/v1.yaml names metadata-v1.jsonl, configs/v2.yaml names metadata-v2.jsonl in this"
        " folder: copy metadata.jsonl to each of those names, or set their jsonl: to"
        " ../datasets/dataset-v1/metadata.jsonl"
    )


def test_check_of_a_jsonl_not_there_names_the_one_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli("init", "proj").exit_code == 0
    folder = pictures(tmp_path / "proj" / "datasets" / "dataset-v1")
    (folder / "metadata.jsonl").write_text("", encoding="utf-8")
    monkeypatch.chdir(tmp_path / "proj")
    check = cli("check", "configs/v1.yaml", "--skip-models")
    assert check.exit_code == 1
    assert (
        "error: configs/v1.yaml:8: datasets[0].jsonl: dataset JSONL file not found:"
        " datasets/dataset-v1/metadata-v1.jsonl; its folder holds metadata.jsonl — name that file:"
        " jsonl: ../datasets/dataset-v1/metadata.jsonl"
    ) in check.output


def test_dataset_init_again_keeps_to_the_file_the_specs_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run twice, or again after adding pictures: it wrote metadata.jsonl beside the metadata-v1.jsonl
    the specs train on and said to point them at it, while they went on training on the old file."""
    assert cli("init", "proj").exit_code == 0
    project = tmp_path / "proj"
    folder = project / "datasets" / "dataset-v1"
    pictures(folder)
    monkeypatch.chdir(project)
    assert cli("dataset", "init", "datasets/dataset-v1").exit_code == 0
    written = (folder / "metadata-v1.jsonl").read_text(encoding="utf-8")
    again = cli("dataset", "init", "datasets/dataset-v1")
    assert again.exit_code == 0, again.output
    assert again.output.splitlines()[-1] == (
        "datasets/dataset-v1/metadata-v1.jsonl (configs/v1.yaml names it) already holds these 3 records:"
        " nothing written"
    )
    assert not (folder / "metadata.jsonl").exists()
    pictures(folder, count=4)  # a fourth record added
    refused = cli("dataset", "init", "datasets/dataset-v1")
    assert refused.exit_code == 1
    assert refused.stderr.splitlines()[-1] == (
        "error: datasets/dataset-v1/metadata-v1.jsonl: configs/v1.yaml trains on it, and it differs from"
        " the pictures (3 records there, 4 here); not overwriting it — pass --force to write it from the"
        " pictures, or write a new dataset version (datasets/dataset-v1/README.md says how)"
    )
    assert (folder / "metadata-v1.jsonl").read_text(encoding="utf-8") == written
    assert not (folder / "metadata.jsonl").exists()
    forced = cli("dataset", "init", "datasets/dataset-v1", "--force")
    assert forced.exit_code == 0, forced.output
    assert len((folder / "metadata-v1.jsonl").read_text(encoding="utf-8").splitlines()) == 4
    assert not (folder / "metadata.jsonl").exists()
    assert cli("check", "configs/v1.yaml", "--skip-models").exit_code == 0
