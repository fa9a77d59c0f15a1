"""`fplora doctor` against the fake musubi-tuner Python: one line per finding, exit 1 on a fail, and
every check (versions and schema drift, GPU, accelerate's default config, tokenizers, attention
kernels, wandb login, disk) seen passing and failing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes.fixtures import Workspace

from fplora.jobs.doctor.machine import disk_need
from fplora.musubi import schema
from fplora.musubi.names import TOKENIZER_FILES
from fplora.spec import load_spec

pytest_plugins = ["fakes.fixtures"]

H200 = "NVIDIA H200:143771"


@pytest.fixture
def home(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HOME and Hugging Face folder, holding the tokenizers, with no wandb login."""
    home = workspace.root / "home"
    hub = home / "hf" / "hub" / "models--hunyuanvideo-community--HunyuanVideo"
    (hub / "refs").mkdir(parents=True)
    (hub / "refs" / "main").write_text("abc")
    for name in TOKENIZER_FILES:
        (hub / "snapshots" / "abc" / name).parent.mkdir(parents=True, exist_ok=True)
        (hub / "snapshots" / "abc" / name).write_text("{}")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    for name in (
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "XDG_CACHE_HOME",
        "WANDB_API_KEY",
        "WANDB_MODE",
        "NETRC",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no nvidia-smi
    return home


def _doctor(workspace: Workspace, **env: str):
    result = workspace.cli("doctor", str(workspace.spec_path), env=env)
    return result, [line for line in result.stdout.splitlines() if line[:4] in ("ok  ", "warn", "fail")]


def _line(lines: list[str], topic: str) -> str:
    return next(line for line in lines if line[6:].startswith(topic + ":"))


def test_a_healthy_machine(workspace: Workspace, home: Path) -> None:
    result, lines = _doctor(workspace, FAKE_GPUS=H200)
    assert result.exit_code == 0, result.stdout
    pinned = schema.pinned_commit()[:8]
    assert _line(lines, "musubi-tuner").endswith(f"commit {pinned} (the bundled schema's)")
    options = len(schema.schema()["scripts"]["fpack_train_network"]["options"])
    assert _line(lines, "options of fpack_train_network") == (
        f"ok    options of fpack_train_network: {options} options, as in the bundled schema"
    )
    assert _line(lines, "GPU") == "ok    GPU: 1: NVIDIA H200 (143,771 MiB)"
    assert _line(lines, "tokenizers").startswith("ok")
    assert _line(lines, "accelerate config").startswith("ok    accelerate config: no default config")
    assert all(not line.startswith("fail") for line in lines)
    assert "doctor (v1.yaml): 0 fail" in result.stdout


def test_no_gpu_is_a_fail_that_says_what_is_missing(workspace: Workspace, home: Path) -> None:
    result, lines = _doctor(workspace)
    assert result.exit_code == 1
    assert _line(lines, "GPU").startswith("fail  GPU: no CUDA GPU visible to torch")


def test_drift_from_the_bundled_schema(workspace: Workspace, home: Path) -> None:
    options = [
        o
        for o in schema.schema()["scripts"]["fpack_train_network"]["options"]
        if o["dest"] != "blocks_to_swap"
    ]
    options.append({"dest": "new_option", "option_strings": ["--new_option"], "type": "int", "choices": None})
    answer = {"musubi_tuner": {"location": "/x", "version": "0.3.5", "commit": "deadbeef" * 5}}
    answer["parsers"] = {s: schema.schema()["scripts"][s]["options"] for s in schema.schema()["scripts"]}
    answer["parsers"]["fpack_train_network"] = options
    result, lines = _doctor(workspace, FAKE_GPUS=H200, FAKE_DOCTOR=json.dumps(answer))
    assert result.exit_code == 1
    assert _line(lines, "musubi-tuner").startswith("warn  musubi-tuner: 0.3.5 at /x, commit deadbeef;")
    assert _line(lines, "options of fpack_train_network").startswith(
        "fail  options of fpack_train_network: gone: blocks_to_swap; new: new_option"
    )


def test_no_musubi_python_still_reports_the_rest(workspace: Workspace, home: Path) -> None:
    result, lines = _doctor(workspace, FPLORA_MUSUBI_PYTHON=str(workspace.root / "missing-python"))
    assert result.exit_code == 1
    assert _line(lines, "musubi-tuner Python").startswith("fail  musubi-tuner Python: cannot run the probe")
    assert _line(lines, "GPU").startswith("fail  GPU: none found")
    assert _line(lines, "tokenizers").startswith("ok")


def test_an_accelerate_default_config_that_changes_the_run(workspace: Workspace, home: Path) -> None:
    config = home / "hf" / "accelerate" / "default_config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("compute_environment: LOCAL_MACHINE\nuse_cpu: true\ngpu_ids: '1'\nnum_processes: 8\n")
    _, lines = _doctor(workspace, FAKE_GPUS=H200)
    line = _line(lines, "accelerate config")
    assert line.startswith("warn") and "use_cpu true" in line and "gpu_ids 1" in line
    assert "num_processes" not in line  # fplora passes that one on the command line


def test_tokenizers_missing_offline_is_a_fail(workspace: Workspace, home: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "empty"))
    _, lines = _doctor(workspace, FAKE_GPUS=H200)
    assert _line(lines, "tokenizers").startswith("warn")
    result, lines = _doctor(workspace, FAKE_GPUS=H200, HF_HUB_OFFLINE="1")
    assert result.exit_code == 1
    assert "tokenizer/tokenizer.json" in _line(lines, "tokenizers")


def test_attention_kernel_the_spec_asks_for(workspace: Workspace, home: Path) -> None:
    workspace.write_spec(train={"attention": "xformers"})
    result, lines = _doctor(workspace, FAKE_GPUS=H200)
    assert result.exit_code == 1
    assert _line(lines, "attention").startswith("fail  attention: train.attention xformers needs xformers")
    result, lines = _doctor(workspace, FAKE_GPUS=H200, FAKE_PRESENT="xformers")
    assert result.exit_code == 0
    assert _line(lines, "attention").endswith("installed: xformers")


def test_compile_needs_triton_and_the_h200_preset_asks_for_it(workspace: Workspace, home: Path) -> None:
    workspace.write_spec(data={"resolution": [512, 768], "batch_size": 16}, gpu="h200")
    result, lines = _doctor(workspace, FAKE_GPUS=H200)
    assert result.exit_code == 1, result.output
    assert "torch.compile" in result.stderr  # the preset's note: the doctor checks what will run
    assert _line(lines, "compile").startswith(
        "fail  compile: train.compile needs triton, which the musubi-tuner Python does not have"
    )
    result, lines = _doctor(workspace, FAKE_GPUS=H200, FAKE_PRESENT="triton")
    assert result.exit_code == 0, result.output
    assert (
        _line(lines, "compile")
        == "ok    compile: train.compile: triton is installed in the musubi-tuner Python"
    )
    workspace.write_spec(gpu=None)
    result, lines = _doctor(workspace, FAKE_GPUS=H200)
    assert not any(line[6:].startswith("compile:") for line in lines)  # not asked: not checked


def test_wandb_login_is_checked_and_never_shown(workspace: Workspace, home: Path) -> None:
    workspace.write_spec(train={"logging": {"with": "wandb"}})
    result, lines = _doctor(workspace, FAKE_GPUS=H200, FAKE_PRESENT="wandb")
    assert result.exit_code == 1
    (refused,) = [line for line in lines if "train.logging.with: logs to wandb, but no wandb login" in line]
    # `fplora train` refuses in the same words, with the same fix: the user meets one message
    trained = workspace.cli("train", str(workspace.spec_path), "--no-rehearse")
    assert trained.exit_code == 1
    assert refused == "fail  " + trained.stderr.strip().removeprefix("error: ")
    secret = "0123456789abcdef0123456789abcdef01234567"
    (home / ".netrc").write_text(f"machine api.wandb.ai\n  login user\n  password {secret}\n")
    (home / ".netrc").chmod(0o600)
    result, lines = _doctor(workspace, FAKE_GPUS=H200, FAKE_PRESENT="wandb")
    assert _line(lines, "wandb") == "ok    wandb: logged in (api.wandb.ai in ~/.netrc)"
    assert secret not in result.output


def test_disk_need_from_the_save_settings(project) -> None:
    spec = load_spec(
        project("train:\n  max_train_steps: 1000\n  save_every_n_steps: 100\n  save_precision: fp32\n")
    )
    checkpoints, _ = disk_need(spec)
    # 10 step LoRAs + the final one at 551 MB, 10 step states + the final one at 832 MB
    assert checkpoints == pytest.approx(11 * 551 + 11 * 832)
    bf16 = load_spec(
        project("train:\n  max_train_steps: 1000\n  save_every_n_steps: 100\n  save_state: false\n")
    )
    assert disk_need(bf16)[0] == pytest.approx(11 * 551 / 2 + 832)  # the end-of-training state stays


@pytest.mark.musubi
def test_a_cpu_musubi_python_gives_every_scripts_options(
    workspace: Workspace, home: Path, musubi_python, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A laptop's CPU musubi-tuner Python (scripts/musubi-python.sh): the training and generate
    scripts import musubi-tuner's t5.py, which asks CUDA for its device while being imported."""
    for key, value in musubi_python.env.items():
        monkeypatch.setenv(key, value)
    _, lines = _doctor(workspace)
    for script in schema.schema()["scripts"]:
        assert _line(lines, f"options of {script}").endswith("options, as in the bundled schema"), lines
