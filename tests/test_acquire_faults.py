"""Hostile archives, servers, data roots and recipes: one clear error each, nothing half-done, no secret shown.

The archives are built here with ``zipfile`` / ``tarfile`` around the real GRID sample clips
(``tests/data/grid``), then damaged the way real downloads and careless tools damage them; the
servers are the loopback fixture (``tests/http_fixture.py``).
"""

from __future__ import annotations

import base64
import io
import json
import stat
import struct
import tarfile
import urllib.error
import zipfile
from pathlib import Path

import pytest

from checks import error_line, private_home
from click.testing import CliRunner

import http_fixture as hf
from talkdata.acquire import archives, http, plan
from talkdata.acquire.hooks.talkinghead1kh import youtube_settings
from talkdata.cli import main
from talkdata.errors import UserError

DATA = Path(__file__).parent / "data"
CLIP = (DATA / "grid" / "s1" / "bbaf2n.mpg").read_bytes()
OTHER = (DATA / "grid" / "s2" / "swwp2s.mpg").read_bytes()
ALIGN = (DATA / "grid" / "alignments" / "s1" / "bbaf2n.align").read_bytes()
ZENODO = "/records/3625687/files/{}?download=1"


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch) -> Path:
    return private_home(tmp_path, monkeypatch)


def cli(*args: str):
    quiet = ["--no-progress"] if args[0] in ("download", "build") else []
    return CliRunner().invoke(main, [*args, *quiet])


def one_error(*args: str) -> str:
    return error_line(cli(*args))


def writestr_zip(entries: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    """A zip as ``ZipFile.writestr(name, data)`` writes it: mode 0o600 without the file-type bits."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def patch_central(data: bytes, index: int, offset: int, value: bytes) -> bytes:
    """Overwrite bytes of the ``index``-th central directory entry (the list zipfile trusts)."""
    starts, at = [], data.find(b"PK\x01\x02")
    while at >= 0:
        starts.append(at)
        at = data.find(b"PK\x01\x02", at + 1)
    pos = starts[index] + offset
    return data[:pos] + value + data[pos + len(value):]


def corrupt_member_data(data: bytes, name: str) -> bytes:
    """Flip bytes in the middle of one member's compressed data."""
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(name)
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    middle = start + info.compress_size // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 64]) + data[middle + 64:]


def tar_of(members: list[tuple[str, bytes | None]], mode: str = "w") -> bytes:
    """A tar of (name, data) in order; ``None`` data is a folder entry."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1577836800
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def nothing_extracted(dest: Path) -> bool:
    return not dest.exists() or not any(p.is_file() for p in dest.rglob("*"))


# --------------------------------------------------------------------------- archives


def test_zip_members_without_file_type_bits_are_regular_files(tmp_path):
    data = writestr_zip({"s1/bbaf2n.mpg": CLIP, "s2/swwp2s.mpg": OTHER})
    modes = [info.external_attr >> 16 for info in zipfile.ZipFile(io.BytesIO(data)).infolist()]
    assert modes == [0o600, 0o600] and not any(stat.S_IFMT(m) for m in modes)  # what the bug report describes
    (tmp_path / "s.zip").write_bytes(data)
    result = archives.extract([tmp_path / "s.zip"], tmp_path / "out")
    assert (result.files, result.skipped_special) == (2, 0)
    assert (tmp_path / "out" / "s1" / "bbaf2n.mpg").read_bytes() == CLIP
    assert (tmp_path / "out" / "s2" / "swwp2s.mpg").read_bytes() == OTHER
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["s1", "s2"]  # no staging folder left


def test_an_archive_listing_members_but_yielding_no_file_is_an_error(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("s1/bbaf2n.mpg")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "/etc/passwd")
    (tmp_path / "links.zip").write_bytes(buffer.getvalue())
    with pytest.raises(archives.ArchiveError, match=r"links\.zip: it lists 1 members but none is a regular file "
                                                    r"\(1 links or devices, 0 macOS resource entries\)"):
        archives.extract([tmp_path / "links.zip"], tmp_path / "out")
    assert nothing_extracted(tmp_path / "out")
    (tmp_path / "empty.zip").write_bytes(writestr_zip({}))
    with pytest.raises(archives.ArchiveError, match=r"^empty\.zip: it holds no files; nothing was extracted$"):
        archives.extract([tmp_path / "empty.zip"], tmp_path / "out")
    (tmp_path / "empty.tar").write_bytes(tar_of([("s1", None)]))
    with pytest.raises(archives.ArchiveError, match=r"^empty\.tar: it holds no files; nothing was extracted$"):
        archives.extract([tmp_path / "empty.tar"], tmp_path / "out")


BAD_ZIPS = {
    "file_then_folder": (lambda: writestr_zip({"s1/good.mpg": OTHER, "s1/clip": CLIP, "s1/clip/inner.mpg": CLIP}),
                         "member 's1/clip/inner.mpg' clashes with 's1/clip': one name is used both as a file and as a folder"),
    "folder_then_file": (lambda: writestr_zip({"s1/good.mpg": OTHER, "s1/clip/inner.mpg": CLIP, "s1/clip": CLIP}),
                         "member 's1/clip/inner.mpg' clashes with 's1/clip'"),
    "corrupt_deflate": (lambda: corrupt_member_data(writestr_zip({"s1/good.mpg": OTHER, "s1/bbaf2n.mpg": CLIP},
                                                                 zipfile.ZIP_DEFLATED), "s1/bbaf2n.mpg"),
                        "cannot extract, the archive is damaged or not a zip"),
    "encrypted": (lambda: patch_central(writestr_zip({"s1/good.mpg": OTHER, "s1/bbaf2n.mpg": CLIP}), 1, 8, b"\x01\x00"),
                  "member 's1/bbaf2n.mpg' is encrypted (password-protected)"),
    "deflate64": (lambda: patch_central(writestr_zip({"s1/good.mpg": OTHER, "s1/bbaf2n.mpg": CLIP}, zipfile.ZIP_DEFLATED),
                                        1, 10, b"\x09\x00"),
                  "member 's1/bbaf2n.mpg' uses compression method 9 (Deflate64), which Python's zipfile cannot read"),
    "long_name": (lambda: writestr_zip({"s1/good.mpg": OTHER, "s1/" + "b" * 300 + ".mpg": CLIP}),
                  "a name of 304 bytes (file systems allow 255)"),
}


@pytest.mark.parametrize("case", sorted(BAD_ZIPS))
def test_damaged_or_unsupported_zips_are_one_error_and_extract_nothing(tmp_path, case):
    make, message = BAD_ZIPS[case]
    (tmp_path / "s1.zip").write_bytes(make())
    with pytest.raises(archives.ArchiveError) as err:
        archives.extract([tmp_path / "s1.zip"], tmp_path / "out")
    text = str(err.value)
    assert text.startswith("s1.zip: ") and message in text and "nothing was extracted" in text
    assert "\n" not in text
    assert nothing_extracted(tmp_path / "out")  # not even s1/good.mpg, which comes first


@pytest.mark.parametrize("members, message", [
    ([("s1/good.mpg", OTHER), ("s1/clip", CLIP), ("s1/clip/inner.mpg", CLIP)], "member 's1/clip/inner.mpg' clashes"),
    ([("s1/good.mpg", OTHER), ("s1/clip", None), ("s1/clip/inner.mpg", CLIP), ("s1/clip", CLIP)], "member 's1/clip' clashes"),
    ([("s1/good.mpg", OTHER), ("s1/" + "c" * 256, CLIP)], "a name of 256 bytes"),
])
def test_tar_clashes_and_long_names_leave_nothing_half_done(tmp_path, members, message):
    (tmp_path / "s1.tar").write_bytes(tar_of(members))
    with pytest.raises(archives.ArchiveError, match="nothing was extracted") as err:
        archives.extract([tmp_path / "s1.tar"], tmp_path / "out")
    assert message in str(err.value)
    assert nothing_extracted(tmp_path / "out")


def test_an_extraction_that_clashes_with_a_file_already_there_moves_nothing(tmp_path):
    dest = tmp_path / "corpus"
    (dest / "s1").mkdir(parents=True)
    (dest / "s1" / "clip").write_bytes(b"the user's file")
    (tmp_path / "s1.zip").write_bytes(writestr_zip({"s1/good.mpg": OTHER, "s1/clip/inner.mpg": CLIP}))
    with pytest.raises(archives.ArchiveError, match=r"cannot place s1/clip/inner\.mpg: .*s1/clip is a file already there"):
        archives.extract([tmp_path / "s1.zip"], dest)
    assert sorted(p.name for p in dest.rglob("*")) == ["clip", "s1"]
    assert (dest / "s1" / "clip").read_bytes() == b"the user's file"


def test_zip_bombs_are_stopped(tmp_path):
    zeros = bytes(80 << 20)  # 80 MiB of zeros deflate to about 80 kB
    declared = writestr_zip({"s1/good.mpg": OTHER, "s1/zeros.bin": zeros}, zipfile.ZIP_DEFLATED)
    assert len(declared) * 100 < len(zeros)  # the clip is 390 kB; the zeros add about 80 kB
    (tmp_path / "bomb.zip").write_bytes(declared)
    with pytest.raises(archives.ArchiveError, match=r"bomb\.zip: its members declare \d+ bytes, over 100 times the "
                                                    r"archive's size \(a zip bomb\?\); nothing was extracted"):
        archives.extract([tmp_path / "bomb.zip"], tmp_path / "out")
    assert nothing_extracted(tmp_path / "out")

    # a member that lies about its size: zipfile stops at the declared size, and the CRC no longer matches
    small = writestr_zip({"s1/bbaf2n.mpg": CLIP}, zipfile.ZIP_DEFLATED)
    (tmp_path / "liar.zip").write_bytes(patch_central(small, 0, 24, struct.pack("<I", 1000)))
    with pytest.raises(archives.ArchiveError, match="liar.zip: cannot extract, the archive is damaged"):
        archives.extract([tmp_path / "liar.zip"], tmp_path / "out2")
    assert nothing_extracted(tmp_path / "out2")

    # a compressed tar has no size list to check first: the output is capped while it streams
    (tmp_path / "bomb.tar.gz").write_bytes(tar_of([("s1/good.mpg", OTHER), ("s1/zeros.bin", zeros)], "w:gz"))
    with pytest.raises(archives.ArchiveError, match=r"bomb\.tar\.gz: stopped at member 's1/zeros\.bin': the output "
                                                    r"passed \d+ bytes, over 100 times"):
        archives.extract([tmp_path / "bomb.tar.gz"], tmp_path / "out3")
    assert nothing_extracted(tmp_path / "out3")


# --------------------------------------------------------------------------- download end to end


def serve_grid(server: hf.FixtureServer, archives_: dict[str, bytes], **route) -> None:
    """The archives at Zenodo's paths, and the record API that lists their md5s (behind the same login)."""
    for name, data in archives_.items():
        server.add(ZENODO.format(name), data, **route)
    record = {"files": [{"key": name, "size": len(data), "checksum": "md5:" + hf.md5(data)} for name, data in archives_.items()]}
    server.add("/api/records/3625687", json.dumps(record).encode(), content_type="application/json", **route)


def test_download_of_writestr_zips_extracts_them_and_deletes_nothing_unextracted(home):
    with hf.FixtureServer() as server:
        serve_grid(server, {"s1.zip": writestr_zip({"s1/bbaf2n.mpg": CLIP}),
                            "alignments.zip": writestr_zip({"alignments/s1/bbaf2n.align": ALIGN})})
        result = cli("download", "grid", "--only", "s1", "--mirror", server.url, "--delete-archives")
        assert result.exit_code == 0, result.output
        assert "extracted: s1.zip (1 files), alignments.zip (1 files)" in result.output
        assert (home / "grid" / "s1" / "bbaf2n.mpg").read_bytes() == CLIP

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("s2/swwp2s.mpg")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "x")
    with hf.FixtureServer() as server:
        serve_grid(server, {"s2.zip": buffer.getvalue(), "alignments.zip": writestr_zip({"alignments/s2/x.align": ALIGN})})
        line = one_error("download", "grid", "--only", "s2", "--mirror", server.url, "--delete-archives")
        assert "s2.zip: it lists 1 members but none is a regular file" in line
        assert (home / "grid" / "archives" / "s2.zip").is_file()  # kept: it was never extracted
        again = cli("download", "grid", "--only", "s2", "--mirror", server.url)
        assert "already complete" not in again.output and again.exit_code == 2


def test_mirror_login_is_sent_as_basic_auth_and_never_shown(home):
    archives_ = {"s1.zip": writestr_zip({"s1/bbaf2n.mpg": CLIP}),
                 "alignments.zip": writestr_zip({"alignments/s1/bbaf2n.align": ALIGN})}
    with hf.FixtureServer() as server:
        serve_grid(server, archives_, user="bob", password="p@ss word")
        host = server.url.split("//")[1]
        mirror = f"http://bob:p%40ss%20word@{host}"
        assert plan.mirror_url("https://zenodo.org/records/1/files/s1.zip", mirror) == f"http://{host}/records/1/files/s1.zip"
        assert plan.public_mirror(mirror) == f"http://***@{host}"
        result = cli("download", "grid", "--only", "s1", "--mirror", mirror)
        assert result.exit_code == 0, result.output
        assert all(hit.authorization for hit in server.hits_for(ZENODO.format("s1.zip")))
        assert (home / "grid" / "s1" / "bbaf2n.mpg").read_bytes() == CLIP
        assert "p%40ss" not in result.output and "p@ss" not in result.output


def test_a_server_echoing_the_credential_in_its_reason_is_not_printed(home):
    token = base64.b64encode(b"bob:wrong-secret").decode()
    with hf.FixtureServer() as server:
        serve_grid(server, {"s1.zip": b"x", "alignments.zip": b"y"}, user="bob", password="right",
                   reason="Unauthorized for {authorization}")
        host = server.url.split("//")[1]
        line = one_error("download", "grid", "--only", "s1", "--mirror", f"http://bob:wrong-secret@{host}")
    assert "access denied (HTTP 401)" in line and "the user name and password in --mirror were rejected" in line
    assert f"by {host}" in line
    for secret in ("wrong-secret", token, "Basic", "bob:"):
        assert secret not in line

    refused = urllib.error.HTTPError("http://h/x", 503, f"Busy, your header was Basic {token}", {}, None)
    assert token not in http._reason(refused) and http._reason(refused) == "HTTP 503 Service Unavailable"
    assert token not in str(http._status_error("x.zip", urllib.error.HTTPError("http://h/x", 403, token, {}, None),
                                               "http://h/x"))


def test_a_bad_mirror_url_is_printed_without_its_password():
    line = one_error("download", "grid", "--only", "s1", "--mirror", "ftp://bob:hunter2@mirror.example.org/")
    assert "--mirror must be an http(s) URL" in line and "hunter2" not in line and "ftp://***@mirror.example.org/" in line


# --------------------------------------------------------------------------- the data root


def test_a_data_root_that_is_a_file_is_one_error_in_download_and_build(tmp_path, monkeypatch):
    blocker = tmp_path / "home-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TALKDATA_HOME", str(blocker))
    line = one_error("download", "grid", "--only", "s1")
    assert f"{blocker} is a file, not a folder; set TALKDATA_HOME to a folder" in line
    line = one_error("build", "grid", "--only", "s1", "--out", str(tmp_path / "out"))
    assert f"{blocker} is a file, not a folder" in line
    assert blocker.read_text() == "not a folder"


def test_a_data_root_that_cannot_be_written_is_one_error(tmp_path, monkeypatch):
    readonly = Path("/sys/talkdata-test-home")  # sysfs refuses new folders even to root
    if not Path("/sys/kernel").is_dir():
        pytest.skip("needs a read-only file system at /sys to make an unwritable folder (tests may run as root)")
    monkeypatch.setenv("TALKDATA_HOME", str(readonly))
    line = one_error("download", "grid", "--only", "s1")
    assert line.startswith(f"error: cannot write to the data root {readonly}/grid (TALKDATA_HOME={readonly})")
    assert "set TALKDATA_HOME to a folder you can write" in line
    line = one_error("build", "grid", "--only", "s1", "--out", str(tmp_path / "out"))
    assert line.startswith(f"error: cannot write to the data root {readonly}/grid")


# --------------------------------------------------------------------------- recipes


def grid_recipe_text() -> str:
    return (Path(__file__).parents[1] / "recipes" / "grid.toml").read_text()


def test_recipe_index_module_without_index_function(tmp_path):
    recipe = tmp_path / "mine.toml"
    recipe.write_text(grid_recipe_text().replace('index = "talkdata.corpora.grid"', 'index = "talkdata.corpora.splits"'))
    line = one_error("build", str(recipe), "--source", str(DATA / "grid"), "--out", str(tmp_path / "o"))
    assert "field 'index': module 'talkdata.corpora.splits' has no index(root, config) function" in line
    assert "talkdata.corpora.grid" in line and "talkdata.corpora.records" not in line


def test_recipe_file_that_is_not_utf8(tmp_path):
    recipe = tmp_path / "latin1.toml"
    recipe.write_bytes(grid_recipe_text().replace('title = "', 'title = "Caf\u00e9 ').encode("latin-1", "replace"))
    line = one_error("build", str(recipe), "--source", str(DATA / "grid"), "--out", str(tmp_path / "o"))
    assert line.startswith(f"error: {recipe}: not UTF-8 text (byte 0xe9 at offset ")
    assert "save the recipe as UTF-8" in line


@pytest.mark.parametrize("typed, suggestion", [("gird", "grid"), ("voxceleb", "voxceleb2"), ("CREMA-D", "crema-d"),
                                               ("talkinghead", "talkinghead-1kh")])
def test_unknown_recipe_name_suggests_the_close_one(typed, suggestion):
    line = one_error("recipes", typed)
    assert line.startswith(f"error: unknown recipe {typed!r}: did you mean {suggestion}?")


def test_unknown_recipe_name_without_a_close_one_lists_them_all(tmp_path):
    line = one_error("build", "zzzz", "--source", str(DATA / "grid"), "--out", str(tmp_path / "unused"))
    assert "did you mean" not in line and "available: crema-d, grid, lrw, talkinghead-1kh, videos, voxceleb2" in line
    assert not (tmp_path / "unused").exists()


def test_youtube_downloads_refuse_a_mirror_login_without_showing_it():
    assert youtube_settings(None, "http://127.0.0.1:9/")["url"].startswith("http://127.0.0.1:9/")
    with pytest.raises(UserError) as err:
        youtube_settings(None, "http://bob:hunter2@127.0.0.1:9/")
    assert "not supported for YouTube downloads" in str(err.value) and "hunter2" not in str(err.value)
