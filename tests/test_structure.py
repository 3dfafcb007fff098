"""Imports follow the data flow (DESIGN.md section 2) and form no cycle.

Every module under ``talkdata/`` is parsed with ``ast`` (no import is executed); every ``import`` /
``from ... import`` that names a talkdata module counts, including those inside functions (a lazy
import is still a dependency). An edge goes to the module named, or to the submodule when a
``from`` import names one. The implicit import of a parent package is not an edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# (importer prefix, forbidden imported prefixes, why). A prefix matches the module itself and
# everything below it; rules about packages that do not exist yet apply as soon as they do.
RULES: list[tuple[str, tuple[str, ...], str]] = [
    ("talkdata.corpora", ("talkdata.acquire", "talkdata.pipeline", "talkdata.loader", "talkdata.qa", "talkdata.train",
                          "talkdata.cli"),
     "corpus knowledge never imports download machinery or a later stage"),
    ("talkdata.pipeline", ("talkdata.qa", "talkdata.train"), "the build never imports inspection or training"),
    ("talkdata.loader", ("talkdata.pipeline", "talkdata.qa", "talkdata.train", "talkdata.acquire",
                         "talkdata.corpora"),
     "the loader reads built datasets only"),
    ("talkdata.train", ("talkdata.pipeline", "talkdata.qa", "talkdata.acquire", "talkdata.corpora"),
     "training reads built datasets through the loader"),
    ("talkdata.qa", ("talkdata.pipeline", "talkdata.train", "talkdata.acquire"), "inspection reads built datasets"),
    ("talkdata.figures", ("talkdata.pipeline", "talkdata.qa", "talkdata.loader", "talkdata.train", "talkdata.acquire",
                          "talkdata.corpora", "talkdata.media", "talkdata.audio", "talkdata.store"),
     "figures are pure drawing, shared by the card and inspection"),
    ("talkdata.media", ("talkdata.face", "talkdata.audio", "talkdata.pipeline", "talkdata.loader", "talkdata.qa",
                        "talkdata.train", "talkdata.acquire", "talkdata.corpora"),
     "media is the bottom of the per-clip stack"),
    ("talkdata.face", ("talkdata.pipeline", "talkdata.loader", "talkdata.qa", "talkdata.train", "talkdata.acquire",
                       "talkdata.corpora"),
     "per-clip algorithms know nothing of the build, the loader or the corpora"),
    ("talkdata.audio", ("talkdata.pipeline", "talkdata.loader", "talkdata.qa", "talkdata.train", "talkdata.acquire",
                        "talkdata.corpora"),
     "per-clip algorithms know nothing of the build, the loader or the corpora"),
    ("talkdata.shards", ("talkdata.pipeline", "talkdata.loader", "talkdata.qa", "talkdata.train"),
     "shard writing is below the build"),
    ("talkdata.manifest", ("talkdata.pipeline", "talkdata.loader", "talkdata.qa", "talkdata.train"),
     "the manifest is below the build"),
    ("talkdata.errors", ("talkdata.",), "errors is a leaf"),
    ("talkdata.progress", ("talkdata.",), "progress bars and the log handler are a leaf (logging and tqdm only)"),
    ("talkdata.declare", ("talkdata.config", "talkdata.pipeline", "talkdata.loader", "talkdata.train",
                          "talkdata.cli"),
     "the declaration mechanism is a leaf (errors only)"),
    ("talkdata.config", ("talkdata.pipeline", "talkdata.loader", "talkdata.train", "talkdata.face", "talkdata.audio",
                         "talkdata.media", "talkdata.qa", "talkdata.cli"),
     "the build config is declared once, below everything that reads it"),
]

#: the download machinery is reached only from the CLI and the build
ACQUIRE_IMPORTERS = ("talkdata.cli", "talkdata.pipeline.build", "talkdata.acquire")

# Edges that break a rule or close a cycle today and are being removed by other changes of the
# same restructuring. Remove each entry when its change is merged (test_known_exceptions_are_real
# then says so).
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {}


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the ``talkdata`` package under ``root``."""
    modules = {}
    for path in sorted((root / "talkdata").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom, modules: dict[str, Path]) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    if node.level:
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    return {f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names}


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the talkdata modules it imports (anywhere in the file)."""
    modules = module_names(root)
    graph = {}
    for module, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges |= {t for t in _targets(module, path, node, modules) if t in modules and t != module}
        graph[module] = edges
    return graph


def _under(module: str, prefix: str) -> bool:
    return module == prefix.rstrip(".") or module.startswith(prefix if prefix.endswith(".") else prefix + ".")


def rule_violations(graph: dict[str, set[str]], exceptions=()) -> list[str]:
    found = []
    for importer, targets in sorted(graph.items()):
        for target in sorted(targets):
            if (importer, target) in exceptions:
                continue
            if importer != "talkdata.cli" and _under(target, "talkdata.cli"):
                found.append(f"{importer} imports {target}: nothing below the CLI imports it")
            if _under(target, "talkdata.acquire") and not any(_under(importer, a) for a in ACQUIRE_IMPORTERS):
                found.append(f"{importer} imports {target}: the download machinery is reached only from the CLI "
                             "and the build")
            for prefix, forbidden, why in RULES:
                if _under(importer, prefix) and any(_under(target, f) for f in forbidden):
                    found.append(f"{importer} imports {target}: {why}")
    return found


def cycles(graph: dict[str, set[str]], exceptions=()) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    edges = {m: {t for t in ts if (m, t) not in exceptions} for m, ts in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(start: str) -> None:  # iterative, so deep graphs do not hit the recursion limit
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return sorted(found)


@pytest.fixture(scope="module")
def graph():
    return import_graph(ROOT)


def test_the_graph_sees_real_imports(graph):
    assert len(graph) > 50
    assert "talkdata.loader.profile_base" in graph["talkdata.loader.atvg"]  # from .profile_base import ...
    assert "talkdata.config" in graph["talkdata.pipeline.build"]  # from ..config import resolve
    assert "talkdata.pipeline.build" in graph["talkdata.cli"]  # a lazy import inside a command


def test_no_import_cycles(graph):
    assert cycles(graph, KNOWN_EXCEPTIONS) == []


def test_imports_follow_the_data_flow(graph):
    assert rule_violations(graph, KNOWN_EXCEPTIONS) == []


def test_known_exceptions_are_real(graph):
    stale = [f"{a} -> {b} ({why})" for (a, b), why in KNOWN_EXCEPTIONS.items() if b not in graph.get(a, ())]
    assert stale == [], "fixed: remove these from KNOWN_EXCEPTIONS in tests/test_structure.py"


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_checks_catch_a_cycle_and_a_backward_import(tmp_path):
    root = _package(tmp_path, {
        "talkdata/__init__.py": "",
        "talkdata/cli.py": "from .pipeline import build\n",
        "talkdata/corpora/__init__.py": "",
        "talkdata/corpora/grid.py": "def index():\n    from ..acquire.plan import plan\n",
        "talkdata/acquire/__init__.py": "",
        "talkdata/acquire/plan.py": "from talkdata.corpora import grid\n",
        "talkdata/pipeline/__init__.py": "",
        "talkdata/pipeline/build.py": "from ..qa import dataset\nfrom .. import cli\n",
        "talkdata/qa/__init__.py": "",
        "talkdata/qa/dataset.py": "",
    })
    graph = import_graph(root)
    assert graph["talkdata.corpora.grid"] == {"talkdata.acquire.plan"}
    assert cycles(graph) == [["talkdata.acquire.plan", "talkdata.corpora.grid"],
                             ["talkdata.cli", "talkdata.pipeline.build"]]
    assert rule_violations(graph) == [
        "talkdata.corpora.grid imports talkdata.acquire.plan: the download machinery is reached only from the "
        "CLI and the build",
        "talkdata.corpora.grid imports talkdata.acquire.plan: corpus knowledge never imports download machinery or "
        "a later stage",
        "talkdata.pipeline.build imports talkdata.cli: nothing below the CLI imports it",
        "talkdata.pipeline.build imports talkdata.qa.dataset: the build never imports inspection or training",
    ]
    assert cycles(graph, {("talkdata.acquire.plan", "talkdata.corpora.grid")}) == [
        ["talkdata.cli", "talkdata.pipeline.build"]]


def test_module_names_do_not_collide():
    """One file name, one module: a newcomer finds a module by its name alone. The per-corpus download
    hooks (``acquire/hooks/CORPUS.py``) are named after their corpus module (``corpora/CORPUS.py``)."""
    package = ROOT / "talkdata"
    corpora = {p.name for p in (package / "corpora").glob("*.py")}
    seen: dict[str, list[str]] = {}
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package).as_posix()
        if path.name == "__init__.py" or (relative.startswith("acquire/hooks/") and path.name in corpora):
            continue
        seen.setdefault(path.name, []).append(relative)
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}
