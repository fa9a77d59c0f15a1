"""The house rules, read off the source: packages import each other in one direction only, nothing
below the CLI imports it, and no module of fplora imports the GPU-side libraries. The workers
(`fplora/worker/`) are the exception: package data that runs in the musubi-tuner Python, imported by
no module of fplora.

Every import counts, also the lazy ones inside functions and those under TYPE_CHECKING: a cycle
that only shows at run time is still a cycle for whoever reads the code.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "fplora"
GPU_SIDE = {"torch", "accelerate", "wandb", "musubi_tuner", "bitsandbytes", "safetensors.torch"}
WORKERS = "fplora.worker"


def _is_worker(module: str) -> bool:
    return module == WORKERS or module.startswith(WORKERS + ".")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, absolute names, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = _module_name(path).split(".")
    if path.name != "__init__.py":
        here = here[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(here[: len(here) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}  # `from fplora import plan`
    return found


def _unit(module: str) -> str | None:
    """The room a module belongs to: its subpackage (`spec`, `jobs`) or, for a top-level module,
    the module itself (`plan`, `process`); None outside fplora."""
    parts = module.split(".")
    if parts[0] != "fplora" or len(parts) < 2:
        return None
    if (PACKAGE / parts[1]).is_dir() or (PACKAGE / f"{parts[1]}.py").is_file():
        return parts[1]
    return None


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(room → rooms it imports, module → modules of fplora it imports)."""
    rooms: dict[str, set[str]] = {}
    modules: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        unit = _unit(name) if name != "fplora" else None
        imported = _imports(path)
        modules[name] = imported
        if unit is None:
            continue
        for other in filter(None, map(_unit, imported)):
            if other != unit:
                rooms.setdefault(unit, set()).add(other)
    return rooms, modules


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each cycle once, as the path that closes it."""
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()

    def walk(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                cycle = [*path[path.index(nxt) :], nxt]
                if frozenset(cycle) not in seen:
                    seen.add(frozenset(cycle))
                    found.append(cycle)
            elif len(path) < len(graph) + 1:
                walk(nxt, [*path, nxt])

    for start in sorted(graph):
        walk(start, [start])
    return found


def test_no_cycle_between_packages() -> None:
    rooms, _ = _graph()
    assert _cycles(rooms) == [], "packages must import each other in one direction only"


def test_nothing_below_the_cli_imports_it() -> None:
    _, modules = _graph()
    offenders = {
        name
        for name, imported in modules.items()
        if not name.startswith(("fplora.cli", "fplora.__main__"))
        and any(m == "fplora.cli" or m.startswith("fplora.cli.") for m in imported)
    }
    assert offenders == set()


def _gpu_side(module: str) -> bool:
    return module in GPU_SIDE or module.split(".")[0] in GPU_SIDE - {"safetensors.torch"}


def test_no_module_imports_the_gpu_side() -> None:
    _, modules = _graph()
    offenders = {
        f"{name} imports {m}"
        for name, imported in modules.items()
        if not _is_worker(name)
        for m in imported
        if _gpu_side(m)
    }
    assert offenders == set()


def test_no_module_imports_a_worker_and_workers_import_no_fplora() -> None:
    """A worker runs in the musubi-tuner Python, which need not have fplora installed; fplora starts
    it as a file (`render/commands.py`), never imports it."""
    _, modules = _graph()
    importers = {
        f"{name} imports {m}"
        for name, imported in modules.items()
        if not _is_worker(name)
        for m in imported
        if _is_worker(m)
    }
    assert importers == set()
    workers = {name: imported for name, imported in modules.items() if _is_worker(name)}
    assert {"fplora.worker.sweep", "fplora.worker.eval", "fplora.worker.common"} <= set(workers)
    assert "torch" in workers["fplora.worker.sweep"]  # the walk sees its lazy imports
    leaks = {
        f"{name} imports {m}"
        for name, imported in workers.items()
        for m in imported
        if m.startswith("fplora")
    }
    assert leaks == set()


def test_only_the_workers_reach_the_musubi_tuner_adapter() -> None:
    """worker/musubi_calls.py names every musubi-tuner call the workers make; it is a worker module
    (so no module of fplora imports it: the test above), and the workers import no musubi_tuner
    module themselves: they go through it."""
    _, modules = _graph()
    assert "fplora.worker.musubi_calls" in modules
    direct = {
        f"{name} imports {m}"
        for name, imported in modules.items()
        if name in ("fplora.worker.sweep", "fplora.worker.eval", "fplora.worker.common")
        for m in imported
        if m.split(".")[0] == "musubi_tuner"
    }
    assert direct == set()


def test_the_workers_share_common_py_by_its_path_and_it_imports_only_the_standard_library() -> None:
    """`worker/common.py` is loaded by path from the worker files beside it (a launched file, or one a
    test or the rehearsal worker loads by path, has no package to import it from), and runs before any
    of musubi-tuner or torch is imported: the standard library only, at any depth."""
    _, modules = _graph()
    outside = {m for m in modules["fplora.worker.common"] if m.split(".")[0] not in sys.stdlib_module_names}
    assert outside == set()
    for worker in ("sweep", "eval"):
        source = (PACKAGE / "worker" / f"{worker}.py").read_text(encoding="utf-8")
        assert 'with_name("common.py")' in source, f"{worker}.py loads common.py beside it"


def test_the_walker_sees_lazy_imports_and_finds_a_cycle() -> None:
    """The checks above would pass vacuously if the walk missed imports inside functions."""
    _, modules = _graph()
    assert "fplora.jobs.train" in modules["fplora.cli.train"]  # imported inside the `train` command
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


# The rooms of fplora, top to bottom (README's "The house" table): a room imports only rooms of its own
# layer or below. Departures from /work/shared/design/architecture.md's sketch, kept because the code
# showed them: `render/` sits below `datasets/` (cache stamps are built from the argv the cache
# scripts get, `datasets/caches.py`), and `check/` reads `runs/` (another spec's run in output_dir).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__main__",),
    ("cli",),
    ("jobs",),
    ("check", "plan", "presets", "sheet", "curves", "protocol", "lora", "project", "scaffold", "runtime"),
    ("datasets", "runs"),
    ("render",),
    ("spec",),
    ("musubi",),
    ("process", "problems", "suggest", "atomic", "safetensors", "state", "writable"),
)
IMPORT_NOTHING_OF_FPLORA = ("musubi", "process")  # the bottom of the arrows, in the sketch's words


def _layer(room: str) -> int | None:
    return next((index for index, rooms in enumerate(LAYERS) if room in rooms), None)


def test_every_room_has_a_layer_and_imports_only_downwards() -> None:
    rooms, _ = _graph()
    known = {room for layer in LAYERS for room in layer}
    unplaced = {each for room, imported in rooms.items() for each in (room, *imported)} - known
    assert unplaced == set(), "place each new package or module in LAYERS (and README's table)"
    upwards = {
        f"{room} imports {other}"
        for room, imported in rooms.items()
        for other in imported
        if (_layer(other) or 0) < (_layer(room) or 0)
    }
    assert upwards == set()
    assert {room: rooms.get(room, set()) for room in IMPORT_NOTHING_OF_FPLORA} == {
        room: set() for room in IMPORT_NOTHING_OF_FPLORA
    }


# A finding by any other name: what a check, a rule, the doctor or a decision found is a `Problem`.
FINDING_NAMES = re.compile(r"Finding|Problem|Issue|Diagnos|Complaint|Violation|Warning|Notice")


def _classes() -> list[tuple[str, ast.ClassDef]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        if _is_worker(name):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found += [(name, node) for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
    return found


def _fields(node: ast.ClassDef) -> set[str]:
    return {
        item.target.id
        for item in node.body
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
    }


def test_one_finding_type() -> None:
    """`problems.Problem` is fplora's one finding type: no other class is named like a finding, and
    no other record carries a message with its fix or severity (spec rules, check, doctor and the
    decisions' notes all return Problems, printed one way)."""
    offenders = {
        f"{module}.{node.name}"
        for module, node in _classes()
        if (module, node.name) != ("fplora.problems", "Problem")
        and (
            FINDING_NAMES.search(node.name)
            or ("message" in _fields(node) and _fields(node) & {"fix", "severity", "status"})
        )
    }
    assert offenders == set()
    assert "fplora.problems" in {module for module, node in _classes() if node.name == "Problem"}


# The CLI parses and calls: one module per verb, registered in `cli.VERBS`; what a command decides or
# prints lives in its job, where a test reaches it without typer.
CLI_SHARED = {"__init__", "common", "options"}
CLI_MAY_IMPORT = ("fplora.cli", "fplora.jobs", "fplora.problems")
MAX_VERB_LINES = 150
MAX_VERB_STATEMENTS = 15  # all of a verb module's function bodies, docstrings and imports left out


def _statements(tree: ast.Module) -> int:
    count = 0
    for function in (node for node in tree.body if isinstance(node, ast.FunctionDef)):
        for node in ast.walk(function):
            docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            imports = isinstance(node, (ast.Import, ast.ImportFrom))
            count += isinstance(node, ast.stmt) and node is not function and not docstring and not imports
    return count


def test_each_verb_is_a_small_cli_module_registered_in_verbs() -> None:
    from fplora import cli

    verbs = {module.__name__.rsplit(".", 1)[1]: module for module in cli.VERBS}
    assert set(verbs) == {path.stem for path in (PACKAGE / "cli").glob("*.py")} - CLI_SHARED
    too_big = {}
    for name, module in verbs.items():
        assert isinstance(module.NAME, str) and (hasattr(module, "command") or hasattr(module, "app")), name
        text = (PACKAGE / "cli" / f"{name}.py").read_text(encoding="utf-8")
        size = (len(text.splitlines()), _statements(ast.parse(text)))
        if size[0] > MAX_VERB_LINES or size[1] > MAX_VERB_STATEMENTS:
            too_big[name] = size
    assert too_big == {}, "(lines, statements): move the logic into the verb's job"


def test_the_cli_imports_only_jobs_of_fplora() -> None:
    """A command reaches runs/, check/, spec/ ... only through its job: what it would compute there
    is logic a test should reach without the CLI. `problems` is the error type it turns into exit 1."""
    _, modules = _graph()
    offenders = {
        f"{name} imports {imported}"
        for name, found in modules.items()
        if name == "fplora.cli" or name.startswith("fplora.cli.")
        for imported in found
        if imported.startswith("fplora.")
        and not imported.startswith(CLI_MAY_IMPORT)
        and imported != "fplora.__version__"
    }
    assert offenders == set()
