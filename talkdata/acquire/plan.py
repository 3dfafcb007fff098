"""The plan of a download (pure): a recipe's ``[download]`` table + ``--only`` + ``--mirror`` -> files and extraction units.

:func:`remote_files` expands the recipe's archives and file list, :func:`select` keeps what ``--only``
selects, :func:`units` groups split parts into extraction units, :func:`apply_checksums` takes the sizes and
checksums of a remote list, :func:`mirror_url` applies ``--mirror``. Nothing here touches the network or the disk
(except reading the file lists shipped in ``talkdata/acquire/data/``).
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from dataclasses import dataclass, replace
from importlib import resources
from typing import Mapping
from urllib.parse import unquote, urlsplit, urlunsplit

from ..errors import UserError
from . import archives
from .http import Checksum


ARCHIVE_DIR = "archives"


@dataclass(frozen=True)
class RemoteFile:
    """One file of a corpus source: an archive, a part of a split archive, or a plain file."""

    name: str  # archive name or relative file path, as in the recipe / file list
    dest: str  # where it is stored, relative to the corpus root
    path: str = ""  # remote path substituted for {path} in the access URL
    url: str | None = None  # absolute URL (no credentials are sent with it)
    size: int | None = None  # exact bytes, when known
    approx: str = ""  # approximate size for people ("423.5 MB")
    checksum: Checksum | None = None
    subsets: tuple[str, ...] = ()  # --only values that select it; empty: always fetched
    default: bool = True  # fetched when --only is not given
    unit: str = ""  # extraction unit: the archive, the joined archive of a part, or the file itself
    kind: str | None = None  # zip / tar for archives; None for plain files
    into: str = ""  # folder under the corpus root that the unit extracts into
    optional: bool = False  # a failure to fetch it is reported and the rest goes on
    listed: bool = False  # comes from a [download.files] list rather than [[download.archives]]


@dataclass(frozen=True)
class Unit:
    name: str
    files: tuple[RemoteFile, ...]
    kind: str | None
    into: str = ""


def _checksum(entry: Mapping, origin: str = "the recipe") -> Checksum | None:
    if entry.get("sha256"):
        return Checksum("sha256", str(entry["sha256"]).lower(), origin)
    if entry.get("md5"):
        return Checksum("md5", str(entry["md5"]).lower(), origin)
    return None


def safe_rel(text: str, what: str) -> str:
    parts = [p for p in text.replace("\\", "/").split("/") if p not in ("", ".")]
    if text.startswith("/") or ".." in parts:
        raise UserError(f"recipe [download]: {what} {text!r} must be a relative path inside the corpus folder")
    return "/".join(parts)


def _read_file_list(name: str) -> list[dict]:
    """Rows ``path, sha256, size`` of a list shipped in ``talkdata/acquire/data/`` (``.csv`` or ``.csv.gz``)."""
    resource = resources.files("talkdata.acquire").joinpath("data", name)
    try:
        data = resource.read_bytes()
    except (FileNotFoundError, OSError):
        raise UserError(f"recipe [download.files]: list {name!r} is not in talkdata/acquire/data/") from None
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def remote_files(spec: Mapping) -> list[RemoteFile]:
    """Every file a recipe's ``[download]`` table names, in recipe order (archives, then the file list)."""
    files: list[RemoteFile] = []
    for entry in spec.get("archives", []):
        name = safe_rel(entry["name"], "archive name")
        part_of = entry.get("part_of")
        unit = safe_rel(part_of, "part_of") if part_of else name
        kind = archives.archive_kind(unit) if entry.get("extract", True) else None
        if part_of and kind is None:
            raise UserError(f"recipe [download]: {name}: part_of {part_of!r} must name a .zip or .tar archive")
        into = safe_rel(entry.get("into", ""), "into")
        dest = f"{ARCHIVE_DIR}/{name}" if kind else "/".join(p for p in (into, name) if p)
        files.append(RemoteFile(
            name=name, dest=dest, path=entry.get("path", name), url=entry.get("url"), size=entry.get("bytes"),
            approx=entry.get("size", ""), checksum=_checksum(entry), subsets=(entry["subset"],) if entry.get("subset") else (),
            default=entry.get("default", True), unit=unit, kind=kind, into=into, optional=entry.get("optional", False),
        ))
    listing = spec.get("files")
    if listing:
        patterns = [re.compile(p) for p in listing.get("subsets", [])]
        prefixes = tuple(listing.get("include", [""]))
        for row in _read_file_list(listing["list"]):
            path = safe_rel(row["path"], "file list path")
            if not path.startswith(prefixes):
                continue
            subsets = tuple(dict.fromkeys(m.group(1) for m in (p.search(path) for p in patterns) if m))
            files.append(RemoteFile(
                name=path, dest=path, path=path, size=int(row["size"]) if row.get("size") else None,
                checksum=Checksum("sha256", row["sha256"].lower(), f"the file list {listing['list']}") if row.get("sha256") else None,
                subsets=subsets, unit=path, listed=True,
            ))
    return files


def subset_values(files: list[RemoteFile]) -> list[str]:
    return list(dict.fromkeys(s for f in files for s in f.subsets))


def parse_only(text: str | None) -> list[str] | None:
    """``"s1, s2"`` -> ``["s1", "s2"]``; None when not given."""
    if text is None:
        return None
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise UserError("--only is empty: give comma-separated values, e.g. --only s1,s2")
    return values


def select(files: list[RemoteFile], only: list[str] | None, recipe: str = "", help_text: str = "") -> list[RemoteFile]:
    """The files ``--only`` selects (files without a subset always come); without ``--only`` the defaults."""
    if only is None:
        return [f for f in files if not f.subsets or f.default]
    valid = subset_values(files)
    if not valid:
        raise UserError(f"{recipe} has no subsets: --only cannot be used, the download is all or nothing"
                        + (f" ({help_text})" if help_text else ""))
    unknown = [v for v in only if v not in set(valid)]
    if unknown:
        shown = ", ".join(valid[:40]) + (f", ... ({len(valid)} in all)" if len(valid) > 40 else "")
        hint = f"{help_text}; valid values: {shown}" if help_text else f"valid values: {shown}"
        raise UserError(f"unknown --only value{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} for {recipe}: {hint}")
    wanted = set(only)
    return [f for f in files if not f.subsets or wanted & set(f.subsets)]


def units(files: list[RemoteFile]) -> list[Unit]:
    """Group files by extraction unit, keeping recipe order (the parts of a split archive in order)."""
    grouped: dict[str, list[RemoteFile]] = {}
    for f in files:
        grouped.setdefault(f.unit, []).append(f)
    result = []
    for name, members in grouped.items():
        if len({m.subsets for m in members}) > 1:
            raise UserError(f"recipe [download]: the parts of {name} must share one subset")
        result.append(Unit(name, tuple(members), members[0].kind, members[0].into))
    return result


def apply_checksums(files: list[RemoteFile], table: Mapping[str, Mapping], origin: str) -> list[RemoteFile]:
    """Replace checksums and sizes by those of a remote list (``{name: {"md5"|"sha256": hex, "bytes": n}}``)."""
    out = []
    for f in files:
        entry = table.get(f.name)
        if entry:
            f = replace(f, checksum=_checksum(entry, origin) or f.checksum, size=entry.get("bytes", f.size))
        out.append(f)
    return out


def mirror_url(url: str, mirror: str | None) -> str:
    """``url`` with its scheme and host replaced by ``mirror``'s (a path in ``mirror`` becomes a prefix).

    A ``user:password@`` in ``mirror`` never reaches the result (it is sent as basic auth, see
    :func:`mirror_login`), so neither a DNS lookup nor a message can carry it.
    """
    if not mirror:
        return url
    base = urlsplit(mirror)
    if base.scheme not in ("http", "https") or not base.hostname:
        raise UserError("--mirror must be an http(s) URL such as https://mirror.example.org/datasets "
                        f"(got {public_mirror(mirror)!r})")
    original = urlsplit(url)
    host = base.netloc.rpartition("@")[2]
    return urlunsplit((base.scheme, host, base.path.rstrip("/") + original.path, original.query, ""))


def mirror_login(mirror: str | None) -> tuple[str, str] | None:
    """``(user, password)`` from ``http://user:password@host/`` (percent-decoded), or None."""
    if not mirror or "@" not in urlsplit(mirror).netloc:
        return None
    base = urlsplit(mirror)
    return unquote(base.username or ""), unquote(base.password or "")


def public_mirror(mirror: str) -> str:
    """``mirror`` as it may be printed: without its user name and password."""
    base = urlsplit(mirror)
    if "@" not in base.netloc:
        return mirror
    return urlunsplit((base.scheme, "***@" + base.netloc.rpartition("@")[2], base.path, base.query, base.fragment))


def human(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"  # pragma: no cover

