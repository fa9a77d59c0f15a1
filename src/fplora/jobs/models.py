"""`fplora models fetch` and `fplora models check`: the five models and the tokenizers, from the Hub.

Downloads go through huggingface_hub, imported only here and only when a command needs it, so that
`import fplora` and `fplora --help` stay fast. It brings what a user of the Hub expects: a dropped
transfer resumed from the bytes received (a `Range` request), Xet-stored files (the FramePack
repositories) fetched by chunks that its Xet cache keeps across runs, the token from `HF_TOKEN` (or
`hf auth login`; never from a spec), `HF_ENDPOINT` and `HF_HOME`/`HF_HUB_CACHE` read when the command
runs. Over plain HTTP, huggingface_hub 2.x starts a file again after the process was killed (it
removes its temporary file on any error it sees); `check` names what such a kill left.

The model files are written into `models.dir` in the layout base.yaml names
(`hf_hub_download(local_dir=...)` keeps the repository's subfolders), several at a time; the
tokenizers go into the Hub cache, where musubi-tuner's `from_pretrained` looks for them.

After a fetch, `<dir>/.fplora-models.json` records each file's size on the Hub, so that `check`
(which reads no network) can tell a partial file from a whole one besides reading its safetensors
header.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fplora.atomic import write_atomic
from fplora.check.models import file_problem
from fplora.musubi.hub import MODELS, TOKENIZERS, HubFile
from fplora.problems import Problem, UserError, byte_size, display_path, plural
from fplora.writable import folder_problem

SIZES = ".fplora-models.json"
WORKERS = 8
FIX_NETWORK = "check the network and HF_ENDPOINT; run it again to resume"
FIX_DISK = (
    "free space in the models folder, or fetch into another (--dir or FPLORA_MODELS_DIR);"
    " run it again to resume"
)
DISK_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR})

Say = Callable[[str], None]


DEFAULT_DIR = "/workspace/models"  # base.yaml's `${FPLORA_MODELS_DIR:-/workspace/models}`


def folder(given: Path | None, *, say: Say) -> Path:
    """Where the models go (and are checked): `--dir`, else in a project the `models.dir` of the spec
    a command there means, so that they land where `fplora check` and training look (a base.yaml
    that names its own folder, or FPLORA_MODELS_DIR through it), else FPLORA_MODELS_DIR, else
    /workspace/models. A spec that does not load yet is passed over: its own command says why."""
    if given is not None:
        return given
    from fplora.project import default_spec
    from fplora.spec import load_spec

    try:
        spec = load_spec(default_spec().path)
    except UserError:
        spec = None
    if spec is not None and spec.models.dir is not None:
        say(f"models folder: {display_path(spec.models.dir)} (models.dir of {display_path(spec.path)})")
        return spec.models.dir
    return Path(os.environ.get("FPLORA_MODELS_DIR") or DEFAULT_DIR)


def _where(item: HubFile, folder: Path) -> Path:
    return folder / item.local


def _error(item: HubFile, exc: Exception) -> Problem:
    """One line for a failed request: what the Hub said, and what to do."""
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    if isinstance(exc, GatedRepoError):
        what, fix = (
            "gated: access must be granted on the Hub",
            "accept its terms on the Hub, then set HF_TOKEN",
        )
    elif isinstance(exc, RepositoryNotFoundError):
        what, fix = "repository not found (or private)", "set HF_TOKEN to a token that can read it"
    elif isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else "?"
        what = f"HTTP {status}"
        fix = "set HF_TOKEN" if status in (401, 403) else FIX_NETWORK
    elif isinstance(exc, OSError) and exc.errno in DISK_ERRORS:
        # the disk, not the network: a full disk was told to "check the network"
        what, fix = f"cannot write it: {os.strerror(exc.errno)}", FIX_DISK
    else:
        what, fix = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", FIX_NETWORK
    return Problem(f"{item.repo}/{item.filename}", None, "", f"download failed: {what}", fix)


def _grouped(problems: list[Problem], asked: int) -> list[Problem]:
    """One line when every file asked for failed the same way (no network, no DNS, a proxy
    refusing): the problem is the connection, and seventeen copies of it hide that; else one line
    per file that failed."""
    said = {(p.message, p.fix) for p in problems}
    if len(problems) < 2 or len(problems) != asked or len(said) > 1:
        return problems
    ((message, fix),) = said
    where = _endpoint() or "https://huggingface.co"
    return [Problem(where, None, "", f"{message} (every one of the {asked} files)", fix)]


def _endpoint() -> str | None:
    """`HF_ENDPOINT` as it is now (huggingface_hub reads it once, when imported)."""
    return os.environ.get("HF_ENDPOINT") or None


def hf_home() -> Path:
    """Hugging Face's home folder as the environment says now: HF_HOME, else huggingface under
    XDG_CACHE_HOME (~/.cache). The Hub cache is under it, and so is accelerate's default config."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(os.path.expanduser(os.environ.get("HF_HOME") or os.path.join(cache, "huggingface")))


def hub_cache() -> Path:
    """Where huggingface_hub keeps downloaded repos, as the environment says now (huggingface_hub
    reads it once, when imported): HF_HUB_CACHE (or its old name HUGGINGFACE_HUB_CACHE), else
    `hf_home()`/hub. `models fetch` downloads there and `doctor` looks there, so both name the same
    folder."""
    given = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    return Path(os.path.expanduser(given)) if given else hf_home() / "hub"


def _request_errors() -> tuple[type[Exception], ...]:
    """What a failed Hub request raises: OSError (huggingface_hub's HTTP errors) and its HTTP client's
    transport errors (httpx in huggingface_hub 1.x, httpx2 in 2.x: no DNS, a refused connection, a
    timeout), which are not OSErrors."""
    import contextlib
    import importlib

    errors: list[type[Exception]] = [OSError]
    for name in ("httpx2", "httpx"):
        with contextlib.suppress(ImportError):
            errors.append(importlib.import_module(name).HTTPError)
    return tuple(errors)


def _sizes(items: list[HubFile]) -> tuple[dict[HubFile, int], list[Problem]]:
    """Each file's size on the Hub (one HEAD request each, in parallel), and a problem per file the
    Hub did not answer for."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    failed = _request_errors()

    def one(item: HubFile) -> int | Problem:
        try:
            return get_hf_file_metadata(hf_hub_url(item.repo, item.filename, endpoint=_endpoint())).size or 0
        except failed as exc:
            return _error(item, exc)

    with ThreadPoolExecutor(WORKERS) as pool:
        answers = dict(zip(items, pool.map(one, items), strict=True))
    sizes = {item: size for item, size in answers.items() if isinstance(size, int)}
    return sizes, [p for p in answers.values() if isinstance(p, Problem)]


def fetch(folder: Path, *, dry_run: bool, say: Say) -> int:
    """Download every model file into `folder` and the tokenizers into the Hub cache."""
    from huggingface_hub import hf_hub_download

    if wrong := folder_problem(folder):
        # a file (or an unwritable folder) where the models go: each download failed with
        # NotADirectoryError, said as "check the network and HF_ENDPOINT", once per file
        raise UserError(
            Problem(
                display_path(folder),
                None,
                "models folder",
                wrong[0],
                f"{wrong[1]}: --dir or FPLORA_MODELS_DIR",
            )
        )
    items = [*MODELS, *TOKENIZERS]
    sizes, problems = _sizes(items)
    if problems:
        raise UserError(_grouped(problems, len(items)))
    total = sum(sizes.values())
    for item in items:
        target = "Hub cache" if item.in_cache else display_path(_where(item, folder))
        say(f"{item.repo}/{item.filename} → {target} ({byte_size(sizes[item])})")
    say(
        f"{plural(len(items), 'file')}, {byte_size(total)}"
        + (" (dry run: nothing downloaded)" if dry_run else "")
    )
    if dry_run:
        return 0

    failed_request = _request_errors()

    def download(item: HubFile) -> Problem | None:
        try:
            if item.in_cache:
                hf_hub_download(item.repo, item.filename, endpoint=_endpoint(), cache_dir=str(hub_cache()))
            else:
                hf_hub_download(
                    item.repo, item.filename, local_dir=_local_dir(folder, item), endpoint=_endpoint()
                )
        except failed_request as exc:
            return _error(item, exc)
        return None

    with ThreadPoolExecutor(WORKERS) as pool:
        failed = [p for p in pool.map(download, items) if p is not None]
    if failed:
        raise UserError(_grouped(failed, len(items)))
    write_atomic(folder / SIZES, json.dumps({i.local: sizes[i] for i in MODELS}, indent=1) + "\n")
    found = check(folder, say=lambda _: None)
    if found:
        raise UserError(found)
    say(f"models ready in {display_path(folder)}; tokenizers in the Hub cache")
    return 0


def check(folder: Path, *, say: Say) -> list[Problem]:
    """Each model file present, of the size the Hub gave at fetch, a whole safetensors file; each
    tokenizer file in the Hub cache. Reads no network."""
    from huggingface_hub import try_to_load_from_cache

    try:
        recorded = json.loads((folder / SIZES).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = {}
    problems: list[Problem] = []
    if not folder.is_dir():
        problems.append(
            Problem(
                display_path(folder),
                None,
                "",
                "the models folder does not exist",
                "run `fplora models fetch` to download the models there, or point FPLORA_MODELS_DIR"
                " (or --dir) at the folder that holds them",
            )
        )
    for item in MODELS if folder.is_dir() else []:
        path = _where(item, folder)
        partial = _partial(folder, item)
        if not path.exists() and partial is not None:
            problems.append(
                Problem(
                    display_path(path),
                    None,
                    item.key,
                    f"an interrupted download left {byte_size(partial)}",
                    "run `fplora models fetch` again",
                )
            )
            continue
        found = file_problem(path)
        if found is None and recorded.get(item.local) not in (None, path.stat().st_size):
            found = (
                f"{display_path(path)} is {byte_size(path.stat().st_size)},"
                f" the Hub's file is {byte_size(recorded[item.local])}",
                "run `fplora models fetch` again",
            )
        if found is not None:
            shown = display_path(path)  # the line starts with the path: said once, not twice
            problems.append(
                Problem(
                    shown,
                    None,
                    item.key,
                    found[0].removeprefix(f"{shown} "),
                    found[1] if "not found" not in found[0] else "run `fplora models fetch`",
                )
            )
    absent = [
        item
        for item in TOKENIZERS
        if not isinstance(try_to_load_from_cache(item.repo, item.filename, cache_dir=str(hub_cache())), str)
    ]
    if absent and len(absent) == len(TOKENIZERS) and len({i.repo for i in absent}) == 1:
        problems.append(  # none there: one line, with the folder looked in (HF_HOME may be elsewhere)
            Problem(
                absent[0].repo,
                None,
                "tokenizer",
                f"none of its {len(absent)} tokenizer files is in the Hugging Face cache"
                f" ({display_path(hub_cache())})",
                "run `fplora models fetch`",
            )
        )
        absent = []
    for item in absent:
        problems.append(
            Problem(
                f"{item.repo}/{item.filename}",
                None,
                "tokenizer",
                "not in the Hugging Face cache (HF_HOME)",
                "run `fplora models fetch`",
            )
        )
    for item in MODELS if folder.is_dir() else []:
        if not any(p.file == display_path(_where(item, folder)) for p in problems):
            say(f"ok {display_path(_where(item, folder))}")
    return problems


def _partial(folder: Path, item: HubFile) -> int | None:
    """Bytes of an interrupted download of `item`, or None. huggingface_hub keeps it under
    `<local_dir>/.cache/huggingface/download/<subfolder>/` as `<hash>.<etag>.incomplete`, the hash
    being of `<name>.metadata`, and resumes from it; read here without creating any folder."""
    from huggingface_hub._local_folder import LocalDownloadFilePaths

    metadata = _local_dir(folder, item) / ".cache" / "huggingface" / "download" / f"{item.filename}.metadata"
    paths = LocalDownloadFilePaths(file_path=metadata, lock_path=metadata, metadata_path=metadata)
    pattern = paths.incomplete_path("ETAG")
    if not pattern.parent.is_dir():
        return None
    sizes = [p.stat().st_size for p in pattern.parent.glob(pattern.name.replace("ETAG", "*"))]
    return max(sizes) if sizes else None


def _local_dir(folder: Path, item: HubFile) -> Path:
    return folder / item.folder if item.folder else folder
