"""``talkdata download``: run a plan: fetch what is missing in parallel, verify it, extract each unit.

Layout of ``DATA_ROOT/NAME`` (:mod:`.root`); nothing is written outside it::

    DATA_ROOT/grid/
      s1/bbaf2n.mpg, alignments/s1/bbaf2n.align   extracted corpus (the official layout)
      archives/s1.zip                             verified downloads (split parts too)
      archives/s1.zip.part                        an interrupted download; the next run resumes it (Range)
      archives/s1.zip.bad-md5                     a download whose checksum did not match (kept, never deleted)
      .talkdata/complete/archives/s1.zip.json     written only after size + checksum verification
      .talkdata/extracted/s1.zip.json             written only after a complete extraction
      .talkdata/skipped/...                       an optional file that failed (``download`` tries it again, ``build`` not)

A re-run skips every unit whose extraction marker exists and every file whose completion marker
matches the file on disk and the expected checksum (:mod:`.state`), so it costs no network traffic once
done. A file found in place without a marker (an archive the user copied in) is verified instead of
fetched again.

How a run goes (:func:`download`): the plan (:mod:`.plan`, pure) drops the units already extracted;
then, only if something is missing, the remote checksum list is read (:mod:`.checksums`; the recipe's
values are the fallback), credentials are resolved (:mod:`.access`; only now, so a complete corpus never
asks for them), files are fetched in parallel (:mod:`.http`) and each unit is extracted
(:mod:`.archives`). A corpus with its own download (:mod:`.hooks`) is handed to its hook instead.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from ..corpora.lfs import is_lfs_pointer
from ..errors import UserError
from ..progress import bar
from ..recipe import Recipe
from . import archives, http
from .access import Access, choose_access, credential_hint, jobs
from .checksums import remote_checksums
from .hooks import call_hook, download_hook
from .plan import RemoteFile, Unit, apply_checksums, human, mirror_login, mirror_url, remote_files, select, units
from .root import corpus_root, writable_root
from .state import STATE_DIR, is_complete, is_extracted, mark_complete, marker_path, read_json, write_json

DEFAULT_JOBS = 4

logger = logging.getLogger(__name__)


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


def _check_in_place(root: Path, f: RemoteFile) -> bool:
    """A file already at its destination without a marker: verify it and mark it, or move it aside."""
    target = root / f.dest
    if not target.is_file() or target.stat().st_size == 0:
        return False
    if is_lfs_pointer(target):
        logger.warning(f"{f.name}: a git-lfs pointer file, not the data; downloading the real file")
        http.move_aside(target, "lfs-pointer")
        return False
    try:
        fetched = http.check_file(target, f.name, f.size, f.checksum)
    except http.VerificationError as err:
        logger.warning(f"found {f.dest} but it does not verify ({err}); downloading it again")
        return False
    if f.checksum is None and f.size is None:
        logger.info(f"found {f.dest}: kept as it is (nothing is published to verify it against)")
    mark_complete(root, f, fetched, "(found in place)")
    return True


def _extract_unit(root: Path, unit: Unit, keep_archives: bool, report: Report) -> None:
    if unit.kind is None:
        return  # a plain file: its completion marker is all there is to record
    paths = [root / f.dest for f in unit.files]
    total = archives.uncompressed_size(paths, unit.kind)
    with bar(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"extract {unit.name}",
             leave=False) as extracting:
        result = archives.extract(paths, root / unit.into, unit.kind, extracting.update, unit.name)
    report.extracted.append(f"{unit.name} ({result.files} files)")
    write_json(marker_path(root, "extracted", unit.name), {
        "unit": unit.name, "into": unit.into or ".",
        "files": {f.name: (read_json(marker_path(root, "complete", f.dest)) or {}).get("verified", "") for f in unit.files},
    })
    if not keep_archives:
        for f in unit.files:
            (root / f.dest).unlink(missing_ok=True)
            marker_path(root, "complete", f.dest).unlink(missing_ok=True)


def has_download(recipe: Recipe) -> bool:
    return "download" in recipe.data or download_hook(recipe) is not None


def download(recipe, only: list[str] | None = None, mirror: str | None = None, jobs_n: int = DEFAULT_JOBS,
             env: Mapping[str, str] | None = None, keep_archives: bool = True, dry_run: bool = False,
             retry_skipped: bool = True) -> Report:
    """Fetch, verify and extract what ``recipe`` needs (restricted by ``only``) into ``DATA_ROOT/NAME``.

    Optional files that failed before are tried again only with ``retry_skipped`` (``talkdata
    download`` does, ``talkdata build`` does not, so an offline build of a complete corpus needs no network).
    """
    root = corpus_root(recipe.name, env)
    report = Report(root)
    spec = recipe.data.get("download")
    hook = download_hook(recipe)
    if mirror:
        mirror_url("http://x/", mirror)  # validate early
    if (spec is None or spec.get("method") == "module") and hook is not None:
        if dry_run:
            report.notes.append(f"download by {hook.__module__}.download (dry run: nothing fetched)")
            return report
        writable_root(root, STATE_DIR)
        result = call_hook(hook, recipe=recipe, root=root, only=only, mirror=mirror)
        report.notes.append(f"downloaded by {hook.__module__}.download")
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
    logger.debug(f"{recipe.name}: {len(planned)} unit(s) planned in {root}, {len(todo)} not extracted yet")
    if not todo:
        return report
    if not dry_run:
        writable_root(root, STATE_DIR)
    table, origin = ({}, "") if dry_run else remote_checksums(spec, mirror)
    if table:
        files = apply_checksums(files, table, origin)
        todo = [u for u in units(files) if u.name in {t.name for t in todo}]
    if dry_run:
        report.notes.extend(_plan_lines(root, todo, spec))
        return report
    with _exclusive(root, recipe.name):
        _fetch_and_extract(recipe, spec, root, todo, mirror, jobs_n, env, keep_archives, retry_skipped, report)
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
                       jobs_n: int, env: Mapping[str, str] | None, keep_archives: bool, retry_skipped: bool,
                       report: Report) -> None:
    needed = [f for u in todo for f in u.files if not is_complete(root, f)
              and (retry_skipped or not marker_path(root, "skipped", f.dest).exists())
              and not _check_in_place(root, f)]
    report.unverified = [f.name for u in todo for f in u.files if f.checksum is None]
    if needed:
        _check_space(root, recipe.name, needed, todo)
        needs_access = any(f.url is None for f in needed)
        access = choose_access(spec, mirror, env, recipe.name) if needs_access else None
        by_dest = {f.dest: f for f in needed}
        work = jobs(needed, root, access, mirror)
        known = sum(f.size or 0 for f in needed)
        logger.info(f"{recipe.name}: downloading {len(needed)} file(s)" + (f", {human(known)}" if known else "")
                    + f" into {root}")

        def done(job: http.Job, fetched: http.Fetched) -> None:
            rel = str(job.dest.relative_to(root))
            mark_complete(root, by_dest[rel], fetched, job.public_url)
            marker_path(root, "skipped", rel).unlink(missing_ok=True)

        started = time.monotonic()
        try:
            outcome = http.fetch_all(work, workers=jobs_n, desc=recipe.name, on_done=done, policy=http.DEFAULT_POLICY)
        except http.HTTPStatusError as err:
            failed = next((f for f in needed if f.name == err.label), None)
            raise _explain_status(err, spec, mirror, access, recipe.name, failed, root) from None
        report.seconds = time.monotonic() - started
        report.fetched = [work[i].label for i in sorted(outcome.done)]
        report.fetched_bytes = sum(f.bytes for f in outcome.done.values())
        report.skipped = [work[i].label for i in sorted(outcome.skipped)]
        for i, err in outcome.skipped.items():
            write_json(marker_path(root, "skipped", needed[i].dest), {"name": needed[i].name, "reason": str(err)})
    for unit in todo:
        if all(is_complete(root, f) for f in unit.files):
            _extract_unit(root, unit, keep_archives, report)


def _explain_status(err: http.HTTPStatusError, spec: Mapping, mirror: str | None, access: Access | None,
                    recipe: str, failed: RemoteFile | None = None, root: Path | None = None) -> UserError:
    """One line for a failed request: what to set for 401/403, the URL for 404."""
    if err.status in (401, 403) and mirror_login(mirror):
        return UserError(f"{err.label}: access denied (HTTP {err.status}) by {urlsplit(err.public_url).netloc}: the "
                         "user name and password in --mirror were rejected; check them")
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

