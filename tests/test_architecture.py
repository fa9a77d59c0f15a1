"""The house rules, read off the source: packages import each other in one direction only, nothing
below the CLI imports it, and no module of fplora imports the GPU-side libraries. The workers
(`fplora/worker/`) are the exception: package data that runs in the musubi-tuner Python, imported by
no module of fplora.

Every import counts, also the lazy ones inside functions and those under TYPE_CHECKING: a cycle
that only shows at run time is still a cycle for whoever reads the code.
"""

from __future__ import annotations

import ast
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
    assert "fplora.worker.sweep" in workers
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
        if name in ("fplora.worker.sweep", "fplora.worker.eval")
        for m in imported
        if m.split(".")[0] == "musubi_tuner"
    }
    assert direct == set()


def test_the_walker_sees_lazy_imports_and_finds_a_cycle() -> None:
    """The checks above would pass vacuously if the walk missed imports inside functions."""
    _, modules = _graph()
    assert "fplora.jobs.train" in modules["fplora.cli.train"]  # imported inside the `train` command
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
