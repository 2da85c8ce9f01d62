"""The package's import graph: no cycles between modules, and no import upward across the layers.

Every ``import`` / ``from … import`` of a ``seqbench`` module is an edge, wherever it sits (module level, inside a
function, under ``if TYPE_CHECKING``), relative imports resolved; ``from pkg import name`` is an edge to
``pkg.name`` when that is a module, else to ``pkg``. Importing a submodule is not counted as importing its
parent package's ``__init__`` (Python runs it first, but that is not a dependency the code chose).
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest brings tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]

# Layers from the bottom up: a module may import modules of its own layer and of the layers below, never above.
# A module belongs to the longest prefix that names it (a prefix names a module and its submodules; the root
# package ``seqbench``, which holds only the version string, names only itself).
ROOT_PACKAGE = "seqbench"
LAYERS: list[tuple[str, ...]] = [
    # utilities usable from anywhere: the version, errors, config resolution, the run context, atomic writes,
    # progress bars, and the paired tests / multiple-comparison control every verdict reads (probes included)
    (ROOT_PACKAGE, "seqbench.errors", "seqbench.version", "seqbench.atomic", "seqbench.config", "seqbench.context",
     "seqbench.progress", "seqbench.stats", "seqbench.space"),
    ("seqbench.data",),
    # toolkits over the data: evaluation, the CF training loop, LLM backbones and prompts
    ("seqbench.eval", "seqbench.train", "seqbench.llm"),
    # models: the registry and the family-independent modules (base, pop, store, item_text), then the families
    ("seqbench.models",),
    ("seqbench.models.cf",),
    ("seqbench.models.lm", "seqbench.models.llm"),
    ("seqbench.probes",),
    ("seqbench.planner",),
    # the MLflow store: its schema (record), recording (tracking, live curves) and reading back (runs)
    ("seqbench.record", "seqbench.tracking", "seqbench.tracking_live", "seqbench.runs"),
    ("seqbench.runner",),
    # `seqbench sweep`, and its offline form (a machine without Ray or MLflow) on the same planning and logging
    ("seqbench.sweep", "seqbench.sweep_offline"),
    # `seqbench tune`: Ray Tune trials through the runner's training path, device grants as the sweep's
    ("seqbench.tune", "seqbench.tune_study"),
    # analysis of recorded runs
    ("seqbench.compare", "seqbench.report"),
    # front ends
    ("seqbench.render", "seqbench.ui", "seqbench.benchinfo", "seqbench.cli"),
]

# (importer, imported) pairs allowed to go upward, each with the reason; keep it empty if at all possible
ALLOWED_UPWARD: dict[tuple[str, str], str] = {}


def package_roots() -> dict[str, Path]:
    """Installed package name -> folder, from pyproject's ``package-dir`` (models/ and probes/ are installed as
    seqbench.models and seqbench.probes)."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {name: ROOT / folder for name, folder in tool["package-dir"].items()}


def discover(roots: dict[str, Path]) -> dict[str, Path]:
    """Module name -> file for every module under the roots (a nested root is left to its own entry)."""
    modules: dict[str, Path] = {}
    for pkg, folder in roots.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([pkg, *parts])
            owner = max((p for p in roots if name == p or name.startswith(p + ".")), key=len)
            if owner == pkg:
                modules[name] = path
    return modules


@functools.cache
def top_level_names(path: Path) -> set[str] | None:
    """Names a module binds at its top level (through ``if`` / ``try`` / ``with`` blocks too); None when it
    defines a module ``__getattr__`` (any name may exist)."""
    names: set[str] = set()
    todo = list(ast.parse(path.read_text(encoding="utf-8"), str(path)).body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, ast.If | ast.Try | ast.With | ast.For | ast.While):
            for field in ("body", "orelse", "finalbody", "handlers"):
                todo.extend(getattr(node, field, []))
        elif isinstance(node, ast.ExceptHandler):
            todo.extend(node.body)
    return None if "__getattr__" in names else names


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> tuple[set[str], set[str]]:
    """(the seqbench modules ``name`` imports anywhere in its file, the imported seqbench modules or names
    that do not exist)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    missing: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                pkg = ".".join(base + ([node.module] if node.module else []))
            else:
                pkg = node.module or ""
            if (pkg == "seqbench" or pkg.startswith("seqbench.")) and pkg not in modules:
                missing.add(pkg)
            elif pkg in modules:
                bound = top_level_names(modules[pkg])
                missing.update(f"{pkg}.{a.name}" for a in node.names if a.name != "*" and bound is not None
                               and a.name not in bound and f"{pkg}.{a.name}" not in modules)
            targets = [f"{pkg}.{alias.name}" if f"{pkg}.{alias.name}" in modules else pkg for alias in node.names]
        for target in targets:
            if target != "seqbench" and not target.startswith("seqbench."):
                continue
            if isinstance(node, ast.Import) and target not in modules:
                missing.add(target)
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name:
                found.add(target)
    return found, missing


def scan() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module -> the modules it imports, module -> the seqbench modules it names that do not exist)."""
    modules = discover(package_roots())
    pairs = {name: imports_of(name, path, modules) for name, path in modules.items()}
    return {n: p[0] for n, p in pairs.items()}, {n: p[1] for n, p in pairs.items() if p[1]}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def layer_of(module: str) -> int | None:
    best, rank = -1, None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or (p != ROOT_PACKAGE and module.startswith(p + "."))) and len(p) > best:
                best, rank = len(p), i
    return rank


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Imports into a higher layer (modules without a layer are test_every_module_has_a_layer's to report)."""
    rank = {m: layer_of(m) for m in graph}
    return [f"{a} (layer {rank[a]}) imports {b} (layer {rank[b]})" for a in sorted(graph) for b in sorted(graph[a])
            if None not in (rank[a], rank[b]) and rank[b] > rank[a] and (a, b) not in ALLOWED_UPWARD]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return scan()[0]


def test_the_graph_sees_the_whole_package(graph):
    """Every folder is found, including models/ and probes/ and their subpackages, with real edges."""
    for name in ("seqbench.cli", "seqbench.data.store", "seqbench.models", "seqbench.models.cf.sasrec",
                 "seqbench.models.llm.base", "seqbench.probes.shuffle_infer", "seqbench.report.build"):
        assert name in graph, name
    assert "seqbench.models.llm.fit" in graph["seqbench.models.llm.base"]  # module level, relative
    assert "seqbench.probes" in graph["seqbench.planner"]  # inside a function
    assert "seqbench.sweep" in graph["seqbench.report.build"]  # inside a function, absolute


def test_every_package_is_installed():
    """Each folder with an ``__init__.py`` is in pyproject's ``packages`` list (a wheel ships only those)."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    modules = discover(package_roots())
    packages = {name for name, path in modules.items() if path.name == "__init__.py"}
    assert packages <= listed, f"not in pyproject's packages: {sorted(packages - listed)}"
    for name in listed:
        assert importlib.util.find_spec(name) is not None, name


def test_every_import_names_an_existing_module():
    """A moved module leaves no stale import behind, not even one inside a function that no test runs (in the
    package, the scripts or the tests)."""
    missing = scan()[1]
    modules = discover(package_roots())
    for folder in ("scripts", "tests"):
        for path in sorted((ROOT / folder).glob("*.py")):
            name = f"{folder}.{path.stem}"
            if stale := imports_of(name, path, modules)[1]:
                missing[name] = stale
    assert missing == {}


def test_no_import_cycles(graph):
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_module_has_a_layer(graph):
    assert [m for m in sorted(graph) if layer_of(m) is None] == [], "add new top-level modules to LAYERS"
    assert layer_of("seqbench.not_placed") is None  # the root package is no catch-all


def test_no_upward_imports(graph):
    assert upward_imports(graph) == [], "\n".join(upward_imports(graph))
    stale = [pair for pair in ALLOWED_UPWARD if pair[1] not in graph.get(pair[0], ())]
    assert stale == [], f"allowed upward imports that no longer exist: {stale}"


def test_the_checks_catch_a_cycle_and_an_upward_import(graph):
    fake = {k: set(v) for k, v in graph.items()}
    fake["seqbench.models.llm.fit"].add("seqbench.models.llm.base")  # base imports fit
    cycle = find_cycle(fake)
    assert cycle is not None and {"seqbench.models.llm.fit", "seqbench.models.llm.base"} <= set(cycle)
    fake = {k: set(v) for k, v in graph.items()}
    fake["seqbench.data.store"].add("seqbench.models.store")
    assert upward_imports(fake) == ["seqbench.data.store (layer 1) imports seqbench.models.store (layer 3)"]
