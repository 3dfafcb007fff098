"""Recipes: one TOML file per corpus in ``recipes/``, validated against ``schemas/recipe.schema.json``.

A recipe is data: sources, license and access notes, layout, split protocols and processing defaults.
The corpus-specific code it names (``index = "talkdata.corpora.grid"``) turns a raw folder into clip
records: ``index(root, config, exclude) -> Iterator[ClipRecord]``, one record at a time (the build packs
them into a compact ``RecordList``; ``exclude``: folders never entered, such as the build's output when it
lies inside the source).
"""

from __future__ import annotations

import difflib
import importlib
import json
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import jsonschema

from .errors import UserError
from .files import read_utf8


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict:
    return json.loads(resources.files("talkdata.schemas").joinpath(f"{name}.schema.json").read_text())


def schema_error_line(origin: str, error: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    return f"{origin}: field {where!r}: {error.message}"


@dataclass
class Recipe:
    name: str
    data: dict[str, Any]
    path: str = ""
    protocols: dict[str, dict] = field(default_factory=dict)

    @property
    def defaults(self) -> dict[str, Any]:
        return self.data.get("defaults", {})

    def indexer(self) -> Callable:
        module = importlib.import_module(self.data["index"])
        return module.index


def parse_recipe(text: str, origin: str) -> Recipe:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"{origin}: not valid TOML: {err}") from None
    errors = sorted(jsonschema.Draft202012Validator(load_schema("recipe")).iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        raise UserError(schema_error_line(origin, errors[0]))
    try:
        module = importlib.import_module(data["index"])
    except ImportError:
        raise UserError(f"{origin}: field 'index': module {data['index']!r} does not exist") from None
    if not callable(getattr(module, "index", None)):
        raise UserError(f"{origin}: field 'index': module {data['index']!r} has no index(root, config) function "
                        f"(corpus modules: {', '.join(corpus_modules())})")
    return Recipe(name=data["name"], data=data, path=origin, protocols=data.get("protocols", {}))


def corpus_modules() -> list[str]:
    """The modules a recipe's ``index`` may name: those of ``talkdata.corpora`` that define ``index``."""
    folder = resources.files("talkdata.corpora")
    names = sorted(p.name[:-3] for p in folder.iterdir() if p.name.endswith(".py") and not p.name.startswith("_"))
    return [f"talkdata.corpora.{n}" for n in names
            if callable(getattr(importlib.import_module(f"talkdata.corpora.{n}"), "index", None))]


def read_recipe_text(path: Path) -> str:
    """A recipe file's text (a UTF-8 byte order mark is dropped); one line naming the file when it is not UTF-8."""
    return read_utf8(path, "save the recipe as UTF-8")


def recipe_names() -> list[str]:
    folder = resources.files("talkdata.recipes")
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_recipe(name: str) -> Recipe:
    """A bundled recipe by name, or a recipe file by path."""
    if name.endswith(".toml") and Path(name).is_file():
        return parse_recipe(read_recipe_text(Path(name)), name)
    if name.endswith(".toml"):
        raise UserError(f"recipe file {name} not found (a bundled recipe is named without .toml: "
                        f"{', '.join(recipe_names())})")
    if name not in recipe_names():
        close = difflib.get_close_matches(name.lower(), recipe_names(), n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise UserError(f"unknown recipe {name!r}: {hint}(available: {', '.join(recipe_names())}; or give a path "
                        "to a .toml)")
    text = resources.files("talkdata.recipes").joinpath(f"{name}.toml").read_text()
    recipe = parse_recipe(text, f"recipe {name}.toml")
    if recipe.name != name:
        raise UserError(f"recipe {name}.toml: field 'name': is {recipe.name!r}, must match the file name")
    return recipe
