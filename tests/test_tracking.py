"""wandb: the training's run holds the resolved spec, the tags and a run id fplora finds again;
`fplora eval`'s losses go into that run at their global steps. Checked with the real wandb, offline
(`WANDB_MODE=offline`), by reading the run folder it writes (its transaction log, `run-<id>.wandb`),
not by mocking wandb.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from fplora.jobs.context import Job, console
from fplora.jobs.tracking import log_eval
from fplora.plan import build
from fplora.render import tracker
from fplora.runs.evaluation import Point
from fplora.spec import load_spec

pytest.importorskip("wandb")  # the dev group has it; a user's fplora needs it only on the GPU box

_BLOCK = 32768  # the transaction log is LevelDB's log format: 32 KiB blocks of records
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def records(path: Path) -> list[Any]:
    """Every record of a wandb transaction log (`run-<id>.wandb`), as wandb's protobuf `Record`s."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    found, pending, at = [], b"", 7  # ":W&B", a 2-byte magic, a version byte
    while at + 7 <= len(data):
        left = _BLOCK - at % _BLOCK
        if left < 7:
            at += left  # a block's tail too short for a header is padding
            continue
        _crc, length, kind = struct.unpack("<IHB", data[at : at + 7])
        if kind == 0 and length == 0:
            at += left
            continue
        chunk = data[at + 7 : at + 7 + length]
        at += 7 + length
        pending = chunk if kind in (_FULL, _FIRST) else pending + chunk
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            found.append(record)
    return found


def run_folder(root: Path, run_id: str) -> Path:
    [log] = list((root / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    return log


def _items(items: Any) -> dict[str, Any]:
    """A record's key/value items (a key is `key`, or a path in `nested_key`)."""
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items}


def history(log: Path) -> list[dict[str, Any]]:
    return [_items(r.history.item) for r in records(log) if r.WhichOneof("record_type") == "history"]


def offline(tmp_path: Path) -> dict[str, str]:
    return {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true"}


@pytest.fixture
def spec_path(project: Callable[..., Path]) -> Path:
    return project("gpu: h200\ntrain:\n  logging: {with: wandb}\n")


def test_the_training_config_names_the_tracker_file(spec_path: Path) -> None:
    plan = build(load_spec(spec_path))
    config = tomllib.loads(plan.files[plan.paths.config])
    assert config["log_tracker_config"] == str(plan.paths.tracker)
    wandb = tomllib.loads(plan.files[plan.paths.tracker])["wandb"]
    assert wandb["name"] == "demo-v1" and wandb["group"] == "demo-v1" and wandb["resume"] == "allow"
    assert wandb["tags"] == ["v1", "gpu:h200", "fplora"]
    assert wandb["id"] == tracker.run_id(load_spec(spec_path))
    assert wandb["config"]["fplora"]["one_frame"] == {
        "clean_indices": [0, 10], "target_index": 5, "no_post": True, "no_2x": False, "no_4x": False,
    }  # fmt: skip


def test_a_spec_without_wandb_renders_no_tracker_file(project: Callable[..., Path]) -> None:
    plan = build(load_spec(project()))
    assert plan.paths.tracker not in plan.files
    assert "log_tracker_config" not in tomllib.loads(plan.files[plan.paths.config])


def test_wandb_init_as_accelerate_calls_it_holds_the_spec_and_tags(spec_path: Path, tmp_path: Path) -> None:
    """accelerate's WandBTracker calls `wandb.init(project=log_tracker_name, **init_kwargs["wandb"])`
    with the TOML's table as musubi-tuner reads it."""
    spec = load_spec(spec_path)
    plan = build(spec)
    script = (
        "import sys, tomllib, wandb\n"
        "kwargs = tomllib.load(open(sys.argv[1], 'rb'))['wandb']\n"
        "run = wandb.init(project=sys.argv[2], **kwargs)\n"
        "run.log({'loss/current': 0.5}, step=1)\n"
        "run.finish()\n"
    )
    (tmp_path / "tracker.toml").write_text(plan.files[plan.paths.tracker])
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "tracker.toml"), tracker.project(spec)],
        env={**os.environ, **offline(tmp_path)},
        check=True,
    )
    found = records(run_folder(tmp_path, tracker.run_id(spec)))
    [run] = [r.run for r in found if r.WhichOneof("record_type") == "run"]
    assert run.project == "demo" and run.display_name == "demo-v1" and run.run_group == "demo-v1"
    assert list(run.tags) == ["v1", "gpu:h200", "fplora"]
    config = _items(run.config.update)
    assert config["fplora"]["version"] == "v1"
    assert config["fplora"]["train"]["logging"]["with"] == "wandb"


def test_eval_losses_go_into_the_training_run_at_their_global_steps(spec_path: Path, tmp_path: Path) -> None:
    spec = load_spec(spec_path)
    job = Job(build(spec), sys.executable, console())
    points = [
        Point(label="untrained", step=0, lora=None, loss=0.3, bands=[]),
        Point(label="step4", step=4, lora="x-step00000004.safetensors", loss=0.2, bands=[]),
        Point(label="step2", step=2, lora="x-step00000002.safetensors", loss=0.25, bands=[]),
    ]
    sheet = spec.train.output_dir / "sample" / "v1-sheet" / "prompt01.png"
    sheet.parent.mkdir(parents=True)
    Image.new("RGB", (64, 48), "white").save(sheet)
    assert log_eval(job, points, points[1], env=offline(tmp_path)) == 4
    log = run_folder(tmp_path, tracker.run_id(spec))
    found = history(log)
    assert [(h["global_step"], h["eval/loss"]) for h in found if "eval/loss" in h] == [
        (0, 0.3),
        (2, 0.25),
        (4, 0.2),
    ]
    [images] = [h for h in found if "sheets/contact_sheets/count" in h]
    assert images["global_step"] == 4 and images["sheets/contact_sheets/captions"] == ["v1 prompt01"]
    [name] = images["sheets/contact_sheets/filenames"]
    assert (log.parent / "files" / name).is_file()  # the picture itself is in the run folder


def test_a_resumed_segment_is_a_run_of_its_own_in_the_group(spec_path: Path) -> None:
    spec = load_spec(spec_path)
    kwargs = tracker.init_kwargs(spec, segment=1, step_offset=400)
    assert kwargs["id"] == tracker.run_id(spec) + "-r1"
    assert kwargs["name"] == "demo-v1-r1" and kwargs["group"] == "demo-v1"
    assert kwargs["config"]["fplora_step_offset"] == 400
