"""From an empty folder to a passing `fplora check` in the three commands the README's first section
shows: `fplora init`, `fplora models fetch` (from a fake Hub on localhost, never the network),
`fplora dataset init` on a generated folder of pictures; then `fplora check` with the models.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner, Result

from fplora.cli import app

pytest_plugins = ["fakes.fake_hub"]


def cli(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def folder_of_pictures(root: Path, count: int = 4) -> Path:
    """What a user brings: targets, two control folders, a caption beside each target."""
    for number in range(1, count + 1):
        stem = f"pose{number:02d}"
        for folder, shade in (("targets", 60), ("control_0", 120), ("control_1", 180)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (512, 768), (shade, 30 * number, 90)).save(root / folder / f"{stem}.png")
        (root / "targets" / f"{stem}.txt").write_text(
            f"the character turns, pose {number}\n", encoding="utf-8"
        )
    return root


def test_an_empty_folder_to_a_passing_check(
    hub: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models"
    monkeypatch.setenv("FPLORA_MODELS_DIR", str(models))
    project = tmp_path / "my-lora"
    assert cli("init", project).exit_code == 0
    monkeypatch.chdir(project)

    fetched = cli("models", "fetch")
    assert fetched.exit_code == 0, fetched.output
    pictures = folder_of_pictures(project / "datasets" / "turnaround")
    made = cli("dataset", "init", pictures, "--spec", "configs/v1.yaml")
    assert made.exit_code == 0, made.output
    snippet = (pictures / "fplora-dataset.yaml").read_text(encoding="utf-8")
    assert "- jsonl: ../datasets/turnaround/metadata.jsonl" in snippet

    spec = project / "configs" / "v1.yaml"
    text = spec.read_text(encoding="utf-8")
    spec.write_text(
        text.replace("../datasets/dataset-v1/metadata-v1.jsonl", "../datasets/turnaround/metadata.jsonl"),
        encoding="utf-8",
    )
    checked = cli("check", "configs/v1.yaml")
    assert checked.exit_code == 0, checked.output
    assert "configs/v1.yaml: ok, 1 dataset" in checked.output
    assert cli("models", "check").exit_code == 0
