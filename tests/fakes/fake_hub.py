"""A tiny stand-in for the Hugging Face Hub, for `fplora models` tests: never the network.

Serves `HEAD`/`GET /{org}/{repo}/resolve/{revision}/{path}` as the Hub does for a file (the
`X-Repo-Commit` and `ETag` headers huggingface_hub needs, `Content-Length`, `Range` requests for
a transfer dropped part-way and resumed), from a dict of repositories `{repo: {path: bytes}}`. Point `HF_ENDPOINT` at
`FakeHub.url`. Records every request (method, path, Authorization header) for the tests.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

COMMIT = "0" * 39 + "1"
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


@dataclass
class FakeHub:
    repos: dict[str, dict[str, bytes]]
    requests: list[dict[str, Any]] = field(default_factory=list)
    fail: dict[str, int] = field(default_factory=dict)  # path → HTTP status to answer with
    fail_get_only: bool = False  # answer HEAD for the paths in `fail`, fail only their download
    cut: dict[str, int] = field(default_factory=dict)  # path → bytes sent before the next GET drops
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, body: bool) -> None:
                hub.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "auth": self.headers.get("Authorization"),
                        "range": self.headers.get("Range"),
                    }
                )
                match = _RESOLVE.match(self.path.split("?", 1)[0])
                data = hub.repos.get(match["repo"], {}).get(match["path"]) if match else None
                if match and match["path"] in hub.fail and (body or not hub.fail_get_only):
                    self.send_response(hub.fail[match["path"]])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if data is None:
                    self.send_response(404)
                    self.send_header(
                        "X-Error-Code",
                        "EntryNotFound" if match and match["repo"] in hub.repos else "RepoNotFound",
                    )
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = 0
                ranged = self.headers.get("Range")
                if ranged and (found := re.match(r"bytes=(\d+)-", ranged)):
                    start = int(found.group(1))
                part = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(part)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if body and match["path"] in hub.cut:
                    self.wfile.write(part[: hub.cut.pop(match["path"])])
                    self.wfile.flush()
                    self.close_connection = True  # fewer bytes than Content-Length: a dropped transfer
                    return
                if body:
                    self.wfile.write(part)

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def safetensors_file(name: str, padding: int) -> bytes:
    """A whole safetensors file: one uint8 tensor of `padding` bytes, named in its metadata."""
    header = json.dumps(
        {
            "__metadata__": {"stand_in": name},
            "t": {"dtype": "U8", "shape": [padding], "data_offsets": [0, padding]},
        }
    ).encode()
    return struct.pack("<Q", len(header)) + header + b"\0" * padding


def hub_files() -> dict[str, dict[str, bytes]]:
    """The five models' files and the tokenizers, tiny, in the real repositories' layout."""
    from fplora.musubi.hub import MODELS, TOKENIZERS

    repos: dict[str, dict[str, bytes]] = {}
    for number, item in enumerate(MODELS):
        repos.setdefault(item.repo, {})[item.filename] = safetensors_file(item.filename, 1000 + number)
    for item in TOKENIZERS:
        repos.setdefault(item.repo, {})[item.filename] = json.dumps({"file": item.filename}).encode()
    return repos


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """The fake Hub on localhost, `HF_ENDPOINT` pointing at it, the Hub cache under tmp_path."""
    fake = FakeHub(hub_files()).start()
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.chdir(tmp_path)
    yield fake
    fake.stop()
