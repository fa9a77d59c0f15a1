"""`fplora plot`: the curves' data (TensorBoard first, else the console log; global steps across a
resume; evaluation from eval.json) and the PNG, with two versions in one picture."""

from __future__ import annotations

import math
import shutil
import sys
from datetime import datetime
from pathlib import Path

import pytest
from fakes.fixtures import Workspace
from fakes.tfevents_writer import encode_scalar
from PIL import Image

from fplora.curves import tfevents
from fplora.curves.loss import AVERAGE, RAW, curves_of, ema
from fplora.runs.manifest import Manifest
from fplora.spec import load_spec

pytest_plugins = ["fakes.fixtures"]


@pytest.fixture
def evaluated(workspace: Workspace) -> Workspace:
    """Steps 1–4, then a resume to step 6, every LoRA scored on records 2 and 4."""
    workspace.write_spec(eval={"records": [2, 4], "timesteps": [0.5]})
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    assert workspace.cli("train", str(workspace.spec_path)).exit_code == 0
    workspace.write_spec(train={"max_train_steps": 6})
    assert workspace.cli("train", str(workspace.spec_path), "--resume", "latest").exit_code == 0
    result = workspace.cli("eval", str(workspace.spec_path))
    assert result.exit_code == 0, result.output
    return workspace


def _spread(workspace: Workspace) -> list[float]:
    """Set the segments an hour apart, as on a GPU box (the fake trains within a second); a time
    inside each segment."""
    manifest = Manifest.load(workspace.output_dir, workspace.output_name)
    assert manifest is not None
    base = datetime.fromisoformat(manifest.segments[0].started).timestamp() - 7200
    for number, segment in enumerate(manifest.segments):
        segment.started = datetime.fromtimestamp(base + 3600 * number).astimezone().isoformat()
        segment.ended = datetime.fromtimestamp(base + 3600 * number + 1800).astimezone().isoformat()
    manifest.save(workspace.output_dir)
    return [base + 3600 * number + 60 for number in range(len(manifest.segments))]


def write_events(
    path: Path, start: float, values: list[tuple[int, float]], tag: str = "loss/current"
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = b"".join(encode_scalar(tag, step, value, start + i) for i, (step, value) in enumerate(values))
    path.write_bytes(blob)


def test_without_tensorboard_the_console_average_is_drawn_at_global_steps(evaluated: Workspace) -> None:
    curves = curves_of(load_spec(evaluated.spec_path))
    assert curves.train_source == AVERAGE
    assert curves.train.steps == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(v) for v in curves.train.values)
    assert curves.eval.steps == [1, 2, 3, 4, 5, 6]
    assert curves.untrained is not None and curves.untrained > max(curves.eval.values)
    assert curves.best is not None and curves.best[0] == 3


def test_tensorboard_events_are_read_and_placed_in_their_segment(evaluated: Workspace) -> None:
    logs = evaluated.output_dir / "logs" / "fake"
    inside = _spread(evaluated)
    write_events(logs / "events.out.tfevents.1.host", inside[0], [(1, 0.5), (2, 0.4), (3, 0.3), (4, 0.2)])
    write_events(logs / "events.out.tfevents.2.host", inside[1], [(1, 0.15), (2, 0.1)])
    # another version's run in the same folder, long before: not this run's
    write_events(logs / "events.out.tfevents.0.host", inside[0] - 86400, [(1, 9.0), (7, 9.0)])
    curves = curves_of(load_spec(evaluated.spec_path))
    assert curves.train_source == RAW
    assert curves.train.steps == [1, 2, 3, 4, 5, 6]
    assert curves.train.values == pytest.approx([0.5, 0.4, 0.3, 0.2, 0.15, 0.1])


def test_plot_draws_two_versions_into_one_png(evaluated: Workspace) -> None:
    second = evaluated.spec_path.with_name("v2.yaml")
    shutil.copy(evaluated.spec_path, second)  # a run of its own: none yet, drawn as such
    result = evaluated.cli("plot", str(evaluated.spec_path), str(second))
    assert result.exit_code == 0, result.output
    path = evaluated.spec_path.parent / "loss-v1-v2.png"
    assert result.stdout.strip().endswith("loss-v1-v2.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (1200, 960)
    assert "v2: no training loss found" in result.output


def test_plot_without_matplotlib_says_how_to_install_it(
    evaluated: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = evaluated.cli("plot", str(evaluated.spec_path))
    assert result.exit_code == 1
    assert "needs matplotlib" in result.output and "fplora[plot]" in result.output


def test_ema_is_debiased_and_skips_non_finite_values() -> None:
    assert ema([1.0, 1.0, 1.0], 0.9) == pytest.approx([1.0, 1.0, 1.0])
    smoothed = ema([1.0, math.nan, 0.0], 0.5)
    assert smoothed[0] == pytest.approx(1.0) and smoothed[1] == pytest.approx(1.0)
    assert smoothed[2] == pytest.approx((0.25 * 1 + 0.5 * 0) / 0.75)


def test_event_reader_reads_written_scalars_and_stops_at_a_partial_record(tmp_path: Path) -> None:
    path = tmp_path / "events.out.tfevents.x"
    blob = encode_scalar("loss/current", 3, 0.25, 10.0) + encode_scalar("lr", 3, 1e-3, 10.0)
    path.write_bytes(blob + encode_scalar("loss/current", 4, 0.5, 11.0)[:-7])
    found = tfevents.read_scalars(path)
    assert [(s.tag, s.step) for s in found] == [("loss/current", 3), ("lr", 3)]
    assert found[0].value == pytest.approx(0.25) and found[0].wall_time == 10.0
    assert tfevents.read_scalars(path, {"lr"})[0].value == pytest.approx(1e-3)


def test_plot_out_without_a_suffix_prints_the_png_it_wrote(workspace: Workspace) -> None:
    result = workspace.cli("plot", str(workspace.spec_path), "--out", "curves")
    assert result.exit_code == 0, result.output
    assert result.stdout == "curves.png\n"
    assert (workspace.root / "curves.png").is_file() and not (workspace.root / "curves").exists()


def test_plot_out_naming_a_folder_writes_into_it(workspace: Workspace) -> None:
    (workspace.root / "plots").mkdir()
    result = workspace.cli("plot", str(workspace.spec_path), "--out", "plots")
    assert result.exit_code == 0, result.output
    assert result.stdout == "plots/loss-v1.png\n"
    assert (workspace.root / "plots" / "loss-v1.png").is_file()


def test_plot_out_where_it_cannot_be_written_is_one_line(workspace: Workspace) -> None:
    (workspace.root / "taken").write_text("a file\n")
    result = workspace.cli("plot", str(workspace.spec_path), "--out", "taken/loss.png")
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        "error: taken/loss.png: cannot write it: a file is where a folder should be"
        " — name a --out in a folder you can write"
    )
