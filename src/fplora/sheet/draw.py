"""Drawing contact sheets with Pillow, and the `index.html` that links every image.

Sheets go to `<save root>/<version>-sheet/`: `prompt01.png`, `prompt02.png`, … and `index.html`
(relative links, so the folder can be copied off the pod with the images beside it).
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

from fplora.atomic import write_atomic
from fplora.sheet import sheet_dir
from fplora.sheet.collect import Grid, Prompt, collect
from fplora.sheet.layout import Box, Layout, layout, thumb_size
from fplora.sheet.text import Face

INDEX = "index.html"

BACKGROUND = (255, 255, 255)
INK = (33, 33, 33)
MUTED = (110, 110, 110)
STRIP = (236, 236, 236)
EMPTY = (245, 245, 245)
FAILED = (253, 226, 226)
FAILED_INK = (170, 30, 30)


def _centred(draw: ImageDraw.ImageDraw, box: Box, text: str, face: Face, fill: tuple[int, int, int]) -> None:
    face.draw_centred(draw, box.centre, face.fit(text, box.width - 4), fill)


def _paste(sheet: Image.Image, path: Path, box: Box) -> bool:
    """The image at `path` fitted into `box` (aspect kept, centred); False when it cannot be read."""
    try:
        with Image.open(path) as source:
            thumb = ImageOps.contain(source.convert("RGB"), (box.width, box.height))
    except (OSError, ValueError):
        return False
    sheet.paste(thumb, (box.x + (box.width - thumb.width) // 2, box.y + (box.height - thumb.height) // 2))
    return True


def references(prompt: Prompt) -> list[tuple[str, Path]]:
    """(label, path) of the prompt's start and control images, each file once. Controls count from
    0, as a record's `control_path_0` and `dataset init`'s `control_0/` do: "control 1" named the
    picture of control_0/."""
    refs: list[tuple[str, Path]] = []
    if prompt.image is not None:
        refs.append(("start", prompt.image))
    for number, control in enumerate(prompt.controls):
        same = next((i for i, (_, path) in enumerate(refs) if path == control), None)
        if same is None:
            refs.append((f"control {number}", control))
        else:
            refs[same] = (f"{refs[same][0]} = control {number}", control)
    return refs


def sheet_layout(grid: Grid, prompt: Prompt) -> Layout:
    width, height = prompt.size or _first_size(grid, prompt) or (512, 768)
    return layout(len(grid.rows), len(grid.columns), len(references(prompt)), thumb_size(width, height))


def _first_size(grid: Grid, prompt: Prompt) -> tuple[int, int] | None:
    for cell in grid.cells.values():
        image = cell.images.get(prompt.line)
        if image is not None:
            try:
                with Image.open(image) as opened:
                    return opened.size
            except OSError:
                continue
    return None


def draw_sheet(grid: Grid, prompt: Prompt, number: int) -> Image.Image:
    """The sheet of prompt `number` (1-based) of `grid`."""
    place = sheet_layout(grid, prompt)
    sheet = Image.new("RGB", (place.width, place.height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    big, small = Face(20), Face(15)
    seed = f" · seed {prompt.seed}" if prompt.seed is not None else ""
    title = place.title
    big.draw(draw, (title.x, title.y), f"{grid.version} · prompt {number} of {len(grid.prompts)}{seed}", INK)
    small.draw(draw, (title.x, title.y + 30), small.fit(prompt.text, title.width), MUTED)
    for (label, path), slot in zip(references(prompt), place.refs, strict=True):
        if not _paste(sheet, path, slot.image):
            draw.rectangle(_xy(slot.image), fill=EMPTY)
            _centred(draw, slot.image, "missing", small, MUTED)
        draw.rectangle(_xy(slot.label), fill=STRIP)
        _centred(draw, slot.label, label, small, INK)
    for column, box in zip(grid.columns, place.columns, strict=True):
        _centred(draw, box, f"lm{column}", big, INK)
    for r, row in enumerate(grid.rows):
        _centred(draw, place.rows[r], row, big, INK)
        for c, column in enumerate(grid.columns):
            slot = place.cells[r][c]
            cell = grid.cells.get((row, column))
            image = cell.images.get(prompt.line) if cell else None
            if image is None or not _paste(sheet, image, slot.image):
                failed = bool(cell and cell.error)
                draw.rectangle(_xy(slot.image), fill=FAILED if failed else EMPTY)
                _centred(
                    draw, slot.image, "failed" if failed else "not made", big, FAILED_INK if failed else MUTED
                )
            draw.rectangle(_xy(slot.label), fill=STRIP)
            _centred(draw, slot.label, f"{row} · lm{column}", small, INK)
    return sheet


def _xy(box: Box) -> tuple[int, int, int, int]:
    return box.x, box.y, box.right - 1, box.bottom - 1


def _link(path: Path, start: Path) -> str:
    return html.escape(Path(os.path.relpath(path.resolve(), start.resolve())).as_posix(), quote=True)


def index_html(grid: Grid, sheets: list[Path], folder: Path) -> str:
    """A page per version: each prompt's sheet, then a table linking every cell's image."""
    out = [
        "<!doctype html><meta charset='utf-8'>",
        f"<title>{html.escape(grid.version)}: contact sheets</title>",
        "<style>body{font-family:sans-serif;margin:2em}img.sheet{max-width:100%}"
        "td,th{padding:4px 8px;text-align:center;border:1px solid #ddd}table{border-collapse:collapse}"
        "td img{height:128px}.failed{color:#a01e1e}</style>",
        f"<h1>{html.escape(grid.version)}</h1>",
    ]
    for number, (prompt, sheet) in enumerate(zip(grid.prompts, sheets, strict=True), start=1):
        seed = f", seed {prompt.seed}" if prompt.seed is not None else ""
        out.append(f"<h2>Prompt {number}{seed}</h2><p>{html.escape(prompt.text)}</p>")
        refs = " · ".join(
            f"<a href='{_link(p, folder)}'>{html.escape(label)}</a>" for label, p in references(prompt)
        )
        out.append(f"<p>{refs}</p>" if refs else "")
        out.append(f"<a href='{_link(sheet, folder)}'><img class='sheet' src='{_link(sheet, folder)}'></a>")
        out.append("<table><tr><th></th>" + "".join(f"<th>lm{c}</th>" for c in grid.columns) + "</tr>")
        for row in grid.rows:
            out.append(f"<tr><th>{html.escape(row)}</th>")
            for column in grid.columns:
                cell = grid.cells.get((row, column))
                image = cell.images.get(prompt.line) if cell else None
                if cell is not None and image is not None:
                    link, label = _link(image, folder), html.escape(cell.label)
                    out.append(f"<td><a href='{link}'><img src='{link}' loading='lazy'><br>{label}</a></td>")
                elif cell and cell.error:
                    out.append(
                        f"<td class='failed' title='{html.escape(cell.error, quote=True)}'>failed</td>"
                    )
                else:
                    out.append("<td>not made</td>")
            out.append("</tr>")
        out.append("</table>")
    return "\n".join(out) + "\n"


def write_sheets(grid: Grid) -> Path:
    """Draw every prompt's sheet of `grid` and its index; the index's path."""
    folder = sheet_dir(grid.root, grid.version)
    folder.mkdir(parents=True, exist_ok=True)
    sheets = []
    for number, prompt in enumerate(grid.prompts, start=1):
        path = folder / f"prompt{number:02d}.png"
        partial = path.with_name(f".{path.name}.partial")
        draw_sheet(grid, prompt, number).save(partial, format="PNG")
        partial.replace(path)
        sheets.append(path)
    write_atomic(folder / INDEX, index_html(grid, sheets, folder))
    return folder / INDEX


def build(root: Path, version: str | None = None) -> list[Path]:
    """Sheets and an index for every version under `root` (only `version`'s when given)."""
    return [write_sheets(grid) for grid in collect(root, version) if grid.cells and grid.prompts]
