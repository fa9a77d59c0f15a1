"""The fake musubi-tuner behind `fake_python`: checks a launch like the real parsers, then emulates it.

- Checked as strictly as the real parsers would (stricter where the real ones are silent): accelerate's
  options against `src/fplora/musubi/accelerate-launch.json` (exact strings: accelerate sets
  allow_abbrev=False), the script's flags against `schema.json` (exact strings too, although
  musubi-tuner's argparse would take an abbreviation), `fpack_train_network`'s `--config_file` TOML key
  by key (musubi-tuner ignores a misspelt key without a word and skips type conversion), and the
  dataset TOML against musubi-tuner's dataset schema. A violation prints the problem and exits 2, like
  argparse.
- Emulated: the files the real scripts write appear under musubi-tuner's own names (caches,
  `-stepNNNNNNNN` checkpoints and state folders, training samples, one-frame generate outputs), with
  the same traps (a resumed run counts steps from 0 again; an fp32 LoRA makes every generate prompt
  fail while the process still exits 0).

Stdlib only. The tests import this module too (`from fakes import fake`), so that `--dry-run` output
is checked by the same `validate` function that guards the fake's own runs. The environment knobs are
listed in `fake_python`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import sys
import time
import tomllib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCHEMA_DIR = Path(os.environ.get("FAKE_SCHEMA_DIR") or HERE.parents[1] / "src" / "fplora" / "musubi")
LAUNCH_MODULE = "accelerate.commands.launch"
SCRIPT_PREFIX = "musubi_tuner."
NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")  # argparse's _negative_number_matcher


class Violation(Exception):
    """A command-line or config mistake the real parsers (or fplora's promises) reject: exit 2."""


class Failure(Exception):
    """A run-time failure of the emulated script (missing cache, missing file): exit `code`."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------------------------
# The interface: options from the bundled snapshots
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Opt:
    """One argparse option, reduced to what parsing needs."""

    dest: str
    flags: tuple[str, ...]
    kind: str  # "store", "store_true", "store_const", "append"
    type: str | None
    nargs: Any
    choices: tuple[Any, ...] | None
    required: bool
    default: Any

    @property
    def takes_value(self) -> bool:
        return self.kind in ("store", "append")

    @property
    def is_list(self) -> bool:
        return self.nargs in ("*", "+") or (isinstance(self.nargs, int) and self.nargs >= 1)


_KINDS = {
    "_StoreAction": "store",
    "store": "store",
    "_StoreTrueAction": "store_true",
    "store_true": "store_true",
    "_StoreConstAction": "store_const",
    "_AppendAction": "append",
}


def _opt(raw: dict[str, Any]) -> Opt:
    kind = "store_true" if raw.get("store_true") else _KINDS.get(raw.get("action", "store"), "")
    if not kind:
        raise RuntimeError(f"fake_python: unknown argparse action {raw.get('action')!r} for {raw['dest']}")
    return Opt(
        dest=raw["dest"],
        flags=tuple(raw["option_strings"]),
        kind=kind,
        type=raw.get("type"),
        nargs=raw.get("nargs") if kind in ("store", "append") else 0,
        choices=tuple(raw["choices"]) if raw.get("choices") else None,
        required=bool(raw.get("required")),
        default=raw.get("default"),
    )


_CACHE: dict[str, Any] = {}


def schema() -> dict[str, Any]:
    if "schema" not in _CACHE:
        _CACHE["schema"] = json.loads((SCHEMA_DIR / "schema.json").read_text(encoding="utf-8"))
    return _CACHE["schema"]


def accelerate_options() -> dict[str, Opt]:
    """accelerate launch's options by option string."""
    if "accelerate" not in _CACHE:
        raw = json.loads((SCHEMA_DIR / "accelerate-launch.json").read_text(encoding="utf-8"))
        _CACHE["accelerate"] = {flag: _opt(o) for o in raw["options"] for flag in o["option_strings"]}
    return _CACHE["accelerate"]


def script_options(script: str) -> dict[str, Opt]:
    """A musubi-tuner script's options by option string."""
    key = f"script:{script}"
    if key not in _CACHE:
        raw = schema()["scripts"][script]["options"]
        _CACHE[key] = {flag: _opt(o) for o in raw for flag in o["option_strings"]}
    return _CACHE[key]


def options_by_dest(script: str) -> dict[str, Opt]:
    return {o.dest: o for o in script_options(script).values()}


# ---------------------------------------------------------------------------------------------
# argparse-like parsing
# ---------------------------------------------------------------------------------------------


def _looks_like_option(token: str) -> bool:
    return token.startswith("-") and len(token) > 1 and not NEGATIVE_NUMBER.match(token)


def convert(opt: Opt, raw: str, flag: str) -> Any:
    """argparse's type conversion and choices check for one value."""
    value: Any = raw
    try:
        if opt.type == "int":
            value = int(raw)
        elif opt.type == "float":
            value = float(raw)
        elif opt.type == "_int_or_float":
            value = float(raw) if "." in raw or "e" in raw.lower() else int(raw)
    except ValueError:
        raise Violation(f"argument {flag}: invalid {opt.type} value: {raw!r}") from None
    if opt.choices is not None and value not in opt.choices:
        shown = ", ".join(repr(c) for c in opt.choices)
        raise Violation(f"argument {flag}: invalid choice: {value!r} (choose from {shown})")
    return value


def parse_options(
    tokens: Sequence[str], options: dict[str, Opt], *, stop_at_positional: bool
) -> tuple[dict[str, Any], list[str], int]:
    """Parse `tokens` like argparse with exact option strings.

    Returns (dest → value for what was given, the given flags in order, index where parsing
    stopped). With `stop_at_positional` the first non-option token ends parsing (accelerate's
    training script); otherwise any stray token is an error. A repeated option is an error too:
    argparse keeps the last one silently, which would hide a rendered value being overridden.
    """
    given: dict[str, Any] = {}
    seen: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not _looks_like_option(token):
            if stop_at_positional:
                return given, seen, i
            raise Violation(f"unrecognized arguments: {token}")
        flag, explicit = token, None
        if token.startswith("--") and "=" in token:
            flag, explicit = token.split("=", 1)
        opt = options.get(flag)
        if opt is None:
            near = sorted(f for f in options if f.startswith(flag))
            hint = f" (an abbreviation of {', '.join(near)}? give the whole option)" if near else ""
            raise Violation(f"unrecognized arguments: {token}{hint}")
        if opt.dest in given and opt.kind != "append":
            raise Violation(f"argument {flag}: given more than once")
        i += 1
        if not opt.takes_value:
            if explicit is not None:
                raise Violation(f"argument {flag}: ignored explicit argument {explicit!r}")
            given[opt.dest] = True if opt.kind == "store_true" else opt.default is not True
            seen.append(flag)
            continue
        values: list[str] = []
        if explicit is not None:
            values = [explicit]
        elif opt.nargs in (None, "?"):
            if i < len(tokens) and not _looks_like_option(tokens[i]):
                values = [tokens[i]]
                i += 1
        else:
            while i < len(tokens) and not _looks_like_option(tokens[i]):
                if isinstance(opt.nargs, int) and len(values) == opt.nargs:
                    break
                values.append(tokens[i])
                i += 1
        if opt.nargs is None and len(values) != 1:
            raise Violation(f"argument {flag}: expected one argument")
        if isinstance(opt.nargs, int) and opt.nargs > 0 and len(values) != opt.nargs:
            raise Violation(f"argument {flag}: expected {opt.nargs} arguments")
        if opt.nargs == "+" and not values:
            raise Violation(f"argument {flag}: expected at least one argument")
        converted = [convert(opt, v, flag) for v in values]
        if opt.kind == "append":
            given.setdefault(opt.dest, []).append(converted[0])
        else:
            given[opt.dest] = converted if opt.is_list else converted[0]
        seen.append(flag)
    return given, seen, len(tokens)


# ---------------------------------------------------------------------------------------------
# TOML files: fpack_train_network's --config_file and the dataset config
# ---------------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fits(type_name: str | None, value: Any) -> bool:
    if type_name == "int":
        return _is_int(value)
    if type_name in ("float", "_int_or_float"):
        return _is_int(value) or isinstance(value, float)
    return isinstance(value, str)


def toml_value_problem(opt: Opt, value: Any) -> str | None:
    """Why a TOML value does not fit `opt` (TOML values skip argparse's conversion and choices)."""
    if opt.kind == "store_true":
        return None if isinstance(value, bool) else f"expects a boolean, got {value!r}"
    if opt.is_list:
        if not isinstance(value, list):
            return f"expects an array (nargs={opt.nargs!r}), got {value!r}"
        bad = [v for v in value if not _fits(opt.type, v)]
        if bad:
            return f"expects an array of {opt.type or 'str'}, got {bad[0]!r}"
        if isinstance(opt.nargs, int) and len(value) != opt.nargs:
            return f"expects {opt.nargs} values, got {len(value)}"
        return None
    if not _fits(opt.type, value):
        return f"expects {opt.type or 'str'}, got {type(value).__name__} {value!r}"
    if opt.choices is not None and value not in opt.choices:
        return f"{value!r} is not one of {', '.join(map(str, opt.choices))}"
    return None


def read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise Failure(f"{what} not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise Violation(f"{what} {path} is not valid TOML: {exc}") from None


def config_file_values(config_file: str, cwd: Path) -> dict[str, Any]:
    """`--config_file` as musubi-tuner reads it (`.toml` appended, tables flattened), checked key by key."""
    path = Path(config_file if config_file.endswith(".toml") else config_file + ".toml")
    path = path if path.is_absolute() else cwd / path
    data = read_toml(path, "--config_file")
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            for inner, inner_value in value.items():
                if isinstance(inner_value, dict):
                    raise Violation(
                        f"{path}: [{key}.{inner}] nests tables two deep; musubi-tuner flattens one"
                    )
                flat[inner] = inner_value
        else:
            flat[key] = value
    known = options_by_dest("fpack_train_network")
    for key, value in flat.items():
        opt = known.get(key)
        if opt is None:
            raise Violation(
                f"{path}: {key} is not an option of fpack_train_network (musubi-tuner would ignore it silently)"
            )
        problem = toml_value_problem(opt, value)
        if problem:
            raise Violation(f"{path}: {key} {problem}")
    return flat


_DATASET_TYPES = {
    "str": lambda v: isinstance(v, str),
    "int": _is_int,
    "bool": lambda v: isinstance(v, bool),
    "float": lambda v: isinstance(v, float),
    "list[int]": lambda v: isinstance(v, list) and all(_is_int(x) for x in v),
    "int | [int, int]": lambda v: (
        _is_int(v) or (isinstance(v, list) and len(v) == 2 and all(map(_is_int, v)))
    ),
}


@dataclass
class Record:
    image: Path
    controls: list[Path]
    caption: str


@dataclass
class DatasetEntry:
    cache_directory: Path
    records: list[Record]
    settings: dict[str, Any]


def _resolve(path: str, cwd: Path) -> Path:
    """musubi-tuner opens dataset paths against its working directory."""
    candidate = Path(path)
    return candidate if candidate.is_absolute() else cwd / candidate


def _read_jsonl(path: Path, cwd: Path) -> list[Record]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise Failure(f"image_jsonl_file not found: {path}") from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        item = json.loads(line)
        controls = [
            _resolve(item[key], cwd)
            for key in sorted(
                (k for k in item if k.startswith("control_path")),
                key=lambda k: int(k.rsplit("_", 1)[1]) if k[-1].isdigit() else 0,
            )
        ]
        image = _resolve(item["image_path"], cwd)
        for needed in (image, *controls):
            if not needed.is_file():
                raise Failure(f"{path}:{number}: image not found: {needed} (resolved against {cwd})")
        records.append(Record(image, controls, item.get("caption", "")))
    return records


def dataset_config(path_text: str, cwd: Path, *, one_frame: bool) -> list[DatasetEntry]:
    """The dataset TOML checked like musubi-tuner's voluptuous schema, with each JSONL read."""
    path = _resolve(path_text, cwd)
    data = read_toml(path, "--dataset_config")
    config = schema()["dataset_config"]
    for key in data:
        if key not in ("general", "datasets"):
            raise Violation(f"{path}: unknown top-level key {key!r}")
    general = data.get("general", {})
    for key, value in general.items():
        if key not in config["general"]:
            raise Violation(f"{path}: [general] {key} is not allowed there")
        type_name = config["general"][key]["type"]
        if not _DATASET_TYPES[type_name](value):
            raise Violation(f"{path}: [general] {key} expects {type_name}, got {value!r}")
    entries = []
    for index, raw in enumerate(data.get("datasets", [])):
        table = config["video_dataset"] if "video_jsonl_file" in raw or "video_directory" in raw else None
        table = table or config["image_dataset"]
        for key, value in raw.items():
            if key not in table:
                raise Violation(f"{path}: datasets[{index}].{key} is not a dataset key")
            if not _DATASET_TYPES[table[key]["type"]](value):
                raise Violation(
                    f"{path}: datasets[{index}].{key} expects {table[key]['type']}, got {value!r}"
                )
        if "image_jsonl_file" not in raw:
            raise Violation(
                f"{path}: datasets[{index}] has no image_jsonl_file (fplora writes JSONL datasets)"
            )
        if "cache_directory" not in raw:
            raise Violation(f"{path}: datasets[{index}] is a JSONL dataset without cache_directory")
        settings = {**general, **raw}
        records = _read_jsonl(_resolve(raw["image_jsonl_file"], cwd), cwd)
        if one_frame:
            if settings.get("fp_1f_target_index") is None:
                raise Failure(f"datasets[{index}]: fp_1f_target_index must be set for one-frame caching")
            wanted = len(settings.get("fp_1f_clean_indices") or [])
            for record in records:
                if len(record.controls) != wanted:
                    raise Failure(
                        f"datasets[{index}]: {record.image.name} has {len(record.controls)} control images,"
                        f" fp_1f_clean_indices needs {wanted}"
                    )
        entries.append(DatasetEntry(_resolve(raw["cache_directory"], cwd), records, settings))
    if not entries:
        raise Failure(f"{path}: no [[datasets]]")
    return entries


# ---------------------------------------------------------------------------------------------
# Whole commands
# ---------------------------------------------------------------------------------------------


@dataclass
class Invocation:
    """A checked `-m accelerate.commands.launch ... -m musubi_tuner.<script> ...` call."""

    accelerate: dict[str, Any]
    accelerate_flags: list[str]
    script: str
    given: dict[str, Any]  # what the command line set, by dest
    values: dict[str, Any] = field(default_factory=dict)  # defaults < TOML < command line


SWEEP_WORKER = "sweep_worker"
"""The script name `parse_launch` gives fplora's sweep worker, launched as a file."""
WORKER_FILE = HERE.parents[1] / "src" / "fplora" / "worker" / "sweep.py"
EVAL_WORKER = "eval_worker"
"""The script name `parse_launch` gives fplora's evaluation worker, launched as a file."""
EVAL_WORKER_FILE = HERE.parents[1] / "src" / "fplora" / "worker" / "eval.py"


def parse_launch(args: Sequence[str]) -> tuple[dict[str, Any], list[str], str, list[str]]:
    """Split `-m accelerate.commands.launch <accel options> -m <module> <script args>`, or
    `... <fplora's sweep worker file> <args>` (the one script fplora launches as a file)."""
    if list(args[:2]) != ["-m", LAUNCH_MODULE]:
        raise Violation(f"expected '-m {LAUNCH_MODULE}' first, got {' '.join(args[:2])!r}")
    rest = list(args[2:])
    accel, flags, stop = parse_options(rest, accelerate_options(), stop_at_positional=True)
    if not accel.get("module") and stop < len(rest) and Path(rest[stop]).name == "sweep.py":
        if Path(rest[stop]).resolve() != WORKER_FILE.resolve():
            raise Violation(f"sweep worker {rest[stop]!r} is not fplora's {WORKER_FILE}")
        return accel, flags, SWEEP_WORKER, rest[stop + 1 :]
    if not accel.get("module") and stop < len(rest) and Path(rest[stop]).name == "eval.py":
        if Path(rest[stop]).resolve() != EVAL_WORKER_FILE.resolve():
            raise Violation(f"eval worker {rest[stop]!r} is not fplora's {EVAL_WORKER_FILE}")
        return accel, flags, EVAL_WORKER, rest[stop + 1 :]
    if not accel.get("module"):
        raise Violation("accelerate launch without -m/--module: the training script would be read as a file")
    if stop >= len(rest):
        raise Violation("accelerate launch: the following arguments are required: training_script")
    module = rest[stop]
    if not module.startswith(SCRIPT_PREFIX) or module[len(SCRIPT_PREFIX) :] not in schema()["scripts"]:
        raise Violation(f"no musubi-tuner script {module!r} in the snapshot")
    return accel, flags, module[len(SCRIPT_PREFIX) :], rest[stop + 1 :]


def _require(values: dict[str, Any], *dests: str, why: str = "") -> None:
    for dest in dests:
        if values.get(dest) in (None, "", []):
            raise Violation(f"{dest} must be set{why}")


def validate(args: Sequence[str], cwd: Path | None = None) -> Invocation:
    """Check a whole launch (arguments after the Python), config and dataset files included."""
    cwd = cwd or Path.cwd()
    accel, accel_flags, script, script_args = parse_launch(args)
    if script == SWEEP_WORKER:
        return _validate_sweep(accel, accel_flags, script_args, cwd)
    if script == EVAL_WORKER:
        return _validate_eval(accel, accel_flags, script_args, cwd)
    given, _, _ = parse_options(script_args, script_options(script), stop_at_positional=False)
    by_dest = options_by_dest(script)
    missing = [o.flags[0] for o in by_dest.values() if o.required and o.dest not in given]
    if missing:
        raise Violation(f"the following arguments are required: {', '.join(missing)}")
    values = {dest: opt.default for dest, opt in by_dest.items()}
    if script == "fpack_train_network" and given.get("config_file"):
        values.update(config_file_values(given["config_file"], cwd))
    values.update(given)
    invocation = Invocation(accel, accel_flags, script, given, values)
    CHECKS[script](invocation, cwd)
    return invocation


def _check_cache_latents(inv: Invocation, cwd: Path) -> None:
    values = inv.values
    if values.get("vae_dtype") is not None:
        raise Violation("--vae_dtype must be left unset for FramePack")
    if not values.get("vae") and not values.get("debug_mode"):
        raise Violation("--vae is required unless --debug_mode is used")
    dataset_config(values["dataset_config"], cwd, one_frame=bool(values.get("one_frame")))


def _check_cache_text(inv: Invocation, cwd: Path) -> None:
    dataset_config(inv.values["dataset_config"], cwd, one_frame=False)


def _check_train(inv: Invocation, cwd: Path) -> None:
    values = inv.values
    _require(values, "dataset_config", "dit", why=" (on the command line or in the config file)")
    _require(values, "output_dir", "output_name", why=" (else checkpoints land in unknown places)")
    if not values.get("optimizer_type"):
        raise Violation(
            "optimizer_type is empty: musubi-tuner fails with module 'torch.optim' has no attribute ''"
        )
    if not values.get("save_precision"):
        raise Violation(
            "save_precision is unset: this musubi-tuner saves fp32 LoRAs that fpack_generate_video cannot merge"
        )
    if values.get("fp8_scaled") and not values.get("fp8_base"):
        raise Violation("fp8_scaled needs fp8_base")
    if values.get("sage_attn"):
        raise Violation("sage_attn is refused for training")
    if values.get("vae_dtype") not in (None, "float16"):
        raise Violation("vae_dtype must be unset or float16")
    if values.get("network_module") is None:
        raise Violation("network_module must be set")
    dataset_config(str(values["dataset_config"]), cwd, one_frame=False)
    if values.get("sample_prompts"):
        for number, line in training_prompt_lines(_resolve(values["sample_prompts"], cwd)):
            if "i" not in line:
                raise Violation(
                    f"sample prompt line {number} has no --i (FramePack samples need a start image)"
                )
            if values.get("one_frame") and "of" not in line:
                raise Violation(f"sample prompt line {number} has no --of although --one_frame is set")
            if "of" in line:
                check_one_frame_modes(line["of"][-1])


def _check_generate(inv: Invocation, cwd: Path) -> None:
    values = inv.values
    if values.get("from_file") and values.get("interactive"):
        raise Violation("--from_file and --interactive exclude each other")
    wants = ("prompt", "from_file", "interactive", "latent_path")
    if not any(values.get(dest) for dest in wants):
        raise Violation("one of --prompt, --from_file or --interactive is needed (or --latent_path)")
    if values.get("save_merged_model") and values.get("fp8_scaled"):
        raise Violation("--save_merged_model excludes --fp8_scaled")
    if values.get("one_frame_inference"):
        check_one_frame_modes(values["one_frame_inference"])
    if values.get("from_file"):
        known = schema()["prompt_line_options"]["generate_from_file"]["options"]
        for number, line in generate_prompt_lines(_resolve(values["from_file"], cwd)):
            for name in line:
                if name and name not in known:
                    raise Violation(f"--from_file line {number}: unknown option --{name}")
            if "of" in line:
                check_one_frame_modes(line["of"][-1])


def _validate_sweep(accel: dict[str, Any], flags: list[str], args: Sequence[str], cwd: Path) -> Invocation:
    """The worker takes `--plan <file>`; each cell must be a valid generate run of the plan's options."""
    if len(args) != 2 or args[0] != "--plan":
        raise Violation(f"sweep worker: expected --plan <file>, got {list(args)!r}")
    try:
        plan = json.loads(_resolve(args[1], cwd).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise Violation(f"sweep worker: cannot read the plan: {exc}") from None
    for cell in plan["cells"]:
        generate_invocation(plan["generate_args"], cell, cwd)
    return Invocation(accel, flags, SWEEP_WORKER, {"plan": args[1]}, {"plan": plan})


def _validate_eval(accel: dict[str, Any], flags: list[str], args: Sequence[str], cwd: Path) -> Invocation:
    """The worker takes `--plan <file>`; the plan's config must be one the trainer reads, and its
    dataset config the evaluation split alone, never the training datasets."""
    if len(args) != 2 or args[0] != "--plan":
        raise Violation(f"eval worker: expected --plan <file>, got {list(args)!r}")
    try:
        plan = json.loads(_resolve(args[1], cwd).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise Violation(f"eval worker: cannot read the plan: {exc}") from None
    config = config_file_values(plan["config_file"], cwd)
    entries = dataset_config(plan["dataset_config"], cwd, one_frame=False)
    trained = {
        str(e.cache_directory) for e in dataset_config(str(config["dataset_config"]), cwd, one_frame=False)
    }
    if any(str(e.cache_directory) in trained for e in entries):
        raise Violation("eval worker: the evaluation dataset shares a cache folder with training")
    return Invocation(accel, flags, EVAL_WORKER, {"plan": args[1]}, {"plan": plan, "entries": entries})


def fake_eval_loss(label: str, t: float) -> float:
    """The fake's loss: the untrained network's is highest, trained steps fall to a low near step 3
    and rise a little after (overfitting); FAKE_EVAL_LOSSES='{"step2": 0.1}' sets a label's loss."""
    given = json.loads(os.environ.get("FAKE_EVAL_LOSSES") or "{}")
    if label in given:
        return float(given[label])
    base = 0.2 + 0.5 * t
    match = re.match(r"^step(\d+)$", label)
    if label == "untrained" or not match:
        return base
    step = int(match.group(1))
    return base * (1 - 0.3 * step / (step + 1) + 0.05 * max(0, step - 3))


class FakeEvalBackend:
    """The evaluation worker's backend without torch: reads the caches the real one would (every
    record of the split must have both files) and answers `fake_eval_loss`."""

    def __init__(self, entries: list[Any]) -> None:
        self.entries = entries
        self.timesteps: list[float] = []

    def prepare(self, plan: Any, emit: Any) -> tuple[int, int]:
        records = 0
        for entry in self.entries:
            for rec in entry.records:
                stem = Path(rec.image).stem
                have = {p.name for p in entry.cache_directory.glob(f"{stem}_*")}
                if (
                    not any(n.endswith("_fp.safetensors") for n in have)
                    or f"{stem}_fp_te.safetensors" not in have
                ):
                    raise Failure(f"no cache of {stem} in {entry.cache_directory}")
                records += 1
        self.timesteps = list(plan.timesteps)
        emit("phase", phase="fake: loading nothing")
        return records, records

    def score(self, checkpoint: Any, emit: Any) -> list[float]:
        if checkpoint.label == os.environ.get("FAKE_EVAL_FAIL"):
            raise RuntimeError(f"fake failure of {checkpoint.label}")
        if checkpoint.lora is not None and not Path(checkpoint.lora).is_file():
            raise FileNotFoundError(checkpoint.lora)
        return [fake_eval_loss(checkpoint.label, t) for t in self.timesteps]


def run_eval_worker(inv: Invocation, cwd: Path) -> int:
    """fplora's real evaluation worker file, run with the fake backend."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("fplora_eval_worker", EVAL_WORKER_FILE)
    assert spec is not None and spec.loader is not None
    worker = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = worker
    spec.loader.exec_module(worker)
    return int(worker.main(["--plan", inv.given["plan"]], backend=FakeEvalBackend(inv.values["entries"])))


def generate_invocation(generate_args: Sequence[str], cell: dict[str, Any], cwd: Path) -> Invocation:
    """A sweep cell as the separate generate run it stands for, checked like one (the cell's
    `--save_path` replaces the one the worker gave the parser)."""
    args = list(generate_args)
    if "--save_path" in args:
        at = args.index("--save_path")
        del args[at : at + 2]
    argv = [
        *("-m", LAUNCH_MODULE, "--num_processes", "1", "-m", SCRIPT_PREFIX + "fpack_generate_video"),
        *args,
        *("--lora_weight", str(cell["lora"]), "--lora_multiplier", str(cell["multiplier"])),
        *("--save_path", str(cell["save_path"])),
    ]
    return validate(argv, cwd)


CHECKS = {
    "fpack_cache_latents": _check_cache_latents,
    "fpack_cache_text_encoder_outputs": _check_cache_text,
    "fpack_train_network": _check_train,
    "fpack_generate_video": _check_generate,
}


_MODE_TOKEN = re.compile(r"^(default|no_2x|no_4x|no_post|target_index=-?\d+|control_index=-?\d+(;-?\d+)*)$")


def check_one_frame_modes(value: str) -> None:
    for token in value.split(","):
        if not _MODE_TOKEN.match(token.strip()):
            raise Violation(
                f"one-frame inference token {token!r} is not one of {schema()['prompt_line_options']['one_frame_inference_tokens']['tokens']}"
            )


def _split_prompt(line: str) -> dict[str, list[str]]:
    """`text --i a --ci b --ci c` → {"": [text], "i": [a], "ci": [b, c]} (split on ' --')."""
    parts = line.split(" --")
    options: dict[str, list[str]] = {"": [parts[0].strip()]}
    for part in parts[1:]:
        name, _, value = part.strip().partition(" ")
        options.setdefault(name, []).append(value.strip())
    return options


def training_prompt_lines(path: Path) -> list[tuple[int, dict[str, list[str]]]]:
    """Training sample prompts: only a '#' in column 1 is a comment."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Failure(f"sample_prompts not found: {path}") from None
    return [
        (n, _split_prompt(line))
        for n, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.startswith("#")
    ]


def generate_prompt_lines(path: Path) -> list[tuple[int, dict[str, list[str]]]]:
    """`--from_file` prompts: lines are stripped first, then blank and '#' lines skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Failure(f"--from_file not found: {path}") from None
    return [
        (n, _split_prompt(line.strip()))
        for n, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.strip().startswith("#")
    ]


# ---------------------------------------------------------------------------------------------
# Emulation: the files the real scripts write
# ---------------------------------------------------------------------------------------------


def png_bytes(width: int = 2, height: int = 2, rgb: tuple[int, int, int] = (128, 128, 128)) -> bytes:
    """A small valid PNG of one colour, grey by default (opens in Pillow and image viewers)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def safetensors_bytes(**metadata: Any) -> bytes:
    """A valid safetensors file with no tensors and `metadata` (what the fake wrote, and when)."""
    meta = {k: str(v) for k, v in {**metadata, "pid": os.getpid(), "time_ns": time.time_ns()}.items()}
    header = json.dumps({"__metadata__": meta}).encode()
    return struct.pack("<Q", len(header)) + header


def read_safetensors_metadata(path: Path) -> dict[str, str]:
    """The metadata of a file written by `safetensors_bytes`; {} for anything else."""
    try:
        with path.open("rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            return json.loads(handle.read(size)).get("__metadata__", {})
    except (OSError, ValueError, struct.error):
        return {}


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG header; 512x768 for anything else (the name only needs a size)."""
    with path.open("rb") as handle:
        head = handle.read(24)
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        width, height = struct.unpack(">II", head[16:24])
        return width, height
    return 512, 768


def say(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def _clean_cache(directory: Path, suffix: str, keep: set[str], keep_cache: bool) -> None:
    """musubi-tuner removes cache files the dataset no longer names, unless --keep_cache."""
    for path in directory.glob(f"*{suffix}"):
        if path.name not in keep and not keep_cache:
            say(f"INFO: remove cache file not in the dataset: {path}")
            path.unlink()


def run_cache_latents(inv: Invocation, cwd: Path) -> int:
    values = inv.values
    for entry in dataset_config(values["dataset_config"], cwd, one_frame=bool(values.get("one_frame"))):
        entry.cache_directory.mkdir(parents=True, exist_ok=True)
        written = set()
        for record in entry.records:
            width, height = image_size(record.image)
            name = f"{record.image.stem}_{width:04d}x{height:04d}_fp.safetensors"
            written.add(name)
            target = entry.cache_directory / name
            if values.get("skip_existing") and target.exists():
                continue
            data = safetensors_bytes(kind="latent", image=record.image, one_frame=values.get("one_frame"))
            if os.environ.get("FAKE_CACHE_TRUNCATE"):
                data = data[: len(data) // 2]  # as a crash in the middle of a write leaves it
            target.write_bytes(data)
        say(f"INFO: cached {len(entry.records)} latents in {entry.cache_directory}")
        _clean_cache(entry.cache_directory, "_fp.safetensors", written, bool(values.get("keep_cache")))
    return 0


def run_cache_text(inv: Invocation, cwd: Path) -> int:
    values = inv.values
    for entry in dataset_config(values["dataset_config"], cwd, one_frame=False):
        entry.cache_directory.mkdir(parents=True, exist_ok=True)
        written = set()
        for record in entry.records:
            name = f"{record.image.stem}_fp_te.safetensors"
            written.add(name)
            target = entry.cache_directory / name
            if values.get("skip_existing") and target.exists():
                continue
            target.write_bytes(safetensors_bytes(kind="text_encoder", caption=record.caption))
        say(f"INFO: cached {len(entry.records)} text-encoder outputs in {entry.cache_directory}")
        _clean_cache(entry.cache_directory, "_fp_te.safetensors", written, bool(values.get("keep_cache")))
    return 0


def _bar(step: int, total: int, loss: float | None) -> str:
    """A tqdm line as `fpack_train_network` draws it (fplora parses step and avr_loss from it)."""
    percent = int(100 * step / total) if total else 100
    filled = int(10 * step / total) if total else 10
    bar = "█" * filled + " " * (10 - filled)
    postfix = f", avr_loss={loss:.4g}" if loss is not None else ""
    return f"\rsteps: {percent:3d}%|{bar}| {step}/{total} [00:0{min(step, 9)}<00:00,  1.00s/it{postfix}]"


def _write_state(folder: Path, **metadata: Any) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors").write_bytes(safetensors_bytes(**metadata))
    (folder / "fake-state.json").write_text(json.dumps(metadata, default=str) + "\n", encoding="utf-8")


def _samples(values: dict[str, Any], cwd: Path, tag: str) -> None:
    prompts = values.get("sample_prompts")
    if not prompts:
        return
    folder = _resolve(str(values["output_dir"]), cwd) / "sample"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d%H%M%S")
    for index, (_, line) in enumerate(training_prompt_lines(_resolve(values["sample_prompts"], cwd))):
        seed = f"_{line['d'][-1]}" if "d" in line else ""
        name = f"{values['output_name']}_{tag}_{index:02d}_{stamp}{seed}_000.png"
        (folder / name).write_bytes(png_bytes())


def run_train(inv: Invocation, cwd: Path) -> int:
    values = inv.values
    out = _resolve(str(values["output_dir"]), cwd)
    name = values["output_name"]
    total = int(values["max_train_steps"])
    every = values.get("save_every_n_steps")
    sample_every = values.get("sample_every_n_steps")
    save_state = bool(values.get("save_state"))
    resume = values.get("resume")
    meta = {"output_name": name, "save_precision": values.get("save_precision")}
    session = f"{os.getpid()}-{time.time_ns()}"  # the weights of step N differ between trainings

    def weights(step: int) -> str:
        """`sshs_model_hash`: the real LoRA's sha256 of its tensor data, the same in the step file and
        the final file when they hold the weights of the same step."""
        return hashlib.sha256(f"{session}:{step}".encode()).hexdigest()

    for entry in dataset_config(str(values["dataset_config"]), cwd, one_frame=False):
        names = {p.name for p in entry.cache_directory.glob("*")} if entry.cache_directory.is_dir() else set()
        for record in entry.records:
            latent = any(
                n.startswith(record.image.stem + "_") and n.endswith("_fp.safetensors") for n in names
            )
            if not latent or f"{record.image.stem}_fp_te.safetensors" not in names:
                raise Failure(
                    f"no latent/text-encoder cache for {record.image.name} in {entry.cache_directory}"
                )
    if resume:
        state = _resolve(str(resume), cwd)
        if not state.is_dir():
            raise Failure(f"--resume: {state} is not a state folder")
        say(f"INFO: resume training from local state: {state}")
        meta["resumed_from"] = str(state)
    out.mkdir(parents=True, exist_ok=True)
    say(f"INFO: fake training {name}: {total} steps")
    sleep = float(os.environ.get("FAKE_TRAIN_SLEEP") or 0)
    stop_after = int(os.environ.get("FAKE_TRAIN_STOP_AFTER") or 0)
    if values.get("sample_at_first"):
        _samples(values, cwd, "e000000")
    sys.stderr.write(_bar(0, total, None))
    loss: float | None = None
    # like musubi-tuner, a resumed run counts its steps from 0 again (its names restart too)
    for step in range(1, total + 1):
        if sleep:
            time.sleep(sleep)
        sys.stderr.write(_bar(step, total, loss))  # tqdm's update() redraws with the old loss first
        loss = round(0.1 + 0.01 * step, 6)
        sys.stderr.write(_bar(step, total, loss))
        sys.stderr.flush()
        if every and step % every == 0:
            lora = safetensors_bytes(step=step, sshs_model_hash=weights(step), **meta)
            (out / f"{name}-step{step:08d}.safetensors").write_bytes(lora)
            if save_state:
                _write_state(out / f"{name}-step{step:08d}-state", step=step, **meta)
        if sample_every and step % sample_every == 0:
            _samples(values, cwd, f"{step:06d}")
        if stop_after and step >= stop_after:
            say("\nstopped by hand (FAKE_TRAIN_STOP_AFTER)")
            return 130
    sys.stderr.write("\n")
    if save_state or values.get("save_state_on_train_end"):
        _write_state(out / f"{name}-state", step=total, **meta)
    final = safetensors_bytes(step=total, final=True, sshs_model_hash=weights(total), **meta)
    (out / f"{name}.safetensors").write_bytes(final)
    say(f"INFO: model saved: {out / (name + '.safetensors')}")
    return 0


class _TimeFlags:
    """`YYYYmmdd-HHMMSS-mmm`, strictly increasing: the real script takes seconds per prompt."""

    def __init__(self) -> None:
        self.last = 0

    def next(self) -> str:
        now_ms = max(int(time.time() * 1000), self.last + 1)
        self.last = now_ms
        moment = datetime.fromtimestamp(now_ms / 1000)
        return f"{moment.strftime('%Y%m%d-%H%M%S')}-{now_ms % 1000:03d}"


def run_generate(inv: Invocation, cwd: Path) -> int:
    """`--from_file` batch mode with the real file names for each `--output_type` (`names.GENERATE_OUTPUTS`).

    FAKE_GENERATE_FAIL=1: every prompt fails (exit 0); FAKE_GENERATE_DECODE_FAIL=1: the latents are
    generated (and saved for latent types), then decoding crashes (exit 1). With `--blocks_to_swap`,
    every prompt after the first fails, as the pinned script's did on an H200 (exit 0)."""
    values = inv.values
    weights = values.get("lora_weight") or []
    multipliers = values.get("lora_multiplier")
    if weights and not isinstance(multipliers, list):
        raise Failure(
            "TypeError: object of type 'float' has no len()  (--lora_weight without --lora_multiplier)"
        )
    if weights and len(multipliers) != len(weights):
        raise Failure(f"{len(weights)} LoRA weights but {len(multipliers)} multipliers")
    fp32 = False
    for weight in weights:
        path = _resolve(weight, cwd)
        if not path.is_file():
            raise Failure(f"FileNotFoundError: LoRA weight {path}")
        precision = read_safetensors_metadata(path).get("save_precision")
        fp32 = fp32 or precision in ("None", "float", "fp32")
    fail = fp32 or os.environ.get("FAKE_GENERATE_FAIL") == "1"
    save = _resolve(values["save_path"], cwd)
    save.mkdir(parents=True, exist_ok=True)
    flags = _TimeFlags()
    output_type = values.get("output_type") or "video"
    latents = []
    # like the real batch mode: every prompt's latent first (saved at once for latent types), then
    # the DiT is freed and each latent decoded and saved, each file with its own time flag
    swapped = int(values.get("blocks_to_swap") or 0) > 0
    for index, (_, line) in enumerate(generate_prompt_lines(_resolve(values["from_file"], cwd))):
        text = line[""][0]
        if swapped and index > 0 and not fail:  # the pinned script, seen on an H200: the shared DiT's
            say(  # swapped blocks are left on the CPU after the first prompt
                f"ERROR:__main__:Error generating latent for prompt: {text}. Error: Expected all tensors"
                " to be on the same device, but got mat2 is on cpu, different from other tensors on cuda:0"
            )
            continue
        if fail:
            say(
                f"ERROR:__main__:Error generating latent for prompt: {text}."
                " Error: self and mat2 must have the same dtype, but got BFloat16 and Float"
            )
            continue
        seed = line["d"][-1] if "d" in line else str(1234)
        if output_type in ("latent", "latent_images", "both"):
            (save / f"{flags.next()}_{seed}_latent.safetensors").write_bytes(safetensors_bytes(prompt=text))
        latents.append(seed)
    if output_type != "latent":
        if os.environ.get("FAKE_GENERATE_DECODE_FAIL") == "1":
            raise Failure("torch.OutOfMemoryError: CUDA out of memory (decoding)")
        for seed in latents:
            if output_type in ("video", "both"):  # save_video: an empty base name still adds its "_"
                (save / f"{flags.next()}_{seed}_.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom")
            else:  # one-frame save_images: no sub-folder, frame suffix _000
                rgb = cell_colour(str(weights[0]) if weights else "", (multipliers or [1.0])[0], seed)
                (save / f"{flags.next()}_{seed}__000.png").write_bytes(png_bytes(8, 12, rgb))
    say("INFO:__main__:Done!")
    return 0


def cell_colour(lora: str, multiplier: float, seed: str) -> tuple[int, int, int]:
    """One colour per (LoRA, multiplier, seed): the sweep's image of a cell equals the separate run's,
    and differs from every other cell's, as the real ones should."""
    shade = zlib.crc32(f"{lora}|{float(multiplier)}|{seed}".encode())
    return shade & 0xFF, (shade >> 8) & 0xFF, (shade >> 16) & 0xFF


class FakeSweepBackend:
    """The sweep worker's backend without torch: the files each cell's separate generate run would
    write, under the same names, and the same failures (an fp32 LoRA fails every prompt).

    FAKE_SWEEP_PREPARE_FAIL=1: loading the models fails; FAKE_SWEEP_CRASH_AT=<n>: the process dies
    (exit 1, no event) when cell n (0-based) starts, like a CUDA crash."""

    def __init__(self, plan: dict[str, Any], cwd: Path) -> None:
        self.plan, self.cwd = plan, cwd
        self.lines: list[dict[str, list[str]]] = []
        self.output_type = "video"
        self.cells_started = 0
        self.flags = _TimeFlags()

    def prepare(self, generate_args: list[str], emit: Any) -> int:
        emit("phase", phase="fake: loading the encoders")
        if os.environ.get("FAKE_SWEEP_PREPARE_FAIL") == "1":
            raise RuntimeError("torch.OutOfMemoryError: CUDA out of memory (fake, loading text encoder 1)")
        # the worker hands these to the generate script's own parse_args: argparse exits 2 without
        # an option the schema marks required (the first GPU run found --save_path missing this way)
        required = schema()["scripts"]["fpack_generate_video"]["required"]
        missing = [f"--{name}" for name in required if f"--{name}" not in generate_args]
        if missing:
            print(
                f"fpack_generate_video: error: the following arguments are required: {', '.join(missing)}",
                file=sys.stderr,
            )
            raise SystemExit(2)
        cell = (
            self.plan["cells"][0]
            if self.plan["cells"]
            else {"lora": "x", "multiplier": 1.0, "save_path": "."}
        )
        values = generate_invocation(generate_args, cell, self.cwd).values
        self.output_type = values.get("output_type") or "video"
        self.lines = [line for _, line in generate_prompt_lines(_resolve(values["from_file"], self.cwd))]
        return len(self.lines)

    def run_cell(self, cell: Any, emit: Any) -> list[str]:
        index = self.cells_started
        self.cells_started += 1
        if os.environ.get("FAKE_SWEEP_CRASH_AT") == str(index):
            say("fake: Segmentation fault (core dumped)")
            sys.stdout.flush()
            os._exit(1)
        lora = _resolve(cell.lora, self.cwd)
        if not lora.is_file():
            raise FileNotFoundError(f"No such file or directory: {lora}")
        precision = read_safetensors_metadata(lora).get("save_precision")
        save = _resolve(cell.save_path, self.cwd)
        save.mkdir(parents=True, exist_ok=True)
        errors, seeds = [], []
        for number, line in enumerate(self.lines, start=1):
            if precision in ("None", "float", "fp32"):
                say(f"ERROR:__main__:Error generating latent for prompt: {line[''][0]}")
                errors.append(
                    f"prompt {number}: RuntimeError: self and mat2 must have the same dtype, but got BFloat16 and Float"
                )
                continue
            seed = line["d"][-1] if "d" in line else "1234"
            if self.output_type in ("latent", "latent_images", "both"):
                (save / f"{self.flags.next()}_{seed}_latent.safetensors").write_bytes(
                    safetensors_bytes(prompt=line[""][0])
                )
            seeds.append((seed, line))
        if self.output_type != "latent":
            for seed, _line in seeds:
                rgb = cell_colour(cell.lora, cell.multiplier, seed)
                if self.output_type in ("video", "both"):
                    (save / f"{self.flags.next()}_{seed}_.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom")
                else:
                    (save / f"{self.flags.next()}_{seed}__000.png").write_bytes(png_bytes(8, 12, rgb))
        return errors


def run_sweep_worker(inv: Invocation, cwd: Path) -> int:
    """fplora's real worker file, run with the fake backend: the protocol is the real one."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("fplora_sweep_worker", WORKER_FILE)
    assert spec is not None and spec.loader is not None
    worker = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = worker  # dataclasses look their module up while the class is built
    spec.loader.exec_module(worker)
    return int(worker.main(["--plan", inv.given["plan"]], backend=FakeSweepBackend(inv.values["plan"], cwd)))


RUNNERS = {
    SWEEP_WORKER: run_sweep_worker,
    EVAL_WORKER: run_eval_worker,
    "fpack_cache_latents": run_cache_latents,
    "fpack_cache_text_encoder_outputs": run_cache_text,
    "fpack_train_network": run_train,
    "fpack_generate_video": run_generate,
}


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def record(entry: dict[str, Any]) -> None:
    """Append one JSON line to $FAKE_RECORD (when set)."""
    target = os.environ.get("FAKE_RECORD")
    if not target:
        return
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")


def run(args: Sequence[str], cwd: Path) -> int:
    """Check one launch and emulate it; the exit code the real script would give."""
    try:
        inv = validate(args, cwd)
    except Violation as exc:
        say(f"fake_python: error: {exc}")
        record({"event": "violation", "message": str(exc)})
        return 2
    except Failure as exc:
        say(f"fake_python: {exc}")
        return exc.code
    code = os.environ.get("FAKE_EXIT")
    if code and os.environ.get("FAKE_EXIT_SCRIPT", inv.script) == inv.script:
        say(f"fake_python: failing with exit {code} (FAKE_EXIT)")
        return int(code)
    try:
        return RUNNERS[inv.script](inv, cwd)
    except Failure as exc:
        say(f"ERROR: {exc}")
        return exc.code


REHEARSAL_PREFIX = "fplora-rehearse-event "
REHEARSAL_KNOBS = ("FAKE_RECORD", "FAKE_SCHEMA_DIR")


def run_rehearsal(args: Sequence[str], cwd: Path) -> int:
    """fplora's rehearsal worker, answered as the real one would on stand-in models: every stage's
    rendered command is checked and emulated like a real launch (a bad option fails its stage), in
    order, a stage whose needs failed skipped. The knobs that emulate what goes wrong on a GPU
    (FAKE_EXIT, FAKE_TRAIN_*, FAKE_GENERATE_*, ...) do not apply: a rehearsal does not reproduce them.
    FAKE_REHEARSAL_FAIL=<stage>:<error line> makes that stage fail as musubi-tuner would;
    FAKE_REHEARSAL_NOOP=<stage> makes it exit 0 having done nothing (a debug mode, an empty loop);
    FAKE_REHEARSAL_HANG=<stage> makes it wait forever, silent and idle (a data loader whose worker died);
    FAKE_REHEARSAL_KILLED=<stage> kills the worker with SIGKILL in that stage (the out-of-memory killer);
    FAKE_REHEARSAL_BUSY=<stage>:<cpu seconds> makes it compute that long without a word first (a
    compile), then go on as usual; FAKE_REHEARSAL_CUDA=1 says it runs with CUDA (a GPU box), where the
    missing kernels are not stood in for."""
    import glob as globbing

    given = args[list(args).index("--plan") + 1]
    if given == "-":  # started ahead: the plan's path comes on stdin, or end-of-file (not needed)
        given = sys.stdin.readline().strip()
        if not given:
            return 0
    plan = json.loads(Path(given).read_text(encoding="utf-8"))
    fail = os.environ.get("FAKE_REHEARSAL_FAIL", "")
    noop = os.environ.get("FAKE_REHEARSAL_NOOP", "")
    hang = os.environ.get("FAKE_REHEARSAL_HANG", "")
    killed = os.environ.get("FAKE_REHEARSAL_KILLED", "")
    cuda = os.environ.get("FAKE_REHEARSAL_CUDA") == "1"
    busy, _, cpu_seconds = os.environ.get("FAKE_REHEARSAL_BUSY", "").partition(":")
    for name in [k for k in os.environ if k.startswith("FAKE_") and k not in REHEARSAL_KNOBS]:
        del os.environ[name]

    def emit(event: str, **fields: Any) -> None:
        sys.stdout.write(REHEARSAL_PREFIX + json.dumps({"event": event, **fields}) + "\n")
        sys.stdout.flush()

    emit("started", pid=os.getpid())
    emit("kernels", missing=["flash_attn", "sageattention", "xformers"], cuda=cuda)
    failed: set[str] = set()
    for stage in plan["stages"]:
        name = stage["name"]
        blocked = [n for n in stage.get("needs", []) if n in failed]
        if blocked:
            failed.add(name)
            emit("stage_skipped", stage=name, blocked=blocked)
            continue
        emit("stage_started", stage=name)
        if hang == name:
            time.sleep(3600)
        if killed == name:
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        if busy == name:
            spent = time.process_time() + float(cpu_seconds)
            while time.process_time() < spent:
                pass
        error = None
        if fail.partition(":")[0] == name:
            code, error = 1, fail.partition(":")[2]
            say(f"Traceback (most recent call last):\n{error}")
        elif noop == name:
            code = 0
        else:
            code = run(stage["argv"][1:], cwd)
        outputs = stage.get("outputs", [])
        if code != 0 or (outputs and not any(globbing.glob(p) for p in outputs)):
            failed.add(name)
        emit("stage_done", stage=name, code=code, error=error, where=None, seconds=0.0)
    emit("finished")
    return 0
