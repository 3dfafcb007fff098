"""Downloads end to end against a loopback HTTP server (``tests/http_fixture.py``).

The server serves small archives built here in each corpus's exact layout, at the real paths of the
real hosts, and the bundled recipes are pointed at it with ``--mirror``:

- GRID: Zenodo ``s1.zip`` (``s1/*.mpg`` + ``__MACOSX`` junk), ``alignments.zip`` and the record API
  that lists their md5s; the real GRID sample clips;
- CREMA-D: single files at the LFS media paths, checked against the real sha256 list (the sample
  FLVs are byte-identical to the official objects) plus the two csv files;
- VoxCeleb2: the dev zip cut into nine parts ``vox2_dev_mp4_partaa..ai``, the test zip, the meta csv,
  behind the download key of the KAIST mirror; real VoxCeleb2-style sample clips;
- LRW: one tar cut into seven parts behind HTTP basic auth; the clips are synthetic (LRW material
  must not be redistributed): 29 frames of a VoxCeleb2-style sample at 256 x 256.

For VoxCeleb2 and LRW the published md5s are of the real parts, so those tests use the bundled
recipe text with only the md5 lines replaced by the fixture's (and the exact-size lines dropped).
Then ``talkdata build`` runs on every downloaded corpus and the samples are checked.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import re
import socket
import tarfile
from importlib import resources
from pathlib import Path

import cv2
import pytest

from checks import error_line, sample_json
from click.testing import CliRunner

import http_fixture as hf
from talkdata.cli import main
from talkdata.errors import UserError
from talkdata.recipe import load_recipe, parse_recipe
from talkdata.acquire import archives, checksums, credentials, download as fetch_run, http, plan
from talkdata.acquire.access import Access, jobs
from talkdata.acquire.hooks import call_hook

DATA = Path(__file__).parent / "data"
ZENODO = "/records/3625687/files/{}?download=1"
ZENODO_API = "/api/records/3625687"
CREMA_COMMIT = "1658cd342dff90010aa843eaeebd53610a08b1dc"
CREMA_MEDIA = f"/media/CheyneyComputerScience/CREMA-D/{CREMA_COMMIT}/"
CREMA_RAW = f"/CheyneyComputerScience/CREMA-D/{CREMA_COMMIT}/"
VOX_KEYED = "/download/voxceleb?file={}"
VOX_META = "/~vgg/data/voxceleb/meta/vox2_meta.csv"
VOX_TXT = "/~vgg/data/voxceleb/data/{}"
LRW_PARTS = "/~vgg/data/lip_reading/data1/{}"
SECRET_ENV = ("TALKDATA_VOXCELEB2_KEY", "TALKDATA_VOXCELEB2_USER", "TALKDATA_VOXCELEB2_PASSWORD",
              "TALKDATA_LRW_USER", "TALKDATA_LRW_PASSWORD")


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch) -> Path:
    """A private data root, no credentials from the machine, and quick retries."""
    root = tmp_path / "talkdata-home"
    monkeypatch.setenv("TALKDATA_HOME", str(root))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    for name in SECRET_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(http, "DEFAULT_POLICY", http.RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.02))
    return root


@pytest.fixture
def server():
    with hf.FixtureServer() as srv:
        yield srv


def cli(*args: str):
    quiet = ["--no-progress"] if args[0] in ("download", "build") else []
    return CliRunner().invoke(main, [*args, *quiet])


def ok(*args: str):
    result = cli(*args)
    assert result.exit_code == 0, result.output
    return result


def failed(*args: str) -> str:
    return error_line(cli(*args))


samples = sample_json


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def state_text(root: Path) -> str:
    """Everything talkdata wrote into its bookkeeping folder."""
    return "\n".join(p.read_text() for p in sorted((root / ".talkdata").rglob("*.json")))


def recipe_with_fixture_md5s(name: str, sums: dict[str, str], folder: Path) -> Path:
    """The bundled recipe text with the md5 of each named archive replaced and its size lines dropped."""
    text = resources.files("talkdata.recipes").joinpath(f"{name}.toml").read_text()
    blocks = text.split("\n\n")
    for i, block in enumerate(blocks):
        lines = block.split("\n")
        names = [line for line in lines if line.startswith("name = ")]
        archive = names[0][len('name = "'):-1] if names else None
        if archive in sums:
            lines = [f'md5 = "{sums[archive]}"' if line.startswith("md5 = ") else line for line in lines
                     if not line.startswith(("bytes = ", "size = "))]
            blocks[i] = "\n".join(lines)
    path = folder / f"{name}.toml"
    path.write_text("\n\n".join(blocks))
    assert all(f'md5 = "{digest}"' in path.read_text() for digest in sums.values())
    return path


# --------------------------------------------------------------------------- GRID (Zenodo)


def grid_archives() -> dict[str, bytes]:
    grid = DATA / "grid"
    return {
        "s1.zip": hf.zip_bytes({"s1/bbaf2n.mpg": (grid / "s1" / "bbaf2n.mpg").read_bytes(),
                                "__MACOSX/s1/._bbaf2n.mpg": b"\x00\x05\x16\x07 mac resource fork"}),
        "s2.zip": hf.zip_bytes({"s2/swwp2s.mpg": (grid / "s2" / "swwp2s.mpg").read_bytes()}),
        "alignments.zip": hf.zip_bytes({
            "alignments/s1/bbaf2n.align": (grid / "alignments" / "s1" / "bbaf2n.align").read_bytes(),
            "alignments/s2/swwp2s.align": (grid / "alignments" / "s2" / "swwp2s.align").read_bytes(),
            "__MACOSX/alignments/s1/._bbaf2n.align": b"junk",
        }),
    }


def serve_grid(srv: hf.FixtureServer, files: dict[str, bytes], api: bool = True, wrong_md5: str | None = None,
               drop: dict[str, int] | None = None) -> None:
    for name, data in files.items():
        srv.add(ZENODO.format(name), data, drop_after=(drop or {}).get(name))
    if api:
        record = {"id": 3625687, "files": [
            {"key": name, "size": len(data), "checksum": "md5:" + ("0" * 32 if name == wrong_md5 else hf.md5(data)),
             "links": {"self": f"https://zenodo.org/api/records/3625687/files/{name}/content"}}
            for name, data in files.items()]}
        srv.add(ZENODO_API, json.dumps(record).encode(), content_type="application/json")


def test_grid_download_resumes_a_dropped_transfer_then_builds(server, home, tmp_path):
    files = grid_archives()
    serve_grid(server, files, drop={"s1.zip": 200_000})
    result = ok("download", "grid", "--only", "s1,s2", "--mirror", server.url)
    assert "extracted: s1.zip (1 files), s2.zip (1 files), alignments.zip (2 files)" in result.output

    # the connection dropped after 200,000 bytes; the client went on from there with Range
    s1 = ZENODO.format("s1.zip")
    first, second = server.hits_for(s1)
    assert (first.status, first.sent, first.range) == (200, 200_000, None)
    assert (second.status, second.range) == (206, "bytes=200000-")
    assert server.bytes_sent(s1) == len(files["s1.zip"]) < 2 * len(files["s1.zip"])

    grid = home / "grid"
    assert (grid / "s1" / "bbaf2n.mpg").read_bytes() == (DATA / "grid" / "s1" / "bbaf2n.mpg").read_bytes()
    assert (grid / "alignments" / "s2" / "swwp2s.align").is_file()
    assert not (grid / "__MACOSX").exists()
    assert not list(grid.rglob("*.part"))
    marker = json.loads((grid / ".talkdata" / "complete" / "archives" / "s1.zip.json").read_text())
    assert marker["md5"] == hf.md5(files["s1.zip"]) and "Zenodo record API" in marker["verified"]

    # a second run finds everything complete and asks the network nothing
    seen = len(server.hits)
    assert "already complete: s1.zip, s2.zip, alignments.zip" in ok("download", "grid", "--only", "s1,s2", "--mirror", server.url).output
    assert len(server.hits) == seen

    # build without --source uses the data root (and downloads nothing more)
    out = tmp_path / "out"
    ok("build", "grid", "--only", "s1,s2", "--mirror", server.url, "--out", str(out), "--limit", "2",
       "--set", 'split.protocol="lipnet-unseen"')
    assert len(server.hits) == seen
    built = samples(out)
    assert sorted(built) == ["s1/bbaf2n", "s2/swwp2s"]
    s1_meta = built["s1/bbaf2n"]
    assert s1_meta["split"] == "test" and built["s2/swwp2s"]["split"] == "test"  # LipNet unseen speakers
    assert s1_meta["transcript"] == "bin blue at f two now"
    assert s1_meta["words"][0] == {"word": "bin", "start": 0.95, "end": 1.18}  # 23750 / 25000 s
    assert s1_meta["source"]["sha256"] == sha256((DATA / "grid" / "s1" / "bbaf2n.mpg").read_bytes())


def test_grid_resumes_a_partial_file_left_by_an_earlier_run(server, home):
    files = grid_archives()
    serve_grid(server, files)
    part = home / "grid" / "archives" / "s1.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(files["s1.zip"][:150_000])
    ok("download", "grid", "--only", "s1", "--mirror", server.url)
    (hit,) = server.hits_for(ZENODO.format("s1.zip"))
    assert (hit.range, hit.status, hit.sent) == ("bytes=150000-", 206, len(files["s1.zip"]) - 150_000)
    assert (home / "grid" / "archives" / "s1.zip").read_bytes() == files["s1.zip"]


def test_resume_restarts_when_the_server_ignores_range_and_finishes_a_whole_part(server, tmp_path):
    data = bytes(range(256)) * 1000
    server.add("/plain.bin", data, ignore_range=True)
    server.add("/ranged.bin", data)
    checksum = http.Checksum("sha256", sha256(data))
    plain = http.Job("plain.bin", server.url + "/plain.bin", server.url + "/plain.bin", tmp_path / "plain.bin",
                     len(data), checksum)
    plain.part.write_bytes(b"x" * 5000)  # not even the right bytes: the whole answer replaces them
    assert http.fetch_one(plain).hexdigest == checksum.hexdigest
    assert plain.dest.read_bytes() == data and not plain.part.exists()
    (hit,) = server.hits_for("/plain.bin")
    assert (hit.range, hit.status, hit.sent) == ("bytes=5000-", 200, len(data))

    whole = http.Job("ranged.bin", server.url + "/ranged.bin", server.url + "/ranged.bin", tmp_path / "ranged.bin",
                     len(data), checksum)
    whole.part.write_bytes(data)  # interrupted after the last byte, before the rename
    http.fetch_one(whole)
    (hit,) = server.hits_for("/ranged.bin")
    assert (hit.range, hit.status, hit.sent) == (f"bytes={len(data)}-", 416, 0)
    assert whole.dest.read_bytes() == data


def test_grid_archives_found_in_place_are_verified_not_fetched(server, home):
    files = grid_archives()
    serve_grid(server, files)
    archives_dir = home / "grid" / "archives"
    archives_dir.mkdir(parents=True)
    (archives_dir / "s1.zip").write_bytes(files["s1.zip"])  # e.g. copied from an earlier download
    (archives_dir / "s2.zip").write_bytes(files["s1.zip"])  # the wrong file under s2's name
    result = ok("download", "grid", "--only", "s1,s2", "--mirror", server.url, "--delete-archives")
    assert server.hits_for(ZENODO.format("s1.zip")) == []
    assert len(server.hits_for(ZENODO.format("s2.zip"))) == 1
    size = len(files["s2.zip"])
    assert f"found archives/s2.zip but it does not verify (size mismatch for s2.zip: expected {size} bytes" in result.output
    assert (archives_dir / "s2.zip.bad-size").read_bytes() == files["s1.zip"]  # moved aside, not deleted
    marker = json.loads((home / "grid" / ".talkdata" / "extracted" / "s1.zip.json").read_text())
    assert marker["files"] == {"s1.zip": "md5 from the Zenodo record API (" + server.url + ZENODO_API + ")"}
    # --delete-archives: the extracted corpus stays, the archives go, and nothing is fetched again
    assert (home / "grid" / "s2" / "swwp2s.mpg").is_file()
    assert sorted(p.name for p in archives_dir.iterdir()) == ["s2.zip.bad-size"]
    seen = len(server.hits)
    ok("download", "grid", "--only", "s1,s2", "--mirror", server.url)
    assert len(server.hits) == seen


def test_grid_checksum_mismatch_keeps_the_file_aside(server, home):
    files = grid_archives()
    serve_grid(server, files, wrong_md5="s2.zip")
    line = failed("download", "grid", "--only", "s2", "--mirror", server.url)
    got = hf.md5(files["s2.zip"])
    assert "checksum mismatch for s2.zip" in line and f"expected md5 {'0' * 32}" in line and f"got {got}" in line
    assert "Zenodo record API" in line
    kept = home / "grid" / "archives" / "s2.zip.bad-md5"
    assert f"kept as {kept}" in line
    assert kept.read_bytes() == files["s2.zip"]
    assert not (home / "grid" / "archives" / "s2.zip").exists()
    assert not (home / "grid" / ".talkdata" / "complete" / "archives" / "s2.zip.json").exists()
    assert not (home / "grid" / "s2").exists()

    # once the source is right, a re-run downloads it again; the bad copy stays where it was put
    serve_grid(server, files)
    ok("download", "grid", "--only", "s2", "--mirror", server.url)
    assert (home / "grid" / "s2" / "swwp2s.mpg").is_file() and kept.is_file()


def test_grid_falls_back_to_the_recipe_md5_without_the_record_api(server, home):
    serve_grid(server, grid_archives(), api=False)
    result = cli("download", "grid", "--only", "s1", "--mirror", server.url)
    assert result.exit_code == 2
    assert f"could not read the checksums from {server.url}{ZENODO_API}" in result.output
    # the fixture s1.zip is not Zenodo's: the known md5 from the recipe catches it
    assert "checksum mismatch for s1.zip: expected md5 cbd6556668f061b5c3681bc722659b39 (from the recipe)" in result.output


def test_grid_missing_file_names_the_url(server):
    serve_grid(server, grid_archives())
    line = failed("download", "grid", "--only", "s3", "--mirror", server.url)
    assert line == (f"error: s3.zip: not found (HTTP 404) at {server.url}/records/3625687/files/s3.zip?download=1: "
                    "the file may have moved; check the grid recipe's URL and --mirror")


def test_unreachable_host_fails_after_bounded_retries(home):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    line = failed("download", "grid", "--only", "s1", "--mirror", f"http://127.0.0.1:{port}")
    # both files fail; whichever gave up first stops the other and is the one reported
    assert re.match(rf"error: cannot download (s1|alignments)\.zip from 127\.0\.0\.1:{port} after 3 attempts", line)
    assert "connection refused" in line.lower() and "--mirror" in line


def test_not_enough_disk_space_is_said_before_downloading(server, monkeypatch):
    serve_grid(server, grid_archives())
    monkeypatch.setattr(fetch_run, "_free_bytes", lambda path: 1000)
    line = failed("download", "grid", "--only", "s1", "--mirror", server.url)
    assert "not enough free space for grid" in line and "1.0 kB free" in line
    assert [hit.route for hit in server.hits] == [ZENODO_API]  # sizes from the API; no archive requested


def test_disk_full_while_writing_is_one_clear_error(tmp_path):
    class Full:
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(http.DownloadError, match="disk full while writing .*s1.zip.part"):
        http._write(Full(), b"x", tmp_path / "s1.zip.part")


# --------------------------------------------------------------------------- CREMA-D (git-lfs media)


def test_crema_d_files_verified_against_the_lfs_sha256_list_then_built(server, home, tmp_path):
    crema = DATA / "crema_d"
    for clip in ("1001_DFA_ANG_XX", "1001_DFA_HAP_XX"):
        server.add(f"{CREMA_MEDIA}VideoFlash/{clip}.flv", (crema / "VideoFlash" / f"{clip}.flv").read_bytes())
    for name in ("VideoDemographics.csv", "SentenceFilenames.csv"):
        server.add(CREMA_RAW + name, (crema / name).read_bytes(), content_type="text/csv")
    # a pointer file left where a real file belongs (copied from a clone without git-lfs) is replaced
    pointer = home / "crema-d" / "VideoFlash" / "1001_DFA_HAP_XX.flv"
    pointer.parent.mkdir(parents=True)
    pointer.write_bytes(hf.lfs_pointer((crema / "VideoFlash" / "1001_DFA_HAP_XX.flv").read_bytes()))

    out = tmp_path / "out"
    ok("build", "crema-d", "--only", "1001_DFA_ANG_XX,1001_DFA_HAP_XX", "--mirror", server.url, "--out", str(out))
    assert sorted(h.route for h in server.hits) == sorted(server.routes)  # exactly these four files
    root = home / "crema-d"
    assert (root / "VideoFlash" / "1001_DFA_HAP_XX.flv").read_bytes() == (crema / "VideoFlash" / "1001_DFA_HAP_XX.flv").read_bytes()
    assert (root / "VideoFlash" / "1001_DFA_HAP_XX.flv.bad-lfs-pointer").is_file()
    marker = json.loads((root / ".talkdata" / "complete" / "VideoFlash" / "1001_DFA_ANG_XX.flv.json").read_text())
    assert marker["sha256"] == "10dc3fd1f2bc8203657431598bd7dc9312462008f93d08fda786043ae6a8d2f4"
    assert marker["verified"] == "sha256 from the file list crema_d_lfs_manifest.csv.gz"

    built = samples(out)
    assert sorted(built) == ["1001/1001_DFA_ANG_XX", "1001/1001_DFA_HAP_XX"]
    anger = built["1001/1001_DFA_ANG_XX"]
    assert (anger["emotion"], anger["intensity"], anger["transcript"]) == ("anger", "unspecified", "Don't forget a jacket")
    assert anger["demographics"] == {"age": 51, "sex": "Male", "race": "Caucasian", "ethnicity": "Not Hispanic"}
    assert built["1001/1001_DFA_HAP_XX"]["emotion"] == "happy"
    assert {s["split"] for s in built.values()} == {"train"}  # one actor: the speaker-disjoint split keeps it whole


def test_crema_d_clone_without_git_lfs_is_explained(tmp_path):
    clone = tmp_path / "CREMA-D"
    (clone / "VideoFlash").mkdir(parents=True)
    for clip in ("1001_DFA_ANG_XX", "1001_DFA_HAP_XX"):
        data = (DATA / "crema_d" / "VideoFlash" / f"{clip}.flv").read_bytes()
        (clone / "VideoFlash" / f"{clip}.flv").write_bytes(hf.lfs_pointer(data))
    line = failed("build", "crema-d", "--source", str(clone), "--out", str(tmp_path / "out"))
    assert "2 of the 2 files" in line and "git-lfs pointer files, not video" in line and "git lfs pull" in line


# --------------------------------------------------------------------------- VoxCeleb2 (parts + download key)

VOX_TXT_BODY = ("Identity  : \tid00017 \nReference : \t01dfn2spqyE \nOffset    : \t2 \nFV Conf   : \t17.250\t(1) \n"
                "ASD Conf  : \t3.125 \n\nFRAME \tX \tY \tW \tH \n000120 \t0.312 \t0.080 \t0.410 \t0.730 \n"
                "000121 \t0.313 \t0.081 \t0.410 \t0.730 \n")


def test_voxceleb2_key_auth_split_parts_then_build(server, home, tmp_path, monkeypatch):
    vox = DATA / "voxceleb2_like"
    dev = hf.zip_bytes({"dev/mp4/id00012/21Uxsk56VDQ/00001.mp4": (vox / "00002.mp4").read_bytes()})
    parts = dict(zip([f"vox2_dev_mp4_parta{c}" for c in "abcdefghi"], hf.split_bytes(dev, 9)))
    test_zip = hf.zip_bytes({"mp4/id00017/01dfn2spqyE/00001.mp4": (vox / "00473.mp4").read_bytes()})
    test_txt = hf.zip_bytes({"txt/id00017/01dfn2spqyE/00001.txt": VOX_TXT_BODY.encode()})
    key = "k3y-Secret-0042"
    for name, data in {**parts, "vox2_test_mp4.zip": test_zip}.items():
        server.add(VOX_KEYED.format(name), data, key=key)
    server.add(VOX_META, (vox / "vox2_meta.csv").read_bytes(), content_type="text/csv")
    server.add(VOX_TXT.format("vox2_test_txt.zip"), test_txt)  # vox2_dev_txt.zip: 404 (optional)
    recipe = recipe_with_fixture_md5s("voxceleb2", {**{n: hf.md5(d) for n, d in parts.items()},
                                                    "vox2_test_mp4.zip": hf.md5(test_zip)}, tmp_path)

    line = failed("download", str(recipe), "--mirror", server.url)
    assert "voxceleb2 needs credentials: set TALKDATA_VOXCELEB2_KEY" in line
    assert "TALKDATA_VOXCELEB2_USER and TALKDATA_VOXCELEB2_PASSWORD" in line and "cn01.mmai.io/keyreq/voxceleb" in line
    assert server.hits == []

    # vox2_meta.csv comes from its own URL without credentials; if that host wanted a login, the user is told
    monkeypatch.setenv("TALKDATA_VOXCELEB2_KEY", key)
    meta = server.routes.pop(hf.route_key(VOX_META))
    server.add(VOX_META, meta.body, user="someone", password="else")
    line = failed("download", str(recipe), "--only", "test", "--mirror", server.url)
    placed = home / "voxceleb2" / "vox2_meta.csv"
    assert "vox2_meta.csv: access denied (HTTP 401) by 127.0.0.1:" in line and f"put it at {placed}" in line
    placed.write_bytes(meta.body)  # fetched by hand: kept, never fetched again
    server.routes.pop(hf.route_key(VOX_META))

    monkeypatch.setenv("TALKDATA_VOXCELEB2_KEY", "wrong-key")
    result = cli("download", str(recipe), "--only", "dev", "--mirror", server.url)
    assert result.exit_code == 2 and "found vox2_meta.csv: kept as it is" in result.output
    assert "access denied (HTTP 401)" in result.output
    assert "credentials from TALKDATA_VOXCELEB2_KEY were rejected" in result.output
    assert "wrong-key" not in result.output

    monkeypatch.setenv("TALKDATA_VOXCELEB2_KEY", key)
    result = ok("download", str(recipe), "--mirror", server.url)
    assert "skipped optional vox2_dev_txt.zip" in result.output and "HTTP 404" in result.output
    assert "extracted: vox2_dev_mp4.zip (1 files), vox2_test_mp4.zip (1 files), vox2_test_txt.zip (1 files)" in result.output
    root = home / "voxceleb2"
    assert (root / "dev" / "mp4" / "id00012" / "21Uxsk56VDQ" / "00001.mp4").read_bytes() == (vox / "00002.mp4").read_bytes()
    assert (root / "mp4" / "id00017" / "01dfn2spqyE" / "00001.mp4").is_file()
    assert (root / "vox2_meta.csv").read_bytes() == (vox / "vox2_meta.csv").read_bytes()
    assert sorted(p.name for p in (root / "archives").iterdir()) == sorted([*parts, "vox2_test_mp4.zip", "vox2_test_txt.zip"])
    assert key not in result.output and key not in state_text(root)
    assert "key=***" in state_text(root)

    # the corpus is complete: building needs neither the key nor the dev txt archive again
    monkeypatch.delenv("TALKDATA_VOXCELEB2_KEY")
    seen = len(server.hits)
    out = tmp_path / "out"
    ok("build", str(recipe), "--mirror", server.url, "--out", str(out))
    assert len(server.hits) == seen
    built = samples(out)
    assert sorted(built) == ["id00012/21Uxsk56VDQ_00001", "id00017/01dfn2spqyE_00001"]
    dev_clip, test_clip = built["id00012/21Uxsk56VDQ_00001"], built["id00017/01dfn2spqyE_00001"]
    assert (dev_clip["split"], dev_clip["vox2_set"], dev_clip["gender"], dev_clip["vggface2_id"]) == ("train", "dev", "m", "n000012")
    assert (test_clip["split"], test_clip["vox2_set"], test_clip["av_offset"], test_clip["youtube_start_frame"]) == ("test", "test", 2, 120)


# --------------------------------------------------------------------------- LRW (tar parts + basic auth)


def synthetic_lrw_clip(folder: Path) -> bytes:
    """A 29-frame 256 x 256 25 fps clip with audio, made from a VoxCeleb2-style sample (not LRW material)."""
    import media_factory

    frames = media_factory.read_frames(media_factory.VOX_00002)[:29]
    audio, _ = media_factory.read_audio(media_factory.VOX_00002)
    path = media_factory.write_video(folder / "clip.mp4", (cv2.resize(f, (256, 256)) for f in frames), fps=25,
                                     audio=audio[: int(29 / 25 * 16000)])
    return path.read_bytes()


def test_lrw_basic_auth_tar_parts_then_build(server, home, tmp_path, monkeypatch):
    clip = synthetic_lrw_clip(tmp_path)
    txt = b"Text:  ABOUT\nConf:  1\n\nSynthetic test clip\nDuration: 0.300000 seconds\n"
    tar = hf.tar_bytes({f"lipread_mp4/ABOUT/{split}/ABOUT_00001.{ext}": data
                        for split in ("train", "val", "test") for ext, data in (("mp4", clip), ("txt", txt))})
    parts = dict(zip([f"lrw-v1-parta{c}" for c in "abcdefg"], hf.split_bytes(tar, 7)))
    user, password = "alice", "pa55-Word-LRW"
    for name, data in parts.items():
        server.add(LRW_PARTS.format(name), data, user=user, password=password)
    recipe = recipe_with_fixture_md5s("lrw", {n: hf.md5(d) for n, d in parts.items()}, tmp_path)

    line = failed("download", str(recipe), "--mirror", server.url)
    assert line == ("error: lrw needs credentials: set TALKDATA_LRW_USER and TALKDATA_LRW_PASSWORD (or a ~/.netrc entry "
                    "for machine 127.0.0.1); request access: sign the BBC R&D data-sharing agreement "
                    "(https://www.bbc.co.uk/rd/projects/lip-reading-datasets) and email it; you receive a user name and "
                    "password (https://www.robots.ox.ac.uk/~vgg/data/lip_reading/lrw1.html)")
    assert server.hits == []
    assert "no subsets" in failed("download", str(recipe), "--only", "test", "--mirror", server.url)

    monkeypatch.setenv("TALKDATA_LRW_USER", user)
    monkeypatch.setenv("TALKDATA_LRW_PASSWORD", "not-the-password")
    line = failed("download", str(recipe), "--mirror", server.url)
    assert "access denied (HTTP 401)" in line and "TALKDATA_LRW_USER / TALKDATA_LRW_PASSWORD were rejected" in line
    assert "not-the-password" not in line

    monkeypatch.delenv("TALKDATA_LRW_USER")
    monkeypatch.delenv("TALKDATA_LRW_PASSWORD")
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1\n  login {user}\n  password {password}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    result = ok("download", str(recipe), "--mirror", server.url)
    assert all(h.authorization for h in server.hits)
    assert "extracted: lrw-v1.tar (6 files)" in result.output
    root = home / "lrw"
    for split in ("train", "val", "test"):
        assert (root / "lipread_mp4" / "ABOUT" / split / "ABOUT_00001.mp4").read_bytes() == clip
    assert not (root / "archives" / "lrw-v1.tar").exists()  # the parts are read in place, never joined on disk
    assert password not in result.output and password not in state_text(root)

    monkeypatch.setenv("NETRC", str(tmp_path / "gone"))
    out = tmp_path / "out"
    ok("build", str(recipe), "--mirror", server.url, "--out", str(out))
    built = samples(out)
    assert sorted(built) == ["ABOUT/test_ABOUT_00001", "ABOUT/train_ABOUT_00001", "ABOUT/val_ABOUT_00001"]
    for split in ("train", "val", "test"):
        meta = built[f"ABOUT/{split}_ABOUT_00001"]
        assert (meta["split"], meta["word"], meta["word_duration"]) == (split, "ABOUT", 0.3)
        assert (meta["word_start_frame"], meta["word_end_frame"]) == (10, 18)  # mid 14, half int(0.15 * 25) = 3: [14 - 3 - 1, 14 + 3 + 1)


# --------------------------------------------------------------------------- plan, recipes and pieces


def test_only_values_are_checked_against_the_recipe(home, tmp_path):
    plan = ok("download", "grid", "--only", "s1", "--dry-run").output
    assert "to fetch: s1.zip (423.5 MB, md5)" in plan
    assert "to fetch: alignments.zip (size unknown, checksum from the source's list)" in plan
    assert not home.exists()  # a dry run writes nothing
    line = failed("download", "grid", "--only", "s1,s21")
    assert line.startswith("error: unknown --only value s21 for grid: speakers s1 ... s34 (no s21)")
    assert "valid values: s1, s2, s3" in line and "audio_25k" in line
    assert "no download" in failed("download", "videos")
    assert "--source FOLDER" in failed("build", "videos", "--out", str(tmp_path / "never-written"))
    assert not (tmp_path / "never-written").exists()


def test_plan_selection_units_and_mirror():
    grid = load_recipe("grid").data["download"]
    files = plan.remote_files(grid)
    default = [f.name for f in plan.select(files, None)]
    assert len(default) == 34 and "audio_25k.zip" not in default and "s21.zip" not in default
    assert [f.name for f in plan.select(files, ["s2", "audio_25k"])] == ["s2.zip", "alignments.zip", "audio_25k.zip"]

    vox = plan.units(plan.select(plan.remote_files(load_recipe("voxceleb2").data["download"]), ["dev"]))
    joined = [u for u in vox if u.name == "vox2_dev_mp4.zip"][0]
    assert [f.name for f in joined.files] == [f"vox2_dev_mp4_parta{c}" for c in "abcdefghi"]
    assert joined.kind == "zip" and sum(f.size for f in joined.files) == 8 * 32212254720 + 9257192977

    crema = plan.remote_files(load_recipe("crema-d").data["download"])
    assert len([f for f in crema if f.listed]) == 7442
    actor = plan.select(crema, ["1091"])
    assert len(actor) == 2 + 82 and all(f.name.startswith("VideoFlash/1091_") for f in actor[2:])

    assert plan.mirror_url("https://zenodo.org/records/3625687/files/s1.zip?download=1", "http://127.0.0.1:8000") == \
        "http://127.0.0.1:8000/records/3625687/files/s1.zip?download=1"
    assert plan.mirror_url("https://thor.robots.ox.ac.uk/~vgg/x", "https://mirror.example.org/data/") == \
        "https://mirror.example.org/data/~vgg/x"
    with pytest.raises(UserError, match="--mirror must be an http"):
        plan.mirror_url("https://zenodo.org/a", "zenodo.org")


def test_zenodo_record_answer_is_parsed():
    record = {"files": [{"key": "s1.zip", "size": 423, "checksum": "md5:" + "a" * 32}, {"key": "x.pdf", "size": 1}]}
    assert checksums.parse_zenodo_record(json.dumps(record).encode()) == {"s1.zip": {"md5": "a" * 32, "bytes": 423}}
    entries = {"files": {"entries": {"s1.zip": {"key": "s1.zip", "size": 5, "checksum": "md5:" + "b" * 32}}}}
    assert checksums.parse_zenodo_record(json.dumps(entries).encode())["s1.zip"]["md5"] == "b" * 32


def test_recipes_command_shows_sources_checksums_and_access():
    listing = ok("recipes").output
    names = ("crema-d", "grid", "lrw", "talkinghead-1kh", "videos", "voxceleb2")
    assert [line.split()[0] for line in listing.splitlines() if not line.startswith(" ")] == list(names)
    assert sum(line.lstrip().startswith("download: ") for line in listing.splitlines()) == len(names)  # one per recipe
    assert "download: talkdata download lrw (needs TALKDATA_LRW_USER and TALKDATA_LRW_PASSWORD" in listing
    assert "download: none; talkdata build videos --source FOLDER" in listing
    vox = ok("recipes", "voxceleb2").output
    assert "license: CC BY 4.0" in vox and "request access: fill in the form at https://cn01.mmai.io/keyreq/voxceleb" in vox
    assert "from https://cn01.mmai.io/download/voxceleb?key=KEY&file={path} (needs TALKDATA_VOXCELEB2_KEY" in vox
    assert "vox2_dev_mp4_partai              9.3 GB  md5  (part of vox2_dev_mp4.zip; --only dev)" in vox
    assert "--only: dev (9 parts, about 267 GB) or test" in vox
    grid = ok("recipes", "grid").output
    assert "s1.zip" in grid and "423.5 MB  md5  (--only s1)" in grid and "checksums: read from the Zenodo record API" in grid
    assert "7442 files from the list crema_d_lfs_manifest.csv.gz (VideoFlash/), 2.4 GB, sha256 each" in ok("recipes", "crema-d").output


def test_recipe_download_table_is_strict():
    text = resources.files("talkdata.recipes").joinpath("lrw.toml").read_text()
    with pytest.raises(UserError, match="download.archives.0"):
        parse_recipe(text.replace('part_of = "lrw-v1.tar"', 'part_of = "lrw-v1.tar"\nchecksum = "x"', 1), "lrw.toml")
    with pytest.raises(UserError, match="download.access.0"):
        parse_recipe(text.replace('auth = "basic"\n', 'auth = "basic"\nuser = "me"\n'), "lrw.toml")
    with pytest.raises(UserError, match="md5"):
        parse_recipe(text.replace('md5 = "474f255cdf6da35f41824d2b8a00d076"', 'md5 = "474f"'), "lrw.toml")


def test_split_parts_read_as_one_archive_and_extraction_is_safe(tmp_path):
    payload = {f"dev/mp4/id{i:05d}/clip.bin": bytes([i]) * (3000 + i) for i in range(5)}
    whole = hf.zip_bytes(payload)
    paths = []
    for i, piece in enumerate(hf.split_bytes(whole, 4)):
        paths.append(tmp_path / f"part{i}")
        paths[-1].write_bytes(piece)
    joined = archives.ConcatFile(paths)
    joined.seek(-100, 2)
    assert joined.read(100) == whole[-100:]
    joined.seek(1234)
    assert joined.read(5000) == whole[1234:6234]
    result = archives.extract(paths, tmp_path / "out", "zip", label="joined.zip")
    assert result.files == 5 and (tmp_path / "out" / "dev/mp4/id00003/clip.bin").read_bytes() == payload["dev/mp4/id00003/clip.bin"]

    for name in ("../escape.txt", "/abs/escape.txt", "a/../../escape.txt"):
        bad = tmp_path / "bad.zip"
        bad.write_bytes(hf.zip_bytes({"fine.txt": b"ok", name: b"evil"}))
        with pytest.raises(archives.UnsafeArchive, match="refusing to extract"):
            archives.extract([bad], tmp_path / "dest", "zip")
    assert not (tmp_path / "escape.txt").exists()

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        link = tarfile.TarInfo("lipread_mp4/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
        info = tarfile.TarInfo("lipread_mp4/A/train/A_00001.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    (tmp_path / "t.tar").write_bytes(buffer.getvalue())
    result = archives.extract([tmp_path / "t.tar"], tmp_path / "tdest")
    assert (result.files, result.skipped_special) == (1, 1)
    assert not (tmp_path / "tdest" / "lipread_mp4" / "link").exists()


def test_credentials_come_from_env_or_netrc_and_are_never_shown(tmp_path):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine thor.robots.ox.ac.uk login bob password hunter2\n")
    netrc.chmod(0o600)
    env = {"NETRC": str(netrc)}
    found = credentials.basic_credential("U", "P", "thor.robots.ox.ac.uk", env)
    assert (found.user, found.secret) == ("bob", "hunter2") and "hunter2" not in repr(found)
    assert credentials.basic_credential("U", "P", "127.0.0.1", env) is None  # never sent to another host
    assert credentials.basic_credential("U", "P", "x", {"U": "me", "P": "pw"}).origin == "U / P"
    with pytest.raises(UserError, match="U is set but P is not"):
        credentials.basic_credential("U", "P", "x", {"U": "me"})
    netrc.write_text("machine thor.robots.ox.ac.uk login bob password hunter2 bogus-token-secret\n")
    with pytest.raises(UserError) as err:
        credentials.basic_credential("U", "P", "thor.robots.ox.ac.uk", env)
    assert "hunter2" not in str(err.value) and "bogus-token-secret" not in str(err.value)

    access = Access("https://cn01.mmai.io/download/voxceleb?key={key}&file={path}", "key",
                          credentials.Credential("key", "", "S3CRET", "K"))
    (job,) = jobs([plan.RemoteFile(name="vox2_test_mp4.zip", dest="archives/vox2_test_mp4.zip",
                                          path="vox2_test_mp4.zip")], tmp_path, access, None)
    assert job.url.endswith("key=S3CRET&file=vox2_test_mp4.zip") and "S3CRET" not in job.public_url + repr(job)


def test_module_download_hook_gets_the_keywords_it_declares(tmp_path):
    calls = []

    def hook(root, recipe):
        calls.append((root, recipe))

    call_hook(hook, root=tmp_path, recipe={"name": "x"}, only=None, mirror=None)
    assert calls == [(tmp_path, {"name": "x"})]
    with pytest.raises(UserError, match="--only is not supported by .*hook"):
        call_hook(hook, root=tmp_path, recipe={}, only=["val"], mirror=None)

    def full(root, recipe, only, mirror):
        calls.append((only, mirror))

    call_hook(full, root=tmp_path, recipe={}, only=["val"], mirror="http://m")
    assert calls[-1] == (["val"], "http://m")
