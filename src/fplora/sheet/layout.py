"""Where everything goes on a contact sheet: pure geometry, no Pillow.

    ┌────────────────────────────────────────────────────────────┐
    │ title: version · prompt k of n · seed; the prompt's text   │
    │            │        │   lm1.0   │   lm1.2   │   lm1.4   │   column headers
    │ [start]    │ step1  │ [image]   │ [image]   │ [image]   │
    │  label     │        │step1·lm1.0│step1·lm1.2│step1·lm1.4│   a label under every image
    │ [control 1]│ step2  │ [image]   │ ...                    │
    └────────────────────────────────────────────────────────────┘

The reference images (start and controls) stack down the left; rows are checkpoints, columns
multipliers. Thumbnails keep the generated images' aspect, the longer side `THUMB` pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

THUMB = 256
MARGIN = 16
GAP = 8
TITLE = 60
HEADER = 30
LABEL = 24
ROW_LABEL = 96
REFS_GAP = 24


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    width: int
    height: int

    @property
    def right(self) -> int:
        return self.x + self.width

    @property
    def bottom(self) -> int:
        return self.y + self.height

    @property
    def centre(self) -> tuple[int, int]:
        return self.x + self.width // 2, self.y + self.height // 2

    def overlaps(self, other: Box) -> bool:
        return not (
            self.right <= other.x or other.right <= self.x or self.bottom <= other.y or other.bottom <= self.y
        )


@dataclass(frozen=True)
class Slot:
    """An image and the label under it."""

    image: Box
    label: Box


@dataclass(frozen=True)
class Layout:
    width: int
    height: int
    title: Box
    refs: list[Slot]
    columns: list[Box]  # column headers
    rows: list[Box]  # row labels
    cells: list[list[Slot]]  # [row][column]


def thumb_size(width: int, height: int) -> tuple[int, int]:
    """`width` × `height` scaled so the longer side is `THUMB` (at least 1 pixel each)."""
    if width <= 0 or height <= 0:
        return THUMB, THUMB
    scale = THUMB / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def layout(rows: int, columns: int, refs: int, thumb: tuple[int, int]) -> Layout:
    """Boxes for a sheet of `rows` × `columns` cells and `refs` reference images."""
    tw, th = thumb
    slot_h = th + LABEL
    top = MARGIN + TITLE + HEADER
    ref_x = MARGIN
    grid_x = ref_x + (tw + REFS_GAP if refs else 0)
    cells_x = grid_x + ROW_LABEL
    ref_slots = [
        Slot(
            Box(ref_x, top + i * (slot_h + GAP), tw, th), Box(ref_x, top + i * (slot_h + GAP) + th, tw, LABEL)
        )
        for i in range(refs)
    ]
    headers = [Box(cells_x + c * (tw + GAP), MARGIN + TITLE, tw, HEADER) for c in range(columns)]
    row_boxes = [Box(grid_x, top + r * (slot_h + GAP), ROW_LABEL, slot_h) for r in range(rows)]
    cells = [
        [
            Slot(
                Box(cells_x + c * (tw + GAP), top + r * (slot_h + GAP), tw, th),
                Box(cells_x + c * (tw + GAP), top + r * (slot_h + GAP) + th, tw, LABEL),
            )
            for c in range(columns)
        ]
        for r in range(rows)
    ]
    width = max(cells_x + columns * (tw + GAP) - GAP, grid_x + ROW_LABEL) + MARGIN
    stacked = max(rows, refs)
    height = top + stacked * (slot_h + GAP) - (GAP if stacked else 0) + MARGIN
    title = Box(MARGIN, MARGIN, width - 2 * MARGIN, TITLE)
    return Layout(width, height, title, ref_slots, headers, row_boxes, cells)
