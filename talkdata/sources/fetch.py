"""``talkdata download``: a recipe's ``[download]`` table + ``--only`` + ``--mirror`` -> a plan -> files in the data root.

Data root: ``$TALKDATA_HOME``, else ``~/.cache/talkdata``; corpus ``NAME`` lives in ``DATA_ROOT/NAME/``
in the layout ``talkdata build NAME --source DATA_ROOT/NAME`` reads (which is what ``build`` uses when
``--source`` is left out). Nothing is written outside ``DATA_ROOT/NAME/``::

    DATA_ROOT/grid/
      s1/bbaf2n.mpg, alignments/s1/bbaf2n.align   extracted corpus (the official layout)
      archives/s1.zip                             verified downloads (split parts too)
      archives/s1.zip.part                        an interrupted download; the next run resumes it (Range)
      archives/s1.zip.bad-md5                     a download whose checksum did not match (kept, never deleted)
      .talkdata/complete/archives/s1.zip.json     written only after size + checksum verification
      .talkdata/extracted/s1.zip.json             written only after a complete extraction
      .talkdata/skipped/...                       an optional file that failed (``download`` tries it again, ``build`` not)

A re-run skips every unit whose extraction marker exists and every file whose completion marker
matches the file on disk and the expected checksum, so it costs no network traffic once done. A file
found in place without a marker (an archive the user copied in) is verified instead of fetched again.

How a run goes (:func:`download`): expand the recipe's archives and file list (:func:`remote_files`),
keep what ``--only`` selects (:func:`select`, pure), group split parts into units (:func:`units`, pure),
drop units already extracted; then, only if something is missing, read the remote checksum list
(Zenodo's record API for GRID; the recipe's values are the fallback), resolve credentials (only now,
so a complete corpus never asks for them), turn files into HTTP jobs (:func:`jobs`, pure), fetch them
in parallel (:mod:`.http`) and extract each unit (:mod:`.archives`).

Hook contract for dataset modules (the module a recipe names in ``index``):

``download(recipe, root: Path, only: list[str] | None, mirror: str | None, progress: bool)``
    Optional. When the module defines it and the recipe has no ``[download]`` table, or one with
    ``method = "module"``, ``talkdata download NAME`` (and ``talkdata build NAME`` without
    ``--source``) call it instead of the generic archive download, **with keyword arguments**, passing
    only the parameters the function declares (all of them to a ``**kwargs`` catch-all is *not* done):

    - ``recipe``: the loaded :class:`talkdata.recipe.Recipe` (``recipe.data`` is the parsed TOML, e.g.
      its ``[youtube]`` table);
    - ``root``: ``DATA_ROOT/NAME`` (created); write only below it, in the layout ``index`` reads;
    - ``only``: the parsed ``--only`` values or None; validate them and raise
      :class:`talkdata.errors.UserError` listing the valid ones;
    - ``mirror``: the ``--mirror`` URL or None (apply it with :func:`mirror_url`);
    - ``progress``: whether to show progress bars.

    A hook that does not declare ``only`` (or ``mirror``) makes ``--only`` (``--mirror``) an error
    rather than being silently ignored. The hook skips what is already complete and raises
    ``UserError`` (one line) for anything the user must fix; a returned object with a ``summary()``
    method is printed. TalkingHead-1KH (yt-dlp, :func:`talkdata.sources.talkinghead1kh.download`) uses it.

``check_source(root: Path) -> None``
    Optional. Called by ``build`` before indexing a source folder; raises ``UserError`` when the folder
    cannot be used as it is (CREMA-D: git-lfs pointer files instead of media).
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import importlib
import inspect
import io
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import quote, urlsplit, urlunsplit

from ..errors import UserError
from . import archives, credentials, http
from .http import Checksum

STATE_DIR = ".talkdata"
ARCHIVE_DIR = "archives"
DEFAULT_JOBS = 4
LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/"


# --------------------------------------------------------------------------- data root


def data_root(env: Mapping[str, str] | None = None) -> Path:
    """``$TALKDATA_HOME``, else ``~/.cache/talkdata``."""
    env = os.environ if env is None else env
    return Path(env.get("TALKDATA_HOME") or Path.home() / ".cache" / "talkdata").expanduser()


def corpus_root(name: str, env: Mapping[str, str] | None = None) -> Path:
    return data_root(env) / name


# --------------------------------------------------------------------------- the plan (pure)


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


def _safe_rel(text: str, what: str) -> str:
    parts = [p for p in text.replace("\\", "/").split("/") if p not in ("", ".")]
    if text.startswith("/") or ".." in parts:
        raise UserError(f"recipe [download]: {what} {text!r} must be a relative path inside the corpus folder")
    return "/".join(parts)


def _read_file_list(name: str) -> list[dict]:
    """Rows ``path, sha256, size`` of a list shipped in ``talkdata/sources/data/`` (``.csv`` or ``.csv.gz``)."""
    resource = resources.files("talkdata.sources").joinpath("data", name)
    try:
        data = resource.read_bytes()
    except (FileNotFoundError, OSError):
        raise UserError(f"recipe [download.files]: list {name!r} is not in talkdata/sources/data/") from None
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def remote_files(spec: Mapping) -> list[RemoteFile]:
    """Every file a recipe's ``[download]`` table names, in recipe order (archives, then the file list)."""
    files: list[RemoteFile] = []
    for entry in spec.get("archives", []):
        name = _safe_rel(entry["name"], "archive name")
        part_of = entry.get("part_of")
        unit = _safe_rel(part_of, "part_of") if part_of else name
        kind = archives.archive_kind(unit) if entry.get("extract", True) else None
        if part_of and kind is None:
            raise UserError(f"recipe [download]: {name}: part_of {part_of!r} must name a .zip or .tar archive")
        into = _safe_rel(entry.get("into", ""), "into")
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
            path = _safe_rel(row["path"], "file list path")
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
    """``url`` with its scheme and host replaced by ``mirror``'s (a path in ``mirror`` becomes a prefix)."""
    if not mirror:
        return url
    base = urlsplit(mirror)
    if base.scheme not in ("http", "https") or not base.netloc:
        raise UserError(f"--mirror must be an http(s) URL such as https://mirror.example.org/datasets (got {mirror!r})")
    original = urlsplit(url)
    return urlunsplit((base.scheme, base.netloc, base.path.rstrip("/") + original.path, original.query, ""))


def parse_zenodo_record(data: bytes) -> dict[str, dict]:
    """Zenodo's record API answer -> ``{file name: {"md5": hex, "bytes": n}}``."""
    record = json.loads(data)
    entries = record.get("files", [])
    if isinstance(entries, dict):  # InvenioRDM /files form
        entries = entries.get("entries", [])
        entries = list(entries.values()) if isinstance(entries, dict) else entries
    table = {}
    for entry in entries:
        key = entry.get("key") or entry.get("filename")
        algo, _, value = str(entry.get("checksum", "")).partition(":")
        if not key or algo not in ("md5", "sha256") or not value:
            continue
        table[key] = {algo: value, **({"bytes": int(entry["size"])} if entry.get("size") is not None else {})}
    if not table:
        raise ValueError("no files with checksums in the answer")
    return table


CHECKSUM_FORMATS = {"zenodo": ("the Zenodo record API", parse_zenodo_record)}


# --------------------------------------------------------------------------- access and credentials


@dataclass(frozen=True)
class Access:
    """How the archives are reached: a URL template and, behind a login, the credential."""

    url: str
    auth: str = "none"
    credential: credentials.Credential | None = field(default=None, repr=False)


def _access_host(method: Mapping, mirror: str | None) -> str:
    return urlsplit(mirror_url(method["url"].replace("{path}", "x").replace("{key}", "x"), mirror)).hostname or ""


def _requirement(method: Mapping, mirror: str | None) -> str:
    if method.get("auth") == "key":
        return f"{method['key_env']} (a download key)"
    if method.get("auth") == "basic":
        text = f"{method['user_env']} and {method['password_env']}"
        if method.get("netrc", True):
            text += f" (or a ~/.netrc entry for machine {_access_host(method, mirror)})"
        return text
    return "nothing"


def credential_hint(spec: Mapping, mirror: str | None) -> str:
    """``set X (...), or Y and Z (...); request access: ...`` for messages."""
    needs = [_requirement(m, mirror) for m in spec.get("access", []) if m.get("auth", "none") != "none"]
    text = "set " + ", or ".join(needs) if needs else "no credentials are configured for this source"
    if spec.get("request_access"):
        text += f"; request access: {spec['request_access']}"
    return text


def choose_access(spec: Mapping, mirror: str | None, env: Mapping[str, str] | None = None, recipe: str = "") -> Access:
    """The first access method whose credentials are available (environment, then netrc)."""
    methods = spec.get("access", [])
    for method in methods:
        auth = method.get("auth", "none")
        if auth == "none":
            return Access(method["url"], "none")
        if auth == "key":
            credential = credentials.key_credential(method["key_env"], env)
        else:
            credential = credentials.basic_credential(method["user_env"], method["password_env"],
                                                      _access_host(method, mirror), env, method.get("netrc", True))
        if credential is not None:
            return Access(method["url"], auth, credential)
    raise UserError(f"{recipe} needs credentials: {credential_hint(spec, mirror)}")


def _url_for(f: RemoteFile, access: Access | None, mirror: str | None) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    """(real URL, URL safe to print, headers) of one file."""
    if f.url:
        url = mirror_url(f.url, mirror)
        return url, url, ()
    if access is None:
        raise UserError(f"recipe [download]: {f.name} has no url and the recipe has no [[download.access]]")
    path = quote(f.path, safe="/")
    headers: tuple[tuple[str, str], ...] = ()
    if access.auth == "key" and access.credential is not None:
        real = access.url.format(path=path, key=quote(access.credential.secret, safe=""))
        public = access.url.format(path=path, key="***")
    else:
        real = public = access.url.format(path=path, key="")
        if access.auth == "basic" and access.credential is not None:
            headers = (("Authorization", access.credential.basic_header()),)
    return mirror_url(real, mirror), mirror_url(public, mirror), headers


def jobs(files: list[RemoteFile], root: Path, access: Access | None, mirror: str | None) -> list[http.Job]:
    out = []
    for f in files:
        url, public, headers = _url_for(f, access, mirror)
        out.append(http.Job(label=f.name, url=url, public_url=public, dest=root / f.dest, size=f.size,
                            checksum=f.checksum, headers=headers, optional=f.optional))
    return out


# --------------------------------------------------------------------------- markers


def _marker(root: Path, kind: str, rel: str) -> Path:
    return root / STATE_DIR / kind / f"{rel}.json"


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def mark_complete(root: Path, f: RemoteFile, fetched: http.Fetched, public_url: str = "") -> None:
    if fetched.verified:
        how = f"{fetched.algo} from {f.checksum.origin}"
    elif f.size is not None:
        how = "size only (no checksum is published)"
    else:
        how = "not verified (no checksum or size is published)"
    _write_json(_marker(root, "complete", f.dest), {
        "name": f.name, "path": f.dest, "url": public_url, "bytes": fetched.bytes, fetched.algo: fetched.hexdigest,
        "verified": how,
    })


def is_complete(root: Path, f: RemoteFile) -> bool:
    """A completion marker that matches the file on disk and the expected checksum."""
    marker = _read_json(_marker(root, "complete", f.dest))
    target = root / f.dest
    if not marker or not target.is_file() or target.stat().st_size != marker.get("bytes"):
        return False
    if f.size is not None and marker["bytes"] != f.size:
        return False
    if f.checksum is not None:
        return marker.get(f.checksum.algo, "").lower() == f.checksum.hexdigest
    return True


def is_extracted(root: Path, unit: Unit) -> bool:
    """The unit is in place: extracted (archives), or verified at its destination (plain files)."""
    if unit.kind is None:
        return all(is_complete(root, f) for f in unit.files)
    marker = _read_json(_marker(root, "extracted", unit.name))
    return bool(marker) and sorted(marker.get("files", {})) == sorted(f.name for f in unit.files)


# --------------------------------------------------------------------------- running


@dataclass
class Report:
    root: Path
    fetched: list[str] = field(default_factory=list)
    fetched_bytes: int = 0
    seconds: float = 0.0
    extracted: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unverified: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"data: {self.root}"]
        if self.fetched:
            rate = f", {human(int(self.fetched_bytes / self.seconds))}/s" if self.seconds > 0 else ""
            lines.append(f"downloaded: {len(self.fetched)} file(s), {human(self.fetched_bytes)} in {self.seconds:.1f} s{rate}")
        if self.extracted:
            lines.append("extracted: " + ", ".join(self.extracted))
        if self.already:
            names = ", ".join(self.already) if len(self.already) <= 6 else f"{len(self.already)} archives or files"
            lines.append(f"already complete: {names}")
        if self.skipped:
            lines.append("skipped (optional): " + ", ".join(self.skipped))
        if self.unverified:
            lines.append("not verified by checksum (none published): " + ", ".join(self.unverified))
        lines.extend(self.notes)
        return "\n".join(lines)


def _free_bytes(path: Path) -> int:
    probe = path
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free


def _part_size(root: Path, f: RemoteFile) -> int:
    part = root / f"{f.dest}.part"
    return part.stat().st_size if part.exists() else 0


def human(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"  # pragma: no cover


def _remote_checksums(spec: Mapping, mirror: str | None, log: Callable[[str], None]) -> tuple[dict, str]:
    source = spec.get("checksums")
    if not source:
        return {}, ""
    origin, parse = CHECKSUM_FORMATS[source["format"]]
    url = mirror_url(source["url"], mirror)
    try:
        table = parse(http.get_bytes(url, url, label="checksum list", policy=http.DEFAULT_POLICY))
    except (http.DownloadError, ValueError, KeyError, TypeError) as err:
        log(f"note: could not read the checksums from {url} ({err}); using the values in the recipe")
        return {}, ""
    return table, f"{origin} ({url})"


def _check_in_place(root: Path, f: RemoteFile, log: Callable[[str], None]) -> bool:
    """A file already at its destination without a marker: verify it and mark it, or move it aside."""
    target = root / f.dest
    if not target.is_file() or target.stat().st_size == 0:
        return False
    if is_lfs_pointer(target):
        log(f"{f.name}: a git-lfs pointer file, not the data; downloading the real file")
        http.move_aside(target, "lfs-pointer")
        return False
    try:
        fetched = http.check_file(target, f.name, f.size, f.checksum)
    except http.VerificationError as err:
        log(f"found {f.dest} but it does not verify ({err}); downloading it again")
        return False
    if f.checksum is None and f.size is None:
        log(f"found {f.dest}: kept as it is (nothing is published to verify it against)")
    mark_complete(root, f, fetched, "(found in place)")
    return True


def _extract_unit(root: Path, unit: Unit, progress: bool, keep_archives: bool, report: Report) -> None:
    from tqdm import tqdm

    if unit.kind is None:
        return  # a plain file: its completion marker is all there is to record
    paths = [root / f.dest for f in unit.files]
    total = archives.uncompressed_size(paths, unit.kind)
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"extract {unit.name}",
              disable=not progress, leave=False, file=sys.stderr) as bar:
        result = archives.extract(paths, root / unit.into, unit.kind, bar.update, unit.name)
    report.extracted.append(f"{unit.name} ({result.files} files)")
    _write_json(_marker(root, "extracted", unit.name), {
        "unit": unit.name, "into": unit.into or ".",
        "files": {f.name: (_read_json(_marker(root, "complete", f.dest)) or {}).get("verified", "") for f in unit.files},
    })
    if not keep_archives:
        for f in unit.files:
            (root / f.dest).unlink(missing_ok=True)
            _marker(root, "complete", f.dest).unlink(missing_ok=True)


def source_module(recipe):
    return importlib.import_module(recipe.data["index"])


def has_download(recipe) -> bool:
    return "download" in recipe.data or callable(getattr(source_module(recipe), "download", None))


def download(recipe, only: list[str] | None = None, mirror: str | None = None, jobs_n: int = DEFAULT_JOBS,
             progress: bool = True, log: Callable[[str], None] = print, env: Mapping[str, str] | None = None,
             keep_archives: bool = True, dry_run: bool = False, retry_skipped: bool = True) -> Report:
    """Fetch, verify and extract what ``recipe`` needs (restricted by ``only``) into ``DATA_ROOT/NAME``.

    Optional files that failed before are tried again only with ``retry_skipped`` (``talkdata
    download`` does, ``talkdata build`` does not, so an offline build of a complete corpus needs no network).
    """
    root = corpus_root(recipe.name, env)
    report = Report(root)
    spec = recipe.data.get("download")
    module = source_module(recipe)
    hook = getattr(module, "download", None)
    if mirror:
        mirror_url("http://x/", mirror)  # validate early
    if (spec is None or spec.get("method") == "module") and callable(hook):
        if dry_run:
            report.notes.append(f"download by {module.__name__}.download (dry run: nothing fetched)")
            return report
        root.mkdir(parents=True, exist_ok=True)
        result = call_hook(hook, recipe=recipe, root=root, only=only, mirror=mirror, progress=progress)
        report.notes.append(f"downloaded by {module.__name__}.download")
        if callable(getattr(result, "summary", None)):
            report.notes.append(result.summary())
        return report
    if spec is None or spec.get("method") == "module":
        raise UserError(f"recipe {recipe.name} has no download: it reads a folder you already have; "
                        f"give it with --source FOLDER ({recipe.data.get('access', '')})")
    files = select(remote_files(spec), only, recipe.name, spec.get("only_help", ""))
    planned = units(files)
    todo = [u for u in planned if not is_extracted(root, u)]
    report.already = [u.name for u in planned if u not in todo]
    if not todo:
        return report
    table, origin = ({}, "") if dry_run else _remote_checksums(spec, mirror, log)
    if table:
        files = apply_checksums(files, table, origin)
        todo = [u for u in units(files) if u.name in {t.name for t in todo}]
    if dry_run:
        report.notes.extend(_plan_lines(root, todo, spec))
        return report
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive(root, recipe.name):
        _fetch_and_extract(recipe, spec, root, todo, mirror, jobs_n, progress, log, env, keep_archives,
                           retry_skipped, report)
    return report


def _plan_lines(root: Path, todo: list[Unit], spec: Mapping) -> list[str]:
    """``--dry-run``: one line per file still to do."""
    lines = []
    for f in (f for unit in todo for f in unit.files):
        state = "complete" if is_complete(root, f) else "to fetch"
        check = f.checksum.algo if f.checksum else ("checksum from the source's list" if spec.get("checksums")
                                                    else "no checksum")
        lines.append(f"{state}: {f.name} ({human(f.size) if f.size else f.approx or 'size unknown'}, {check})")
    return lines


def _check_space(root: Path, name: str, needed: list[RemoteFile], todo: list[Unit]) -> None:
    """Stop before downloading when the known sizes do not fit on the disk."""
    download_bytes = sum(max(0, (f.size or 0) - _part_size(root, f)) for f in needed)
    extract_bytes = sum(f.size or 0 for u in todo if u.kind for f in u.files)
    free = _free_bytes(root)
    if download_bytes + extract_bytes > free:
        raise UserError(f"not enough free space for {name} under {root}: about {human(download_bytes)} to download "
                        f"and {human(extract_bytes)} to extract, {human(free)} free; free space or set TALKDATA_HOME "
                        "to a larger disk")


@contextlib.contextmanager
def _exclusive(root: Path, name: str):
    """One download per corpus folder at a time (two would write the same ``.part`` files)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX: no lock
        yield
        return
    path = root / STATE_DIR / "download.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UserError(f"another talkdata download of {name} is running on {root}; wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fetch_and_extract(recipe, spec: Mapping, root: Path, todo: list[Unit], mirror: str | None,
                       jobs_n: int, progress: bool, log: Callable[[str], None], env: Mapping[str, str] | None,
                       keep_archives: bool, retry_skipped: bool, report: Report) -> None:
    needed = [f for u in todo for f in u.files if not is_complete(root, f)
              and (retry_skipped or not _marker(root, "skipped", f.dest).exists())
              and not _check_in_place(root, f, log)]
    report.unverified = [f.name for u in todo for f in u.files if f.checksum is None]
    if needed:
        _check_space(root, recipe.name, needed, todo)
        needs_access = any(f.url is None for f in needed)
        access = choose_access(spec, mirror, env, recipe.name) if needs_access else None
        by_dest = {f.dest: f for f in needed}
        work = jobs(needed, root, access, mirror)
        known = sum(f.size or 0 for f in needed)
        log(f"{recipe.name}: downloading {len(needed)} file(s)" + (f", {human(known)}" if known else "")
            + f" into {root}")

        def done(job: http.Job, fetched: http.Fetched) -> None:
            rel = str(job.dest.relative_to(root))
            mark_complete(root, by_dest[rel], fetched, job.public_url)
            _marker(root, "skipped", rel).unlink(missing_ok=True)

        started = time.monotonic()
        try:
            outcome = http.fetch_all(work, workers=jobs_n, progress=progress, desc=recipe.name, log=log,
                                     on_done=done, policy=http.DEFAULT_POLICY)
        except http.HTTPStatusError as err:
            failed = next((f for f in needed if f.name == err.label), None)
            raise _explain_status(err, spec, mirror, access, recipe.name, failed, root) from None
        report.seconds = time.monotonic() - started
        report.fetched = [work[i].label for i in sorted(outcome.done)]
        report.fetched_bytes = sum(f.bytes for f in outcome.done.values())
        report.skipped = [work[i].label for i in sorted(outcome.skipped)]
        for i, err in outcome.skipped.items():
            _write_json(_marker(root, "skipped", needed[i].dest), {"name": needed[i].name, "reason": str(err)})
    for unit in todo:
        if all(is_complete(root, f) for f in unit.files):
            _extract_unit(root, unit, progress, keep_archives, report)


def call_hook(hook: Callable, **arguments):
    """Call a dataset module's hook with the keyword arguments it declares (see the module docstring)."""
    parameters = inspect.signature(hook).parameters
    named = {n for n, p in parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    for name, option in (("only", "--only"), ("mirror", "--mirror")):
        if arguments.get(name) is not None and name not in named:
            raise UserError(f"{option} is not supported by {hook.__module__}.{hook.__name__}")
    return hook(**{k: v for k, v in arguments.items() if k in named})


def _explain_status(err: http.HTTPStatusError, spec: Mapping, mirror: str | None, access: Access | None,
                    recipe: str, failed: RemoteFile | None = None, root: Path | None = None) -> UserError:
    """One line for a failed request: what to set for 401/403, the URL for 404."""
    if err.status in (401, 403) and failed is not None and failed.url and root is not None:
        return UserError(f"{err.label}: access denied (HTTP {err.status}) by {urlsplit(err.public_url).netloc}; this file "
                         f"is fetched without credentials: download it from {err.public_url} yourself, put it at "
                         f"{root / failed.dest} and run again")
    if err.status in (401, 403):
        if access is not None and access.credential is not None:
            return UserError(f"{err.label}: access denied (HTTP {err.status}) by {urlsplit(err.public_url).netloc}: the "
                             f"credentials from {access.credential.origin} were rejected; check them"
                             + (f" (request access: {spec['request_access']})" if spec.get("request_access") else ""))
        return UserError(f"{err.label}: access denied (HTTP {err.status}) by {urlsplit(err.public_url).netloc}: "
                         f"{credential_hint(spec, mirror)}")
    if err.status == 404:
        return UserError(f"{err.label}: not found (HTTP 404) at {err.public_url}: the file may have moved; "
                         f"check the {recipe} recipe's URL" + (" and --mirror" if mirror else ""))
    return UserError(str(err))


# --------------------------------------------------------------------------- build integration


def resolve_source(recipe, source: str | None, only: list[str] | None = None, mirror: str | None = None,
                   jobs_n: int = DEFAULT_JOBS, progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """``--source`` when given; else ``DATA_ROOT/NAME`` after downloading what is missing."""
    if source is not None:
        if only is not None or mirror is not None:
            raise UserError("--only and --mirror choose what to download; they cannot be used with --source")
        return Path(source).expanduser()
    if not has_download(recipe):
        raise UserError(f"recipe {recipe.name} has no download: give the folder with --source FOLDER "
                        f"({recipe.data.get('access', '')})")
    report = download(recipe, only, mirror, jobs_n, progress, log, retry_skipped=False)
    if report.fetched or report.extracted or report.skipped:
        log(report.summary())
    return report.root


def check_source(recipe, root: Path) -> None:
    """Run the dataset module's ``check_source(root)`` hook, when it has one."""
    hook = getattr(source_module(recipe), "check_source", None)
    if callable(hook):
        hook(root)


def is_lfs_pointer(path: Path) -> bool:
    """True for a git-lfs pointer file (a clone made without ``git lfs``): small text naming the real object."""
    try:
        if path.stat().st_size > 1024:
            return False
        with path.open("rb") as handle:
            return handle.read(len(LFS_POINTER_PREFIX)) == LFS_POINTER_PREFIX
    except OSError:
        return False


# --------------------------------------------------------------------------- description


def download_summary(recipe) -> str:
    """One line for ``talkdata recipes``: how (and whether) ``talkdata download`` gets this corpus."""
    spec = recipe.data.get("download")
    module = source_module(recipe)
    if spec is None or spec.get("method") == "module":
        if callable(getattr(module, "download", None)):
            return f"download: talkdata download {recipe.name} (by {module.__name__}.download)"
        return f"download: none; talkdata build {recipe.name} --source FOLDER"
    methods = spec.get("access", [])
    needs = [_requirement(m, None) for m in methods if m.get("auth", "none") != "none"]
    login = "no login" if not needs else "needs " + ", or ".join(needs)
    return f"download: talkdata download {recipe.name} ({login})"


def describe(recipe) -> list[str]:
    """Lines for ``talkdata recipes NAME``: how the corpus is downloaded, from where, what is verified."""
    spec = recipe.data.get("download")
    module = source_module(recipe)
    hook = getattr(module, "download", None)
    if spec is None and not callable(hook):
        return ["download: none; build it from a folder you have: talkdata build "
                f"{recipe.name} --source FOLDER"]
    lines = [f"download: talkdata download {recipe.name} [--only ...] [--mirror URL]  "
             f"(into $TALKDATA_HOME/{recipe.name}, default ~/.cache/talkdata/{recipe.name})"]
    if spec is None or spec.get("method") == "module":
        doc = (hook.__doc__ or "").strip().splitlines() if callable(hook) else []
        lines.append(f"  by {module.__name__}.download" + (f": {doc[0]}" if doc else ""))
        if spec and spec.get("about"):
            lines.append(f"  {spec['about']}")
        return lines
    if spec.get("about"):
        lines.append(f"  {spec['about']}")
    for method in spec.get("access", []):
        auth = method.get("auth", "none")
        how = "no login" if auth == "none" else f"needs {_requirement(method, None)}"
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
