"""Contact sheets: the layout's geometry, each cell's image in its place, the index, `fplora sheet`."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from fplora.cli import app
from fplora.runs.checkpoints import Checkpoint
from fplora.runs.infer_folders import parse_save_dir_name, save_dir_name
from fplora.sheet import draw
from fplora.sheet.collect import collect
from fplora.sheet.layout import GAP, LABEL, Box, layout, thumb_size

ROWS = ["step1000", "step2000", "step3000"]
COLUMNS = [1.0, 1.2, 1.4]


@pytest.mark.parametrize(
    ("checkpoint", "which"),
    [
        (Checkpoint(Path("v8-step00005000.safetensors"), "lora", 5000, 0, False), "step00005000"),
        (Checkpoint(Path("v8.safetensors"), "lora", None, 0, True), "final"),
        (Checkpoint(Path("/elsewhere/style.safetensors"), "lora", None, -1, False), "style"),
    ],
)
def test_an_infer_folder_name_reads_back_as_written(checkpoint: Checkpoint, which: str) -> None:
    name = save_dir_name("v8", checkpoint, 1.2)
    assert parse_save_dir_name(name) == ("v8", which, 1.2)


def test_thumb_size_keeps_the_aspect() -> None:
    assert thumb_size(512, 768) == (171, 256)
    assert thumb_size(768, 512) == (256, 171)
    assert thumb_size(0, 5) == (256, 256)


def test_layout_of_a_synthetic_grid() -> None:
    place = layout(3, 4, 2, (171, 256))
    first = place.cells[0][0].image
    for r, c in itertools.product(range(3), range(4)):
        slot = place.cells[r][c]
        assert slot.image == Box(first.x + c * (171 + GAP), first.y + r * (256 + LABEL + GAP), 171, 256)
        assert slot.label == Box(slot.image.x, slot.image.bottom, 171, LABEL)  # the label under its image
        assert place.columns[c].x == slot.image.x and place.columns[c].bottom <= first.y
        assert place.rows[r].right <= slot.image.x and place.rows[r].y == slot.image.y
    for ref in place.refs:
        assert ref.image.right < place.rows[0].x  # start and control images at the left
    assert place.refs[0].image.y == first.y and place.refs[1].image.y == place.cells[1][0].image.y
    boxes = [place.title, *place.columns, *place.rows]
    boxes += [b for slot in [*place.refs, *itertools.chain(*place.cells)] for b in (slot.image, slot.label)]
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b), (a, b)
    assert all(b.x >= 0 and b.y >= 0 and b.right <= place.width and b.bottom <= place.height for b in boxes)


def test_more_references_than_rows_make_the_sheet_tall_enough() -> None:
    place = layout(1, 1, 3, (100, 100))
    assert place.height >= place.refs[-1].label.bottom


COLOURS = {
    (r, c): (40 + 70 * i, 200 - 60 * j, 90 + 40 * ((i + j) % 3))
    for i, r in enumerate(ROWS)
    for j, c in enumerate(COLUMNS)
}


def _png(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (64, 96)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def _lines(root: Path) -> list[str]:
    start, control = root / "refs" / "start.png", root / "refs" / "pose.png"
    _png(start, (255, 0, 0))
    _png(control, (0, 0, 255))
    return [
        f"a character turns --i {start} --ci {start} --ci {control} --of target_index=5 --w 64 --h 96 --d 42",
        f"a character waves --i {start} --ci {start} --ci {control} --of target_index=5 --w 64 --h 96 --d 43",
    ]


def _grid_folders(
    root: Path, *, skip: tuple[str, float] | None = None, fail: tuple[str, float] | None = None
) -> Path:
    """The memo's folders with fplora's records and one solid-colour image per prompt."""
    sample = root / "sample"
    lines = _lines(root)
    for row, column in itertools.product(ROWS, COLUMNS):
        if (row, column) == skip:
            continue
        folder = sample / f"v8-step{int(row[4:]):08d}-lm{column}"
        files = []
        if (row, column) != fail:
            for seed in (42, 43):
                name = f"20260101-000000-00{seed % 10}_{seed}__000.png"
                _png(folder / name, COLOURS[row, column])
                files.append(name)
        folder.mkdir(parents=True, exist_ok=True)
        run = {"settings": {"options": {}, "prompts": lines}, "files": files}
        if (row, column) == fail:
            run["error"] = "prompt 1: RuntimeError: self and mat2 must have the same dtype"
        record = {"lora": {"label": row}, "multiplier": column, "runs": [run]}
        (folder / "fplora-infer.json").write_text(json.dumps(record))
    (sample / "v8-sweeps").mkdir()  # not an infer folder
    return sample


def test_every_cell_shows_its_image_in_its_place(tmp_path: Path) -> None:
    sample = _grid_folders(tmp_path, skip=("step2000", 1.2), fail=("step3000", 1.4))
    (grid,) = collect(sample)
    assert (grid.version, grid.rows, grid.columns) == ("v8", ROWS, COLUMNS)
    (index,) = draw.build(sample)
    assert index == sample / "v8-sheet" / "index.html"
    for number, prompt in enumerate(grid.prompts, start=1):
        place = draw.sheet_layout(grid, prompt)
        with Image.open(sample / "v8-sheet" / f"prompt{number:02d}.png") as sheet:
            assert sheet.size == (place.width, place.height)
            pixels = sheet.convert("RGB")
            for (r, row), (c, column) in itertools.product(enumerate(ROWS), enumerate(COLUMNS)):
                seen = pixels.getpixel(place.cells[r][c].image.centre)
                if (row, column) == ("step2000", 1.2):
                    assert seen != COLOURS[row, column]  # never made: an empty box with a word
                    assert (
                        pixels.getpixel((place.cells[r][c].image.x + 2, place.cells[r][c].image.y + 2))
                        == draw.EMPTY
                    )
                elif (row, column) == ("step3000", 1.4):
                    assert (
                        pixels.getpixel((place.cells[r][c].image.x + 2, place.cells[r][c].image.y + 2))
                        == draw.FAILED
                    )
                else:
                    assert seen == COLOURS[row, column], (row, column)
            # start (= control 0, the record's control_path_0) and control 1 at the left, each once
            assert [label for label, _ in draw.references(prompt)] == ["start = control 0", "control 1"]
            assert pixels.getpixel(place.refs[0].image.centre) == (255, 0, 0)
            assert pixels.getpixel(place.refs[1].image.centre) == (0, 0, 255)


def test_the_index_links_every_image(tmp_path: Path) -> None:
    sample = _grid_folders(tmp_path)
    (index,) = draw.build(sample)
    page = index.read_text()
    for folder in sample.glob("v8-step*"):
        for image in folder.glob("*.png"):
            assert f"../{folder.name}/{image.name}" in page
    assert "prompt01.png" in page and "prompt02.png" in page
    assert "../refs/pose.png" in page and "a character waves" in page


def test_the_newest_run_decides_the_prompts(tmp_path: Path) -> None:
    """A folder run again with other prompts shows the new ones; an older run's image still counts
    for a prompt line the newest run also rendered (a sweep skipped it)."""
    sample = _grid_folders(tmp_path)
    folder = sample / "v8-step00001000-lm1.0"
    record = json.loads((folder / "fplora-infer.json").read_text())
    lines = record["runs"][0]["settings"]["prompts"]
    record["runs"].append({"settings": {"options": {}, "prompts": lines[:1]}, "files": []})
    (folder / "fplora-infer.json").write_text(json.dumps(record))
    (grid,) = collect(sample)
    cell = grid.cells["step1000", 1.0]
    assert list(cell.images) == lines[:1]
    assert cell.images[lines[0]].name == "20260101-000000-002_42__000.png"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_sheet_command_rebuilds_and_refuses_an_empty_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runner: CliRunner
) -> None:
    monkeypatch.chdir(tmp_path)
    sample = _grid_folders(tmp_path)
    result = runner.invoke(app, ["sheet", str(sample)])
    assert result.exit_code == 0, result.output
    assert result.output == "sample/v8-sheet/index.html\n"
    other = runner.invoke(app, ["sheet", str(sample), "--version", "v9"])
    assert other.exit_code == 1
    assert other.output.strip().endswith("— it holds those of v8: --version v8")  # what is there
    empty = runner.invoke(app, ["sheet", str(tmp_path / "refs")])
    assert empty.exit_code == 1
    assert "refs holds no infer folder (<version>-stepNNNNNNNN-lm<m> with fplora-infer.json)" in empty.output
    output_dir = runner.invoke(app, ["sheet", str(tmp_path)])  # the run's folder, not its sample/
    assert output_dir.exit_code == 1
    assert output_dir.output.strip().endswith("— its sample/ holds them: fplora sheet sample")
    help_text = runner.invoke(app, ["sheet", "--help"]).output
    assert "Example: fplora sheet" in help_text


CJK_CAPTION = "振り向く, 手を振る, 뒤돌아보다"


def test_a_cjk_caption_is_drawn_without_missing_glyph_boxes() -> None:
    """Pillow's own font draws every character of `振り向く` as its .notdef box; each character of a
    caption must come out as a glyph of the font chosen for it."""
    from PIL import ImageFont

    from fplora.sheet.text import Face, has_glyph

    plain = ImageFont.load_default(size=15)
    assert not any(has_glyph(plain, char) for char in "振り向く")  # what the sheets drew before
    face = Face(15)
    for char in CJK_CAPTION:
        if not char.isspace():
            assert has_glyph(face.font_for(char), char), char
    assert [run for run, _ in face.runs("v8 · 振り向く x")] == ["v8 · ", "振り向く ", "x"]


def test_the_sheet_draws_a_japanese_caption_as_glyphs(tmp_path: Path) -> None:
    """The caption line of a sheet differs from the same number of missing-glyph boxes."""
    sample = _grid_folders(tmp_path)
    (grid,) = collect(sample)
    prompt = grid.prompts[0]

    def caption_strip(text: str) -> bytes:
        sheet = draw.draw_sheet(grid, type(prompt)(**{**vars(prompt), "text": text}), 1)
        title = draw.sheet_layout(grid, prompt).title
        return sheet.crop((title.x, title.y + 30, title.right, title.y + 52)).tobytes()

    assert caption_strip("振り向く") != caption_strip("\U0010ffff" * 4)


def test_sheet_without_a_folder_uses_the_spec_s_sample_folder(
    project, tmp_path: Path, runner: CliRunner
) -> None:
    """Its help gives a default, so leaving DIRECTORY out must not be "Missing argument"."""
    project()
    _grid_folders(tmp_path / "out")  # the project's output_dir: ../out
    result = runner.invoke(app, ["sheet"])
    assert result.exit_code == 0, result.output
    assert "using out/sample (where configs/v1.yaml infers into)" in result.output
    assert result.output.splitlines()[-1] == "out/sample/v8-sheet/index.html"


def test_sheet_given_a_spec_makes_that_version_s_sheets(project, tmp_path: Path, runner: CliRunner) -> None:
    """Every other verb takes the spec first: `fplora sheet configs/v8.yaml` means v8's infer folders,
    where v8 infers into, not "configs/v8.yaml is not a folder"."""
    spec = project(name="v8.yaml")
    sample = _grid_folders(tmp_path / "out")  # the project's output_dir: ../out
    shutil.copytree(sample / "v8-step00001000-lm1.0", sample / "v9-step00001000-lm1.0")
    result = runner.invoke(app, ["sheet", "configs/v8.yaml"])
    assert result.exit_code == 0, result.output
    assert "using out/sample, version v8 (where configs/v8.yaml infers into)" in result.output
    assert result.output.splitlines()[-1] == "out/sample/v8-sheet/index.html"
    assert not (sample / "v9-sheet").exists()
    assert spec.is_file()
