"""Contact sheets: every checkpoint × multiplier of a version, one PNG per prompt, and an index.

After a sweep the question is "which checkpoint, at which multiplier": a sheet puts the answers side
by side, rows = checkpoints, columns = multipliers, the prompt's start and control images at the
left, and a label on every cell. Sheets are made from the folders alone (the memo's folder names and
each folder's `fplora-infer.json`), so `fplora sheet DIR` rebuilds them at any time, and a sweep
rebuilds them when it ends.

- `collect.py`: folders → one `Grid` per version (which image is each prompt's in each cell);
- `layout.py`: where everything goes on a sheet, pure geometry (tested on synthetic grids);
- `draw.py`: Pillow drawing and the `index.html` that links every image.
"""

from __future__ import annotations

from pathlib import Path


def sheet_dir(root: Path, version: str) -> Path:
    """Where a version's contact sheets go: `<save root>/<version>-sheet/` (`draw.py` writes them,
    wandb logging reads them)."""
    return root / f"{version}-sheet"
