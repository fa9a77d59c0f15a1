"""Credentials never reach a file fplora writes or a line it prints.

A credential key in the spec (any section, pass-through ones too) or a value taken from a
credential's environment variable is refused at its line, with the fix. Then every verb runs
against the fake musubi-tuner with secrets in the environment, and everything fplora printed and
everything under the project folder (rendered files, caches, logs, manifests, samples) is searched
for them. musubi-tuner inherits the environment, so wandb and huggingface_hub still find them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fakes.fixtures import Workspace, add_runpodctl

from fplora.problems import UserError
from fplora.spec import load_spec
from fplora.spec.secrets import _ENVIRONMENT, _NOT_CREDENTIALS, is_credential

pytest_plugins = ["fakes.fixtures"]

SECRETS = {
    "WANDB_API_KEY": "wandb-SECRET-4f1c9e",
    "HF_TOKEN": "hf_SECRET_81b2d7",
    "RUNPOD_API_KEY": "rp-SECRET-33aa05",
}
SCHEMA = Path(__file__).resolve().parents[1] / "src" / "fplora" / "musubi" / "schema.json"


@pytest.fixture
def planted(cached: Workspace, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    return cached


def leaks(workspace: Workspace, *printed: str, spared: tuple[Path, ...] = ()) -> list[str]:
    """Where a secret shows up: in `printed` or in any file under the workspace but `spared`."""
    found = [f"printed: {text[:80]!r}" for text in printed for secret in SECRETS.values() if secret in text]
    for path in sorted(workspace.root.rglob("*")):
        if path.is_file() and path not in spared:
            data = path.read_bytes()
            found += [str(path) for secret in SECRETS.values() if secret.encode() in data]
    return found


@pytest.mark.parametrize(
    "name",
    [
        "wandb_api_key",
        "huggingface_token",
        "HF_TOKEN",
        "aws_secret_access_key",
        "db_password",
        "apiKey",
        "token",
    ],
)
def test_credential_names(name: str) -> None:
    assert is_credential(name)


@pytest.mark.parametrize("name", ["tokenizer", "keyframe", "max_token_length", "monkey", "caption_extension"])
def test_names_that_are_not_credentials(name: str) -> None:
    assert not is_credential(name)


def test_every_musubi_option_named_like_a_credential_is_decided() -> None:
    """A new musubi-tuner snapshot with an option like `--hub_token` must be sorted into one list or
    the other here, not refused (or let through) by accident."""
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    dests = {option["dest"] for script in schema["scripts"].values() for option in script["options"]}
    dests |= {key for section in ("general", "datasets") for key in schema["dataset_config"].get(section, {})}
    named = {dest for dest in dests if is_credential(dest) or dest in _NOT_CREDENTIALS}
    assert named <= set(_ENVIRONMENT) | _NOT_CREDENTIALS
    assert {"wandb_api_key", "huggingface_token"} <= named


PLACEMENTS: list[tuple[dict[str, Any], str, str]] = [
    (
        {"musubi": {"config": {"wandb_api_key": "${WANDB_API_KEY}"}}},
        "musubi.config.wandb_api_key",
        "WANDB_API_KEY",
    ),
    (
        {"musubi": {"generate": {"huggingface_token": "${HF_TOKEN}"}}},
        "musubi.generate.huggingface_token",
        "HF_TOKEN",
    ),
    (
        {"launch": {"extra": {"api_key": "${RUNPOD_API_KEY}"}}},
        "launch.extra.api_key",
        "environment of the tool",
    ),
    (
        {"train": {"network": {"args": ["--secret=${HF_TOKEN}"]}}},
        "train.network.args[0]",
        "environment of the tool",
    ),
    ({"sample": {"prompts": [{"text": "a ${HF_TOKEN} cat"}]}}, "sample.prompts[0].text", "takes ${HF_TOKEN}"),
]
VERBS = [
    ["check"],
    ["check", "--skip-models"],
    ["render"],
    ["cache"],
    ["cache", "--dry-run"],
    ["train"],
    ["train", "--dry-run"],
    ["train", "--cache"],
    ["train", "--resume", "latest"],
    ["infer"],
    ["infer", "--dry-run"],
    ["runs"],
]


@pytest.mark.parametrize(("changes", "key", "fix"), PLACEMENTS)
def test_a_credential_in_the_spec_is_refused_at_its_line_by_every_verb(
    planted: Workspace, changes: dict[str, Any], key: str, fix: str
) -> None:
    planted.write_spec(**changes)
    line = next(
        number
        for number, text in enumerate(planted.spec_path.read_text(encoding="utf-8").splitlines(), 1)
        if "${" in text
    )
    planted.forget_calls()
    for verb in VERBS:
        result = planted.cli(verb[0], str(planted.spec_path), *verb[1:])
        assert result.exit_code == 1, (verb, result.output)
        error, *rest = result.stderr.splitlines()
        assert rest == (["configs/v1.yaml: 1 error, 0 warnings"] if verb[0] == "check" else []), verb
        assert error.startswith(f"error: configs/v1.yaml:{line}: {key}: "), (verb, error)
        assert fix in error and "credential" in error
        assert leaks(planted, result.output) == [], verb
    assert planted.calls() == []
    assert not planted.output_dir.exists()


def test_a_credential_in_a_base_spec_is_refused_at_the_base_line(planted: Workspace) -> None:
    base = planted.root / "configs" / "base.yaml"
    base.write_text(f"musubi:\n  config:\n    wandb_api_key: {SECRETS['WANDB_API_KEY']}\n", encoding="utf-8")
    planted.write_spec(extends="base.yaml")
    result = planted.cli("train", str(planted.spec_path), "--dry-run")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: configs/base.yaml:3: musubi.config.wandb_api_key: holds a credential"
    )
    assert "export WANDB_API_KEY=" in result.stderr
    assert leaks(planted, result.output, spared=(base,)) == []


def test_a_reset_credential_key_is_not_a_credential(planted: Workspace) -> None:
    """`null` drops what a base set: it holds nothing."""
    planted.write_spec(musubi={"config": {"wandb_api_key": None}})
    assert planted.cli("check", str(planted.spec_path)).exit_code == 0


def test_no_verb_writes_or_prints_a_secret_from_the_environment(
    planted: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_runpodctl(planted, monkeypatch)
    monkeypatch.setenv("RUNPOD_POD_ID", "pod123")
    spec = str(planted.spec_path)
    printed: list[str] = []
    steps = [
        (["check", spec], 0),
        (["check", spec, "--skip-models"], 0),
        (["render", spec], 0),
        (["cache", spec, "--dry-run"], 0),
        (["cache", spec, "--rebuild"], 0),
        (["train", spec, "--dry-run"], 0),
        (["train", spec, "--stop-pod", "always"], 0),
        (["runs", spec], 0),
        (["infer", spec, "--dry-run"], 0),
        (["infer", spec], 0),
        (["train", spec, "--resume", "latest", "--dry-run"], 1),  # at max_train_steps already
        (["runs"], 0),  # the last spec, remembered in .fplora/
    ]
    for argv, code in steps:
        result = planted.cli(*argv)
        assert result.exit_code == code, (argv, result.output)
        printed.append(result.output)
    planted.write_spec(train={"max_train_steps": 6})
    for argv in (["train", spec, "--resume", "latest", "--cache"], ["infer", spec, "--lora", "step5"]):
        result = planted.cli(*argv)
        assert result.exit_code == 0, (argv, result.output)
        printed.append(result.output)
    # the verbs added since: a sweep (one worker for a grid of cells), its contact sheet, the doctor
    sweep = [
        "infer",
        spec,
        "--lora",
        "step4",
        "--lora",
        "step5",
        "--multiplier",
        "1.0",
        "--multiplier",
        "1.2",
    ]
    for argv in (sweep, ["sheet", str(planted.output_dir / "sample")], ["doctor", spec]):
        result = planted.cli(*argv)
        assert result.exit_code in ((0, 1) if argv[0] == "doctor" else (0,)), (argv, result.output)
        printed.append(result.output)
    inferred = sorted(p.name for p in (planted.output_dir / "sample").glob("v1-step*"))
    assert inferred == [f"v1-step0000000{s}-lm{m}" for s in (4, 5) for m in ("1.0", "1.2")]
    assert len(planted.manifest()["segments"]) == 2
    assert [r["args"] for r in planted.records() if r.get("tool") == "runpodctl"] == [
        ["stop", "pod", "pod123"]
    ]
    assert leaks(planted, *printed) == []


def test_an_unset_credential_variable_is_refused_as_a_credential_not_asked_for(
    project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`export WANDB_API_KEY=…` would only lead to the credential refusal on the next run."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    spec = project(
        "musubi:\n  config: {wandb_api_key: '${WANDB_API_KEY}'}\nsample:\n  prompts: [{text: '${HF_TOKEN}', image: x.png}]\n"
    )
    with pytest.raises(UserError) as refused:
        load_spec(spec)
    messages = [p.message for p in refused.value.problems]
    assert not any("is not set" in m for m in messages), messages
    assert any("holds a credential" in m for m in messages)
    assert any("takes ${HF_TOKEN}, a credential" in m for m in messages)
