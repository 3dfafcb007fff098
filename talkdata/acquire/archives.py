"""Archive extraction: zip, tar (plain or compressed) and split parts, all or nothing.

Split parts (``vox2_dev_mp4_partaa`` ... ``partai``, ``lrw-v1-partaa`` ... ``partag``) are the
byte-wise split of one archive. :class:`ConcatFile` reads them as one seekable file, which is what
``cat parts > whole`` followed by extraction does, without writing the joined copy (267 GB for
VoxCeleb2's dev set).

All or nothing: members are written into a staging folder beside the destination
(``DEST/.talkdata-extracting/``, same file system) and moved into place only after the whole archive
was read without error; a failed extraction removes the staging folder and leaves the destination as
it was. A zip's member list is checked before any byte is written; a tar is a stream, so its members
are checked as they come (into the staging folder).

Refused with one :class:`ArchiveError` line each (the archive is named, and what to do):
absolute names, drive letters, ``..`` components and targets that resolve outside the destination
through a symbolic link already there (:class:`UnsafeArchive`); a member name with a component over
255 bytes; one name used as a file and as a folder; encrypted zip members; compression methods
Python cannot read (Deflate64, Implode, ...); damaged data (bad deflate stream, CRC); and zip bombs:
declared sizes over :data:`MAX_RATIO` times the archive (beyond :data:`RATIO_FLOOR`) or more than the
free space, or output beyond what a member declares. An archive that yields no file (empty, or links
and devices only) is an error too.

Zip members count as regular files unless their Unix mode positively says link, device, FIFO or
socket (``zipfile.writestr`` leaves the file-type bits out). Links, devices and FIFOs are not
extracted (talking-face corpora hold regular files only) and are counted in the result. macOS
resource entries (``__MACOSX/``, ``._name``) are skipped. File modification times come from the
archive, so extracting again gives the same file metadata (and build caches stay valid).
"""

from __future__ import annotations

import contextlib
import io
import lzma
import os
import shutil
import stat
import tarfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

from ..errors import UserError

COPY_CHUNK = 1 << 20
STAGING = ".talkdata-extracting"  # under the destination; corpus indexers never look inside
MAX_NAME_BYTES = 255  # one path component (NAME_MAX on Linux and macOS)
MAX_RATIO = 100  # uncompressed bytes per archive byte beyond which an extraction is a bomb ...
RATIO_FLOOR = 64 << 20  # ... once this much would be written (small text archives compress well)
_SPECIAL = {stat.S_IFLNK, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK}
_ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_METHOD_NAMES = {6: "Implode", 9: "Deflate64", 10: "PKWARE DCL Implode", 93: "Zstandard", 95: "xz", 98: "PPMd", 99: "AES"}


class ArchiveError(UserError):
    """The archive cannot be extracted as it is; the message names it and says what to do."""


class UnsafeArchive(ArchiveError):
    """A member would be written outside the destination folder."""


@dataclass
class Extracted:
    files: int = 0
    bytes: int = 0
    skipped_junk: int = 0  # __MACOSX and AppleDouble entries
    skipped_special: int = 0  # links, devices, fifos


def archive_kind(name: str) -> str | None:
    """``zip``, ``tar`` or None (not an archive) from a file name."""
    lower = name.lower()
    if lower.endswith(".zip"):
        return "zip"
    if lower.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")):
        return "tar"
    return None


class ConcatFile(io.RawIOBase):
    """Several files read as one seekable, read-only stream (split archive parts, in order)."""

    def __init__(self, paths: list[Path]):
        super().__init__()
        self._paths = [Path(p) for p in paths]
        self._sizes = [p.stat().st_size for p in self._paths]
        self._starts = []
        total = 0
        for size in self._sizes:
            self._starts.append(total)
            total += size
        self._length = total
        self._pos = 0
        self._index = -1
        self._handle = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._length + offset
        else:
            raise ValueError(f"bad whence {whence}")
        if pos < 0:
            raise OSError("seek before the start of the concatenated parts")
        self._pos = pos
        return pos

    def _part_at(self, pos: int) -> int:
        for index in range(len(self._starts) - 1, -1, -1):
            if pos >= self._starts[index]:
                return index
        return 0

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        if self._pos >= self._length or not len(view):
            return 0
        index = self._part_at(self._pos)
        while index < len(self._sizes) - 1 and self._pos >= self._starts[index] + self._sizes[index]:
            index += 1  # skip empty parts
        if index != self._index:
            if self._handle is not None:
                self._handle.close()
            self._handle = self._paths[index].open("rb")
            self._index = index
        self._handle.seek(self._pos - self._starts[index])
        want = min(len(view), self._starts[index] + self._sizes[index] - self._pos)
        got = self._handle.readinto(view[:want])
        self._pos += got
        return got

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes, crossing part boundaries (never a short read before the end)."""
        if size is None or size < 0:
            size = max(0, self._length - self._pos)
        buffer = bytearray(size)
        view = memoryview(buffer)
        filled = 0
        while filled < size:
            got = self.readinto(view[filled:])
            if not got:
                break
            filled += got
        return bytes(view[:filled])

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        super().close()


def _is_junk(parts: tuple[str, ...]) -> bool:
    return "__MACOSX" in parts or parts[-1].startswith("._") or parts[-1] == ".DS_Store"


def member_parts(name: str, dest: Path) -> tuple[str, ...] | None:
    """The path components of member ``name``; None for junk and the archive's root entry.

    Raises :class:`UnsafeArchive` for names that would land outside ``dest`` and
    :class:`ArchiveError` for a component longer than the file system allows.
    """
    text = name.replace("\\", "/")
    if text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        raise UnsafeArchive(f"refusing to extract {name!r}: absolute path in the archive")
    parts = tuple(p for p in PurePosixPath(text).parts if p not in ("", "."))
    if not parts:
        return None
    if ".." in parts:
        raise UnsafeArchive(f"refusing to extract {name!r}: '..' in the path would leave {dest}")
    long = next((p for p in parts if len(os.fsencode(p)) > MAX_NAME_BYTES), None)
    if long is not None:
        raise ArchiveError(f"refusing to extract {name[:80]!r}...: a name of {len(os.fsencode(long))} bytes "
                           f"(file systems allow {MAX_NAME_BYTES})")
    return None if _is_junk(parts) else parts


def member_target(dest: Path, name: str) -> Path | None:
    """Where member ``name`` goes under ``dest``; None for junk and folder entries.

    Raises :class:`UnsafeArchive` for names that would land outside ``dest``.
    """
    parts = member_parts(name, dest)
    return None if parts is None else _checked_target(dest, parts, name)


def _checked_target(dest: Path, parts: tuple[str, ...], name: str) -> Path:
    target = dest.joinpath(*parts)
    if not target.parent.resolve().is_relative_to(dest.resolve()) or target.is_symlink():
        raise UnsafeArchive(f"refusing to extract {name!r}: it would be written outside {dest} (through a link)")
    return target


def _copy(source, target: Path, mtime: float | None, on_bytes: Callable[[int], None], budget: "_Budget",
          name: str, declared: int | None = None) -> int:
    """Copy one member into ``target`` (in the staging folder), stopping at the declared size or the budget."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        out = target.open("xb")
    except (FileExistsError, NotADirectoryError, IsADirectoryError):
        raise ArchiveError(f"member {name!r} clashes with another member: one name is used both as a file and "
                           "as a folder (or twice)") from None
    written = 0
    with out:
        while chunk := source.read(COPY_CHUNK):
            written += len(chunk)
            if declared is not None and written > declared:
                raise ArchiveError(f"member {name!r} expands beyond the {declared} bytes it declares (a zip bomb?)")
            budget.spend(len(chunk), name)
            out.write(chunk)
            on_bytes(len(chunk))
    if mtime is not None:
        os.utime(target, (mtime, mtime))
    return written


class _Budget:
    """Stops an extraction whose output grows beyond :data:`MAX_RATIO` x the archive (past :data:`RATIO_FLOOR`)."""

    def __init__(self, archive_bytes: int):
        self.limit = max(RATIO_FLOOR, MAX_RATIO * archive_bytes)
        self.used = 0

    def spend(self, n: int, name: str) -> None:
        self.used += n
        if self.used > self.limit:
            raise ArchiveError(f"stopped at member {name!r}: the output passed {self.limit} bytes, over {MAX_RATIO} "
                               "times the archive's size (a zip bomb?)")


def _method_name(method: int) -> str:
    return _METHOD_NAMES.get(method) or zipfile.compressor_names.get(method, "unknown")


def _plan_zip(archive: zipfile.ZipFile, dest: Path, result: Extracted, budget: _Budget,
              ) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """Every member checked before anything is written: the regular files to extract, in archive order."""
    files: dict[tuple[str, ...], zipfile.ZipInfo] = {}
    folders: set[tuple[str, ...]] = set()
    for info in archive.infolist():
        parts = member_parts(info.filename, dest)
        if parts is None:
            if not info.is_dir():
                result.skipped_junk += 1
            continue
        if info.is_dir():
            folders.add(parts)
            continue
        if stat.S_IFMT(info.external_attr >> 16) in _SPECIAL:
            result.skipped_special += 1
            continue
        if info.flag_bits & 0x1:
            raise ArchiveError(f"member {info.filename!r} is encrypted (password-protected); talkdata cannot "
                               "extract it: extract the archive yourself into the corpus folder")
        if info.compress_type not in _ZIP_METHODS:
            raise ArchiveError(f"member {info.filename!r} uses compression method {info.compress_type} "
                               f"({_method_name(info.compress_type)}), which Python's zipfile cannot read: extract "
                               "the archive with 7z or unzip into the corpus folder")
        _checked_target(dest, parts, info.filename)
        files[parts] = info
    for parts, info in files.items():
        clash = next((parts[:i] for i in range(1, len(parts)) if parts[:i] in files), None)
        if clash is not None or parts in folders:
            other = "/".join(clash or parts)
            raise ArchiveError(f"member {info.filename!r} clashes with {other!r}: one name is used both as a file and "
                               "as a folder")
    declared = sum(info.file_size for info in files.values())
    if declared > budget.limit:
        raise ArchiveError(f"its members declare {declared} bytes, over {MAX_RATIO} times the archive's size "
                           "(a zip bomb?)")
    free = shutil.disk_usage(dest).free
    if declared > free:
        raise ArchiveError(f"its members need {declared} bytes and {free} are free under {dest}: free space "
                           "or set TALKDATA_HOME to a larger disk")
    return sorted(((info, parts) for parts, info in files.items()), key=lambda item: item[0].header_offset)


def _extract_zip(handle, dest: Path, staging: Path, result: Extracted, on_bytes: Callable[[int], None],
                 budget: _Budget) -> int:
    with zipfile.ZipFile(handle) as archive:
        listed = sum(1 for info in archive.infolist() if not info.is_dir())
        for info, parts in _plan_zip(archive, dest, result, budget):
            mtime = time.mktime(info.date_time + (0, 0, -1))
            with archive.open(info) as source:
                result.bytes += _copy(source, staging.joinpath(*parts), mtime, on_bytes, budget, info.filename,
                                      info.file_size)
            result.files += 1
    return listed


def _extract_tar(handle, dest: Path, staging: Path, result: Extracted, on_bytes: Callable[[int], None],
                 budget: _Budget) -> int:
    listed = 0
    with tarfile.open(fileobj=handle, mode="r|*") as archive:
        for count, info in enumerate(archive, 1):
            parts = member_parts(info.name, dest)
            if count % 1000 == 0:
                archive.members = []  # stream mode: keep memory flat on archives with a million members
            if not info.isdir():
                listed += 1
            if parts is None or info.isdir():
                if parts is None and not info.isdir():
                    result.skipped_junk += 1
                continue
            if not info.isfile():
                result.skipped_special += 1
                continue
            _checked_target(dest, parts, info.name)
            source = archive.extractfile(info)
            result.bytes += _copy(source, staging.joinpath(*parts), float(info.mtime), on_bytes, budget, info.name,
                                  info.size)
            result.files += 1
    return listed


def _move_into(staging: Path, dest: Path) -> None:
    """Move every staged file to its place under ``dest``; every clash is found before the first move."""
    moves = []
    for folder, _dirs, names in os.walk(staging):
        for name in names:
            source = Path(folder) / name
            rel = source.relative_to(staging)
            target = _checked_target(dest, rel.parts, str(rel))
            blocker = next((p for p in [*reversed(rel.parents[:-1]), rel]
                            if (dest / p).exists() and (dest / p).is_dir() == (p == rel)), None)
            if blocker is not None:
                kind = "a folder" if blocker == rel else "a file"
                raise ArchiveError(f"cannot place {rel}: {dest / blocker} is {kind} already there; move it away "
                                   "and run again")
            moves.append((source, target))
    for source, target in moves:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)


def _decompression_error(err: OSError) -> bool:
    """bz2 and gzip report bad data as OSError without an errno; disk and permission errors carry one."""
    return err.errno is None


def extract(paths: list[Path], dest: Path, kind: str | None = None, on_bytes: Callable[[int], None] = lambda n: None,
            label: str = "") -> Extracted:
    """Extract one archive, or the parts of one split archive in order, into ``dest``: all of it or nothing."""
    paths = [Path(p) for p in paths]
    label = label or paths[0].name
    kind = kind or archive_kind(label)
    if kind not in ("zip", "tar"):
        raise UserError(f"{label}: unknown archive kind {kind!r} (zip or tar)")
    dest.mkdir(parents=True, exist_ok=True)
    staging = dest / STAGING / label.replace("/", "_")
    shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted run (talkdata wrote it)
    staging.mkdir(parents=True)
    result = Extracted()
    budget = _Budget(sum(p.stat().st_size for p in paths))
    handle = ConcatFile(paths) if len(paths) > 1 else paths[0].open("rb")
    try:
        if kind == "zip":
            listed = _extract_zip(handle, dest, staging, result, on_bytes, budget)
        else:
            listed = _extract_tar(io.BufferedReader(handle, COPY_CHUNK) if isinstance(handle, ConcatFile) else handle,
                                  dest, staging, result, on_bytes, budget)
        if not result.files:
            raise ArchiveError(f"it lists {listed} members but none is a regular file ({result.skipped_special} "
                               f"links or devices, {result.skipped_junk} macOS resource entries)" if listed
                               else "it holds no files")
        _move_into(staging, dest)
    except ArchiveError as err:
        raise type(err)(f"{label}: {err}; nothing was extracted") from None
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, NotImplementedError,
            RuntimeError) as err:
        raise ArchiveError(f"{label}: cannot extract, the archive is damaged or not a {kind} ({err}); nothing was "
                           "extracted: remove it and download it again") from None
    except OSError as err:
        if not _decompression_error(err):
            raise
        raise ArchiveError(f"{label}: cannot extract, the archive is damaged ({err}); nothing was extracted: "
                           "remove it and download it again") from None
    finally:
        handle.close()
        shutil.rmtree(staging, ignore_errors=True)
        with contextlib.suppress(OSError):  # other units may be staging there too
            (dest / STAGING).rmdir()
    return result


def uncompressed_size(paths: list[Path], kind: str) -> int | None:
    """Total size of the members of a zip (for a progress bar); None for tars (unknown without a full read)."""
    if kind != "zip":
        return None
    handle = ConcatFile(paths) if len(paths) > 1 else paths[0].open("rb")
    try:
        with zipfile.ZipFile(handle) as archive:
            return sum(i.file_size for i in archive.infolist() if not i.is_dir())
    except zipfile.BadZipFile:
        return None
    finally:
        handle.close()
