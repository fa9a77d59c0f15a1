"""The one row runner of the rehearsal matrices (rehearse_matrix.py: the training side,
rehearse_matrix_data.py: the data and inference side), so both read a rehearsal's output, key their
state and record their results the same way.

A row is a one-line change of the repo's example project (configs/example.yaml, datasets/example),
written as a child spec (`extends: example.yaml`), with the verdict expected from reading
musubi-tuner 30c658c4's source: `pass` (it runs, and writes what it should, on a GPU), `fail` or
`fail:<stage>` (it dies there, or writes nothing while exiting 0: the rehearsal must fail, at that
stage where one is named; `check` refusing it is a match too), `machine` (valid on a GPU, but this
machine cannot run that code path: the rehearsal must say so as the machine's, never as a spec
mistake).

Rows run one after another (each rehearsal is ~35-60 s of a 2-core CPU). Their results are kept in
`--state` (default /tmp/fplora-<matrix>/state.json); a row runs again only when its spec text or
fplora's rehearsal code (CODE) changed, or with `--rerun`. `--src` runs another fplora source (an
unpacked older commit) and `--before` records its verdicts as those before a fix, beside the current
ones. Prints a table; `--write` records the matrix in benchmarks/results/<matrix>-<date>.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CODE = [
    "jobs/rehearse",
    "worker/rehearse.py",
    "worker/rehearse_standins.py",
    "spec/rules",
    "render/prompts.py",
    "render/commands.py",
]
"""fplora's files and packages (under src/fplora) whose change makes a recorded row stale."""
FIELDS = ("verdict", "before")
"""A row's two recorded runs: with `--src` as given (the verdict), and with `--before`."""


@dataclass(frozen=True)
class Row:
    id: str
    spec: str  # YAML lines added to `extends: example.yaml`
    expected: str  # pass | fail | fail:<stage> | machine
    why: str  # what musubi-tuner's source says (pinned commit)


def verdict(code: int, output: str) -> str:
    """What `fplora rehearse` said: `machine` when a stage was not rehearsed for this machine's sake
    (its `  --   <stage>: not rehearsed: ...` lines; a note such as torch.compile's "not rehearsed
    here" is not one), `pass`, or `fail:<stage>` (`fail` where no stage is named)."""
    if "not a mistake in the spec" in output or re.search(r"^\s+--\s+\S+: not rehearsed", output, re.M):
        return "machine"
    if code == 0 and ("rehearsal passed" in output or "not run again" in output):
        return "pass"
    stage = re.search(r"rehearsal failed at stage (\S+)", output)
    return f"fail:{stage.group(1)}" if stage else "fail"


def matches(got: str, expected: str) -> bool:
    """`fail` expects a failure at any stage; `check` refusing (`refused`) matches any failure."""
    if got == expected:
        return True
    failed = got == "refused" or got.startswith("fail")
    return failed and (expected == "fail" or (got == "refused" and expected.startswith("fail:")))


def first_error(output: str) -> str:
    """The line that says why: for the first stage that failed, musubi-tuner's own error (fplora's
    summary of the stage may say no more than `exit 1`), else that summary; where none failed, what
    was not rehearsed, or any error line (check's)."""
    failed = re.search(r"^rehearsal failed at stage \S+ \(.*?\): (.*)$", output, re.MULTILINE)
    if failed:
        block = output[failed.end() :].split("rehearsal failed at stage", 1)[0]
        own = re.search(r"musubi-tuner: (.*)", block)
        return (own or failed).group(1).strip()[:160]
    for pattern in (r"musubi-tuner: (.*)", r"not rehearsed: (.*)", r"^(.*(?:error|Error).*)$"):
        found = re.search(pattern, output, re.MULTILINE)
        if found:
            return found.group(1).strip()[:160]
    return ""


def _code_key(src: Path) -> str:
    digest = hashlib.sha256()
    for name in CODE:
        path = src / "fplora" / name
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            digest.update(file.read_bytes() if file.is_file() else name.encode())
    return digest.hexdigest()[:16]


def _project(root: Path) -> Path:
    if not (root / "configs" / "example.yaml").exists():
        (root / "configs").mkdir(parents=True, exist_ok=True)
        for name in ("base.yaml", "example.yaml"):
            shutil.copy(REPO / "configs" / name, root / "configs" / name)
        shutil.copytree(REPO / "datasets" / "example", root / "datasets" / "example")
    return root / "configs"


def _fplora(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "fplora", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


def _load(path: Path) -> dict[str, dict[str, object]]:
    """The kept state; a row recorded in an older format (no `<field>_key`) is left to run again."""
    if not path.exists():
        return {}
    loaded: dict[str, dict[str, object]] = json.loads(path.read_text(encoding="utf-8"))
    return {k: v for k, v in loaded.items() if any(f"{f}_key" in v for f in FIELDS)}


def _run(
    row: Row, text: str, options: argparse.Namespace, configs: Path, env: dict[str, str]
) -> dict[str, object]:
    """`check`, then (where it accepts the spec) the rehearsal: the row's recorded fields."""
    spec = configs / f"{row.id}.yaml"
    spec.write_text(text, encoding="utf-8")
    root = configs.parent
    check_code, output, _ = _fplora(["check", str(spec), "--skip-models"], root, env)
    seconds = 0.0
    got = "refused"
    if check_code == 0:
        limit = ["--time-limit", str(options.time_limit)]
        rcode, output, seconds = _fplora(["rehearse", str(spec), "--force", *limit], root, env)
        got = verdict(rcode, output)
    field = "before" if options.before else "verdict"
    (options.state.parent / f"{row.id}-{field}.log").write_text(output, encoding="utf-8")
    return {
        "spec": row.spec,
        "expected": row.expected,
        # each run's own check: a `--before` run never overwrites the current fplora's
        ("before_check" if options.before else "check"): "ok" if check_code == 0 else "refused",
        field: got,
        f"{field}_error": first_error(output),
        f"{field}_seconds": round(seconds, 1),
    }


def _table(rows: list[Row], state: dict[str, dict[str, object]]) -> None:
    print(f"{'setting':24} {'check':8} {'before':18} {'now':18} {'expected':18} match  first error line")
    mismatches = 0
    for row in rows:
        got = state.get(row.id, {})
        if "verdict" not in got and "before" not in got:
            continue
        now = str(got.get("verdict", "-"))
        match = matches(now, row.expected)
        mismatches += "verdict" in got and not match
        error = got.get("verdict_error" if "verdict" in got else "before_error") or ""
        checked, before = got.get("check", "-"), got.get("before", "-")
        print(
            f"{row.id:24} {checked!s:8} {before!s:18} {now:18} {row.expected:18}"
            f" {'yes' if match else 'NO':5}  {error}"
        )
    print(f"\n{mismatches} mismatch(es) of {sum('verdict' in state.get(r.id, {}) for r in rows)} rows")


def _write(name: str, rows: list[Row], python: str, state: dict[str, dict[str, object]]) -> None:
    sys.path.insert(0, str(REPO / "src"))
    from harness.provenance import measured_on

    recorded = []
    for row in rows:
        got = state.get(row.id)
        if got is not None:
            fields = {k: v for k, v in got.items() if not k.endswith("_key")}
            match = matches(str(got.get("verdict")), row.expected)
            recorded.append(
                {"id": row.id, "why": row.why, **fields, "expected": row.expected, "match": match}
            )
    result = {
        **measured_on(python),
        "before": "a row's verdict with an older fplora (--src, --before: before a fix), where run",
        "rows": recorded,
    }
    out = REPO / "benchmarks" / "results" / f"{name}-{datetime.now(UTC):%Y%m%d}.json"
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"written {out.relative_to(REPO)}")


def main(name: str, doc: str, rows: list[Row], argv: list[str] | None = None) -> int:
    """Run a matrix's rows (`name`: its results' and state's name, `doc`: its script's docstring)."""
    parser = argparse.ArgumentParser(
        description=doc.splitlines()[0], epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--python", default=os.environ.get("FPLORA_MUSUBI_PYTHON", "/tmp/fplora-musubi-venv/bin/python")
    )
    parser.add_argument("--state", type=Path, default=Path(f"/tmp/fplora-{name}/state.json"))
    parser.add_argument("--only", default="", help="comma-separated row ids")
    parser.add_argument("--rerun", action="store_true", help="run the chosen rows even when recorded")
    parser.add_argument("--write", action="store_true", help="record the matrix in benchmarks/results/")
    parser.add_argument(
        "--src",
        type=Path,
        default=REPO / "src",
        help="the fplora source to run (e.g. an unpacked older commit, for the verdicts before a fix)",
    )
    parser.add_argument(
        "--time-limit", type=int, default=150, help="seconds a stage may take (a hang costs this much)"
    )
    parser.add_argument("--before", action="store_true", help="record the verdicts as those before the fixes")
    options = parser.parse_args(argv)
    only = {s for s in options.only.split(",") if s}
    unknown = only - {r.id for r in rows}
    if unknown:
        parser.error(f"--only: no such row: {', '.join(sorted(unknown))}")
    state = _load(options.state)
    options.state.parent.mkdir(parents=True, exist_ok=True)
    root = options.state.parent / "project"
    configs = _project(root)
    env = {**os.environ, "FPLORA_MUSUBI_PYTHON": options.python, "HF_HUB_OFFLINE": "1"}
    env["FPLORA_MODELS_DIR"] = str(root / "no-models")
    env["PYTHONPATH"] = str(options.src.resolve())
    code = _code_key(options.src)
    field = "before" if options.before else "verdict"
    for row in rows:
        if only and row.id not in only:
            continue
        text = f"extends: example.yaml\n{row.spec}\n"
        key = hashlib.sha256(f"{text}{code}".encode()).hexdigest()[:16]
        recorded = state.setdefault(row.id, {})
        if not options.rerun and recorded.get(f"{field}_key") == key:
            continue
        recorded.update(_run(row, text, options, configs, env), **{f"{field}_key": key})
        options.state.write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")
        seconds = recorded[f"{field}_seconds"]
        checked = recorded["before_check" if options.before else "check"]
        print(f"{row.id}: check {checked}, {recorded[field]} ({seconds} s)", flush=True)
    print()
    _table(rows, state)
    if options.write:
        _write(name, rows, options.python, state)
    return 0
