"""`fplora infer` over a grid of cells in the sweep worker, against the fake musubi Python.

The fake runs fplora's real worker file (`src/fplora/worker/sweep.py`) with a stand-in backend that
writes what each cell's separate generate run would write, so the protocol tested here (plan in,
JSON-lines events out, exit codes) is the real one on both sides; only torch is missing.
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
import sys
from contextlib import redirect_stdout
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fakes import fake
from fakes.fixtures import Workspace

from fplora.protocol import sweep as protocol

pytest_plugins = ["fakes.fixtures"]

WORKER = Path(__file__).resolve().parents[1] / "src" / "fplora" / "worker" / "sweep.py"
TIME_FLAG = re.compile(r"^\d{8}-\d{6}-\d{3}_")


@pytest.fixture
def trained(cached: Workspace) -> Workspace:
    result = cached.cli("train", str(cached.spec_path))
    assert result.exit_code == 0, result.output
    cached.forget_calls()
    return cached


def worker_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sweep_worker_under_test", WORKER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def sweeps(workspace: Workspace) -> list[dict[str, Any]]:
    return [c for c in workspace.calls() if str(WORKER) in c["args"]]


def folder_files(workspace: Workspace, folder: str, root: str = "sample") -> list[str]:
    """A folder's generate outputs with the time flag cut off: `42__000.png`, `42_latent.safetensors`."""
    path = workspace.output_dir / root / folder
    return sorted(TIME_FLAG.sub("", p.name) for p in path.iterdir() if TIME_FLAG.match(p.name))


def record(workspace: Workspace, folder: str, root: str = "sample") -> dict[str, Any]:
    return json.loads((workspace.output_dir / root / folder / "fplora-infer.json").read_text())


GRID = ("--lora", "step1", "--lora", "step3", "--multiplier", "1.0", "--multiplier", "1.2")
FOLDERS = ["v1-step00000001-lm1.0", "v1-step00000001-lm1.2", "v1-step00000003-lm1.0", "v1-step00000003-lm1.2"]


def test_a_grid_runs_in_one_worker_and_writes_what_separate_runs_write(trained: Workspace) -> None:
    result = trained.cli("infer", str(trained.spec_path), *GRID)
    assert result.exit_code == 0, result.output
    assert len(sweeps(trained)) == 1
    assert trained.calls("fpack_generate_video") == []
    for folder in FOLDERS:
        assert folder_files(trained, folder) == [
            "42__000.png",
            "42_latent.safetensors",
            "43__000.png",
            "43_latent.safetensors",
        ]
        log = (trained.output_dir / "sample" / folder / "generate.log").read_text()
        assert "===== LoRA" in log and "fake: loading" not in log  # its own cell's lines only
    assert "step3 ×1.2: 2 images, 2 latents in outputs/sample/v1-step00000003-lm1.2" in result.stderr
    assert "4 of 4 cells made every file" in result.stderr
    assert "contact sheets: outputs/sample/v1-sheet/index.html" in result.stderr
    assert sorted(p.name for p in (trained.output_dir / "sample" / "v1-sheet").iterdir()) == [
        "index.html",
        "prompt01.png",
        "prompt02.png",
    ]

    # the separate runs of the same grid, into another root: same names, same recorded settings
    trained.write_spec(infer={"save_dir": "../outputs/separate"})
    separate = trained.cli("infer", str(trained.spec_path), *GRID, "--no-sweep")
    assert separate.exit_code == 0, separate.output
    for folder in FOLDERS:
        assert folder_files(trained, folder, "separate") == folder_files(trained, folder)
        swept, alone = record(trained, folder), record(trained, folder, "separate")
        assert swept["lora"] == alone["lora"] and swept["multiplier"] == alone["multiplier"]
        # the prompt lines and generate's options (paths of the folder aside) are the same
        assert swept["runs"][0]["settings"] == alone["runs"][0]["settings"]
        assert swept["runs"][0]["sweep_log"].endswith(".log")


def test_cells_already_made_are_skipped_and_redo_makes_them_again(trained: Workspace) -> None:
    first = trained.cli(
        "infer", str(trained.spec_path), "--lora", "step1", "--multiplier", "1.0", "--no-sweep"
    )
    assert first.exit_code == 0, first.output
    trained.forget_calls()
    result = trained.cli("infer", str(trained.spec_path), *GRID)
    assert result.exit_code == 0, result.output
    assert "1 of 4 cells already hold this LoRA's files" in result.stderr  # made by a separate run
    (call,) = sweeps(trained)
    plan = json.loads(Path(call["args"][-1]).read_text())
    assert [Path(c["save_path"]).name for c in plan["cells"]] == FOLDERS[1:]

    trained.forget_calls()
    again = trained.cli("infer", str(trained.spec_path), *GRID)
    assert again.exit_code == 0 and "nothing to generate" in again.stderr
    assert sweeps(trained) == []

    redo = trained.cli("infer", str(trained.spec_path), *GRID, "--redo")
    assert redo.exit_code == 0, redo.output
    assert len(sweeps(trained)) == 1
    assert len(folder_files(trained, FOLDERS[0])) == 8  # the new files beside the old


def test_other_settings_are_not_skipped(trained: Workspace) -> None:
    assert trained.cli("infer", str(trained.spec_path), *GRID).exit_code == 0
    trained.write_spec(infer={"steps": 3})
    result = trained.cli("infer", str(trained.spec_path), *GRID)
    assert result.exit_code == 0, result.output
    assert "skipped" not in result.stderr and "--infer_steps 2 → 3" in result.stderr


def test_a_failing_cell_is_reported_and_the_others_go_on(trained: Workspace) -> None:
    """An fp32 LoRA fails every prompt in musubi-tuner's merge; the next cell still runs."""
    fp32 = trained.root / "fp32.safetensors"
    fp32.write_bytes(fake.safetensors_bytes(save_precision="float"))
    result = trained.cli(
        "infer", str(trained.spec_path), "--lora", str(fp32), "--lora", "step2", "--multiplier", "1.0"
    )
    assert result.exit_code == 1
    assert "fp32.safetensors ×1.0: failed, 0 of 2 images, 0 of 2 latents written; log:" in result.stderr
    assert "prompt 1: RuntimeError: self and mat2 must have the same dtype" in result.stderr
    assert folder_files(trained, "v1-step00000002-lm1.0") != []
    assert "1 of 2 cells made every file" in result.stderr
    failed = record(trained, "v1-fp32-lm1.0")["runs"][-1]
    assert "same dtype" in failed["error"] and failed["files"] == []
    # a failed cell is not made: the next sweep tries it again, and only it
    trained.forget_calls()
    again = trained.cli(
        "infer", str(trained.spec_path), "--lora", str(fp32), "--lora", "step2", "--multiplier", "1.0"
    )
    (call,) = sweeps(trained)
    cells = json.loads(Path(call["args"][-1]).read_text())["cells"]
    assert [c["label"] for c in cells] == ["fp32.safetensors"] and again.exit_code == 1


def test_a_worker_that_dies_leaves_the_rest_unmade_and_says_why(trained: Workspace) -> None:
    result = trained.cli("infer", str(trained.spec_path), *GRID, env={"FAKE_SWEEP_CRASH_AT": "1"})
    assert result.exit_code == 1
    assert "3 cells not made: the worker stopped (exit 1)" in result.stderr
    assert "Segmentation fault" in result.stderr  # the log's last lines
    assert folder_files(trained, FOLDERS[0])
    crashed = record(trained, FOLDERS[1])["runs"][-1]
    assert crashed["error"] == "the worker stopped (exit 1) while making this cell"
    assert not (trained.output_dir / "sample" / FOLDERS[2]).exists()
    again = trained.cli("infer", str(trained.spec_path), *GRID)
    assert again.exit_code == 0 and "1 of 4 cells already hold" in again.stderr


def test_the_worker_launch_checks_musubi_tuners_commit_as_the_doctor_does(trained: Workspace) -> None:
    """The worker calls musubi-tuner's internals as they are at the pinned commit: another commit is
    said before the launch (the worker then checks each call's parameters itself), the pinned one is
    not mentioned."""
    pinned = trained.cli("infer", str(trained.spec_path), *GRID)
    assert pinned.exit_code == 0 and "musubi-tuner" not in pinned.stderr.replace("musubi-tuner's", "")
    other = trained.cli(
        "infer", str(trained.spec_path), *GRID, "--redo", env={"FAKE_MUSUBI_COMMIT": "0123abcd" * 5}
    )
    assert other.exit_code == 0, other.output
    assert (
        "warning: musubi-tuner: 0.3.4 at /opt/musubi/src/musubi_tuner, commit 0123abcd; fplora's schema is"
        " from 30c658c4: the sweep worker calls musubi-tuner's internals as they are at 30c658c4, and"
        " stops at once if one of them changed — install musubi-tuner at 30c658c4 (README) to run it as"
        " tested (another commit here)"
    ) in " ".join(other.stderr.split())
    assert len(sweeps(trained)) == 2  # launched all the same


def test_models_that_cannot_load_fail_every_cell(trained: Workspace) -> None:
    result = trained.cli("infer", str(trained.spec_path), *GRID, env={"FAKE_SWEEP_PREPARE_FAIL": "1"})
    assert result.exit_code == 1
    assert "4 cells not made: RuntimeError: torch.OutOfMemoryError" in result.stderr


def test_selections_choose_the_rows(trained: Workspace) -> None:
    result = trained.cli(
        "infer", str(trained.spec_path), "--lora", "step1..step2", "--lora", "last:1", "--multiplier", "1.0"
    )
    assert result.exit_code == 0, result.output
    (call,) = sweeps(trained)
    cells = json.loads(Path(call["args"][-1]).read_text())["cells"]
    assert [c["label"] for c in cells] == ["step1", "step2", "step4"]
    bad = trained.cli("infer", str(trained.spec_path), "--lora", "step7..")
    assert bad.exit_code == 1
    assert (
        "--lora: step7..: selects no checkpoint — step checkpoints: step1, step2, step3, step4" in bad.stderr
    )


def test_a_written_prompt_near_a_caption_warns_and_strict_refuses(trained: Workspace) -> None:
    caption = "a red square character turns to face the camera"
    prompt = {"text": caption.replace("turns", "turn"), "image": "../data/dataset-v1/controls/0001_0.png"}
    prompt["control_images"] = [
        "../data/dataset-v1/controls/0001_0.png",
        "../data/dataset-v1/controls/0001_1.png",
    ]
    trained.write_spec(infer={"prompts": [prompt]})
    dry = trained.cli("infer", str(trained.spec_path), "--lora", "step1", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "warning: configs/v1.yaml" in dry.stderr
    assert "a red square character [-turns-] {+turn+} to face the camera" in dry.stderr
    strict = trained.cli("infer", str(trained.spec_path), "--lora", "step1", "--strict-captions")
    assert strict.exit_code == 1 and "error: configs/v1.yaml" in strict.stderr
    assert trained.calls() == []


# --- the protocol itself, both sides -----------------------------------------------------------


def test_the_two_sides_agree_on_the_protocol() -> None:
    worker = worker_module()
    assert (worker.PROTOCOL, worker.EVENT_PREFIX) == (protocol.PROTOCOL, protocol.EVENT_PREFIX)


class _Backend:
    """Prepares, then fails the cell whose LoRA is named "broken" and writes one file elsewhere."""

    def prepare(self, generate_args: list[str], emit: Any) -> int:
        emit("phase", phase="loading")
        return 2

    def run_cell(self, cell: Any, emit: Any) -> list[str]:
        if cell.lora == "broken":
            raise ValueError("header too large")
        Path(cell.save_path, "20260101-000000-000_42__000.png").write_bytes(b"png")
        return []


def _events(output: str) -> list[dict[str, Any]]:
    return [e for e in map(protocol.parse_event, output.splitlines()) if e is not None]


def test_worker_events_and_exit_codes(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    worker = worker_module()
    plan = tmp_path / "plan.json"
    cells = [
        {"id": "c0", "lora": "broken", "multiplier": 1.0, "save_path": str(tmp_path / "a"), "label": "step1"},
        {"id": "c1", "lora": "ok", "multiplier": 1.2, "save_path": str(tmp_path / "b"), "label": "step2"},
    ]
    for cell in cells:
        Path(cell["save_path"]).mkdir()
    plan.write_text(json.dumps({"protocol": 1, "generate_args": ["--from_file", "p.txt"], "cells": cells}))
    assert worker.main(["--plan", str(plan)], backend=_Backend()) == 1
    events = _events(capfd.readouterr().out)
    assert [e["event"] for e in events] == [
        "started", "phase", "ready", "cell_started", "cell_failed", "cell_started", "cell_done", "finished",
    ]  # fmt: skip
    assert events[4]["error"] == "ValueError: header too large" and events[4]["files"] == []
    assert events[6]["files"] == ["20260101-000000-000_42__000.png"]
    assert events[-1] | {"seconds": 0} == {"event": "finished", "done": 1, "failed": 1, "seconds": 0}

    plan.write_text(json.dumps({"protocol": 99, "generate_args": [], "cells": []}))
    assert worker.main(["--plan", str(plan)], backend=_Backend()) == 2
    (error,) = _events(capfd.readouterr().out)
    assert error["event"] == "error" and "protocol 99, this worker speaks 1" in error["error"]


def test_fplora_reads_events_among_other_output() -> None:
    line = protocol.EVENT_PREFIX + json.dumps({"event": "cell_done", "cell": "c0", "files": []})
    assert protocol.parse_event(line) == {"event": "cell_done", "cell": "c0", "files": []}
    assert protocol.parse_event("INFO:musubi: loading") is None
    assert protocol.parse_event(protocol.EVENT_PREFIX + '{"event": "cell_do') is None  # cut by a crash
    assert protocol.parse_event(protocol.EVENT_PREFIX + "[1, 2]") is None


def test_an_event_is_one_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """The event line must not interleave with log lines: the worker writes it in one piece."""
    worker = worker_module()
    writes: list[bytes] = []
    monkeypatch.setattr(worker.os, "write", lambda fd, data: writes.append(bytes(data)) or len(data))
    with redirect_stdout(io.StringIO()):
        monkeypatch.setattr(worker.sys.stdout, "fileno", lambda: 1, raising=False)
        worker.emit("cell_done", cell="c0", files=["a" * 100])
    assert len(writes) == 1 and writes[0].endswith(b"\n")


class _ParserBackend(_Backend):
    """Parses like the generate script: argparse exits 2 without a required option."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def prepare(self, generate_args: list[str], emit: Any) -> int:
        import argparse

        self.seen = generate_args
        parser = argparse.ArgumentParser(prog="fpack_generate_video")
        for name in fake.schema()["scripts"]["fpack_generate_video"]["required"]:
            parser.add_argument(f"--{name}", required=True)
        parser.add_argument("--from_file")
        parser.parse_args(generate_args)
        return 1


def test_the_worker_gives_the_generate_parser_every_required_option(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The first GPU run died in argparse: the plan leaves `--save_path` to the cells, but the
    generate parser requires one. The worker now passes the first cell's; a parser exit is an
    `error` event with exit code 2, not a silent death."""
    worker = worker_module()
    cell = {"id": "c0", "lora": "ok", "multiplier": 1.0, "save_path": str(tmp_path / "a"), "label": "step1"}
    Path(cell["save_path"]).mkdir()
    args = ["--from_file", "p.txt", "--text_encoder1", "t1", "--text_encoder2", "t2", "--image_encoder", "ie"]
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"protocol": 1, "generate_args": args, "cells": [cell]}))
    backend = _ParserBackend()
    assert worker.main(["--plan", str(plan)], backend=backend) == 0
    assert backend.seen == [*args, "--save_path", cell["save_path"]]

    plan.write_text(json.dumps({"protocol": 1, "generate_args": args[:2], "cells": [cell]}))
    assert worker.main(["--plan", str(plan)], backend=_ParserBackend()) == 2
    events = _events(capfd.readouterr().out)
    assert (
        events[-1]["event"] == "error" and "parser refused the plan's options (exit 2)" in events[-1]["error"]
    )


def test_sweep_dry_run_lists_its_cells_and_what_latest_is(trained: Workspace) -> None:
    """No plan file is written by a dry run, so it must not be the only thing named: the cells are."""
    dry = trained.cli(
        "infer", str(trained.spec_path), "--lora", "latest", "--lora", "step2",
        "--multiplier", "1.0", "--multiplier", "1.2", "--dry-run",
    )  # fmt: skip
    assert dry.exit_code == 0, dry.output
    lines = dry.stderr.splitlines()
    assert "note: --lora latest is outputs/fake-v1-step00000004.safetensors (step4)" in lines
    start = lines.index("dry run: one worker process would make 4 cells (its plan file is not written):")
    assert lines[start + 1 : start + 5] == [
        "  outputs/fake-v1-step00000004.safetensors (step4) ×1 → outputs/sample/v1-step00000004-lm1.0",
        "  outputs/fake-v1-step00000004.safetensors (step4) ×1.2 → outputs/sample/v1-step00000004-lm1.2",
        "  outputs/fake-v1-step00000002.safetensors (step2) ×1 → outputs/sample/v1-step00000002-lm1.0",
        "  outputs/fake-v1-step00000002.safetensors (step2) ×1.2 → outputs/sample/v1-step00000002-lm1.2",
    ]
    assert not (trained.output_dir / "sample" / "v1-sweeps").exists()


def test_negative_seeds_are_matched_to_their_files(trained: Workspace) -> None:
    """generate writes a prompt's seed into its files' names as Python prints it, a negative one too
    (`--d -3`: `..._-3__000.png`); `fplora infer` matches each prompt's files by it, in the sweep
    worker's cells and in separate runs alike."""
    trained.write_spec(infer={"seed": -3})
    result = trained.cli("infer", str(trained.spec_path), *GRID)
    assert result.exit_code == 0, result.output
    expected = ["-2__000.png", "-2_latent.safetensors", "-3__000.png", "-3_latent.safetensors"]
    for folder in FOLDERS:
        assert folder_files(trained, folder) == expected
    assert "4 of 4 cells made every file" in result.stderr
    trained.write_spec(infer={"seed": -3, "save_dir": "../outputs/separate"})
    separate = trained.cli("infer", str(trained.spec_path), "--lora", "step1", "--no-sweep")
    assert separate.exit_code == 0, separate.output
    assert folder_files(trained, "v1-step00000001-lm1.0", "separate") == expected
