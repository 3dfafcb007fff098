"""Archive extraction: zip, tar (plain or compressed) and split parts, extracted safely.

Split parts (``vox2_dev_mp4_partaa`` ... ``partai``, ``lrw-v1-partaa`` ... ``partag``) are the
byte-wise split of one archive. :class:`ConcatFile` reads them as one seekable file, which is what
``cat parts > whole`` followed by extraction does, without writing the joined copy (267 GB for
VoxCeleb2's dev set).

Safety: every member name is checked before anything is written. Absolute names, drive letters and
``..`` components raise :class:`UnsafeArchive`; so does a target that would resolve outside the
destination through a symbolic link already there. Links, devices and FIFOs inside archives are not
extracted (talking-face corpora hold regular files only) and are counted in the result. macOS
resource entries (``__MACOSX/``, ``._name``) are skipped. File modification times come from the
archive, so extracting again gives the same file metadata (and build caches stay valid).
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

from ..errors import UserError

COPY_CHUNK = 1 << 20


class UnsafeArchive(UserError):
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


def member_target(dest: Path, name: str) -> Path | None:
    """Where member ``name`` goes under ``dest``; None for junk and folder entries.

    Raises :class:`UnsafeArchive` for names that would land outside ``dest``.
    """
    text = name.replace("\\", "/")
    if text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        raise UnsafeArchive(f"refusing to extract {name!r}: absolute path in the archive")
    parts = tuple(p for p in PurePosixPath(text).parts if p not in ("", "."))
    if not parts:
        return None
    if ".." in parts:
        raise UnsafeArchive(f"refusing to extract {name!r}: '..' in the path would leave {dest}")
    if _is_junk(parts):
        return None
    target = dest.joinpath(*parts)
    root = dest.resolve()
    if not target.parent.resolve().is_relative_to(root) or (target.is_symlink()):
        raise UnsafeArchive(f"refusing to extract {name!r}: it would be written outside {dest} (through a link)")
    return target


def _copy(source, target: Path, mtime: float | None, on_bytes: Callable[[int], None]) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with target.open("wb") as out:
        while chunk := source.read(COPY_CHUNK):
            out.write(chunk)
            written += len(chunk)
            on_bytes(len(chunk))
    if mtime is not None:
        os.utime(target, (mtime, mtime))
    return written


def _extract_zip(handle, dest: Path, result: Extracted, on_bytes: Callable[[int], None]) -> None:
    with zipfile.ZipFile(handle) as archive:
        for info in archive.infolist():
            mode = info.external_attr >> 16
            target = member_target(dest, info.filename)
            if target is None or info.is_dir():
                if target is None and not info.is_dir():
                    result.skipped_junk += 1
                continue
            if mode and not stat.S_ISREG(mode):
                result.skipped_special += 1
                continue
            mtime = time.mktime(info.date_time + (0, 0, -1))
            with archive.open(info) as source:
                result.bytes += _copy(source, target, mtime, on_bytes)
            result.files += 1


def _extract_tar(handle, dest: Path, result: Extracted, on_bytes: Callable[[int], None]) -> None:
    with tarfile.open(fileobj=handle, mode="r|*") as archive:
        for count, info in enumerate(archive, 1):
            target = member_target(dest, info.name)
            if count % 1000 == 0:
                archive.members = []  # stream mode: keep memory flat on archives with a million members
            if target is None or info.isdir():
                if target is None and not info.isdir():
                    result.skipped_junk += 1
                continue
            if not info.isfile():
                result.skipped_special += 1
                continue
            source = archive.extractfile(info)
            result.bytes += _copy(source, target, float(info.mtime), on_bytes)
            result.files += 1


def extract(paths: list[Path], dest: Path, kind: str | None = None, on_bytes: Callable[[int], None] = lambda n: None,
            label: str = "") -> Extracted:
    """Extract one archive, or the parts of one split archive in order, into ``dest``."""
    paths = [Path(p) for p in paths]
    label = label or paths[0].name
    kind = kind or archive_kind(label)
    dest.mkdir(parents=True, exist_ok=True)
    result = Extracted()
    handle = ConcatFile(paths) if len(paths) > 1 else paths[0].open("rb")
    try:
        if kind == "zip":
            _extract_zip(handle, dest, result, on_bytes)
        elif kind == "tar":
            _extract_tar(io.BufferedReader(handle, COPY_CHUNK) if isinstance(handle, ConcatFile) else handle, dest,
                         result, on_bytes)
        else:
            raise UserError(f"{label}: unknown archive kind {kind!r} (zip or tar)")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as err:
        raise UserError(f"{label}: cannot extract, the archive is damaged or not a {kind} ({err}); "
                        "remove it and download it again") from None
    finally:
        handle.close()
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
