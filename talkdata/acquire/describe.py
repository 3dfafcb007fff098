"""How a corpus is downloaded, in words: the lines of ``talkdata recipes`` and ``talkdata recipes NAME``."""

from __future__ import annotations

from ..recipe import Recipe
from .access import requirement
from .checksums import CHECKSUM_FORMATS
from .hooks import download_hook
from .plan import RemoteFile, human, remote_files, select, subset_values


def download_summary(recipe: Recipe) -> str:
    """One line for ``talkdata recipes``: how (and whether) ``talkdata download`` gets this corpus."""
    spec = recipe.data.get("download")
    hook = download_hook(recipe)
    if spec is None or spec.get("method") == "module":
        if hook is not None:
            return f"download: talkdata download {recipe.name} (by {hook.__module__}.download)"
        return f"download: none; talkdata build {recipe.name} --source FOLDER"
    methods = spec.get("access", [])
    needs = [requirement(m, None) for m in methods if m.get("auth", "none") != "none"]
    login = "no login" if not needs else "needs " + ", or ".join(needs)
    return f"download: talkdata download {recipe.name} ({login})"


def describe(recipe: Recipe) -> list[str]:
    """Lines for ``talkdata recipes NAME``: how the corpus is downloaded, from where, what is verified."""
    spec = recipe.data.get("download")
    hook = download_hook(recipe)
    if spec is None and hook is None:
        return ["download: none; build it from a folder you have: talkdata build "
                f"{recipe.name} --source FOLDER"]
    lines = [f"download: talkdata download {recipe.name} [--only ...] [--mirror URL]  "
             f"(into $TALKDATA_HOME/{recipe.name}, default ~/.cache/talkdata/{recipe.name})"]
    if spec is None or spec.get("method") == "module":
        doc = (hook.__doc__ or "").strip().splitlines() if hook is not None else []
        lines.append(f"  by {hook.__module__}.download" + (f": {doc[0]}" if doc else "") if hook is not None
                     else "  (no download module)")
        if spec and spec.get("about"):
            lines.append(f"  {spec['about']}")
        return lines
    if spec.get("about"):
        lines.append(f"  {spec['about']}")
    for method in spec.get("access", []):
        auth = method.get("auth", "none")
        how = "no login" if auth == "none" else f"needs {requirement(method, None)}"
        lines.append(f"  from {method['url'].replace('{key}', 'KEY')} ({how})")
    if spec.get("request_access"):
        lines.append(f"  request access: {spec['request_access']}")
    if spec.get("checksums"):
        origin, _ = CHECKSUM_FORMATS[spec["checksums"]["format"]]
        lines.append(f"  checksums: read from {origin} {spec['checksums']['url']}; the recipe's values are the fallback")
    files = remote_files(spec)
    values = subset_values(files)
    if values:
        shown = ", ".join(values[:40]) + (f", ... ({len(values)} in all)" if len(values) > 40 else "")
        lines.append(f"  --only: {spec.get('only_help') or shown}")
    defaults = select(files, None)
    lines.append(f"  default download: {len(defaults)} file(s), {_total(defaults)}")
    listing = spec.get("files")
    for f in (f for f in files if not f.listed):
        check = f.checksum.algo if f.checksum else ("checksum from the record API" if spec.get("checksums") else "no checksum")
        size = human(f.size) if f.size is not None else (f.approx or "size unknown")
        tags = []
        if f.unit != f.name:
            tags.append(f"part of {f.unit}")
        if f.subsets:
            tags.append(f"--only {f.subsets[0]}" + ("" if f.default else ", not in the default"))
        if f.optional:
            tags.append("optional")
        lines.append(f"    {f.name:28s} {size:>10s}  {check}" + (f"  ({'; '.join(tags)})" if tags else ""))
    if listing:
        listed = [f for f in files if f.listed]
        lines.append(f"    {len(listed)} files from the list {listing['list']} ({', '.join(listing.get('include', ['all']))}), "
                     f"{_total(listed)}, sha256 each")
    return lines


def _total(files: list[RemoteFile]) -> str:
    known = sum(f.size for f in files if f.size is not None)
    approx = sum(1 for f in files if f.size is None and f.approx)
    unknown = sum(1 for f in files if f.size is None and not f.approx)
    parts = [human(known)] if known else []
    if approx:
        parts.append(f"{approx} file(s) of approximate size (below)")
    if unknown:
        parts.append(f"{unknown} file(s) of unknown size")
    return " + ".join(parts) or "size unknown"

