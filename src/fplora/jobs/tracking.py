"""`fplora eval`'s losses and the run's contact sheets into the training's wandb run.

The run is the one `render/tracker.py` names for the training's first segment (same project and
id), resumed; the worker (`worker/wandb_log.py`, run by the musubi-tuner Python, which has wandb when
the spec logs to it) logs each loss at its global step. Logging is a courtesy on top of the scores
fplora keeps itself: when it fails (no network, no login) the evaluation still succeeds, with a
warning naming the log.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from fplora import process
from fplora.atomic import write_atomic
from fplora.jobs.context import Job, log_path, log_tail
from fplora.problems import Problem, display_path, plural
from fplora.render import tracker
from fplora.runs.evaluation import Point
from fplora.runs.infer_folders import save_root
from fplora.sheet import sheet_dir
from fplora.spec.models import Spec

WANDB_WORKER = Path(__file__).resolve().parents[1] / "worker" / "wandb_log.py"
"""Package data run as a file by the musubi-tuner Python; no module of fplora imports it."""
RESULT_PREFIX = "fplora-wandb "


def _wandb_settings() -> dict[str, str]:
    """What `wandb offline`/`wandb disabled` and `wandb login --host` persist: the `[default]` section
    of the user's settings file (`$WANDB_CONFIG_DIR/settings`, else ~/.config/wandb/settings),
    overlaid by the workspace's (`wandb/settings` in the folder the run starts in)."""
    import configparser

    config_dir = os.environ.get("WANDB_CONFIG_DIR") or os.path.expanduser("~/.config/wandb")
    found: dict[str, str] = {}
    for path in (Path(config_dir) / "settings", Path.cwd() / "wandb" / "settings"):
        parser = configparser.ConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (OSError, configparser.Error):
            continue
        if parser.has_section("default"):
            found.update(parser["default"])
    return found


def wandb_host() -> str:
    """The host wandb logs in to: api.wandb.ai, or a self-hosted server's (WANDB_BASE_URL, else the
    `base_url` that `wandb login --host` kept in the settings)."""
    url = os.environ.get("WANDB_BASE_URL") or _wandb_settings().get("base_url") or "https://api.wandb.ai"
    return url.split("://")[-1].split("/")[0]


def _netrc_has(host: str) -> bool:
    """Whether ~/.netrc (or $NETRC) has credentials for `host`; the password is never read out."""
    import netrc

    path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_login() -> str | None:
    """How wandb would start without asking for a login (`WANDB_MODE=offline: no login needed`,
    `logged in (WANDB_API_KEY is set)`), or None when it would ask: unattended, musubi-tuner then
    fails at accelerate's init_trackers, after the models have loaded. Only whether a key or a
    netrc entry exists is read, never the key. `fplora doctor` and `fplora train` both ask this."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "disabled", "dryrun"):
        return f"WANDB_MODE={mode}: no login needed"
    kept = _wandb_settings().get("mode", "").lower()
    if not mode and kept in ("offline", "disabled", "dryrun"):
        return f"wandb {kept} (its settings file): no login needed"
    if os.environ.get("WANDB_API_KEY"):
        return "logged in (WANDB_API_KEY is set)"
    host = wandb_host()
    if _netrc_has(host):
        return f"logged in ({host} in ~/.netrc)"
    return None


def wandb_login_problem(spec: Spec) -> Problem | None:
    """The refusal of a run that logs to wandb without a login, before any GPU time is spent; `fplora
    doctor` shows the same problem, so the user meets one message and one fix."""
    if not spec.train.logging.to_wandb or wandb_login() is not None:
        return None
    return no_wandb_login(spec)


def no_wandb_login(spec: Spec) -> Problem:
    """What `wandb_login_problem` says, for a caller that already asked `wandb_login()`."""
    return spec.problem(
        ("train", "logging", "with"),
        f"logs to wandb, but no wandb login was found (no WANDB_API_KEY, no {wandb_host()} entry in"
        " ~/.netrc or $NETRC): musubi-tuner would fail at accelerate's init_trackers after the models load",
        "run `wandb login`, set WANDB_API_KEY, or set WANDB_MODE=offline",
    )


def sheets(spec: Spec) -> list[Path]:
    """The version's contact sheets (`fplora infer` / `fplora sheet`), one PNG per prompt."""
    folder = sheet_dir(save_root(spec), spec.version)
    return sorted(folder.glob("prompt*.png")) if folder.is_dir() else []


def payload(spec: Spec, points: list[Point], best: Point | None) -> dict[str, object]:
    """The worker's job: the run to resume and what to log into it."""
    scored = [{"label": p.label, "step": p.step, "loss": p.loss} for p in points if p.step is not None]
    found = sheets(spec)
    return {
        "project": tracker.project(spec),
        "id": tracker.run_id(spec),
        "name": tracker.run_name(spec),
        "group": spec.output_name,
        "tags": tracker.tags(spec),
        "points": scored,
        "best": {"label": best.label, "step": best.step, "loss": best.loss} if best else None,
        "sheets": [{"path": str(p), "caption": f"{spec.version} {p.stem}"} for p in found],
        "sheet_step": max((p.step for p in points if p.step is not None), default=0),
    }


def log_eval(job: Job, points: list[Point], best: Point | None, *, env: dict[str, str] | None = None) -> int:
    """Log the new scores (and the sheets) to the run; returns how many values went in, 0 on a
    failure, which is said as a warning and never fails the evaluation."""
    spec = job.plan.spec
    folder = spec.train.output_dir / "logs"
    job_file = folder / f"{spec.output_name}.wandb-eval.json"
    write_atomic(job_file, json.dumps(payload(spec, points, best), indent=1) + "\n")
    log = log_path(folder, "wandb")
    argv = [job.python, str(WANDB_WORKER), str(job_file)]
    job.show(argv)
    logged: list[int] = []

    def on_line(line: str) -> None:
        if line.startswith(RESULT_PREFIX):
            logged.append(int(json.loads(line[len(RESULT_PREFIX) :])["logged"]))

    with open(os.devnull, "wb") as quiet:
        result = process.run(argv, log=log, on_line=on_line, echo=quiet, env=env)
    if result.returncode != 0 or not logged:
        job.say(
            f"warning: evaluation losses not logged to wandb (exit {result.returncode});"
            f" log: {display_path(log)}",
            "yellow",
        )
        for line in log_tail(log, 3):
            job.say(f"  {line}", "yellow")
        return 0
    run = f"{tracker.run_id(spec)} ({tracker.project(spec)})"
    job.say(f"wandb: {plural(logged[0], 'value')} logged to run {run}")
    return logged[0]
