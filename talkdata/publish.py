"""``talkdata push OUT URL``: copy a finished build to object storage or any fsspec URL.

A build writes to a local folder: its resumable cache and the write-then-rename steps that make a
killed build safe need a filesystem. Publishing is a separate, resumable step:

1. the local build is verified first (``manifest.verify``: sizes, sha256s, counts), so a damaged
   build is never published;
2. every file of the dataset (shards, ``index.parquet``, ``rejects.parquet``, ``stats/``, the card,
   ``croissant.json``; never ``.work/`` or a ``.tmp`` leftover) is uploaded, ``dataset.json`` last,
   so a reader of ``URL`` sees a complete dataset or none;
3. the sizes at ``URL`` are compared with the local ones.

While a push runs, ``.talkdata-push.json`` at ``URL`` names the version being pushed. Run again
after an interruption, the push resumes: it skips the files already at ``URL`` with the right size
(object stores write an object whole). A destination holding another version is replaced only with
``replace=True``: its ``dataset.json`` is removed first (readers then see no dataset rather than a
mix), and at the end the files its manifest listed that the new version does not have. A destination
that holds files but neither a talkdata dataset nor a push marker is refused: talkdata never
overwrites what it did not write.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .manifest import MANIFEST, load_manifest, verify
from .progress import bar
from .store import Store, is_url

log = logging.getLogger(__name__)

#: never published: the build's cache and its half-written files
PRIVATE = (".work",)
#: at the destination while a push runs: the version being pushed and the files of the one it replaces
MARKER = ".talkdata-push.json"


@dataclass(frozen=True)
class Pushed:
    """What a push did."""

    url: str
    version: str
    uploaded: int
    skipped: int
    removed: int
    bytes: int


def dataset_files(out: Path) -> list[str]:
    """The files of the built dataset at ``out`` to publish, relative (``/``), sorted, ``dataset.json`` last."""
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                   if p.is_file() and p.relative_to(out).parts[0] not in PRIVATE and not p.name.endswith(".tmp"))
    return [f for f in files if f != MANIFEST] + [MANIFEST]


def _listed(manifest: dict) -> set[str]:
    """Paths a manifest's dataset consists of (shards and artifacts)."""
    return {entry["path"] for entry in manifest["shards"]} | set(manifest["artifacts"])


def _destination(dest: Store) -> tuple[dict | None, dict | None]:
    """(the manifest at the destination, the marker of an unfinished push there); refuses foreign content."""
    manifest = load_manifest(dest) if dest.size(MANIFEST) is not None else None
    marker = json.loads(dest.read_bytes(MARKER)) if dest.size(MARKER) is not None else None
    if manifest is None and marker is None:
        present = dest.files() if dest.is_dir() else []
        if present:
            raise UserError(f"{dest.location} holds {len(present)} file(s) but no {MANIFEST}: not a talkdata dataset; "
                            "push to an empty folder or prefix (talkdata does not overwrite files it did not write)")
    return manifest, marker


def push(out: str | Path, url: str, storage_options: dict | None = None, replace: bool = False,
         on_file: Callable[[str, int], None] | None = None) -> Pushed:
    """Publish the build at ``out`` to ``url`` (see the module docstring); ``on_file(relative, bytes)``
    is called after each upload."""
    out = Path(out)
    if is_url(str(out)):
        raise UserError(f"push copies a local build folder; {out} is a URL")
    if not (out / MANIFEST).is_file():
        raise UserError(f"{out / MANIFEST} not found: is {out} a dataset built by talkdata?")
    manifest = load_manifest(out)
    version = manifest["version"]
    problems = verify(out)
    if problems:
        raise UserError(f"{out} does not match its {MANIFEST} ({len(problems)} problem(s), first: {problems[0]}); "
                        f"run `talkdata verify {out}`, rebuild, then push")
    dest = Store(url, storage_options)
    if not dest.remote and Path(dest.root).resolve() == out.resolve():
        raise UserError(f"push {out} to {url}: the destination is the build itself")
    before, marker = _destination(dest)
    there = marker["version"] if marker else before["version"] if before else None
    if there is not None and there != version and not replace:
        what = f"an unfinished push of version {there[:12]}" if marker else f"version {there[:12]} of {before['name']}"
        raise UserError(f"{url} holds {what}; pass --replace to replace it with {version[:12]}, or push to "
                        "another prefix")
    stale = set(marker.get("replacing", [])) if marker else set()
    if before is not None and before["version"] != version:
        stale |= _listed(before)
    resuming = there == version
    dest.put_bytes(json.dumps({"version": version, "replacing": sorted(stale)}).encode(), MARKER)
    if before is not None and before["version"] != version:
        dest.remove(MANIFEST)  # readers now see no dataset rather than a manifest whose files change

    files = dataset_files(out)
    sizes = {relative: (out / relative).stat().st_size for relative in files}
    present = dest.sizes() if resuming else {}
    uploaded = skipped = sent = 0
    with bar(total=sum(sizes.values()), unit="B", unit_scale=True, desc="push", leave=False) as shown:
        for relative, size in sizes.items():
            if relative == MANIFEST or present.get(relative) != size:
                dest.put_file(out / relative, relative)
                uploaded, sent = uploaded + 1, sent + size
                if on_file:
                    on_file(relative, size)
            else:
                skipped += 1
            shown.update(size)

    landed = dest.sizes()  # one listing: the sizes that landed and the old version's files still there
    wrong = [f for f in files if landed.get(f) != sizes[f]]
    if wrong:  # the marker stays: the same push resumes
        raise UserError(f"{len(wrong)} file(s) at {url} do not have the local size after the upload (first: "
                        f"{wrong[0]}); run the same push again")
    leftovers = sorted(f for f in stale - set(files) if f in landed)
    for relative in leftovers:
        dest.remove(relative)
    dest.remove(MARKER)
    removed = len(leftovers)
    log.info("pushed %s to %s: %d uploaded, %d already there, %d removed", out, url, uploaded, skipped, removed)
    return Pushed(url=url, version=version, uploaded=uploaded, skipped=skipped, removed=removed, bytes=sent)


def describe(pushed: Pushed) -> str:
    """The one line ``talkdata push`` prints."""
    return (f"ok: {pushed.url} holds version {pushed.version}: {pushed.uploaded} file(s) uploaded "
            f"({pushed.bytes / 1e6:.1f} MB), {pushed.skipped} already there, {pushed.removed} removed")
