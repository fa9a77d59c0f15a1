"""The evaluation split: held-out records never reach the trainer, are cached in a folder of their
own by `fplora cache`, and `check` refuses an evaluation record that is also trained on.

musubi-tuner trains on every cache file in a dataset's cache folder, so these tests look at what
musubi-tuner would be given (the rendered dataset files and JSONL copies) and at the cache folders.
"""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest
from fakes.fixtures import Workspace

from fplora.datasets import split
from fplora.datasets.records import Record, Records
from fplora.spec.models import Evaluation

pytest_plugins = ["fakes.fixtures"]


def _toml(path: Path) -> dict:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def _captions(path: Path) -> list[str]:
    return [json.loads(line)["caption"] for line in path.read_text(encoding="utf-8").splitlines()]


def eval_cache(workspace: Workspace) -> Path:
    return workspace.render_dir / "cache" / "eval" / "metadata-v1"


def test_held_out_records_are_left_out_of_the_training_dataset(workspace: Workspace) -> None:
    workspace.write_spec(eval={"records": [2]})
    result = workspace.cli("render", str(workspace.spec_path))
    assert result.exit_code == 0, result.output
    training = _toml(workspace.render_dir / "dataset.toml")
    (entry,) = training["datasets"]
    kept = _captions(Path(entry["image_jsonl_file"]))
    assert len(kept) == 3 and "a blue circle character turns to face the camera" not in kept
    (scored,) = _toml(workspace.render_dir / "eval-dataset.toml")["datasets"]
    assert _captions(Path(scored["image_jsonl_file"])) == ["a blue circle character turns to face the camera"]
    assert scored["cache_directory"] == str(eval_cache(workspace))
    assert scored["num_repeats"] == 1
    both = _toml(workspace.render_dir / "cache-dataset.toml")["datasets"]
    assert [d["cache_directory"] for d in both] == [entry["cache_directory"], scored["cache_directory"]]
    config = (workspace.render_dir / "config.toml").read_text(encoding="utf-8")
    assert "eval-dataset" not in config and "cache-dataset" not in config


def test_cache_fills_both_folders_in_one_load_and_train_accepts_them(workspace: Workspace) -> None:
    workspace.write_spec(eval={"records": [2, 4]})
    result = workspace.cli("cache", str(workspace.spec_path))
    assert result.exit_code == 0, result.output
    assert "evaluation split" in result.stderr
    assert len(workspace.calls()) == 2  # latents and text encoders, once each
    for call in workspace.calls():  # one staging dataset.toml names both folders' records
        assert call["args"][call["args"].index("--dataset_config") + 1].endswith(
            ("latents.toml", "text.toml")
        )
    training = {p.name.split("_")[0] for p in workspace.cache_dir.glob("*_fp.safetensors")}
    scored = {p.name.split("_")[0] for p in eval_cache(workspace).glob("*_fp.safetensors")}
    assert training == {"0001", "0003"} and scored == {"0002", "0004"}
    assert all(p.is_symlink() for p in eval_cache(workspace).iterdir())
    again = workspace.cli("cache", str(workspace.spec_path))
    assert "nothing to do" in again.stderr
    train = workspace.cli("train", str(workspace.spec_path))
    assert train.exit_code == 0, train.output


def test_a_training_cache_made_before_the_split_loses_the_held_out_files(workspace: Workspace) -> None:
    """Files of records now held out would still be trained on: train refuses, cache deletes them."""
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    workspace.write_spec(eval={"records": [3]})
    refused = workspace.cli("train", str(workspace.spec_path))
    assert refused.exit_code == 1
    assert "belong to no record" in refused.stderr
    assert workspace.cli("cache", str(workspace.spec_path)).exit_code == 0
    assert not list(workspace.cache_dir.glob("0003_*"))
    assert list(eval_cache(workspace).glob("0003_*"))


def test_check_refuses_an_evaluation_record_that_is_trained_on(workspace: Workspace) -> None:
    data = workspace.root / "data" / "dataset-v1"
    lines = (data / "metadata-v1.jsonl").read_text(encoding="utf-8").splitlines()
    copy = json.loads(lines[0])
    shutil.copy(data / "targets" / "0001.png", data / "targets" / "0001-copy.png")
    copy["image_path"] = "targets/0001-copy.png"
    (data / "eval.jsonl").write_text(lines[0] + "\n" + json.dumps(copy) + "\n", encoding="utf-8")
    workspace.write_spec(eval={"jsonl": "../data/dataset-v1/eval.jsonl"})
    result = workspace.cli("check", str(workspace.spec_path), "--skip-models")
    assert result.exit_code == 1
    assert "eval.jsonl:1: eval: evaluation record is also a training record: the same target image" in (
        result.output
    )
    assert "eval.jsonl:2: eval:" in result.output and "byte-identical" in result.output
    workspace.write_spec(eval={"allow_training_records": True})
    allowed = workspace.cli("check", str(workspace.spec_path), "--skip-models")
    assert allowed.exit_code == 0, allowed.output
    assert "warning:" in allowed.output and "do not choose a checkpoint" in allowed.output


@pytest.mark.parametrize(
    ("evaluation", "said"),
    [
        ({"records": [9]}, "eval.records: 9: no record on that line"),
        ({"records": [1, 2, 3, 4]}, "holds out every record"),
        ({"records": [1], "fraction": 0.5}, "give exactly one of records, fraction or jsonl"),
        ({"fraction": 1.5}, "eval.fraction"),
        ({"records": [1], "timesteps": [0.0]}, "eval.timesteps"),
        ({"records": [1], "dataset": 3}, "eval.dataset: there is no datasets[3]"),
        ({"jsonl": "../nowhere/eval.jsonl"}, "eval.jsonl: dataset JSONL file not found"),
    ],
)
def test_check_names_a_bad_split(workspace: Workspace, evaluation: dict, said: str) -> None:
    workspace.write_spec(eval=evaluation)
    result = workspace.cli("check", str(workspace.spec_path), "--skip-models")
    assert result.exit_code == 1
    assert said in result.output


def _records(count: int) -> Records:
    jsonl = Path("/data/m.jsonl")
    items = [Record(n, Path(f"/data/t/{n:04d}.png"), f"c{n}") for n in range(1, count + 1)]
    return Records(jsonl, items, [])


def test_a_fraction_split_keeps_every_record_on_its_side_when_records_are_added() -> None:
    evaluation = Evaluation(fraction=0.25, seed=3)
    before = split.held_out(evaluation, _records(40))
    after = split.held_out(evaluation, _records(80))
    assert before and before == {line for line in after if line <= 40}
    assert 4 <= len(after) <= 36  # about a quarter of 80
    assert split.held_out(Evaluation(fraction=0.01), _records(3))  # never an empty split
    assert split.held_out(evaluation, _records(40)) != split.held_out(
        Evaluation(fraction=0.25, seed=4), _records(40)
    )
