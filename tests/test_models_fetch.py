"""`fplora models fetch` and `fplora models check` against a tiny fake Hub on localhost (HF_ENDPOINT).

Never the network: the fake serves every file of the five models and the tokenizers, small and in
the real repositories' layout, so the download goes through huggingface_hub's real code (HEAD for
metadata, GET with Range to resume, the token from HF_TOKEN) into the layout the spec names.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner, Result

from fplora.cli import app
from fplora.musubi.hub import MODELS, TOKENIZERS

if TYPE_CHECKING:
    from fakes.fake_hub import FakeHub

TOKEN = "hf_testtoken_not_a_secret_0123456789"
pytest_plugins = ["fakes.fake_hub"]


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_fetch_puts_the_five_models_where_the_spec_names_them(hub: FakeHub, tmp_path: Path) -> None:
    models = tmp_path / "models"
    result = cli("models", "fetch", "--dir", str(models))
    assert result.exit_code == 0, result.output
    for item in MODELS:
        assert (models / item.local).read_bytes() == hub.repos[item.repo][item.filename]
    assert (
        models / "diffusion_models/FramePackI2V_HY/diffusion_pytorch_model-00003-of-00003.safetensors"
    ).is_file()
    assert (models / "text_encoder/model-00004-of-00004.safetensors").is_file()
    assert (models / "text_encoder_2/model.safetensors").is_file() and (
        models / "image_encoder/model.safetensors"
    ).is_file()
    snapshots = tmp_path / "hf-home" / "hub" / "models--hunyuanvideo-community--HunyuanVideo" / "snapshots"
    assert {
        p.relative_to(next(snapshots.iterdir())).as_posix() for p in snapshots.rglob("*") if p.is_file()
    } == {t.filename for t in TOKENIZERS}
    check = cli("models", "check", "--dir", str(models))
    assert check.exit_code == 0, check.output


def test_dry_run_lists_files_and_total_size_and_downloads_nothing(hub: FakeHub, tmp_path: Path) -> None:
    result = cli("models", "fetch", "--dir", str(tmp_path / "models"), "--dry-run")
    assert result.exit_code == 0, result.output
    total = sum(len(data) for files in hub.repos.values() for data in files.values())
    assert f"{len(MODELS) + len(TOKENIZERS)} files, " in result.output
    assert (
        "lllyasviel/FramePackI2V_HY/diffusion_pytorch_model-00001-of-00003.safetensors → models/diffusion_models/FramePackI2V_HY/"
        in result.output
    )
    assert f"{total / 1e3:.1f} kB" in result.output
    assert not (tmp_path / "models").exists()
    assert all(r["method"] == "HEAD" for r in hub.requests if "/resolve/" in r["path"])


def test_the_token_comes_from_hf_token_and_is_never_printed(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    result = cli("models", "fetch", "--dir", str(tmp_path / "models"))
    assert result.exit_code == 0, result.output
    assert {r["auth"] for r in hub.requests if "/resolve/" in r["path"]} == {f"Bearer {TOKEN}"}
    assert TOKEN not in result.output
    assert not any(TOKEN.encode() in p.read_bytes() for p in (tmp_path / "models").rglob("*") if p.is_file())


def test_a_failed_file_is_named_and_check_says_it_is_missing(hub: FakeHub, tmp_path: Path) -> None:
    models = tmp_path / "models"
    item = next(i for i in MODELS if i.key == "vae")
    hub.fail[item.filename] = 404
    failed = cli("models", "fetch", "--dir", str(models))
    assert failed.exit_code == 1
    (line,) = [x for x in failed.output.splitlines() if x.startswith("error:")]
    assert f"{item.repo}/{item.filename}: download failed:" in line
    assert not models.exists()  # nothing is fetched until every file is known
    del hub.fail[item.filename]
    hub.fail["image_encoder/model.safetensors"] = 500
    hub.fail_get_only = True
    partly = cli("models", "fetch", "--dir", str(models))
    assert partly.exit_code == 1 and "image_encoder/model.safetensors: download failed" in partly.output
    check = cli("models", "check", "--dir", str(models))
    assert check.exit_code == 1
    (missing,) = [x for x in check.output.splitlines() if x.startswith("error:")]
    assert "models/image_encoder/model.safetensors" in missing and "not found" in missing
    assert missing.count("image_encoder/model.safetensors") == 1  # the path once, not twice
    assert "run `fplora models fetch`" in missing


def test_a_dropped_transfer_is_resumed_where_it_stopped(hub: FakeHub, tmp_path: Path) -> None:
    models = tmp_path / "models"
    item = next(i for i in MODELS if i.key == "vae")
    from fakes.fake_hub import safetensors_file

    # larger than huggingface_hub's 10 MB read: bytes it received are kept, then asked for the rest
    hub.repos[item.repo][item.filename] = safetensors_file("vae", 12_000_000)
    hub.cut[item.filename] = 10_485_760
    result = cli("models", "fetch", "--dir", str(models))
    assert result.exit_code == 0, result.output
    assert (models / item.local).read_bytes() == hub.repos[item.repo][item.filename]
    gets = [r for r in hub.requests if r["method"] == "GET" and r["path"].endswith(item.filename)]
    assert [r["range"] for r in gets] == [None, "bytes=10485760-"]


def test_check_names_what_a_killed_download_left(hub: FakeHub, tmp_path: Path) -> None:
    """huggingface_hub downloads into `<hash>.<etag>.<id>.incomplete` and removes it on any error it
    sees; a killed process leaves it."""
    models = tmp_path / "models"
    assert cli("models", "fetch", "--dir", str(models)).exit_code == 0
    item = next(i for i in MODELS if i.key == "text_encoder2")
    (models / item.local).unlink()
    from huggingface_hub._local_folder import get_local_download_paths

    left = get_local_download_paths(models, item.filename).incomplete_path("etag")
    left = left.with_name(f"{left.stem}.0123abcd.incomplete")
    left.write_bytes(b"\0" * 500)
    check = cli("models", "check", "--dir", str(models))
    assert check.exit_code == 1
    assert "text_encoder2: an interrupted download left 500 bytes" in check.output


def test_check_names_a_truncated_model(hub: FakeHub, tmp_path: Path) -> None:
    models = tmp_path / "models"
    assert cli("models", "fetch", "--dir", str(models)).exit_code == 0
    path = models / "text_encoder_2" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    check = cli("models", "check", "--dir", str(models))
    assert check.exit_code == 1
    (line,) = [x for x in check.output.splitlines() if "text_encoder_2" in x]
    assert "models/text_encoder_2/model.safetensors" in line and "text_encoder2" in line


def test_import_and_help_do_not_load_huggingface_hub() -> None:
    code = (
        "import sys, fplora, fplora.cli\n"
        "from typer.testing import CliRunner, Result\n"
        "CliRunner().invoke(fplora.cli.app, ['--help'])\n"
        "CliRunner().invoke(fplora.cli.app, ['models', '--help'])\n"
        "assert 'huggingface_hub' not in sys.modules, 'imported at start-up'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_network_is_one_line_not_one_per_file_and_no_traceback(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused connection (or no DNS) raises the HTTP client's own error, not an OSError; every
    file failing the same way is one problem, the connection, said once with the endpoint."""
    import socket

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    for args in (["--dry-run"], []):
        result = cli("models", "fetch", "--dir", str(tmp_path / "models"), *args)
        assert result.exit_code == 1, result.output
        (error,) = [x for x in result.output.splitlines() if x.startswith("error:")]
        assert error.startswith(f"error: http://127.0.0.1:{port}: download failed: ConnectError")
        assert f"(every one of the {len(MODELS) + len(TOKENIZERS)} files)" in error
        assert error.endswith("— check the network and HF_ENDPOINT; run it again to resume")
        assert "Traceback" not in result.output
    assert not (tmp_path / "models").exists()


def test_a_file_where_the_models_folder_goes_is_one_line_before_any_download(
    hub: FakeHub, tmp_path: Path
) -> None:
    """FPLORA_MODELS_DIR naming a file: every download failed with NotADirectoryError, each told to
    "check the network and HF_ENDPOINT"."""
    models = tmp_path / "models.txt"
    models.write_text("", encoding="utf-8")
    result = cli("models", "fetch", "--dir", str(models))
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "error: models.txt: models folder: models.txt is a file, not a folder — name a folder (or move the"
        " file away): --dir or FPLORA_MODELS_DIR"
    ]
    assert not [r for r in hub.requests if "/resolve/" in r["path"]]


def test_a_full_disk_is_not_called_a_network_problem(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import huggingface_hub

    def full(*args: object, **kwargs: object) -> str:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "models" / "x"))

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", full)
    result = cli("models", "fetch", "--dir", str(tmp_path / "models"))
    assert result.exit_code == 1
    (error,) = [x for x in result.output.splitlines() if x.startswith("error:")]
    assert "download failed: cannot write it: No space left on device" in error
    assert error.endswith(
        "— free space in the models folder, or fetch into another (--dir or FPLORA_MODELS_DIR); run it"
        " again to resume"
    )


def test_check_of_a_folder_that_is_not_there_is_one_line_that_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mistyped FPLORA_MODELS_DIR is one line naming the folder and both ways out (fetch there,
    or point at the right folder), not one `not found` per model file, nor an `ok` for any."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    result = cli("models", "check", "--dir", str(tmp_path / "modles"))
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert (
        f"error: {tmp_path / 'modles'}: the models folder does not exist — run `fplora models fetch`"
        in (lines[0])
    )
    assert "point FPLORA_MODELS_DIR (or --dir) at the folder that holds them" in lines[0]
    assert lines[1] == (
        f"error: {TOKENIZERS[0].repo}: tokenizer: none of its {len(TOKENIZERS)} tokenizer files is in the"
        f" Hugging Face cache ({tmp_path / 'hub'}) — run `fplora models fetch`"
    )
    assert not any(line.startswith("ok ") for line in lines)
    assert not (tmp_path / "modles").exists()


def test_in_a_project_the_models_go_where_its_spec_looks(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`fplora init`'s next steps and base.yaml's comments let a user set models.dir in base.yaml:
    fetched without --dir, the models must land there, not in FPLORA_MODELS_DIR's default."""
    monkeypatch.setenv("FPLORA_MODELS_DIR", str(tmp_path / "elsewhere"))  # base.yaml below ignores it
    assert cli("init", str(tmp_path / "proj")).exit_code == 0
    base = tmp_path / "proj" / "configs" / "base.yaml"
    mine = tmp_path / "my models"
    base.write_text(
        base.read_text(encoding="utf-8").replace(
            "dir: ${FPLORA_MODELS_DIR:-/workspace/models}", f"dir: {mine}"
        ),
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path / "proj" / "datasets")  # from anywhere in the project
    fetched = cli("models", "fetch")
    assert fetched.exit_code == 0, fetched.output
    assert f"models folder: {mine} (models.dir of " in fetched.output and "configs/v1.yaml)" in fetched.output
    assert all((mine / item.local).is_file() for item in MODELS)
    assert cli("models", "check").exit_code == 0
    assert not (tmp_path / "elsewhere").exists()


def test_fetch_and_doctor_name_the_same_hub_cache(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """huggingface_hub takes HUGGINGFACE_HUB_CACHE (HF_HUB_CACHE's old name) before HF_HOME: the
    tokenizers go there, and doctor, which checks them, looks in the same folder."""
    from fplora.jobs.doctor import machine

    old_name = tmp_path / "old-name-cache"
    monkeypatch.setenv("HUGGINGFACE_HUB_CACHE", str(old_name))
    result = cli("models", "fetch", "--dir", str(tmp_path / "models"))
    assert result.exit_code == 0, result.output
    assert (old_name / "models--hunyuanvideo-community--HunyuanVideo" / "snapshots").is_dir()
    assert not (tmp_path / "hf-home" / "hub").exists()
    assert machine.hub_cache() == old_name
    (finding,) = machine._tokenizers()
    assert finding.severity == "ok" and str(old_name) in finding.message
