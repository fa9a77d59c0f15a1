"""`fplora dataset stats`: records, sizes against the buckets, captions, near duplicates, steps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from fakes.fixtures import Workspace
from PIL import Image, ImageDraw

from fplora.jobs.dataset_stats import fingerprint, near_duplicates

pytest_plugins = ["fakes.fixtures"]


def test_stats_describe_the_example_dataset(workspace: Workspace) -> None:
    result = workspace.cli("dataset", "stats", str(workspace.spec_path))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "dataset 0: data/dataset-v1/metadata-v1.jsonl: 4 records × 1 repeat = 4 samples per epoch"
    )
    assert "  target sizes: 64x96 ×4" in lines
    assert "  aspect ratios (w/h): 0.67 ×4; bucket 64x96 is 0.67" in lines
    assert any(line.startswith("  captions: ") and "words" in line for line in lines)
    assert "  no near-duplicate targets" in lines
    assert lines[-1] == "one epoch: 2 optimizer steps (effective batch 2)"


def test_near_duplicates_duplicate_captions_and_orientation_are_reported(workspace: Workspace) -> None:
    data = workspace.root / "data" / "dataset-v1"
    jsonl = data / "metadata-v1.jsonl"
    records = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    with Image.open(data / "targets" / "0001.png") as image:
        copy = image.convert("RGB")
    copy.putpixel((0, 0), (0, 0, 0))  # a re-export: one pixel differs
    copy.save(data / "targets" / "0005.png")
    with Image.open(data / "targets" / "0002.png") as image:
        image.transpose(Image.Transpose.ROTATE_90).save(data / "targets" / "0006.png")
    for name in ("0005", "0006"):
        shutil.copy(data / "controls" / "0001_0.png", data / "controls" / f"{name}_0.png")
        shutil.copy(data / "controls" / "0001_1.png", data / "controls" / f"{name}_1.png")
        records.append({**records[0], "image_path": f"targets/{name}.png"})
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    result = workspace.cli("dataset", "stats", str(workspace.spec_path))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "1 pair of near-duplicate targets (dHash within 4 of 64 bits):" in out
    assert "data/dataset-v1/targets/0001.png ~ data/dataset-v1/targets/0005.png" in out
    assert "3 records share 1 caption" in out
    assert "1 target is landscape while the bucket is not" in out


def test_plot_writes_a_png_of_the_sizes(workspace: Workspace) -> None:
    out = workspace.root / "sizes.png"
    result = workspace.cli("dataset", "stats", str(workspace.spec_path), "--plot", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as image:
        assert image.size == (1100, 400)


def test_plot_into_a_folder_or_without_a_suffix_says_the_file_it_wrote(workspace: Workspace) -> None:
    """`--plot configs` wrote configs.png (matplotlib's suffix) and said "wrote configs"; a path it
    cannot write was a traceback."""
    folder = workspace.root / "plots"
    folder.mkdir()
    result = workspace.cli("dataset", "stats", str(workspace.spec_path), "--plot", "plots")
    assert result.exit_code == 0, result.output
    assert "wrote plots/sizes-v1.png" in result.output
    assert (folder / "sizes-v1.png").is_file()
    bare = workspace.cli("dataset", "stats", str(workspace.spec_path), "--plot", "sizes")
    assert bare.exit_code == 0, bare.output
    assert "wrote sizes.png" in bare.output and (workspace.root / "sizes.png").is_file()
    (workspace.root / "afile").write_text("", encoding="utf-8")
    blocked = workspace.cli("dataset", "stats", str(workspace.spec_path), "--plot", "afile/sizes.png")
    assert blocked.exit_code == 1
    assert "afile/sizes.png: cannot write it: a file is where a folder should be" in blocked.stderr
    assert "Traceback" not in blocked.output


def _character(path: Path, colour: str) -> Path:
    """A character filling 15 % of a white frame: a 200x300 box at the middle of 512x768."""
    image = Image.new("RGB", (512, 768), "white")
    ImageDraw.Draw(image).rectangle((156, 234, 356, 534), fill=colour)
    image.save(path)
    return path


def _photo(path: Path) -> Path:
    """Something photo-like: smooth gradients in every channel with noise on top."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:768, 0:512]
    pixels = np.stack([x / 2, y / 3, (x + y) / 5], axis=-1) + rng.normal(0, 6, (768, 512, 3))
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
    return path


def test_a_recoloured_character_is_no_duplicate_and_a_re_export_still_is(tmp_path: Path) -> None:
    """A red and an orange character on white: the same shape (0 bits of dHash) and thumbnails 8 of
    255 apart on average, because the white around them is unchanged; they were said to be near
    duplicates, though every pixel of the character has another colour."""
    red, orange = _character(tmp_path / "red.png", "red"), _character(tmp_path / "orange.png", "orange")
    blue, purple = _character(tmp_path / "blue.png", "blue"), _character(tmp_path / "purple.png", "purple")
    photo = _photo(tmp_path / "photo.png")
    with Image.open(photo) as image:  # a re-export: 90 % size, JPEG at quality 85
        image.resize((461, 691), Image.Resampling.LANCZOS).save(tmp_path / "photo.jpg", quality=85)
    twin = tmp_path / "red-again.png"
    with Image.open(red) as image:
        image.save(twin.with_suffix(".jpg"), quality=90)
    paths = [red, orange, blue, purple, photo, tmp_path / "photo.jpg", twin.with_suffix(".jpg")]
    prints = {path: found for path in paths if (found := fingerprint(path)) is not None}
    pairs = {frozenset((a.name, b.name)) for a, b, _ in near_duplicates(prints)}
    assert pairs == {frozenset({"photo.png", "photo.jpg"}), frozenset({"red.png", "red-again.jpg"})}
