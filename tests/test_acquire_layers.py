"""The corpora / acquire boundary: corpus modules never import download code, and download code is
reached only from the command line and the build (read from the source files, no import needed)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "talkdata"


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the talkdata modules ``path`` imports (relative imports resolved)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    if path.name == "__init__.py":
        module = package
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            prefix = (base + "." if node.level else "") + (node.module or "")
            names.add(prefix.rstrip("."))
            names |= {f"{prefix}.{alias.name}".lstrip(".") for alias in node.names}
    return {n for n in names if n == "talkdata" or n.startswith("talkdata.")}


def test_corpora_import_no_download_code_and_no_later_stage():
    for path in sorted((PACKAGE / "corpora").rglob("*.py")):
        bad = {n for n in imported_modules(path)
               if n.startswith(("talkdata.acquire", "talkdata.pipeline", "talkdata.loader", "talkdata.qa",
                                "talkdata.train", "talkdata.cli"))}
        assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}"


def test_acquire_is_reached_only_from_the_cli_and_the_build():
    allowed = {PACKAGE / "cli.py", PACKAGE / "pipeline" / "build.py"}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.is_relative_to(PACKAGE / "acquire") or path in allowed:
            continue
        bad = {n for n in imported_modules(path) if n.startswith("talkdata.acquire")}
        assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}"


def test_the_checker_sees_relative_imports():
    grid = imported_modules(PACKAGE / "corpora" / "grid.py")
    assert {"talkdata.errors.UserError", "talkdata.corpora.records.ClipRecord"} <= grid
    download = imported_modules(PACKAGE / "acquire" / "download.py")
    assert "talkdata.corpora.lfs.is_lfs_pointer" in download
